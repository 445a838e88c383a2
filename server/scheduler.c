/* scheduler.c - hydrad's worker: jobs are split into work units (chunks of
 * prompts); units run one at a time, round-robin between users, so a small
 * job is not stuck behind a large one. A unit is claimed in the store under a
 * lease before it runs (the keeper thread renews the lease), and its rows are
 * stored with its completion in one transaction; a restart, or another node
 * on a shared store, claims the units left pending. The worker that finds
 * every unit done claims the summary, stores it and ends the job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buffer.h"
#include "clock.h"
#include "json_field.h"
#include "results.h"
#include "server.h"

/* Why a job past its deadline failed: checked between the engine's passes
 * while it runs, and every KEEPER_DEADLINE_S while it waits in the queue. */
#define DEADLINE_MESSAGE "deadline exceeded"
#define KEEPER_DEADLINE_S 0.25

/* Stored rows read back per call for a job's summary. */
#define SUMMARY_PAGE 256

typedef struct {
  char **rows;
  size_t n, cap;
} rowbuf_t;

static int collect(void *ctx, json_t *row) {
  rowbuf_t *b = ctx;
  char *s = json_dumps(row, JSON_COMPACT);
  if (!s)
    return -1;
  if (buffer_grow((void **)&b->rows, &b->cap, b->n + 1, sizeof(char *)) != 0) {
    free(s);
    return -1;
  }
  b->rows[b->n++] = s;
  return 0;
}

static void rowbuf_clear(rowbuf_t *b) {
  for (size_t i = 0; i < b->n; i++)
    free(b->rows[i]);
  free(b->rows);
  memset(b, 0, sizeof(*b));
}

static void sched_job_free(sched_job_t *j) {
  if (!j)
    return;
  plan_free(&j->plan);
  job_free(j->spec);
  free(j);
}

/* The queued job with this id (the caller holds the lock). */
static sched_job_t *find_job(server_t *s, const char *id) {
  for (sched_job_t *j = s->jobs; j; j = j->next)
    if (strcmp(j->id, id) == 0)
      return j;
  return NULL;
}

int scheduler_enqueue(server_t *s, const store_job_t *job, job_spec_t *spec, int model, char *err) {
  sched_job_t *j = calloc(1, sizeof(*j));
  if (!j) {
    job_free(spec);
    return err_set(err, "out of memory");
  }
  server_model_t *m = &s->models[model];
  snprintf(j->id, sizeof(j->id), "%s", job->id);
  snprintf(j->user, sizeof(j->user), "%s", job->user);
  j->model = model;
  j->spec = spec;
  j->n_units = job->n_units;
  j->started = job->state == STORE_RUNNING;
  j->deadline = job->deadline;
  j->started_at = job->started_at > 0 ? job->started_at : clock_wall();
  j->known_since = clock_monotonic();
  if (job->fingerprint[0] && strcmp(job->fingerprint, m->fingerprint) != 0) {
    err_set(err,
            "waiting for model %s as submitted (%.100s); this worker (%s) holds another file "
            "under that name (%.100s)",
            m->name, job->fingerprint, s->cfg.worker_id, m->fingerprint);
    sched_job_free(j);
    return SCHEDULER_OTHER_MODEL;
  }
  if (spec->weights_dtype >= 0 && spec->weights_dtype != m->model->weights_dtype) {
    err_set(err,
            "the job was submitted for %s weights (\"weights_dtype\"); this worker holds "
            "model %s with %s weights (hydrad --weights-dtype)",
            weights_dtype_name(spec->weights_dtype), m->name,
            weights_dtype_name(m->model->weights_dtype));
    sched_job_free(j);
    return SCHEDULER_OTHER_WEIGHTS;
  }
  static uint64_t next_source_key; /* under s->lock */
  pthread_mutex_lock(&s->lock);
  if (find_job(s, j->id)) { /* learnt of twice (submitted here, seen in the store) */
    pthread_mutex_unlock(&s->lock);
    sched_job_free(j);
    return 0;
  }
  j->source_key = ++next_source_key;
  sched_job_t **tail = &s->jobs;
  while (*tail)
    tail = &(*tail)->next;
  *tail = j;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
  return 0;
}

int scheduler_user_jobs(server_t *s, const char *user) {
  int n = 0;
  pthread_mutex_lock(&s->lock);
  for (sched_job_t *j = s->jobs; j; j = j->next)
    n += strcmp(j->user, user) == 0;
  pthread_mutex_unlock(&s->lock);
  return n;
}

int64_t scheduler_progress(server_t *s, const char *id) {
  int64_t v = -1;
  pthread_mutex_lock(&s->lock);
  for (sched_job_t *j = s->jobs; j; j = j->next)
    if (strcmp(j->id, id) == 0)
      v = j->variants_done;
  pthread_mutex_unlock(&s->lock);
  return v;
}

