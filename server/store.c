/* store.c - store.h's calls on an open store: the arguments checked once
 * for every store, the lock of the connection taken, then the store's own
 * operation; the job state machine's moves (a state, a unit stored, rows
 * appended, a note, a retry) are made here from the driver's transaction
 * steps (store_impl.h). Opening one is store_open.c's, above the stores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"
#include "utf8.h"

#define WHAT_LEN 160

static const char *const STATE_NAMES[] = {"queued", "running", "done", "failed", "cancelled"};

const char *store_state_name(store_state_t state) {
  if ((unsigned)state >= sizeof STATE_NAMES / sizeof STATE_NAMES[0])
    return "unknown";
  return STATE_NAMES[state];
}

int store_state_parse(const char *text, store_state_t *state) {
  for (int i = 0; i < (int)(sizeof STATE_NAMES / sizeof STATE_NAMES[0]); i++)
    if (text && strcmp(text, STATE_NAMES[i]) == 0) {
      *state = (store_state_t)i;
      return 0;
    }
  return -1;
}

int store_state_final(store_state_t state) {
  return state == STORE_DONE || state == STORE_FAILED || state == STORE_CANCELLED;
}

int store_move_allowed(store_state_t from, store_state_t to, int units_done, int n_units, char *why,
                       size_t len) {
  if (to == STORE_QUEUED) { /* a retry */
    if (from == STORE_FAILED)
      return 0;
    snprintf(why, len, "the job is %s, not failed", store_state_name(from));
    return STORE_STATE;
  }
  if (store_state_final(from) || (to == STORE_RUNNING && from != STORE_QUEUED)) {
    snprintf(why, len, "the job is %s", store_state_name(from));
    return STORE_STATE;
  }
  if (to == STORE_DONE && units_done < n_units) {
    snprintf(why, len, "%d of %d units are pending", n_units - units_done, n_units);
    return STORE_STATE;
  }
  return 0;
}

/* ---- the store ------------------------------------------------------- */

void store_close(store_t *s) {
  if (s)
    s->ops->close(s);
}

int store_head_init(store_t *s, char *err) {
  if (pthread_mutex_init(&s->write_lock, NULL))
    return err_set(err, "store %s: cannot make a mutex", s->name);
  if (pthread_mutex_init(&s->read_lock, NULL)) {
    pthread_mutex_destroy(&s->write_lock);
    return err_set(err, "store %s: cannot make a mutex", s->name);
  }
  if (pthread_mutex_init(&s->lease_lock, NULL)) {
    pthread_mutex_destroy(&s->read_lock);
    pthread_mutex_destroy(&s->write_lock);
    return err_set(err, "store %s: cannot make a mutex", s->name);
  }
  s->locks_ready = 1;
  return 0;
}

void store_head_destroy(store_t *s) {
  if (!s->locks_ready)
    return;
  pthread_mutex_destroy(&s->lease_lock);
  pthread_mutex_destroy(&s->read_lock);
  pthread_mutex_destroy(&s->write_lock);
  s->locks_ready = 0;
}

/* The lock of the connection lease renewals and releases use. */
static pthread_mutex_t *lease_lock(store_t *s) {
  return s->lease_lock_own ? &s->lease_lock : &s->write_lock;
}

/* ---- the job state machine's moves, in one writer transaction ---------- */

/* The job's row, locked, in a transaction begun; with open_only a job that
 * has ended is STORE_STATE. 0, or the error (the transaction rolled back). */
static int tx_job(store_t *s, const char *job_id, int open_only, store_job_row_t *job,
                  const char *what, char *err) {
  if (s->tx->begin(s, what, err))
    return -1;
  int rc = s->tx->job_lock(s, job_id, job, what, err);
  if (rc == 0 && open_only && store_state_final(job->state)) {
    err_set(err, "store %s: %s: the job is %s", s->name, what, store_state_name(job->state));
    rc = STORE_STATE;
  }
  if (rc)
    s->tx->rollback(s);
  return rc;
}

