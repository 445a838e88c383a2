/* server.h - what hydrad's modules share: the configuration, the loaded
 * models, the scheduler's view of a job, and the server context passed
 * through libmicrohttpd's cls pointers (no globals). */
#ifndef HYDRA_SERVER_H
#define HYDRA_SERVER_H

#include <pthread.h>
#include <stdint.h>

#include "auth.h"
#include "backend.h"
#include "engine.h"
#include "fingerprint.h"
#include "model.h"
#include "notify.h"
#include "plan.h"
#include "store.h"
#include "tokenizer.h"

#define SERVER_MAX_MODELS 16

typedef struct {
  char listen[64];
  int port;
  char store[1024];
  char tokens[1024];
  char backend[16];
  int threads;
  double memory_budget_mib; /* 0: from the backend */
  int weights_dtype; /* --weights-dtype (weights_dtype_t): bf16: models rounded, projections bf16
                        on the GPU; native: GGUF projections kept in their blocks */
  int log_level;     /* 0 error, 1 info, 2 debug */
  int n_models;
  char model_names[SERVER_MAX_MODELS][64];
  char model_paths[SERVER_MAX_MODELS][1024];
  int unit_prompts;               /* prompts per work unit */
  int max_jobs_per_user;          /* queued + running */
  long max_stored_jobs_per_user;  /* jobs kept in the store, any state */
  double max_stored_mib_per_user; /* their specs and rows */
  double max_buffered_mib;        /* request bodies held across all connections */
  long max_variants;              /* per job */
  int max_prompt_tokens;          /* per prompt */
  long max_body;                  /* request body bytes */
  double default_deadline_s;      /* 0: none */
  double retention_s;             /* finished jobs kept this long */
  int connection_limit;
  int per_ip_limit;
  int connection_timeout_s;
  int request_workers;       /* threads that parse, plan and store requests */
  double request_deadline_s; /* a request's headers and body, in total */
  double stream_keepalive_s; /* waiting result streams are looked at this often */
  double job_memory_mib;     /* what a job's plan may take */
  int no_auth; /* every request is the admin "local" (a single-user box; loopback only) */
  char tls_cert[1024], tls_key[1024]; /* PEM files: HTTPS when both are given */
  char worker_id[STORE_WORKER_LEN];   /* this worker's name in the store's leases */
  double lease_s;                     /* a claimed unit's lease, renewed every third of it */
  fingerprint_cache_t fingerprint_cache;
} server_config_t;

typedef struct {
  char name[64];
  model_t *model;
  tokenizer_t *tok; /* NULL when the model brings none */
  engine_t *engine;
  char fingerprint[STORE_FINGERPRINT_LEN]; /* fingerprint.h: what jobs for it pin */
  size_t kept_bytes; /* backend memory holding queued jobs' clean sources (under the lock) */
} server_model_t;

/* A job the scheduler knows: queued or running. */
typedef struct sched_job {
  char id[STORE_ID_LEN];
  char user[STORE_USER_LEN];
  int model;        /* index into server_t.models */
  job_spec_t *spec; /* its document, parsed once: all a queued job holds */
  plan_t plan;      /* built at its first unit, kept until it ends */
  int planned;
  int n_units;
  uint64_t source_key; /* unique to this queue entry: its units share the engine's
                          store of clean sources (engine_job_t.source_key) */
  int started;         /* header stored */
  double retry_at;     /* monotonic seconds: nothing to claim before then */
  double known_since;  /* monotonic seconds: when this process learnt of it */
  volatile int cancel; /* set by DELETE */
  double deadline;     /* unix seconds; 0: none */
  double started_at;
  int64_t variants_done; /* live, for progress */
  struct sched_job *next;
} sched_job_t;

