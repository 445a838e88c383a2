/* test_store - the job store (server/store.h): store URLs; jobs created,
 * read, listed; units completed atomically and once; rows read from a
 * sequence number; resuming after close and reopen; kill -9 of a writer at
 * random moments (every finished unit's rows there once, in order, without
 * gaps); purge; leases (claims, expiry, renewal, release, the summary claim);
 * a job's model fingerprint, its note (why it waits) and the retry of a
 * failed job from its first pending unit; on SQLite the migration that added
 * them; a user's usage (jobs, bytes of specs and rows) for quotas;
 * readers and a writer on several threads; on SQLite also a full disk (a file
 * size limit), a read-only file, a corrupt file.
 * usage: test_store [seed] [dir]   (dir: where the databases go; a fresh
 * directory under /tmp by default)
 *        test_store --postgres [seed]   the same on the PostgreSQL database
 * named by HYDRA_TEST_POSTGRES (tests/integration/with_postgres.sh makes
 * one); its hydra tables are dropped between tests. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

static uint64_t seed = 20240611, rng_state;
static char dir[512];
static const char *pg_url; /* --postgres: every store is this database */

static uint64_t rnd_bits(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* A forked child's exit code, after flushing what it printed. */
static int child_exit(int code) {
  fflush(stdout);
  return code;
}

static void db_path(char *out, size_t n, const char *name) {
  if (pg_url)
    snprintf(out, n, "%s", pg_url);
  else
    snprintf(out, n, "%s/%s", dir, name);
}

static void db_remove(const char *path) {
  char side[600];
  if (pg_url) { /* the next test starts on an empty database */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "PGOPTIONS='-c client_min_messages=warning' psql -q '%s' -c 'DROP TABLE IF EXISTS "
             "hydra_jobs, hydra_units, hydra_result_rows, hydra_schema' 2>&1",
             pg_url);
    CHECK(system(cmd) == 0, "%s", cmd);
    return;
  }
  unlink(path);
  snprintf(side, sizeof side, "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof side, "%s-shm", path);
  unlink(side);
}

static void job_id(char *id, uint64_t n) {
  snprintf(id, STORE_ID_LEN, "%016llx%016llx", (unsigned long long)mix(seed ^ n),
           (unsigned long long)mix(n * 31 + 7));
}

static store_job_t job_new(const char *id, const char *user, int n_units) {
  store_job_t job;
  memset(&job, 0, sizeof job);
  snprintf(job.id, sizeof job.id, "%.32s", id);
  snprintf(job.user, sizeof job.user, "%s", user);
  snprintf(job.model, sizeof job.model, "smollm2-135m");
  job.n_units = n_units;
  job.variants_total = (int64_t)n_units * 10;
  return job;
}

/* The rows of unit u: a seeded count (0..6) of rows with a seeded amount of
 * padding (0..2999 bytes, so some rows spill onto overflow pages). */
static int unit_rows(int u) {
  return (int)(mix(seed * 1000003 + (uint64_t)u) % 7);
}

static char *unit_row(int u, int k) {
  int pad = (int)(mix(seed + (uint64_t)u * 131 + (uint64_t)k) % 3000);
  char *row = malloc(64 + (size_t)pad);
  int n = snprintf(row, 64, "{\"unit\":%d,\"k\":%d,\"pad\":\"", u, k);
  for (int i = 0; i < pad; i++)
    row[n + i] = (char)('a' + (u + k + i) % 26);
  snprintf(row + n + pad, 8, "\"}");
  return row;
}

static int complete_unit(store_t *s, const char *id, int u, char *err) {
  int n = unit_rows(u);
  char *rows[8] = {0};
  for (int k = 0; k < n; k++)
    rows[k] = unit_row(u, k);
  int rc = store_unit_complete(s, id, u, (const char *const *)rows, (size_t)n, 10, err);
  for (int k = 0; k < n; k++)
    free(rows[k]);
  return rc;
}

/* ---- reading every row back ------------------------------------------- */

typedef struct {
  char **text;
  int64_t *seq;
  size_t n, cap;
} rows_t;

static int collect(void *ctx, int64_t seq, const char *text, size_t len) {
  rows_t *r = ctx;
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->text = realloc(r->text, r->cap * sizeof *r->text);
    r->seq = realloc(r->seq, r->cap * sizeof *r->seq);
  }
  r->text[r->n] = malloc(len + 1);
  memcpy(r->text[r->n], text, len);
  r->text[r->n][len] = 0;
  r->seq[r->n++] = seq;
  return 0;
}

static void rows_free(rows_t *r) {
  for (size_t i = 0; i < r->n; i++)
    free(r->text[i]);
  free(r->text);
  free(r->seq);
  memset(r, 0, sizeof *r);
}

/* Checks a job written by complete_unit in unit order after a "header" row:
 * sequence 0..rows-1 without gaps, the header, then units 0..units_done-1
 * each with all its rows once, then the summary and end rows if done.
 * Returns the number of failures. */
static int verify_job(store_t *s, const char *id, const char *context) {
  char err[HYDRA_ERR_LEN];
  store_job_t job;
  rows_t r = {0};
  int before = check_failures();
  int rc = store_job_get(s, id, &job, err);
  CHECK(rc == 0, "%s: job_get: %d %s", context, rc, err);
  if (rc)
    return 1;
  rc = store_rows_read(s, id, 0, 0, collect, &r, NULL, NULL, err);
  CHECK(rc == 0, "%s: rows_read: %s", context, err);
  CHECK((int64_t)r.n == job.rows, "%s: %zu rows read, job says %lld", context, r.n,
        (long long)job.rows);
  for (size_t i = 0; i < r.n; i++)
    if (r.seq[i] != (int64_t)i) {
      CHECK(0, "%s: row %zu has sequence number %lld", context, i, (long long)r.seq[i]);
      break;
    }
  size_t at = 0;
  if (job.state != STORE_QUEUED) {
    CHECK(r.n > 0 && strcmp(r.text[0], "{\"type\":\"header\"}") == 0, "%s: no header row", context);
    at = 1;
  }
  for (int u = 0; u < job.units_done && check_failures() == before; u++)
    for (int k = 0; k < unit_rows(u); k++, at++) {
      char *want = unit_row(u, k);
      CHECK(at < r.n && strcmp(r.text[at], want) == 0, "%s: row %zu is not unit %d row %d", context,
            at, u, k);
      free(want);
    }
  if (job.state == STORE_DONE) {
    CHECK(at + 2 == r.n && strcmp(r.text[at], "{\"type\":\"summary\"}") == 0 &&
              strcmp(r.text[at + 1], "{\"type\":\"end\"}") == 0,
          "%s: summary and end rows missing", context);
    at += 2;
  }
  CHECK(at == r.n, "%s: %zu rows stored, %zu expected from %d done units", context, r.n, at,
        job.units_done);
  CHECK(job.variants_done == 10 * (int64_t)job.units_done, "%s: variants_done %lld", context,
        (long long)job.variants_done);
  rows_free(&r);
  return check_failures() - before;
}

/* ---- tests ------------------------------------------------------------ */

static void test_urls(void) {
  char err[HYDRA_ERR_LEN], path[600], url[700];
  /* no such host (or no libpq in this build): refused, the password never echoed */
  store_t *s = store_open("postgres://hydra:s3cret@db.invalid/hydra", 0, err);
  CHECK(!s && (strstr(err, "not built") || strstr(err, "connect")) && !strstr(err, "s3cret"),
        "postgres: %s", err);
  s = store_open("postgresql://db.invalid/hydra?user=a&password=s3cret&sslmode=disable", 0, err);
  CHECK(!s && !strstr(err, "s3cret"), "postgres, password parameter: %s", err);
  s = store_open("postgres://hydra:s3c/ret@db.invalid/hydra", 0, err); /* a '/' in it */
  CHECK(!s && !strstr(err, "s3c"), "postgres, a slash in the password: %s", err);
  s = store_open("postgres://hydra:s3cr%zzet@db.invalid/hydra", 0, err); /* a bad escape */
  CHECK(!s && !strstr(err, "s3cr"), "postgres, a URL libpq cannot parse: %s", err);
  s = store_open("mysql://x/y", 0, err);
  CHECK(!s && strstr(err, "mysql://"), "mysql: %s", err);
  s = store_open(":memory:", 0, err);
  CHECK(!s, "an in-memory store opened");
  s = store_open("", 0, err);
  CHECK(!s, "an empty path opened");
  db_path(path, sizeof path, "url.db");
  snprintf(url, sizeof url, "sqlite:%s", path);
  s = store_open(url, 0, err);
  CHECK(s, "%s: %s", url, err);
  store_close(s);
  snprintf(url, sizeof url, "sqlite://%s", path);
  s = store_open(url, 0, err);
  CHECK(s, "%s: %s", url, err);
  store_close(s);
  db_remove(path);
}