/* Commits; rolls back when a step or the commit failed (rc != 0). */
static int tx_end(store_t *s, int rc, const char *what, char *err) {
  if (rc == 0 && s->tx->commit(s, what, err) == 0)
    return 0;
  s->tx->rollback(s);
  return rc ? rc : -1;
}

static int move_job(store_t *s, const char *job_id, store_state_t state, const char *error,
                    const char *const rows[], size_t n_rows, const char *what, char *err) {
  store_job_row_t job;
  int rc = tx_job(s, job_id, 0, &job, what, err);
  if (rc)
    return rc;
  char why[96];
  if ((rc = store_move_allowed(job.state, state, job.units_done, job.n_units, why, sizeof why)))
    err_set(err, "store %s: %s: %s", s->name, what, why);
  else if (s->tx->rows_insert(s, &job, rows, n_rows, what, err) ||
           s->tx->job_move(s, &job, state, error, n_rows, what, err))
    rc = -1;
  return tx_end(s, rc, what, err);
}

static int complete_unit(store_t *s, const char *job_id, int unit, const char *const rows[],
                         size_t n_rows, int64_t variants, const char *what, char *err) {
  store_job_row_t job;
  int rc = tx_job(s, job_id, 1, &job, what, err);
  if (rc)
    return rc;
  int done = 0;
  if (unit >= job.n_units)
    rc = err_set(err, "store %s: %s: the job has %d units", s->name, what, job.n_units);
  else if (s->tx->unit_done(s, &job, unit, &done, what, err))
    rc = -1;
  else if (done) {
    err_set(err, "store %s: %s: the unit is done already", s->name, what);
    rc = STORE_DUPLICATE;
  } else if (s->tx->rows_insert(s, &job, rows, n_rows, what, err) ||
             s->tx->unit_store(s, &job, unit, n_rows, variants, what, err))
    rc = -1;
  return tx_end(s, rc, what, err);
}

static int append_rows(store_t *s, const char *job_id, const char *const rows[], size_t n_rows,
                       const char *what, char *err) {
  store_job_row_t job;
  int rc = tx_job(s, job_id, 1, &job, what, err);
  if (rc)
    return rc;
  if (s->tx->rows_insert(s, &job, rows, n_rows, what, err) ||
      s->tx->rows_count(s, &job, n_rows, what, err))
    rc = -1;
  return tx_end(s, rc, what, err);
}

static int note_job(store_t *s, const char *job_id, const char *note, const char *what, char *err) {
  store_job_row_t job;
  int rc = tx_job(s, job_id, 1, &job, what, err);
  if (rc)
    return rc;
  return tx_end(s, s->tx->job_note(s, &job, note, what, err) ? -1 : 0, what, err);
}

static int requeue_job(store_t *s, const char *job_id, store_state_t *state, const char *what,
                       char *err) {
  store_job_row_t job;
  int rc = tx_job(s, job_id, 0, &job, what, err);
  if (rc)
    return rc;
  char why[96];
  if ((rc = store_move_allowed(job.state, STORE_QUEUED, job.units_done, job.n_units, why,
                               sizeof why)))
    err_set(err, "store %s: %s: %s", s->name, what, why);
  else if (s->tx->job_requeue(s, &job, state, what, err))
    rc = -1;
  return tx_end(s, rc, what, err);
}

/* A store call under its connection's lock. */
#define LOCKED(lock, call)                                                                         \
  do {                                                                                             \
    pthread_mutex_lock(lock);                                                                      \
    const int rc_ = (call);                                                                        \
    pthread_mutex_unlock(lock);                                                                    \
    return rc_;                                                                                    \
  } while (0)

const char *store_name(const store_t *s) {
  return s->name;
}

int store_shared(const store_t *s) {
  return s->shared;
}

/* ---- argument checks -------------------------------------------------- */

static int writable(const store_t *s, char *err) {
  if (s->readonly)
    return err_set(err, "store %s: opened read-only", s->name);
  return 0;
}

