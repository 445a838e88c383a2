/* hydrad - the hydra daemon: holds models on the backend, accepts ablation
 * jobs over HTTP, runs them unit by unit, stores and streams the rows.
 * Options come from a config file (--config FILE: "key = value" lines, the
 * same keys as the flags without "--") and then from the flags. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "fingerprint.h"
#include "server.h"

static volatile sig_atomic_t got_signal;

static void on_signal(int sig) {
  got_signal = sig;
}

static void usage(FILE *f) {
  fprintf(f, "usage: hydrad --model NAME=PATH [--model ...] [options]\n"
             "  --config FILE            options as \"key = value\" lines (keys as below)\n"
             "  --listen ADDR            IPv4 address to listen on (default 127.0.0.1)\n"
             "  --port N                 (default 8080)\n"
             "  --model NAME=PATH        a model to load: GGUF file or Hugging Face directory\n"
             "  --fingerprint-cache beside|off  each model file's SHA-256 cached in\n"
             "                           FILE.hydra-fingerprint (default beside), or computed\n"
             "                           at every start\n"
             "  --store PATH|URL         job store: a SQLite file (default hydra.db), or\n"
             "                           postgres://USER@HOST/DB shared by several hydrad\n"
             "  --worker-id NAME         this worker's name in the store's leases (default\n"
             "                           HOST:PORT; unique among the workers of a store)\n"
             "  --lease-s S              a claimed unit's lease, renewed every third of it;\n"
             "                           a dead worker's unit is claimed again after it\n"
             "                           (default 30)\n"
             "  --tokens FILE            bearer tokens: \"TOKEN USER ROLE\" lines\n"
             "  --no-auth                no tokens: every request is the admin user \"local\"\n"
             "                           (loopback only)\n"
             "  --tls-cert PEM --tls-key PEM   serve HTTPS\n"
             "  --backend auto|cpu|cuda  (default auto)\n"
             "  --threads N              CPU threads (default: all cores)\n"
             "  --memory-budget MIB      backend memory for activations (default: 80%% of\n"
             "                           the GPU's free memory; CPU: passes of 4096 rows)\n"
             "  --weights-dtype fp32|bf16|native  weights as loaded (default fp32), or\n"
             "                           rounded to bfloat16: half the GPU memory for the\n"
             "                           projections, products still in fp32 (CPU: same\n"
             "                           numbers, no saving); native: a GGUF file's projections,\n"
             "                           embedding and unembedding kept in their blocks (the\n"
             "                           file memory-mapped), decoded into scratch per product\n"
             "  --unit-prompts N         prompts per work unit (default 8 on the CPU, 256 on a\n"
             "                           GPU, whose passes need many rows to be efficient)\n"
             "  --max-jobs-per-user N    queued + running (default 8)\n"
             "  --max-stored-jobs-per-user N  jobs a user keeps in the store, finished ones\n"
             "                           too, until --retention-days (default 10000)\n"
             "  --max-stored-mib-per-user MIB  bytes of a user's stored specs and result\n"
             "                           rows (default 4096)\n"
             "  --max-buffered-mib MIB   request bodies held at once across all connections,\n"
             "                           half of it by one user; beyond, 503 with Retry-After\n"
             "                           (default 256)\n"
             "  --max-variants N         per job (default 10000000)\n"
             "  --max-prompt-tokens N    (default 2048)\n"
             "  --max-body BYTES         request body (default 16777216)\n"
             "  --deadline-s S           default per-job deadline (default 0: none)\n"
             "  --retention-days D       keep finished jobs (default 30)\n"
             "  --connection-limit N     (default 512)  --per-ip-limit N (default 64); at a\n"
             "                           limit the longest idle connection is closed for the\n"
             "                           new one (refused when none is idle)\n"
             "  --connection-timeout-s S idle connections are closed (default 30)\n"
             "  --request-deadline-s S   a request's headers and body must arrive within S\n"
             "                           seconds in all, or the connection is cut (default 30)\n"
             "  --stream-keepalive-s S   waiting result streams are looked at every S seconds:\n"
             "                           SSE gets a keep-alive comment, a gone client is\n"
             "                           dropped (default 5)\n"
             "  --request-workers N      threads that parse, plan and store jobs (default 2);\n"
             "                           one user's requests run on all but one of them\n"
             "  --job-memory-mib MIB     what one job's plan may take (default 256)\n"
             "  --log-level error|info|debug\n");
}

/* One option; 0 ok, -1 bad value, 1 unknown key. */
static int set_option(server_config_t *c, const char *key, const char *val, char *err) {
  char *end = NULL;
#define NUM(field, lo)                                                                             \
  do {                                                                                             \
    double v_ = strtod(val, &end);                                                                 \
    if (end == val || *end || v_ < (lo))                                                           \
      return err_set(err, "--%s: expected a number >= %g, got \"%s\"", key, (double)(lo), val);    \
    c->field = v_;                                                                                 \
  } while (0)
  if (strcmp(key, "listen") == 0)
    snprintf(c->listen, sizeof(c->listen), "%s", val);
  else if (strcmp(key, "port") == 0)
    NUM(port, 0);
  else if (strcmp(key, "store") == 0)
    snprintf(c->store, sizeof(c->store), "%s", val);
  else if (strcmp(key, "worker-id") == 0) {
    if (!*val || strlen(val) >= sizeof(c->worker_id))
      return err_set(err, "--worker-id: 1 to %zu bytes", sizeof(c->worker_id) - 1);
    snprintf(c->worker_id, sizeof(c->worker_id), "%s", val);
  } else if (strcmp(key, "lease-s") == 0) {
    NUM(lease_s, 0.3);
  } else if (strcmp(key, "tokens") == 0)
    snprintf(c->tokens, sizeof(c->tokens), "%s", val);
  else if (strcmp(key, "backend") == 0)
    snprintf(c->backend, sizeof(c->backend), "%s", val);
  else if (strcmp(key, "threads") == 0)
    NUM(threads, 0);
  else if (strcmp(key, "memory-budget") == 0)
    NUM(memory_budget_mib, 0);
  else if (strcmp(key, "weights-dtype") == 0) {
    if ((c->weights_dtype = weights_dtype_parse(val)) < 0)
      return err_set(err, "--weights-dtype: expected fp32, bf16 or native, got \"%s\"", val);
  } else if (strcmp(key, "unit-prompts") == 0)
    NUM(unit_prompts, 0); /* 0: by backend */
  else if (strcmp(key, "max-jobs-per-user") == 0)
    NUM(max_jobs_per_user, 1);
  else if (strcmp(key, "max-stored-jobs-per-user") == 0)
    NUM(max_stored_jobs_per_user, 1);
  else if (strcmp(key, "max-stored-mib-per-user") == 0)
    NUM(max_stored_mib_per_user, 0.001);
  else if (strcmp(key, "max-buffered-mib") == 0)
    NUM(max_buffered_mib, 0.001);
  else if (strcmp(key, "max-variants") == 0)
    NUM(max_variants, 1);
  else if (strcmp(key, "max-prompt-tokens") == 0)
    NUM(max_prompt_tokens, 1);
  else if (strcmp(key, "max-body") == 0)
    NUM(max_body, 1);
  else if (strcmp(key, "deadline-s") == 0)
    NUM(default_deadline_s, 0);
  else if (strcmp(key, "retention-days") == 0) {
    NUM(retention_s, 0);
    c->retention_s *= 86400;
  } else if (strcmp(key, "connection-limit") == 0)
    NUM(connection_limit, 1);
  else if (strcmp(key, "per-ip-limit") == 0)
    NUM(per_ip_limit, 1);
  else if (strcmp(key, "connection-timeout-s") == 0)
    NUM(connection_timeout_s, 1);
  else if (strcmp(key, "request-deadline-s") == 0)
    NUM(request_deadline_s, 0.1);
  else if (strcmp(key, "stream-keepalive-s") == 0)
    NUM(stream_keepalive_s, 0.1);
  else if (strcmp(key, "request-workers") == 0)
    NUM(request_workers, 1);
  else if (strcmp(key, "job-memory-mib") == 0)
    NUM(job_memory_mib, 1);
  else if (strcmp(key, "fingerprint-cache") == 0) {
    if (strcmp(val, "beside") == 0)
      c->fingerprint_cache = FINGERPRINT_CACHE_BESIDE;
    else if (strcmp(val, "off") == 0)
      c->fingerprint_cache = FINGERPRINT_CACHE_OFF;
    else
      return err_set(err, "--fingerprint-cache: expected beside or off, got \"%s\"", val);
  } else if (strcmp(key, "tls-cert") == 0)
    snprintf(c->tls_cert, sizeof(c->tls_cert), "%s", val);
  else if (strcmp(key, "tls-key") == 0)
    snprintf(c->tls_key, sizeof(c->tls_key), "%s", val);
  else if (strcmp(key, "no-auth") == 0)
    c->no_auth = strcmp(val, "false") != 0 && strcmp(val, "0") != 0;
  else if (strcmp(key, "log-level") == 0) {
    if (strcmp(val, "error") == 0)
      c->log_level = 0;
    else if (strcmp(val, "info") == 0)
      c->log_level = 1;
    else if (strcmp(val, "debug") == 0)
      c->log_level = 2;
    else
      return err_set(err, "--log-level: expected error, info or debug");
  } else if (strcmp(key, "model") == 0) {
    const char *eq = strchr(val, '=');
    if (!eq || eq == val || !eq[1] || (size_t)(eq - val) >= sizeof(c->model_names[0]))
      return err_set(err, "--model: expected NAME=PATH, got \"%s\"", val);
    if (c->n_models == SERVER_MAX_MODELS)
      return err_set(err, "--model: at most %d models", SERVER_MAX_MODELS);
    snprintf(c->model_names[c->n_models], sizeof(c->model_names[0]), "%.*s", (int)(eq - val), val);
    for (int i = 0; i < c->n_models; i++) /* a job names its model: one file per name */
      if (strcmp(c->model_names[i], c->model_names[c->n_models]) == 0)
        return err_set(err, "--model: the name \"%s\" is given twice (each model needs its own)",
                       c->model_names[i]);
    snprintf(c->model_paths[c->n_models], sizeof(c->model_paths[0]), "%s", eq + 1);
    c->n_models++;
  } else
    return 1;
#undef NUM
  return 0;
}