/* A job's name, labels and prompt count are stored as given and read back
 * by a get and a list; a job without them reads "", "" and 0. */
static void test_job_names(store_t *s) {
  char err[HYDRA_ERR_LEN], id[STORE_ID_LEN], plain[STORE_ID_LEN];
  job_id(id, 300);
  job_id(plain, 301);
  store_job_t job = job_new(id, "nia", 2), got;
  snprintf(job.name, sizeof job.name, "sweep \u00e9 %llu", (unsigned long long)(rnd_bits() % 1000));
  snprintf(job.labels, sizeof job.labels, "{\"layer\":\"%llu\",\"model\":\"smol\"}",
           (unsigned long long)(rnd_bits() % 30));
  job.n_prompts = 1 + (int)(rnd_bits() % 1000);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create named: %s", err);
  store_job_t bare = job_new(plain, "nia", 1);
  CHECK(store_job_create(s, &bare, "{}", 2, err) == 0, "create bare: %s", err);
  CHECK(store_job_get(s, id, &got, err) == 0 && strcmp(got.name, job.name) == 0 &&
            strcmp(got.labels, job.labels) == 0 && got.n_prompts == job.n_prompts,
        "get named: '%s' '%s' %d", got.name, got.labels, got.n_prompts);
  CHECK(store_job_get(s, plain, &got, err) == 0 && !got.name[0] && !got.labels[0] &&
            got.n_prompts == 0,
        "get bare: '%s' '%s' %d", got.name, got.labels, got.n_prompts);
  store_job_t *list = NULL;
  size_t n = 0;
  CHECK(store_jobs_list(s, "nia", 0, &list, &n, err) == 0 && n == 2, "list nia: %zu %s", n, err);
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i].id, id) == 0)
      CHECK(strcmp(list[i].name, job.name) == 0 && strcmp(list[i].labels, job.labels) == 0 &&
                list[i].n_prompts == job.n_prompts,
            "listed named: '%s' '%s' %d", list[i].name, list[i].labels, list[i].n_prompts);
  free(list);
  snprintf(job.id, sizeof job.id, "%s", plain);
  job.id[0] = job.id[0] == 'a' ? 'b' : 'a';
  memset(job.name, 'x', sizeof job.name);
  CHECK(store_job_create(s, &job, "{}", 2, err) == -1, "an unterminated name accepted");
}

