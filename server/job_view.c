/* job_view.c - a job's JSON, ids by prefix, pages of job lists
 * (job_view.h). */
#include "job_view.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "clock.h"

/* A job's own rate: its variants over the time since it first ran (until
 * it ended), waits between its units included, so that its ETA counts
 * the turns other jobs take. 0 when unknown (not started, nothing done). */
static double job_rate(const store_job_t *j, int64_t done, double now) {
  const double end = j->finished_at > 0 ? j->finished_at : now;
  if (j->started_at <= 0 || done <= 0 || end <= j->started_at)
    return 0;
  return (double)done / (end - j->started_at);
}

/* Why an open job is not running now, or NULL: the store's note (its model
 * is not held here), else the unit of another job that runs now. */
static json_t *waiting_json(const store_job_t *j, const sched_place_t *p, const char *viewer,
                            role_t role) {
  if (j->note[0])
    return json_string(j->note);
  if (!p->known || p->running || !p->other_id[0])
    return json_null();
  char whose[STORE_USER_LEN + 64], unit[64] = "";
  if (role == ROLE_ADMIN || strcmp(p->other_user, viewer) == 0)
    snprintf(whose, sizeof whose, "job %.12s (user %s)", p->other_id, p->other_user);
  else
    snprintf(whose, sizeof whose, "another user's job");
  if (p->other_unit >= 0 && p->other_unit < p->other_n_units)
    snprintf(unit, sizeof unit, "unit %d of %d of ", p->other_unit + 1, p->other_n_units);
  else if (p->other_unit >= 0)
    snprintf(unit, sizeof unit, "the summary of ");
  char text[STORE_USER_LEN + 160];
  snprintf(text, sizeof text, "behind %s%s, running now; %d job%s ahead in the queue", unit, whose,
           p->position, p->position == 1 ? "" : "s");
  return json_string(text);
}

json_t *job_view_json(server_t *s, const store_job_t *j, const char *viewer, role_t role) {
  const int open = j->state == STORE_RUNNING || j->state == STORE_QUEUED;
  int64_t done = j->variants_done;
  sched_place_t place = {0};
  if (open) {
    int64_t live = scheduler_progress(s, j->id);
    if (live > done)
      done = live;
    scheduler_queue(s, j->id, &place);
  }
  const double rate = job_rate(j, done, clock_wall());
  const int eta_known = j->state == STORE_RUNNING && rate > 0;
  json_t *progress =
      json_pack("{s:I,s:I,s:i,s:i,s:o,s:o}", "variants_done", (json_int_t)done, "variants_total",
                (json_int_t)j->variants_total, "units_done", j->units_done, "n_units", j->n_units,
                "rate", rate > 0 ? json_real(rate) : json_null(), "eta_s",
                eta_known ? json_real((double)(j->variants_total - done) / rate) : json_null());
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:f}", "id", j->id, "user", j->user, "model",
                        j->model, "state", store_state_name(j->state), "progress", progress, "rows",
                        (json_int_t)j->rows, "created_at", j->created_at);
  json_object_set_new(o, "name", j->name[0] ? json_string(j->name) : json_null());
  json_t *labels = j->labels[0] ? json_loads(j->labels, 0, NULL) : NULL;
  json_object_set_new(o, "labels", labels ? labels : json_object());
  json_object_set_new(o, "prompts", j->n_prompts > 0 ? json_integer(j->n_prompts) : json_null());
  json_object_set_new(o, "variants", json_integer((json_int_t)j->variants_total));
  json_object_set_new(o, "started_at", j->started_at > 0 ? json_real(j->started_at) : json_null());
  json_object_set_new(o, "finished_at",
                      j->finished_at > 0 ? json_real(j->finished_at) : json_null());
  json_object_set_new(o, "deadline", j->deadline > 0 ? json_real(j->deadline) : json_null());
  /* A done job's stored message is a warning (e.g. non-finite rows). */
  const int finished = j->state == STORE_DONE;
  json_object_set_new(o, "error", j->error[0] && !finished ? json_string(j->error) : json_null());
  json_object_set_new(o, "warning", j->error[0] && finished ? json_string(j->error) : json_null());
  json_object_set_new(o, "queue_position",
                      place.known && !place.running ? json_integer(place.position) : json_null());
  json_object_set_new(o, "waiting", open ? waiting_json(j, &place, viewer, role) : json_null());
  json_object_set_new(o, "model_fingerprint",
                      j->fingerprint[0] ? json_string(j->fingerprint) : json_null());
  char url[128];
  snprintf(url, sizeof(url), "/v1/jobs/%s/results", j->id);
  json_object_set_new(o, "results_url", json_string(url));
  snprintf(url, sizeof(url), "/v1/jobs/%s/spec", j->id);
  json_object_set_new(o, "spec_url", json_string(url));
  return o;
}

