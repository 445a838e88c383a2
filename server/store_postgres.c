/* store_postgres.c - the job store on PostgreSQL (store.h), shared by every
 * hydrad of a lab: any of them accepts jobs, claims work units and serves
 * results.
 *
 * Schema (tables prefixed hydra_, so the database may hold others): jobs
 * keyed by a bigint (the 32-hex id is unique), units (job, idx) with a lease
 * (owner, until), rows (job, seq). A job's own row is the lock that orders
 * everything written to it: a unit's completion, a state change or an append
 * takes it FOR UPDATE, numbers its rows from the job's row count and commits
 * rows, unit and count together, so rows are numbered in commit order without
 * gaps and a reader sees a prefix. Units are claimed with SELECT ... FOR
 * UPDATE SKIP LOCKED, the lowest pending unit whose lease ran out (by the
 * database server's clock) first. Rows travel by COPY, one round trip per
 * unit. Migrations run under an advisory lock, so workers that start
 * together migrate once.
 *
 * Each store holds three connections (writes, reads, leases), each used by
 * one call at a time under its lock in store.c (lease renewals never wait
 * behind a long write); a connection found broken is reset before the next
 * call, so a database restart costs the calls made while it is down, not
 * the process. The job state machine's moves are store.c's; this file holds
 * their steps' SQL (POSTGRES_TX). */
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "store_impl.h"

#define MIGRATION_LOCK 0x68796472 /* "hydr": pg_advisory_xact_lock key */
#define READ_PAGE 4096            /* rows per query when reading a job's rows */
#define COPY_CHUNK (1 << 20)
#define MAX_SECRETS 8
#define NOW_S "extract(epoch from clock_timestamp())::float8"

static const char *const MIGRATIONS[] = {
    /* 1: jobs, units with leases, rows */
    "CREATE TABLE hydra_jobs ("
    " key bigserial PRIMARY KEY,"
    " id text NOT NULL UNIQUE,"
    " user_name text NOT NULL,"
    " model text NOT NULL,"
    " spec text NOT NULL,"
    " state text NOT NULL CHECK (state IN ('queued','running','done','failed','cancelled')),"
    " error text NOT NULL DEFAULT '',"
    " created_at float8 NOT NULL,"
    " started_at float8 NOT NULL DEFAULT 0,"
    " finished_at float8 NOT NULL DEFAULT 0,"
    " deadline float8 NOT NULL DEFAULT 0,"
    " n_units integer NOT NULL,"
    " units_done integer NOT NULL DEFAULT 0,"
    " variants_total bigint NOT NULL,"
    " variants_done bigint NOT NULL DEFAULT 0,"
    " n_rows bigint NOT NULL DEFAULT 0,"
    " final_owner text NOT NULL DEFAULT '',"
    " final_until float8 NOT NULL DEFAULT 0);"
    "CREATE INDEX hydra_jobs_by_user ON hydra_jobs (user_name, created_at);"
    "CREATE INDEX hydra_jobs_by_state ON hydra_jobs (state, created_at);"
    "CREATE INDEX hydra_jobs_by_finish ON hydra_jobs (finished_at);"
    "CREATE TABLE hydra_units ("
    " job bigint NOT NULL,"
    " idx integer NOT NULL,"
    " state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','done')),"
    " first_seq bigint NOT NULL DEFAULT 0,"
    " n_rows bigint NOT NULL DEFAULT 0,"
    " finished_at float8 NOT NULL DEFAULT 0,"
    " lease_owner text NOT NULL DEFAULT '',"
    " lease_until float8 NOT NULL DEFAULT 0,"
    " PRIMARY KEY (job, idx));"
    "CREATE INDEX hydra_units_by_owner ON hydra_units (lease_owner) WHERE lease_owner <> '';"
    "CREATE TABLE hydra_result_rows ("
    " job bigint NOT NULL,"
    " seq bigint NOT NULL,"
    " body text NOT NULL,"
    " PRIMARY KEY (job, seq));",
    /* 2: claims and resumes find pending units without walking the done ones */
    "CREATE INDEX hydra_units_pending ON hydra_units (job, idx) WHERE state = 'pending';",
    /* 3: the model a job was submitted for; why a job waits */
    "ALTER TABLE hydra_jobs ADD COLUMN fingerprint text NOT NULL DEFAULT '';"
    "ALTER TABLE hydra_jobs ADD COLUMN note text NOT NULL DEFAULT '';",
    /* 4: the bytes a job keeps (its spec and rows), for per-user quotas */
    "ALTER TABLE hydra_jobs ADD COLUMN bytes bigint NOT NULL DEFAULT 0;"
    "UPDATE hydra_jobs j SET bytes = octet_length(spec) + coalesce((SELECT "
    "sum(octet_length(body)) FROM hydra_result_rows r WHERE r.job = j.key), 0);",
    /* 5: how a user finds a job again: its name, labels and prompt count
     * (0: stored before it was kept) */
    "ALTER TABLE hydra_jobs ADD COLUMN name text NOT NULL DEFAULT '';"
    "ALTER TABLE hydra_jobs ADD COLUMN labels text NOT NULL DEFAULT '';"
    "ALTER TABLE hydra_jobs ADD COLUMN n_prompts integer NOT NULL DEFAULT 0;",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

#define JOB_COLUMNS                                                                                \
  "id, user_name, model, state, error, created_at, started_at, finished_at, deadline, n_units, "   \
  "units_done, variants_total, variants_done, n_rows, fingerprint, note, bytes, name, labels, "    \
  "n_prompts"
#define JOB_COLUMNS_N 20
#define FINAL_STATES "('done','failed','cancelled')"

typedef struct {
  store_t base;
  char *name;     /* the URL without its password */
  char *conninfo; /* the URL as given */
  /* the password as libpq reads it, and the pieces of the URL's user part
   * after ':' (libpq quotes such pieces in errors): scrubbed from messages */
  char *secrets[MAX_SECRETS];
  int n_secrets;
  PGconn *w, *r; /* w is NULL when read-only */
  PGconn *l;     /* leases: renewals never wait behind a long write */
} pg_store_t;

/* What a call knows of a job (job_find). */
typedef struct {
  char key[24];
  store_state_t state;
  int n_units, units_done;
  int64_t n_rows;
} job_lock_t;

/* ---- connections and errors ------------------------------------------- */

/* The URL with any password left out: the user part's ":secret" and a
 * "password=" parameter. */
static char *redact(const char *url) {
  size_t n = strlen(url);
  char *out = malloc(n + 1);
  if (!out)
    return NULL;
  const char *scheme = strstr(url, "://"), *rest = scheme ? scheme + 3 : url;
  const char *query = strchr(rest, '?'), *at = NULL;
  for (const char *p = rest; *p && (!query || p < query); p++)
    if (*p == '@')
      at = p; /* the last '@' before the query ends the user part */
  size_t o = 0;
  if (at) { /* userinfo: keep the user, drop ":password" */
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    const char *user_end = colon ? colon : at;
    memcpy(out, url, (size_t)(user_end - url));
    o = (size_t)(user_end - url);
    url = at;
  }
  for (const char *p = url; *p;) {
    const int param_start = p > url && (p[-1] == '?' || p[-1] == '&');
    if (param_start && (strncmp(p, "password=", 9) == 0 || strncmp(p, "sslpassword=", 12) == 0)) {
      while (*p && *p != '&')
        p++;
      if (*p == '&')
        p++;
      continue;
    }
    out[o++] = *p++;
  }
  while (o > 0 && (out[o - 1] == '&' || out[o - 1] == '?'))
    o--;
  out[o] = 0;
  return out;
}

/* The first line of a message, without its "ERROR:  " prefix. */
static int pg_fail(const pg_store_t *s, const char *message, const char *what, char *err) {
  char line[HYDRA_ERR_LEN];
  const char *m = message && *message ? message : "unknown error";
  if (strncmp(m, "ERROR:  ", 8) == 0)
    m += 8;
  snprintf(line, sizeof line, "%.*s", (int)strcspn(m, "\n"), m);
  /* libpq may quote what it could not use: never the password */
  for (int i = 0; i < s->n_secrets; i++)
    for (char *at; (at = strstr(line, s->secrets[i]));)
      memset(at, '*', strlen(s->secrets[i]));
  return err_set(err, "store %s: %s: %s", s->name, what, line);
}

/* Resets a connection found broken (the server restarted, the network
 * dropped); -1 with err when it stays broken. */
static int conn_ready(const pg_store_t *s, PGconn *c, const char *what, char *err) {
  if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_UNKNOWN)
    return 0;
  PQreset(c);
  if (PQstatus(c) != CONNECTION_OK)
    return pg_fail(s, PQerrorMessage(c), what, err);
  return 0;
}

