/* cmd_remote.c - the hydra commands that talk to hydrad over HTTP (libcurl):
 * models, tokenize, submit [--follow], status, results, cancel, jobs, and
 * check (CI regression mode: a job's summary against a stored baseline, with
 * JUnit XML). The server and token come from --url/--token or HYDRA_URL and
 * HYDRA_TOKEN. Errors the server answers are printed as its message with the
 * field path. Exit codes: 0 ok, 1 failure or drift, 2 usage or a bad job
 * (the server's 400/413/422), 3 the server or the connection. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "cli.h"
#include "clock.h"
#include "error.h"
#include "json_field.h"

/* ---- options ---- */

typedef struct {
  const char *url, *token;
  char url_buf[1024]; /* the URL without trailing slashes */
  const char *format; /* table, csv, ndjson */
  const char *after, *baseline, *junit, *model;
  const char *name, *label, *state; /* hydra jobs' filters */
  double rtol, atol;
  int follow, write_baseline;
  int n_pos;
  const char *pos[4];
} opts_t;

/* Each command's usage line (--help prints it with the server options). */
static const struct {
  const char *cmd, *usage;
} USAGES[] = {
    {"models", "hydra models [NAME]   (the loaded models; NAME: only that one)"},
    {"tokenize", "hydra tokenize MODEL TEXT"},
    {"submit", "hydra submit JOB.json [--follow [--format table|csv|ndjson]]"},
    {"status",
     "hydra status ID   (ID: a job id or a unique prefix of 6 or more of its hex digits)"},
    {"results", "hydra results ID [--format table|csv|ndjson] [--after N]"},
    {"cancel", "hydra cancel ID"},
    {"retry", "hydra retry ID   (a failed job, from its first pending unit)"},
    {"jobs", "hydra jobs [--name NAME] [--label KEY[=VALUE]] [--state STATE]"},
    {"check", "hydra check --baseline BASE.json JOB.json [--rtol R] [--atol A] [--junit OUT.xml]\n"
              "       hydra check --write-baseline --baseline BASE.json JOB.json"},
};

/* parse_opts's answer to --help: the caller exits 0. */
#define OPTS_HELP (-1)

static const char *usage_of(const char *cmd) {
  for (size_t i = 0; i < sizeof(USAGES) / sizeof(USAGES[0]); i++)
    if (strcmp(USAGES[i].cmd, cmd) == 0)
      return USAGES[i].usage;
  return "hydra --help";
}

/* A parse_opts result as an exit code (--help is success). */
static int opts_exit(int rc) {
  return rc == OPTS_HELP ? EXIT_OK : rc;
}

/* Parses argv into o; positional arguments in o->pos. Returns 0, OPTS_HELP
 * after printing the command's usage (--help, -h), or EXIT_USAGE after a
 * message. `allowed` lists the options the command takes. */