static void test_jobs(void) {
  char err[HYDRA_ERR_LEN], path[600], ids[3][STORE_ID_LEN];
  db_path(path, sizeof path, "jobs.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  size_t spec_len = 1 << 20;
  char *spec = malloc(spec_len + 1);
  for (size_t i = 0; i < spec_len; i++)
    spec[i] = (char)(' ' + rnd_bits() % 95);
  spec[spec_len] = 0;
  const char *users[3] = {"ada", "bob", "ada"};
  for (int i = 0; i < 3; i++) {
    job_id(ids[i], 100 + (uint64_t)i);
    store_job_t job = job_new(ids[i], users[i], i + 1);
    job.deadline = 1e9 + i;
    int rc = store_job_create(s, &job, spec, spec_len - (size_t)i, err);
    CHECK(rc == 0, "create %d: %s", i, err);
  }
  store_job_t job = job_new(ids[1], "eve", 1);
  CHECK(store_job_create(s, &job, "{}", 2, err) == STORE_DUPLICATE, "duplicate id: %s", err);
  job = job_new("0123", "eve", 1);
  CHECK(store_job_create(s, &job, "{}", 2, err) == -1 && strstr(err, path), "short id: %s", err);
  job = job_new("0123456789ABCDEF0123456789abcdef", "eve", 1);
  CHECK(store_job_create(s, &job, "{}", 2, err) == -1, "uppercase id accepted");
  job = job_new(ids[0], "eve", -1);
  job.id[0] = job.id[0] == 'f' ? 'e' : 'f';
  CHECK(store_job_create(s, &job, "{}", 2, err) == -1, "negative unit count accepted");

  store_job_t got;
  int rc = store_job_get(s, ids[1], &got, err);
  CHECK(rc == 0 && strcmp(got.user, "bob") == 0 && strcmp(got.model, "smollm2-135m") == 0 &&
            got.state == STORE_QUEUED && got.n_units == 2 && got.units_done == 0 &&
            got.variants_total == 20 && got.rows == 0 && got.deadline == 1e9 + 1 &&
            got.created_at > 1.6e9 && got.started_at == 0 && got.finished_at == 0,
        "get: rc %d %s", rc, err);
  char other[STORE_ID_LEN];
  job_id(other, 999);
  CHECK(store_job_get(s, other, &got, err) == STORE_NOT_FOUND, "missing job: %s", err);

  char *back = NULL;
  size_t back_len = 0;
  rc = store_job_spec(s, ids[2], &back, &back_len, err);
  CHECK(rc == 0 && back_len == spec_len - 2 && memcmp(back, spec, back_len) == 0 &&
            back[back_len] == 0,
        "spec round trip: %s", err);
  free(back);
  CHECK(store_job_spec(s, other, &back, NULL, err) == STORE_NOT_FOUND && !back, "missing spec");

  store_job_t *list = NULL;
  size_t n = 0;
  rc = store_jobs_list(s, NULL, 0, &list, &n, err);
  CHECK(rc == 0 && n == 3 && strcmp(list[0].id, ids[2]) == 0 && strcmp(list[2].id, ids[0]) == 0,
        "list all: %zu, %s", n, err);
  free(list);
  rc = store_jobs_list(s, "ada", 0, &list, &n, err);
  CHECK(rc == 0 && n == 2 && strcmp(list[0].id, ids[2]) == 0 && strcmp(list[1].id, ids[0]) == 0,
        "list ada: %zu", n);
  free(list);
  rc = store_jobs_list(s, "ada", 1, &list, &n, err);
  CHECK(rc == 0 && n == 1 && strcmp(list[0].id, ids[2]) == 0, "list ada limit 1: %zu", n);
  free(list);
  rc = store_jobs_list(s, "nobody", 0, &list, &n, err);
  CHECK(rc == 0 && n == 0 && !list, "list of a user without jobs: %zu", n);
  test_job_names(s);
  free(spec);
  store_close(s);
  db_remove(path);
}

/* store_jobs_find: each filter alone and together, newest first, a cursor
 * that pages through without a repeat or a gap, a limit. */
static void test_find(void) {
  char err[HYDRA_ERR_LEN], path[600], ids[6][STORE_ID_LEN];
  db_path(path, sizeof path, "find.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  const char *users[6] = {"ada", "bob", "ada", "ada", "bob", "ada"};
  for (int i = 0; i < 6; i++) {
    job_id(ids[i], 500 + (uint64_t)i);
    store_job_t job = job_new(ids[i], users[i], 1);
    snprintf(job.name, sizeof job.name, "%s", i % 2 ? "odd" : "even");
    CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create %d: %s", i, err);
  }
  CHECK(store_job_cancel(s, ids[3], err) == 0, "cancel: %s", err);
  store_job_t *got = NULL;
  size_t n = 0;
  store_filter_t f = {.user = "ada", .state = -1};
  CHECK(store_jobs_find(s, &f, 0, &got, &n, err) == 0 && n == 4 && !strcmp(got[0].id, ids[5]) &&
            !strcmp(got[3].id, ids[0]),
        "ada's, newest first: %zu %s", n, err);
  free(got);
  f = (store_filter_t){.name = "even", .state = STORE_QUEUED};
  CHECK(store_jobs_find(s, &f, 0, &got, &n, err) == 0 && n == 3, "even and queued: %zu", n);
  free(got);
  f = (store_filter_t){.user = "ada", .state = STORE_CANCELLED};
  CHECK(store_jobs_find(s, &f, 0, &got, &n, err) == 0 && n == 1 && !strcmp(got[0].id, ids[3]),
        "ada's cancelled: %zu", n);
  free(got);
  char prefix[8];
  snprintf(prefix, sizeof prefix, "%.7s", ids[4]);
  f = (store_filter_t){.id_prefix = prefix, .state = -1};
  CHECK(store_jobs_find(s, &f, 0, &got, &n, err) == 0 && n == 1 && !strcmp(got[0].id, ids[4]),
        "by prefix %s: %zu", prefix, n);
  free(got);
  f.user = "ada";
  CHECK(store_jobs_find(s, &f, 0, &got, &n, err) == 0 && n == 0, "bob's prefix as ada: %zu", n);
  free(got);
  f = (store_filter_t){.id_prefix = "ABC", .state = -1};
  CHECK(store_jobs_find(s, &f, 0, &got, &n, err) == -1, "an uppercase prefix accepted");
  /* pages of 2 by cursor: every job once, in the order of one whole list */
  store_job_t *all = NULL;
  size_t n_all = 0, seen = 0;
  f = (store_filter_t){.state = -1};
  CHECK(store_jobs_find(s, &f, 0, &all, &n_all, err) == 0 && n_all == 6, "all: %zu", n_all);
  for (int page = 0; page < 4; page++) {
    CHECK(store_jobs_find(s, &f, 2, &got, &n, err) == 0 && n <= 2, "page %d: %s", page, err);
    for (size_t i = 0; i < n && seen < n_all; i++, seen++)
      CHECK(!strcmp(got[i].id, all[seen].id), "page %d row %zu out of order", page, i);
    if (n) {
      f.before = 1;
      f.before_at = got[n - 1].created_at;
      memcpy(f.before_id, got[n - 1].id, STORE_ID_LEN);
    }
    free(got);
  }
  CHECK(seen == 6, "pages saw %zu of 6 jobs", seen);
  free(all);
  store_close(s);
  db_remove(path);
}

typedef struct {
  int stop_after;
  int seen;
} stopper_t;

static int stop_early(void *ctx, int64_t seq, const char *text, size_t len) {
  (void)seq, (void)text, (void)len;
  stopper_t *st = ctx;
  return ++st->seen >= st->stop_after;
}

static void test_units(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  db_path(path, sizeof path, "units.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 1);
  store_job_t job = job_new(id, "ada", 4);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  CHECK(store_job_set_state(s, id, STORE_RUNNING, NULL, header, 1, err) == 0, "run: %s", err);
  CHECK(store_job_set_state(s, id, STORE_RUNNING, NULL, header, 1, err) == STORE_STATE,
        "running twice: %s", err);
  CHECK(store_job_set_state(s, id, STORE_QUEUED, NULL, NULL, 0, err) == -1, "back to queued");

  int rc = complete_unit(s, id, 0, err);
  CHECK(rc == 0, "unit 0: %s", err);
  store_job_t got;
  store_job_get(s, id, &got, err);
  int64_t rows_after_0 = got.rows;
  CHECK(got.rows == 1 + unit_rows(0) && got.units_done == 1 && got.started_at >= got.created_at,
        "after unit 0: rows %lld", (long long)got.rows);
  rc = complete_unit(s, id, 0, err);
  CHECK(rc == STORE_DUPLICATE, "unit 0 again: %d %s", rc, err);
  store_job_get(s, id, &got, err);
  CHECK(got.rows == rows_after_0 && got.units_done == 1 && got.variants_done == 10,
        "a repeated unit changed the job: rows %lld", (long long)got.rows);
  CHECK(complete_unit(s, id, 4, err) == -1, "unit 4 of 4 accepted");
  CHECK(complete_unit(s, id, -1, err) == -1, "unit -1 accepted");
  const char *bad[] = {"{\"a\":1}", "{\"b\":\n2}"};
  CHECK(store_unit_complete(s, id, 1, bad, 2, 1, err) == -1 && strstr(err, "newline"),
        "a row with a newline: %s", err);
  CHECK(store_job_set_state(s, id, STORE_DONE, NULL, finish, 2, err) == STORE_STATE &&
            strstr(err, "3 of 4"),
        "done with units pending: %s", err);
  char other[STORE_ID_LEN];
  job_id(other, 2);
  CHECK(complete_unit(s, other, 0, err) == STORE_NOT_FOUND, "unit of a missing job: %s", err);

  for (int u = 1; u < 4; u++)
    CHECK(complete_unit(s, id, u, err) == 0, "unit %d: %s", u, err);
  verify_job(s, id, "units, running");

  /* reading from a sequence number, with a limit, stopping early */
  rows_t r = {0};
  size_t n_read = 0;
  store_state_t state = STORE_FAILED;
  rc = store_rows_read(s, id, 2, 3, collect, &r, &n_read, &state, err);
  CHECK(rc == 0 && state == STORE_RUNNING, "read from 2: %s", err);
  store_job_get(s, id, &got, err);
  size_t want = got.rows - 2 < 3 ? (size_t)(got.rows - 2) : 3;
  CHECK(n_read == want && r.n == want && (want == 0 || r.seq[0] == 2), "read from 2: %zu rows",
        r.n);
  rows_free(&r);
  rc = store_rows_read(s, id, got.rows, 10, collect, &r, &n_read, NULL, err);
  CHECK(rc == 0 && n_read == 0, "read past the end: %zu", n_read);
  rows_free(&r);
  CHECK(store_rows_read(s, id, -1, 10, collect, &r, NULL, NULL, err) == -1, "first_seq -1");
  CHECK(store_rows_read(s, other, 0, 10, collect, &r, NULL, NULL, err) == STORE_NOT_FOUND,
        "rows of a missing job");
  if (got.rows >= 2) {
    stopper_t stop = {2, 0};
    rc = store_rows_read(s, id, 0, 0, stop_early, &stop, &n_read, NULL, err);
    CHECK(rc == 0 && n_read == 2 && stop.seen == 2, "stopping early: %zu", n_read);
  }

  CHECK(store_job_set_state(s, id, STORE_DONE, NULL, finish, 2, err) == 0, "done: %s", err);
  store_job_get(s, id, &got, err);
  CHECK(got.state == STORE_DONE && got.finished_at >= got.started_at && got.units_done == 4,
        "after done");
  verify_job(s, id, "units, done");
  CHECK(complete_unit(s, id, 3, err) == STORE_STATE, "unit of a done job: %s", err);
  CHECK(store_rows_append(s, id, header, 1, err) == STORE_STATE, "append to a done job: %s", err);
  CHECK(store_job_cancel(s, id, err) == STORE_STATE, "cancel a done job: %s", err);
  rc = store_rows_read(s, id, 0, 1, collect, &r, &n_read, &state, err);
  CHECK(rc == 0 && state == STORE_DONE, "state read with rows");
  rows_free(&r);

  /* failing: the message is kept, cut at a character boundary */
  job_id(id, 3);
  job = job_new(id, "bob", 2);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  CHECK(store_rows_append(s, id, header, 1, err) == 0, "append: %s", err);
  char message[2 * HYDRA_ERR_LEN] = "x";
  for (size_t i = 1; i + 2 < sizeof message; i += 2)
    memcpy(message + i, "\xc3\xa9", 3); /* é */
  CHECK(store_job_set_state(s, id, STORE_FAILED, message, NULL, 0, err) == 0, "fail: %s", err);
  store_job_get(s, id, &got, err);
  size_t len = strlen(got.error);
  CHECK(got.state == STORE_FAILED && len == HYDRA_ERR_LEN - 1 && got.started_at == 0 &&
            got.finished_at > 0 && got.rows == 1,
        "failed job: length %zu", len);
  CHECK(((unsigned char)got.error[len - 1] & 0xc0) == 0x80 &&
            ((unsigned char)got.error[len - 2] & 0xe0) == 0xc0,
        "the message was cut inside a character");

  job_id(id, 4);
  job = job_new(id, "bob", 2);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  CHECK(store_job_cancel(s, id, err) == 0, "cancel: %s", err);
  store_job_get(s, id, &got, err);
  CHECK(got.state == STORE_CANCELLED && strcmp(got.error, "cancelled") == 0, "cancelled job");
  CHECK(store_job_cancel(s, id, err) == STORE_STATE, "cancel twice: %s", err);
  store_close(s);
  db_remove(path);
}

static void test_resume(void) {
  char err[HYDRA_ERR_LEN], path[600], ids[3][STORE_ID_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  db_path(path, sizeof path, "resume.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  for (int i = 0; i < 3; i++) {
    job_id(ids[i], 10 + (uint64_t)i);
    store_job_t job = job_new(ids[i], "ada", 5);
    CHECK(store_job_create(s, &job, "{\"x\":1}", 7, err) == 0, "create: %s", err);
  }
  store_job_set_state(s, ids[1], STORE_RUNNING, NULL, header, 1, err);
  complete_unit(s, ids[1], 0, err);
  complete_unit(s, ids[1], 1, err);
  store_job_set_state(s, ids[2], STORE_RUNNING, NULL, header, 1, err);
  for (int u = 0; u < 5; u++)
    complete_unit(s, ids[2], u, err);
  store_close(s);

  s = store_open(path, 0, err);
  CHECK(s, "reopen: %s", err);
  if (!s)
    return;
  store_resume_t *jobs = NULL;
  size_t n = 0;
  int rc = store_jobs_resumable(s, &jobs, &n, err);
  CHECK(rc == 0 && n == 3, "resumable: %zu %s", n, err);
  if (n == 3) {
    CHECK(strcmp(jobs[0].job.id, ids[0]) == 0 && jobs[0].job.state == STORE_QUEUED &&
              jobs[0].first_pending == 0,
          "queued job: first pending %d", jobs[0].first_pending);
    CHECK(strcmp(jobs[1].job.id, ids[1]) == 0 && jobs[1].job.state == STORE_RUNNING &&
              jobs[1].first_pending == 2 && jobs[1].job.units_done == 2,
          "half-done job: first pending %d", jobs[1].first_pending);
    CHECK(strcmp(jobs[2].job.id, ids[2]) == 0 && jobs[2].first_pending == 5,
          "all units done: first pending %d", jobs[2].first_pending);
  }
  free(jobs);
  verify_job(s, ids[1], "resume, half done");
  CHECK(store_job_set_state(s, ids[2], STORE_DONE, NULL, finish, 2, err) == 0, "done: %s", err);
  store_job_set_state(s, ids[0], STORE_FAILED, "model gone", NULL, 0, err);
  rc = store_jobs_resumable(s, &jobs, &n, err);
  CHECK(rc == 0 && n == 1 && strcmp(jobs[0].job.id, ids[1]) == 0, "resumable after: %zu", n);
  free(jobs);
  store_close(s);
  db_remove(path);
}

/* A writer that resumes the job as hydrad would after a restart: the move to
 * running carries the header; the first pending unit's predecessor is redone
 * (a worker that crashed before learning its commit went through). */
static int crash_child(const char *path, const char *id) {
  char err[HYDRA_ERR_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  store_t *s = store_open(path, 0, err);
  if (!s)
    return printf("child: open: %s\n", err), 1;
  store_resume_t *jobs = NULL;
  size_t n = 0;
  if (store_jobs_resumable(s, &jobs, &n, err) || n != 1 || strcmp(jobs[0].job.id, id) != 0)
    return printf("child: resumable: %zu jobs %s\n", n, err), 1;
  store_resume_t job = jobs[0];
  free(jobs);
  if (job.job.state == STORE_QUEUED &&
      store_job_set_state(s, id, STORE_RUNNING, NULL, header, 1, err))
    return printf("child: run: %s\n", err), 1;
  if (job.first_pending > 0 && complete_unit(s, id, job.first_pending - 1, err) != STORE_DUPLICATE)
    return printf("child: redoing a done unit did not say duplicate: %s\n", err), 1;
  for (int u = job.first_pending; u < job.job.n_units; u++)
    if (complete_unit(s, id, u, err))
      return printf("child: unit %d: %s\n", u, err), 1;
  if (store_job_set_state(s, id, STORE_DONE, NULL, finish, 2, err))
    return printf("child: done: %s\n", err), 1;
  store_close(s);
  return 0;
}

static void test_crash(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN], context[64];
  const int n_units = 100, max_rounds = 80;
  db_path(path, sizeof path, "crash.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 20);
  store_job_t job = job_new(id, "ada", n_units);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  store_close(s);

  int kills = 0, finished = 0, last_done = 0, before = check_failures();
  for (int round = 0; round <= max_rounds && !finished && check_failures() == before; round++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
      _exit(child_exit(crash_child(path, id)));
    if (round < max_rounds) { /* the last round runs to the end */
      usleep((useconds_t)(1000 + rnd_bits() % 40000));
      if (kill(pid, SIGKILL) == 0)
        kills++;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {
      CHECK(WEXITSTATUS(status) == 0, "round %d: the writer failed", round);
      finished = WEXITSTATUS(status) == 0;
    }
    s = store_open(path, 0, err);
    CHECK(s, "round %d: reopen after kill -9: %s", round, err);
    if (!s)
      return;
    snprintf(context, sizeof context, "crash round %d", round);
    verify_job(s, id, context);
    store_job_t got;
    store_job_get(s, id, &got, err);
    CHECK(got.units_done >= last_done, "round %d: units done went back from %d to %d", round,
          last_done, got.units_done);
    last_done = got.units_done;
    finished |= got.state == STORE_DONE; /* killed after its last commit */
    if (finished)
      CHECK(got.state == STORE_DONE, "round %d: the writer finished, the job is %s", round,
            store_state_name(got.state));
    store_close(s);
  }
  CHECK(finished, "the job never finished");
  printf("crash: %d kill -9 rounds, %d units, every finished unit's rows once\n", kills, n_units);
  db_remove(path);
}

static void test_purge(void) {
  char err[HYDRA_ERR_LEN], path[600], ids[3][STORE_ID_LEN];
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  db_path(path, sizeof path, "purge.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  store_job_t got[3];
  for (int i = 0; i < 3; i++) {
    job_id(ids[i], 30 + (uint64_t)i);
    store_job_t job = job_new(ids[i], "ada", 1);
    CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
    complete_unit(s, ids[i], 0, err);
  }
  CHECK(store_job_set_state(s, ids[0], STORE_DONE, NULL, finish, 2, err) == 0, "done: %s", err);
  usleep(20000);
  CHECK(store_job_set_state(s, ids[1], STORE_FAILED, "boom", finish, 1, err) == 0, "%s", err);
  for (int i = 0; i < 3; i++)
    store_job_get(s, ids[i], &got[i], err);
  size_t n = 99;
  double between = (got[0].finished_at + got[1].finished_at) / 2;
  CHECK(store_purge(s, between, &n, err) == 0 && n == 1, "purge the first: %zu %s", n, err);
  store_job_t job;
  CHECK(store_job_get(s, ids[0], &job, err) == STORE_NOT_FOUND, "purged job still there");
  rows_t r = {0};
  CHECK(store_rows_read(s, ids[0], 0, 0, collect, &r, NULL, NULL, err) == STORE_NOT_FOUND,
        "purged rows still there");
  CHECK(store_job_get(s, ids[1], &job, err) == 0 && job.rows == unit_rows(0) + 1,
        "the later job was purged too");
  CHECK(store_purge(s, got[1].finished_at + 1e6, &n, err) == 0 && n == 1, "purge all: %zu", n);
  CHECK(store_job_get(s, ids[2], &job, err) == 0 && job.state == STORE_QUEUED,
        "a queued job was purged");
  /* the id can be used again and starts clean: no unit or row was left behind */
  job = job_new(ids[0], "bob", 1);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "reuse: %s", err);
  CHECK(store_rows_read(s, ids[0], 0, 0, collect, &r, NULL, NULL, err) == 0 && r.n == 0,
        "rows left behind: %zu", r.n);
  CHECK(complete_unit(s, ids[0], 0, err) == 0, "unit left behind: %s", err);
  rows_free(&r);
  store_close(s);
  db_remove(path);
}

/* Writes units until the file size limit makes a commit fail, then lifts the
 * limit and finishes the failed unit. Exits 0 when all went as expected. */
static int disk_full_child(const char *path, const char *id) {
  char err[HYDRA_ERR_LEN];
  signal(SIGXFSZ, SIG_IGN);
  store_t *s = store_open(path, 0, err);
  if (!s)
    return printf("child: open: %s\n", err), 1;
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 256 << 10;
  if (setrlimit(RLIMIT_FSIZE, &lim))
    return printf("child: setrlimit: %s\n", strerror(errno)), 1;
  int u, rc = 0;
  for (u = 0; u < 4000 && (rc = complete_unit(s, id, u, err)) == 0; u++)
    ;
  if (rc != -1 || !strstr(err, path))
    return printf("child: %d units stored, rc %d: %s\n", u, rc, err), 1;
  printf("full disk at unit %d: %s\n", u, err);
  if (setrlimit(RLIMIT_FSIZE, &old))
    return printf("child: setrlimit: %s\n", strerror(errno)), 1;
  if ((rc = complete_unit(s, id, u, err)) != 0)
    return printf("child: unit %d after space came back: %d %s\n", u, rc, err), 1;
  if ((rc = complete_unit(s, id, u, err)) != STORE_DUPLICATE)
    return printf("child: unit %d twice: %d %s\n", u, rc, err), 1;
  store_close(s);
  return 0;
}

static void test_disk_full(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  db_path(path, sizeof path, "full.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 40);
  store_job_t job = job_new(id, "ada", 4000);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  store_job_set_state(s, id, STORE_RUNNING, NULL, header, 1, err);
  store_close(s);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0)
    _exit(child_exit(disk_full_child(path, id)));
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the full-disk writer failed (status %d)",
        status);
  s = store_open(path, 0, err);
  CHECK(s, "reopen: %s", err);
  if (!s)
    return;
  store_job_t got;
  store_job_get(s, id, &got, err);
  CHECK(got.units_done > 0, "no unit survived the full disk");
  verify_job(s, id, "after a full disk");
  store_close(s);
  db_remove(path);
}

/* Opens the store read-only: reads work, writes fail naming the file. */
static void check_read_only_open(const char *path, const char *id, int64_t rows) {
  char err[HYDRA_ERR_LEN];
  store_t *s = store_open(path, STORE_READONLY, err);
  CHECK(s, "open read-only: %s", err);
  if (!s)
    return;
  store_job_t got;
  rows_t r = {0};
  CHECK(store_job_get(s, id, &got, err) == 0 && got.rows == rows, "read-only get: %s", err);
  CHECK(store_rows_read(s, id, 0, 0, collect, &r, NULL, NULL, err) == 0 && (int64_t)r.n == rows,
        "read-only rows: %zu %s", r.n, err);
  rows_free(&r);
  CHECK(complete_unit(s, id, 1, err) == -1 && strstr(err, path) && strstr(err, "read-only"),
        "read-only write: %s", err);
  CHECK(store_purge(s, 1e12, NULL, err) == -1, "read-only purge");
  store_close(s);
}

/* A store in a directory made read-only with chmod: opening it for writing
 * fails naming the file; read-only opening reads it. Returns failures. */
static int chmod_case(const char *base) {
  char err[HYDRA_ERR_LEN], sub[600], path[700], id[STORE_ID_LEN];
  int before = check_failures();
  snprintf(sub, sizeof sub, "%s/ro-XXXXXX", base);
  if (!mkdtemp(sub))
    return printf("mkdtemp %s: %s\n", sub, strerror(errno)), 1;
  snprintf(path, sizeof path, "%s/ro.db", sub);
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return 1;
  job_id(id, 50);
  store_job_t job = job_new(id, "ada", 2);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  complete_unit(s, id, 0, err);
  store_job_get(s, id, &job, err);
  store_close(s);
  chmod(path, 0444);
  chmod(sub, 0555);
  s = store_open(path, 0, err);
  CHECK(!s && strstr(err, path), "a read-only file opened for writing: %s", s ? "" : err);
  if (!s)
    printf("read-only file and directory: %s\n", err);
  store_close(s);
  check_read_only_open(path, id, job.rows);
  chmod(sub, 0755);
  chmod(path, 0644);
  db_remove(path);
  rmdir(sub);
  return check_failures() - before;
}

static void test_read_only(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN];
  db_path(path, sizeof path, "ro.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 50);
  store_job_t job = job_new(id, "ada", 2);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  complete_unit(s, id, 0, err);
  store_job_get(s, id, &job, err);
  store_close(s);
  check_read_only_open(path, id, job.rows);
  s = store_open(path, 0, err);
  CHECK(s && verify_job(s, id, "after read-only use") == 0, "reopen: %s", err);
  store_close(s);
  db_remove(path);
  char missing[600];
  db_path(missing, sizeof missing, "missing.db");
  s = store_open(missing, STORE_READONLY, err);
  CHECK(!s && strstr(err, missing), "a missing file opened read-only: %s", err);
  CHECK(access(missing, F_OK) != 0, "opening read-only created the file");

  if (geteuid() != 0) {
    chmod_case(dir);
    return;
  }
  /* chmod does not stop root: run the case as nobody. */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgid(65534) || setuid(65534)) {
      printf("skip: chmod read-only case: cannot drop root (%s)\n", strerror(errno));
      _exit(child_exit(77));
    }
    _exit(child_exit(chmod_case("/tmp") ? 1 : 0));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 77),
        "the chmod read-only case failed as nobody (status %d)", status);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    printf("read-only: chmod case run as nobody (this test runs as root)\n");
}

static int file_read(const char *path, unsigned char **data, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  *data = malloc(*n + 1);
  size_t got = fread(*data, 1, *n, f);
  fclose(f);
  return got == *n ? 0 : -1;
}

static int count_rows(void *ctx, int64_t seq, const char *text, size_t len) {
  (void)seq, (void)text, (void)len;
  ++*(size_t *)ctx;
  return 0;
}

static void test_corrupt(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN];
  db_path(path, sizeof path, "garbage.db");
  size_t n = 16384;
  unsigned char *garbage = malloc(n), *after = NULL;
  for (size_t i = 0; i < n; i++)
    garbage[i] = (unsigned char)rnd_bits();
  FILE *f = fopen(path, "wb");
  fwrite(garbage, 1, n, f);
  fclose(f);
  store_t *s = store_open(path, 0, err);
  CHECK(!s && strstr(err, path) && strstr(err, "not a database"), "garbage: %s", err);
  store_close(s);
  s = store_open(path, STORE_READONLY, err);
  CHECK(!s && strstr(err, path), "garbage read-only: %s", err);
  store_close(s);
  size_t after_n = 0;
  CHECK(file_read(path, &after, &after_n) == 0 && after_n == n && memcmp(after, garbage, n) == 0,
        "a failed open changed the file");
  free(after);
  free(garbage);
  db_remove(path);

  /* a store whose middle pages are overwritten: errors or wrong rows, never
   * a crash; every error names the file */
  db_path(path, sizeof path, "corrupt.db");
  s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 60);
  store_job_t job = job_new(id, "ada", 60);
  store_job_create(s, &job, "{}", 2, err);
  for (int u = 0; u < 60; u++)
    complete_unit(s, id, u, err);
  store_close(s);
  f = fopen(path, "r+b");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  for (long at = 4096 * 2; at < size; at += 4096 * 3) {
    unsigned char page[1024];
    for (size_t i = 0; i < sizeof page; i++)
      page[i] = (unsigned char)rnd_bits();
    fseek(f, at, SEEK_SET);
    fwrite(page, 1, sizeof page, f);
  }
  fclose(f);
  s = store_open(path, 0, err);
  int noticed = !s;
  if (!s)
    CHECK(strstr(err, path), "corrupt open: %s", err);
  if (s) {
    size_t count = 0;
    store_job_t *list = NULL;
    int rc = store_jobs_list(s, NULL, 0, &list, &n, err);
    free(list);
    if (rc)
      CHECK(strstr(err, path), "corrupt list: %s", err);
    noticed |= rc != 0;
    rc = store_rows_read(s, id, 0, 0, count_rows, &count, NULL, NULL, err);
    if (rc)
      CHECK(strstr(err, path), "corrupt rows: %s", err);
    noticed |= rc != 0;
    rc = complete_unit(s, id, 0, err);
    noticed |= rc == -1;
    store_close(s);
  }
  printf("corrupt pages: %s (%s)\n", noticed ? "reported" : "not noticed", noticed ? err : "");
  db_remove(path);
}