/* Runs sql with text parameters (NULL for SQL NULL). *out (may be NULL) gets
 * the result, which the caller clears; without out the result is cleared. */
static int q(const pg_store_t *s, PGconn *c, const char *sql, int n, const char *const *params,
             PGresult **out, const char *what, char *err) {
  PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    pg_fail(s, res ? PQresultErrorMessage(res) : PQerrorMessage(c), what, err);
    PQclear(res);
    return -1;
  }
  if (out)
    *out = res;
  else
    PQclear(res);
  return 0;
}

static int begin(const pg_store_t *s, PGconn *c, const char *sql, const char *what, char *err) {
  if (conn_ready(s, c, what, err))
    return -1;
  return q(s, c, sql, 0, NULL, NULL, what, err);
}

static int commit(const pg_store_t *s, PGconn *c, const char *what, char *err) {
  return q(s, c, "COMMIT", 0, NULL, NULL, what, err);
}

/* Ends a failed transaction; the connection may be broken. */
static void rollback(PGconn *c) {
  if (PQtransactionStatus(c) != PQTRANS_IDLE)
    PQclear(PQexec(c, "ROLLBACK"));
}

static int64_t col_i64(const PGresult *res, int row, int col) {
  return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static double col_f64(const PGresult *res, int row, int col) {
  return strtod(PQgetvalue(res, row, col), NULL);
}

/* Reads the JOB_COLUMNS starting at column 0 of a row. */
static int job_read(const pg_store_t *s, const PGresult *res, int row, store_job_t *job,
                    char *err) {
  memset(job, 0, sizeof *job);
  snprintf(job->id, sizeof job->id, "%s", PQgetvalue(res, row, 0));
  snprintf(job->user, sizeof job->user, "%s", PQgetvalue(res, row, 1));
  snprintf(job->model, sizeof job->model, "%s", PQgetvalue(res, row, 2));
  if (store_state_parse(PQgetvalue(res, row, 3), &job->state))
    return err_set(err, "store %s: job %s: unknown state '%s'", s->name, job->id,
                   PQgetvalue(res, row, 3));
  snprintf(job->error, sizeof job->error, "%s", PQgetvalue(res, row, 4));
  job->created_at = col_f64(res, row, 5);
  job->started_at = col_f64(res, row, 6);
  job->finished_at = col_f64(res, row, 7);
  job->deadline = col_f64(res, row, 8);
  job->n_units = (int)col_i64(res, row, 9);
  job->units_done = (int)col_i64(res, row, 10);
  job->variants_total = col_i64(res, row, 11);
  job->variants_done = col_i64(res, row, 12);
  job->rows = col_i64(res, row, 13);
  snprintf(job->fingerprint, sizeof job->fingerprint, "%s", PQgetvalue(res, row, 14));
  snprintf(job->note, sizeof job->note, "%s", PQgetvalue(res, row, 15));
  job->bytes = col_i64(res, row, 16);
  snprintf(job->name, sizeof job->name, "%s", PQgetvalue(res, row, 17));
  snprintf(job->labels, sizeof job->labels, "%s", PQgetvalue(res, row, 18));
  job->n_prompts = (int)col_i64(res, row, 19);
  return 0;
}

/* ---- opening ---------------------------------------------------------- */

/* The schema version: 0 for a database without hydra's tables. */
static int schema_version(const pg_store_t *s, PGconn *c, int *version, char *err) {
  PGresult *res = NULL;
  if (q(s, c,
        "SELECT to_regclass('hydra_schema') IS NOT NULL, to_regclass('hydra_jobs') IS NOT NULL", 0,
        NULL, &res, "read the schema", err))
    return -1;
  const int has_version = PQgetvalue(res, 0, 0)[0] == 't',
            has_jobs = PQgetvalue(res, 0, 1)[0] == 't';
  PQclear(res);
  *version = 0;
  if (!has_version) {
    if (has_jobs)
      return err_set(err, "store %s: not a hydra store (a hydra_jobs table without hydra_schema)",
                     s->name);
    return 0;
  }
  if (q(s, c, "SELECT coalesce(max(version), 0) FROM hydra_schema", 0, NULL, &res,
        "read the schema version", err))
    return -1;
  *version = (int)col_i64(res, 0, 0);
  PQclear(res);
  if (*version > SCHEMA_VERSION)
    return err_set(err, "store %s: schema version %d is newer than this hydrad's (%d)", s->name,
                   *version, SCHEMA_VERSION);
  return 0;
}

static int migrate(const pg_store_t *s, char *err) {
  char what[96], sql[160];
  int version;
  if (begin(s, s->w, "BEGIN", "begin the schema migration", err))
    return -1;
  snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d)", MIGRATION_LOCK);
  if (q(s, s->w, sql, 0, NULL, NULL, "lock the schema", err) ||
      schema_version(s, s->w, &version, err))
    goto fail;
  if (version == SCHEMA_VERSION)
    return commit(s, s->w, "end the schema check", err);
  if (q(s, s->w, "CREATE TABLE IF NOT EXISTS hydra_schema (version integer NOT NULL)", 0, NULL,
        NULL, "create the hydra_schema table", err))
    goto fail;
  for (int v = version + 1; v <= SCHEMA_VERSION; v++) {
    snprintf(what, sizeof what, "migrate the schema to version %d", v);
    PGresult *res = PQexec(s->w, MIGRATIONS[v - 1]); /* several statements: no parameters */
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      pg_fail(s, PQresultErrorMessage(res), what, err);
      PQclear(res);
      goto fail;
    }
    PQclear(res);
  }
  snprintf(sql, sizeof sql, "DELETE FROM hydra_schema; INSERT INTO hydra_schema VALUES (%d)",
           SCHEMA_VERSION);
  PGresult *res = PQexec(s->w, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    pg_fail(s, PQresultErrorMessage(res), "record the schema version", err);
    PQclear(res);
    goto fail;
  }
  PQclear(res);
  return commit(s, s->w, "commit the schema migration", err);