static int parse_opts(const char *cmd, int argc, char **argv, const char *allowed, opts_t *o) {
  o->url = getenv("HYDRA_URL");
  o->token = getenv("HYDRA_TOKEN");
  if (!o->url || !o->url[0])
    o->url = "http://127.0.0.1:8080";
  o->rtol = 1e-3;
  o->atol = 1e-4;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("usage: %s\nserver options: --url URL (or $HYDRA_URL, default "
             "http://127.0.0.1:8080), --token TOKEN (or $HYDRA_TOKEN)\n",
             usage_of(cmd));
      return OPTS_HELP;
    }
    if (a[0] != '-' || strcmp(a, "-") == 0) {
      if (o->n_pos == 4) {
        fprintf(stderr, "hydra %s: too many arguments\n", cmd);
        return EXIT_USAGE;
      }
      o->pos[o->n_pos++] = a;
      continue;
    }
    char key[32];
    snprintf(key, sizeof(key), " %s ", a + 2);
    if (strncmp(a, "--", 2) != 0 || !strstr(allowed, key)) {
      fprintf(stderr, "hydra %s: unknown option %s\n", cmd, a);
      return EXIT_USAGE;
    }
    if (strcmp(a, "--follow") == 0) {
      o->follow = 1;
      continue;
    }
    if (strcmp(a, "--write-baseline") == 0) {
      o->write_baseline = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "hydra %s: %s needs a value\n", cmd, a);
      return EXIT_USAGE;
    }
    const char *v = argv[++i];
    char *end = NULL;
    if (strcmp(a, "--url") == 0)
      o->url = v;
    else if (strcmp(a, "--token") == 0)
      o->token = v;
    else if (strcmp(a, "--format") == 0) {
      if (strcmp(v, "table") && strcmp(v, "csv") && strcmp(v, "ndjson")) {
        fprintf(stderr, "hydra %s: --format: expected table, csv or ndjson\n", cmd);
        return EXIT_USAGE;
      }
      o->format = v;
    } else if (strcmp(a, "--after") == 0) {
      strtol(v, &end, 10);
      if (end == v || *end) {
        fprintf(stderr, "hydra %s: --after: expected a row count\n", cmd);
        return EXIT_USAGE;
      }
      o->after = v;
    } else if (strcmp(a, "--baseline") == 0)
      o->baseline = v;
    else if (strcmp(a, "--junit") == 0)
      o->junit = v;
    else if (strcmp(a, "--model") == 0)
      o->model = v;
    else if (strcmp(a, "--name") == 0)
      o->name = v;
    else if (strcmp(a, "--label") == 0)
      o->label = v;
    else if (strcmp(a, "--state") == 0)
      o->state = v;
    else if (strcmp(a, "--rtol") == 0 || strcmp(a, "--atol") == 0) {
      const double x = strtod(v, &end);
      if (end == v || *end || !(x >= 0)) {
        fprintf(stderr, "hydra %s: %s: expected a number >= 0\n", cmd, a);
        return EXIT_USAGE;
      }
      *(a[2] == 'r' ? &o->rtol : &o->atol) = x;
    }
  }
  /* "http://host:8080/" + "/v1/jobs" would be "//v1/jobs", which no route matches */
  size_t n = strlen(o->url);
  while (n > 0 && o->url[n - 1] == '/')
    n--;
  if (n >= sizeof(o->url_buf)) {
    fprintf(stderr, "hydra %s: the server URL is longer than %zu bytes\n", cmd,
            sizeof(o->url_buf) - 1);
    return EXIT_USAGE;
  }
  memcpy(o->url_buf, o->url, n);
  o->url_buf[n] = '\0';
  o->url = o->url_buf;
  return 0;
}

/* ---- HTTP ---- */

typedef struct {
  buffer_t body; /* the answer's body, unless teed */
  FILE *tee;     /* when set, a 2xx body goes there as it arrives (streaming) */
  CURL *curl;    /* the transfer (set by http) */
} reply_t;

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
  reply_t *b = ctx;
  const size_t m = size * n;
  long status = 0;
  if (b->tee && b->curl)
    curl_easy_getinfo(b->curl, CURLINFO_RESPONSE_CODE, &status);
  if (b->tee && status < 400) { /* an error's JSON is kept for its message */
    if (fwrite(p, 1, m, b->tee) != m)
      return 0;
    fflush(b->tee);
    return m;
  }
  return buffer_append(&b->body, p, m) == 0 ? m : 0;
}

/* One request. Returns the HTTP status, or -1 after printing why the server
 * could not be reached. The body is in out (NUL-terminated) unless out->tee. */
static long http(const opts_t *o, const char *method, const char *path, const char *body,
                 size_t body_len, reply_t *out) {
  CURL *c = curl_easy_init();
  if (!c) {
    fprintf(stderr, "hydra: cannot start libcurl\n");
    return -1;
  }
  char url[2048], auth[1100], errbuf[CURL_ERROR_SIZE] = "";
  snprintf(url, sizeof(url), "%s%s", o->url, path);
  struct curl_slist *h = NULL;
  if (o->token && o->token[0]) {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->token);
    h = curl_slist_append(h, auth);
  }
  if (body)
    h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  out->curl = c;
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  }
  const CURLcode rc = curl_easy_perform(c);
  long status = -1;
  if (rc != CURLE_OK)
    fprintf(stderr, "hydra: %s %s: %s\n", method, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
  else
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status == 401 && !(o->token && o->token[0]))
    fprintf(stderr, "hydra: no token given: the server wants one (pass --token TOKEN or set "
                    "HYDRA_TOKEN; the server's tokens file maps tokens to users)\n");
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  out->curl = NULL;
  return status;
}