void scheduler_queue(server_t *s, const char *id, sched_place_t *place) {
  memset(place, 0, sizeof *place);
  pthread_mutex_lock(&s->lock);
  for (sched_job_t *j = s->jobs; j; j = j->next) {
    if (strcmp(j->id, id) == 0) {
      place->known = 1;
      break;
    }
    place->position++;
  }
  sched_job_t *r = s->running;
  place->running = place->known && r && strcmp(r->id, id) == 0;
  if (place->known && r && !place->running) {
    snprintf(place->other_id, sizeof place->other_id, "%s", r->id);
    snprintf(place->other_user, sizeof place->other_user, "%s", r->user);
    place->other_unit = s->claimed_unit;
    place->other_n_units = r->n_units;
  }
  if (!place->known)
    place->position = 0;
  pthread_mutex_unlock(&s->lock);
}

/* A job this worker leaves waiting; listed: in the store's last listing. */
struct noted {
  char id[STORE_ID_LEN];
  int listed;
  struct noted *next;
};

struct unstored {
  char id[STORE_ID_LEN];
  store_state_t state;
  char why[HYDRA_ERR_LEN];
  struct unstored *next;
};

int scheduler_unstored(server_t *s, const char *id, store_state_t *state, char *why, size_t len) {
  int found = 0;
  pthread_mutex_lock(&s->lock);
  for (struct unstored *u = s->unstored; u && !found; u = u->next)
    if (strcmp(u->id, id) == 0) {
      found = 1;
      *state = u->state;
      snprintf(why, len, "%s", u->why);
    }
  pthread_mutex_unlock(&s->lock);
  return found;
}

int scheduler_drop_unstored(server_t *s, const char *id) {
  struct unstored *gone = NULL;
  pthread_mutex_lock(&s->lock);
  for (struct unstored **p = &s->unstored; *p; p = &(*p)->next)
    if (strcmp((*p)->id, id) == 0) {
      gone = *p;
      *p = gone->next;
      break;
    }
  pthread_mutex_unlock(&s->lock);
  free(gone);
  return gone != NULL;
}

void scheduler_forget_unstored(server_t *s) {
  while (s->noted) {
    struct noted *n = s->noted;
    s->noted = n->next;
    free(n);
  }
  while (s->unstored) {
    struct unstored *u = s->unstored;
    s->unstored = u->next;
    free(u);
  }
}

/* Removes a job from the queue (the caller holds the lock). */
static void unlink_job(server_t *s, sched_job_t *j) {
  for (sched_job_t **p = &s->jobs; *p; p = &(*p)->next)
    if (*p == j) {
      *p = j->next;
      return;
    }
}

int scheduler_cancel(server_t *s, const char *id) {
  int found = 0;
  sched_job_t *drop = NULL;
  pthread_mutex_lock(&s->lock);
  for (sched_job_t *j = s->jobs; j; j = j->next)
    if (strcmp(j->id, id) == 0) {
      found = 1;
      j->cancel = 1;
      if (strcmp(s->running_job, id) != 0) { /* not running now: drop it here */
        unlink_job(s, j);
        drop = j;
        s->retain_pending = 1; /* its kept sources go back (worker) */
        pthread_cond_signal(&s->wake);
      }
      break;
    }
  pthread_mutex_unlock(&s->lock);
  sched_job_free(drop);
  return found;
}

/* Whether an earlier job of the queue that can run now belongs to j's user. */
static int user_seen_before(server_t *s, sched_job_t *j, double now) {
  for (sched_job_t *k = s->jobs; k != j; k = k->next)
    if (k->retry_at <= now && strcmp(k->user, j->user) == 0)
      return 1;
  return 0;
}

/* The next job: round-robin over the users with a job that can run now (in
 * the order of their first such job), each user's oldest job first. A job
 * waiting on units leased to other workers (retry_at) is passed over. NULL
 * when none can run. The caller holds the lock. */
static sched_job_t *pick(server_t *s) {
  const double now = clock_monotonic();
  sched_job_t *next_user = NULL, *other_user = NULL, *last_user = NULL;
  int seen_last = 0;
  for (sched_job_t *j = s->jobs; j; j = j->next) {
    if (j->retry_at > now)
      continue;
    if (strcmp(j->user, s->last_user) == 0) {
      if (!last_user)
        last_user = j;
      seen_last = 1;
    } else if (!user_seen_before(s, j, now)) {
      if (!other_user)
        other_user = j;
      if (seen_last && !next_user)
        next_user = j;
    }
  }
  sched_job_t *pick = next_user ? next_user : other_user ? other_user : last_user;
  if (pick)
    snprintf(s->last_user, sizeof(s->last_user), "%s", pick->user);
  return pick;
}