static int all_hex(const char *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdef", t[i]) || !t[i])
      return 0;
  return 1;
}

int job_view_resolve(server_t *s, const char *given, const char *user, role_t role,
                     char id[STORE_ID_LEN], char *msg, size_t len) {
  const size_t n = strlen(given);
  if (n < JOB_VIEW_MIN_PREFIX || n > STORE_ID_LEN - 1 || !all_hex(given, n)) {
    snprintf(msg, len,
             "no job %.40s (an id is %d lowercase hex digits, or a unique prefix of at least %d)",
             given, STORE_ID_LEN - 1, JOB_VIEW_MIN_PREFIX);
    return 404;
  }
  if (n == STORE_ID_LEN - 1) {
    memcpy(id, given, STORE_ID_LEN);
    return 0;
  }
  const char *prefix = given;
  const store_filter_t f = {
      .user = role == ROLE_ADMIN ? NULL : user, .id_prefix = prefix, .state = -1};
  store_job_t *jobs = NULL;
  size_t matches = 0;
  char err[HYDRA_ERR_LEN];
  if (store_jobs_find(s->store, &f, 0, &jobs, &matches, err) != 0) {
    snprintf(msg, len, "the job store failed: %s", err);
    return 503;
  }
  if (matches == 1)
    memcpy(id, jobs[0].id, STORE_ID_LEN);
  free(jobs);
  if (matches == 1)
    return 0;
  if (matches == 0) {
    snprintf(msg, len, "no job %s", prefix);
    return 404;
  }
  snprintf(msg, len, "the id prefix %s matches %zu jobs: give more of the id", prefix, matches);
  return 400;
}

/* A cursor: the last shown job's creation time (the bits of the double, 16
 * hex digits) and its id: 48 lowercase hex digits. */
static void cursor_make(const store_job_t *j, char out[64]) {
  uint64_t bits;
  memcpy(&bits, &j->created_at, sizeof bits);
  snprintf(out, 64, "%016" PRIx64 "%s", bits, j->id);
}

static int cursor_parse(const char *c, double *created_at, char id[STORE_ID_LEN]) {
  if (strlen(c) != 16 + STORE_ID_LEN - 1 || !all_hex(c, strlen(c)))
    return -1;
  char head[17];
  memcpy(head, c, 16);
  head[16] = 0;
  uint64_t bits = strtoull(head, NULL, 16);
  memcpy(created_at, &bits, sizeof bits);
  memcpy(id, c + 16, STORE_ID_LEN);
  return 0;
}

static int label_matches(const store_job_t *j, const char *want) {
  const char *eq = strchr(want, '=');
  const size_t key_len = eq ? (size_t)(eq - want) : strlen(want);
  json_t *labels = j->labels[0] ? json_loads(j->labels, 0, NULL) : NULL;
  const char *key;
  json_t *value;
  int hit = 0;
  json_object_foreach(labels, key, value) {
    if (strlen(key) == key_len && strncmp(key, want, key_len) == 0)
      hit = !eq || (json_is_string(value) && strcmp(json_string_value(value), eq + 1) == 0);
  }
  json_decref(labels);
  return hit;
}

/* The filters the store does not apply (store_filter_t has the others). */
static int job_wanted(const store_job_t *j, const job_view_query_t *q) {
  return !q->label || label_matches(j, q->label);
}

/* The next page's URL: the query's filters (percent-encoded) after the
 * cursor; NULL when out of memory. The caller frees it. */
static char *next_url(const job_view_query_t *q, long limit, const char *cursor) {
  buffer_t url = {0};
  int ok = buffer_appendf(&url, "/v1/jobs?limit=%ld&cursor=%s", limit, cursor) == 0;
  const char *names[] = {"name", "label", "state"};
  const char *values[] = {q->name, q->label, q->state};
  for (int i = 0; i < 3 && ok; i++) {
    if (!values[i])
      continue;
    ok = buffer_appendf(&url, "&%s=", names[i]) == 0;
    for (const unsigned char *p = (const unsigned char *)values[i]; *p && ok; p++)
      ok = (isalnum(*p) || strchr("-._~", *p) ? buffer_appendf(&url, "%c", *p)
                                              : buffer_appendf(&url, "%%%02X", *p)) == 0;
  }
  if (!ok)
    buffer_free(&url);
  return url.data;
}

