/* http.c - hydrad's REST API on libmicrohttpd: one internal polling thread
 * (epoll) that only reads requests and writes answers. A request is
 * authenticated on the first call of the access handler (before any body
 * byte is kept); a job to submit or a text to tokenize goes, once its body
 * is complete, to the request workers (requests.h) while its connection is
 * suspended. Result streams are suspended between commits, and resumed
 * every few seconds (keep-alives, dead peers dropped). A timer cuts off
 * connections whose request has not arrived whole within its deadline.
 * Routes are one table, http_routes[], each with its handler: the
 * dispatcher, the 405 answers and the OpenAPI test read it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "clock.h"
#include "http.h"
#include "job_view.h"
#include "requests.h"
#include "results.h"
#include "row_csv.h"
#include "server.h"
#include "utf8.h"

/* Seconds a 429 asks the client to wait before it tries again. */
#define RETRY_AFTER_S "5"

/* A /tokenize body, and the tokens it may make (the answer lists each). */
#define TOKENIZE_MAX_BODY (1L << 20)
#define TOKENIZE_MAX_TOKENS 65536

/* The HTTP layer's own state: the request workers, the connections with
 * their request deadlines, the timer. */
typedef struct conn_state {
  int fd;
  uint32_t ip;       /* the peer's IPv4 address (network order) */
  double deadline;   /* monotonic seconds by which the request must be read; 0: none now */
  double idle_since; /* monotonic: no request on it since then (connected, or its last answer
                        sent); 0: a request is under way (its line read) or answered */
  int closing;       /* shut to make room (on_accept): counted no more */
  struct conn_state *prev, *next;
} conn_state_t;

/* Connections libmicrohttpd may hold beyond --connection-limit: those shut
 * to make room (on_accept) until it has closed them. */
#define CLOSING_SLACK 64

/* Request body bytes one user holds (or announced) now. */
#define BUFFER_USERS 128
typedef struct {
  char user[STORE_USER_LEN];
  size_t bytes;
} user_bytes_t;

struct http {
  requests_t *requests;
  size_t buffered; /* request body bytes held (or announced) now; the HTTP thread's alone */
  user_bytes_t by_user[BUFFER_USERS]; /* the same per user (bytes 0: a free entry) */
  pthread_mutex_t lock;               /* conns */
  conn_state_t *conns;
  pthread_t timer;
  int timer_started;
  volatile int timer_stop;
};

/* ------------------------------------------------------------ requests -- */

/* Bytes of a body over its limit read and dropped before the connection is
 * closed without an answer. */
#define DROP_ALLOWANCE ((size_t)1 << 20)

struct http_request {
  buffer_t body; /* collected across calls of the access handler */
  long max_body; /* this route's */
  int too_large;
  size_t dropped;      /* bytes read past max_body and dropped */
  size_t counted;      /* bytes of it in http.buffered */
  int over_buffer_cap; /* the bodies of all connections would pass --max-buffered-mib */
  double t0;
  int status;
  char user[STORE_USER_LEN]; /* "" on a public route */
  role_t role;
  char method[16];
  char path[256];
  int head;  /* HEAD on a GET route: answered as GET, without a body */
  int close; /* answered before its body is read: the connection closes */
  /* Handed to a request worker (the connection suspended meanwhile). The
   * worker fills the answer, sets answered and resumes the connection. */
  server_t *s;
  struct MHD_Connection *conn;
  int model;                 /* /tokenize: the model */
  char job_id[STORE_ID_LEN]; /* /v1/jobs/{id}/retry: the job */
  int wait_stream;           /* POST /v1/jobs?wait=stream */
  int queued;
  int answered;
  int answer_status;
  char *answer;                  /* JSON, malloc'd */
  char answer_job[STORE_ID_LEN]; /* wait=stream: the job whose rows to stream */
};
typedef struct http_request request_t;

typedef enum { STREAM_NDJSON, STREAM_SSE, STREAM_CSV } stream_format_t;

struct stream {
  server_t *s;
  struct MHD_Connection *conn;
  char job_id[STORE_ID_LEN];
  int64_t next_seq;
  stream_format_t format;
  int finished;
  int ended_row;   /* the closing row of a failed or cancelled job was sent */
  int64_t corrupt; /* the sequence number of a stored row that is not JSON; -1: none */
  buffer_t out;    /* formatted rows; out.data[sent ..) not yet sent */
  size_t sent;
  int fd;           /* the connection's socket, to see that the peer left */
  double last_sent; /* monotonic: the last bytes handed to libmicrohttpd */
  struct stream *next;
};
typedef struct stream stream_t;

static enum MHD_Result respond(struct MHD_Connection *c, request_t *rq, int status,
                               const char *type, const char *body, size_t len) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  if (status == 401) /* RFC 9110 11.6.1: a 401 names the scheme it wants */
    MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"hydra\"");
  if (status == 429 || status == 503) /* RFC 6585 4, RFC 9110 15.6.4: when to ask again */
    MHD_add_response_header(r, "Retry-After", RETRY_AFTER_S);
  if (rq && rq->close) /* the body is not read (a request we refuse to frame) */
    MHD_add_response_header(r, "Connection", "close");
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  if (rq)
    rq->status = status;
  return ok;
}

/* The dashboard's files (dashboard_assets.c, generated from server/dashboard):
 * public like /v1/health (the page asks for the token and keeps it in the
 * tab's session), served with a policy that allows only this origin. */
extern const unsigned char dashboard_index_html[], dashboard_dashboard_js[],
    dashboard_dashboard_css[];
extern const size_t dashboard_index_html_len, dashboard_dashboard_js_len,
    dashboard_dashboard_css_len;

static enum MHD_Result respond_asset(struct MHD_Connection *c, request_t *rq, const char *type,
                                     const unsigned char *body, size_t len) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Content-Security-Policy",
                          "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
                          "data:; frame-ancestors 'none'");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  enum MHD_Result ok = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  rq->status = 200;
  return ok;
}

static const char ERROR_500[] =
    "{\"error\":{\"code\":500,\"message\":\"the answer could not be "
    "made (a corrupt store record, or out of memory)\",\"field\":\"\"}}";

/* v (taken); a JSON 500 when v is NULL (json_pack refused a stored string that
 * is not UTF-8, or memory ran out): never a 200 with a broken body. */
static enum MHD_Result respond_json(struct MHD_Connection *c, request_t *rq, int status,
                                    json_t *v) {
  char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
  json_decref(v);
  if (!s)
    return respond(c, rq, 500, "application/json", ERROR_500, sizeof ERROR_500 - 1);
  enum MHD_Result ok = respond(c, rq, status, "application/json", s, strlen(s));
  free(s);
  return ok;
}

/* {"error": {"code", "message", "field"}} */
static json_t *error_json(int status, const char *field, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  if (!utf8_valid(msg, strlen(msg), NULL))
    snprintf(msg, sizeof(msg), "(message not valid UTF-8)");
  json_t *e = json_object();
  json_object_set_new(e, "code", json_integer(status));
  json_object_set_new(e, "message", json_string(msg));
  json_object_set_new(e, "field",
                      json_string(field && utf8_valid(field, strlen(field), NULL) ? field : ""));
  return json_pack("{s:o}", "error", e);
}

