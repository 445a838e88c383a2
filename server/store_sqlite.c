/* store_sqlite.c - the job store on one SQLite file (store.h).
 *
 * WAL journal with synchronous=FULL: every commit's WAL frames are fsynced
 * before COMMIT returns. NORMAL would survive kill -9 of the process (the
 * frames are in the OS page cache) but a power loss or kernel crash could
 * roll back the last commits, and with them jobs already acknowledged with
 * 202. Commits here are one per submitted job and one per finished unit (a
 * unit is seconds of model work), so the fsync costs nothing that matters.
 *
 * Schema: jobs keyed by an integer (rows and units refer to it; the 32-hex
 * id is a unique column), units (job, idx) WITHOUT ROWID, result_rows (job, seq).
 * Migration i (1-based) takes the schema from version i-1 to i; open applies
 * the missing ones in one transaction. Two connections, a writer and a
 * reader, each used by one call at a time under its lock in store.c (leases
 * go through the writer); the job state machine's moves are store.c's, this
 * file holds their steps' SQL (SQLITE_TX). */
#include "store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"
#include "clock.h"
#include "error.h"

#define BUSY_TIMEOUT_MS 5000
#define WAL_SIZE_LIMIT (64 << 20) /* bytes the WAL file is cut back to after a checkpoint */
#define WHAT_LEN 160

static const char *const MIGRATIONS[] = {
    /* 1: jobs, units, rows */
    "CREATE TABLE jobs ("
    " key INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " user_name TEXT NOT NULL,"
    " model TEXT NOT NULL,"
    " spec TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued','running','done','failed','cancelled')),"
    " error TEXT NOT NULL DEFAULT '',"
    " created_at REAL NOT NULL,"
    " started_at REAL NOT NULL DEFAULT 0,"
    " finished_at REAL NOT NULL DEFAULT 0,"
    " deadline REAL NOT NULL DEFAULT 0,"
    " n_units INTEGER NOT NULL,"
    " units_done INTEGER NOT NULL DEFAULT 0,"
    " variants_total INTEGER NOT NULL,"
    " variants_done INTEGER NOT NULL DEFAULT 0,"
    " n_rows INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX jobs_by_user ON jobs (user_name, created_at);"
    "CREATE INDEX jobs_by_state ON jobs (state, created_at);"
    "CREATE INDEX jobs_by_finish ON jobs (finished_at);"
    "CREATE TABLE units ("
    " job INTEGER NOT NULL,"
    " idx INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('pending','done')),"
    " first_seq INTEGER NOT NULL DEFAULT 0,"
    " n_rows INTEGER NOT NULL DEFAULT 0,"
    " finished_at REAL NOT NULL DEFAULT 0,"
    " PRIMARY KEY (job, idx)) WITHOUT ROWID;"
    "CREATE TABLE result_rows ("
    " job INTEGER NOT NULL,"
    " seq INTEGER NOT NULL,"
    " body TEXT NOT NULL,"
    " PRIMARY KEY (job, seq));",
    /* 2: leases on units and on the summary claim (store_claim_unit) */
    "ALTER TABLE units ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE units ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN final_owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN final_until REAL NOT NULL DEFAULT 0;"
    "CREATE INDEX units_pending ON units (job, idx) WHERE state = 'pending';",
    /* 3: the model a job was submitted for; why a job waits */
    "ALTER TABLE jobs ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN note TEXT NOT NULL DEFAULT '';",
    /* 4: the bytes a job keeps (its spec and rows), for per-user quotas */
    "ALTER TABLE jobs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;"
    "UPDATE jobs SET bytes = length(CAST(spec AS BLOB)) + coalesce((SELECT "
    "sum(length(CAST(body AS BLOB))) FROM result_rows WHERE result_rows.job = jobs.key), 0);",
    /* 5: how a user finds a job again: its name, labels and prompt count
     * (0: stored before it was kept) */
    "ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN n_prompts INTEGER NOT NULL DEFAULT 0;",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

#define JOB_COLUMNS                                                                                \
  "id, user_name, model, state, error, created_at, started_at, finished_at, deadline, n_units, "   \
  "units_done, variants_total, variants_done, n_rows, fingerprint, note, bytes, name, labels, "    \
  "n_prompts"
#define JOB_COLUMNS_N 20
#define FINAL_STATES "('done','failed','cancelled')"

enum {
  W_BEGIN,
  W_COMMIT,
  W_ROLLBACK,
  W_JOB_LOOKUP,
  W_JOB_INSERT,
  W_UNIT_INSERT,
  W_UNIT_STATE,
  W_ROW_INSERT,
  W_UNIT_DONE,
  W_JOB_PROGRESS,
  W_JOB_STATE,
  W_JOB_ROWS,
  W_PURGE_ROWS,
  W_PURGE_UNITS,
  W_PURGE_JOBS,
  W_CLAIM_FIND,
  W_CLAIM_UNIT,
  W_CLAIM_FINAL,
  W_RENEW_UNIT,
  W_RENEW_FINAL,
  W_RELEASE_UNITS,
  W_RELEASE_FINAL,
  W_JOB_NOTE,
  W_JOB_BYTES,
  W_JOB_RETRY,
  W_RETRY_UNITS,
  W_COUNT
};

static const char *const WRITE_SQL[W_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_JOB_LOOKUP] = "SELECT key, state, n_units, units_done, n_rows FROM jobs WHERE id = ?1",
    [W_JOB_INSERT] =
        "INSERT INTO jobs (id, user_name, model, spec, state, created_at, deadline, "
        "n_units, variants_total, fingerprint, bytes, name, labels, n_prompts) "
        "VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9, length(CAST(?4 AS BLOB)), ?10, ?11, "
        "?12)",
    [W_UNIT_INSERT] = "INSERT INTO units (job, idx, state) VALUES (?1, ?2, 'pending')",
    [W_UNIT_STATE] = "SELECT state = 'done' FROM units WHERE job = ?1 AND idx = ?2",
    [W_ROW_INSERT] = "INSERT INTO result_rows (job, seq, body) VALUES (?1, ?2, ?3)",
    [W_UNIT_DONE] = "UPDATE units SET state = 'done', first_seq = ?3, n_rows = ?4, "
                    "finished_at = ?5 WHERE job = ?1 AND idx = ?2",
    [W_JOB_PROGRESS] = "UPDATE jobs SET units_done = units_done + 1, "
                       "variants_done = variants_done + ?2, n_rows = n_rows + ?3, note = '' "
                       "WHERE key = ?1",
    [W_JOB_STATE] = "UPDATE jobs SET state = ?2, error = ?3, note = '', "
                    "started_at = CASE WHEN started_at = 0 AND ?2 IN ('running','done') "
                    "THEN ?4 ELSE started_at END, "
                    "finished_at = CASE WHEN ?2 IN " FINAL_STATES " THEN ?4 ELSE 0 END, "
                    "n_rows = n_rows + ?5 WHERE key = ?1",
    [W_JOB_ROWS] = "UPDATE jobs SET n_rows = n_rows + ?2 WHERE key = ?1",
    [W_PURGE_ROWS] = "DELETE FROM result_rows WHERE job IN (SELECT key FROM jobs WHERE state IN "
                     " " FINAL_STATES " AND finished_at < ?1)",
    [W_PURGE_UNITS] = "DELETE FROM units WHERE job IN (SELECT key FROM jobs WHERE state IN "
                      " " FINAL_STATES " AND finished_at < ?1)",
    [W_PURGE_JOBS] = "DELETE FROM jobs WHERE state IN " FINAL_STATES " AND finished_at < ?1",
    /* ?1 job key, ?2 now, ?3 worker, ?4 lease end, ?5 unit */
    [W_CLAIM_FIND] = "SELECT min(idx) FROM units WHERE job = ?1 AND state = 'pending' AND "
                     "(lease_until <= ?2 OR lease_owner = ?3)",
    [W_CLAIM_UNIT] = "UPDATE units SET lease_owner = ?3, lease_until = ?4 WHERE job = ?1 AND "
                     "idx = ?5",
    [W_CLAIM_FINAL] = "UPDATE jobs SET final_owner = ?3, final_until = ?4 WHERE key = ?1 AND "
                      "(final_until <= ?2 OR final_owner = ?3)",
    [W_RENEW_UNIT] = "UPDATE units SET lease_until = ?4 WHERE job = ?1 AND idx = ?5 AND "
                     "lease_owner = ?3 AND state = 'pending'",
    [W_RENEW_FINAL] = "UPDATE jobs SET final_until = ?4 WHERE key = ?1 AND final_owner = ?3",
    [W_RELEASE_UNITS] = "UPDATE units SET lease_owner = '', lease_until = 0 WHERE "
                        "lease_owner = ?1 AND state = 'pending'",
    [W_RELEASE_FINAL] = "UPDATE jobs SET final_owner = '', final_until = 0 WHERE final_owner = ?1",
    [W_JOB_NOTE] = "UPDATE jobs SET note = ?2 WHERE key = ?1",
    [W_JOB_BYTES] = "UPDATE jobs SET bytes = bytes + ?2 WHERE key = ?1",
    [W_JOB_RETRY] = "UPDATE jobs SET state = CASE WHEN started_at > 0 THEN 'running' ELSE 'queued' "
                    "END, error = '', note = '', finished_at = 0, final_owner = '', "
                    "final_until = 0 WHERE key = ?1 RETURNING state",
    [W_RETRY_UNITS] = "UPDATE units SET lease_owner = '', lease_until = 0 WHERE job = ?1 AND "
                      "state = 'pending'",
};