/* The server's error, printed as "hydra CMD: FIELD: MESSAGE (HTTP n)";
 * returns the exit code: a request the server refused as wrong is a usage
 * error (2), as is a 404 (an unknown job id, a model not loaded there),
 * anything else a server error (3). */
static int server_error(const char *cmd, long status, const reply_t *b) {
  const char *body = b->body.data;
  json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
  json_t *e = json_object_get(doc, "error");
  const char *msg = json_string_value(json_object_get(e, "message"));
  const char *field = json_string_value(json_object_get(e, "field"));
  /* hydrad's messages are under 1 KiB, its field paths under 128 bytes; an
   * answer that is not its JSON error is shown as it came. */
  char line[2048];
  const char *text = msg    ? json_field_message(line, sizeof(line), field, msg)
                     : body ? body
                            : "no answer";
  fprintf(stderr, "hydra %s: %s (HTTP %ld)\n", cmd, text, status);
  const int bad_job = status == 400 || status == 404 || status == 413 || status == 422;
  json_decref(doc);
  return bad_job ? EXIT_USAGE : EXIT_SERVER;
}

/* GET/POST/DELETE expecting JSON; NULL after the message (exit code in *rc). */
static json_t *call_json(const char *cmd, const opts_t *o, const char *method, const char *path,
                         const char *body, size_t body_len, int *rc) {
  reply_t b = {0};
  const long st = http(o, method, path, body, body_len, &b);
  json_t *doc = NULL;
  if (st < 0)
    *rc = EXIT_SERVER;
  else if (st >= 400)
    *rc = server_error(cmd, st, &b);
  else if (!(doc = json_loads(b.body.data ? b.body.data : "", 0, NULL))) {
    fprintf(stderr, "hydra %s: the server's answer is not JSON\n", cmd);
    *rc = EXIT_SERVER;
  }
  buffer_free(&b.body);
  return doc;
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

/* ---- commands ---- */

#define URL_OPTS " url token "

int cmd_models(int argc, char **argv) {
  opts_t o = {0};
  int rc = parse_opts("models", argc, argv, URL_OPTS, &o);
  if (rc)
    return opts_exit(rc);
  if (o.n_pos > 1) {
    fprintf(stderr, "usage: %s\n", usage_of("models"));
    return EXIT_USAGE;
  }
  json_t *doc = call_json("models", &o, "GET", "/v1/models", NULL, 0, &rc);
  if (!doc)
    return rc;
  const char *only = o.n_pos ? o.pos[0] : NULL;
  size_t i;
  json_t *m;
  if (only) { /* a name the server does not hold: say which it does */
    int found = 0;
    json_array_foreach(json_object_get(doc, "models"), i, m) found |= !strcmp(str(m, "id"), only);
    if (!found) {
      fprintf(stderr, "hydra models: no model \"%s\" on the server; loaded:", only);
      json_array_foreach(json_object_get(doc, "models"), i, m) fprintf(stderr, " %s", str(m, "id"));
      fprintf(stderr, "\n");
      json_decref(doc);
      return EXIT_USAGE;
    }
  }
  printf("%-16s %-8s %7s %8s %6s %8s %8s  %s\n", "id", "family", "layers", "d_model", "heads",
         "d_mlp", "vocab", "tokenizer");
  json_array_foreach(json_object_get(doc, "models"), i, m) {
    if (only && strcmp(str(m, "id"), only) != 0)
      continue;
    printf("%-16s %-8s %7lld %8lld %6lld %8lld %8lld  %s\n", str(m, "id"), str(m, "family"),
           json_integer_value(json_object_get(m, "n_layers")),
           json_integer_value(json_object_get(m, "d_model")),
           json_integer_value(json_object_get(m, "n_heads")),
           json_integer_value(json_object_get(m, "d_mlp")),
           json_integer_value(json_object_get(m, "vocab_size")), str(m, "tokenizer"));
  }
  json_decref(doc);
  return EXIT_OK;
}

int cmd_tokenize(int argc, char **argv) {
  opts_t o = {0};
  int rc = parse_opts("tokenize", argc, argv, URL_OPTS, &o);
  if (rc)
    return opts_exit(rc);
  if (o.n_pos != 2) {
    fprintf(stderr, "usage: hydra tokenize MODEL TEXT\n");
    return EXIT_USAGE;
  }
  char path[512];
  char *esc = curl_easy_escape(NULL, o.pos[0], 0);
  snprintf(path, sizeof(path), "/v1/models/%s/tokenize", esc ? esc : "");
  curl_free(esc);
  json_t *req = json_pack("{s:s}", "text", o.pos[1]);
  char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  json_t *doc = call_json("tokenize", &o, "POST", path, body, body ? strlen(body) : 0, &rc);
  free(body);
  if (!doc)
    return rc;
  json_t *ids = json_object_get(doc, "ids"), *toks = json_object_get(doc, "tokens");
  for (size_t i = 0; i < json_array_size(ids); i++) {
    json_t *t = json_array_get(toks, i);
    char *shown = json_dumps(t ? t : json_null(), JSON_ENCODE_ANY);
    printf("%6zu %8lld  %s\n", i, json_integer_value(json_array_get(ids, i)), shown ? shown : "?");
    free(shown);
  }
  json_decref(doc);
  return EXIT_OK;
}

static void print_status(json_t *j) {
  cli_print_status(j);
}

static int job_path(char *buf, size_t n, const char *id, const char *suffix) {
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          *p == '-' || *p == '_')) {
      fprintf(stderr, "hydra: \"%s\" is not a job id\n", id);
      return EXIT_USAGE;
    }
  snprintf(buf, n, "/v1/jobs/%s%s", id, suffix);
  return 0;
}