fail:
  rollback(s->w);
  return -1;
}

/* The server's notices ("terminating connection due to ...") are not
 * errors; the call that meets the closed connection reports it. */
static void ignore_notice(void *arg, const char *message) {
  (void)arg, (void)message;
}

/* Connects with a bounded connect and TCP keepalives, so that a database
 * host that vanishes fails calls within a minute instead of hanging them;
 * the URL's own settings of these win (they come later). */
static int connect_db(const pg_store_t *s, PGconn **c, char *err) {
  /* A statement waits at most a minute for a row lock (a worker cut off
   * mid-transaction holds its job's row until the server notices); a session
   * idle inside a transaction for two minutes is ended by the server. */
  const char *const keys[] = {"connect_timeout",  "keepalives_idle",  "keepalives_interval",
                              "keepalives_count", "application_name", "client_encoding",
                              "options",          "dbname",           NULL};
  const char *const values[] = {
      "10",
      "30",
      "10",
      "3",
      "hydrad",
      "UTF8",
      "-c lock_timeout=60000 -c idle_in_transaction_session_timeout=120000",
      s->conninfo,
      NULL};
  *c = PQconnectdbParams(keys, values, 1);
  if (!*c)
    return err_set(err, "store %s: connect: out of memory", s->name);
  if (PQstatus(*c) != CONNECTION_OK)
    return pg_fail(s, PQerrorMessage(*c), "connect", err);
  PQsetNoticeProcessor(*c, ignore_notice, NULL);
  return 0;
}

static void add_secret(pg_store_t *s, const char *text, size_t n) {
  if (n >= 2 && s->n_secrets < MAX_SECRETS && (s->secrets[s->n_secrets] = strndup(text, n)))
    s->n_secrets++;
}

/* The URL's user part after the first ':', whole and cut at URL delimiters. */
static void add_user_part_secrets(pg_store_t *s, const char *url) {
  const char *scheme = strstr(url, "://"), *rest = scheme ? scheme + 3 : url;
  const char *query = strchr(rest, '?'), *at = NULL;
  for (const char *p = rest; *p && (!query || p < query); p++)
    if (*p == '@')
      at = p;
  const char *colon = at ? memchr(rest, ':', (size_t)(at - rest)) : NULL;
  if (!colon)
    return;
  add_secret(s, colon + 1, (size_t)(at - colon - 1));
  for (const char *p = colon + 1; p < at;) {
    size_t n = strcspn(p, "/:#@?");
    if (p + n > at)
      n = (size_t)(at - p);
    add_secret(s, p, n);
    p += n + 1;
  }
}

static const store_ops_t POSTGRES_OPS;
static const store_tx_ops_t POSTGRES_TX;
static void pg_close(store_t *base);

store_t *store_postgres_open(const char *url, int flags, char *err) {
  pg_store_t *s = calloc(1, sizeof *s);
  int version = 0;
  if (!s || !(s->name = redact(url)) || !(s->conninfo = strdup(url))) {
    err_set(err, "store postgres: out of memory");
    if (s)
      free(s->name);
    free(s);
    return NULL;
  }
  s->base.ops = &POSTGRES_OPS;
  s->base.tx = &POSTGRES_TX;
  s->base.lease_lock_own = 1; /* leases have their own connection */
  s->base.name = s->name;
  s->base.readonly = (flags & STORE_READONLY) != 0;
  s->base.shared = 1;
  char *parse_error = NULL;
  PQconninfoOption *opts = PQconninfoParse(url, &parse_error);
  if (!opts) { /* libpq's message may quote the password: not shown */
    PQfreemem(parse_error);
    err_set(err, "store %s: not a valid PostgreSQL URI", s->name);
    goto fail;
  }
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
      add_secret(s, o->val, strlen(o->val));
  PQconninfoFree(opts);
  add_user_part_secrets(s, url);
  if (store_head_init(&s->base, err))
    goto fail;
  if (!s->base.readonly &&
      (connect_db(s, &s->w, err) || migrate(s, err) || connect_db(s, &s->l, err)))
    goto fail;
  if (connect_db(s, &s->r, err) || schema_version(s, s->r, &version, err))
    goto fail;
  if (version != SCHEMA_VERSION) {
    err_set(err, "store %s: not a hydra store (schema version %d, this hydrad needs %d)", s->name,
            version, SCHEMA_VERSION);
    goto fail;
  }
  return &s->base;
fail:
  pg_close(&s->base);
  return NULL;
}

