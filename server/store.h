/* store.h - the durable job store of hydrad: jobs, their specs, their work
 * units and their result rows. One interface, two stores: SQLite (one
 * machine, one hydrad) and PostgreSQL (several hydrad processes on several
 * machines serving one queue).
 *
 * Promises:
 * - store_job_create returns 0 only once the job, its spec and its pending
 *   units are durable: acknowledge a job (HTTP 202) after it.
 * - A unit's rows and the unit's completion commit together
 *   (store_unit_complete): after a crash, even kill -9, a unit is either done
 *   with all its rows stored or pending with none. Completing a done unit
 *   stores nothing and returns STORE_DUPLICATE, so a restarted worker may
 *   redo the first pending unit without repeating a row.
 * - Rows that belong to no unit travel with a state change
 *   (store_job_set_state): the header with the move to running, the summary
 *   and end rows with the move to done. A job that is running after a restart
 *   has its header; a finished job has all its rows.
 * - A job's rows are numbered 0, 1, 2, ... in commit order, without gaps, and
 *   stay readable until store_purge removes the finished job.
 * - The SQLite store syncs every commit to disk (WAL, synchronous=FULL), so
 *   what a call reported stored survives a power loss too, not only a crash
 *   of the process.
 *
 * Errors: a function returns 0 on success; -1 on failure, with one line in
 * err (HYDRA_ERR_LEN bytes, may be NULL) naming the store's file and the
 * database's own message ("database or disk is full", "attempt to write a
 * readonly database", "file is not a database"); or one of the positive
 * STORE_* codes below, also with a line in err. A call that fails changes
 * nothing: what was stored before it stays stored.
 *
 * - Work is claimed: a worker claims a pending unit for a lease
 *   (store_claim_unit), renews it while it works (store_renew_lease), and
 *   stores it with store_unit_complete. A unit whose lease ran out (its worker
 *   died) is claimed again. Leases are judged by the store's clock (the
 *   database server's for PostgreSQL), never by the workers' clocks, so a
 *   worker whose clock jumps neither steals live leases nor keeps dead ones.
 *
 * Thread-safety: a store_t may be used from any number of threads at once.
 * Each store holds a connection for writes and one for reads, each under its
 * own lock (PostgreSQL a third for lease renewals and releases); a read never
 * waits for a commit. A SQLite file
 * belongs to one hydrad (opening it for writing frees every lease in it); a
 * PostgreSQL database is shared by any number of them. */
#ifndef HYDRA_STORE_H
#define HYDRA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct store store_t;

/* Positive results: nothing was changed. */
enum {
  STORE_NOT_FOUND = 1, /* no job with that id (never created, or purged) */
  STORE_DUPLICATE = 2, /* already there: the job id is taken, or the unit is done */
  STORE_STATE = 3,     /* the job's state forbids it: finished already, or done asked
                          while units are pending */
};

/* store_open flag. Read only: every write returns -1; no file is ever changed. In a directory
 * the process cannot write, with no -wal file left by a crash, the file is
 * read as immutable (so no other process may write it meanwhile). */
#define STORE_READONLY 1
/* store_open flag. One writer process: a SQLite store is locked for this
 * process's lifetime (an advisory lock on PATH.lock holding its pid, let go
 * when the process ends, a crash included), and a second process opening it
 * with this flag fails, naming the first one's pid. hydrad opens its store so:
 * a second daemon on the same file would take the first one's jobs for its
 * own and fail those whose model it lacks. A PostgreSQL store is shared by
 * design; the flag does nothing there. */
#define STORE_EXCLUSIVE 2