enum {
  R_BEGIN,
  R_END,
  R_JOB_GET,
  R_JOB_SPEC,
  R_JOB_KEY,
  R_JOBS_ALL,
  R_JOBS_USER,
  R_JOBS_FIND,
  R_RESUMABLE,
  R_USAGE,
  R_ROWS,
  R_COUNT
};

static const char *const READ_SQL[R_COUNT] = {
    [R_BEGIN] = "BEGIN",
    [R_END] = "ROLLBACK",
    [R_JOB_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
    [R_JOB_SPEC] = "SELECT spec FROM jobs WHERE id = ?1",
    [R_JOB_KEY] = "SELECT key, state FROM jobs WHERE id = ?1",
    [R_JOBS_ALL] = "SELECT " JOB_COLUMNS " FROM jobs ORDER BY created_at DESC, key DESC LIMIT ?1",
    [R_JOBS_FIND] = "SELECT " JOB_COLUMNS " FROM jobs WHERE (?1 IS NULL OR user_name = ?1) AND "
                    "(?2 IS NULL OR substr(id, 1, length(?2)) = ?2) AND (?3 IS NULL OR name = ?3) "
                    "AND (?4 IS NULL OR state = ?4) AND (?5 IS NULL OR created_at < ?5 OR "
                    "(created_at = ?5 AND id < ?6)) ORDER BY created_at DESC, id DESC LIMIT ?7",
    [R_JOBS_USER] = "SELECT " JOB_COLUMNS " FROM jobs WHERE user_name = ?2 "
                    "ORDER BY created_at DESC, key DESC LIMIT ?1",
    [R_RESUMABLE] = "SELECT " JOB_COLUMNS ", (SELECT min(idx) FROM units WHERE units.job = "
                    "jobs.key AND units.state = 'pending') FROM jobs "
                    "WHERE state IN ('queued','running') ORDER BY created_at, key",
    [R_USAGE] = "SELECT count(*), coalesce(sum(bytes), 0) FROM jobs WHERE user_name = ?1",
    [R_ROWS] = "SELECT seq, body FROM result_rows WHERE job = ?1 AND seq >= ?2 ORDER BY seq "
               "LIMIT ?3",
};

typedef struct sqlite_store {
  store_t base;
  char *path;
  sqlite3 *wdb; /* NULL when read-only */
  sqlite3 *rdb;
  sqlite3_stmt *w[W_COUNT];
  sqlite3_stmt *r[R_COUNT];
  int lock_fd; /* PATH.lock under STORE_EXCLUSIVE; -1 */
} sqlite_store_t;

/* What the writer knows of a job inside a transaction. */
typedef store_job_row_t job_key_t;

/* SQLite's message; for a failed read, write or open also the system's
 * ("disk I/O error (No space left on device)"), or SQLite's extended code
 * when the system gave none. */
static int db_error(const sqlite_store_t *s, sqlite3 *db, const char *what, char *err) {
  int ext = sqlite3_extended_errcode(db), code = ext & 0xff, sys = sqlite3_system_errno(db);
  if (code != SQLITE_IOERR && code != SQLITE_FULL && code != SQLITE_CANTOPEN)
    return err_set(err, "store %s: %s: %s", s->path, what, sqlite3_errmsg(db));
  if (sys)
    return err_set(err, "store %s: %s: %s (%s)", s->path, what, sqlite3_errmsg(db), strerror(sys));
  return err_set(err, "store %s: %s: %s (SQLite code %d)", s->path, what, sqlite3_errmsg(db), ext);
}

/* Steps a statement that yields no row, then resets it. */
static int run(const sqlite_store_t *s, sqlite3 *db, sqlite3_stmt *st, const char *what,
               char *err) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    db_error(s, db, what, err);
    sqlite3_reset(st);
    return -1;
  }
  sqlite3_reset(st);
  return 0;
}