static void print_cancel(json_t *j) {
  printf("%s %s\n", str(j, "id"), str(j, "state"));
}

static void print_retry(json_t *j) {
  printf("%s %s from unit %lld of %lld\n", str(j, "id"), str(j, "state"),
         json_integer_value(json_object_get(j, "units_done")),
         json_integer_value(json_object_get(j, "n_units")));
}

/* hydra CMD ID: one request on a job (its path, then suffix), its answer
 * shown by show(). */
static int job_command(const char *cmd, int argc, char **argv, const char *method,
                       const char *suffix, void (*show)(json_t *)) {
  opts_t o = {0};
  int rc = parse_opts(cmd, argc, argv, URL_OPTS, &o);
  if (rc)
    return opts_exit(rc);
  char path[256];
  if (o.n_pos != 1) {
    fprintf(stderr, "usage: hydra %s ID\n", cmd);
    return EXIT_USAGE;
  }
  if ((rc = job_path(path, sizeof(path), o.pos[0], suffix)))
    return rc;
  json_t *doc = call_json(cmd, &o, method, path, NULL, 0, &rc);
  if (!doc)
    return rc;
  show(doc);
  json_decref(doc);
  return EXIT_OK;
}

int cmd_status(int argc, char **argv) {
  return job_command("status", argc, argv, "GET", "", print_status);
}

int cmd_cancel(int argc, char **argv) {
  return job_command("cancel", argc, argv, "DELETE", "", print_cancel);
}

int cmd_retry(int argc, char **argv) {
  return job_command("retry", argc, argv, "POST", "/retry", print_retry);
}

/* "/v1/jobs" with the filters given (the server checks them), URL-encoded;
 * NULL when out of memory. The caller frees it. */