static int rows_check(const store_t *s, const char *const rows[], size_t n_rows, char *err) {
  if (n_rows && !rows)
    return err_set(err, "store %s: %zu rows given without rows", s->name, n_rows);
  for (size_t i = 0; i < n_rows; i++) {
    if (!rows[i])
      return err_set(err, "store %s: row %zu is NULL", s->name, i);
    if (strchr(rows[i], '\n'))
      return err_set(err, "store %s: row %zu holds a newline", s->name, i);
  }
  return 0;
}

static int job_id_check(const store_t *s, const char *id, char *err) {
  size_t n = id ? strlen(id) : 0;
  if (n != STORE_ID_LEN - 1)
    return err_set(err, "store %s: job id '%.40s' is not %d hex digits", s->name, id ? id : "",
                   STORE_ID_LEN - 1);
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return err_set(err, "store %s: job id '%s' is not lowercase hex", s->name, id);
  return 0;
}

static int worker_check(const store_t *s, const char *worker, const char *what, char *err) {
  if (!worker || !*worker || strnlen(worker, STORE_WORKER_LEN) == STORE_WORKER_LEN)
    return err_set(err, "store %s: %s: the worker name is empty or longer than %d bytes", s->name,
                   what, STORE_WORKER_LEN - 1);
  return 0;
}

/* ---- writing ---------------------------------------------------------- */

int store_job_create(store_t *s, const store_job_t *job, const char *spec, size_t spec_len,
                     char *err) {
  char what[WHAT_LEN];
  if (writable(s, err) || job_id_check(s, job->id, err))
    return -1;
  snprintf(what, sizeof what, "create job %s", job->id);
  if (strnlen(job->user, STORE_USER_LEN) == STORE_USER_LEN)
    return err_set(err, "store %s: %s: user name longer than %d bytes", s->name, what,
                   STORE_USER_LEN - 1);
  if (strnlen(job->model, STORE_MODEL_LEN) == STORE_MODEL_LEN)
    return err_set(err, "store %s: %s: model name longer than %d bytes", s->name, what,
                   STORE_MODEL_LEN - 1);
  if (strnlen(job->fingerprint, STORE_FINGERPRINT_LEN) == STORE_FINGERPRINT_LEN)
    return err_set(err, "store %s: %s: model fingerprint longer than %d bytes", s->name, what,
                   STORE_FINGERPRINT_LEN - 1);
  if (job->n_units < 0 || job->n_units > STORE_MAX_UNITS)
    return err_set(err, "store %s: %s: %d units (0..%d allowed)", s->name, what, job->n_units,
                   STORE_MAX_UNITS);
  if (job->variants_total < 0)
    return err_set(err, "store %s: %s: negative variants_total", s->name, what);
  if (strnlen(job->name, STORE_NAME_LEN) == STORE_NAME_LEN ||
      strnlen(job->labels, STORE_LABELS_LEN) == STORE_LABELS_LEN || job->n_prompts < 0)
    return err_set(err, "store %s: %s: name, labels or prompt count out of bounds", s->name, what);
  if (!spec)
    return err_set(err, "store %s: %s: no spec", s->name, what);
  LOCKED(&s->write_lock, s->ops->job_create(s, job, spec, spec_len, what, err));
}

int store_unit_complete(store_t *s, const char *job_id, int unit, const char *const rows[],
                        size_t n_rows, int64_t variants_done_delta, char *err) {
  char what[WHAT_LEN];
  snprintf(what, sizeof what, "complete unit %d of job %.40s", unit, job_id ? job_id : "");
  if (writable(s, err) || rows_check(s, rows, n_rows, err))
    return -1;
  if (!job_id || unit < 0 || variants_done_delta < 0)
    return err_set(err, "store %s: %s: bad arguments", s->name, what);
  LOCKED(&s->write_lock,
         complete_unit(s, job_id, unit, rows, n_rows, variants_done_delta, what, err));
}