static void pg_close(store_t *base) {
  pg_store_t *s = (pg_store_t *)base;
  if (s->w)
    PQfinish(s->w);
  if (s->r)
    PQfinish(s->r);
  if (s->l)
    PQfinish(s->l);
  store_head_destroy(&s->base);
  for (int i = 0; i < s->n_secrets; i++)
    free(s->secrets[i]);
  free(s->conninfo);
  free(s->name);
  free(s);
}

/* ---- writing ---------------------------------------------------------- */

/* Reads the job on connection c, inside its transaction; with JOB_LOCK its
 * row stays locked until the transaction ends, with JOB_OPEN a job that has
 * ended is STORE_STATE. 0, STORE_NOT_FOUND, STORE_STATE or -1. */
enum { JOB_LOCK = 1, JOB_OPEN = 2 };
static int job_find(pg_store_t *s, PGconn *c, const char *job_id, int how, job_lock_t *job,
                    const char *what, char *err) {
  PGresult *res = NULL;
  const char *p[] = {job_id};
  if (q(s, c,
        how & JOB_LOCK ? "SELECT key, state, n_units, units_done, n_rows FROM hydra_jobs "
                         "WHERE id = $1 FOR UPDATE"
                       : "SELECT key, state, n_units, units_done, n_rows FROM hydra_jobs "
                         "WHERE id = $1",
        1, p, &res, what, err))
    return -1;
  if (PQntuples(res) == 0) {
    PQclear(res);
    err_set(err, "store %s: %s: no job %s", s->name, what, job_id);
    return STORE_NOT_FOUND;
  }
  snprintf(job->key, sizeof job->key, "%s", PQgetvalue(res, 0, 0));
  int bad = store_state_parse(PQgetvalue(res, 0, 1), &job->state);
  job->n_units = (int)col_i64(res, 0, 2);
  job->units_done = (int)col_i64(res, 0, 3);
  job->n_rows = col_i64(res, 0, 4);
  PQclear(res);
  if (bad)
    return err_set(err, "store %s: %s: job %s has an unknown state", s->name, what, job_id);
  if ((how & JOB_OPEN) && store_state_final(job->state))
    return err_set(err, "store %s: %s: the job is %s", s->name, what, store_state_name(job->state)),
           STORE_STATE;
  return 0;
}

/* Appends one COPY line (text format: job, seq, body) to out, escaping in
 * the body what COPY reads specially. 0, or -1 when out of memory. */
static int copy_line(buffer_t *out, const char *job_key, int64_t seq, const char *body) {
  if (buffer_appendf(out, "%s\t%" PRId64 "\t", job_key, seq) != 0)
    return -1;
  for (const char *p = body;;) {
    const size_t plain = strcspn(p, "\\\t\n\r");
    if (buffer_append(out, p, plain) != 0)
      return -1;
    p += plain;
    if (!*p)
      return buffer_append(out, "\n", 1);
    const char escaped[2] = {'\\', *p == '\t' ? 't' : *p == '\n' ? 'n' : *p == '\r' ? 'r' : '\\'};
    if (buffer_append(out, escaped, 2) != 0)
      return -1;
    p++;
  }
}

/* Inserts rows numbered first_seq, first_seq + 1, ... by one COPY. */
static int rows_insert(pg_store_t *s, const char *job_key, int64_t first_seq,
                       const char *const rows[], size_t n_rows, const char *what, char *err) {
  if (n_rows == 0)
    return 0;
  PGresult *res = PQexec(s->w, "COPY hydra_result_rows (job, seq, body) FROM STDIN");
  if (PQresultStatus(res) != PGRES_COPY_IN) {
    pg_fail(s, PQresultErrorMessage(res), what, err);
    PQclear(res);
    return -1;
  }
  PQclear(res);
  /* Sent in pieces of about COPY_CHUNK bytes (whole lines). */
  buffer_t lines = {0};
  int failed = 0;
  for (size_t i = 0; i < n_rows && !failed; i++) {
    if (copy_line(&lines, job_key, first_seq + (int64_t)i, rows[i]) != 0) {
      err_set(err, "store %s: %s: out of memory", s->name, what);
      failed = 2;
    } else if (lines.len >= COPY_CHUNK || i + 1 == n_rows) {
      if (lines.len > INT_MAX || PQputCopyData(s->w, lines.data, (int)lines.len) != 1)
        failed = 1;
      buffer_clear(&lines);
    }
  }
  buffer_free(&lines);
  if (PQputCopyEnd(s->w, failed ? "hydra: the rows could not be sent" : NULL) != 1 && !failed)
    failed = 1;
  int rc = 0;
  while ((res = PQgetResult(s->w))) {
    if (PQresultStatus(res) == PGRES_COPY_IN) { /* the end was not taken: give up */
      PQclear(res);
      if (!rc)
        pg_fail(s, PQerrorMessage(s->w), what, err);
      rc = -1;
      break;
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK && !rc) {
      if (failed != 2)
        pg_fail(s, PQresultErrorMessage(res), what, err);
      rc = -1;
    }
    PQclear(res);
  }
  if (failed == 1 && !rc)
    pg_fail(s, PQerrorMessage(s->w), what, err);
  if (failed || rc)
    return -1;
  /* the job's bytes, in the same transaction */
  int64_t bytes = 0;
  for (size_t i = 0; i < n_rows; i++)
    bytes += (int64_t)strlen(rows[i]);
  char bytes_s[24];
  snprintf(bytes_s, sizeof bytes_s, "%" PRId64, bytes);
  const char *p[] = {job_key, bytes_s};
  return q(s, s->w, "UPDATE hydra_jobs SET bytes = bytes + $2::bigint WHERE key = $1", 2, p, NULL,
           what, err);
}