typedef struct {
  server_t *s;
  sched_job_t *j;
  engine_sink_t inner;
  int64_t base;
  int first_prompt; /* the unit's: its clean rows start a clean pass's */
  int deadline_hit;
} unit_ctx_t;

/* Whether the unit must stop now: a cancel, a stop, or the job's deadline
 * passed. Asked between the engine's passes (clean and variant). */
static int unit_must_stop(unit_ctx_t *u) {
  if (u->j->deadline > 0 && clock_wall() > u->j->deadline) {
    u->deadline_hit = 1;
    return 1;
  }
  return u->j->cancel || u->s->stopping;
}

static int unit_clean(void *ctx, const engine_clean_t *row) {
  unit_ctx_t *u = ctx;
  if (row->prompt == u->first_prompt && unit_must_stop(u)) /* once per clean pass */
    return 1;
  return u->inner.clean(u->inner.ctx, row);
}

static int unit_variant(void *ctx, const engine_variant_t *row) {
  unit_ctx_t *u = ctx;
  return u->inner.variant(u->inner.ctx, row);
}

static int unit_progress(void *ctx, long done, long total) {
  unit_ctx_t *u = ctx;
  (void)total;
  pthread_mutex_lock(&u->s->lock);
  u->j->variants_done = u->base + done;
  pthread_mutex_unlock(&u->s->lock);
  return unit_must_stop(u);
}

/* One page of a job's stored rows, copied out under the store's read lock
 * and parsed after it is let go: the HTTP thread's streams read through the
 * same lock, and /v1/health waits behind them. */
typedef struct {
  buffer_t text;
  size_t ends[SUMMARY_PAGE]; /* row i is text[ends[i - 1] .. ends[i]) */
  size_t n;
  int out_of_memory;
} row_page_t;

static int copy_row(void *ctx, int64_t seq, const char *text, size_t len) {
  row_page_t *page = ctx;
  (void)seq;
  if (page->n == SUMMARY_PAGE || buffer_append(&page->text, text, len) != 0) {
    page->out_of_memory = 1;
    return 1;
  }
  page->ends[page->n++] = page->text.len;
  return 0;
}

/* The page's rows into the summary. */
static void add_page(results_t *r, const row_page_t *page) {
  for (size_t i = 0, start = 0; i < page->n; start = page->ends[i++]) {
    json_t *row = json_loadb(page->text.data + start, page->ends[i] - start, 0, NULL);
    if (row) {
      results_add_row(r, row);
      json_decref(row);
    }
  }
}

static results_t *job_results(server_t *s, sched_job_t *j, rowbuf_t *buf, char *err) {
  server_model_t *m = &s->models[j->model];
  results_info_t info = {.model_name = m->name,
                         .backend = s->backend->ops->name,
                         .precision = engine_precision(m->engine, j->spec->tf32),
                         .norm_scale_ablated = j->spec->norm_scale_ablated,
                         .spec = j->spec};
  return results_create(&j->plan, m->model, m->tok, &info, collect, buf, err);
}

/* Fails or cancels a job in the store. A job that ended meanwhile (a cancel
 * or another worker) stays as it ended. */
static void end_job(server_t *s, sched_job_t *j, store_state_t state, const char *why) {
  char err[HYDRA_ERR_LEN];
  const int rc = store_job_set_state(s->store, j->id, state, why, NULL, 0, err);
  if (rc == STORE_STATE || rc == STORE_NOT_FOUND) {
    server_log(s, 2, "job %s: not moved to %s: %s", j->id, store_state_name(state), err);
    notify_rows_committed(&s->notify);
    return;
  }
  if (rc < 0) {
    server_log(s, 0, "job %s: storing state %s failed: %s", j->id, store_state_name(state), err);
    /* Kept in memory: the job's status and streams still tell how it ended. */
    struct unstored *u = calloc(1, sizeof(*u));
    if (u) {
      snprintf(u->id, sizeof(u->id), "%s", j->id);
      u->state = state;
      snprintf(u->why, sizeof(u->why), "%.200s (not recorded: the job store failed: %.200s)",
               why ? why : store_state_name(state), err);
      pthread_mutex_lock(&s->lock);
      u->next = s->unstored;
      s->unstored = u;
      pthread_mutex_unlock(&s->lock);
    }
  }
  server_log(s, 1, "job %s %s%s%s", j->id, store_state_name(state), why ? ": " : "",
             why ? why : "");
  notify_rows_committed(&s->notify);
}

/* A store call failed. On a store of its own the job fails (a full disk
 * will not empty itself). On a shared store the database may be restarting
 * or out of reach: the job stays, its unit pending (the lease runs out), and
 * this worker tries it again in a second. Returns run_unit's code. */