static enum MHD_Result respond_error(struct MHD_Connection *c, request_t *rq, int status,
                                     const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static enum MHD_Result respond_error(struct MHD_Connection *c, request_t *rq, int status,
                                     const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  json_t *v = error_json(status, field, fmt, ap);
  va_end(ap);
  return respond_json(c, rq, status, v);
}

/* A request worker's answer (sent by the HTTP thread, deliver). Returns 0. */
static int answer_json(request_t *rq, int status, json_t *v) {
  rq->answer = v ? json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
  json_decref(v);
  rq->answer_status = status;
  return 0;
}

static int answer_error(request_t *rq, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int answer_error(request_t *rq, int status, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  json_t *v = error_json(status, field, fmt, ap);
  va_end(ap);
  return answer_json(rq, status, v);
}

/* The caller's user and role, from "Authorization: Bearer TOKEN" (spaces or
 * tabs around the token are not part of it, RFC 9110's OWS). */
static const char *authenticate(server_t *s, struct MHD_Connection *c, role_t *role) {
  if (s->cfg.no_auth) {
    *role = ROLE_ADMIN;
    return "local";
  }
  *role = ROLE_NONE;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return NULL;
  const char *t = h + 7;
  while (*t == ' ' || *t == '\t')
    t++;
  size_t n = strlen(t);
  while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
    n--;
  char token[512];
  if (n == 0 || n >= sizeof(token))
    return NULL;
  memcpy(token, t, n);
  token[n] = '\0';
  return auth_lookup(s->auth, token, role);
}

/* ------------------------------------------------------------- streams -- */

static int format_row(void *ctx, int64_t seq, const char *text, size_t len) {
  stream_t *st = ctx;
  json_t *row = json_loadb(text, len, JSON_ALLOW_NUL, NULL); /* tokens may hold U+0000 */
  if (!json_is_object(row)) { /* a corrupt store: stop before it (stream_fill) */
    json_decref(row);
    st->corrupt = seq;
    return 1;
  }
  st->next_seq = seq + 1;
  if (st->format != STREAM_CSV)
    json_decref(row);
  if (st->format == STREAM_NDJSON)
    return buffer_append(&st->out, text, len) || buffer_append(&st->out, "\n", 1);
  if (st->format == STREAM_SSE)
    return buffer_appendf(&st->out, "id: %lld\ndata: ", (long long)seq) ||
           buffer_append(&st->out, text, len) || buffer_append(&st->out, "\n\n", 2);
  const int rc = row_csv(row, &st->out);
  json_decref(row);
  return rc;
}

/* Bytes of formatted rows a stream reads from the store at a time: the
 * HTTP thread parses each row it streams (a corrupt store shows), and
 * /v1/health waits meanwhile (256 rows of a large job's, 10 ms and more on
 * a loaded machine). */
#define STREAM_BATCH_BYTES (64 * 1024)

/* format_row, stopping the read once a batch is formatted. */
static int stream_row(void *ctx, int64_t seq, const char *text, size_t len) {
  stream_t *st = ctx;
  const int rc = format_row(ctx, seq, text, len);
  return rc ? rc : st->out.len >= STREAM_BATCH_BYTES;
}

/* A failed or cancelled job stores no end row (its rows stop where it
 * stopped): its streams close with one made here, not stored, so that a
 * reader following the job learns how it ended without asking for its
 * status: {"type": "end", "state", "error", "rows"}, rows counting it. */
static int closing_row(stream_t *st, store_state_t state, const char *why) {
  store_job_t job;
  char err[HYDRA_ERR_LEN];
  if (store_job_get(st->s->store, st->job_id, &job, err) != 0)
    return -1;
  json_t *row = json_pack("{s:s, s:s, s:s, s:I}", "type", "end", "state", store_state_name(state),
                          "error", why ? why : job.error, "rows", (json_int_t)(job.rows + 1));
  char *text = row ? json_dumps(row, JSON_COMPACT) : NULL;
  const int rc = text ? format_row(st, job.rows, text, strlen(text)) : -1;
  free(text);
  json_decref(row);
  return rc;
}

/* Suspends a stream until the next commit (under the notifier's lock, so
 * resume_streams sees it); not while the daemon stops. */
static void park_stream(void *cls) {
  stream_t *st = cls;
  server_t *s = st->s;
  if (s->stopping)
    return;
  st->next = s->waiting;
  s->waiting = st;
  MHD_suspend_connection(st->conn);
}

/* Whether the client closed its end (a stream waiting for rows reads
 * nothing, so libmicrohttpd would not see it go). */
static int peer_gone(const stream_t *st) {
  char b;
  if (st->fd < 0)
    return 0;
  const ssize_t n = recv(st->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* A stored row that is not JSON ends the stream: NDJSON and SSE get a last
 * row saying so (every line stays JSON), then the response is cut (no
 * clean end), CSV is cut. */
static void corrupt_row(stream_t *st) {
  st->finished = 1;
  if (st->format == STREAM_CSV)
    return;
  char row[200];
  snprintf(row, sizeof row,
           "{\"type\":\"error\",\"error\":{\"code\":500,\"message\":\"stored row %lld of "
           "this job is corrupt\",\"field\":\"\"}}",
           (long long)st->corrupt);
  format_row(st, st->corrupt, row, strlen(row));
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max) {
  stream_t *st = cls;
  server_t *s = st->s;
  (void)pos;
  if (st->sent == st->out.len) {
    if (st->finished)
      return st->corrupt >= 0 ? MHD_CONTENT_READER_END_WITH_ERROR
                              : MHD_CONTENT_READER_END_OF_STREAM;
    st->sent = 0;
    buffer_clear(&st->out);
    const uint64_t gen = notify_generation(&s->notify);
    char err[HYDRA_ERR_LEN];
    size_t n = 0;
    store_state_t state = STORE_QUEUED;
    if (store_rows_read(s->store, st->job_id, st->next_seq, 256, stream_row, st, &n, &state, err) !=
        0)
      return MHD_CONTENT_READER_END_WITH_ERROR;
    if (st->corrupt >= 0) {
      const int64_t bad = st->corrupt;
      corrupt_row(st);
      st->corrupt = bad;
      if (st->out.len == 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (n == 0) {
      store_state_t ended = state;
      const int stored = state == STORE_DONE || state == STORE_FAILED || state == STORE_CANCELLED;
      if (stored || scheduler_unstored(s, st->job_id, &ended, err, sizeof(err))) {
        if ((ended == STORE_FAILED || ended == STORE_CANCELLED) && !st->ended_row &&
            st->format != STREAM_CSV) {
          st->ended_row = 1;
          if (closing_row(st, ended, stored ? NULL : err) == 0 && st->out.len > 0)
            return stream_reader(cls, pos, out, max); /* sends it; then the end */
        }
        return MHD_CONTENT_READER_END_OF_STREAM;
      }
      if (s->stopping) /* shutting down: a clean end; the client resumes with ?after= */
        return MHD_CONTENT_READER_END_OF_STREAM;
      if (peer_gone(st)) /* an abandoned stream frees its slot */
        return MHD_CONTENT_READER_END_WITH_ERROR;
      /* SSE has comments: a quiet stream sends one now and then, so that
       * proxies keep it and a dead peer shows (NDJSON and CSV have none). */
      if (st->format == STREAM_SSE &&
          clock_monotonic() - st->last_sent >= s->cfg.stream_keepalive_s &&
          buffer_append(&st->out, ": keep-alive\n\n", 14) == 0)
        return stream_reader(cls, pos, out, max);
      /* Nothing yet: wait for the next commit, unless one came meanwhile. */
      notify_park(&s->notify, gen, park_stream, st);
      return 0;
    }
  }
  size_t n = st->out.len - st->sent < max ? st->out.len - st->sent : max;
  memcpy(out, st->out.data + st->sent, n);
  st->sent += n;
  st->last_sent = clock_monotonic();
  return (ssize_t)n;
}

/* A stream is freed only after it was resumed (out of the waiting list). */
static void stream_free(void *cls) {
  stream_t *st = cls;
  buffer_free(&st->out);
  free(st);
}

/* The notifier's listener: rows were committed, every waiting stream reads
 * again (under the notifier's lock). */
static void resume_streams(void *cls) {
  server_t *s = cls;
  for (stream_t *st = s->waiting; st;) {
    stream_t *next = st->next;
    st->next = NULL;
    MHD_resume_connection(st->conn);
    st = next;
  }
  s->waiting = NULL;
}

static enum MHD_Result respond_stream(server_t *s, struct MHD_Connection *c, request_t *rq,
                                      const char *job_id, int64_t after, int status) {
  stream_t *st = calloc(1, sizeof(*st));
  if (!st)
    return respond_error(c, rq, 500, "", "out of memory");
  st->s = s;
  st->conn = c;
  st->next_seq = after;
  st->corrupt = -1;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  st->fd = ci ? ci->connect_fd : -1;
  st->last_sent = clock_monotonic();
  snprintf(st->job_id, sizeof(st->job_id), "%s", job_id);
  const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
  const char *fmt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
  st->format = fmt && strcmp(fmt, "csv") == 0                  ? STREAM_CSV
               : accept && strstr(accept, "text/event-stream") ? STREAM_SSE
                                                               : STREAM_NDJSON;
  const char *type = st->format == STREAM_CSV   ? "text/csv"
                     : st->format == STREAM_SSE ? "text/event-stream"
                                                : "application/x-ndjson";
  /* The first rows are read now: a corrupt one is a JSON 500, not a 200
   * that breaks off (one further on ends the stream, corrupt_row). */
  char err[HYDRA_ERR_LEN];
  if (store_rows_read(s->store, st->job_id, st->next_seq, 256, stream_row, st, NULL, NULL, err) !=
      0) {
    stream_free(st);
    return respond_error(c, rq, 503, "", "the job store failed: %s", err);
  }
  if (st->corrupt >= 0) {
    const long long bad = (long long)st->corrupt;
    stream_free(st);
    server_log(s, 0, "job %s: stored row %lld is not JSON", job_id, bad);
    return respond_error(c, rq, 500, "", "stored row %lld of this job is corrupt", bad);
  }
  if (rq->head) { /* the same headers, no body */
    stream_free(st);
    return respond(c, rq, status, type, "", 0);
  }
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024,
                                                             stream_reader, st, stream_free);
  if (!r) {
    stream_free(st);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-cache");
  /* the job's id, for POST /v1/jobs?wait=stream (resume with ?after=N) */
  char where[96];
  snprintf(where, sizeof(where), "/v1/jobs/%s/results", st->job_id);
  MHD_add_response_header(r, "X-Hydra-Job", st->job_id);
  MHD_add_response_header(r, "Content-Location", where);
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  rq->status = status;
  return ok;
}

/* -------------------------------------------------------------- routes -- */

static json_t *model_json(const server_model_t *m, int detail) {
  const model_config_t *c = &m->model->cfg;
  json_t *o =
      json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s}", "id", m->name, "family", c->family,
                "n_layers", c->n_layers, "d_model", c->d_model, "n_heads", c->n_heads, "n_kv_heads",
                c->n_kv_heads, "d_mlp", c->d_mlp, "vocab_size", c->vocab_size, "context",
                c->max_positions, "tokenizer", m->tok ? tokenizer_kind(m->tok) : "none");
  json_object_set_new(o, "weights_dtype", json_string(weights_dtype_name(m->model->weights_dtype)));
  json_object_set_new(o, "fingerprint", json_string(m->fingerprint));
  if (detail) {
    json_t *comps = json_array();
    json_array_append_new(comps, json_string("embed"));
    for (int l = 0; l < c->n_layers; l++) {
      char name[64];
      snprintf(name, sizeof(name), "attn.%d", l);
      json_array_append_new(comps, json_string(name));
      snprintf(name, sizeof(name), "mlp.%d", l);
      json_array_append_new(comps, json_string(name));
    }
    json_object_set_new(o, "components", comps);
    char heads[96], neurons[96];
    snprintf(heads, sizeof(heads), "head.L.H for L < %d, H < %d", c->n_layers, c->n_heads);
    snprintf(neurons, sizeof(neurons), "neuron.L.N for L < %d, N < %d", c->n_layers, c->d_mlp);
    json_object_set_new(o, "heads", json_string(heads));
    json_object_set_new(o, "neurons", json_string(neurons));
  }
  return o;
}

static enum MHD_Result route_health(server_t *s, struct MHD_Connection *c, request_t *rq,
                                    const char *id) {
  (void)id;
  json_t *models = json_array();
  for (int i = 0; i < s->n_models; i++)
    json_array_append_new(models, json_string(s->models[i].name));
  json_t *devices = json_array();
  if (strcmp(s->backend->ops->name, "cuda") == 0)
    json_array_append_new(devices, json_string("cuda:0"));
  return respond_json(c, rq, 200,
                      json_pack("{s:s,s:s,s:o,s:o,s:b}", "status", s->draining ? "draining" : "ok",
                                "backend", s->backend->ops->name, "devices", devices, "models",
                                models, "auth", !s->cfg.no_auth));
}

/* POST /v1/models/{id}/tokenize, on a request worker. */
static int tokenize_text(request_t *rq) {
  const server_model_t *m = &rq->s->models[rq->model];
  json_error_t je;
  json_t *body =
      json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, JSON_REJECT_DUPLICATES, &je);
  const char *text = json_string_value(json_object_get(body, "text"));
  if (!text) {
    json_decref(body);
    return answer_error(rq, 400, "text", "expected {\"text\": \"...\"}");
  }
  if (!m->tok) {
    json_decref(body);
    return answer_error(rq, 422, "model", "model %s has no tokenizer", m->name);
  }
  char err[HYDRA_ERR_LEN];
  tokenizer_encoding_t enc = {0};
  const size_t tlen = json_string_length(json_object_get(body, "text"));
  const int rc = tokenizer_encode_max(m->tok, text, tlen, TOKENIZER_ADD_SPECIAL,
                                      TOKENIZE_MAX_TOKENS, &enc, err);
  json_decref(body);
  if (rc != 0) {
    tokenizer_encoding_free(&enc);
    return answer_error(rq, rc == TOKENIZER_TOO_MANY ? 413 : 400, "text", "%s", err);
  }
  json_t *ids = json_array(), *tokens = json_array(), *offsets = json_array();
  for (size_t i = 0; i < enc.n; i++) {
    size_t len = 0;
    const char *t = tokenizer_token_text(m->tok, enc.ids[i], &len);
    if (!t || !utf8_valid(t, len, NULL))
      t = tokenizer_token_piece(m->tok, enc.ids[i], &len);
    json_array_append_new(ids, json_integer(enc.ids[i]));
    json_array_append_new(tokens, t ? json_stringn(t, len) : json_null());
    json_array_append_new(offsets,
                          json_pack("[I,I]", (json_int_t)enc.starts[i], (json_int_t)enc.ends[i]));
  }
  tokenizer_encoding_free(&enc);
  return answer_json(rq, 200,
                     json_pack("{s:o,s:o,s:o}", "ids", ids, "tokens", tokens, "offsets", offsets));
}

static void random_id(char out[STORE_ID_LEN]) {
  unsigned char b[16];
  if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) { /* never expected; still unguessable */
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
      for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (unsigned char)(rand() ^ (int)(clock_wall() * 1e6));
    if (fd >= 0)
      close(fd);
  }
  for (int i = 0; i < 16; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* The job document with "weights_dtype" set (it parsed already); NULL when
 * out of memory. The caller frees it. */
static char *pin_weights_dtype(const char *body, size_t len, const char *dtype, size_t *out_len) {
  json_t *root = json_loadb(body ? body : "", len, 0, NULL);
  char *doc = NULL;
  if (root && json_object_set_new(root, "weights_dtype", json_string(dtype)) == 0)
    doc = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  *out_len = doc ? strlen(doc) : 0;
  return doc;
}

/* The user's stored jobs and bytes against their quotas, before any work:
 * 0, or -1 with the answer made (429 naming the quota and the usage; 413
 * for a document larger than the whole bytes quota). */
static int check_quotas(request_t *rq) {
  server_t *s = rq->s;
  int64_t jobs = 0, bytes = 0;
  char err[HYDRA_ERR_LEN];
  const double mib = 1048576.0, quota = s->cfg.max_stored_mib_per_user * mib;
  if (store_user_usage(s->store, rq->user, &jobs, &bytes, err) != 0) {
    answer_error(rq, 503, "", "the job store failed: %s", err);
    return -1;
  }
  if (jobs >= s->cfg.max_stored_jobs_per_user) {
    answer_error(rq, 429, "",
                 "user %s keeps %lld jobs in the store, the quota (--max-stored-jobs-per-user "
                 "%ld); finished jobs leave it %.0f days after they end",
                 rq->user, (long long)jobs, s->cfg.max_stored_jobs_per_user,
                 s->cfg.retention_s / 86400.0);
    return -1;
  }
  if ((double)rq->body.len > quota) {
    answer_error(rq, 413, "",
                 "the job document (%.1f MiB) is larger than the quota of stored bytes per user "
                 "(--max-stored-mib-per-user %g)",
                 rq->body.len / mib, s->cfg.max_stored_mib_per_user);
    return -1;
  }
  if ((double)bytes + (double)rq->body.len > quota) {
    answer_error(rq, 429, "",
                 "user %s keeps %.1f MiB of job documents and results in the store; this document "
                 "(%.1f MiB) would pass the quota (--max-stored-mib-per-user %g); finished jobs "
                 "leave it %.0f days after they end",
                 rq->user, bytes / mib, rq->body.len / mib, s->cfg.max_stored_mib_per_user,
                 s->cfg.retention_s / 86400.0);
    return -1;
  }
  return 0;
}

/* POST /v1/jobs, on a request worker: parse, plan within the limits (the
 * plan's errors answer now; it is freed: the queued job holds its document
 * alone, the worker plans it again when its first unit runs), store, queue. */
static int submit_job(request_t *rq) {
  server_t *s = rq->s;
  const char *user = rq->user;
  if (s->draining)
    return answer_error(rq, 503, "", "the server is draining: no new jobs");
  if (check_quotas(rq) != 0)
    return 0;
  if (rq->body.len >= 3 && !memcmp(rq->body.data, "\xef\xbb\xbf", 3)) {
    /* a UTF-8 byte order mark (job_parse skips it): gone before the document is kept */
    memmove(rq->body.data, rq->body.data + 3, rq->body.len - 3);
    rq->body.len -= 3;
    rq->body.data[rq->body.len] = '\0';
  }
  job_error_t jerr = {0};
  job_spec_t *spec = job_parse(rq->body.data ? rq->body.data : "", rq->body.len, &jerr);
  if (!spec)
    return answer_error(rq, jerr.too_large ? 413 : 400, jerr.field, "%s", jerr.message);
  int mi = spec->model ? server_find_model(s, spec->model) : s->n_models == 1 ? 0 : -1;
  if (mi < 0) { /* 404: the named model is not here; 400: the job names none */
    char msg[512], names[300];
    server_model_names(s, names, sizeof(names));
    const int named = spec->model != NULL;
    if (named)
      snprintf(msg, sizeof(msg), "no model named \"%.128s\" is loaded; loaded: %s", spec->model,
               names);
    else
      snprintf(msg, sizeof(msg), "several models are loaded (%s): name one with \"model\"", names);
    job_free(spec);
    return answer_error(rq, named ? 404 : 400, "model", "%s", msg);
  }
  server_model_t *m = &s->models[mi];
  const char *held = weights_dtype_name(m->model->weights_dtype);
  if (spec->weights_dtype >= 0 && spec->weights_dtype != m->model->weights_dtype) {
    job_free(spec);
    return answer_error(rq, 422, "weights_dtype",
                        "model %s is held with %s weights here (hydrad --weights-dtype)", m->name,
                        held);
  }
  const plan_limits_t limits = {.max_prompt_tokens = s->cfg.max_prompt_tokens,
                                .max_variants = s->cfg.max_variants,
                                .max_bytes = (size_t)(s->cfg.job_memory_mib * 1048576.0)};
  plan_t plan;
  if (plan_build_limited(spec, m->model, m->tok, &limits, &plan, &jerr) != 0) {
    job_free(spec);
    return answer_error(rq, jerr.too_large ? 413 : 422, jerr.field, "%s", jerr.message);
  }
  const long variants = plan.n_variants;
  const int n_prompts = plan.n_prompts;
  plan_free(&plan);
  if (scheduler_user_jobs(s, user) >= s->cfg.max_jobs_per_user) {
    job_free(spec);
    return answer_error(rq, 429, "", "user %s has %d jobs queued or running (the limit)", user,
                        s->cfg.max_jobs_per_user);
  }
  store_job_t job = {0};
  random_id(job.id);
  snprintf(job.user, sizeof(job.user), "%s", user);
  snprintf(job.model, sizeof(job.model), "%s", m->name);
  snprintf(job.fingerprint, sizeof(job.fingerprint), "%s", m->fingerprint);
  job.n_units = (n_prompts + s->cfg.unit_prompts - 1) / s->cfg.unit_prompts;
  job.variants_total = variants;
  job.n_prompts = n_prompts;
  snprintf(job.name, sizeof(job.name), "%s", spec->name ? spec->name : "");
  snprintf(job.labels, sizeof(job.labels), "%s", spec->labels ? spec->labels : "");
  const double dl = spec->deadline_s > 0 ? spec->deadline_s : s->cfg.default_deadline_s;
  job.deadline = dl > 0 ? clock_wall() + dl : 0;
  char err[HYDRA_ERR_LEN];
  /* The stored document names the weights it runs with: a worker holding the
   * model in the other dtype refuses it (scheduler_enqueue). */
  size_t doc_len = 0;
  char *doc = spec->weights_dtype < 0
                  ? pin_weights_dtype(rq->body.data, rq->body.len, held, &doc_len)
                  : NULL;
  if (spec->weights_dtype < 0 && !doc) {
    job_free(spec);
    return answer_error(rq, 500, "", "out of memory");
  }
  spec->weights_dtype = m->model->weights_dtype;
  const int stored = store_job_create(s->store, &job, doc ? doc : rq->body.data,
                                      doc ? doc_len : rq->body.len, err);
  free(doc);
  if (stored != 0) {
    job_free(spec);
    server_log(s, 0, "storing a job failed: %s", err);
    return answer_error(rq, 503, "", "the job store failed: %s", err);
  }
  job.state = STORE_QUEUED;
  if (scheduler_enqueue(s, &job, spec, mi, err) != 0) {
    store_job_set_state(s->store, job.id, STORE_FAILED, err, NULL, 0, NULL);
    return answer_error(rq, 422, "", "%s", err);
  }
  server_log(s, 1, "job %s queued: user %s, model %s, %d prompts, %ld variants, %d units", job.id,
             user, m->name, n_prompts, variants, job.n_units);
  if (rq->wait_stream) {
    snprintf(rq->answer_job, sizeof(rq->answer_job), "%s", job.id);
    return 0;
  }
  char status_url[96], results_url[128];
  snprintf(status_url, sizeof(status_url), "/v1/jobs/%s", job.id);
  snprintf(results_url, sizeof(results_url), "/v1/jobs/%s/results", job.id);
  return answer_json(rq, 202,
                     json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", job.id, "state", "queued",
                               "status_url", status_url, "results_url", results_url, "variants",
                               (json_int_t)variants));
}

static int load_job(server_t *s, const char *id, const char *user, role_t role, store_job_t *j);

/* POST /v1/jobs/{id}/retry, on a request worker (rq->job_id): a failed job goes back to the queue
 * from its first pending unit. A job whose failure the store could not
 * record (a full disk) is still queued or running there: this worker's
 * memory of its end is dropped instead. */
static int retry_job(request_t *rq) {
  server_t *s = rq->s;
  const char *id = rq->job_id;
  char err[HYDRA_ERR_LEN];
  if (s->draining)
    return answer_error(rq, 503, "", "the server is draining: no job is retried");
  store_job_t j;
  if (load_job(s, id, rq->user, rq->role, &j) != 0)
    return answer_error(rq, 404, "", "no job %s", id);
  if (j.state != STORE_FAILED)
    return answer_error(rq, 409, "", "job %s is %s: only a failed job can be retried", id,
                        store_state_name(j.state));
  if (j.deadline > 0 && clock_wall() > j.deadline)
    return answer_error(rq, 409, "deadline",
                        "job %s passed its deadline (%.0f s after its submission): submit it again",
                        id, j.deadline - j.created_at);
  if (scheduler_user_jobs(s, j.user) >= s->cfg.max_jobs_per_user)
    return answer_error(rq, 429, "", "user %s has %d jobs queued or running (the limit)", j.user,
                        s->cfg.max_jobs_per_user);
  store_state_t state = STORE_QUEUED;
  store_job_t stored;
  if (scheduler_drop_unstored(s, id)) { /* failed here, never recorded: the store still runs it */
    if (store_job_get(s->store, id, &stored, err) != 0)
      return answer_error(rq, 503, "", "the job store failed: %s", err);
    state = stored.state;
  } else {
    const int rc = store_job_retry(s->store, id, &state, err);
    if (rc == STORE_STATE || rc == STORE_NOT_FOUND)
      return answer_error(rq, 409, "", "job %s can no longer be retried: %s", id, err);
    if (rc != 0)
      return answer_error(rq, 503, "", "the job store failed: %s", err);
  }
  scheduler_discover(s);
  server_log(s, 1, "job %s retried by %s (%s, from unit %d of %d)", id, rq->user,
             store_state_name(state), j.units_done, j.n_units);
  notify_rows_committed(&s->notify);
  char status_url[96], results_url[128];
  snprintf(status_url, sizeof(status_url), "/v1/jobs/%s", id);
  snprintf(results_url, sizeof(results_url), "/v1/jobs/%s/results", id);
  return answer_json(rq, 202,
                     json_pack("{s:s,s:s,s:s,s:s,s:i,s:i}", "id", id, "state",
                               store_state_name(state), "status_url", status_url, "results_url",
                               results_url, "units_done", j.units_done, "n_units", j.n_units));
}

/* DELETE /v1/jobs/{id}, on a request worker (rq->job_id). */
static int cancel_job(request_t *rq) {
  server_t *s = rq->s;
  const char *id = rq->job_id;
  store_job_t j;
  char err[HYDRA_ERR_LEN];
  if (load_job(s, id, rq->user, rq->role, &j) != 0)
    return answer_error(rq, 404, "", "no job %s", id);
  scheduler_cancel(s, id);
  if (j.state == STORE_QUEUED || j.state == STORE_RUNNING) {
    /* Stored here, whoever runs it: a unit running on this node stops at its next
     * pass, one on another node when its worker next renews its lease. */
    if (store_job_cancel(s->store, id, err) < 0)
      return answer_error(rq, 503, "", "the job store failed: %s", err);
    server_log(s, 1, "job %s cancelled by %s", id, rq->user);
    notify_rows_committed(&s->notify);
    return answer_json(rq, 200, json_pack("{s:s,s:s}", "id", id, "state", "cancelled"));
  }
  return answer_json(rq, 200, json_pack("{s:s,s:s}", "id", id, "state", store_state_name(j.state)));
}

/* The request workers' tasks: the answer, then the connection resumed (the
 * HTTP thread sends it, deliver). */
static void work_submit(void *task) {
  request_t *rq = task;
  submit_job(rq);
  rq->answered = 1;
  MHD_resume_connection(rq->conn);
}

static void work_retry(void *task) {
  request_t *rq = task;
  retry_job(rq);
  rq->answered = 1;
  MHD_resume_connection(rq->conn);
}

static void work_cancel(void *task) {
  request_t *rq = task;
  cancel_job(rq);
  rq->answered = 1;
  MHD_resume_connection(rq->conn);
}

static void work_tokenize(void *task) {
  request_t *rq = task;
  tokenize_text(rq);
  rq->answered = 1;
  MHD_resume_connection(rq->conn);
}

/* Runs under the request queue's lock, before a worker can take the task. */
static void park_request(void *task) {
  request_t *rq = task;
  MHD_suspend_connection(rq->conn);
}

static enum MHD_Result hand_over(server_t *s, struct MHD_Connection *c, request_t *rq,
                                 requests_fn work) {
  rq->s = s;
  rq->conn = c;
  rq->queued = 1;
  /* --no-auth: one user, "local", on a box of its own: no share to keep */
  const int rc =
      requests_submit(s->http->requests, s->cfg.no_auth ? NULL : rq->user, work, park_request, rq);
  if (rc == 0)
    return MHD_YES;
  rq->queued = 0;
  if (rc == REQUESTS_OWNER_FULL)
    return respond_error(c, rq, 503, "",
                         "user %s has %d requests waiting or running (one user's share of the "
                         "request queue): try again",
                         rq->user, requests_owner_share(s->http->requests));
  return respond_error(c, rq, 503, "", "the server has %d requests waiting (the limit): try again",
                       4 * s->cfg.request_workers);
}

/* A request worker's answer, sent from the HTTP thread. */
static enum MHD_Result deliver(server_t *s, struct MHD_Connection *c, request_t *rq) {
  if (rq->answer_job[0])
    return respond_stream(s, c, rq, rq->answer_job, 0, 200);
  if (!rq->answer)
    return respond_error(c, rq, 500, "", "out of memory");
  return respond(c, rq, rq->answer_status, "application/json", rq->answer, strlen(rq->answer));
}

/* The job, if the caller may see it (its owner or an admin); else 404. */
static int load_job(server_t *s, const char *id, const char *user, role_t role, store_job_t *j) {
  char err[HYDRA_ERR_LEN];
  if (strlen(id) != 32 || store_job_get(s->store, id, j, err) != 0)
    return -1;
  store_state_t ended;
  if ((j->state == STORE_QUEUED || j->state == STORE_RUNNING) &&
      scheduler_unstored(s, id, &ended, err, sizeof(err))) { /* the store could not record it */
    j->state = ended;
    snprintf(j->error, sizeof(j->error), "%s", err);
  }
  return role == ROLE_ADMIN || strcmp(j->user, user) == 0 ? 0 : -1;
}

static enum MHD_Result route_metrics(server_t *s, struct MHD_Connection *c, request_t *rq,
                                     const char *id) {
  (void)id;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f)
    return respond_error(c, rq, 500, "", "out of memory");
  store_job_t *jobs = NULL;
  size_t n = 0;
  long by_state[5] = {0};
  char err[HYDRA_ERR_LEN];
  if (store_jobs_list(s->store, NULL, 0, &jobs, &n, err) == 0)
    for (size_t i = 0; i < n; i++)
      by_state[jobs[i].state]++;
  free(jobs);
  fprintf(f, "# HELP hydra_jobs Jobs in the store by state.\n# TYPE hydra_jobs gauge\n");
  for (int st = 0; st < 5; st++)
    fprintf(f, "hydra_jobs{state=\"%s\"} %ld\n", store_state_name((store_state_t)st), by_state[st]);
  pthread_mutex_lock(&s->lock);
  fprintf(f,
          "# HELP hydra_rows_total Result rows stored by this process.\n"
          "# TYPE hydra_rows_total counter\nhydra_rows_total %lld\n",
          (long long)s->rows_total);
  fprintf(f,
          "# HELP hydra_variants_total Ablated variants run by this process.\n"
          "# TYPE hydra_variants_total counter\nhydra_variants_total %lld\n",
          (long long)s->variants_total_done);
  fprintf(f,
          "# HELP hydra_variants_per_second Recent engine throughput.\n"
          "# TYPE hydra_variants_per_second gauge\nhydra_variants_per_second %g\n",
          s->rate_ewma);
  /* A user's name is shown to that user and to admins; the rest is a sum. */
  int queued_all = 0;
  for (sched_job_t *j = s->jobs; j; j = j->next)
    queued_all++;
  fprintf(f,
          "# HELP hydra_queue_length_total Jobs queued or running, all users.\n"
          "# TYPE hydra_queue_length_total gauge\nhydra_queue_length_total %d\n",
          queued_all);
  fprintf(f, "# HELP hydra_queue_length Jobs queued or running, per user (an admin sees "
             "every user, a user only themself).\n"
             "# TYPE hydra_queue_length gauge\n");
  for (sched_job_t *j = s->jobs; j; j = j->next) {
    if (rq->role != ROLE_ADMIN && strcmp(j->user, rq->user) != 0)
      continue;
    int first = 1, count = 0;
    for (sched_job_t *k = s->jobs; k; k = k->next) {
      if (k == j)
        break;
      first &= strcmp(k->user, j->user) != 0;
    }
    if (!first)
      continue;
    for (sched_job_t *k = j; k; k = k->next)
      count += strcmp(k->user, j->user) == 0;
    fprintf(f, "hydra_queue_length{user=\"%s\"} %d\n", j->user, count);
  }
  fprintf(f, "# HELP hydra_source_store_bytes Backend memory holding queued jobs' clean "
             "sources (resample, patch, mean) between their work units, per model.\n"
             "# TYPE hydra_source_store_bytes gauge\n");
  for (int i = 0; i < s->n_models; i++)
    fprintf(f, "hydra_source_store_bytes{model=\"%s\"} %zu\n", s->models[i].name,
            s->models[i].kept_bytes);
  pthread_mutex_unlock(&s->lock);
  long rss_pages = 0;
  FILE *statm = fopen("/proc/self/statm", "r");
  if (statm) {
    long size;
    if (fscanf(statm, "%ld %ld", &size, &rss_pages) != 2)
      rss_pages = 0;
    fclose(statm);
  }
  fprintf(f,
          "# HELP hydra_cpu_memory_bytes Resident memory of hydrad.\n"
          "# TYPE hydra_cpu_memory_bytes gauge\nhydra_cpu_memory_bytes %ld\n",
          rss_pages * sysconf(_SC_PAGESIZE));
  fprintf(f,
          "# HELP hydra_requests_total HTTP requests answered.\n"
          "# TYPE hydra_requests_total counter\nhydra_requests_total %lld\n",
          (long long)s->requests_total);
  fclose(f);
  enum MHD_Result ok = respond(c, rq, 200, "text/plain; version=0.0.4", text, len);
  free(text);
  return ok;
}

/* GET /v1/jobs: the caller's jobs (an admin's: all), newest first, a page
 * of ?limit= after ?cursor= (or the older ?after=ID), filtered by ?name=,
 * ?label=KEY[=VALUE] and ?state= (job_view_list). */
static enum MHD_Result route_jobs_list(server_t *s, struct MHD_Connection *c, request_t *rq,
                                       const char *id) {
  (void)id;
  const enum MHD_ValueKind arg = MHD_GET_ARGUMENT_KIND;
  const job_view_query_t q = {.limit = MHD_lookup_connection_value(c, arg, "limit"),
                              .cursor = MHD_lookup_connection_value(c, arg, "cursor"),
                              .after = MHD_lookup_connection_value(c, arg, "after"),
                              .name = MHD_lookup_connection_value(c, arg, "name"),
                              .label = MHD_lookup_connection_value(c, arg, "label"),
                              .state = MHD_lookup_connection_value(c, arg, "state")};
  int status;
  const char *field;
  char msg[HYDRA_ERR_LEN];
  json_t *page = job_view_list(s, rq->user, rq->role, &q, &status, &field, msg, sizeof msg);
  if (!page)
    return respond_error(c, rq, status, field, "%s", msg);
  return respond_json(c, rq, 200, page);
}

/* Does url fit the template ("{x}" is one non-empty path segment)? */
/* Whether url fits the template; its {id} segment (non-empty, up to the
 * next '/') into id (id_len bytes, may be 0: not kept), cut to fit. */
static int path_matches(const char *tmpl, const char *url, char *id, size_t id_len) {
  while (*tmpl && *url) {
    if (*tmpl == '{') {
      tmpl = strchr(tmpl, '}');
      if (!tmpl)
        return 0;
      tmpl++;
      const char *seg = url;
      while (*url && *url != '/')
        url++;
      if (url == seg)
        return 0;
      if (id_len)
        snprintf(id, id_len, "%.*s", (int)(url - seg), seg);
    } else if (*tmpl++ != *url++)
      return 0;
  }
  return !*tmpl && !*url;
}

/* 405 with Allow when the path is a route of other methods; 0 when the
 * method fits or the path is no route (404 later). */
static enum MHD_Result check_method(struct MHD_Connection *c, request_t *rq, const char *url,
                                    const char *method, int *answered) {
  char allow[64] = "";
  int path_known = 0;
  for (const http_route_t *r = http_routes; r->method; r++)
    if (path_matches(r->path, url, NULL, 0)) {
      path_known = 1;
      if (strcmp(r->method, method) == 0)
        return MHD_YES;
      if (!strstr(allow, r->method))
        snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s", allow[0] ? ", " : "",
                 r->method);
    }
  if (!path_known)
    return MHD_YES;
  if (strstr(allow, "GET"))
    snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), ", HEAD");
  *answered = 1;
  char body[256];
  snprintf(body, sizeof(body),
           "{\"error\":{\"code\":405,\"message\":\"method %s not allowed here (allowed: "
           "%s)\",\"field\":\"\"}}",
           strlen(method) < 16 ? method : "?", allow);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "application/json");
  MHD_add_response_header(r, "Allow", allow);
  enum MHD_Result ok = MHD_queue_response(c, 405, r);
  MHD_destroy_response(r);
  rq->status = 405;
  return ok;
}