/* Steps a statement expected to yield at most one row: 1 with the row
 * current (the caller resets), 0 with none (reset), -1 on error (reset). */
static int step_row(const sqlite_store_t *s, sqlite3 *db, sqlite3_stmt *st, const char *what,
                    char *err) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    return 1;
  if (rc != SQLITE_DONE)
    db_error(s, db, what, err);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* Copies a text column into a buffer of size n, cut at n - 1 bytes. */
static void column_copy(sqlite3_stmt *st, int col, char *dst, size_t n) {
  const unsigned char *text = sqlite3_column_text(st, col);
  snprintf(dst, n, "%s", text ? (const char *)text : "");
}

/* Reads the JOB_COLUMNS starting at column 0. */
static int job_read(const sqlite_store_t *s, sqlite3_stmt *st, store_job_t *job, char *err) {
  memset(job, 0, sizeof *job);
  column_copy(st, 0, job->id, sizeof job->id);
  column_copy(st, 1, job->user, sizeof job->user);
  column_copy(st, 2, job->model, sizeof job->model);
  if (store_state_parse((const char *)sqlite3_column_text(st, 3), &job->state))
    return err_set(err, "store %s: job %s: unknown state '%s'", s->path, job->id,
                   (const char *)sqlite3_column_text(st, 3));
  column_copy(st, 4, job->error, sizeof job->error);
  job->created_at = sqlite3_column_double(st, 5);
  job->started_at = sqlite3_column_double(st, 6);
  job->finished_at = sqlite3_column_double(st, 7);
  job->deadline = sqlite3_column_double(st, 8);
  job->n_units = sqlite3_column_int(st, 9);
  job->units_done = sqlite3_column_int(st, 10);
  job->variants_total = sqlite3_column_int64(st, 11);
  job->variants_done = sqlite3_column_int64(st, 12);
  job->rows = sqlite3_column_int64(st, 13);
  column_copy(st, 14, job->fingerprint, sizeof job->fingerprint);
  column_copy(st, 15, job->note, sizeof job->note);
  job->bytes = sqlite3_column_int64(st, 16);
  column_copy(st, 17, job->name, sizeof job->name);
  column_copy(st, 18, job->labels, sizeof job->labels);
  job->n_prompts = sqlite3_column_int(st, 19);
  return 0;
}

/* ---- opening ---------------------------------------------------------- */

static int exec_sql(const sqlite_store_t *s, sqlite3 *db, const char *sql, const char *what,
                    char *err) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    err_set(err, "store %s: %s: %s", s->path, what, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

/* Integer result of a one-row query; -1 with err on failure. */
static int query_int(const sqlite_store_t *s, sqlite3 *db, const char *sql, const char *what,
                     int64_t *value, char *err) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return db_error(s, db, what, err);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *value = sqlite3_column_int64(st, 0);
  else if (rc != SQLITE_DONE)
    db_error(s, db, what, err);
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE)
    return err_set(err, "store %s: %s: no result", s->path, what);
  return rc == SQLITE_ROW ? 0 : -1;
}

/* The schema version in the file: 0 for an empty file; -1 with err for a
 * file with tables that are not a hydra store. */
static int schema_version(const sqlite_store_t *s, sqlite3 *db, int64_t *version, char *err) {
  int64_t has_table = 0, other_tables = 0;
  if (query_int(s, db,
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                "name = 'schema_version'",
                "read the schema", &has_table, err))
    return -1;
  if (!has_table) {
    if (query_int(s, db, "SELECT count(*) FROM sqlite_master", "read the schema", &other_tables,
                  err))
      return -1;
    if (other_tables)
      return err_set(err, "store %s: not a hydra store (no schema_version table)", s->path);
    *version = 0;
    return 0;
  }
  *version = 0;
  if (query_int(s, db, "SELECT coalesce(max(version), 0) FROM schema_version",
                "read the schema version", version, err))
    return -1;
  if (*version > SCHEMA_VERSION)
    return err_set(err, "store %s: schema version %lld is newer than this hydrad's (%d)", s->path,
                   (long long)*version, SCHEMA_VERSION);
  return 0;
}

static int migrate(const sqlite_store_t *s, char *err) {
  char what[WHAT_LEN];
  int64_t version;
  if (exec_sql(s, s->wdb, "BEGIN IMMEDIATE", "begin the schema migration", err))
    return -1;
  if (schema_version(s, s->wdb, &version, err))
    goto fail;
  if (version == SCHEMA_VERSION)
    return exec_sql(s, s->wdb, "COMMIT", "end the schema check", err);
  if (exec_sql(s, s->wdb, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
               "create the schema_version table", err))
    goto fail;
  for (int v = (int)version + 1; v <= SCHEMA_VERSION; v++) {
    snprintf(what, sizeof what, "migrate the schema to version %d", v);
    if (exec_sql(s, s->wdb, MIGRATIONS[v - 1], what, err))
      goto fail;
  }
  snprintf(what, sizeof what,
           "DELETE FROM schema_version; INSERT INTO schema_version (version) VALUES (%d)",
           SCHEMA_VERSION);
  if (exec_sql(s, s->wdb, what, "record the schema version", err) ||
      exec_sql(s, s->wdb, "COMMIT", "commit the schema migration", err))
    goto fail;
  return 0;
fail:
  if (!sqlite3_get_autocommit(s->wdb))
    sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
  return -1;
}

/* immutable: open "file:PATH?immutable=1" (read-only; no locks, no -shm). */
static int open_db(const sqlite_store_t *s, int readonly, int immutable, sqlite3 **db, char *err) {
  int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
              SQLITE_OPEN_NOMUTEX;
  char *uri = NULL;
  if (immutable) {
    size_t n = strlen(s->path);
    if (!(uri = malloc(3 * n + 32)))
      return err_set(err, "store %s: open: out of memory", s->path);
    char *at = uri + sprintf(uri, "file:");
    for (size_t i = 0; i < n; i++)
      at += strchr("%?#", s->path[i]) ? sprintf(at, "%%%02X", (unsigned char)s->path[i])
                                      : sprintf(at, "%c", s->path[i]);
    strcpy(at, "?immutable=1");
    flags |= SQLITE_OPEN_URI;
  }
  int rc = sqlite3_open_v2(uri ? uri : s->path, db, flags, NULL);
  free(uri);
  if (rc != SQLITE_OK) {
    if (!*db)
      return err_set(err, "store %s: open: out of memory", s->path);
    return db_error(s, *db, "open", err);
  }
  sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
  sqlite3_extended_result_codes(*db, 1);
  return 0;
}