static int store_failed(server_t *s, sched_job_t *j, const char *err) {
  if (!store_shared(s->store)) {
    end_job(s, j, STORE_FAILED, err);
    return 1;
  }
  server_log(s, 0, "job %s: %s (trying again)", j->id, err);
  j->retry_at = clock_monotonic() + 1;
  return 0;
}

/* Stores the header with the move to running, once per job: when another
 * worker stored it first, the job is running already. 0 to go on, 1 when the
 * job has ended (failed here, or ended elsewhere). */
static int start_job(server_t *s, sched_job_t *j, results_t *r, rowbuf_t *buf) {
  char err[HYDRA_ERR_LEN] = "";
  if (results_header(r) != 0) {
    end_job(s, j, STORE_FAILED, "writing the header failed");
    return 1;
  }
  int rc = store_job_set_state(s->store, j->id, STORE_RUNNING, NULL, (const char *const *)buf->rows,
                               buf->n, err);
  if (rc == STORE_STATE) {
    store_job_t now;
    rc = store_job_get(s->store, j->id, &now, err);
    if (rc == 0 && now.state != STORE_RUNNING)
      return 1;
  }
  if (rc != 0)
    return store_failed(s, j, err[0] ? err : "storing the header failed");
  j->started = 1;
  pthread_mutex_lock(&s->lock);
  s->rows_total += (int64_t)buf->n;
  pthread_mutex_unlock(&s->lock);
  server_log(s, 1, "job %s running (%d units)", j->id, j->n_units);
  notify_rows_committed(&s->notify);
  rowbuf_clear(buf);
  return 0;
}

/* Runs a claimed unit. 0 when it is stored (by this worker or, after its
 * lease ran out, another), 1 when the job has ended, -1 when the worker must
 * stop (draining: the unit stays pending). */
static int run_claimed_unit(server_t *s, sched_job_t *j, results_t *r, rowbuf_t *buf, int unit) {
  char err[HYDRA_ERR_LEN] = "";
  const int P = j->plan.n_prompts;
  engine_job_t ej = j->plan.job;
  /* Unit u holds prompts [u P / n, (u + 1) P / n): from the job's own stored
   * unit count, so a restart with another --unit-prompts, or another node,
   * runs the same units. */
  ej.prompt_first = (int)((long)unit * P / j->n_units);
  ej.prompt_end = (int)((long)(unit + 1) * P / j->n_units);
  ej.source_key = j->source_key;
  unit_ctx_t u = {.s = s, .j = j, .inner = results_sink(r), .first_prompt = ej.prompt_first};
  pthread_mutex_lock(&s->lock);
  u.base = j->variants_done;
  pthread_mutex_unlock(&s->lock);
  engine_sink_t sink = {
      .ctx = &u, .clean = unit_clean, .variant = unit_variant, .progress = unit_progress};
  const double t0 = clock_monotonic();
  if (engine_run(s->models[j->model].engine, &ej, &sink, err) != 0) {
    if (s->stopping && !j->cancel)
      return -1;
    if (j->cancel)
      end_job(s, j, STORE_CANCELLED, "cancelled");
    else
      end_job(s, j, STORE_FAILED, u.deadline_hit ? DEADLINE_MESSAGE : err);
    return 1;
  }
  const int64_t variants = engine_range_variants(&ej, ej.prompt_first, ej.prompt_end);
  int rc = store_unit_complete(s->store, j->id, unit, (const char *const *)buf->rows, buf->n,
                               variants, err);
  if (rc == STORE_DUPLICATE) { /* the lease ran out and another worker stored it first */
    server_log(s, 1, "job %s: unit %d was stored by another worker; this run's rows dropped", j->id,
               unit);
    rowbuf_clear(buf);
    return 0;
  }
  if (rc == STORE_STATE || rc == STORE_NOT_FOUND) /* ended meanwhile (a cancel elsewhere) */
    return 1;
  if (rc < 0)
    return store_failed(s, j, err);
  const double dt = clock_monotonic() - t0;
  pthread_mutex_lock(&s->lock);
  s->rows_total += (int64_t)buf->n;
  s->variants_total_done += variants;
  if (dt > 0)
    s->rate_ewma = s->rate_ewma > 0 ? 0.7 * s->rate_ewma + 0.3 * variants / dt : variants / dt;
  j->variants_done = u.base + variants;
  s->claimed_unit = -1; /* stored: nothing left to renew */
  pthread_mutex_unlock(&s->lock);
  notify_rows_committed(&s->notify);
  rowbuf_clear(buf);
  return 0;
}