/* rq's user's entry in by_user (a free one when the user holds nothing), or
 * NULL when every entry is taken. */
static user_bytes_t *user_bytes(struct http *h, const request_t *rq) {
  user_bytes_t *free_entry = NULL;
  for (int i = 0; i < BUFFER_USERS; i++) {
    if (h->by_user[i].bytes && strcmp(h->by_user[i].user, rq->user) == 0)
      return &h->by_user[i];
    if (!h->by_user[i].bytes && !free_entry)
      free_entry = &h->by_user[i];
  }
  if (free_entry)
    snprintf(free_entry->user, sizeof free_entry->user, "%s", rq->user);
  return free_entry;
}

/* Counts n bytes of rq's body against --max-buffered-mib (beyond what it
 * counted already), of which one user may hold at most half, so that one
 * user's bodies (announced and never sent, say) cannot shut the others out;
 * -1, counting nothing, when they do not fit. */
static int buffer_reserve(server_t *s, request_t *rq, size_t n) {
  struct http *h = s->http;
  if (n <= rq->counted)
    return 0;
  const size_t more = n - rq->counted, cap = (size_t)(s->cfg.max_buffered_mib * 1048576.0);
  user_bytes_t *u = user_bytes(h, rq);
  if (h->buffered + more > cap || !u || u->bytes + more > cap / 2)
    return -1;
  h->buffered += more;
  u->bytes += more;
  rq->counted = n;
  return 0;
}