static int job_create_locked(pg_store_t *s, const store_job_t *job, const char *spec,
                             size_t spec_len, const char *what, char *err) {
  char deadline[40], n_units[16], variants[24], n_prompts[16];
  if (memchr(spec, 0, spec_len))
    return err_set(err, "store %s: %s: the spec holds a NUL byte", s->name, what);
  char *text = malloc(spec_len + 1);
  if (!text)
    return err_set(err, "store %s: %s: out of memory", s->name, what);
  memcpy(text, spec, spec_len);
  text[spec_len] = 0;
  snprintf(deadline, sizeof deadline, "%.17g", job->deadline);
  snprintf(n_units, sizeof n_units, "%d", job->n_units);
  snprintf(variants, sizeof variants, "%" PRId64, job->variants_total);
  snprintf(n_prompts, sizeof n_prompts, "%d", job->n_prompts);
  const char *p[] = {job->id,  job->user,        job->model, text,        deadline, n_units,
                     variants, job->fingerprint, job->name,  job->labels, n_prompts};
  PGresult *res = NULL;
  int rc = -1;
  if (begin(s, s->w, "BEGIN", what, err))
    goto out;
  if (q(s, s->w,
        "INSERT INTO hydra_jobs (id, user_name, model, spec, state, created_at, deadline, "
        "n_units, variants_total, fingerprint, bytes, name, labels, n_prompts) "
        "VALUES ($1, $2, $3, $4, 'queued', " NOW_S ", $5, $6, $7, $8, octet_length($4), $9, $10, "
        "$11) ON CONFLICT (id) DO NOTHING RETURNING key",
        11, p, &res, what, err))
    goto out;
  if (PQntuples(res) == 0) {
    rc = STORE_DUPLICATE;
    err_set(err, "store %s: %s: the id is taken", s->name, what);
    goto out;
  }
  const char *u[] = {PQgetvalue(res, 0, 0), n_units};
  if (q(s, s->w,
        "INSERT INTO hydra_units (job, idx) SELECT $1::bigint, generate_series(0, $2::int - 1)", 2,
        u, NULL, what, err) ||
      commit(s, s->w, what, err))
    goto out;
  rc = 0;
out:
  PQclear(res);
  if (rc)
    rollback(s->w);
  free(text);
  return rc;
}

static int pg_job_create(store_t *base, const store_job_t *job, const char *spec, size_t spec_len,
                         const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  int rc = job_create_locked(s, job, spec, spec_len, what, err);
  return rc;
}

/* ---- the job state machine's steps (store.c runs them) ---------------- */

/* The job's key as a query parameter. */
typedef struct {
  char text[24];
} key_text_t;

static key_text_t key_text(const store_job_row_t *job) {
  key_text_t k;
  snprintf(k.text, sizeof k.text, "%" PRId64, job->key);
  return k;
}

static int pg_tx_begin(store_t *base, const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  return begin(s, s->w, "BEGIN", what, err);
}

static int pg_tx_commit(store_t *base, const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  return commit(s, s->w, what, err);
}

static void pg_tx_rollback(store_t *base) {
  rollback(((pg_store_t *)base)->w);
}

static int pg_tx_job_lock(store_t *base, const char *job_id, store_job_row_t *job, const char *what,
                          char *err) {
  pg_store_t *s = (pg_store_t *)base;
  job_lock_t found;
  const int rc = job_find(s, s->w, job_id, JOB_LOCK, &found, what, err);
  if (rc)
    return rc;
  *job = (store_job_row_t){.key = strtoll(found.key, NULL, 10),
                           .state = found.state,
                           .n_units = found.n_units,
                           .units_done = found.units_done,
                           .n_rows = found.n_rows};
  return 0;
}

static int pg_tx_rows_insert(store_t *base, const store_job_row_t *job, const char *const rows[],
                             size_t n_rows, const char *what, char *err) {
  const key_text_t k = key_text(job);
  return rows_insert((pg_store_t *)base, k.text, job->n_rows, rows, n_rows, what, err);
}

static int pg_tx_unit_done(store_t *base, const store_job_row_t *job, int unit, int *done,
                           const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const key_text_t k = key_text(job);
  char unit_s[16];
  snprintf(unit_s, sizeof unit_s, "%d", unit);
  const char *p[] = {k.text, unit_s};
  PGresult *res = NULL;
  if (q(s, s->w, "SELECT state = 'done' FROM hydra_units WHERE job = $1 AND idx = $2", 2, p, &res,
        what, err))
    return -1;
  const int found = PQntuples(res) > 0;
  if (found)
    *done = PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  return found ? 0 : err_set(err, "store %s: %s: the unit is missing", s->name, what);
}

static int pg_tx_unit_store(store_t *base, const store_job_row_t *job, int unit, size_t n_rows,
                            int64_t variants, const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const key_text_t k = key_text(job);
  char unit_s[16], first[24], count[24], delta[24];
  snprintf(unit_s, sizeof unit_s, "%d", unit);
  snprintf(first, sizeof first, "%" PRId64, job->n_rows);
  snprintf(count, sizeof count, "%zu", n_rows);
  snprintf(delta, sizeof delta, "%" PRId64, variants);
  const char *pu[] = {k.text, unit_s, first, count};
  const char *pj[] = {k.text, delta, count};
  return q(s, s->w,
           "UPDATE hydra_units SET state = 'done', first_seq = $3, n_rows = $4, finished_at "
           "= " NOW_S ", lease_owner = '', lease_until = 0 WHERE job = $1 AND idx = $2",
           4, pu, NULL, what, err) ||
                 q(s, s->w,
                   "UPDATE hydra_jobs SET units_done = units_done + 1, variants_done = "
                   "variants_done + $2, n_rows = n_rows + $3, note = '' WHERE key = $1",
                   3, pj, NULL, what, err)
             ? -1
             : 0;
}