/* Every unit is done: the summary from every stored variant row, then done. */
static int finish_job(server_t *s, sched_job_t *j, results_t *r, rowbuf_t *buf) {
  char err[HYDRA_ERR_LEN] = "";
  results_reset_summary(r);
  store_job_t stored;
  if (store_job_get(s->store, j->id, &stored, err) == 0)
    results_set_rows(r, stored.rows);
  /* By pages, each parsed after the store's read lock is let go: the HTTP
   * thread's streams read through the same lock (one read of 61,708 rows
   * held /v1/health for 2.3 s; a page parsed under the lock, tens of ms). */
  size_t n = SUMMARY_PAGE;
  row_page_t page = {0};
  for (int64_t seq = 0; n == SUMMARY_PAGE; seq += (int64_t)n) {
    page.n = 0;
    buffer_clear(&page.text);
    if (store_rows_read(s->store, j->id, seq, SUMMARY_PAGE, copy_row, &page, &n, NULL, err) < 0) {
      buffer_free(&page.text);
      return store_failed(s, j, err);
    }
    if (page.out_of_memory) {
      buffer_free(&page.text);
      end_job(s, j, STORE_FAILED, "out of memory reading the rows for the summary");
      return 1;
    }
    add_page(r, &page);
  }
  buffer_free(&page.text);
  if (results_finish(r, clock_wall() - j->started_at) != 0) {
    end_job(s, j, STORE_FAILED, "writing the summary failed");
    return 1;
  }
  char warning[160] = "";
  const long nonfinite = results_nonfinite(r);
  if (nonfinite)
    snprintf(warning, sizeof warning,
             "%ld row%s hold non-finite values (null, named in each row's \"nonfinite\")",
             nonfinite, nonfinite == 1 ? "" : "s");
  int rc = store_job_set_state(s->store, j->id, STORE_DONE, warning[0] ? warning : NULL,
                               (const char *const *)buf->rows, buf->n, err);
  if (rc == STORE_STATE || rc == STORE_NOT_FOUND)
    return 1;
  if (rc < 0)
    return store_failed(s, j, err);
  pthread_mutex_lock(&s->lock);
  s->rows_total += (int64_t)buf->n;
  pthread_mutex_unlock(&s->lock);
  server_log(s, 1, "job %s done", j->id);
  notify_rows_committed(&s->notify);
  return 1;
}

/* Claims job j's next unit for this worker: *unit gets it (n_units: the
 * summary; -1: nothing claimable now). Returns 1 when the job has ended (here
 * or elsewhere), 0 otherwise, as run_unit. */
static int claim_unit(server_t *s, sched_job_t *j, int *unit) {
  char err[HYDRA_ERR_LEN] = "";
  *unit = -1;
  int rc = store_claim_unit(s->store, j->id, s->cfg.worker_id, s->cfg.lease_s, unit, err);
  if (rc == STORE_STATE || rc == STORE_NOT_FOUND) { /* ended elsewhere */
    notify_rows_committed(&s->notify);
    return 1;
  }
  if (rc < 0)
    return store_failed(s, j, err);
  if (*unit >= 0) {
    pthread_mutex_lock(&s->lock);
    s->claimed_unit = *unit;
    pthread_mutex_unlock(&s->lock);
  }
  return 0;
}

/* Claims and runs one unit of job j (or its summary). Returns 1 when the job
 * has ended (done, failed, cancelled, here or elsewhere), 0 when work may
 * remain, -1 when the worker must stop. */
static int run_unit(server_t *s, sched_job_t *j) {
  char err[HYDRA_ERR_LEN] = "";
  int unit = -1;
  int rc = claim_unit(s, j, &unit);
  if (rc != 0)
    return rc;
  if (unit < 0) { /* the pending units are leased to live workers */
    j->retry_at = clock_monotonic() + (s->cfg.lease_s < 4 ? s->cfg.lease_s / 4 : 1);
    return 0;
  }
  job_error_t jerr;
  server_model_t *m = &s->models[j->model];
  if (!j->planned) { /* its first unit here: the plan, kept until the job ends */
    if (plan_build(j->spec, m->model, m->tok, &j->plan, &jerr) != 0) {
      json_field_message(err, HYDRA_ERR_LEN, jerr.field, jerr.message);
      end_job(s, j, STORE_FAILED, err);
      return 1;
    }
    j->planned = 1;
  }
  rowbuf_t buf = {0};
  results_t *r = job_results(s, j, &buf, err);
  if (!r) {
    end_job(s, j, STORE_FAILED, err);
    return 1;
  }
  rc = 0;
  if (!j->started)
    rc = start_job(s, j, r, &buf);
  if (rc == 0 && j->started) /* not started: the store failed, try again later */
    rc = unit < j->n_units ? run_claimed_unit(s, j, r, &buf, unit) : finish_job(s, j, r, &buf);
  /* After the job's last unit its summary comes at once (it is the job's
   * next claim), not after a turn of every other job: a small job is done
   * when its rows are. */
  store_job_t stored;
  if (rc == 0 && unit < j->n_units && store_job_get(s->store, j->id, &stored, err) == 0 &&
      stored.units_done >= stored.n_units) {
    int next = -1; /* -1: the summary is leased to another worker */
    rc = claim_unit(s, j, &next);
    if (rc == 0 && next >= 0)
      rc = next < j->n_units ? run_claimed_unit(s, j, r, &buf, next) : finish_job(s, j, r, &buf);
  }
  rowbuf_clear(&buf);
  results_free(r);
  return rc;
}