static int open_writer(sqlite_store_t *s, char *err) {
  char sql[96];
  if (open_db(s, 0, 0, &s->wdb, err))
    return -1;
  if (sqlite3_db_readonly(s->wdb, "main") == 1)
    return err_set(err,
                   "store %s: the file is read-only to this process (open it read-only to read "
                   "it)",
                   s->path);
  /* journal_mode answers with the mode in effect; the first page read also
   * tells a file that is not a database. */
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(s->wdb, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK)
    return db_error(s, s->wdb, "set WAL mode", err);
  int rc = sqlite3_step(st);
  int wal = rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
            strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
  if (rc != SQLITE_ROW)
    db_error(s, s->wdb, "set WAL mode", err);
  else if (!wal)
    err_set(err, "store %s: set WAL mode: the file stays in mode '%s'", s->path,
            (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  if (!wal)
    return -1;
  snprintf(sql, sizeof sql, "PRAGMA synchronous = FULL; PRAGMA journal_size_limit = %d",
           WAL_SIZE_LIMIT);
  if (exec_sql(s, s->wdb, sql, "set synchronous mode", err) || migrate(s, err))
    return -1;
  /* The file belongs to this process: the leases in it are an earlier life's. */
  if (exec_sql(s, s->wdb,
               "UPDATE units SET lease_owner = '', lease_until = 0 WHERE lease_until > 0;"
               "UPDATE jobs SET final_owner = '', final_until = 0 WHERE final_until > 0",
               "free the leases of an earlier run", err))
    return -1;
  for (int i = 0; i < W_COUNT; i++)
    if (sqlite3_prepare_v3(s->wdb, WRITE_SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->w[i], NULL) !=
        SQLITE_OK)
      return db_error(s, s->wdb, "prepare a statement", err);
  return 0;
}

/* A read-only store in a directory this process cannot write has no -shm
 * file to share; when no -wal file is left either, the database file holds
 * every commit and can be read as immutable. */
static int wal_left(const sqlite_store_t *s) {
  char wal[4096];
  struct stat st;
  snprintf(wal, sizeof wal, "%s-wal", s->path);
  return stat(wal, &st) == 0 && st.st_size > 0;
}

static int open_reader(sqlite_store_t *s, char *err) {
  int64_t version;
  if (open_db(s, 1, 0, &s->rdb, err))
    return -1;
  if (schema_version(s, s->rdb, &version, err)) {
    int code = sqlite3_extended_errcode(s->rdb) & 0xff;
    if (s->wdb || (code != SQLITE_READONLY && code != SQLITE_CANTOPEN) || wal_left(s))
      return -1;
    sqlite3_close(s->rdb);
    s->rdb = NULL;
    if (open_db(s, 1, 1, &s->rdb, err) || schema_version(s, s->rdb, &version, err))
      return -1;
  }
  if (version != SCHEMA_VERSION)
    return err_set(err, "store %s: not a hydra store (schema version %lld, this hydrad needs %d)",
                   s->path, (long long)version, SCHEMA_VERSION);
  for (int i = 0; i < R_COUNT; i++)
    if (sqlite3_prepare_v3(s->rdb, READ_SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->r[i], NULL) !=
        SQLITE_OK)
      return db_error(s, s->rdb, "prepare a statement", err);
  return 0;
}

static const store_ops_t SQLITE_OPS;
static const store_tx_ops_t SQLITE_TX;
static void sq_close(store_t *base);

/* STORE_EXCLUSIVE: takes the advisory lock on PATH.lock and writes this
 * process's pid in it; fails naming the holder's pid when another process
 * holds it. */
static int lock_exclusive(sqlite_store_t *s, char *err) {
  char lock_path[4096];
  if (snprintf(lock_path, sizeof(lock_path), "%s.lock", s->path) >= (int)sizeof(lock_path))
    return err_set(err, "store %s: the path is too long", s->path);
  s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd < 0)
    return err_set(err, "store %s: cannot open its lock file %s: %s", s->path, lock_path,
                   strerror(errno));
  if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    char pid[32] = "";
    ssize_t n = pread(s->lock_fd, pid, sizeof(pid) - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    if (e == EWOULDBLOCK)
      return err_set(err,
                     "store %s is in use by another hydrad (pid %s, lock %s): give each daemon "
                     "its own --store, or share a postgres:// store between workers",
                     s->path, pid[0] ? pid : "unknown", lock_path);
    return err_set(err, "store %s: cannot lock %s: %s", s->path, lock_path, strerror(e));
  }
  char pid[32];
  const int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
  if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, pid, (size_t)len, 0) != len)
    return err_set(err, "store %s: cannot write its lock file %s: %s", s->path, lock_path,
                   strerror(errno));
  return 0;
}

store_t *store_sqlite_open(const char *path, int flags, char *err) {
  sqlite_store_t *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(path))) {
    free(s);
    err_set(err, "store %s: out of memory", path);
    return NULL;
  }
  s->lock_fd = -1;
  s->base.ops = &SQLITE_OPS;
  s->base.name = s->path;
  s->base.readonly = (flags & STORE_READONLY) != 0;
  s->base.tx = &SQLITE_TX;
  if (store_head_init(&s->base, err))
    goto fail;
  if ((flags & STORE_EXCLUSIVE) && !(flags & STORE_READONLY) && lock_exclusive(s, err))
    goto fail;
  if (!(flags & STORE_READONLY) && open_writer(s, err))
    goto fail;
  if (open_reader(s, err))
    goto fail;
  return &s->base;
fail:
  sq_close(&s->base);
  return NULL;
}

static void sq_close(store_t *base) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  for (int i = 0; i < R_COUNT; i++)
    sqlite3_finalize(s->r[i]);
  for (int i = 0; i < W_COUNT; i++)
    sqlite3_finalize(s->w[i]);
  sqlite3_close(s->rdb);
  sqlite3_close(s->wdb);
  store_head_destroy(&s->base);
  if (s->lock_fd >= 0)
    close(s->lock_fd); /* lets the lock go; the file stays, with the last pid */
  free(s->path);
  free(s);
}

/* ---- writing ---------------------------------------------------------- */

static int tx_begin(sqlite_store_t *s, const char *what, char *err) {
  return run(s, s->wdb, s->w[W_BEGIN], what, err);
}