static char *jobs_query(const opts_t *o) {
  const char *names[] = {"name", "label", "state"}, *values[] = {o->name, o->label, o->state};
  buffer_t q = {0};
  int ok = buffer_appendf(&q, "/v1/jobs") == 0;
  for (int i = 0; i < 3 && ok; i++) {
    if (!values[i])
      continue;
    char *esc = curl_easy_escape(NULL, values[i], 0);
    ok = esc && buffer_appendf(&q, "%c%s=%s", strchr(q.data, '?') ? '&' : '?', names[i], esc) == 0;
    curl_free(esc);
  }
  if (!ok)
    buffer_free(&q);
  return q.data;
}

int cmd_jobs(int argc, char **argv) {
  opts_t o = {0};
  int rc = parse_opts("jobs", argc, argv, URL_OPTS "name label state ", &o);
  if (rc)
    return opts_exit(rc);
  if (o.n_pos) {
    fprintf(stderr, "usage: %s\n", usage_of("jobs"));
    return EXIT_USAGE;
  }
  char page[1024], *first = jobs_query(&o);
  if (!first || strlen(first) >= sizeof page) {
    fprintf(stderr, "hydra jobs: %s\n", first ? "the filters are too long" : "out of memory");
    free(first);
    return EXIT_USAGE;
  }
  snprintf(page, sizeof page, "%s", first);
  free(first);
  for (int n_pages = 0; page[0]; n_pages++) { /* every page: "next" until null */
    json_t *doc = call_json("jobs", &o, "GET", page, NULL, 0, &rc);
    if (!doc)
      return rc;
    if (n_pages == 0)
      cli_print_jobs_header();
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(doc, "jobs"), i, j) cli_print_job_line(j);
    const char *next = json_string_value(json_object_get(doc, "next"));
    snprintf(page, sizeof page, "%s", next && strlen(next) < sizeof page ? next : "");
    json_decref(doc);
  }
  return EXIT_OK;
}

/* Fetches a job's rows (waiting for its end) in the given format to out:
 * ndjson and csv as they arrive, table from the rows at the end. */
static int fetch_results(const char *cmd, const opts_t *o, const char *id, const char *format,
                         FILE *out, buffer_t *keep) {
  char path[512];
  int rc = job_path(path, sizeof(path) - 64, id, "/results?wait=stream");
  if (rc)
    return rc;
  if (o->after)
    snprintf(path + strlen(path), 64, "&after=%s", o->after);
  if (strcmp(format, "csv") == 0)
    strcat(path, "&format=csv");
  const int stream = strcmp(format, "table") != 0 && !keep;
  reply_t b = {.tee = stream ? out : NULL};
  const long st = http(o, "GET", path, NULL, 0, &b);
  if (st < 0)
    rc = EXIT_SERVER;
  else if (st >= 400)
    rc = server_error(cmd, st, &b);
  else if (!stream && out && strcmp(format, "table") == 0) {
    FILE *f = fmemopen(b.body.data ? b.body.data : (char *)"", b.body.len, "r");
    rc = f ? table_from_rows(f, id, out) : EXIT_FAIL;
    if (f)
      fclose(f);
  } else if (!stream && out)
    fwrite(b.body.data ? b.body.data : "", 1, b.body.len, out);
  if (keep && rc == EXIT_OK) {
    *keep = b.body;
    b.body = (buffer_t){0};
  }
  buffer_free(&b.body);
  return rc;
}

int cmd_results(int argc, char **argv) {
  opts_t o = {0};
  int rc = parse_opts("results", argc, argv, URL_OPTS " format after ", &o);
  if (rc)
    return opts_exit(rc);
  if (o.n_pos != 1) {
    fprintf(stderr, "usage: hydra results ID [--format table|csv|ndjson] [--after N]\n");
    return EXIT_USAGE;
  }
  return fetch_results("results", &o, o.pos[0], o.format ? o.format : "ndjson", stdout, NULL);
}

/* Set by SIGINT while a job is followed: the job runs on without us. */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) {
  (void)sig;
  interrupted = 1;
}