typedef struct server {
  server_config_t cfg;
  auth_t *auth;
  store_t *store;
  backend_t *backend;
  server_model_t models[SERVER_MAX_MODELS];
  int n_models;

  /* scheduler */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_t worker, keeper;
  int keeper_started;
  volatile int keeper_stop;
  sched_job_t *jobs;    /* queued and running, oldest first */
  sched_job_t *running; /* the job whose unit runs now, or NULL */
  int retain_pending;   /* a queued job was dropped: the worker frees its kept sources */
  int claimed_unit;     /* its claimed unit (n_units: the summary) */
  /* jobs that ended while the store could not record it (a full or failing
   * disk): their end, kept in memory so that status and streams tell it */
  struct unstored *unstored;
  /* jobs this worker leaves waiting (their model is not held here), each
   * noted once in the store; pruned when they leave the store's queue */
  struct noted *noted;
  char last_user[STORE_USER_LEN];
  volatile int draining, stopping;
  char running_job[STORE_ID_LEN];

  /* commits of rows, heard by http.c; the result streams waiting for rows
   * (http.c's, under the notifier's lock) */
  notify_t notify;
  struct stream *waiting;

  /* metrics */
  int64_t rows_total, variants_total_done, requests_total;
  double rate_ewma; /* variants per second */
  struct MHD_Daemon *mhd;
  struct http *http; /* http.c's own state */
} server_t;

/* scheduler.c */
/* Starts the worker (runs units) and the keeper (renews the running unit's
 * lease; on a shared store also learns of jobs submitted to other nodes and
 * wakes streams for rows they commit). */
int scheduler_start(server_t *s, char *err);
/* Stops both threads; the running unit stops at its next pass (it stays
 * pending), the worker's leases are released. */
void scheduler_stop(server_t *s);
/* Adds a stored job (state queued or running) to the queue. Takes spec
 * (its parsed document); its plan is built when its first unit runs, so a
 * queued job holds its document alone. A job already queued here is left
 * as it is. Returns 0, -1 with err (the
 * job cannot run), or SCHEDULER_OTHER_WEIGHTS with err when the job asks
 * for the weights dtype this worker does not hold (on a shared store,
 * another worker may hold it). */
#define SCHEDULER_OTHER_WEIGHTS (-2)
/* ... or SCHEDULER_OTHER_MODEL with err when the job pins another model
 * fingerprint than the one this worker holds under its model's name. */
#define SCHEDULER_OTHER_MODEL (-3)
int scheduler_enqueue(server_t *s, const store_job_t *job, job_spec_t *spec, int model, char *err);
/* Queues the store's queued and running jobs this process does not know:
 * at start (a restart resumes them), after a retry and, on a shared store,
 * every poll. A job whose model is not loaded here, or is loaded from
 * another file (another fingerprint), is left waiting, never failed: its
 * note in the store says why (once per job and process), and a worker that
 * holds its model runs it, on a shared store or after a restart. */
void scheduler_discover(server_t *s);
/* Marks a queued/running job cancelled; 0 if it was known here. */
int scheduler_cancel(server_t *s, const char *id);
/* Jobs of a user queued or running (for the concurrency limit). */
int scheduler_user_jobs(server_t *s, const char *user);
/* Live variants done of a running job, or -1. */
int64_t scheduler_progress(server_t *s, const char *id);
/* Where a job stands in this worker's queue (scheduler_queue). */
typedef struct {
  int known;    /* 1 when this worker holds the job (queued or running here) */
  int running;  /* 1 when its unit runs now */
  int position; /* jobs ahead of it in this worker's queue, oldest first (0: none) */
  /* the job whose unit runs now, when another: its id, user, unit and units */
  char other_id[STORE_ID_LEN];
  char other_user[STORE_USER_LEN];
  int other_unit, other_n_units;
} sched_place_t;
void scheduler_queue(server_t *s, const char *id, sched_place_t *place);
/* A job whose end (state, why) the store failed to record; 1 if known. */
int scheduler_unstored(server_t *s, const char *id, store_state_t *state, char *why, size_t len);
/* Frees that memory, and the list of jobs left waiting (at exit, the
 * worker stopped). */
void scheduler_forget_unstored(server_t *s);
/* Forgets one such job (its retry goes on from the store); 1 if known. */
int scheduler_drop_unstored(server_t *s, const char *id);

/* http.c */
int http_start(server_t *s, char *err);
void http_stop(server_t *s);

/* openapi.c */
extern const char *const openapi_document;

/* server.c */
/* Makes the lock, the worker's wake condition (on the monotonic clock) and
 * the row notifier. */
int server_init_locks(server_t *s);

/* hydrad.c */
void server_log(const server_t *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int server_find_model(const server_t *s, const char *name);
/* The loaded models' names, ", "-separated, into buf (cut with "..." when
 * it does not fit); returns buf. For "no model named X" answers. */
const char *server_model_names(const server_t *s, char *buf, size_t n);

#endif