/* A failed COMMIT may leave the transaction open (SQLITE_BUSY); roll back. */
static int tx_commit(sqlite_store_t *s, const char *what, char *err) {
  if (run(s, s->wdb, s->w[W_COMMIT], what, err)) {
    if (!sqlite3_get_autocommit(s->wdb))
      run(s, s->wdb, s->w[W_ROLLBACK], what, NULL);
    return -1;
  }
  return 0;
}

/* Some errors (SQLITE_FULL, SQLITE_IOERR) roll back by themselves. */
static void tx_rollback(sqlite_store_t *s) {
  if (!sqlite3_get_autocommit(s->wdb))
    run(s, s->wdb, s->w[W_ROLLBACK], "rollback", NULL);
}

/* Looks the job up inside the writer's transaction: 0, STORE_NOT_FOUND or -1. */
static int job_lookup(sqlite_store_t *s, const char *job_id, job_key_t *job, const char *what,
                      char *err) {
  sqlite3_stmt *st = s->w[W_JOB_LOOKUP];
  if (sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC) != SQLITE_OK)
    return db_error(s, s->wdb, what, err);
  int rc = step_row(s, s->wdb, st, what, err);
  if (rc <= 0) {
    if (rc == 0)
      err_set(err, "store %s: %s: no job %s", s->path, what, job_id);
    return rc == 0 ? STORE_NOT_FOUND : -1;
  }
  job->key = sqlite3_column_int64(st, 0);
  int bad = store_state_parse((const char *)sqlite3_column_text(st, 1), &job->state);
  job->n_units = sqlite3_column_int(st, 2);
  job->units_done = sqlite3_column_int(st, 3);
  job->n_rows = sqlite3_column_int64(st, 4);
  sqlite3_reset(st);
  if (bad)
    return err_set(err, "store %s: %s: job %s has an unknown state", s->path, what, job_id);
  return 0;
}

/* job_lookup, and STORE_STATE for a job that has ended. */
static int job_lookup_open(sqlite_store_t *s, const char *job_id, job_key_t *job, const char *what,
                           char *err) {
  int rc = job_lookup(s, job_id, job, what, err);
  if (rc == 0 && store_state_final(job->state))
    return err_set(err, "store %s: %s: the job is %s", s->path, what, store_state_name(job->state)),
           STORE_STATE;
  return rc;
}

/* Inserts rows with sequence numbers first_seq, first_seq + 1, ... */
static int rows_insert(sqlite_store_t *s, int64_t job_key, int64_t first_seq,
                       const char *const rows[], size_t n_rows, const char *what, char *err) {
  sqlite3_stmt *st = s->w[W_ROW_INSERT];
  int64_t bytes = 0;
  for (size_t i = 0; i < n_rows; i++) {
    const size_t len = strlen(rows[i]);
    bytes += (int64_t)len;
    if (sqlite3_bind_int64(st, 1, job_key) | sqlite3_bind_int64(st, 2, first_seq + (int64_t)i) |
        sqlite3_bind_text64(st, 3, rows[i], len, SQLITE_STATIC, SQLITE_UTF8))
      return db_error(s, s->wdb, what, err);
    if (run(s, s->wdb, st, what, err))
      return -1;
  }
  if (n_rows == 0)
    return 0;
  st = s->w[W_JOB_BYTES]; /* the job's bytes, in the same transaction */
  if (sqlite3_bind_int64(st, 1, job_key) | sqlite3_bind_int64(st, 2, bytes))
    return db_error(s, s->wdb, what, err);
  return run(s, s->wdb, st, what, err);
}

static int job_create_locked(sqlite_store_t *s, const store_job_t *job, const char *spec,
                             size_t spec_len, const char *what, char *err) {
  job_key_t existing;
  int rc = -1;
  if (tx_begin(s, what, err))
    return -1;
  int found = job_lookup(s, job->id, &existing, what, err);
  if (found == 0) {
    rc = STORE_DUPLICATE;
    err_set(err, "store %s: %s: the id is taken", s->path, what);
    goto fail;
  }
  if (found < 0)
    goto fail;
  sqlite3_stmt *st = s->w[W_JOB_INSERT];
  if (sqlite3_bind_text(st, 1, job->id, -1, SQLITE_STATIC) |
      sqlite3_bind_text(st, 2, job->user, -1, SQLITE_STATIC) |
      sqlite3_bind_text(st, 3, job->model, -1, SQLITE_STATIC) |
      sqlite3_bind_text64(st, 4, spec, spec_len, SQLITE_STATIC, SQLITE_UTF8) |
      sqlite3_bind_double(st, 5, clock_wall()) | sqlite3_bind_double(st, 6, job->deadline) |
      sqlite3_bind_int(st, 7, job->n_units) | sqlite3_bind_int64(st, 8, job->variants_total) |
      sqlite3_bind_text(st, 9, job->fingerprint, -1, SQLITE_STATIC) |
      sqlite3_bind_text(st, 10, job->name, -1, SQLITE_STATIC) |
      sqlite3_bind_text(st, 11, job->labels, -1, SQLITE_STATIC) |
      sqlite3_bind_int(st, 12, job->n_prompts)) {
    db_error(s, s->wdb, what, err);
    goto fail;
  }
  if (run(s, s->wdb, st, what, err))
    goto fail;
  int64_t key = sqlite3_last_insert_rowid(s->wdb);
  st = s->w[W_UNIT_INSERT];
  for (int u = 0; u < job->n_units; u++) {
    if (sqlite3_bind_int64(st, 1, key) | sqlite3_bind_int(st, 2, u)) {
      db_error(s, s->wdb, what, err);
      goto fail;
    }
    if (run(s, s->wdb, st, what, err))
      goto fail;
  }
  return tx_commit(s, what, err);
fail:
  tx_rollback(s);
  return rc;
}

static int sq_job_create(store_t *base, const store_job_t *job, const char *spec, size_t spec_len,
                         const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  int rc = job_create_locked(s, job, spec, spec_len, what, err);
  return rc;
}

/* ---- the job state machine's steps (store.c runs them) ---------------- */

static int sq_tx_begin(store_t *base, const char *what, char *err) {
  return tx_begin((sqlite_store_t *)base, what, err);
}

static int sq_tx_commit(store_t *base, const char *what, char *err) {
  return tx_commit((sqlite_store_t *)base, what, err);
}

static void sq_tx_rollback(store_t *base) {
  tx_rollback((sqlite_store_t *)base);
}

static int sq_tx_job_lock(store_t *base, const char *job_id, store_job_row_t *job, const char *what,
                          char *err) {
  /* BEGIN IMMEDIATE took the database's write lock: the row is the writer's */
  return job_lookup((sqlite_store_t *)base, job_id, job, what, err);
}