static int pg_tx_job_move(store_t *base, const store_job_row_t *job, store_state_t state,
                          const char *error, size_t n_rows, const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const key_text_t k = key_text(job);
  char count[24];
  snprintf(count, sizeof count, "%zu", n_rows);
  const char *p[] = {k.text, store_state_name(state), error, count};
  return q(s, s->w,
           "UPDATE hydra_jobs SET state = $2::text, error = $3, note = '', "
           "started_at = CASE WHEN started_at = 0 AND $2::text IN ('running','done') THEN " NOW_S
           " ELSE started_at END, "
           "finished_at = CASE WHEN $2::text IN " FINAL_STATES " THEN " NOW_S " ELSE 0 END, "
           "n_rows = n_rows + $4::bigint WHERE key = $1",
           4, p, NULL, what, err);
}

static int pg_tx_rows_count(store_t *base, const store_job_row_t *job, size_t n_rows,
                            const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const key_text_t k = key_text(job);
  char count[24];
  snprintf(count, sizeof count, "%zu", n_rows);
  const char *p[] = {k.text, count};
  return q(s, s->w, "UPDATE hydra_jobs SET n_rows = n_rows + $2 WHERE key = $1", 2, p, NULL, what,
           err);
}

static int pg_tx_job_note(store_t *base, const store_job_row_t *job, const char *note,
                          const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const key_text_t k = key_text(job);
  const char *p[] = {k.text, note};
  return q(s, s->w, "UPDATE hydra_jobs SET note = $2 WHERE key = $1", 2, p, NULL, what, err);
}

static int pg_tx_job_requeue(store_t *base, const store_job_row_t *job, store_state_t *state,
                             const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const key_text_t k = key_text(job);
  const char *p[] = {k.text};
  PGresult *res = NULL;
  if (q(s, s->w,
        "UPDATE hydra_jobs SET state = CASE WHEN started_at > 0 THEN 'running' ELSE 'queued' "
        "END, error = '', note = '', finished_at = 0, final_owner = '', final_until = 0 "
        "WHERE key = $1 RETURNING state",
        1, p, &res, what, err))
    return -1;
  const int bad = PQntuples(res) != 1 || store_state_parse(PQgetvalue(res, 0, 0), state);
  PQclear(res);
  if (bad)
    return err_set(err, "store %s: %s: the job's new state is unreadable", s->name, what);
  return q(s, s->w,
           "UPDATE hydra_units SET lease_owner = '', lease_until = 0 WHERE job = $1 AND "
           "state = 'pending'",
           1, p, NULL, what, err);
}

static const store_tx_ops_t POSTGRES_TX = {
    .begin = pg_tx_begin,
    .commit = pg_tx_commit,
    .rollback = pg_tx_rollback,
    .job_lock = pg_tx_job_lock,
    .rows_insert = pg_tx_rows_insert,
    .unit_done = pg_tx_unit_done,
    .unit_store = pg_tx_unit_store,
    .job_move = pg_tx_job_move,
    .rows_count = pg_tx_rows_count,
    .job_note = pg_tx_job_note,
    .job_requeue = pg_tx_job_requeue,
};

static int purge_locked(pg_store_t *s, double older_than, size_t *n_purged, char *err) {
  const char *what = "purge finished jobs";
  char before[40];
  PGresult *res = NULL;
  snprintf(before, sizeof before, "%.17g", older_than);
  const char *p[] = {before};
  if (conn_ready(s, s->w, what, err))
    return -1;
  /* One statement: the jobs it deletes are the ones whose units and rows go. */
  if (q(s, s->w,
        "WITH j AS (DELETE FROM hydra_jobs WHERE state IN " FINAL_STATES
        " AND finished_at < $1 RETURNING key), "
        "u AS (DELETE FROM hydra_units WHERE job IN (SELECT key FROM j)), "
        "r AS (DELETE FROM hydra_result_rows WHERE job IN (SELECT key FROM j)) "
        "SELECT count(*) FROM j",
        1, p, &res, what, err))
    return -1;
  if (n_purged)
    *n_purged = (size_t)col_i64(res, 0, 0);
  PQclear(res);
  return 0;
}

static int pg_purge(store_t *base, double older_than, size_t *n_purged, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  int rc = purge_locked(s, older_than, n_purged, err);
  return rc;
}

/* ---- leases ----------------------------------------------------------- */

static int claim_locked(pg_store_t *s, const char *job_id, const char *worker, double lease_s,
                        int *unit, const char *what, char *err) {
  char lease[40];
  PGresult *res = NULL;
  snprintf(lease, sizeof lease, "%.17g", lease_s);
  job_lock_t job;
  if (begin(s, s->w, "BEGIN", what, err))
    return -1;
  int rc = job_find(s, s->w, job_id, JOB_OPEN, &job, what, err);
  if (rc)
    goto fail;
  rc = -1;
  const int n_units = job.n_units;
  const char *p[] = {job.key, worker, lease};
  if (q(s, s->w,
        "WITH free AS (SELECT idx FROM hydra_units WHERE job = $1 AND state = 'pending' AND "
        "(lease_until <= " NOW_S " OR lease_owner = $2) ORDER BY idx LIMIT 1 "
        "FOR UPDATE SKIP LOCKED) "
        "UPDATE hydra_units u SET lease_owner = $2, lease_until = " NOW_S " + $3::float8 "
        "FROM free WHERE u.job = $1 AND u.idx = free.idx RETURNING u.idx",
        3, p, &res, what, err))
    goto fail;
  if (PQntuples(res) > 0)
    *unit = (int)col_i64(res, 0, 0);
  else if (job.units_done == n_units) {
    PQclear(res);
    res = NULL;
    if (q(s, s->w,
          "UPDATE hydra_jobs SET final_owner = $2, final_until = " NOW_S " + $3::float8 "
          "WHERE key = $1 AND state IN ('queued','running') AND units_done = n_units AND "
          "(final_until <= " NOW_S " OR final_owner = $2) RETURNING n_units",
          3, p, &res, what, err))
      goto fail;
    if (PQntuples(res) > 0)
      *unit = n_units;
  }
  PQclear(res);
  return commit(s, s->w, what, err);
fail:
  PQclear(res);
  rollback(s->w);
  *unit = -1;
  return rc;
}

static int pg_claim_unit(store_t *base, const char *job_id, const char *worker, double lease_s,
                         int *unit, const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  int rc = claim_locked(s, job_id, worker, lease_s, unit, what, err);
  return rc;
}