/* follow's loop: polls the job until it ends or SIGINT. */
static int follow_until_end(const char *cmd, const opts_t *o, const char *id, const char *path) {
  int rc;
  const int tty = isatty(2);
  double last = 0;
  long last_done = -1;
  while (!interrupted) {
    json_t *j = call_json(cmd, o, "GET", path, NULL, 0, &rc);
    if (!j)
      return rc;
    json_t *p = json_object_get(j, "progress");
    const long done = (long)json_integer_value(json_object_get(p, "variants_done")),
               total = (long)json_integer_value(json_object_get(p, "variants_total"));
    const json_t *eta_s = json_object_get(p, "eta_s"); /* null until a rate is known */
    const double rate = json_number_value(json_object_get(p, "rate")),
                 eta = json_is_number(eta_s) ? json_number_value(eta_s) : -1;
    const char *state = str(j, "state");
    const int end =
        !strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled");
    if (tty)
      cli_progress_bar(state, done, total, rate, eta, end);
    else if (end || (done != last_done && clock_monotonic() - last >= 5)) {
      char e[32], r[32];
      fprintf(stderr, "hydra: job %s %s: %ld/%ld variants, %s, %s\n", id, state, done, total,
              cli_rate(json_is_number(json_object_get(p, "rate")) ? rate : -1, r),
              cli_eta(end ? 0 : eta, e));
      last = clock_monotonic();
      last_done = done;
    }
    if (end) {
      if (strcmp(state, "done") != 0) {
        fprintf(stderr, "hydra %s: job %s %s%s%s\n", cmd, id, state,
                json_is_string(json_object_get(j, "error")) ? ": " : "", str(j, "error"));
        rc = EXIT_FAIL;
      } else
        rc = EXIT_OK;
      json_decref(j);
      return rc;
    }
    json_decref(j);
    for (int t = 0; t < 30 && !interrupted; t++) /* 300 ms, a Ctrl-C ends it at once */
      usleep(10000);
  }
  return EXIT_FAIL;
}

/* Waits for a job's end with progress on stderr (a bar on a terminal, plain
 * lines otherwise). Returns EXIT_OK when done, EXIT_FAIL when it failed or
 * was cancelled (the server's reason printed), 130 after Ctrl-C (the job
 * keeps running on the server: the message says how to cancel it). */
static int follow(const char *cmd, const opts_t *o, const char *id) {
  char path[256];
  int rc = job_path(path, sizeof(path), id, "");
  if (rc)
    return rc;
  struct sigaction sa = {.sa_handler = on_interrupt}, old_sa;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_sa);
  rc = follow_until_end(cmd, o, id, path);
  sigaction(SIGINT, &old_sa, NULL);
  if (interrupted) {
    fprintf(stderr,
            "\nhydra %s: stopped following; job %s keeps running on the server (see it with: "
            "hydra status %s; stop it with: hydra cancel %s)\n",
            cmd, id, id, id);
    return 130;
  }
  return rc;
}

/* Submits a job document; the new job's id in id_out. */
static int submit(const char *cmd, const opts_t *o, const char *job_path_arg, char *id_out,
                  size_t id_len) {
  char err[HYDRA_ERR_LEN] = "";
  size_t len = 0;
  char *doc = read_file(job_path_arg, &len, err);
  if (!doc) {
    fprintf(stderr, "hydra %s: %s\n", cmd, err);
    return EXIT_USAGE;
  }
  int rc = 0;
  json_t *ans = call_json(cmd, o, "POST", "/v1/jobs", doc, len, &rc);
  free(doc);
  if (!ans)
    return rc;
  snprintf(id_out, id_len, "%s", str(ans, "id"));
  json_decref(ans);
  return id_out[0] ? EXIT_OK : EXIT_SERVER;
}

int cmd_submit(int argc, char **argv) {
  opts_t o = {0};
  int rc = parse_opts("submit", argc, argv, URL_OPTS " follow format ", &o);
  if (rc)
    return opts_exit(rc);
  if (o.n_pos != 1) {
    fprintf(stderr, "usage: %s\n", usage_of("submit"));
    return EXIT_USAGE;
  }
  if (o.format && !o.follow) {
    fprintf(stderr,
            "hydra submit: --format needs --follow (without it submit prints the job's "
            "id; then: hydra results ID --format %s)\n",
            o.format);
    return EXIT_USAGE;
  }
  char id[128];
  if ((rc = submit("submit", &o, o.pos[0], id, sizeof(id))))
    return rc;
  if (!o.follow) {
    printf("%s\n", id);
    return EXIT_OK;
  }
  fprintf(stderr, "hydra: job %s submitted\n", id);
  if ((rc = follow("submit", &o, id)))
    return rc;
  return fetch_results("submit", &o, id, o.format ? o.format : "table", stdout, NULL);
}