static int sq_tx_rows_insert(store_t *base, const store_job_row_t *job, const char *const rows[],
                             size_t n_rows, const char *what, char *err) {
  return rows_insert((sqlite_store_t *)base, job->key, job->n_rows, rows, n_rows, what, err);
}

static int sq_tx_unit_done(store_t *base, const store_job_row_t *job, int unit, int *done,
                           const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->w[W_UNIT_STATE];
  if (sqlite3_bind_int64(st, 1, job->key) | sqlite3_bind_int(st, 2, unit))
    return db_error(s, s->wdb, what, err);
  const int found = step_row(s, s->wdb, st, what, err);
  if (found <= 0)
    return found == 0 ? err_set(err, "store %s: %s: the unit is missing", s->path, what) : -1;
  *done = sqlite3_column_int(st, 0);
  sqlite3_reset(st);
  return 0;
}

static int sq_tx_unit_store(store_t *base, const store_job_row_t *job, int unit, size_t n_rows,
                            int64_t variants, const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->w[W_UNIT_DONE];
  if (sqlite3_bind_int64(st, 1, job->key) | sqlite3_bind_int(st, 2, unit) |
      sqlite3_bind_int64(st, 3, job->n_rows) | sqlite3_bind_int64(st, 4, (int64_t)n_rows) |
      sqlite3_bind_double(st, 5, clock_wall()))
    return db_error(s, s->wdb, what, err);
  if (run(s, s->wdb, st, what, err))
    return -1;
  st = s->w[W_JOB_PROGRESS];
  if (sqlite3_bind_int64(st, 1, job->key) | sqlite3_bind_int64(st, 2, variants) |
      sqlite3_bind_int64(st, 3, (int64_t)n_rows))
    return db_error(s, s->wdb, what, err);
  return run(s, s->wdb, st, what, err);
}

static int sq_tx_job_move(store_t *base, const store_job_row_t *job, store_state_t state,
                          const char *error, size_t n_rows, const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->w[W_JOB_STATE];
  if (sqlite3_bind_int64(st, 1, job->key) |
      sqlite3_bind_text(st, 2, store_state_name(state), -1, SQLITE_STATIC) |
      sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC) |
      sqlite3_bind_double(st, 4, clock_wall()) | sqlite3_bind_int64(st, 5, (int64_t)n_rows))
    return db_error(s, s->wdb, what, err);
  return run(s, s->wdb, st, what, err);
}

static int sq_tx_rows_count(store_t *base, const store_job_row_t *job, size_t n_rows,
                            const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->w[W_JOB_ROWS];
  if (sqlite3_bind_int64(st, 1, job->key) | sqlite3_bind_int64(st, 2, (int64_t)n_rows))
    return db_error(s, s->wdb, what, err);
  return run(s, s->wdb, st, what, err);
}

static int sq_tx_job_note(store_t *base, const store_job_row_t *job, const char *note,
                          const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->w[W_JOB_NOTE];
  if (sqlite3_bind_int64(st, 1, job->key) | sqlite3_bind_text(st, 2, note, -1, SQLITE_STATIC))
    return db_error(s, s->wdb, what, err);
  return run(s, s->wdb, st, what, err);
}

static int sq_tx_job_requeue(store_t *base, const store_job_row_t *job, store_state_t *state,
                             const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->w[W_JOB_RETRY];
  if (sqlite3_bind_int64(st, 1, job->key))
    return db_error(s, s->wdb, what, err);
  if (step_row(s, s->wdb, st, what, err) != 1)
    return -1;
  const int bad = store_state_parse((const char *)sqlite3_column_text(st, 0), state);
  sqlite3_reset(st);
  if (bad)
    return err_set(err, "store %s: %s: an unknown state", s->path, what);
  st = s->w[W_RETRY_UNITS];
  if (sqlite3_bind_int64(st, 1, job->key))
    return db_error(s, s->wdb, what, err);
  return run(s, s->wdb, st, what, err);
}

static const store_tx_ops_t SQLITE_TX = {
    .begin = sq_tx_begin,
    .commit = sq_tx_commit,
    .rollback = sq_tx_rollback,
    .job_lock = sq_tx_job_lock,
    .rows_insert = sq_tx_rows_insert,
    .unit_done = sq_tx_unit_done,
    .unit_store = sq_tx_unit_store,
    .job_move = sq_tx_job_move,
    .rows_count = sq_tx_rows_count,
    .job_note = sq_tx_job_note,
    .job_requeue = sq_tx_job_requeue,
};

static int purge_locked(sqlite_store_t *s, double older_than, size_t *n_purged, char *err) {
  const char *what = "purge finished jobs";
  if (tx_begin(s, what, err))
    return -1;
  static const int steps[] = {W_PURGE_ROWS, W_PURGE_UNITS, W_PURGE_JOBS};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    sqlite3_stmt *st = s->w[steps[i]];
    if (sqlite3_bind_double(st, 1, older_than)) {
      db_error(s, s->wdb, what, err);
      goto fail;
    }
    if (run(s, s->wdb, st, what, err))
      goto fail;
  }
  size_t n = (size_t)sqlite3_changes(s->wdb);
  if (tx_commit(s, what, err))
    return -1;
  if (n_purged)
    *n_purged = n;
  return 0;
fail:
  tx_rollback(s);
  return -1;
}

static int sq_purge(store_t *base, double older_than, size_t *n_purged, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  int rc = purge_locked(s, older_than, n_purged, err);
  return rc;
}

/* ---- leases ----------------------------------------------------------- */

/* Binds ?1 job key, ?2 now, ?3 worker, ?4 lease end, ?5 unit (those the
 * statement has) and steps it; *changed gets the rows it changed. */
static int lease_run(sqlite_store_t *s, int which, int64_t key, const char *worker, double lease_s,
                     int unit, int *changed, const char *what, char *err) {
  sqlite3_stmt *st = s->w[which];
  const double now = clock_wall();
  const int n = sqlite3_bind_parameter_count(st);
  if (sqlite3_bind_int64(st, 1, key) | (n >= 2 ? sqlite3_bind_double(st, 2, now) : 0) |
      sqlite3_bind_text(st, 3, worker, -1, SQLITE_STATIC) |
      sqlite3_bind_double(st, 4, now + lease_s) | (n >= 5 ? sqlite3_bind_int(st, 5, unit) : 0))
    return db_error(s, s->wdb, what, err);
  if (run(s, s->wdb, st, what, err))
    return -1;
  *changed = sqlite3_changes(s->wdb);
  return 0;
}