static int load_config_file(server_config_t *c, const char *path, char *err) {
  FILE *f = fopen(path, "r");
  if (!f)
    return err_set(err, "--config %s: %s", path, strerror(errno));
  char line[2048];
  int lineno = 0, rc = 0;
  while (!rc && fgets(line, sizeof(line), f)) {
    lineno++;
    char *p = line, *hash = strchr(line, '#');
    if (hash)
      *hash = '\0';
    while (*p == ' ' || *p == '\t')
      p++;
    char *e = p + strlen(p);
    while (e > p && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
      *--e = '\0';
    if (!*p)
      continue;
    char *eq = strchr(p, '=');
    if (!eq) {
      rc = err_set(err, "%s:%d: expected \"key = value\"", path, lineno);
      break;
    }
    char *k = p, *v = eq + 1;
    char *ke = eq;
    while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
      ke--;
    *ke = '\0';
    while (*v == ' ' || *v == '\t')
      v++;
    char sub[HYDRA_ERR_LEN];
    int r = set_option(c, k, v, sub);
    if (r == 1)
      rc = err_set(err, "%s:%d: unknown key \"%s\"", path, lineno, k);
    else if (r < 0)
      rc = err_set(err, "%s:%d: %s", path, lineno, sub);
  }
  fclose(f);
  return rc;
}

static int parse_args(server_config_t *c, int argc, char **argv, char *err) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc && load_config_file(c, argv[i + 1], err))
      return -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strncmp(a, "--", 2) != 0)
      return err_set(err, "unexpected argument \"%s\"", a);
    if (strcmp(a, "--no-auth") == 0) {
      c->no_auth = 1;
      continue;
    }
    if (i + 1 >= argc)
      return err_set(err, "%s needs a value", a);
    const char *v = argv[++i];
    if (strcmp(a, "--config") == 0)
      continue;
    int r = set_option(c, a + 2, v, err);
    if (r == 1)
      return err_set(err, "unknown option %s", a);
    if (r < 0)
      return -1;
  }
  if (c->n_models == 0)
    return err_set(err, "no model: give --model NAME=PATH");
  if (!c->no_auth && !c->tokens[0])
    return err_set(err, "no --tokens file (or --no-auth for a single-user machine)");
  if (c->no_auth && strncmp(c->listen, "127.", 4) != 0)
    return err_set(err, "--no-auth listens on loopback only (--listen 127.0.0.1), not %s",
                   c->listen);
  if (!c->tls_cert[0] != !c->tls_key[0])
    return err_set(err, "HTTPS needs both --tls-cert and --tls-key");
  return 0;
}