/* Sleeps seconds of the monotonic clock on the wake condition (the caller
 * holds the lock). */
static void wait_for(server_t *s, double seconds) {
  const struct timespec until = clock_monotonic_after(seconds);
  pthread_cond_timedwait(&s->wake, &s->lock, &until);
}

/* Frees the engines' stores of clean sources kept for jobs that have left
 * the queue (done, failed, cancelled, or dropped by discovery): only the
 * queued jobs' stores stay in backend memory between units. */
static void retain_sources(server_t *s) {
  for (int m = 0; m < s->n_models; m++) {
    uint64_t *keys = NULL;
    int n = 0, cap = 0;
    pthread_mutex_lock(&s->lock);
    for (sched_job_t *j = s->jobs; j; j = j->next)
      cap++;
    if (cap > 0 && !(keys = malloc(sizeof(uint64_t) * cap))) {
      pthread_mutex_unlock(&s->lock);
      continue; /* out of memory: they stay kept until the next unit */
    }
    for (sched_job_t *j = s->jobs; j; j = j->next)
      if (j->model == m)
        keys[n++] = j->source_key;
    pthread_mutex_unlock(&s->lock);
    engine_retain_sources(s->models[m].engine, keys, n);
    free(keys);
    size_t bytes = 0;
    engine_kept_sources(s->models[m].engine, &bytes);
    pthread_mutex_lock(&s->lock);
    s->models[m].kept_bytes = bytes;
    pthread_mutex_unlock(&s->lock);
  }
}

static void *worker(void *arg) {
  server_t *s = arg;
  double last_purge = 0;
  s->backend->ops->attach_thread(s->backend); /* --threads on this thread too */
  for (;;) {
    pthread_mutex_lock(&s->lock);
    sched_job_t *j = NULL;
    while (!s->stopping && !s->draining && !(j = pick(s))) {
      if (s->retain_pending) { /* a job left the queue while no unit ran */
        s->retain_pending = 0;
        pthread_mutex_unlock(&s->lock);
        retain_sources(s);
        pthread_mutex_lock(&s->lock);
        continue;
      }
      if (s->jobs) /* all waiting on other workers' leases */
        wait_for(s, 0.2);
      else
        pthread_cond_wait(&s->wake, &s->lock);
    }
    if (s->stopping || s->draining) {
      pthread_mutex_unlock(&s->lock);
      break;
    }
    snprintf(s->running_job, sizeof(s->running_job), "%s", j->id);
    s->running = j;
    s->claimed_unit = -1;
    pthread_mutex_unlock(&s->lock);

    int rc = j->cancel ? (end_job(s, j, STORE_CANCELLED, "cancelled"), 1)
             : j->deadline > 0 && clock_wall() > j->deadline
                 ? (end_job(s, j, STORE_FAILED, DEADLINE_MESSAGE), 1)
                 : run_unit(s, j);

    pthread_mutex_lock(&s->lock);
    s->running_job[0] = '\0';
    s->running = NULL;
    s->claimed_unit = -1;
    if (rc > 0) /* ended; a stopping worker leaves the job for scheduler_stop to free */
      unlink_job(s, j);
    pthread_mutex_unlock(&s->lock);
    if (rc == 1)
      sched_job_free(j);
    retain_sources(s);
    if (rc < 0)
      break;
    if (s->cfg.retention_s > 0 && clock_wall() - last_purge > 600) {
      char err[HYDRA_ERR_LEN];
      size_t n = 0;
      if (store_purge(s->store, clock_wall() - s->cfg.retention_s, &n, err) < 0)
        server_log(s, 0, "purge: %s", err);
      else if (n)
        server_log(s, 1, "purged %zu finished jobs older than the retention", n);
      last_purge = clock_wall();
    }
  }
  return NULL;
}

/* Renews the running unit's lease; a job that ended in the store (a cancel
 * on another node) stops at its next pass. */