static int renew_locked(pg_store_t *s, const char *job_id, int unit, const char *worker,
                        double lease_s, int *held, store_state_t *state, const char *what,
                        char *err) {
  char lease[40], unit_s[16];
  PGresult *res = NULL;
  snprintf(lease, sizeof lease, "%.17g", lease_s);
  snprintf(unit_s, sizeof unit_s, "%d", unit);
  const char *p[] = {job_id, unit_s, worker, lease};
  if (conn_ready(s, s->l, what, err))
    return -1;
  /* One statement: the state, and the lease extended where worker holds it. */
  if (q(s, s->l,
        "WITH j AS (SELECT key, state, n_units FROM hydra_jobs WHERE id = $1), "
        "u AS (UPDATE hydra_units SET lease_until = " NOW_S " + $4::float8 FROM j "
        "WHERE hydra_units.job = j.key AND idx = $2::int AND $2::int < j.n_units AND "
        "lease_owner = $3 AND hydra_units.state = 'pending' RETURNING 1), "
        "f AS (UPDATE hydra_jobs SET final_until = " NOW_S " + $4::float8 FROM j "
        "WHERE hydra_jobs.key = j.key AND $2::int >= j.n_units AND final_owner = $3 RETURNING 1), "
        "d AS (SELECT 1 FROM hydra_units, j WHERE hydra_units.job = j.key AND idx = $2::int "
        "AND hydra_units.state = 'done') "
        "SELECT j.state, (SELECT count(*) FROM u) + (SELECT count(*) FROM f) + "
        "(SELECT count(*) FROM d) FROM j",
        4, p, &res, what, err))
    return -1;
  int rc = 0;
  if (PQntuples(res) == 0) {
    rc = STORE_NOT_FOUND;
    err_set(err, "store %s: %s: no job %s", s->name, what, job_id);
  } else if (store_state_parse(PQgetvalue(res, 0, 0), state)) {
    rc = err_set(err, "store %s: %s: unknown job state", s->name, what);
  } else {
    *held = col_i64(res, 0, 1) > 0;
  }
  PQclear(res);
  return rc;
}

static int pg_renew_lease(store_t *base, const char *job_id, int unit, const char *worker,
                          double lease_s, int *held, store_state_t *state, const char *what,
                          char *err) {
  pg_store_t *s = (pg_store_t *)base;
  int rc = renew_locked(s, job_id, unit, worker, lease_s, held, state, what, err);
  return rc;
}

static int pg_release_leases(store_t *base, const char *worker, size_t *n_released, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const char *what = "release leases";
  const char *p[] = {worker};
  PGresult *res = NULL;
  int rc = -1;
  if (conn_ready(s, s->l, what, err) ||
      q(s, s->l,
        "WITH u AS (UPDATE hydra_units SET lease_owner = '', lease_until = 0 "
        "WHERE lease_owner = $1 AND state = 'pending' RETURNING 1), "
        "f AS (UPDATE hydra_jobs SET final_owner = '', final_until = 0 WHERE final_owner = $1 "
        "RETURNING 1) SELECT (SELECT count(*) FROM u) + (SELECT count(*) FROM f)",
        1, p, &res, what, err))
    goto out;
  *n_released = (size_t)col_i64(res, 0, 0);
  rc = 0;
out:
  PQclear(res);
  return rc;
}

/* ---- reading ---------------------------------------------------------- */

static int pg_job_get(store_t *base, const char *job_id, store_job_t *job, const char *what,
                      char *err) {
  pg_store_t *s = (pg_store_t *)base;
  PGresult *res = NULL;
  const char *p[] = {job_id};
  int rc = -1;
  if (conn_ready(s, s->r, what, err) ||
      q(s, s->r, "SELECT " JOB_COLUMNS " FROM hydra_jobs WHERE id = $1", 1, p, &res, what, err))
    goto out;
  if (PQntuples(res) == 0) {
    rc = STORE_NOT_FOUND;
    err_set(err, "store %s: %s: no such job", s->name, what);
  } else
    rc = job_read(s, res, 0, job, err);
out:
  PQclear(res);
  return rc;
}

static int pg_job_spec(store_t *base, const char *job_id, char **spec, size_t *len,
                       const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  PGresult *res = NULL;
  const char *p[] = {job_id};
  int rc = -1;
  if (conn_ready(s, s->r, what, err) ||
      q(s, s->r, "SELECT spec FROM hydra_jobs WHERE id = $1", 1, p, &res, what, err))
    goto out;
  if (PQntuples(res) == 0) {
    rc = STORE_NOT_FOUND;
    err_set(err, "store %s: %s: no such job", s->name, what);
    goto out;
  }
  size_t n = (size_t)PQgetlength(res, 0, 0);
  if (!(*spec = malloc(n + 1))) {
    err_set(err, "store %s: %s: out of memory", s->name, what);
    goto out;
  }
  memcpy(*spec, PQgetvalue(res, 0, 0), n);
  (*spec)[n] = 0;
  if (len)
    *len = n;
  rc = 0;
out:
  PQclear(res);
  return rc;
}

/* Jobs of a query whose columns are JOB_COLUMNS, then, with first_pending,
 * the lowest pending unit (NULL for none). */
static int jobs_query(pg_store_t *s, const char *sql, int n_params, const char *const *params,
                      int with_pending, void **items, size_t *count, const char *what, char *err) {
  PGresult *res = NULL;
  size_t cap = 0, elem = with_pending ? sizeof(store_resume_t) : sizeof(store_job_t);
  int rc = -1;
  if (conn_ready(s, s->r, what, err) || q(s, s->r, sql, n_params, params, &res, what, err))
    goto out;
  for (int i = 0; i < PQntuples(res); i++) {
    if (buffer_grow(items, &cap, *count + 1, elem) != 0) {
      err_set(err, "store %s: %s: out of memory", s->name, what);
      goto out;
    }
    void *item = (char *)*items + (*count)++ * elem;
    store_job_t *job = with_pending ? &((store_resume_t *)item)->job : item;
    if (job_read(s, res, i, job, err))
      goto out;
    if (with_pending)
      ((store_resume_t *)item)->first_pending =
          PQgetisnull(res, i, JOB_COLUMNS_N) ? job->n_units : (int)col_i64(res, i, JOB_COLUMNS_N);
  }
  rc = 0;
out:
  PQclear(res);
  if (rc) {
    free(*items);
    *items = NULL;
    *count = 0;
  }
  return rc;
}