#define STORE_ID_LEN 33     /* 32 lowercase hex digits (128 random bits) + NUL */
#define STORE_USER_LEN 128  /* longest user name + 1 */
#define STORE_MODEL_LEN 256 /* longest model name + 1 */
#define STORE_MAX_UNITS (1 << 24)
#define STORE_WORKER_LEN 128      /* longest worker name + 1 */
#define STORE_FINGERPRINT_LEN 256 /* longest model fingerprint + 1 */
#define STORE_NOTE_LEN 512        /* longest note on a waiting job + 1 */
#define STORE_NAME_LEN 65         /* longest job name + 1 (job.h: JOB_NAME_MAX) */
#define STORE_LABELS_LEN 4001     /* longest labels JSON + 1 (job.h: JOB_LABELS_JSON_MAX) */

typedef enum {
  STORE_QUEUED,
  STORE_RUNNING,
  STORE_DONE,
  STORE_FAILED,
  STORE_CANCELLED,
} store_state_t;

typedef struct {
  char id[STORE_ID_LEN];
  char user[STORE_USER_LEN];
  char model[STORE_MODEL_LEN];
  store_state_t state;
  char error[HYDRA_ERR_LEN]; /* why it failed; a done job's warning; "" otherwise */
  double created_at;         /* unix seconds; set by the store */
  double started_at;         /* 0 until it first runs */
  double finished_at;        /* 0 until done, failed or cancelled */
  double deadline;           /* unix seconds; 0 for none. Stored, not enforced */
  int n_units;
  int units_done;
  int64_t variants_total;
  int64_t variants_done;
  int64_t rows; /* rows stored; the next row's sequence number */
  /* The identity of the model the job was submitted for (its content hash,
   * shapes and tokenizer, as hydrad computes it): only a worker holding a
   * model of that fingerprint runs it. "" for jobs stored before
   * fingerprints (any worker with the model's name runs them). */
  char fingerprint[STORE_FINGERPRINT_LEN];
  /* Why a queued or running job waits (a worker holds another file under
   * its model's name); "" otherwise. Cleared by every state change and
   * every completed unit. */
  char note[STORE_NOTE_LEN];
  int64_t bytes; /* its spec's and rows' bytes as stored (what counts against a user's quota) */
  char name[STORE_NAME_LEN];     /* the document's "name"; "" for none */
  char labels[STORE_LABELS_LEN]; /* its "labels" as compact JSON; "" for none */
  int n_prompts;                 /* 0 for jobs stored before it was kept */
} store_job_t;

/* A job to resume after a restart: queued, or running with its header
 * stored. first_pending is its lowest pending unit (n_units when all units
 * are done and only the move to done is left). */
typedef struct {
  store_job_t job;
  int first_pending;
} store_resume_t;

/* One stored row, lent to the callback until it returns (text is not
 * NUL-terminated; it holds no newline). Return non-zero to stop reading. */
typedef int (*store_row_fn)(void *ctx, int64_t seq, const char *text, size_t len);

/* "queued", "running", "done", "failed", "cancelled". */
const char *store_state_name(store_state_t state);

/* 1 for the states a job ends in: done, failed, cancelled. */
int store_state_final(store_state_t state);

/* Opens the store named by url_or_path, creating it if it does not exist
 * (unless STORE_READONLY): a file path or "sqlite:PATH" ("sqlite:///abs/path"
 * too) is a SQLite database; "postgres://..." or "postgresql://..." (libpq's
 * URI, e.g. postgres://hydra@db.lab/hydra?sslmode=require; the password best
 * kept in PGPASSWORD or ~/.pgpass) is a PostgreSQL database, when this build
 * has libpq, and a message saying it is not built in otherwise. Messages name
 * the store by its path or its URL without the password. Brings the schema up
 * to this build's version (versioned migrations, in one transaction, one
 * process at a time); fails on a database that is not a hydra store, a schema
 * newer than this build, a corrupt file, or a read-only file opened without
 * STORE_READONLY. Returns NULL with err filled on failure. */
store_t *store_open(const char *url_or_path, int flags, char *err);

/* Closes the store. Safe on NULL. No call may be in flight. */
void store_close(store_t *s);

/* The store's name for messages and logs: its path, or its URL without the
 * password. Lives as long as the store. */
const char *store_name(const store_t *s);