static void renew(server_t *s) {
  char id[STORE_ID_LEN], err[HYDRA_ERR_LEN];
  pthread_mutex_lock(&s->lock);
  const int unit = s->running ? s->claimed_unit : -1;
  snprintf(id, sizeof(id), "%s", s->running ? s->running->id : "");
  pthread_mutex_unlock(&s->lock);
  if (unit < 0)
    return;
  int held = 1;
  store_state_t state = STORE_RUNNING;
  int rc =
      store_renew_lease(s->store, id, unit, s->cfg.worker_id, s->cfg.lease_s, &held, &state, err);
  if (rc < 0) {
    server_log(s, 0, "job %s: %s", id, err);
    return;
  }
  if (rc == 0 && !held)
    server_log(s, 1, "job %s: the lease on unit %d ran out and another worker took it", id, unit);
  if (rc == STORE_NOT_FOUND || store_state_final(state)) {
    pthread_mutex_lock(&s->lock);
    if (s->running && strcmp(s->running->id, id) == 0)
      s->running->cancel = 1;
    pthread_mutex_unlock(&s->lock);
  }
}

/* Fails the jobs of this worker's queue that passed their deadline while
 * waiting (not the one running now: its unit stops at its next pass). */
static void expire_deadlines(server_t *s) {
  sched_job_t *expired = NULL;
  const double now = clock_wall();
  pthread_mutex_lock(&s->lock);
  for (sched_job_t **p = &s->jobs; *p;) {
    sched_job_t *j = *p;
    if (j->deadline > 0 && now > j->deadline && j != s->running) {
      *p = j->next;
      j->next = expired;
      expired = j;
      s->retain_pending = 1; /* its kept sources go back (worker) */
      pthread_cond_signal(&s->wake);
    } else
      p = &j->next;
  }
  pthread_mutex_unlock(&s->lock);
  while (expired) {
    sched_job_t *j = expired;
    expired = j->next;
    end_job(s, j, STORE_FAILED, DEADLINE_MESSAGE " while it waited in the queue");
    sched_job_free(j);
  }
}

/* The keeper: renews leases every third of a lease, fails waiting jobs
 * past their deadline and, on a shared store, polls it twice a second.
 * Sleeps by the monotonic clock. */
static void *keeper(void *arg) {
  server_t *s = arg;
  const double poll_s = 0.5, renew_s = s->cfg.lease_s / 3;
  double last_renew = clock_monotonic(), last_poll = last_renew, last_expire = last_renew;
  while (!s->keeper_stop) {
    const struct timespec tick = {0, 50 * 1000 * 1000};
    nanosleep(&tick, NULL);
    const double now = clock_monotonic();
    if (now - last_renew >= renew_s) {
      renew(s);
      last_renew = now;
    }
    if (now - last_expire >= KEEPER_DEADLINE_S) {
      expire_deadlines(s);
      last_expire = now;
    }
    if (store_shared(s->store) && now - last_poll >= poll_s && !s->draining && !s->stopping) {
      scheduler_discover(s);
      notify_rows_committed(&s->notify); /* rows other nodes committed */
      last_poll = now;
    }
  }
  return NULL;
}

/* Leaves a job waiting: its note goes into the store once per process (a
 * unit stored by a worker that has the model clears it), so that workers
 * without the model do not rewrite it at every poll. */
static void leave_waiting(server_t *s, const store_job_t *j, const char *why) {
  int is_new = 0;
  pthread_mutex_lock(&s->lock);
  struct noted *n = s->noted;
  while (n && strcmp(n->id, j->id) != 0)
    n = n->next;
  if (!n && (n = calloc(1, sizeof(*n)))) {
    snprintf(n->id, sizeof(n->id), "%s", j->id);
    n->next = s->noted;
    s->noted = n;
    is_new = 1;
  }
  if (n)
    n->listed = 1;
  pthread_mutex_unlock(&s->lock);
  if (!is_new)
    return;
  char err[HYDRA_ERR_LEN];
  if (store_job_note(s->store, j->id, why, err) < 0)
    server_log(s, 0, "job %s: %s", j->id, err);
  server_log(s, 1, "job %s left waiting: %s", j->id, why);
}

/* Forgets the jobs left waiting that the last listing no longer holds, and
 * marks the others unlisted for the next one. */
static void prune_noted(server_t *s) {
  pthread_mutex_lock(&s->lock);
  for (struct noted **p = &s->noted; *p;) {
    struct noted *n = *p;
    if (!n->listed) {
      *p = n->next;
      free(n);
    } else {
      n->listed = 0;
      p = &n->next;
    }
  }
  pthread_mutex_unlock(&s->lock);
}