/* Gives back what buffer_reserve counted for rq. */
static void buffer_release(server_t *s, request_t *rq) {
  struct http *h = s->http;
  if (!rq->counted)
    return;
  h->buffered -= rq->counted;
  for (int i = 0; i < BUFFER_USERS; i++)
    if (h->by_user[i].bytes && strcmp(h->by_user[i].user, rq->user) == 0) {
      h->by_user[i].bytes -= rq->counted < h->by_user[i].bytes ? rq->counted : h->by_user[i].bytes;
      break;
    }
  rq->counted = 0;
}

static enum MHD_Result refuse_buffer_cap(server_t *s, struct MHD_Connection *c, request_t *rq) {
  return respond_error(c, rq, 503, "",
                       "the server holds %.1f MiB of request bodies (its limit, "
                       "--max-buffered-mib %.0f, or half of it for one user): try again later",
                       s->http->buffered / 1048576.0, s->cfg.max_buffered_mib);
}

/* ---------------------------------------------------- the route table -- */

static enum MHD_Result route_openapi(server_t *s, struct MHD_Connection *c, request_t *rq,
                                     const char *id) {
  (void)s, (void)id;
  return respond(c, rq, 200, "application/json", openapi_document, strlen(openapi_document));
}

static enum MHD_Result route_index(server_t *s, struct MHD_Connection *c, request_t *rq,
                                   const char *id) {
  (void)s, (void)id;
  return respond_asset(c, rq, "text/html; charset=utf-8", dashboard_index_html,
                       dashboard_index_html_len);
}