int main(int argc, char **argv) {
  static server_t srv;
  server_t *s = &srv;
  server_config_t *c = &s->cfg;
  *c = (server_config_t){.listen = "127.0.0.1",
                         .port = 8080,
                         .store = "hydra.db",
                         .backend = "auto",
                         .log_level = 1,
                         .unit_prompts = 0, /* 0: by backend, below */
                         .max_jobs_per_user = 8,
                         .max_stored_jobs_per_user = 10000,
                         .max_stored_mib_per_user = 4096,
                         .max_buffered_mib = 256,
                         .max_variants = 10000000,
                         .max_prompt_tokens = 2048,
                         .max_body = 16 << 20,
                         .retention_s = 30 * 86400.0,
                         .connection_limit = 512,
                         .per_ip_limit = 64,
                         .connection_timeout_s = 30,
                         .request_workers = 2,
                         .request_deadline_s = 30,
                         .stream_keepalive_s = 5,
                         .job_memory_mib = 256,
                         .lease_s = 30};
  char err[HYDRA_ERR_LEN] = "";
  if (parse_args(c, argc, argv, err) != 0) {
    fprintf(stderr, "hydrad: %s\n", err);
    usage(stderr);
    return 2;
  }
  if (server_init_locks(s) != 0) {
    fprintf(stderr, "hydrad: cannot make the scheduler's locks\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
#ifdef M_MMAP_THRESHOLD
  /* A request worker builds a plan to check a job and frees it (the queued
   * job keeps its document alone). glibc raises its mmap threshold to the
   * size of each large block freed, so later plans came from the arenas and
   * stayed there after their free: about 27 MiB per queued job of 0.25 MB
   * (400 "next" x "all" prompts of 127 ids), 2.7 MiB with the threshold
   * fixed. Blocks of 128 KiB and more are mapped, and unmapped when freed. */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write (EFBIG), never the daemon */
  int rc = 1;
  if (!c->no_auth && !(s->auth = auth_load(c->tokens, err)))
    goto fail;
  if (!(s->store = store_open(c->store, STORE_EXCLUSIVE, err)))
    goto fail;
  if (!c->worker_id[0]) {
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(c->worker_id, sizeof(c->worker_id), "%s:%d", host, c->port);
  }
  if (!(s->backend = backend_create(c->backend, c->threads, err)))
    goto fail;
  if (c->unit_prompts == 0) /* a GPU pass wants thousands of rows; a CPU unit stays small */
    c->unit_prompts = s->backend->host_memory ? 8 : 256;
  for (int i = 0; i < c->n_models; i++) {
    server_model_t *m = &s->models[i];
    snprintf(m->name, sizeof(m->name), "%s", c->model_names[i]);
    checkpoint_t ck;
    const unsigned native = c->weights_dtype == WEIGHTS_NATIVE ? CHECKPOINT_NATIVE : 0;
    if (checkpoint_open(c->model_paths[i], CHECKPOINT_MODEL | CHECKPOINT_TOKENIZER | native, &ck,
                        err))
      goto fail;
    m->model = ck.model;
    m->tok = ck.tokenizer;
    s->n_models++; /* counted from here: the cleanup frees what is loaded */
    int n_hashed = 0;
    const double t_hash = clock_monotonic();
    if (fingerprint_model(c->model_paths[i], m->model, m->tok, c->fingerprint_cache, m->fingerprint,
                          sizeof(m->fingerprint), &n_hashed, err))
      goto fail;
    server_log(s, 1, "model %s: fingerprint %s (%s)", m->name, m->fingerprint,
               n_hashed ? "computed" : "cached");
    if (n_hashed)
      server_log(s, 2, "model %s: %d files hashed in %.2f s", m->name, n_hashed,
                 clock_monotonic() - t_hash);
    if (c->weights_dtype == WEIGHTS_BF16)
      model_round_bf16(m->model);
    if (!m->tok)
      server_log(s, 1, "model %s: no tokenizer (%s): jobs must give token ids", m->name,
                 ck.tokenizer_err);
    if (!(m->engine = engine_create(m->model, s->backend, err)))
      goto fail;
    engine_set_memory_budget(m->engine, (size_t)(c->memory_budget_mib * 1048576.0));
    uint64_t held, mapped;
    model_memory(m->model, &held, &mapped);
    server_log(s, 1,
               "model %s loaded from %s (%s, %d layers, tensor types %s, weights %s: %.1f MiB "
               "held, %.1f MiB used in place from the mapped file)",
               m->name, c->model_paths[i], m->model->cfg.family, m->model->cfg.n_layers,
               m->model->tensor_types, weights_dtype_name(m->model->weights_dtype),
               (double)held / 1048576.0, (double)mapped / 1048576.0);
  }
  /* Caught from before the first request is answered: a SIGTERM while the
   * scheduler starts (a client saw health answer) drains, never kills. */
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* HTTP first: a second hydrad started by mistake on a busy port stops here,
   * before it frees the leases of the worker already running as HOST:PORT. */
  if (http_start(s, err) != 0 || scheduler_start(s, err) != 0)
    goto fail;
  server_log(s, 1, "listening on %s:%d, backend %s, store %s, worker %s", c->listen, c->port,
             s->backend->ops->name, store_name(s->store), c->worker_id);
  while (!got_signal)
    pause();
  /* Drain: no new job, no new unit; the running unit finishes and is stored. */
  server_log(s, 1, "signal %d: draining", (int)got_signal);
  pthread_mutex_lock(&s->lock);
  s->draining = 1;
  pthread_cond_broadcast(&s->wake);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->worker, NULL);
  s->worker = 0;
  http_stop(s);
  rc = 0;
fail:
  if (rc)
    fprintf(stderr, "hydrad: %s\n", err);
  http_stop(s); /* safe when stopped or never started */
  if (s->store) /* joins what still runs, frees this worker's leases and the queue */
    scheduler_stop(s);
  for (int i = 0; i < s->n_models; i++) {
    engine_destroy(s->models[i].engine);
    tokenizer_free(s->models[i].tok);
    model_free(s->models[i].model);
  }
  scheduler_forget_unstored(s);
  backend_destroy(s->backend);
  store_close(s->store);
  auth_free(s->auth);
  return rc;
}