/* Queues one job found in the store. */
static void discover_job(server_t *s, const store_resume_t *found) {
  char err[HYDRA_ERR_LEN];
  const store_job_t *j = &found->job;
  char *spec_text = NULL;
  size_t len = 0;
  job_error_t jerr;
  job_spec_t *spec = NULL;
  int mi = server_find_model(s, j->model);
  if (mi < 0) {
    snprintf(err, sizeof(err), "waiting for model %.100s, which this worker (%s) does not hold",
             j->model, s->cfg.worker_id);
    leave_waiting(s, j, err);
    return;
  }
  if (j->fingerprint[0] && strcmp(j->fingerprint, s->models[mi].fingerprint) != 0) {
    snprintf(err, sizeof(err),
             "waiting for model %s as submitted (%.100s); this worker (%s) holds another file "
             "under that name (%.100s)",
             s->models[mi].name, j->fingerprint, s->cfg.worker_id, s->models[mi].fingerprint);
    leave_waiting(s, j, err);
    return;
  }
  int rc = store_job_spec(s->store, j->id, &spec_text, &len, err);
  if (rc != 0) { /* the store failed, or the job is gone: look again at the next poll */
    if (rc < 0)
      server_log(s, 0, "job %s: %s", j->id, err);
    return;
  }
  if (!(spec = job_parse(spec_text, len, &jerr))) {
    store_job_set_state(s->store, j->id, STORE_FAILED, "its stored spec is unreadable", NULL, 0,
                        NULL);
    free(spec_text);
    return;
  }
  free(spec_text);
  rc = scheduler_enqueue(s, j, spec, mi, err);
  if (rc == SCHEDULER_OTHER_MODEL)
    leave_waiting(s, j, err);
  else if (rc == SCHEDULER_OTHER_WEIGHTS &&
           store_shared(s->store)) /* a worker that holds them runs it */
    server_log(s, 2, "job %s left to other workers: %s", j->id, err);
  else if (rc != 0)
    store_job_set_state(s->store, j->id, STORE_FAILED, err, NULL, 0, NULL);
  else
    server_log(s, store_shared(s->store) ? 2 : 1, "job %s queued here at unit %d of %d", j->id,
               found->first_pending, j->n_units);
}

void scheduler_discover(server_t *s) {
  char err[HYDRA_ERR_LEN];
  store_resume_t *jobs = NULL;
  size_t n = 0;
  const double listed_at = clock_monotonic();
  if (store_jobs_resumable(s->store, &jobs, &n, err) != 0) {
    server_log(s, 0, "listing jobs to run: %s", err);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    pthread_mutex_lock(&s->lock);
    const int known = find_job(s, jobs[i].job.id) != NULL;
    pthread_mutex_unlock(&s->lock);
    if (!known)
      discover_job(s, &jobs[i]);
  }
  prune_noted(s);
  /* Jobs known here that ended elsewhere (known before the listing, so not
   * a job submitted here meanwhile) leave the queue. */
  sched_job_t *gone = NULL;
  pthread_mutex_lock(&s->lock);
  for (sched_job_t **p = &s->jobs; *p;) {
    sched_job_t *j = *p;
    int listed = 0;
    for (size_t i = 0; i < n && !listed; i++)
      listed = strcmp(jobs[i].job.id, j->id) == 0;
    if (!listed && j->known_since < listed_at && j != s->running) {
      *p = j->next;
      j->next = gone;
      gone = j;
    } else
      p = &j->next;
  }
  if (gone) { /* their kept sources go back (worker) */
    s->retain_pending = 1;
    pthread_cond_signal(&s->wake);
  }
  pthread_mutex_unlock(&s->lock);
  while (gone) {
    sched_job_t *j = gone;
    gone = j->next;
    sched_job_free(j);
  }
  free(jobs);
}

int scheduler_start(server_t *s, char *err) {
  size_t n = 0;
  /* This worker's leases from before a crash: free them rather than wait. */
  if (store_release_leases(s->store, s->cfg.worker_id, &n, err) < 0)
    return -1;
  if (n)
    server_log(s, 1, "released %zu leases of an earlier run of worker %s", n, s->cfg.worker_id);
  scheduler_discover(s);
  if (pthread_create(&s->worker, NULL, worker, s) != 0)
    return err_set(err, "cannot start the worker thread");
  if (pthread_create(&s->keeper, NULL, keeper, s) != 0)
    return err_set(err, "cannot start the keeper thread");
  s->keeper_started = 1;
  return 0;
}

/* Joins the keeper and frees this worker's leases (its running unit, if
 * stopped in the middle, is claimed by the next worker at once). */
static void stop_keeper(server_t *s) {
  char err[HYDRA_ERR_LEN];
  if (s->keeper_started) {
    s->keeper_stop = 1;
    pthread_join(s->keeper, NULL);
    s->keeper_started = 0;
  }
  if (store_release_leases(s->store, s->cfg.worker_id, NULL, err) < 0)
    server_log(s, 0, "releasing leases: %s", err);
}

void scheduler_stop(server_t *s) {
  pthread_mutex_lock(&s->lock);
  s->stopping = 1;
  pthread_cond_broadcast(&s->wake);
  pthread_mutex_unlock(&s->lock);
  if (s->worker)
    pthread_join(s->worker, NULL);
  s->worker = 0;
  stop_keeper(s);
  while (s->jobs) {
    sched_job_t *j = s->jobs;
    s->jobs = j->next;
    sched_job_free(j);
  }
}