/* ---- check: CI regression mode ---- */

static const char *const CHECKED[] = {"direct_effect", "total_effect", "compensation"};

/* {component + " " + method: {direct_effect, total_effect, compensation}} from rows. */
static json_t *summary_of(const char *rows, size_t len, json_t **header) {
  json_t *out = json_object();
  FILE *f = fmemopen((void *)rows, len, "r");
  char *line = NULL;
  size_t cap = 0;
  while (f && getline(&line, &cap, f) > 0) {
    json_t *row = json_loads(line, 0, NULL);
    const char *type = str(row, "type");
    if (!strcmp(type, "header") && header && !*header)
      *header = json_incref(row);
    if (!strcmp(type, "summary")) {
      char key[160];
      snprintf(key, sizeof(key), "%s %s", str(row, "component"), str(row, "method"));
      json_t *v = json_object();
      for (int i = 0; i < 3; i++)
        json_object_set(v, CHECKED[i], json_object_get(json_object_get(row, CHECKED[i]), "mean"));
      json_object_set(v, "nonfinite", json_object_get(row, "nonfinite"));
      json_object_set_new(out, key, v);
    }
    json_decref(row);
  }
  free(line);
  if (f)
    fclose(f);
  return out;
}

static void xml_escape(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<')
      fputs("&lt;", f);
    else if (*s == '>')
      fputs("&gt;", f);
    else if (*s == '&')
      fputs("&amp;", f);
    else if (*s == '"')
      fputs("&quot;", f);
    else if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
      fputc('?', f);
    else
      fputc(*s, f);
  }
}