static int claim_locked(sqlite_store_t *s, const char *job_id, const char *worker, double lease_s,
                        int *unit, const char *what, char *err) {
  job_key_t job;
  int changed = 0;
  if (tx_begin(s, what, err))
    return -1;
  int rc = job_lookup_open(s, job_id, &job, what, err);
  if (rc)
    goto fail;
  rc = -1;
  sqlite3_stmt *st = s->w[W_CLAIM_FIND];
  if (sqlite3_bind_int64(st, 1, job.key) | sqlite3_bind_double(st, 2, clock_wall()) |
      sqlite3_bind_text(st, 3, worker, -1, SQLITE_STATIC)) {
    db_error(s, s->wdb, what, err);
    goto fail;
  }
  if (step_row(s, s->wdb, st, what, err) != 1)
    goto fail;
  const int free_unit = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 0);
  sqlite3_reset(st);
  if (free_unit >= 0) {
    if (lease_run(s, W_CLAIM_UNIT, job.key, worker, lease_s, free_unit, &changed, what, err))
      goto fail;
    *unit = free_unit;
  } else if (job.units_done == job.n_units) {
    if (lease_run(s, W_CLAIM_FINAL, job.key, worker, lease_s, 0, &changed, what, err))
      goto fail;
    *unit = changed ? job.n_units : -1;
  }
  return tx_commit(s, what, err);
fail:
  tx_rollback(s);
  *unit = -1;
  return rc;
}

static int sq_claim_unit(store_t *base, const char *job_id, const char *worker, double lease_s,
                         int *unit, const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  int rc = claim_locked(s, job_id, worker, lease_s, unit, what, err);
  return rc;
}

static int renew_locked(sqlite_store_t *s, const char *job_id, int unit, const char *worker,
                        double lease_s, int *held, store_state_t *state, const char *what,
                        char *err) {
  job_key_t job;
  int changed = 0;
  if (tx_begin(s, what, err))
    return -1;
  int rc = job_lookup(s, job_id, &job, what, err);
  if (rc)
    goto fail;
  rc = -1;
  if (lease_run(s, unit < job.n_units ? W_RENEW_UNIT : W_RENEW_FINAL, job.key, worker, lease_s,
                unit, &changed, what, err))
    goto fail;
  if (!changed && unit < job.n_units) { /* a stored unit needs no lease: nothing was lost */
    sqlite3_stmt *st = s->w[W_UNIT_STATE];
    if (sqlite3_bind_int64(st, 1, job.key) | sqlite3_bind_int(st, 2, unit)) {
      db_error(s, s->wdb, what, err);
      goto fail;
    }
    int found = step_row(s, s->wdb, st, what, err);
    if (found < 0)
      goto fail;
    if (found) {
      changed = sqlite3_column_int(st, 0);
      sqlite3_reset(st);
    }
  }
  *held = changed > 0;
  *state = job.state;
  return tx_commit(s, what, err);
fail:
  tx_rollback(s);
  return rc;
}

static int sq_renew_lease(store_t *base, const char *job_id, int unit, const char *worker,
                          double lease_s, int *held, store_state_t *state, const char *what,
                          char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  int rc = renew_locked(s, job_id, unit, worker, lease_s, held, state, what, err);
  return rc;
}

static int release_locked(sqlite_store_t *s, const char *worker, size_t *n_released, char *err) {
  const char *what = "release leases";
  size_t n = 0;
  if (tx_begin(s, what, err))
    return -1;
  static const int steps[] = {W_RELEASE_UNITS, W_RELEASE_FINAL};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    sqlite3_stmt *st = s->w[steps[i]];
    if (sqlite3_bind_text(st, 1, worker, -1, SQLITE_STATIC)) {
      db_error(s, s->wdb, what, err);
      goto fail;
    }
    if (run(s, s->wdb, st, what, err))
      goto fail;
    n += (size_t)sqlite3_changes(s->wdb);
  }
  if (tx_commit(s, what, err))
    return -1;
  *n_released = n;
  return 0;
fail:
  tx_rollback(s);
  return -1;
}

static int sq_release_leases(store_t *base, const char *worker, size_t *n_released, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  int rc = release_locked(s, worker, n_released, err);
  return rc;
}

/* ---- reading ---------------------------------------------------------- */

static int sq_job_get(store_t *base, const char *job_id, store_job_t *job, const char *what,
                      char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->r[R_JOB_GET];
  int rc = -1;
  if (sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC)) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  int found = step_row(s, s->rdb, st, what, err);
  if (found == 0) {
    rc = STORE_NOT_FOUND;
    err_set(err, "store %s: %s: no such job", s->path, what);
  } else if (found > 0) {
    rc = job_read(s, st, job, err);
    sqlite3_reset(st);
  }
out:
  return rc;
}

static int sq_job_spec(store_t *base, const char *job_id, char **spec, size_t *len,
                       const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  sqlite3_stmt *st = s->r[R_JOB_SPEC];
  int rc = -1;
  if (sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC)) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  int found = step_row(s, s->rdb, st, what, err);
  if (found == 0) {
    rc = STORE_NOT_FOUND;
    err_set(err, "store %s: %s: no such job", s->path, what);
  } else if (found > 0) {
    const unsigned char *text = sqlite3_column_text(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    if (!text && sqlite3_errcode(s->rdb) == SQLITE_NOMEM)
      err_set(err, "store %s: %s: out of memory", s->path, what);
    else if (!(*spec = malloc(n + 1)))
      err_set(err, "store %s: %s: out of memory", s->path, what);
    else {
      if (n)
        memcpy(*spec, text, n);
      (*spec)[n] = 0;
      if (len)
        *len = n;
      rc = 0;
    }
    sqlite3_reset(st);
  }
out:
  return rc;
}

static int sq_jobs_list(store_t *base, const char *user, size_t limit, store_job_t **jobs,
                        size_t *n, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  const char *what = "list jobs";
  void *items = NULL;
  size_t count = 0, cap = 0;
  int rc = -1, step;
  *jobs = NULL;
  *n = 0;
  sqlite3_stmt *st = s->r[user ? R_JOBS_USER : R_JOBS_ALL];
  if (sqlite3_bind_int64(st, 1, limit ? (int64_t)limit : -1) ||
      (user && sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC))) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (buffer_grow(&items, &cap, count + 1, sizeof(store_job_t)) != 0) {
      err_set(err, "store %s: %s: out of memory", s->path, what);
      goto out;
    }
    store_job_t *job = (store_job_t *)items + count++;
    if (job_read(s, st, job, err))
      goto out;
  }
  if (step != SQLITE_DONE) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  rc = 0;
out:
  sqlite3_reset(st);
  if (rc) {
    free(items);
    return rc;
  }
  *jobs = items;
  *n = count;
  return 0;
}