static enum MHD_Result route_script(server_t *s, struct MHD_Connection *c, request_t *rq,
                                    const char *id) {
  (void)s, (void)id;
  return respond_asset(c, rq, "text/javascript; charset=utf-8", dashboard_dashboard_js,
                       dashboard_dashboard_js_len);
}

static enum MHD_Result route_style(server_t *s, struct MHD_Connection *c, request_t *rq,
                                   const char *id) {
  (void)s, (void)id;
  return respond_asset(c, rq, "text/css; charset=utf-8", dashboard_dashboard_css,
                       dashboard_dashboard_css_len);
}

static enum MHD_Result route_models(server_t *s, struct MHD_Connection *c, request_t *rq,
                                    const char *id) {
  (void)id;
  json_t *list = json_array();
  for (int i = 0; i < s->n_models; i++)
    json_array_append_new(list, model_json(&s->models[i], 0));
  return respond_json(c, rq, 200, json_pack("{s:o}", "models", list));
}

static enum MHD_Result route_model(server_t *s, struct MHD_Connection *c, request_t *rq,
                                   const char *id) {
  const int mi = server_find_model(s, id);
  char names[300];
  if (mi < 0)
    return respond_error(c, rq, 404, "", "no model named %s; loaded: %s", id,
                         server_model_names(s, names, sizeof(names)));
  return respond_json(c, rq, 200, model_json(&s->models[mi], 1));
}