int cmd_check(int argc, char **argv) {
  opts_t o = {0};
  int rc =
      parse_opts("check", argc, argv, URL_OPTS " baseline rtol atol junit write-baseline ", &o);
  if (rc)
    return opts_exit(rc);
  if (o.n_pos != 1 || !o.baseline) {
    fprintf(stderr, "usage: hydra check --baseline BASE.json JOB.json [--rtol R] [--atol A] "
                    "[--junit OUT.xml]\n"
                    "       hydra check --write-baseline --baseline BASE.json JOB.json\n");
    return EXIT_USAGE;
  }
  json_t *base = NULL;
  if (!o.write_baseline) { /* read it first: a missing baseline is a usage error, not a run */
    json_error_t je;
    base = json_load_file(o.baseline, JSON_REJECT_DUPLICATES, &je);
    if (!base || !json_is_object(json_object_get(base, "summary"))) {
      fprintf(stderr, "hydra check: %s: %s\n", o.baseline,
              base ? "no \"summary\" object (write one with --write-baseline)" : je.text);
      json_decref(base);
      return EXIT_USAGE;
    }
  }
  char id[128];
  if ((rc = submit("check", &o, o.pos[0], id, sizeof(id))) || (rc = follow("check", &o, id))) {
    json_decref(base);
    return rc;
  }
  buffer_t rows = {0};
  if ((rc = fetch_results("check", &o, id, "ndjson", NULL, &rows))) {
    json_decref(base);
    return rc;
  }
  json_t *header = NULL, *cur = summary_of(rows.data ? rows.data : "", rows.len, &header);
  buffer_free(&rows);
  if (o.write_baseline) {
    const size_t n_cur = json_object_size(cur);
    json_t *doc =
        json_pack("{s:s,s:s,s:o}", "job", o.pos[0], "model", str(header, "model"), "summary", cur);
    if (json_object_get(header, "slots"))
      json_object_set(doc, "slots", json_object_get(header, "slots"));
    const int bad = json_dump_file(doc, o.baseline, JSON_INDENT(1) | JSON_SORT_KEYS) != 0;
    json_decref(doc);
    json_decref(header);
    if (bad) {
      fprintf(stderr, "hydra check: cannot write %s: %s\n", o.baseline, strerror(errno));
      return EXIT_FAIL;
    }
    printf("baseline %s written: %zu components x methods (job %s)\n", o.baseline, n_cur, id);
    return EXIT_OK;
  }
  json_decref(header);
  /* compare: |current - baseline| <= atol + rtol * |baseline| for each quantity */
  json_t *bsum = json_object_get(base, "summary");
  FILE *xml = NULL;
  if (o.junit && !(xml = fopen(o.junit, "w"))) {
    fprintf(stderr, "hydra check: cannot write %s: %s\n", o.junit, strerror(errno));
    json_decref(base);
    json_decref(cur);
    return EXIT_FAIL;
  }
  int n = 0, drifted = 0;
  const char *key;
  json_t *bv;
  char *cases = NULL;
  size_t cases_len = 0;
  FILE *cf = open_memstream(&cases, &cases_len);
  json_object_foreach(bsum, key, bv) {
    n++;
    json_t *cv = json_object_get(cur, key);
    char why[1024] = "";
    size_t w = 0;
    if (!cv)
      w += snprintf(why + w, sizeof(why) - w, "missing from this run");
    else if (json_integer_value(json_object_get(cv, "nonfinite")) > 0)
      w += snprintf(why + w, sizeof(why) - w, "%lld rows with non-finite values",
                    (long long)json_integer_value(json_object_get(cv, "nonfinite")));
    else
      for (int i = 0; i < 3; i++) {
        /* null (non-finite) is never a number within tolerance, not even of null */
        const json_t *bj = json_object_get(bv, CHECKED[i]), *cj = json_object_get(cv, CHECKED[i]);
        const double b = json_is_number(bj) ? json_number_value(bj) : NAN,
                     c = json_is_number(cj) ? json_number_value(cj) : NAN;
        const double tol = o.atol + o.rtol * fabs(b), d = fabs(c - b);
        if (!(d <= tol) && w < sizeof(why))
          w += snprintf(why + w, sizeof(why) - w, "%s%s %.6g -> %.6g (|diff| %.3g > %.3g)",
                        w ? "; " : "", CHECKED[i], b, c, d, tol);
      }
    if (why[0]) {
      drifted++;
      printf("DRIFT %-24s %s\n", key, why);
    }
    fprintf(cf, "  <testcase classname=\"hydra.check\" name=\"");
    xml_escape(cf, key);
    fprintf(cf, "\" time=\"0\">");
    if (why[0]) {
      fprintf(cf, "\n    <failure message=\"");
      xml_escape(cf, why);
      fprintf(cf, "\" type=\"drift\">");
      xml_escape(cf, why);
      fprintf(cf, "</failure>\n  ");
    }
    fprintf(cf, "</testcase>\n");
  }
  const char *ckey;
  json_t *cval;
  json_object_foreach(cur, ckey, cval) { /* in this run, not in the baseline */
    if (!json_object_get(bsum, ckey))
      printf("NEW   %-24s not in the baseline (not checked)\n", ckey);
  }
  fclose(cf);
  if (xml) {
    fprintf(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(xml, "<testsuites tests=\"%d\" failures=\"%d\">\n", n, drifted);
    fprintf(xml, "<testsuite name=\"hydra check ");
    xml_escape(xml, o.pos[0]);
    fprintf(xml, "\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"0\">\n", n, drifted);
    fwrite(cases ? cases : "", 1, cases_len, xml);
    fprintf(xml, "</testsuite>\n</testsuites>\n");
    fclose(xml);
  }
  free(cases);
  printf("hydra check: %d of %d components x methods within rtol %g, atol %g (job %s)%s\n",
         n - drifted, n, o.rtol, o.atol, id, drifted ? ": DRIFT" : "");
  json_decref(base);
  json_decref(cur);
  return drifted ? EXIT_FAIL : EXIT_OK;
}