static int sq_jobs_find(store_t *base, const store_filter_t *f, size_t limit, store_job_t **jobs,
                        size_t *n, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  const char *what = "find jobs";
  void *items = NULL;
  size_t count = 0, cap = 0;
  int rc = -1, step;
  *jobs = NULL;
  *n = 0;
  sqlite3_stmt *st = s->r[R_JOBS_FIND];
  const char *state = f->state >= 0 ? store_state_name((store_state_t)f->state) : NULL;
  const char *const texts[] = {f->user, f->id_prefix, f->name, state};
  int bad = 0;
  for (int i = 0; i < 4; i++)
    bad |= texts[i] ? sqlite3_bind_text(st, i + 1, texts[i], -1, SQLITE_STATIC)
                    : sqlite3_bind_null(st, i + 1);
  bad |= f->before ? sqlite3_bind_double(st, 5, f->before_at) |
                         sqlite3_bind_text(st, 6, f->before_id, -1, SQLITE_STATIC)
                   : sqlite3_bind_null(st, 5) | sqlite3_bind_null(st, 6);
  bad |= sqlite3_bind_int64(st, 7, limit ? (int64_t)limit : -1);
  if (bad) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (buffer_grow(&items, &cap, count + 1, sizeof(store_job_t)) != 0) {
      err_set(err, "store %s: %s: out of memory", s->path, what);
      goto out;
    }
    store_job_t *job = (store_job_t *)items + count++;
    if (job_read(s, st, job, err))
      goto out;
  }
  if (step != SQLITE_DONE) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  rc = 0;
out:
  sqlite3_clear_bindings(st);
  sqlite3_reset(st);
  if (rc) {
    free(items);
    return rc;
  }
  *jobs = items;
  *n = count;
  return 0;
}

static int sq_user_usage(store_t *base, const char *user, int64_t *jobs, int64_t *bytes,
                         char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  const char *what = "read a user's usage";
  sqlite3_stmt *st = s->r[R_USAGE];
  int rc = -1;
  if (sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC))
    db_error(s, s->rdb, what, err);
  else if (step_row(s, s->rdb, st, what, err) == 1) {
    *jobs = sqlite3_column_int64(st, 0);
    *bytes = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    rc = 0;
  }
  return rc;
}

static int sq_jobs_resumable(store_t *base, store_resume_t **jobs, size_t *n, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  const char *what = "list jobs to resume";
  void *items = NULL;
  size_t count = 0, cap = 0;
  int rc = -1, step;
  *jobs = NULL;
  *n = 0;
  sqlite3_stmt *st = s->r[R_RESUMABLE];
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (buffer_grow(&items, &cap, count + 1, sizeof(store_resume_t)) != 0) {
      err_set(err, "store %s: %s: out of memory", s->path, what);
      goto out;
    }
    store_resume_t *resume = (store_resume_t *)items + count++;
    if (job_read(s, st, &resume->job, err))
      goto out;
    resume->first_pending = sqlite3_column_type(st, JOB_COLUMNS_N) == SQLITE_NULL
                                ? resume->job.n_units
                                : sqlite3_column_int(st, JOB_COLUMNS_N);
  }
  if (step != SQLITE_DONE) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  rc = 0;
out:
  sqlite3_reset(st);
  if (rc) {
    free(items);
    return rc;
  }
  *jobs = items;
  *n = count;
  return 0;
}

static int rows_read_locked(sqlite_store_t *s, const char *job_id, int64_t first_seq,
                            size_t max_rows, store_row_fn fn, void *ctx, size_t *n_read,
                            store_state_t *state, const char *what, char *err) {
  int rc = -1, step = SQLITE_DONE;
  size_t count = 0;
  if (run(s, s->rdb, s->r[R_BEGIN], what, err))
    return -1;
  sqlite3_stmt *st = s->r[R_JOB_KEY];
  if (sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC)) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  int found = step_row(s, s->rdb, st, what, err);
  if (found <= 0) {
    if (found == 0) {
      rc = STORE_NOT_FOUND;
      err_set(err, "store %s: %s: no such job", s->path, what);
    }
    goto out;
  }
  int64_t key = sqlite3_column_int64(st, 0);
  store_state_t job_state;
  int bad = store_state_parse((const char *)sqlite3_column_text(st, 1), &job_state);
  sqlite3_reset(st);
  if (bad) {
    err_set(err, "store %s: %s: unknown job state", s->path, what);
    goto out;
  }
  st = s->r[R_ROWS];
  if (sqlite3_bind_int64(st, 1, key) | sqlite3_bind_int64(st, 2, first_seq) |
      sqlite3_bind_int64(st, 3, max_rows ? (int64_t)max_rows : -1)) {
    db_error(s, s->rdb, what, err);
    goto out;
  }
  int stopped = 0;
  while (!stopped && (step = sqlite3_step(st)) == SQLITE_ROW) {
    const char *text = (const char *)sqlite3_column_text(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    if (!text && len == 0 && sqlite3_errcode(s->rdb) == SQLITE_NOMEM) {
      err_set(err, "store %s: %s: out of memory", s->path, what);
      sqlite3_reset(st);
      goto out;
    }
    count++;
    stopped = fn(ctx, sqlite3_column_int64(st, 0), text ? text : "", len);
  }
  if (!stopped && step != SQLITE_DONE) {
    db_error(s, s->rdb, what, err);
    sqlite3_reset(st);
    goto out;
  }
  sqlite3_reset(st);
  if (n_read)
    *n_read = count;
  if (state)
    *state = job_state;
  rc = 0;
out:
  if (!sqlite3_get_autocommit(s->rdb))
    run(s, s->rdb, s->r[R_END], what, NULL);
  return rc;
}

static int sq_rows_read(store_t *base, const char *job_id, int64_t first_seq, size_t max_rows,
                        store_row_fn fn, void *ctx, size_t *n_read, store_state_t *state,
                        const char *what, char *err) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  int rc = rows_read_locked(s, job_id, first_seq, max_rows, fn, ctx, n_read, state, what, err);
  return rc;
}

static const store_ops_t SQLITE_OPS = {
    .close = sq_close,
    .job_create = sq_job_create,
    .job_get = sq_job_get,
    .job_spec = sq_job_spec,
    .jobs_list = sq_jobs_list,
    .jobs_find = sq_jobs_find,
    .jobs_resumable = sq_jobs_resumable,
    .rows_read = sq_rows_read,
    .purge = sq_purge,
    .claim_unit = sq_claim_unit,
    .renew_lease = sq_renew_lease,
    .release_leases = sq_release_leases,
    .user_usage = sq_user_usage,
};
