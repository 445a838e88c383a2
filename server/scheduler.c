/* scheduler.c - hydrad's worker: jobs are split into work units (chunks of
 * prompts); units run one at a time, round-robin between users, so a small
 * job is not stuck behind a large one. A unit's rows are stored with its
 * completion in one transaction; a restart resumes at the first pending unit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"
#include "server.h"

typedef struct {
  char **rows;
  size_t n, cap;
} rowbuf_t;

static int collect(void *ctx, json_t *row) {
  rowbuf_t *b = ctx;
  char *s = json_dumps(row, JSON_COMPACT);
  if (!s)
    return -1;
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 64;
    char **g = realloc(b->rows, sizeof(char *) * cap);
    if (!g) {
      free(s);
      return -1;
    }
    b->rows = g;
    b->cap = cap;
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

int scheduler_enqueue(server_t *s, const store_job_t *job, job_spec_t *spec, int model,
                      int first_unit, char *err) {
  sched_job_t *j = calloc(1, sizeof(*j));
  if (!j) {
    job_free(spec);
    return err_set(err, "out of memory");
  }
  job_error_t jerr;
  server_model_t *m = &s->models[model];
  snprintf(j->id, sizeof(j->id), "%s", job->id);
  snprintf(j->user, sizeof(j->user), "%s", job->user);
  j->model = model;
  j->spec = spec;
  j->n_units = job->n_units;
  j->next_unit = first_unit;
  j->started = job->state == STORE_RUNNING;
  j->deadline = job->deadline;
  j->started_at = job->started_at > 0 ? job->started_at : server_now();
  if (plan_build(spec, m->model, m->tok, &j->plan, &jerr) != 0) {
    err_set(err, "%s%s%s", jerr.field, jerr.field[0] ? ": " : "", jerr.message);
    sched_job_free(j);
    return -1;
  }
  pthread_mutex_lock(&s->lock);
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

void scheduler_forget_unstored(server_t *s) {
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
      }
      break;
    }
  pthread_mutex_unlock(&s->lock);
  sched_job_free(drop);
  return found;
}

/* The next job: round-robin over users in queue order, each user's oldest
 * job first. The caller holds the lock. */
static sched_job_t *pick(server_t *s) {
  if (!s->jobs)
    return NULL;
  sched_job_t *first_after = NULL;
  int seen_last = 0;
  for (sched_job_t *j = s->jobs; j; j = j->next) {
    if (strcmp(j->user, s->last_user) == 0) {
      seen_last = 1;
      continue;
    }
    if (seen_last) { /* the first job of a user after last_user's */
      int earlier = 0;
      for (sched_job_t *k = s->jobs; k != j; k = k->next)
        earlier |= strcmp(k->user, j->user) == 0;
      if (!earlier) {
        first_after = j;
        break;
      }
    }
  }
  sched_job_t *pick = first_after ? first_after : s->jobs;
  if (!first_after) { /* wrap around: the oldest job of the first user that is not last */
    for (sched_job_t *j = s->jobs; j; j = j->next)
      if (strcmp(j->user, s->last_user) != 0) {
        pick = j;
        break;
      }
  }
  snprintf(s->last_user, sizeof(s->last_user), "%s", pick->user);
  return pick;
}

typedef struct {
  server_t *s;
  sched_job_t *j;
  engine_sink_t inner;
  int64_t base;
  int deadline_hit;
} unit_ctx_t;

static int unit_clean(void *ctx, const engine_clean_t *row) {
  unit_ctx_t *u = ctx;
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
  if (u->j->deadline > 0 && server_now() > u->j->deadline) {
    u->deadline_hit = 1;
    return 1;
  }
  return u->j->cancel || u->s->stopping;
}

static int read_row(void *ctx, int64_t seq, const char *text, size_t len) {
  (void)seq;
  json_t *row = json_loadb(text, len, 0, NULL);
  if (row) {
    results_add_variant_row(ctx, row);
    json_decref(row);
  }
  return 0;
}

static results_t *job_results(server_t *s, sched_job_t *j, rowbuf_t *buf, char *err) {
  server_model_t *m = &s->models[j->model];
  results_info_t info = {.model_name = m->name,
                         .backend = s->backend->ops->name,
                         .precision = engine_precision(m->engine, j->spec->tf32),
                         .norm_scale_ablated = j->spec->norm_scale_ablated};
  return results_create(&j->plan, m->model, m->tok, &info, collect, buf, err);
}