/* The query's page size and where it starts; 0, or 400 with *field and msg. */
static int query_check(const job_view_query_t *q, long *limit, store_filter_t *f,
                       const char **field, char *msg, size_t len) {
  *limit = JOB_VIEW_PAGE_MAX;
  if (q->limit) {
    char *end = NULL;
    errno = 0;
    *limit = strtol(q->limit, &end, 10);
    if (end == q->limit || *end || errno || *limit < 1 || *limit > JOB_VIEW_PAGE_MAX) {
      *field = "limit";
      snprintf(msg, len, "expected a page size from 1 to %d", JOB_VIEW_PAGE_MAX);
      return 400;
    }
  }
  if (q->cursor && cursor_parse(q->cursor, &f->before_at, f->before_id) != 0) {
    *field = "cursor";
    snprintf(msg, len, "not a cursor of this server (give a page's next_cursor as it is)");
    return 400;
  }
  f->before = q->cursor != NULL;
  for (int st = 0; q->state && f->state < 0 && st <= STORE_CANCELLED; st++)
    if (strcmp(q->state, store_state_name((store_state_t)st)) == 0)
      f->state = st;
  if (q->state && f->state < 0) {
    *field = "state";
    snprintf(msg, len, "expected queued, running, done, failed or cancelled");
    return 400;
  }
  return 0;
}

json_t *job_view_list(server_t *s, const char *user, role_t role, const job_view_query_t *q,
                      int *status, const char **field, char *msg, size_t len) {
  long limit;
  store_filter_t f = {.user = role == ROLE_ADMIN ? NULL : user, .name = q->name, .state = -1};
  *field = "";
  if ((*status = query_check(q, &limit, &f, field, msg, len)) != 0)
    return NULL;
  char err[HYDRA_ERR_LEN];
  if (q->after && !q->cursor) { /* the older form: after a job's id */
    store_job_t *after = NULL;
    size_t n_after = 0;
    const store_filter_t by_id = {.user = f.user, .id_prefix = q->after, .state = -1};
    const int ok = strlen(q->after) == STORE_ID_LEN - 1 && all_hex(q->after, STORE_ID_LEN - 1);
    if (ok && store_jobs_find(s->store, &by_id, 0, &after, &n_after, err) != 0) {
      *status = 503;
      snprintf(msg, len, "the job store failed: %s", err);
      return NULL;
    }
    if (n_after == 1) {
      f.before = 1;
      f.before_at = after[0].created_at;
      memcpy(f.before_id, after[0].id, STORE_ID_LEN);
    }
    free(after);
    if (n_after != 1) {
      *status = 400;
      *field = "after";
      snprintf(msg, len, "no job of yours with that id");
      return NULL;
    }
  }
  /* One job more than the page tells whether a next page exists; a label
   * filter is applied here, after the store's filters, on every job. */
  store_job_t *jobs = NULL;
  size_t n = 0;
  if (store_jobs_find(s->store, &f, q->label ? 0 : (size_t)limit + 1, &jobs, &n, err) != 0) {
    *status = 503;
    snprintf(msg, len, "the job store failed: %s", err);
    return NULL;
  }
  json_t *list = json_array();
  size_t last_shown = n, i = 0;
  for (; i < n && json_array_size(list) < (size_t)limit; i++) {
    if (!job_wanted(&jobs[i], q))
      continue;
    json_array_append_new(list, job_view_json(s, &jobs[i], user, role));
    last_shown = i;
  }
  int more = 0;
  for (; i < n && !more; i++)
    more = job_wanted(&jobs[i], q);
  char cursor[64] = "", *next = NULL;
  if (more && last_shown < n) {
    cursor_make(&jobs[last_shown], cursor);
    next = next_url(q, limit, cursor);
  }
  free(jobs);
  *status = 200;
  json_t *page = json_pack("{s:o,s:o,s:o}", "jobs", list, "next_cursor",
                           cursor[0] ? json_string(cursor) : json_null(), "next",
                           next ? json_string(next) : json_null());
  free(next);
  return page;
}