/* One writer thread completes units while readers follow the rows. */
typedef struct {
  store_t *s;
  const char *id;
  int n_units;
  int failed;
} shared_t;

static void *writer_thread(void *arg) {
  shared_t *sh = arg;
  char err[HYDRA_ERR_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  if (store_job_set_state(sh->s, sh->id, STORE_RUNNING, NULL, header, 1, err))
    sh->failed = printf("writer: %s\n", err);
  for (int u = 0; u < sh->n_units && !sh->failed; u++)
    if (complete_unit(sh->s, sh->id, u, err))
      sh->failed = printf("writer: unit %d: %s\n", u, err);
  if (store_job_set_state(sh->s, sh->id, STORE_DONE, NULL, finish, 2, err))
    sh->failed = printf("writer: done: %s\n", err);
  return NULL;
}

typedef struct {
  int64_t next;
  int bad;
} follower_t;

static int follow(void *ctx, int64_t seq, const char *text, size_t len) {
  follower_t *f = ctx;
  if (seq != f->next || len != strlen(text))
    f->bad = 1;
  f->next = seq + 1;
  return 0;
}

static void *reader_thread(void *arg) {
  shared_t *sh = arg;
  char err[HYDRA_ERR_LEN];
  follower_t f = {0, 0};
  store_state_t state = STORE_QUEUED;
  for (int spins = 0; spins < 1000000; spins++) {
    size_t n = 0;
    if (store_rows_read(sh->s, sh->id, f.next, 5, follow, &f, &n, &state, err)) {
      printf("reader: %s\n", err);
      f.bad = 1;
      break;
    }
    if (n < 5 && (state == STORE_DONE || state == STORE_FAILED))
      break;
    if (n == 0)
      usleep(200);
  }
  store_job_t job;
  store_job_get(sh->s, sh->id, &job, err);
  if (f.bad || f.next != job.rows || state != STORE_DONE) {
    printf("reader: %lld rows followed of %lld, state %s\n", (long long)f.next, (long long)job.rows,
           store_state_name(state));
    sh->failed = 1;
  }
  return NULL;
}

static void test_threads(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN];
  db_path(path, sizeof path, "threads.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 70);
  store_job_t job = job_new(id, "ada", 120);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  shared_t sh = {s, id, 120, 0};
  pthread_t writer, readers[3];
  for (int i = 0; i < 3; i++)
    pthread_create(&readers[i], NULL, reader_thread, &sh);
  pthread_create(&writer, NULL, writer_thread, &sh);
  pthread_join(writer, NULL);
  for (int i = 0; i < 3; i++)
    pthread_join(readers[i], NULL);
  CHECK(!sh.failed, "threads: a reader or the writer failed");
  verify_job(s, id, "threads");
  store_close(s);
  db_remove(path);
}

/* Two workers on one job: claims take the lowest free unit; a live lease
 * keeps others off, an expired one does not; renewing tells a lost lease and
 * the job's state; the unit's first completion stores it and the other's is a
 * duplicate; the summary claim comes when every unit is done; releasing frees
 * a worker's leases. Times by the store's clock, with short leases. */
static void test_leases(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  db_path(path, sizeof path, "leases.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 80);
  store_job_t job = job_new(id, "ada", 3);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  int a = -9, b = -9, c = -9, held = -1;
  store_state_t state = STORE_DONE;
  CHECK(store_claim_unit(s, id, "a", 60, &a, err) == 0 && a == 0, "a claims: %d %s", a, err);
  CHECK(store_claim_unit(s, id, "b", 0.4, &b, err) == 0 && b == 1, "b claims: %d %s", b, err);
  CHECK(store_claim_unit(s, id, "a", 60, &c, err) == 0 && c == 0, "a claims its own again: %d", c);
  CHECK(store_claim_unit(s, id, "c", 60, &c, err) == 0 && c == 2, "c claims: %d %s", c, err);
  CHECK(store_claim_unit(s, id, "d", 60, &c, err) == 0 && c == -1, "all leased: %d %s", c, err);
  CHECK(store_claim_unit(s, id, "", 60, &c, err) == -1, "an empty worker name");
  CHECK(store_renew_lease(s, id, 1, "b", 0.4, &held, &state, err) == 0 && held == 1 &&
            state == STORE_QUEUED,
        "b renews: held %d state %s %s", held, store_state_name(state), err);
  usleep(600000); /* b's lease runs out */
  CHECK(store_claim_unit(s, id, "d", 60, &c, err) == 0 && c == 1, "d takes b's unit: %d %s", c,
        err);
  CHECK(store_renew_lease(s, id, 1, "b", 0.4, &held, &state, err) == 0 && held == 0,
        "b's lease is lost: held %d %s", held, err);
  CHECK(store_job_set_state(s, id, STORE_RUNNING, NULL, header, 1, err) == 0, "run: %s", err);
  CHECK(complete_unit(s, id, 1, err) == 0, "b stores unit 1 (late, first): %s", err);
  CHECK(complete_unit(s, id, 1, err) == STORE_DUPLICATE, "d stores unit 1 too: %s", err);
  CHECK(complete_unit(s, id, 0, err) == 0, "a stores unit 0: %s", err);
  CHECK(store_claim_unit(s, id, "e", 60, &c, err) == 0 && c == -1, "unit 2 still leased to c: %d",
        c);
  size_t n = 0;
  CHECK(store_release_leases(s, "c", &n, err) == 0 && n == 1, "c releases: %zu %s", n, err);
  CHECK(store_claim_unit(s, id, "e", 60, &c, err) == 0 && c == 2, "e claims unit 2: %d %s", c, err);
  CHECK(complete_unit(s, id, 2, err) == 0, "e stores unit 2: %s", err);
  CHECK(store_claim_unit(s, id, "a", 60, &a, err) == 0 && a == 3, "a claims the summary: %d", a);
  CHECK(store_claim_unit(s, id, "b", 60, &b, err) == 0 && b == -1, "one summary claim: %d", b);
  CHECK(store_renew_lease(s, id, 3, "a", 60, &held, &state, err) == 0 && held == 1 &&
            state == STORE_RUNNING,
        "a renews the summary claim: %d %s", held, err);
  CHECK(store_job_set_state(s, id, STORE_DONE, NULL, finish, 2, err) == 0, "done: %s", err);
  CHECK(store_claim_unit(s, id, "b", 60, &b, err) == STORE_STATE && b == -1, "claim a done job");
  CHECK(store_renew_lease(s, id, 3, "a", 60, &held, &state, err) == 0 && state == STORE_DONE,
        "renewing tells the job ended: %s", store_state_name(state));
  verify_job(s, id, "leases");
  char other[STORE_ID_LEN];
  job_id(other, 81);
  CHECK(store_claim_unit(s, other, "a", 60, &a, err) == STORE_NOT_FOUND, "claim a missing job");
  /* a cancel made elsewhere is seen by the worker renewing its lease */
  job = job_new(other, "bob", 2);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  CHECK(store_claim_unit(s, other, "a", 60, &a, err) == 0 && a == 0, "claim: %s", err);
  CHECK(store_job_cancel(s, other, err) == 0, "cancel: %s", err);
  CHECK(store_renew_lease(s, other, 0, "a", 60, &held, &state, err) == 0 &&
            state == STORE_CANCELLED,
        "renew after a cancel: %s", store_state_name(state));
  store_close(s);
  db_remove(path);
}

static int sql_exec(const char *path, const char *sql);

/* A job's model fingerprint; the note of a waiting job, cleared by a stored
 * unit and by a state change; a failed job retried from its first pending
 * unit (its leases freed, its done units and rows kept, numbered on without
 * gaps); a job that failed before it started goes back to queued. */
static void test_retry(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN], early[STORE_ID_LEN], missing[STORE_ID_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  const char *print = "sha256:5f2b0e61d0f5a9d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c "
                      "llama L30 d576 h9/3 f1536 v49152 tok:bpe/49152";
  db_path(path, sizeof path, "retry.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  job_id(id, 90);
  job_id(early, 91);
  job_id(missing, 92);
  store_job_t job = job_new(id, "ada", 3), got;
  snprintf(job.fingerprint, sizeof job.fingerprint, "%s", print);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  CHECK(store_job_get(s, id, &got, err) == 0 && strcmp(got.fingerprint, print) == 0 &&
            got.note[0] == 0,
        "the fingerprint is stored: '%s' note '%s'", got.fingerprint, got.note);
  CHECK(store_job_note(s, id, "waiting for model tiny", err) == 0, "note: %s", err);
  store_resume_t *jobs = NULL;
  size_t n = 0;
  CHECK(store_jobs_resumable(s, &jobs, &n, err) == 0 && n == 1 &&
            strcmp(jobs[0].job.note, "waiting for model tiny") == 0 &&
            strcmp(jobs[0].job.fingerprint, print) == 0,
        "resumable with its note and fingerprint: %zu %s", n, err);
  free(jobs);
  CHECK(store_job_set_state(s, id, STORE_RUNNING, NULL, header, 1, err) == 0, "run: %s", err);
  CHECK(store_job_get(s, id, &got, err) == 0 && got.note[0] == 0, "a state change clears the note");
  store_job_note(s, id, "waiting again", err);
  CHECK(complete_unit(s, id, 0, err) == 0, "unit 0: %s", err);
  CHECK(store_job_get(s, id, &got, err) == 0 && got.note[0] == 0, "a stored unit clears the note");
  /* a long note is cut at a character boundary */
  char long_note[1200] = "";
  for (int i = 0; i < 500; i++)
    strcat(long_note, "\xc3\xa9");
  CHECK(store_job_note(s, id, long_note, err) == 0, "long note: %s", err);
  CHECK(store_job_get(s, id, &got, err) == 0 && strlen(got.note) == STORE_NOTE_LEN - 2 &&
            (unsigned char)got.note[strlen(got.note) - 1] == 0xa9,
        "a long note cut at a character: %zu bytes", strlen(got.note));
  int unit = -1;
  CHECK(store_claim_unit(s, id, "a", 600, &unit, err) == 0 && unit == 1, "a claims 1: %d", unit);
  CHECK(store_job_set_state(s, id, STORE_FAILED, "database or disk is full", NULL, 0, err) == 0,
        "fail: %s", err);
  CHECK(store_job_note(s, id, "late", err) == STORE_STATE, "no note on a failed job");
  CHECK(store_job_get(s, id, &got, err) == 0 && got.note[0] == 0 && got.finished_at > 0,
        "failed: note '%s'", got.note);
  store_state_t state = STORE_DONE;
  CHECK(store_job_retry(s, id, &state, err) == 0 && state == STORE_RUNNING, "retry: %s %s",
        store_state_name(state), err);
  CHECK(store_job_get(s, id, &got, err) == 0 && got.state == STORE_RUNNING && !got.error[0] &&
            got.finished_at == 0 && got.units_done == 1 && strcmp(got.fingerprint, print) == 0,
        "retried: %s '%s' finished %g units %d", store_state_name(got.state), got.error,
        got.finished_at, got.units_done);
  CHECK(store_job_retry(s, id, &state, err) == STORE_STATE, "a running job is not retried: %s",
        err);
  CHECK(store_job_retry(s, missing, &state, err) == STORE_NOT_FOUND, "a missing job: %s", err);
  CHECK(store_jobs_resumable(s, &jobs, &n, err) == 0 && n == 1 && jobs[0].first_pending == 1,
        "resumable from unit 1: %zu", n);
  free(jobs);
  CHECK(store_claim_unit(s, id, "b", 60, &unit, err) == 0 && unit == 1,
        "a's lease was freed: b claims unit 1: %d %s", unit, err);
  CHECK(complete_unit(s, id, 1, err) == 0 && complete_unit(s, id, 2, err) == 0, "units: %s", err);
  CHECK(store_job_set_state(s, id, STORE_DONE, NULL, finish, 2, err) == 0, "done: %s", err);
  verify_job(s, id, "retried");
  CHECK(store_job_retry(s, id, &state, err) == STORE_STATE, "a done job is not retried");
  job = job_new(early, "bob", 2);
  CHECK(store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  CHECK(store_job_set_state(s, early, STORE_FAILED, "no", NULL, 0, err) == 0, "fail: %s", err);
  CHECK(store_job_retry(s, early, &state, err) == 0 && state == STORE_QUEUED,
        "a job that failed before it started is queued again: %s", store_state_name(state));
  store_close(s);
  db_remove(path);
}

/* What a user keeps: jobs and the bytes of their specs and rows, counted as
 * they are stored (job, units, state changes, appended rows), gone with a
 * purge; other users' jobs apart. */
static void test_usage(void) {
  char err[HYDRA_ERR_LEN], path[600], ids[3][STORE_ID_LEN];
  const char *header[] = {"{\"type\":\"header\"}"};
  const char *finish[] = {"{\"type\":\"summary\"}", "{\"type\":\"end\"}"};
  const char *extra[] = {"{\"type\":\"note\",\"text\":\"\xc3\xa9t\xc3\xa9\"}"};
  db_path(path, sizeof path, "usage.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  if (!s)
    return;
  int64_t jobs = -1, bytes = -1, want = 0;
  CHECK(store_user_usage(s, "ada", &jobs, &bytes, err) == 0 && jobs == 0 && bytes == 0,
        "nothing stored: %lld jobs, %lld bytes %s", (long long)jobs, (long long)bytes, err);
  for (int i = 0; i < 3; i++) {
    job_id(ids[i], 100 + (uint64_t)i);
    store_job_t job = job_new(ids[i], i < 2 ? "ada" : "bob", 4);
    char spec[64];
    int n = snprintf(spec, sizeof spec, "{\"prompts\":[\"%.*s\"]}", 10 + 7 * i,
                     "0123456789abcdefghijklmnopqrstuvwxyz");
    CHECK(store_job_create(s, &job, spec, (size_t)n, err) == 0, "create: %s", err);
    if (i < 2)
      want += n;
  }
  store_job_set_state(s, ids[0], STORE_RUNNING, NULL, header, 1, err);
  want += (int64_t)strlen(header[0]);
  for (int u = 0; u < 4; u++) {
    CHECK(complete_unit(s, ids[0], u, err) == 0, "unit %d: %s", u, err);
    for (int k = 0; k < unit_rows(u); k++) {
      char *row = unit_row(u, k);
      want += (int64_t)strlen(row);
      free(row);
    }
  }
  CHECK(store_rows_append(s, ids[0], extra, 1, err) == 0, "append: %s", err);
  want += (int64_t)strlen(extra[0]);
  CHECK(store_job_set_state(s, ids[0], STORE_DONE, NULL, finish, 2, err) == 0, "done: %s", err);
  want += (int64_t)(strlen(finish[0]) + strlen(finish[1]));
  CHECK(store_user_usage(s, "ada", &jobs, &bytes, err) == 0 && jobs == 2 && bytes == want,
        "ada: %lld jobs, %lld bytes (want 2, %lld) %s", (long long)jobs, (long long)bytes,
        (long long)want, err);
  store_job_t got;
  CHECK(store_job_get(s, ids[1], &got, err) == 0 && got.bytes == 16 + 17, "a job's own bytes: %lld",
        (long long)got.bytes);
  CHECK(store_user_usage(s, "bob", &jobs, &bytes, err) == 0 && jobs == 1 && bytes == 16 + 24,
        "bob: %lld jobs, %lld bytes", (long long)jobs, (long long)bytes);
  size_t purged = 0;
  CHECK(store_purge(s, 4e9, &purged, err) == 0 && purged == 1, "purge: %zu %s", purged, err);
  CHECK(store_user_usage(s, "ada", &jobs, &bytes, err) == 0 && jobs == 1 && bytes == 16 + 17,
        "ada after the purge: %lld jobs, %lld bytes", (long long)jobs, (long long)bytes);
  store_close(s);
  db_remove(path);
}

static int sql_exec(const char *path, const char *sql);
static int count_rows(void *ctx, int64_t seq, const char *text, size_t len);

/* A store of schema version 4 (before names, labels and prompt counts):
 * its jobs read with none, their specs and rows as they were. */
static int pg_exec(const char *sql) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "psql -q -v ON_ERROR_STOP=1 '%s' -c '%s'", pg_url, sql);
  return system(cmd);
}

static void test_migration_names(const char *path) {
  char err[HYDRA_ERR_LEN], id[STORE_ID_LEN];
  const char *spec_text = "{\"prompts\":[\"a b\"]}";
  store_t *s = store_open(path, 0, err);
  job_id(id, 96);
  store_job_t job = job_new(id, "ada", 1), got;
  snprintf(job.name, sizeof job.name, "gone");
  const char *rows[] = {"{\"type\":\"header\"}", "{\"type\":\"clean\"}"};
  CHECK(s && store_job_create(s, &job, spec_text, strlen(spec_text), err) == 0, "create: %s", err);
  CHECK(s && store_rows_append(s, id, rows, 2, err) == 0, "append: %s", err);
  store_close(s);
  if (pg_url)
    CHECK(pg_exec("ALTER TABLE hydra_jobs DROP COLUMN name, DROP COLUMN labels, DROP COLUMN "
                  "n_prompts; UPDATE hydra_schema SET version = 4") == 0,
          "back to version 4");
  else
    CHECK(sql_exec(path, "ALTER TABLE jobs DROP COLUMN name; ALTER TABLE jobs DROP COLUMN labels; "
                         "ALTER TABLE jobs DROP COLUMN n_prompts; "
                         "UPDATE schema_version SET version = 4") == 0,
          "back to version 4");
  s = store_open(path, 0, err);
  CHECK(s, "open a version 4 store: %s", err);
  char *spec = NULL;
  size_t n_rows = 0;
  CHECK(s && store_job_get(s, id, &got, err) == 0 && !got.name[0] && !got.labels[0] &&
            got.n_prompts == 0 && got.rows == 2,
        "its job: name '%s', %lld rows", s ? got.name : "", s ? (long long)got.rows : 0LL);
  CHECK(s && store_job_spec(s, id, &spec, NULL, err) == 0 && spec && strcmp(spec, spec_text) == 0,
        "its spec: %s", spec ? spec : err);
  CHECK(s && store_rows_read(s, id, 0, 0, count_rows, &n_rows, NULL, NULL, err) == 0 && n_rows == 2,
        "its rows: %zu", n_rows);
  free(spec);
  store_close(s);
}

/* A store of schema version 2 (before fingerprints, notes and bytes) is
 * brought up to date; its jobs have no fingerprint nor note, and their
 * bytes are counted from what they hold. */
static void test_migration(void) {
  char err[HYDRA_ERR_LEN], path[600], id[STORE_ID_LEN];
  db_path(path, sizeof path, "migrate.db");
  store_t *s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  job_id(id, 95);
  store_job_t job = job_new(id, "ada", 1), got;
  snprintf(job.fingerprint, sizeof job.fingerprint, "sha256:00");
  const char *rows[] = {"{\"type\":\"header\"}"};
  CHECK(s && store_job_create(s, &job, "{}", 2, err) == 0, "create: %s", err);
  CHECK(s && store_rows_append(s, id, rows, 1, err) == 0, "append: %s", err);
  store_close(s);
  CHECK(sql_exec(path,
                 "ALTER TABLE jobs DROP COLUMN fingerprint; ALTER TABLE jobs DROP COLUMN "
                 "note; ALTER TABLE jobs DROP COLUMN bytes; ALTER TABLE jobs DROP COLUMN name; "
                 "ALTER TABLE jobs DROP COLUMN labels; ALTER TABLE jobs DROP COLUMN n_prompts; "
                 "UPDATE schema_version SET version = 2") == 0,
        "back to version 2");
  s = store_open(path, 0, err);
  CHECK(s, "open a version 2 store: %s", err);
  CHECK(s && store_job_get(s, id, &got, err) == 0 && got.fingerprint[0] == 0 && got.note[0] == 0 &&
            got.bytes == (int64_t)(2 + strlen(rows[0])),
        "its job: fingerprint '%s', %lld bytes", s ? got.fingerprint : "",
        s ? (long long)got.bytes : 0LL);
  store_close(s);
  test_migration_names(path);
  db_remove(path);
}

static int sql_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open(path, &db) || sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_close(db);
  return rc;
}

/* Someone else's database is refused and left alone; a schema from a newer
 * hydrad is refused. */
static void test_not_a_store(void) {
  char err[HYDRA_ERR_LEN], path[600];
  db_path(path, sizeof path, "other.db");
  CHECK(sql_exec(path, "CREATE TABLE t (x); INSERT INTO t VALUES (1)") == 0, "make other.db");
  store_t *s = store_open(path, 0, err);
  CHECK(!s && strstr(err, "not a hydra store") && strstr(err, path), "foreign database: %s", err);
  store_close(s);
  CHECK(sql_exec(path, "SELECT * FROM jobs") != 0, "tables were added to a foreign database");
  db_remove(path);

  s = store_open(path, 0, err);
  CHECK(s, "open: %s", err);
  store_close(s);
  CHECK(sql_exec(path, "UPDATE schema_version SET version = 99") == 0, "plant version 99");
  s = store_open(path, 0, err);
  CHECK(!s && strstr(err, "newer"), "a newer schema: %s", err);
  store_close(s);
  s = store_open(path, STORE_READONLY, err);
  CHECK(!s && strstr(err, "newer"), "a newer schema, read-only: %s", err);
  store_close(s);
  db_remove(path);
}

/* PostgreSQL: a schema from a newer hydrad is refused, and so is a
 * database whose hydra_jobs table has no schema version; other tables in the
 * database are none of the store's business. */
static void test_pg_schema(void) {
  char err[HYDRA_ERR_LEN], cmd[1200];
  store_t *s = store_open(pg_url, 0, err);
  CHECK(s, "open: %s", err);
  store_close(s);
  snprintf(cmd, sizeof cmd,
           "psql -q -v ON_ERROR_STOP=1 '%s' -c 'UPDATE hydra_schema SET version = 99; "
           "CREATE TABLE IF NOT EXISTS someone_elses (x int)'",
           pg_url);
  CHECK(system(cmd) == 0, "plant version 99: %s", cmd);
  s = store_open(pg_url, 0, err);
  CHECK(!s && strstr(err, "newer"), "a newer schema: %s", err);
  store_close(s);
  snprintf(cmd, sizeof cmd, "psql -q -v ON_ERROR_STOP=1 '%s' -c 'DROP TABLE hydra_schema'", pg_url);
  CHECK(system(cmd) == 0, "drop the version: %s", cmd);
  s = store_open(pg_url, 0, err);
  CHECK(!s && strstr(err, "not a hydra store"), "hydra_jobs without a version: %s", err);
  store_close(s);
  db_remove(pg_url);
  s = store_open(pg_url, 0, err);
  CHECK(s, "open beside another table: %s", err);
  store_close(s);
  snprintf(cmd, sizeof cmd, "psql -q '%s' -c 'DROP TABLE someone_elses'", pg_url);
  CHECK(system(cmd) == 0, "%s", cmd);
  db_remove(pg_url);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--postgres") == 0) {
    if (!(pg_url = getenv("HYDRA_TEST_POSTGRES")) || !*pg_url)
      return printf("test_store --postgres: HYDRA_TEST_POSTGRES is not set\n"), 1;
    argv++, argc--;
  }
  if (argc > 1)
    seed = strtoull(argv[1], NULL, 10);
  rng_state = seed ? seed : 1;
  check_seed(seed);
  if (argc > 2)
    snprintf(dir, sizeof dir, "%s", argv[2]);
  else {
    snprintf(dir, sizeof dir, "/tmp/test_store_XXXXXX");
    if (!mkdtemp(dir))
      return printf("mkdtemp: %s\n", strerror(errno)), 1;
  }
  if (pg_url)
    db_remove(pg_url);
  else
    test_urls();
  test_jobs();
  test_find();
  test_units();
  test_resume();
  test_purge();
  test_leases();
  test_retry();
  test_usage();
  if (!pg_url) { /* files: permissions, corruption, size limits */
    test_read_only();
    test_corrupt();
    test_disk_full();
  }
  test_threads();
  if (!pg_url) {
    test_not_a_store();
    test_migration();
  } else {
    test_migration_names(pg_url);
    db_remove(pg_url);
    test_pg_schema();
  }
  test_crash();
  if (argc <= 2)
    rmdir(dir);
  return check_exit(pg_url ? "test_store --postgres" : "test_store");
}