/* 1 when other processes may change the store meanwhile (PostgreSQL): jobs
 * appear, progress and end there without this process; 0 for SQLite. */
int store_shared(const store_t *s);

/* Stores a new queued job with n_units pending units and its spec (spec_len
 * bytes of JSON text, kept as given). Reads job->id (32 lowercase hex
 * digits, made by the caller), user, model, fingerprint, n_units
 * (0..STORE_MAX_UNITS), variants_total, deadline, name, labels
 * and n_prompts; the store sets the rest. STORE_DUPLICATE if
 * the id is taken. */
int store_job_create(store_t *s, const store_job_t *job, const char *spec, size_t spec_len,
                     char *err);

/* Copies the job into *job. STORE_NOT_FOUND if there is none. */
int store_job_get(store_t *s, const char *job_id, store_job_t *job, char *err);

/* The job's spec as given to store_job_create: *spec is a malloc'd,
 * NUL-terminated copy the caller frees, *len its length (len may be NULL). */
int store_job_spec(store_t *s, const char *job_id, char **spec, size_t *len, char *err);

/* Jobs of user (every user's when NULL), newest first, at most limit (0: all).
 * *jobs is a malloc'd array the caller frees (NULL when *n is 0). */
int store_jobs_list(store_t *s, const char *user, size_t limit, store_job_t **jobs, size_t *n,
                    char *err);

/* Which jobs store_jobs_find returns; a NULL field (state: -1, before: 0)
 * does not filter. */
typedef struct {
  const char *user;      /* the jobs of this user */
  const char *id_prefix; /* ids starting so: 1 to 32 lowercase hex digits */
  const char *name;      /* the jobs of this name */
  int state;             /* a store_state_t, or -1 */
  /* 1: only the jobs after (before_at, before_id) in newest-first order (a
   * page's cursor: older, or as old with a smaller id) */
  int before;
  double before_at;
  char before_id[STORE_ID_LEN];
} store_filter_t;

/* The jobs that pass filter, newest first (by creation time, then id), at
 * most limit (0: all). *jobs is a malloc'd array the caller frees (NULL
 * when *n is 0). From the store's read connection. */
int store_jobs_find(store_t *s, const store_filter_t *filter, size_t limit, store_job_t **jobs,
                    size_t *n, char *err);

/* What a user keeps in the store: *jobs (may be NULL) gets the number of
 * their jobs (any state, until purged), *bytes (may be NULL) the bytes of
 * their specs and rows. From the store's read connection: a commit in
 * flight may be left out. */
int store_user_usage(store_t *s, const char *user, int64_t *jobs, int64_t *bytes, char *err);

/* Jobs to resume (queued or running), oldest first, with their first pending
 * unit. *jobs is a malloc'd array the caller frees (NULL when *n is 0). */
int store_jobs_resumable(store_t *s, store_resume_t **jobs, size_t *n, char *err);

/* Moves a job to state, appending rows (n_rows JSON lines, each without a
 * newline; may be 0) in the same transaction. Allowed: queued -> running;
 * queued or running -> done (only when every unit is done), failed or
 * cancelled. error is kept for failed and cancelled, and for done as its
 * warning (e.g. rows with non-finite values) (NULL for none; cut to
 * HYDRA_ERR_LEN - 1 bytes at a character boundary). Sets started_at on the
 * first move out of queued towards running or done, finished_at on the move
 * to a final state. STORE_STATE, changing nothing, for any other move
 * (running -> running, anything out of a final state). */
int store_job_set_state(store_t *s, const char *job_id, store_state_t state, const char *error,
                        const char *const rows[], size_t n_rows, char *err);

/* store_job_set_state(s, job_id, STORE_CANCELLED, "cancelled", NULL, 0, err):
 * STORE_STATE if the job has finished already. */
int store_job_cancel(store_t *s, const char *job_id, char *err);

/* Sets the note of a queued or running job (why it waits; "" clears it; cut
 * to STORE_NOTE_LEN - 1 bytes at a character boundary). STORE_STATE if the
 * job has finished. */