int store_job_set_state(store_t *s, const char *job_id, store_state_t state, const char *error,
                        const char *const rows[], size_t n_rows, char *err) {
  char what[WHAT_LEN], message[HYDRA_ERR_LEN];
  snprintf(what, sizeof what, "move job %.40s to %s", job_id ? job_id : "",
           store_state_name(state));
  if (writable(s, err) || rows_check(s, rows, n_rows, err))
    return -1;
  if (!job_id || (!store_state_final(state) && state != STORE_RUNNING))
    return err_set(err, "store %s: %s: not a state a job can move to", s->name, what);
  /* Cut the message at a character boundary: back over continuation bytes. */
  size_t n = 0;
  if (error && (state == STORE_FAILED || state == STORE_CANCELLED || state == STORE_DONE)) {
    n = strnlen(error, sizeof message - 1);
    if (error[n])
      n = utf8_cut(error, n);
    memcpy(message, error, n);
  }
  message[n] = 0;
  LOCKED(&s->write_lock, move_job(s, job_id, state, message, rows, n_rows, what, err));
}

int store_job_note(store_t *s, const char *job_id, const char *note, char *err) {
  char what[WHAT_LEN], text[STORE_NOTE_LEN];
  snprintf(what, sizeof what, "note on job %.40s", job_id ? job_id : "");
  if (writable(s, err))
    return -1;
  if (!job_id)
    return err_set(err, "store %s: %s: no job id", s->name, what);
  size_t n = note ? strnlen(note, sizeof text - 1) : 0;
  if (n && note[n])
    n = utf8_cut(note, n);
  if (n)
    memcpy(text, note, n);
  text[n] = 0;
  LOCKED(&s->write_lock, note_job(s, job_id, text, what, err));
}

int store_job_retry(store_t *s, const char *job_id, store_state_t *state, char *err) {
  char what[WHAT_LEN];
  store_state_t state_here = STORE_QUEUED;
  snprintf(what, sizeof what, "retry job %.40s", job_id ? job_id : "");
  if (writable(s, err))
    return -1;
  if (!job_id)
    return err_set(err, "store %s: %s: no job id", s->name, what);
  LOCKED(&s->write_lock, requeue_job(s, job_id, state ? state : &state_here, what, err));
}

int store_job_cancel(store_t *s, const char *job_id, char *err) {
  return store_job_set_state(s, job_id, STORE_CANCELLED, "cancelled", NULL, 0, err);
}

int store_rows_append(store_t *s, const char *job_id, const char *const rows[], size_t n_rows,
                      char *err) {
  char what[WHAT_LEN];
  snprintf(what, sizeof what, "append rows to job %.40s", job_id ? job_id : "");
  if (writable(s, err) || rows_check(s, rows, n_rows, err))
    return -1;
  if (!job_id)
    return err_set(err, "store %s: %s: no job id", s->name, what);
  LOCKED(&s->write_lock, append_rows(s, job_id, rows, n_rows, what, err));
}

int store_purge(store_t *s, double older_than, size_t *n_purged, char *err) {
  if (writable(s, err))
    return -1;
  LOCKED(&s->write_lock, s->ops->purge(s, older_than, n_purged, err));
}

int store_claim_unit(store_t *s, const char *job_id, const char *worker, double lease_s, int *unit,
                     char *err) {
  char what[WHAT_LEN];
  snprintf(what, sizeof what, "claim a unit of job %.40s", job_id ? job_id : "");
  *unit = -1;
  if (writable(s, err) || worker_check(s, worker, what, err))
    return -1;
  if (!job_id || !(lease_s > 0))
    return err_set(err, "store %s: %s: bad arguments", s->name, what);
  LOCKED(&s->write_lock, s->ops->claim_unit(s, job_id, worker, lease_s, unit, what, err));
}

int store_renew_lease(store_t *s, const char *job_id, int unit, const char *worker, double lease_s,
                      int *held, store_state_t *state, char *err) {
  char what[WHAT_LEN];
  int held_here = 0;
  store_state_t state_here = STORE_QUEUED;
  snprintf(what, sizeof what, "renew the lease on unit %d of job %.40s", unit,
           job_id ? job_id : "");
  if (writable(s, err) || worker_check(s, worker, what, err))
    return -1;
  if (!job_id || unit < 0 || !(lease_s > 0))
    return err_set(err, "store %s: %s: bad arguments", s->name, what);
  LOCKED(lease_lock(s),
         s->ops->renew_lease(s, job_id, unit, worker, lease_s, held ? held : &held_here,
                             state ? state : &state_here, what, err));
}