static enum MHD_Result route_tokenize(server_t *s, struct MHD_Connection *c, request_t *rq,
                                      const char *id) {
  char names[300];
  if ((rq->model = server_find_model(s, id)) < 0)
    return respond_error(c, rq, 404, "", "no model named %s; loaded: %s", id,
                         server_model_names(s, names, sizeof(names)));
  return hand_over(s, c, rq, work_tokenize);
}

static enum MHD_Result route_submit(server_t *s, struct MHD_Connection *c, request_t *rq,
                                    const char *id) {
  (void)id;
  if (s->draining)
    return respond_error(c, rq, 503, "", "the server is draining: no new jobs");
  const char *wait = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "wait");
  if (wait && strcmp(wait, "stream") != 0)
    return respond_error(c, rq, 400, "wait", "expected wait=stream");
  rq->wait_stream = wait != NULL;
  return hand_over(s, c, rq, work_submit);
}

/* The job the caller names by its id or a unique prefix of it
 * (job_view_resolve) into id; or its error answered. */
static int resolve_or_answer(server_t *s, struct MHD_Connection *c, request_t *rq,
                             const char *given, char id[STORE_ID_LEN], enum MHD_Result *answer) {
  char msg[HYDRA_ERR_LEN];
  const int status = job_view_resolve(s, given, rq->user, rq->role, id, msg, sizeof msg);
  if (status == 0)
    return 0;
  *answer = respond_error(c, rq, status, status == 400 ? "id" : "", "%s", msg);
  return -1;
}

/* The job the caller may see (load_job), named by its id or a unique
 * prefix, or its error answered (404 for another user's). */
static int job_or_404(server_t *s, struct MHD_Connection *c, request_t *rq, const char *given,
                      store_job_t *j, enum MHD_Result *answer) {
  char id[STORE_ID_LEN];
  if (resolve_or_answer(s, c, rq, given, id, answer))
    return -1;
  if (load_job(s, id, rq->user, rq->role, j) == 0)
    return 0;
  *answer = respond_error(c, rq, 404, "", "no job %s", id);
  return -1;
}

static enum MHD_Result route_job(server_t *s, struct MHD_Connection *c, request_t *rq,
                                 const char *id) {
  store_job_t j;
  enum MHD_Result answer;
  if (job_or_404(s, c, rq, id, &j, &answer))
    return answer;
  return respond_json(c, rq, 200, job_view_json(s, &j, rq->user, rq->role));
}

/* GET /v1/jobs/{id}/spec: the job's document as stored (with
 * "weights_dtype" pinned to the weights it runs with, when it named none). */
static enum MHD_Result route_spec(server_t *s, struct MHD_Connection *c, request_t *rq,
                                  const char *id) {
  store_job_t j;
  enum MHD_Result answer;
  if (job_or_404(s, c, rq, id, &j, &answer))
    return answer;
  char *spec = NULL, err[HYDRA_ERR_LEN];
  size_t len = 0;
  if (store_job_spec(s->store, j.id, &spec, &len, err) != 0)
    return respond_error(c, rq, 503, "", "the job store failed: %s", err);
  answer = respond(c, rq, 200, "application/json", spec, len);
  free(spec);
  return answer;
}

/* The cancel is stored by a request worker: the HTTP thread never waits
 * on the store's write lock (a large unit's commit holds it for seconds). */
static enum MHD_Result route_cancel(server_t *s, struct MHD_Connection *c, request_t *rq,
                                    const char *id) {
  enum MHD_Result answer;
  if (resolve_or_answer(s, c, rq, id, rq->job_id, &answer))
    return answer;
  return hand_over(s, c, rq, work_cancel);
}

static enum MHD_Result route_results(server_t *s, struct MHD_Connection *c, request_t *rq,
                                     const char *id) {
  store_job_t j;
  enum MHD_Result answer;
  if (job_or_404(s, c, rq, id, &j, &answer))
    return answer;
  const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
  char *end = NULL;
  long long a = after ? strtoll(after, &end, 10) : 0;
  if (after && (*end || end == after || a < 0))
    return respond_error(c, rq, 400, "after", "expected a row count >= 0");
  const char *last_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
  if (last_id) { /* an SSE client reconnecting: resume after its last event */
    errno = 0;
    long long l = strtoll(last_id, &end, 10);
    if (*end || l < 0 || errno)
      return respond_error(c, rq, 400, "Last-Event-ID", "expected a row number >= 0");
    a = l < INT64_MAX ? l + 1 : l;
  }
  const char *fmt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
  if (fmt && strcmp(fmt, "csv") != 0 && strcmp(fmt, "ndjson") != 0)
    return respond_error(c, rq, 400, "format", "expected ndjson or csv");
  return respond_stream(s, c, rq, j.id, a, 200);
}

/* The job is looked up (404 for another user's) by the request worker. */
static enum MHD_Result route_retry(server_t *s, struct MHD_Connection *c, request_t *rq,
                                   const char *id) {
  enum MHD_Result answer;
  if (resolve_or_answer(s, c, rq, id, rq->job_id, &answer))
    return answer;
  return hand_over(s, c, rq, work_retry);
}

/* Every route hydrad answers, with its handler. A public route is answered
 * without a token; a route's {id} reaches its handler. */