static int pg_jobs_list(store_t *base, const char *user, size_t limit, store_job_t **jobs,
                        size_t *n, char *err) {
  char lim[24];
  snprintf(lim, sizeof lim, "%zu", limit);
  const char *p[] = {limit ? lim : NULL, user};
  void *items = NULL;
  int rc = jobs_query((pg_store_t *)base,
                      user ? "SELECT " JOB_COLUMNS " FROM hydra_jobs WHERE user_name = $2 "
                             "ORDER BY created_at DESC, key DESC LIMIT $1::bigint"
                           : "SELECT " JOB_COLUMNS " FROM hydra_jobs "
                             "ORDER BY created_at DESC, key DESC LIMIT $1::bigint",
                      user ? 2 : 1, p, 0, &items, n, "list jobs", err);
  *jobs = items;
  return rc;
}

static int pg_jobs_find(store_t *base, const store_filter_t *f, size_t limit, store_job_t **jobs,
                        size_t *n, char *err) {
  char lim[24], at[40];
  snprintf(lim, sizeof lim, "%zu", limit);
  snprintf(at, sizeof at, "%.17g", f->before_at);
  const char *p[] = {f->user,
                     f->id_prefix,
                     f->name,
                     f->state >= 0 ? store_state_name((store_state_t)f->state) : NULL,
                     f->before ? at : NULL,
                     f->before ? f->before_id : NULL,
                     limit ? lim : NULL};
  void *items = NULL;
  int rc =
      jobs_query((pg_store_t *)base,
                 "SELECT " JOB_COLUMNS " FROM hydra_jobs WHERE ($1::text IS NULL OR "
                 "user_name = $1) AND ($2::text IS NULL OR left(id, length($2)) = $2) AND "
                 "($3::text IS NULL OR name = $3) AND ($4::text IS NULL OR state = $4) AND "
                 "($5::float8 IS NULL OR created_at < $5 OR (created_at = $5 AND id COLLATE "
                 "\"C\" < $6)) ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $7::bigint",
                 7, p, 0, &items, n, "find jobs", err);
  *jobs = items;
  return rc;
}

static int pg_user_usage(store_t *base, const char *user, int64_t *jobs, int64_t *bytes,
                         char *err) {
  pg_store_t *s = (pg_store_t *)base;
  const char *what = "read a user's usage";
  const char *p[] = {user};
  PGresult *res = NULL;
  int rc = -1;
  if (conn_ready(s, s->r, what, err) == 0 &&
      q(s, s->r, "SELECT count(*), coalesce(sum(bytes), 0) FROM hydra_jobs WHERE user_name = $1", 1,
        p, &res, what, err) == 0) {
    *jobs = col_i64(res, 0, 0);
    *bytes = col_i64(res, 0, 1);
    rc = 0;
  }
  PQclear(res);
  return rc;
}

static int pg_jobs_resumable(store_t *base, store_resume_t **jobs, size_t *n, char *err) {
  void *items = NULL;
  int rc = jobs_query((pg_store_t *)base,
                      "SELECT " JOB_COLUMNS ", (SELECT min(idx) FROM hydra_units u WHERE u.job = "
                      "j.key AND u.state = 'pending') FROM hydra_jobs j "
                      "WHERE state IN ('queued','running') ORDER BY created_at, key",
                      0, NULL, 1, &items, n, "list jobs to resume", err);
  *jobs = items;
  return rc;
}

static int rows_read_locked(pg_store_t *s, const char *job_id, int64_t first_seq, size_t max_rows,
                            store_row_fn fn, void *ctx, size_t *n_read, store_state_t *state,
                            const char *what, char *err) {
  PGresult *res = NULL;
  size_t count = 0;
  int rc = -1;
  job_lock_t job;
  if (begin(s, s->r, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", what, err))
    return -1;
  if ((rc = job_find(s, s->r, job_id, 0, &job, what, err)) != 0)
    goto out;
  rc = -1;
  int stopped = 0;
  int64_t next = first_seq;
  for (;;) {
    size_t page = READ_PAGE;
    if (max_rows && max_rows - count < page)
      page = max_rows - count;
    if (page == 0)
      break;
    char from[24], lim[24];
    snprintf(from, sizeof from, "%" PRId64, next);
    snprintf(lim, sizeof lim, "%zu", page);
    const char *p[] = {job.key, from, lim};
    if (q(s, s->r,
          "SELECT seq, body FROM hydra_result_rows WHERE job = $1 AND seq >= $2 ORDER BY seq "
          "LIMIT $3",
          3, p, &res, what, err))
      goto out;
    const int n = PQntuples(res);
    for (int i = 0; i < n && !stopped; i++) {
      count++;
      next = col_i64(res, i, 0) + 1;
      stopped = fn(ctx, col_i64(res, i, 0), PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
    }
    PQclear(res);
    res = NULL;
    if (stopped || (size_t)n < page)
      break;
  }
  if (n_read)
    *n_read = count;
  if (state)
    *state = job.state;
  rc = 0;
out:
  PQclear(res);
  rollback(s->r);
  return rc;
}

static int pg_rows_read(store_t *base, const char *job_id, int64_t first_seq, size_t max_rows,
                        store_row_fn fn, void *ctx, size_t *n_read, store_state_t *state,
                        const char *what, char *err) {
  pg_store_t *s = (pg_store_t *)base;
  int rc = rows_read_locked(s, job_id, first_seq, max_rows, fn, ctx, n_read, state, what, err);
  return rc;
}

static const store_ops_t POSTGRES_OPS = {
    .close = pg_close,
    .job_create = pg_job_create,
    .job_get = pg_job_get,
    .job_spec = pg_job_spec,
    .jobs_list = pg_jobs_list,
    .jobs_find = pg_jobs_find,
    .jobs_resumable = pg_jobs_resumable,
    .rows_read = pg_rows_read,
    .purge = pg_purge,
    .claim_unit = pg_claim_unit,
    .renew_lease = pg_renew_lease,
    .release_leases = pg_release_leases,
    .user_usage = pg_user_usage,
};