int store_release_leases(store_t *s, const char *worker, size_t *n_released, char *err) {
  size_t n_here = 0;
  if (writable(s, err) || worker_check(s, worker, "release leases", err))
    return -1;
  LOCKED(lease_lock(s), s->ops->release_leases(s, worker, n_released ? n_released : &n_here, err));
}

/* ---- reading ---------------------------------------------------------- */

int store_job_get(store_t *s, const char *job_id, store_job_t *job, char *err) {
  char what[WHAT_LEN];
  snprintf(what, sizeof what, "read job %.40s", job_id ? job_id : "");
  if (!job_id)
    return err_set(err, "store %s: %s: no job id", s->name, what);
  LOCKED(&s->read_lock, s->ops->job_get(s, job_id, job, what, err));
}

int store_job_spec(store_t *s, const char *job_id, char **spec, size_t *len, char *err) {
  char what[WHAT_LEN];
  snprintf(what, sizeof what, "read the spec of job %.40s", job_id ? job_id : "");
  *spec = NULL;
  if (!job_id)
    return err_set(err, "store %s: %s: no job id", s->name, what);
  LOCKED(&s->read_lock, s->ops->job_spec(s, job_id, spec, len, what, err));
}

int store_jobs_list(store_t *s, const char *user, size_t limit, store_job_t **jobs, size_t *n,
                    char *err) {
  *jobs = NULL;
  *n = 0;
  LOCKED(&s->read_lock, s->ops->jobs_list(s, user, limit, jobs, n, err));
}

int store_jobs_find(store_t *s, const store_filter_t *f, size_t limit, store_job_t **jobs,
                    size_t *n, char *err) {
  *jobs = NULL;
  *n = 0;
  if (f->id_prefix) {
    const size_t len = strlen(f->id_prefix);
    if (len == 0 || len > STORE_ID_LEN - 1 || strspn(f->id_prefix, "0123456789abcdef") != len)
      return err_set(err, "store %s: find jobs: the id prefix is not 1 to %d lowercase hex digits",
                     s->name, STORE_ID_LEN - 1);
  }
  if (f->state < -1 || f->state > STORE_CANCELLED)
    return err_set(err, "store %s: find jobs: no state %d", s->name, f->state);
  LOCKED(&s->read_lock, s->ops->jobs_find(s, f, limit, jobs, n, err));
}

int store_user_usage(store_t *s, const char *user, int64_t *jobs, int64_t *bytes, char *err) {
  int64_t jobs_here = 0, bytes_here = 0;
  if (!user)
    return err_set(err, "store %s: read a user's usage: no user", s->name);
  LOCKED(&s->read_lock,
         s->ops->user_usage(s, user, jobs ? jobs : &jobs_here, bytes ? bytes : &bytes_here, err));
}

int store_jobs_resumable(store_t *s, store_resume_t **jobs, size_t *n, char *err) {
  *jobs = NULL;
  *n = 0;
  LOCKED(&s->read_lock, s->ops->jobs_resumable(s, jobs, n, err));
}

int store_rows_read(store_t *s, const char *job_id, int64_t first_seq, size_t max_rows,
                    store_row_fn fn, void *ctx, size_t *n_read, store_state_t *state, char *err) {
  char what[WHAT_LEN];
  snprintf(what, sizeof what, "read rows of job %.40s", job_id ? job_id : "");
  if (n_read)
    *n_read = 0;
  if (!job_id || !fn || first_seq < 0)
    return err_set(err, "store %s: %s: bad arguments", s->name, what);
  LOCKED(&s->read_lock,
         s->ops->rows_read(s, job_id, first_seq, max_rows, fn, ctx, n_read, state, what, err));
}