const http_route_t http_routes[] = {
    {"GET", "/v1/health", 1, route_health},
    {"GET", "/v1/openapi.json", 1, route_openapi},
    {"GET", "/v1/models", 0, route_models},
    {"GET", "/v1/models/{id}", 0, route_model},
    {"POST", "/v1/models/{id}/tokenize", 0, route_tokenize},
    {"POST", "/v1/jobs", 0, route_submit},
    {"GET", "/v1/jobs", 0, route_jobs_list},
    {"GET", "/v1/jobs/{id}", 0, route_job},
    {"DELETE", "/v1/jobs/{id}", 0, route_cancel},
    {"POST", "/v1/jobs/{id}/retry", 0, route_retry},
    {"GET", "/v1/jobs/{id}/results", 0, route_results},
    {"GET", "/v1/jobs/{id}/spec", 0, route_spec},
    {"GET", "/metrics", 0, route_metrics},
    {"GET", "/", 1, route_index},
    {"GET", "/dashboard.js", 1, route_script},
    {"GET", "/dashboard.css", 1, route_style},
    {NULL, NULL, 0, NULL},
};

/* The route's entry in http_routes, with its {id} in id, or NULL. */
static const http_route_t *find_route(const char *url, const char *method, char *id,
                                      size_t id_len) {
  for (const http_route_t *r = http_routes; r->method; r++)
    if (strcmp(r->method, method) == 0 && path_matches(r->path, url, id, id_len))
      return r;
  return NULL;
}

static enum MHD_Result dispatch(server_t *s, struct MHD_Connection *c, request_t *rq,
                                const char *url, const char *method) {
  if (rq->too_large)
    return respond_error(c, rq, 413, "", "request body larger than %ld bytes", rq->max_body);
  if (rq->over_buffer_cap)
    return refuse_buffer_cap(s, c, rq);
  char id[sizeof rq->path] = "";
  const http_route_t *route = find_route(url, method, id, sizeof id);
  if (!route)
    return respond_error(c, rq, 404, "", "no such route: %s %s", method, url);
  return route->handler(s, c, rq, id);
}

/* in, with control characters (and backslash) as \xNN, cut to fit out. */
static const char *log_escape(char *out, size_t n, const char *in) {
  size_t o = 0;
  for (; *in && o + 5 < n; in++) {
    const unsigned char ch = (unsigned char)*in;
    if (ch < 0x20 || ch == 0x7f || ch == '\\')
      o += (size_t)snprintf(out + o, n - o, "\\x%02x", ch);
    else
      out[o++] = (char)ch;
  }
  out[o] = '\0';
  return out;
}

/* The state hydrad keeps for connection c (NULL until on_connection set it). */
static conn_state_t *conn_state(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* The connection's request deadline: from now (reading a request) or none
 * (the request is read). */
static void request_deadline(server_t *s, struct MHD_Connection *c, int reading) {
  conn_state_t *cs = conn_state(c);
  if (!cs)
    return;
  pthread_mutex_lock(&s->http->lock);
  cs->deadline = reading ? clock_monotonic() + s->cfg.request_deadline_s : 0;
  pthread_mutex_unlock(&s->http->lock);
}

/* The connection has a request under way (its request line read), or is
 * idle from now (its answer sent): on_accept closes idle ones to make room. */
static void conn_busy(server_t *s, struct MHD_Connection *c, int busy) {
  conn_state_t *cs = conn_state(c);
  if (!cs)
    return;
  pthread_mutex_lock(&s->http->lock);
  cs->idle_since = busy ? 0 : clock_monotonic();
  pthread_mutex_unlock(&s->http->lock);
}

/* Headers that must come once, counted (framing and identity). */
typedef struct {
  int content_length, chunked, authorization;
} header_counts_t;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value) {
  header_counts_t *n = cls;
  (void)kind;
  if (strcasecmp(key, "Content-Length") == 0)
    n->content_length++;
  else if (strcasecmp(key, "Authorization") == 0)
    n->authorization++;
  else if (strcasecmp(key, "Transfer-Encoding") == 0 && value)
    for (const char *v = value; *v; v++) /* a coding list: "gzip, chunked" */
      if (strncasecmp(v, "chunked", 7) == 0) {
        n->chunked++;
        break;
      }
  return MHD_YES;
}

/* 400 (closing the connection, its body unread) for a request whose body
 * two readers could frame differently (two Content-Lengths, or one with
 * chunked: RFC 9112 6.3) or that names two callers (two Authorization
 * headers: neither wins). 0 when it is fine. */
static int refuse_ambiguous(struct MHD_Connection *c, request_t *rq, enum MHD_Result *m) {
  header_counts_t n = {0};
  MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &n);
  const char *why = n.content_length > 1            ? "two Content-Length headers"
                    : n.content_length && n.chunked ? "Content-Length with chunked encoding"
                    : n.authorization > 1           ? "two Authorization headers"
                                                    : NULL;
  if (!why)
    return 0;
  rq->close = 1;
  *m = respond_error(
      c, rq, 400, n.authorization > 1 && n.content_length <= 1 && !n.chunked ? "Authorization" : "",
      "ambiguous request: %s", why);
  return 1;
}

/* The first call, with the headers: the framing, the method, the caller
 * (before any body byte is kept: an unknown token gets its 401 now), the
 * body's size. */
static enum MHD_Result on_headers(server_t *s, struct MHD_Connection *c, request_t *rq,
                                  const char *url, const char *method) {
  enum MHD_Result refused;
  if (refuse_ambiguous(c, rq, &refused))
    return refused;
  int answered = 0;
  enum MHD_Result m = check_method(c, rq, url, method, &answered);
  if (answered || m != MHD_YES)
    return m;
  const http_route_t *route = find_route(url, method, NULL, 0);
  if (!route || !route->public_route) {
    const char *user = authenticate(s, c, &rq->role);
    if (!user)
      return respond_error(c, rq, 401, "", "missing or unknown bearer token");
    snprintf(rq->user, sizeof(rq->user), "%s", user);
  }
  rq->max_body = s->cfg.max_body;
  if (route && strcmp(route->path, "/v1/models/{id}/tokenize") == 0 &&
      rq->max_body > TOKENIZE_MAX_BODY)
    rq->max_body = TOKENIZE_MAX_BODY;
  /* A declared body over the limit is refused before it is read. */
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
  const unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
  if (declared > (unsigned long long)rq->max_body)
    return respond_error(c, rq, 413, "", "request body larger than %ld bytes", rq->max_body);
  /* ... and so is one that would pass the bytes held for all connections
   * (a declared body is counted whole from now) */
  if (declared && buffer_reserve(s, rq, (size_t)declared) != 0) {
    rq->close = 1;
    return refuse_buffer_cap(s, c, rq);
  }
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  server_t *s = cls;
  (void)version;
  request_t *rq = *con_cls;
  const int head = strcmp(method, "HEAD") == 0;
  if (head) /* a GET route's headers; libmicrohttpd sends no body to a HEAD */
    method = "GET";
  if (!rq) {
    rq = calloc(1, sizeof(*rq));
    if (!rq)
      return MHD_NO;
    rq->head = head;
    rq->t0 = clock_monotonic();
    snprintf(rq->method, sizeof(rq->method), "%s", head ? "HEAD" : method);
    snprintf(rq->path, sizeof(rq->path), "%s", url);
    *con_cls = rq;
    return on_headers(s, c, rq, url, method);
  }
  if (*upload_data_size) { /* collect the body across calls */
    const size_t len = rq->body.len + *upload_data_size;
    if (!rq->too_large && len > (size_t)rq->max_body)
      rq->too_large = 1;
    /* A body over the limit is read on and dropped so that its sender gets
     * the 413 (libmicrohttpd answers only a whole request), but only so far:
     * a chunked body (a declared length over the limit was refused with the
     * headers) that goes on past DROP_ALLOWANCE closes the connection. */
    if (rq->too_large && (rq->dropped += *upload_data_size) > DROP_ALLOWANCE) {
      server_log(s, 1, "request %s %s: body over %ld bytes went on for %zu more; connection closed",
                 rq->method, rq->path, rq->max_body, rq->dropped);
      rq->status = 413;
      return MHD_NO;
    }
    if (!rq->too_large && !rq->over_buffer_cap && buffer_reserve(s, rq, len) != 0) {
      rq->over_buffer_cap = 1; /* what came is dropped; the rest is read and dropped too */
      buffer_free(&rq->body);
    }
    if (!rq->too_large && !rq->over_buffer_cap &&
        buffer_append(&rq->body, upload_data, *upload_data_size) != 0)
      return MHD_NO;
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (rq->queued) /* resumed by its request worker */
    return rq->answered ? deliver(s, c, rq) : MHD_YES;
  request_deadline(s, c, 0); /* read whole: no deadline while it is answered */
  return dispatch(s, c, rq, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  server_t *s = cls;
  request_t *rq = *con_cls;
  if (!rq)
    return;
  request_deadline(s, c, 1); /* the connection's next request */
  conn_busy(s, c, 0);
  pthread_mutex_lock(&s->lock);
  s->requests_total++;
  pthread_mutex_unlock(&s->lock);
  char path[4 * sizeof rq->path];
  server_log(s, 1, "request %s %s user=%s status=%d %.1f ms%s", rq->method,
             log_escape(path, sizeof path, rq->path), rq->user[0] ? rq->user : "-", rq->status,
             (clock_monotonic() - rq->t0) * 1e3,
             toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client went away)");
  buffer_free(&rq->body);
  buffer_release(s, rq);
  free(rq->answer);
  free(rq);
  *con_cls = NULL;
}

static uint32_t peer_ip(const struct sockaddr *addr) {
  return addr && addr->sa_family == AF_INET ? ((const struct sockaddr_in *)addr)->sin_addr.s_addr
                                            : 0;
}

/* A new connection, before libmicrohttpd takes it: at --per-ip-limit for
 * its address (or --connection-limit in all), the longest idle connection
 * of that address (or of any) is shut to make room, so that connections
 * that only sit idle (keep-alive, or never a byte sent) cannot lock an
 * address out; a connection with a request under way (read, answered or
 * streaming) is never shut for this. Refused when every one is busy. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len) {
  server_t *s = cls;
  struct http *h = s->http;
  (void)len;
  const uint32_t ip = peer_ip(addr);
  int of_ip = 0, all = 0;
  conn_state_t *idlest_of_ip = NULL, *idlest = NULL;
  pthread_mutex_lock(&h->lock);
  for (conn_state_t *cs = h->conns; cs; cs = cs->next) {
    if (cs->closing)
      continue;
    all++;
    const int idle = cs->idle_since > 0 && cs->fd >= 0;
    if (idle && (!idlest || cs->idle_since < idlest->idle_since))
      idlest = cs;
    if (cs->ip != ip)
      continue;
    of_ip++;
    if (idle && (!idlest_of_ip || cs->idle_since < idlest_of_ip->idle_since))
      idlest_of_ip = cs;
  }
  const int over_ip = of_ip >= s->cfg.per_ip_limit, over_all = all >= s->cfg.connection_limit;
  conn_state_t *room = over_ip ? idlest_of_ip : over_all ? idlest : NULL;
  double idle_s = 0;
  if (room) {
    shutdown(room->fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes it */
    room->closing = 1;
    idle_s = clock_monotonic() - room->idle_since;
  }
  pthread_mutex_unlock(&h->lock);
  char who[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &ip, who, sizeof who);
  if ((over_ip || over_all) && !room)
    server_log(s, 1,
               "connection from %s refused: %d of its connections open (--per-ip-limit %d), "
               "%d in all (--connection-limit %d), none idle",
               who, of_ip, s->cfg.per_ip_limit, all, s->cfg.connection_limit);
  else if (room)
    server_log(s, 2, "a connection idle for %.1f s closed to make room for one from %s", idle_s,
               who);
  return (over_ip || over_all) && !room ? MHD_NO : MHD_YES;
}