/* Fails or cancels a job in the store. */
static void end_job(server_t *s, sched_job_t *j, store_state_t state, const char *why) {
  char err[HYDRA_ERR_LEN];
  if (store_job_set_state(s->store, j->id, state, why, NULL, 0, err) < 0) {
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
  server_rows_committed(s);
}

/* Runs one unit of job j. Returns 1 when the job has ended (done, failed,
 * cancelled), 0 when units remain, -1 when the worker must stop. */
static int run_unit(server_t *s, sched_job_t *j) {
  char err[HYDRA_ERR_LEN] = "";
  rowbuf_t buf = {0};
  const int unit = j->next_unit, P = j->plan.n_prompts;
  results_t *r = job_results(s, j, &buf, err);
  int rc = 1;
  if (!r) {
    end_job(s, j, STORE_FAILED, err);
    return 1;
  }
  if (!j->started) {
    if (results_header(r) != 0 ||
        store_job_set_state(s->store, j->id, STORE_RUNNING, NULL, (const char *const *)buf.rows,
                            buf.n, err) < 0) {
      end_job(s, j, STORE_FAILED, err[0] ? err : "storing the header failed");
      goto done;
    }
    j->started = 1;
    pthread_mutex_lock(&s->lock);
    s->rows_total += (int64_t)buf.n;
    pthread_mutex_unlock(&s->lock);
    server_log(s, 1, "job %s running (%d units)", j->id, j->n_units);
    server_rows_committed(s);
    rowbuf_clear(&buf);
  }
  if (unit < j->n_units) {
    engine_job_t ej = j->plan.job;
    /* Unit u holds prompts [u P / n, (u + 1) P / n): from the job's own
     * stored unit count, so a restart with another --unit-prompts resumes
     * the same units. */
    ej.prompt_first = (int)((long)unit * P / j->n_units);
    ej.prompt_end = (int)((long)(unit + 1) * P / j->n_units);
    unit_ctx_t u = {.s = s, .j = j, .inner = results_sink(r)};
    pthread_mutex_lock(&s->lock);
    u.base = j->variants_done;
    pthread_mutex_unlock(&s->lock);
    engine_sink_t sink = {
        .ctx = &u, .clean = unit_clean, .variant = unit_variant, .progress = unit_progress};
    const double t0 = server_now();
    if (engine_run(s->models[j->model].engine, &ej, &sink, err) != 0) {
      if (s->stopping && !j->cancel) {
        rc = -1; /* draining: the unit stays pending and resumes after the restart */
        goto done;
      }
      if (j->cancel)
        end_job(s, j, STORE_CANCELLED, "cancelled");
      else
        end_job(s, j, STORE_FAILED, u.deadline_hit ? "deadline exceeded" : err);
      goto done;
    }
    const int64_t variants = engine_job_variants(&ej) / P * (ej.prompt_end - ej.prompt_first);
    int src = store_unit_complete(s->store, j->id, unit, (const char *const *)buf.rows, buf.n,
                                  variants, err);
    if (src < 0 || src == STORE_STATE) {
      end_job(s, j, STORE_FAILED, err);
      goto done;
    }
    const double dt = server_now() - t0;
    pthread_mutex_lock(&s->lock);
    s->rows_total += (int64_t)buf.n;
    s->variants_total_done += variants;
    if (dt > 0)
      s->rate_ewma = s->rate_ewma > 0 ? 0.7 * s->rate_ewma + 0.3 * variants / dt : variants / dt;
    j->variants_done = u.base + variants;
    pthread_mutex_unlock(&s->lock);
    server_rows_committed(s);
    rowbuf_clear(&buf);
    j->next_unit++;
  }
  if (j->next_unit < j->n_units) {
    rc = 0;
    goto done;
  }
  /* The last unit: the summary from every stored variant row, then done. */
  results_reset_summary(r);
  store_job_t stored;
  if (store_job_get(s->store, j->id, &stored, err) == 0)
    results_set_rows(r, stored.rows);
  if (store_rows_read(s->store, j->id, 0, 0, read_row, r, NULL, NULL, err) < 0 ||
      results_finish(r, server_now() - j->started_at) != 0 ||
      store_job_set_state(s->store, j->id, STORE_DONE, NULL, (const char *const *)buf.rows, buf.n,
                          err) < 0) {
    end_job(s, j, STORE_FAILED, err[0] ? err : "writing the summary failed");
    goto done;
  }
  pthread_mutex_lock(&s->lock);
  s->rows_total += (int64_t)buf.n;
  pthread_mutex_unlock(&s->lock);
  server_log(s, 1, "job %s done", j->id);
  server_rows_committed(s);
done:
  rowbuf_clear(&buf);
  results_free(r);
  return rc;
}

static void *worker(void *arg) {
  server_t *s = arg;
  double last_purge = 0;
  for (;;) {
    pthread_mutex_lock(&s->lock);
    sched_job_t *j = NULL;
    while (!s->stopping && !s->draining && !(j = pick(s)))
      pthread_cond_wait(&s->wake, &s->lock);
    if (s->stopping || s->draining) {
      pthread_mutex_unlock(&s->lock);
      break;
    }
    snprintf(s->running_job, sizeof(s->running_job), "%s", j->id);
    pthread_mutex_unlock(&s->lock);

    int rc = j->cancel ? (end_job(s, j, STORE_CANCELLED, "cancelled"), 1) : run_unit(s, j);

    pthread_mutex_lock(&s->lock);
    s->running_job[0] = '\0';
    if (rc != 0)
      unlink_job(s, j);
    pthread_mutex_unlock(&s->lock);
    if (rc == 1)
      sched_job_free(j);
    if (rc < 0)
      break;
    if (s->cfg.retention_s > 0 && server_now() - last_purge > 600) {
      char err[HYDRA_ERR_LEN];
      size_t n = 0;
      if (store_purge(s->store, server_now() - s->cfg.retention_s, &n, err) < 0)
        server_log(s, 0, "purge: %s", err);
      else if (n)
        server_log(s, 1, "purged %zu finished jobs older than the retention", n);
      last_purge = server_now();
    }
  }
  return NULL;
}

int scheduler_start(server_t *s, char *err) {
  if (pthread_create(&s->worker, NULL, worker, s) != 0)
    return err_set(err, "cannot start the worker thread");
  return 0;
}

void scheduler_stop(server_t *s) {
  pthread_mutex_lock(&s->lock);
  s->stopping = 1;
  pthread_cond_broadcast(&s->wake);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->worker, NULL);
  while (s->jobs) {
    sched_job_t *j = s->jobs;
    s->jobs = j->next;
    sched_job_free(j);
  }
}