int store_job_note(store_t *s, const char *job_id, const char *note, char *err);

/* Requeues a failed job from its first pending unit: back to running when
 * its header is stored (it had started), else to queued; its error, note
 * and finish time cleared, the leases on its pending units and on its
 * summary freed. Its done units and their rows stay as they are. *state
 * (may be NULL) gets the state it moved to. STORE_STATE, changing nothing,
 * unless the job is failed. */
int store_job_retry(store_t *s, const char *job_id, store_state_t *state, char *err);

/* Marks unit (0..n_units-1) of a queued or running job done, appends its
 * rows (n_rows JSON lines, each without a newline; may be 0) with the next
 * sequence numbers, and adds 1 to units_done and variants_done_delta (>= 0) to
 * variants_done: all in one transaction. STORE_DUPLICATE, storing nothing,
 * if the unit is done already; STORE_STATE if the job has finished. */
int store_unit_complete(store_t *s, const char *job_id, int unit, const char *const rows[],
                        size_t n_rows, int64_t variants_done_delta, char *err);

/* Appends rows outside any unit to a queued or running job, in one
 * transaction. Not idempotent: a retry after a crash may store them twice.
 * Rows that must appear once go with store_unit_complete or
 * store_job_set_state. STORE_STATE if the job has finished. */
int store_rows_append(store_t *s, const char *job_id, const char *const rows[], size_t n_rows,
                      char *err);

/* Calls fn for the job's rows with sequence number >= first_seq, in order,
 * at most max_rows of them (0: all), from one snapshot; stops early when fn
 * returns non-zero. HTTP's ?after=N (the client holds N rows) is
 * first_seq = N. *n_read (may be NULL) gets the rows passed to fn. *state
 * (may be NULL) gets the job's state in the same snapshot: when it is final
 * and fewer than max_rows were read, no row will follow. fn runs with the
 * store's read lock held: it must not call the store. */
int store_rows_read(store_t *s, const char *job_id, int64_t first_seq, size_t max_rows,
                    store_row_fn fn, void *ctx, size_t *n_read, store_state_t *state, char *err);

/* Claims work on a queued or running job for worker (a name unique among the
 * store's workers, at most STORE_WORKER_LEN - 1 bytes) for lease_s seconds of
 * the store's clock. *unit gets: the lowest pending unit whose lease is free
 * or ran out, now leased to worker; n_units when every unit is done (the
 * claim to store the summary and end the job, leased likewise); -1 when
 * nothing can be claimed now (the pending units are leased to live workers,
 * or another worker holds the summary claim). STORE_STATE when the job has
 * ended; STORE_NOT_FOUND. */
int store_claim_unit(store_t *s, const char *job_id, const char *worker, double lease_s, int *unit,
                     char *err);

/* Extends worker's lease on unit (n_units: the summary claim) to lease_s
 * seconds from now. *held (may be NULL) gets 1 when worker still held it
 * (or the unit is stored already: no lease is needed any more), 0 when the
 * lease had run out and another worker took it (completing the unit then
 * stores nothing: STORE_DUPLICATE); *state (may be NULL) gets the job's
 * state, so that a worker learns of a cancel made on another node.
 * STORE_NOT_FOUND when the job is gone. */
int store_renew_lease(store_t *s, const char *job_id, int unit, const char *worker, double lease_s,
                      int *held, store_state_t *state, char *err);

/* Frees every lease worker holds, so that others may claim its units now:
 * at a clean stop, and at start (the leases of this worker's previous life,
 * after a crash). *n_released (may be NULL) gets how many. */
int store_release_leases(store_t *s, const char *worker, size_t *n_released, char *err);

/* Deletes the jobs that finished (done, failed, cancelled) before
 * older_than (unix seconds), with their units and rows, in one transaction.
 * *n_purged (may be NULL) gets the number of jobs deleted. */
int store_purge(store_t *s, double older_than, size_t *n_purged, char *err);

#endif