/* Connections come and go: each has a deadline for its request (set again
 * after every answer; none while a request is answered). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  server_t *s = cls;
  struct http *h = s->http;
  conn_state_t *cs = *socket_context;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    if (!(cs = calloc(1, sizeof(*cs))))
      return; /* not on the timer: only the idle timeout applies */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    cs->fd = ci ? ci->connect_fd : -1;
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    cs->ip = peer_ip(ai ? ai->client_addr : NULL);
    cs->deadline = clock_monotonic() + s->cfg.request_deadline_s;
    cs->idle_since = clock_monotonic();
    pthread_mutex_lock(&h->lock);
    cs->next = h->conns;
    if (h->conns)
      h->conns->prev = cs;
    h->conns = cs;
    pthread_mutex_unlock(&h->lock);
    *socket_context = cs;
    return;
  }
  if (!cs) /* closed: before its socket is (libmicrohttpd closes it after this call) */
    return;
  pthread_mutex_lock(&h->lock);
  if (cs->prev)
    cs->prev->next = cs->next;
  else
    h->conns = cs->next;
  if (cs->next)
    cs->next->prev = cs->prev;
  pthread_mutex_unlock(&h->lock);
  free(cs);
  *socket_context = NULL;
}

/* The timer: cuts off connections whose request is not read by its
 * deadline (libmicrohttpd's timeout is an idle one: a header line a second
 * would hold a slot for ever); resumes the waiting streams every
 * --stream-keepalive-s (a keep-alive, a dead peer dropped). */
static void *http_timer(void *arg) {
  server_t *s = arg;
  struct http *h = s->http;
  double last_wake = clock_monotonic();
  while (!h->timer_stop) {
    const struct timespec tick = {0, 100 * 1000 * 1000};
    nanosleep(&tick, NULL);
    const double now = clock_monotonic();
    int cut = 0;
    pthread_mutex_lock(&h->lock);
    for (conn_state_t *cs = h->conns; cs; cs = cs->next)
      if (cs->deadline > 0 && now > cs->deadline && cs->fd >= 0) {
        shutdown(cs->fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes it */
        cs->deadline = 0;
        cut++;
      }
    pthread_mutex_unlock(&h->lock);
    if (cut)
      server_log(s, 1, "%d connection%s cut off: the request was not read within %g s", cut,
                 cut > 1 ? "s" : "", s->cfg.request_deadline_s);
    if (now - last_wake >= s->cfg.stream_keepalive_s) {
      notify_wake(&s->notify);
      last_wake = now;
    }
  }
  return NULL;
}

/* Logs method and path of each request as it starts (the token never),
 * its control characters escaped: a request cannot write lines of its own. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  server_t *s = cls;
  conn_busy(s, c, 1);
  char path[256];
  snprintf(path, sizeof(path), "%s", uri);
  char *q = strchr(path, '?');
  if (q)
    *q = '\0';
  char shown[4 * sizeof path];
  server_log(s, 2, "request %s", log_escape(shown, sizeof shown, path));
  return NULL;
}

static char *read_pem(const char *path, char *err) {
  FILE *f = fopen(path, "r");
  if (!f) {
    err_set(err, "%s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = calloc(1, 1 << 20);
  size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
  fclose(f);
  if (!buf || n == 0 || !strstr(buf, "-----BEGIN")) {
    free(buf);
    err_set(err, "%s: not a PEM file", path);
    return NULL;
  }
  return buf;
}

int http_start(server_t *s, char *err) {
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)s->cfg.port);
  if (inet_pton(AF_INET, s->cfg.listen, &addr.sin_addr) != 1)
    return err_set(err, "--listen %s: not an IPv4 address", s->cfg.listen);
  char *cert = NULL, *key = NULL;
  unsigned tls = 0;
  if (s->cfg.tls_cert[0]) {
    if (!(cert = read_pem(s->cfg.tls_cert, err)) || !(key = read_pem(s->cfg.tls_key, err))) {
      free(cert);
      return -1;
    }
    tls = MHD_USE_TLS;
  }
  struct http *h = calloc(1, sizeof(*h));
  if (!h || pthread_mutex_init(&h->lock, NULL) != 0) {
    free(h);
    free(cert);
    free(key);
    return err_set(err, "out of memory");
  }
  s->http = h;
  if (!(h->requests = requests_start(s->cfg.request_workers, 4 * s->cfg.request_workers, err))) {
    free(cert);
    free(key);
    http_stop(s);
    return -1;
  }
  /* Listening before the first request: a stream may park at once. */
  notify_listen(&s->notify, resume_streams, s);
  /* With TLS the certificate options come before the end marker. */
  s->mhd = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
          MHD_USE_ERROR_LOG | tls,
      (uint16_t)s->cfg.port, on_accept, s, on_request, s, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
      MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)(s->cfg.connection_limit + CLOSING_SLACK),
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.connection_timeout_s,
      tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
      MHD_OPTION_END);
  free(cert); /* libmicrohttpd copies them at start */
  if (key) {
    explicit_bzero(key, strlen(key));
    free(key);
  }
  if (!s->mhd) {
    err_set(err, "cannot listen on %s:%d (in use, or not allowed%s)", s->cfg.listen, s->cfg.port,
            tls ? ", or the TLS certificate and key do not fit" : "");
    http_stop(s);
    return -1;
  }
  if (pthread_create(&h->timer, NULL, http_timer, s) != 0) {
    err_set(err, "cannot start the HTTP timer thread");
    http_stop(s);
    return -1;
  }
  h->timer_started = 1;
  return 0;
}

void http_stop(server_t *s) {
  struct http *h = s->http;
  if (!h)
    return;
  s->stopping = 1; /* no stream parks from here on (park_stream) */
  /* Every request a worker has is answered and its connection resumed;
   * new ones are refused (503). */
  requests_stop(h->requests);
  if (h->timer_started) {
    h->timer_stop = 1;
    pthread_join(h->timer, NULL);
  }
  notify_rows_committed(&s->notify); /* resume every suspended stream before stopping */
  if (s->mhd)
    MHD_stop_daemon(s->mhd);
  s->mhd = NULL;
  notify_listen(&s->notify, NULL, NULL);
  requests_free(h->requests);
  pthread_mutex_destroy(&h->lock);
  free(h);
  s->http = NULL;
}
