/* fuzz_http - hydrad's request handling through the real handler: a server
 * (libmicrohttpd, the scheduler, an SQLite store in a scratch directory, the
 * tiny GPT-2 of tests/data on the CPU, one bearer token) runs in this
 * process; each input is sent as raw bytes on a fresh loopback connection
 * (request line, headers, query strings, bodies, several requests), and the
 * answer is read until the server closes or a short timeout. Every 16th
 * input the server must still answer GET /v1/health with 200; ASan and
 * UBSan watch every thread. HYDRA_ROOT names the repository. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "backend.h"
#include "checkpoint.h"
#include "engine.h"
#include "error.h"
#include "server.h"
#include "store.h"
#include "tokenizer.h"

static server_t S;
static int port;

static void die(const char *what, const char *err) {
  fprintf(stderr, "fuzz_http: %s: %s\n", what, err);
  abort();
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t n = sizeof(a);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
      getsockname(fd, (struct sockaddr *)&a, &n))
    die("port", "no free loopback port");
  close(fd);
  return ntohs(a.sin_port);
}

/* Sends data on a new connection and reads the answer (up to timeout_ms of
 * silence). Returns the bytes read into buf (NUL-terminated), -1 if the
 * connection could not be made. */
static long exchange(const uint8_t *data, size_t size, char *buf, size_t cap, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  size_t sent = 0;
  while (sent < size) {
    ssize_t w = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (w <= 0)
      break;
    sent += (size_t)w;
  }
  shutdown(fd, SHUT_WR);
  size_t got = 0;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  while (got + 1 < cap && poll(&p, 1, timeout_ms) > 0) {
    ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  buf[got] = '\0';
  close(fd);
  return (long)got;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  signal(SIGPIPE, SIG_IGN);
  const char *root = getenv("HYDRA_ROOT");
  char dir[] = "/tmp/hydra-fuzz-http-XXXXXX", path[1024], err[HYDRA_ERR_LEN];
  if (!mkdtemp(dir))
    die("scratch", "mkdtemp failed");
  snprintf(path, sizeof(path), "%s/tokens", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    die("tokens", path);
  fprintf(f, "fuzz-token-0123456789abcdef alice user\nfuzz-admin-0123456789abcdef root admin\n");
  fclose(f);
  port = free_port();
  server_config_t *c = &S.cfg;
  snprintf(c->listen, sizeof(c->listen), "127.0.0.1");
  c->port = port;
  snprintf(c->store, sizeof(c->store), "%s/hydra.db", dir);
  snprintf(c->tokens, sizeof(c->tokens), "%s", path);
  snprintf(c->backend, sizeof(c->backend), "cpu");
  c->threads = 1;
  c->unit_prompts = 8;
  c->max_jobs_per_user = 8;
  c->max_stored_jobs_per_user = 100000;
  c->max_stored_mib_per_user = 1024;
  c->max_buffered_mib = 64;
  c->max_variants = 20000;
  c->max_prompt_tokens = 64;
  c->max_body = 1 << 20;
  c->retention_s = 86400;
  c->connection_limit = 64;
  c->per_ip_limit = 64;
  c->connection_timeout_s = 2;
  c->request_workers = 1;
  c->request_deadline_s = 5;
  c->stream_keepalive_s = 1;
  c->job_memory_mib = 64;
  snprintf(c->worker_id, sizeof(c->worker_id), "fuzz");
  c->lease_s = 30;
  if (server_init_locks(&S) != 0)
    die("setup", "locks");
  snprintf(path, sizeof(path), "%s/tests/data/tiny-gpt2", root ? root : ".");
  server_model_t *m = &S.models[0];
  snprintf(m->name, sizeof(m->name), "tiny");
  if (!(S.auth = auth_load(c->tokens, err)) || !(S.store = store_open(c->store, 0, err)) ||
      !(S.backend = backend_create("cpu", 1, err)) || !(m->model = model_load(path, err)) ||
      !(m->tok = tokenizer_load(path, err)) ||
      !(m->engine = engine_create(m->model, S.backend, err)))
    die("setup (set HYDRA_ROOT)", err);
  S.n_models = 1;
  if (scheduler_start(&S, err) != 0 || http_start(&S, err) != 0)
    die("start", err);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char buf[1 << 16];
  static unsigned long n;
  exchange(data, size, buf, sizeof(buf), 50);
  if (++n % 16)
    return 0; /* health checked on every 16th input (and at the end of a run's inputs) */
  static const char health[] = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (int attempt = 0; attempt < 50; attempt++) { /* the daemon must still answer */
    if (exchange((const uint8_t *)health, sizeof(health) - 1, buf, sizeof(buf), 2000) > 0 &&
        strncmp(buf, "HTTP/1.1 200", 12) == 0)
      return 0;
    usleep(20000);
  }
  fprintf(stderr, "fuzz_http: the daemon no longer answers /v1/health: %.200s\n", buf);
  abort();
}
