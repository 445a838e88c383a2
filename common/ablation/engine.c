/* engine.c - the batched ablation engine; see engine.h for what it computes. */
#include "engine.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"

#define LOGIT_ROWS 256 /* readout rows whose full logits are computed at once */
#define ACCUMULATOR_FLOATS (64L << 20)
/* Backend bytes of clean log-probs (a chunk's prompts x vocab floats, the
 * reference of the KL) a full-distribution job may hold: chunks hold at most
 * this many bytes' worth of prompts (and a quarter of the backend's memory). */
#define CLEAN_LP_BYTES (512L << 20)

#define TRY(call)                                                                                  \
  do {                                                                                             \
    if ((call) != 0)                                                                               \
      goto fail;                                                                                   \
  } while (0)

/* HYDRA_ENGINE_PROFILE=1: host wall time per phase of engine_run, printed
 * when the engine is destroyed. On an asynchronous backend (CUDA) the queue
 * drains at each pass's readout download, so the GPU idles through what the
 * host does between that download and the next pass's first op (accumulate,
 * tables). */
enum { PH_CLEAN, PH_SORT, PH_TABLES, PH_LAYERS, PH_READOUT, PH_ACCUMULATE, PH_EMIT, PH_N };
static const char *const phase_names[PH_N] = {
    "clean passes",       "variant order", "pass tables + uploads", "layers (queued)",
    "readout + download", "accumulate",    "emit rows, progress"};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Where an intervention writes. */
typedef enum { SITE_EMBED, SITE_HEAD, SITE_ATTN, SITE_NEURON, SITE_MLP, N_SITES } site_t;

typedef struct {
  uint64_t key;
  float **dstore, **store, **mean;
  size_t bytes;       /* backend memory */
  unsigned long used; /* when a run last took or kept it (least recent goes first) */
} kept_t;

struct engine {
  const model_t *host;
  const model_t *dev; /* weights in backend memory */
  backend_t *b;
  forward_t *fw;
  float *u_mean; /* host [d]: mean unembedding row (Eq. 9's centring) */
  int width_max; /* max(d, H*hd, d_mlp) */

  /* pass buffers (backend memory), sized for cap_rows rows */
  int cap_rows;
  float *x, *xn, *q, *k, *v, *att, *proj, *h, *h2, *src, *tmp, *scale, *logits;
  int *position, *key_start, *n_keys, *key2_start, *n_keys2, *index, *index2, *index3, *ident;
  intervention_t *entries;
  float *dirs, *udirs, *de_out, *logit_out; /* readouts */
  float *metric_out;                        /* [cap_read][5]: logit_metrics' rows */
  int *ptarget, *pfoil;                     /* [cap_prompts]: the chunk's targets and foils */
  int cap_prompts, cap_read;

  /* clean caches: [n_layers][cap_clean][*] */
  int cap_clean;
  float *resid_pre, *resid_mid, *kcache, *vcache;

  /* a full-distribution job's clean log-probs: [cap_lp][vocab], sized for
   * each such job (freed by a job without) */
  float *clean_lp;
  int cap_lp;

  size_t memory_budget;         /* bytes for activations; 0: from the backend */
  size_t held_pass, held_clean; /* bytes of pass and clean buffers held now */
  size_t held_lp;               /* bytes of clean_lp */

  /* stores of clean sources kept after runs with a source_key (see
   * engine_job_t), one per job: [N_SITES * n_layers] each; dstore NULL in
   * a free slot */
  kept_t kept[ENGINE_KEPT_MAX];
  unsigned long kept_clock; /* stamps kept_t.used */

  int profile; /* HYDRA_ENGINE_PROFILE */
  double phase_s[PH_N], run_s;
  long runs, passes;
};

static int drop_all_kept(engine_t *e);
static size_t kept_bytes(const engine_t *e);

/* Adds the time since *t0 to a phase and restarts the clock. */
static void phase(engine_t *e, int ph, double *t0) {
  if (!e->profile)
    return;
  double t = now_s();
  e->phase_s[ph] += t - *t0;
  *t0 = t;
}

static void print_profile(const engine_t *e) {
  if (!e->profile || e->runs == 0)
    return;
  fprintf(stderr, "hydra engine profile (%s backend): %ld runs, %ld variant passes, %.3f s\n",
          e->b->ops->name, e->runs, e->passes, e->run_s);
  double sum = 0;
  for (int i = 0; i < PH_N; i++) {
    sum += e->phase_s[i];
    fprintf(stderr, "  %-24s %9.3f s %5.1f%%\n", phase_names[i], e->phase_s[i],
            e->run_s > 0 ? 100.0 * e->phase_s[i] / e->run_s : 0.0);
  }
  fprintf(stderr, "  %-24s %9.3f s %5.1f%%\n", "other", e->run_s - sum,
          e->run_s > 0 ? 100.0 * (e->run_s - sum) / e->run_s : 0.0);
}

/* ---------------------------------------------------------------- slots -- */

int engine_n_slots(const model_config_t *cfg) {
  return 1 + 2 * cfg->n_layers;
}

void engine_slot_name(int slot, char *buf, size_t len) {
  if (slot == 0)
    snprintf(buf, len, "embed");
  else
    snprintf(buf, len, "%s.%d", slot % 2 ? "attn" : "mlp", (slot - 1) / 2);
}

int engine_component_slot(const component_t *c) {
  switch (c->kind) {
  case COMPONENT_EMBED:
    return 0;
  case COMPONENT_ATTN:
  case COMPONENT_HEAD:
    return 1 + 2 * c->layer;
  case COMPONENT_MLP:
  case COMPONENT_NEURON:
    return 2 + 2 * c->layer;
  }
  return 0;
}

/* The sub-stage a component's variant joins at: 2L the attention of layer
 * L, 2L + 1 its MLP; the embeddings join at 0 (before attention 0). */
static int component_stage(const component_t *c) {
  int slot = engine_component_slot(c);
  return slot == 0 ? 0 : slot - 1;
}

static site_t component_site(const component_t *c) {
  switch (c->kind) {
  case COMPONENT_EMBED:
    return SITE_EMBED;
  case COMPONENT_ATTN:
    return SITE_ATTN;
  case COMPONENT_HEAD:
    return SITE_HEAD;
  case COMPONENT_MLP:
    return SITE_MLP;
  case COMPONENT_NEURON:
    return SITE_NEURON;
  }
  return SITE_ATTN;
}

static int site_width(const model_config_t *c, site_t s) {
  return s == SITE_HEAD ? c->n_heads * c->head_dim : s == SITE_NEURON ? c->d_mlp : c->d_model;
}

static void component_cols(const model_config_t *cfg, const component_t *c, int *c0, int *c1) {
  if (c->kind == COMPONENT_HEAD) {
    *c0 = c->index * cfg->head_dim;
    *c1 = *c0 + cfg->head_dim;
  } else if (c->kind == COMPONENT_NEURON) {
    *c0 = c->index;
    *c1 = c->index + 1;
  } else {
    *c0 = 0;
    *c1 = cfg->d_model;
  }
}

static int method_needs_source(method_kind_t k) {
  return k == METHOD_RESAMPLE || k == METHOD_PATCH || k == METHOD_MEAN;
}

long engine_job_variants(const engine_job_t *job) {
  long per_prompt = 0;
  for (int m = 0; m < job->n_methods; m++)
    per_prompt += job->methods[m].kind == METHOD_RESAMPLE ? job->samples : 1;
  return per_prompt * job->n_components * job->n_prompts;
}

/* ------------------------------------------------------ deterministic rng -- */

static uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

static uint64_t mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  return splitmix(splitmix(splitmix(seed ^ 0x68796472ULL) ^ a) ^ (b * 0x100000001B3ULL) ^ c);
}

/* A standard normal draw from a counter (Box-Muller). */
static float gaussian(uint64_t key) {
  uint64_t r1 = splitmix(key), r2 = splitmix(key ^ 0xD1B54A32D192ED03ULL);
  double u1 = ((r1 >> 11) + 1.0) / 9007199254740993.0, u2 = (r2 >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* ------------------------------------------------------------- buffers -- */

static void release(engine_t *e, void *p) {
  if (p)
    e->b->ops->free(e->b, p);
}

static void free_pass_buffers(engine_t *e) {
  void *all[] = {e->x,      e->xn,       e->q,         e->k,          e->v,          e->att,
                 e->proj,   e->h,        e->h2,        e->src,        e->tmp,        e->scale,
                 e->logits, e->position, e->key_start, e->n_keys,     e->key2_start, e->n_keys2,
                 e->index,  e->index2,   e->index3,    e->ident,      e->entries,    e->dirs,
                 e->udirs,  e->de_out,   e->logit_out, e->metric_out, e->ptarget,    e->pfoil};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    release(e, all[i]);
  e->x = e->xn = e->q = e->k = e->v = e->att = e->proj = e->h = e->h2 = e->src = e->tmp = NULL;
  e->scale = e->logits = e->dirs = e->udirs = e->de_out = e->logit_out = NULL;
  e->metric_out = NULL;
  e->ptarget = e->pfoil = NULL;
  e->position = e->key_start = e->n_keys = e->key2_start = e->n_keys2 = NULL;
  e->index = e->index2 = e->index3 = e->ident = NULL;
  e->entries = NULL;
  e->cap_rows = e->cap_prompts = e->cap_read = 0;
  e->held_pass = 0;
}

static void free_clean_buffers(engine_t *e) {
  release(e, e->resid_pre);
  release(e, e->resid_mid);
  release(e, e->kcache);
  release(e, e->vcache);
  e->resid_pre = e->resid_mid = e->kcache = e->vcache = NULL;
  e->cap_clean = 0;
  e->held_clean = 0;
}

/* Pass buffers for `rows` rows, `prompts` prompts and `reads` readout rows. */
static int ensure_pass_buffers(engine_t *e, int rows, int prompts, int reads, char *err) {
  if (rows <= e->cap_rows && prompts <= e->cap_prompts && reads <= e->cap_read)
    return 0;
  if (rows < e->cap_rows)
    rows = e->cap_rows;
  if (prompts < e->cap_prompts)
    prompts = e->cap_prompts;
  if (reads < e->cap_read)
    reads = e->cap_read;
  free_pass_buffers(e);
  const model_config_t *c = &e->host->cfg;
  const size_t r = (size_t)rows, d = c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, fm = c->d_mlp, w = e->width_max,
               f = sizeof(float), in = sizeof(int), n_slots = engine_n_slots(c);
  const size_t n_idx = r > (size_t)reads * n_slots ? r : (size_t)reads * n_slots;
  backend_t *b = e->b;
  int failed = 0;
  size_t held = 0;
#define ALLOC(field, bytes)                                                                        \
  do {                                                                                             \
    if (!failed && !(e->field = b->ops->alloc(b, bytes)))                                          \
      failed = 1;                                                                                  \
    else if (!failed)                                                                              \
      held += (bytes);                                                                             \
  } while (0)
  ALLOC(x, r * d * f);
  ALLOC(xn, r * d * f);
  ALLOC(q, r * q * f);
  ALLOC(k, r * kv * f);
  ALLOC(v, r * kv * f);
  ALLOC(att, r * q * f);
  ALLOC(proj, r * d * f);
  ALLOC(h, r * fm * f);
  ALLOC(h2, r * fm * f);
  ALLOC(src, r * w * f);
  ALLOC(tmp, r * w * f);
  ALLOC(scale, r * f);
  ALLOC(logits, (size_t)LOGIT_ROWS * c->vocab_size * f);
  ALLOC(position, r * in);
  ALLOC(key_start, r * in);
  ALLOC(n_keys, r * in);
  ALLOC(key2_start, r * in);
  ALLOC(n_keys2, r * in);
  ALLOC(index, n_idx * in);
  ALLOC(index2, n_idx * in);
  ALLOC(index3, n_idx * in);
  ALLOC(ident, n_idx * in);
  ALLOC(entries, r * sizeof(intervention_t));
  ALLOC(dirs, (size_t)prompts * d * f);
  ALLOC(udirs, (size_t)prompts * d * f);
  ALLOC(de_out, (size_t)reads * n_slots * f);
  ALLOC(logit_out, (size_t)reads * f);
  ALLOC(metric_out, (size_t)reads * 5 * f);
  ALLOC(ptarget, (size_t)prompts * in);
  ALLOC(pfoil, (size_t)prompts * in);
  if (!failed) {
    int *ident = malloc(n_idx * in);
    if (!ident)
      failed = 1;
    for (size_t i = 0; ident && i < n_idx; i++)
      ident[i] = (int)i;
    if (ident && b->ops->upload(b, e->ident, ident, n_idx * in) != 0)
      failed = 1;
    free(ident);
  }
  if (failed) {
    free_pass_buffers(e);
    return err_set(err, "out of backend memory for a pass of %d rows: %s", rows, b->err);
  }
  e->cap_rows = rows;
  e->cap_prompts = prompts;
  e->cap_read = reads;
  e->held_pass = held;
  return 0;
}

static int ensure_clean_buffers(engine_t *e, int rows, char *err) {
  if (rows <= e->cap_clean)
    return 0;
  free_clean_buffers(e);
  const model_config_t *c = &e->host->cfg;
  const size_t n = (size_t)c->n_layers * rows, d = c->d_model,
               kv = (size_t)c->n_kv_heads * c->head_dim, f = sizeof(float);
  backend_t *b = e->b;
  int failed = 0;
  size_t held = 0;
  ALLOC(resid_pre, n * d * f);
  ALLOC(resid_mid, n * d * f);
  ALLOC(kcache, n * kv * f);
  ALLOC(vcache, n * kv * f);
#undef ALLOC
  if (failed) {
    free_clean_buffers(e);
    return err_set(err, "out of backend memory for the clean cache of %d rows: %s", rows, b->err);
  }
  e->cap_clean = rows;
  e->held_clean = held;
  return 0;
}

/* The clean log-probs of `lp` prompts (0: none): held at the size a job
 * needs, so a smaller or logit-only job gives the memory back. */
static int ensure_lp_buffer(engine_t *e, int lp, char *err) {
  if (lp == e->cap_lp || (lp > 0 && lp < e->cap_lp && 2 * lp >= e->cap_lp))
    return 0;
  release(e, e->clean_lp);
  e->clean_lp = NULL;
  e->cap_lp = 0;
  e->held_lp = 0;
  if (lp == 0)
    return 0;
  const size_t bytes = sizeof(float) * (size_t)lp * e->host->cfg.vocab_size;
  if (!(e->clean_lp = e->b->ops->alloc(e->b, bytes)))
    return err_set(err, "out of backend memory for the clean log-probs of %d prompts: %s", lp,
                   e->b->err);
  e->cap_lp = lp;
  e->held_lp = bytes;
  return 0;
}

/* Backend bytes one row of a pass and of the clean cache take (the buffers
 * above; readouts sized as if every row were one). */
static size_t bytes_per_row(const engine_t *e) {
  const model_config_t *c = &e->host->cfg;
  const size_t d = c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, fm = c->d_mlp, w = e->width_max,
               ns = engine_n_slots(c), L = c->n_layers;
  const size_t pass = 4 * (3 * d + 2 * q + 2 * kv + 2 * fm + 2 * w + 1) + 4 * 5 + 4 * 4 * ns +
                      sizeof(intervention_t) + 4 * (2 * d + ns + 1) + 4 * 5 + 4 * 2;
  const size_t clean = 4 * L * (2 * d + 2 * kv);
  return pass + clean;
}

void engine_set_memory_budget(engine_t *e, size_t bytes) {
  e->memory_budget = bytes;
}

/* Bytes of backend memory a run may take (pass and clean buffers, its store
 * of clean outputs, other jobs' kept stores); 0: unknown (a host backend
 * without a set budget). */
static size_t memory_total(engine_t *e) {
  /* what the backend could give: free memory plus what this engine holds */
  const size_t avail = e->b->ops->memory_available(e->b);
  size_t budget = 0;
  if (avail > 0)
    budget = (size_t)((double)(avail + e->held_pass + e->held_clean + e->held_lp + kept_bytes(e)) *
                      ENGINE_MEMORY_SHARE);
  if (e->memory_budget > 0 && (budget == 0 || e->memory_budget < budget))
    budget = e->memory_budget;
  return budget;
}

/* Rows per pass within the budget, less `reserved` bytes held for the job
 * (its store of clean outputs). */
static int pass_rows(engine_t *e, int longest, size_t reserved, size_t *bytes) {
  const size_t per_row = bytes_per_row(e);
  size_t budget = memory_total(e);
  if (budget > 0)
    budget = budget > reserved ? budget - reserved : 0;
  long rows = budget > 0 ? (long)(budget / per_row) : ENGINE_DEFAULT_ROWS;
  if (rows > ENGINE_MAX_ROWS)
    rows = ENGINE_MAX_ROWS;
  if (rows < longest)
    rows = longest;
  if (rows < 1)
    rows = 1;
  if (bytes)
    *bytes = (size_t)rows * per_row;
  return (int)rows;
}

int engine_pass_rows(engine_t *e, int longest, size_t *bytes) {
  return pass_rows(e, longest, 0, bytes);
}

const char *engine_precision(const engine_t *e, int tf32) {
  return e->b->ops->set_precision(e->b, tf32) ? "tf32" : "fp32";
}

engine_t *engine_create(const model_t *m, backend_t *b, char *err) {
  if (m->cfg.parallel_residual) {
    err_set(err, "the engine does not support parallel attention and MLP (family %s)",
            m->cfg.family);
    return NULL;
  }
  engine_t *e = calloc(1, sizeof(*e));
  if (!e) {
    err_set(err, "out of memory");
    return NULL;
  }
  e->host = m;
  e->b = b;
  const char *prof = getenv("HYDRA_ENGINE_PROFILE");
  e->profile = prof && atoi(prof) > 0;
  const model_config_t *c = &m->cfg;
  e->width_max = c->d_model;
  if (c->n_heads * c->head_dim > e->width_max)
    e->width_max = c->n_heads * c->head_dim;
  if (c->d_mlp > e->width_max)
    e->width_max = c->d_mlp;
  if (!(e->fw = forward_create(m, b, err)))
    goto fail;
  e->dev = forward_weights(e->fw);
  e->u_mean = calloc((size_t)c->d_model, sizeof(float));
  double *acc = calloc((size_t)c->d_model, sizeof(double));
  if (!e->u_mean || !acc) {
    free(acc);
    err_set(err, "out of memory");
    goto fail;
  }
  for (int t = 0; t < c->vocab_size; t++)
    for (int i = 0; i < c->d_model; i++)
      acc[i] += m->unembed[(size_t)t * c->d_model + i];
  for (int i = 0; i < c->d_model; i++)
    e->u_mean[i] = (float)(acc[i] / c->vocab_size);
  free(acc);
  return e;
fail:
  engine_destroy(e);
  return NULL;
}

void engine_destroy(engine_t *e) {
  if (!e)
    return;
  print_profile(e);
  drop_all_kept(e);
  free_pass_buffers(e);
  free_clean_buffers(e);
  ensure_lp_buffer(e, 0, NULL);
  forward_destroy(e->fw);
  free(e->u_mean);
  free(e);
}

/* ------------------------------------------------------------------ run -- */

typedef struct {
  int prompt, cprompt; /* global and chunk-local prompt */
  int component, method, sample;
  int source; /* resample/patch source prompt; -1 */
  int stage;  /* the sub-stage it joins at */
  int p0;     /* first recomputed position */
  int rows, base;
  long order;
} variant_t;

/* Sums over the samples of one (prompt, component, method). */
typedef struct {
  int count;
  double total, direct, comp, comp_attn, comp_mlp, logit, inv, logprob, prob, kl, rank, diff;
  double *delta; /* [n_slots] */
} accum_t;

typedef struct {
  engine_t *e;
  const engine_job_t *job;
  const engine_sink_t *sink;
  const model_config_t *cfg;
  int n_slots, d;
  int full_logits;  /* metrics need the whole distribution */
  int lp_prompts;   /* when full_logits: most prompts in a chunk (clean_lp) */
  long *prompt_row; /* [n_prompts + 1] */

  /* [N_SITES * n_layers]: clean outputs at intervened positions, or NULL:
   * in backend memory (dstore, read by the intervention op for resample and
   * patch) and, when a mean is asked for, on the host (store) */
  float **dstore, **store;
  float **mean; /* same index: [max_k][width] means aligned from the end */
  int max_k;

  int *target, *foil; /* [n_prompts] */
  float *clean_logit, *clean_inv, *clean_diff;

  /* the chunk */
  int c0, c1, clean_rows;
  int *clean_start; /* [chunk prompts] */
  float *clean_out; /* [n_slots][chunk prompts][d]: component outputs at the final row */
  float *clean_de;  /* [chunk prompts][n_slots] */
  /* when full_logits: per chunk prompt the target's clean log-prob (the
   * clean distribution itself stays in backend memory, e->clean_lp) */
  float *clean_target_logprob;
  float *dirs_host, *udirs_host;
  float *norm_bias_term;
  accum_t *acc; /* [chunk prompts][n_components][n_methods] */
  double *acc_delta;

  long done, total;
  char *err;
} run_t;

static int store_index(const run_t *R, site_t s, int layer) {
  return (int)s * R->cfg->n_layers + (layer < 0 ? 0 : layer);
}

static int n_positions(const run_t *R, int prompt) {
  return R->job->position_offsets[prompt + 1] - R->job->position_offsets[prompt];
}

static int final_row(const run_t *R, int cprompt) {
  return R->clean_start[cprompt] + R->job->lengths[R->c0 + cprompt] - 1;
}

/* Gathers rows of a backend buffer and brings them to the host. */
static int download_rows(run_t *R, float *host, const float *buf, int width, const int *rows,
                         int n) {
  backend_t *b = R->e->b;
  if (n == 0)
    return 0;
  if (b->ops->upload(b, R->e->index2, rows, (size_t)n * sizeof(int)) ||
      b->ops->gather_rows(b, R->e->tmp, buf, R->e->index2, n, width) ||
      b->ops->download(b, host, R->e->tmp, (size_t)n * width * sizeof(float)))
    return err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  return 0;
}

/* ---- the clean pass: captures ---- */

/* Stores the clean outputs of a site at every intervened position of the
 * chunk's prompts, when some component needs them as a source. */
static int capture_sources(run_t *R, site_t site, int layer, const float *buf) {
  const int idx = store_index(R, site, layer);
  float *dst = R->dstore[idx], *host = R->store[idx];
  if (!dst)
    return 0;
  backend_t *b = R->e->b;
  const int width = site_width(R->cfg, site);
  const int first = R->job->position_offsets[R->c0], n = R->job->position_offsets[R->c1] - first;
  int *rows = malloc(sizeof(int) * (n ? n : 1));
  if (!rows)
    return err_set(R->err, "out of memory");
  for (int cp = 0; cp < R->c1 - R->c0; cp++) {
    const int p = R->c0 + cp, off = R->job->position_offsets[p];
    for (int k = 0; k < n_positions(R, p); k++)
      rows[off - first + k] = R->clean_start[cp] + R->job->position_list[off + k];
  }
  /* gathered in backend memory, in pieces of the index buffer's size; to the
   * host only for the means */
  int rc = 0;
  for (int i = 0; i < n && !rc; i += R->e->cap_rows) {
    const int m = n - i < R->e->cap_rows ? n - i : R->e->cap_rows;
    float *at = dst + (size_t)(first + i) * width;
    if (b->ops->upload(b, R->e->index2, rows + i, (size_t)m * sizeof(int)) ||
        b->ops->gather_rows(b, at, buf, R->e->index2, m, width) ||
        (host && b->ops->download(b, host + (size_t)(first + i) * width, at,
                                  (size_t)m * width * sizeof(float))))
      rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  }
  free(rows);
  return rc;
}

/* Keeps each chunk prompt's final-row output of a slot's component, straight
 * into the slot's block of clean_out. */
static int capture_slot(run_t *R, int keep, int slot, const float *buf) {
  const int np = R->c1 - R->c0;
  if (!keep)
    return 0;
  int *rows = malloc(sizeof(int) * (np ? np : 1));
  if (!rows)
    return err_set(R->err, "out of memory");
  for (int cp = 0; cp < np; cp++)
    rows[cp] = final_row(R, cp);
  const int rc = download_rows(R, R->clean_out + (size_t)slot * np * R->d, buf, R->d, rows, np);
  free(rows);
  return rc;
}

/* ---- interventions ---- */

/* The store row holding the source of one entry of a resample or patch:
 * the clean output of `source` at the position aligned from the end; -1 if
 * the source lacks it. */
static long source_row(const run_t *R, const variant_t *v, int k) {
  const int n_i = n_positions(R, v->prompt), from_end = n_i - 1 - k;
  const int j = v->source, kk = n_positions(R, j) - 1 - from_end;
  return kk < 0 ? -1 : (long)R->job->position_offsets[j] + kk;
}

/* Fills the mean values of one entry (aligned from the end); -1 if no
 * prompt has that position. */
static int mean_values(run_t *R, const variant_t *v, site_t site, int layer, int k, int c0, int c1,
                       float *out) {
  const int width = site_width(R->cfg, site), from_end = n_positions(R, v->prompt) - 1 - k;
  if (from_end >= R->max_k)
    return -1;
  const float *row = R->mean[store_index(R, site, layer)] + (size_t)from_end * width;
  memcpy(out, row + c0, sizeof(float) * (c1 - c0));
  return 0;
}

/* Builds and applies the intervention table of one site of one layer for
 * the first n_joined rows of the pass: entries whose values come from the
 * host (noise, mean) first, then those read from the backend's store of
 * clean outputs (resample, patch), each group one op. */
static int apply_site(run_t *R, const variant_t *vs, int nv, int n_joined, site_t site, int layer,
                      float *buf) {
  const engine_job_t *job = R->job;
  const int width = site_width(R->cfg, site);
  intervention_t *entries = NULL, *stored = NULL;
  float *src = NULL;
  int n = 0, n_stored = 0, n_src = 0, cap = 0, cap_stored = 0, rc = -1;
  for (int i = 0; i < n_joined && i < nv; i++) {
    const variant_t *v = &vs[i];
    const component_t *c = &job->components[v->component];
    if (component_site(c) != site || (site != SITE_EMBED && c->layer != layer))
      continue;
    const method_t *m = &job->methods[v->method];
    const int from_store = m->kind == METHOD_RESAMPLE || m->kind == METHOD_PATCH;
    int c0, c1;
    component_cols(R->cfg, c, &c0, &c1);
    const int off = job->position_offsets[v->prompt];
    for (int k = 0; k < n_positions(R, v->prompt); k++) {
      const int t = job->position_list[off + k];
      intervention_t e = {.row = v->base + (t - v->p0), .col0 = c0, .col1 = c1};
      if (from_store) {
        const long row = source_row(R, v, k);
        if (row < 0)
          continue; /* the source has no such position: leave it */
        if ((size_t)row * width + c0 > (size_t)INT_MAX) {
          err_set(R->err, "the store of clean outputs is too large for one intervention table");
          goto done;
        }
        if (n_stored == cap_stored) {
          cap_stored = cap_stored ? 2 * cap_stored : 64;
          intervention_t *ne = realloc(stored, sizeof(*ne) * cap_stored);
          if (!ne) {
            err_set(R->err, "out of memory");
            goto done;
          }
          stored = ne;
        }
        e.kind = INTERVENE_SET;
        e.src_offset = (int)((size_t)row * width + c0);
        stored[n_stored++] = e;
        continue;
      }
      if (n == cap) {
        cap = cap ? 2 * cap : 64;
        intervention_t *ne = realloc(entries, sizeof(*ne) * cap);
        float *ns = realloc(src, sizeof(float) * (size_t)cap * width);
        if (ne)
          entries = ne;
        if (ns)
          src = ns;
        if (!ne || !ns) {
          err_set(R->err, "out of memory");
          goto done;
        }
      }
      e.src_offset = n_src;
      switch (m->kind) {
      case METHOD_ZERO:
        e.kind = INTERVENE_SCALE;
        break;
      case METHOD_SCALE:
        e.kind = INTERVENE_SCALE;
        e.alpha = m->value;
        break;
      case METHOD_NOISE:
        e.kind = INTERVENE_ADD;
        for (int col = c0; col < c1; col++)
          src[n_src + col - c0] =
              m->value *
              gaussian(mix(job->seed, (uint64_t)v->prompt << 20 | (uint64_t)t,
                           (uint64_t)v->component << 8 | (uint64_t)v->method, (uint64_t)col));
        n_src += c1 - c0;
        break;
      default: /* mean */
        e.kind = INTERVENE_SET;
        if (mean_values(R, v, site, layer, k, c0, c1, src + n_src) != 0)
          continue; /* no prompt has that position: leave it */
        n_src += c1 - c0;
        break;
      }
      entries[n++] = e;
    }
  }
  rc = 0;
  backend_t *b = R->e->b;
  intervention_t *dev = R->e->entries;
  if (n && (b->ops->upload(b, dev, entries, sizeof(*entries) * n) ||
            (n_src && b->ops->upload(b, R->e->src, src, sizeof(float) * n_src)) ||
            b->ops->intervene(b, buf, width, dev, n, R->e->src)))
    rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  if (!rc && n_stored &&
      (b->ops->upload(b, dev + n, stored, sizeof(*stored) * n_stored) ||
       b->ops->intervene(b, buf, width, dev + n, n_stored, R->dstore[store_index(R, site, layer)])))
    rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
done:
  free(entries);
  free(stored);
  free(src);
  return rc;
}

/* ---- one pass over the layers ----
 * Clean mode (vs == NULL): every row of the chunk from the embeddings, with
 * captures. Variant mode: rows join at their sub-stage from the clean cache. */

typedef struct {
  int rows, n_read;
  int *join;      /* [2 n_layers]: rows active at each sub-stage */
  int *join_read; /* [2 n_layers]: readouts active at each sub-stage */
  int *read_row, *read_prompt;
  int keep_slots; /* clean mode: each slot's final-row outputs (an emitting clean pass) */
} pass_t;

static int norm_rows(engine_t *e, float *y, float *inv, const float *x, const float *gamma,
                     const float *beta, int rows) {
  const model_config_t *c = &e->host->cfg;
  if (c->norm == NORM_LAYERNORM)
    return e->b->ops->layernorm(e->b, y, inv, x, gamma, beta, rows, c->d_model, c->norm_eps);
  return e->b->ops->rmsnorm(e->b, y, inv, x, gamma, rows, c->d_model, c->norm_eps);
}

/* Direct effects of a slot for the active readouts: de_out[slot][i]. */
static int readout(run_t *R, const pass_t *P, int k, int slot, const float *buf) {
  engine_t *e = R->e;
  const int n = P->join_read[k];
  if (n == 0)
    return 0;
  return e->b->ops->row_dots(e->b, e->de_out + (size_t)slot * P->n_read, e->ident, buf, e->index2,
                             e->dirs, e->index3, n, R->d);
}

static int run_layers(run_t *R, const pass_t *P, const variant_t *vs, int nv) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  const model_config_t *c = R->cfg;
  const model_t *m = e->dev;
  const int clean = vs == NULL, d = c->d_model, q = c->n_heads * c->head_dim,
            kv = c->n_kv_heads * c->head_dim, fm = c->d_mlp;
  const size_t layer_rows = (size_t)e->cap_clean;

  for (int k = 0; k < 2 * c->n_layers; k++) {
    const int L = k / 2, n = P->join[k], prev = k ? P->join[k - 1] : 0;
    const layer_weights_t *w = &m->layers[L];
    float *pre = e->resid_pre + (size_t)L * layer_rows * d;
    float *mid = e->resid_mid + (size_t)L * layer_rows * d;
    if (!clean && n > prev) /* variants joining here start from the clean residual */
      TRY(op->gather_rows(b, e->x + (size_t)prev * d, k % 2 ? mid : pre, e->index + prev, n - prev,
                          d));
    if (n == 0)
      continue;
    if (k % 2 == 0) {
      /* ---- attention of layer L ---- */
      if (k == 0) {
        if (clean) {
          TRY(capture_sources(R, SITE_EMBED, 0, e->x));
          TRY(capture_slot(R, P->keep_slots, 0, e->x));
        } else {
          TRY(apply_site(R, vs, nv, n, SITE_EMBED, 0, e->x));
          TRY(readout(R, P, k, 0, e->x));
        }
      }
      if (clean)
        TRY(op->copy(b, pre, e->x, (size_t)n * d * sizeof(float)));
      float *kl = clean ? e->kcache + (size_t)L * layer_rows * kv : e->k;
      float *vl = clean ? e->vcache + (size_t)L * layer_rows * kv : e->v;
      TRY(norm_rows(e, e->xn, NULL, e->x, w->attn_norm_w, w->attn_norm_b, n));
      TRY(forward_matmul(e->fw, e->q, e->xn, w->wq, w->bq, n, q, d, 0)); /* q[n, H*hd]  */
      TRY(forward_matmul(e->fw, kl, e->xn, w->wk, w->bk, n, kv, d, 0));  /* k[n, KV*hd] */
      TRY(forward_matmul(e->fw, vl, e->xn, w->wv, w->bv, n, kv, d, 0));  /* v[n, KV*hd] */
      if (c->positions == POSITIONS_ROPE) {
        TRY(op->rope(b, e->q, e->position, n, c->n_heads, c->head_dim, c->rotary_dim,
                     c->rope_theta));
        TRY(op->rope(b, kl, e->position, n, c->n_kv_heads, c->head_dim, c->rotary_dim,
                     c->rope_theta));
      }
      const float *kc = e->kcache + (size_t)L * layer_rows * kv;
      const float *vc = e->vcache + (size_t)L * layer_rows * kv;
      TRY(op->attention(b, e->att, e->q, kc, vc, e->key_start, e->n_keys, clean ? NULL : e->k,
                        clean ? NULL : e->v, e->key2_start, e->n_keys2, n, c->n_heads,
                        c->n_kv_heads, c->head_dim)); /* att[n, H*hd] */
      if (clean)
        TRY(capture_sources(R, SITE_HEAD, L, e->att));
      else
        TRY(apply_site(R, vs, nv, n, SITE_HEAD, L, e->att));
      TRY(forward_matmul(e->fw, e->proj, e->att, w->wo, w->bo, n, d, q, 0)); /* proj[n, d] */
      if (clean) {
        TRY(capture_sources(R, SITE_ATTN, L, e->proj));
        TRY(capture_slot(R, P->keep_slots, 1 + 2 * L, e->proj));
      } else {
        TRY(apply_site(R, vs, nv, n, SITE_ATTN, L, e->proj));
        TRY(readout(R, P, k, 1 + 2 * L, e->proj));
      }
      TRY(op->add(b, e->x, e->proj, (size_t)n * d));
    } else {
      /* ---- MLP of layer L ---- */
      if (clean)
        TRY(op->copy(b, mid, e->x, (size_t)n * d * sizeof(float)));
      TRY(norm_rows(e, e->xn, NULL, e->x, w->mlp_norm_w, w->mlp_norm_b, n));
      if (c->mlp == MLP_SWIGLU) {
        TRY(forward_matmul(e->fw, e->h, e->xn, w->w_gate, NULL, n, fm, d, 0));   /* gate[n, F] */
        TRY(forward_matmul(e->fw, e->h2, e->xn, w->w_up, w->b_up, n, fm, d, 0)); /* up[n, F]   */
        TRY(op->swiglu(b, e->h, e->h2, (size_t)n * fm));                         /* h[n, F]    */
      } else {
        TRY(forward_matmul(e->fw, e->h, e->xn, w->w_up, w->b_up, n, fm, d, 0));
        TRY(op->activation(b, e->h, (size_t)n * fm, c->activation));
      }
      if (clean)
        TRY(capture_sources(R, SITE_NEURON, L, e->h));
      else
        TRY(apply_site(R, vs, nv, n, SITE_NEURON, L, e->h));
      TRY(forward_matmul(e->fw, e->proj, e->h, w->w_down, w->b_down, n, d, fm, 0)); /* proj[n, d] */
      if (clean) {
        TRY(capture_sources(R, SITE_MLP, L, e->proj));
        TRY(capture_slot(R, P->keep_slots, 2 + 2 * L, e->proj));
      } else {
        TRY(apply_site(R, vs, nv, n, SITE_MLP, L, e->proj));
        TRY(readout(R, P, k, 2 + 2 * L, e->proj));
      }
      TRY(op->add(b, e->x, e->proj, (size_t)n * d));
    }
  }
  return 0;
fail:
  if (!R->err[0])
    err_set(R->err, "backend %s: %s", op->name, b->err);
  return -1;
}

/* ---- the clean pass of a chunk ---- */

static int clean_pass(run_t *R, int emit) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  const model_config_t *c = R->cfg;
  const engine_job_t *job = R->job;
  const int np = R->c1 - R->c0, rows = R->clean_rows, d = R->d, V = c->vocab_size;
  int *host = malloc(sizeof(int) * (size_t)rows * 4), *join = malloc(sizeof(int) * 2 * c->n_layers);
  int rc = -1;
  if (!host || !join) {
    err_set(R->err, "out of memory");
    goto done;
  }
  int *position = host, *key_start = host + rows, *n_keys = host + 2 * rows, *fin = host + 3 * rows;
  for (int cp = 0, r = 0; cp < np; cp++)
    for (int t = 0; t < job->lengths[R->c0 + cp]; t++, r++) {
      position[r] = t;
      key_start[r] = r - t;
      n_keys[r] = t + 1;
    }
  for (int k = 0; k < 2 * c->n_layers; k++)
    join[k] = rows;
  pass_t P = {.rows = rows, .n_read = 0, .join = join, .join_read = join, .keep_slots = emit};
  const int *ids = job->ids + R->prompt_row[R->c0];
  const size_t ib = sizeof(int) * rows;
  if (op->upload(b, e->position, position, ib) || op->upload(b, e->key_start, key_start, ib) ||
      op->upload(b, e->n_keys, n_keys, ib) || op->upload(b, e->index, ids, ib) ||
      op->embed(b, e->x, e->dev->tok_embed, e->index, e->dev->pos_embed, e->position, rows, d)) {
    err_set(R->err, "backend %s: %s", op->name, b->err);
    goto done;
  }
  if (run_layers(R, &P, NULL, 0) != 0)
    goto done;
  if (!emit) { /* the sources are stored: targets, logits and directions are the emitting pass's */
    rc = 0;
    goto done;
  }

  /* final norm and full logits at each prompt's final row */
  for (int cp = 0; cp < np; cp++)
    fin[cp] = final_row(R, cp);
  float *inv = malloc(sizeof(float) * np);
  if (!inv || op->upload(b, e->index2, fin, sizeof(int) * np) ||
      op->gather_rows(b, e->tmp, e->x, e->index2, np, d) ||
      norm_rows(e, e->xn, e->scale, e->tmp, e->dev->final_norm_w, e->dev->final_norm_b, np) ||
      op->download(b, inv, e->scale, sizeof(float) * np)) {
    free(inv);
    err_set(R->err, "backend %s: %s", op->name, inv ? b->err : "out of memory");
    goto done;
  }
  for (int cp = 0; cp < np; cp++) {
    const int p = R->c0 + cp;
    if (job->targets[p] >= V || (job->foils && job->foils[p] >= V)) {
      free(inv);
      err_set(R->err, "prompt %d: target or foil id outside the vocabulary of %d", p, V);
      goto done;
    }
  }
  /* The argmax, the centred target logit and the target's and foil's logits
   * are reduced where the logits are (logit_stats), and so are the
   * full-distribution metrics' clean terms (logit_metrics: the target's
   * log-prob, and the log-probs kept in clean_lp for the ablated runs' KL):
   * the logits never cross to the host. targets in index, foils in index3,
   * the argmaxes in index2, the stats in tmp, the metrics in metric_out. */
  const int *foils = job->foils ? job->foils + R->c0 : NULL;
  if (op->upload(b, e->index, job->targets + R->c0, sizeof(int) * np) ||
      (foils && op->upload(b, e->index3, foils, sizeof(int) * np))) {
    free(inv);
    err_set(R->err, "backend %s: %s", op->name, b->err);
    goto done;
  }
  for (int c0 = 0; c0 < np; c0 += LOGIT_ROWS) {
    const int n = np - c0 < LOGIT_ROWS ? np - c0 : LOGIT_ROWS;
    if (forward_matmul(e->fw, e->logits, e->xn + (size_t)c0 * d, e->dev->unembed, NULL, n, V, d,
                       0) ||
        op->logit_stats(b, e->index2 + c0, e->tmp + (size_t)3 * c0, e->logits, n, V, e->index + c0,
                        foils ? e->index3 + c0 : NULL) ||
        (R->full_logits &&
         op->logit_metrics(b, e->metric_out + (size_t)5 * c0, e->clean_lp + (size_t)c0 * V,
                           e->logits, n, V, e->ident + c0, e->index, foils ? e->index3 : NULL,
                           NULL))) {
      free(inv);
      err_set(R->err, "backend %s: %s", op->name, b->err);
      goto done;
    }
  }
  int *best = malloc(sizeof(int) * np);
  float *stats = malloc(sizeof(float) * 3 * (size_t)np);
  float *mout = R->full_logits ? malloc(sizeof(float) * 5 * (size_t)np) : NULL;
  if (!best || !stats || (R->full_logits && !mout) ||
      op->download(b, best, e->index2, sizeof(int) * np) ||
      op->download(b, stats, e->tmp, sizeof(float) * 3 * (size_t)np) ||
      (mout && op->download(b, mout, e->metric_out, sizeof(float) * 5 * (size_t)np))) {
    err_set(R->err, "backend %s: %s", op->name,
            best && stats && (mout || !R->full_logits) ? b->err : "out of memory");
    free(best);
    free(stats);
    free(mout);
    free(inv);
    goto done;
  }
  for (int cp = 0; cp < np; cp++) {
    const int p = R->c0 + cp;
    const float *st = stats + (size_t)3 * cp;
    R->target[p] = job->targets[p] >= 0 ? job->targets[p] : best[cp];
    R->foil[p] = foils ? foils[cp] : -1;
    R->clean_logit[p] = st[0];
    R->clean_inv[p] = inv[cp];
    R->clean_diff[p] = R->foil[p] >= 0 ? st[1] - st[2] : 0.0f;
    if (R->full_logits)
      R->clean_target_logprob[cp] = mout[5 * (size_t)cp];
  }
  free(best);
  free(stats);
  free(mout);
  free(inv);
  /* the resolved targets and the foils, for the ablated runs' metrics */
  if (R->full_logits && (op->upload(b, e->ptarget, R->target + R->c0, sizeof(int) * np) ||
                         op->upload(b, e->pfoil, R->foil + R->c0, sizeof(int) * np))) {
    err_set(R->err, "backend %s: %s", op->name, b->err);
    goto done;
  }

  /* frozen-norm target directions and the clean direct effects (Eq. 10) */
  const float *gamma = e->host->final_norm_w, *beta = e->host->final_norm_b;
#pragma omp parallel for schedule(static) if (np > 1)
  for (int cp = 0; cp < np; cp++) {
    const int p = R->c0 + cp;
    const float *u = e->host->unembed + (size_t)R->target[p] * d;
    float *dir = R->dirs_host + (size_t)cp * d, *ud = R->udirs_host + (size_t)cp * d;
    double mean = 0.0, bias = 0.0;
    for (int i = 0; i < d; i++) {
      ud[i] = u[i] - e->u_mean[i];
      dir[i] = gamma[i] * ud[i] * R->clean_inv[p];
      mean += dir[i];
      if (beta)
        bias += (double)beta[i] * ud[i];
    }
    if (c->norm == NORM_LAYERNORM) /* (x - mean x) . w == x . (w - mean w) */
      for (int i = 0; i < d; i++)
        dir[i] -= (float)(mean / d);
    R->norm_bias_term[cp] = (float)bias;
    for (int s = 0; s < R->n_slots; s++) {
      const float *y = R->clean_out + ((size_t)s * np + cp) * d;
      double de = 0.0;
      for (int i = 0; i < d; i++)
        de += (double)y[i] * dir[i];
      R->clean_de[(size_t)cp * R->n_slots + s] = (float)de;
    }
  }
  if (op->upload(b, e->dirs, R->dirs_host, sizeof(float) * (size_t)np * d) ||
      op->upload(b, e->udirs, R->udirs_host, sizeof(float) * (size_t)np * d)) {
    err_set(R->err, "backend %s: %s", op->name, b->err);
    goto done;
  }
  if (emit && R->sink && R->sink->clean) {
    for (int cp = 0; cp < np; cp++) {
      const int p = R->c0 + cp;
      engine_clean_t row = {.prompt = p,
                            .target = R->target[p],
                            .foil = R->foil[p],
                            .logit = R->clean_logit[p],
                            .logit_diff = R->clean_diff[p],
                            .inv_scale = R->clean_inv[p],
                            .norm_bias_term = R->norm_bias_term[cp],
                            .de = R->clean_de + (size_t)cp * R->n_slots};
      row.logprob = R->full_logits ? R->clean_target_logprob[cp] : NAN;
      row.prob = R->full_logits ? expf(row.logprob) : NAN;
      if (R->sink->clean(R->sink->ctx, &row) != 0) {
        err_set(R->err, "cancelled");
        goto done;
      }
    }
  }
  rc = 0;
done:
  free(host);
  free(join);
  return rc;
}

/* ---- a pass of variants ---- */

static void accumulate(run_t *R, const variant_t *v, const float *de_out, int nr, int i,
                       float logit, float inv, const float *metrics) {
  const engine_job_t *job = R->job;
  const int ns = R->n_slots, cp = v->cprompt, p = v->prompt;
  accum_t *a =
      &R->acc[((size_t)cp * job->n_components + v->component) * job->n_methods + v->method];
  const int cslot = engine_component_slot(&job->components[v->component]);
  const float *clean = R->clean_de + (size_t)cp * ns;
  const double rescale = job->norm_scale_ablated ? (double)inv / R->clean_inv[p] : 1.0;
  double comp = 0.0, comp_attn = 0.0, comp_mlp = 0.0, direct = 0.0;
  for (int s = 0; s < ns; s++) {
    const int recomputed = s == 0 ? v->stage == 0 : s - 1 >= v->stage;
    const double de = (recomputed ? de_out[(size_t)s * nr + i] : clean[s]) * rescale;
    const double delta = de - clean[s];
    a->delta[s] += delta;
    if (s == cslot)
      direct = -delta;
    else if (s > cslot) {
      comp += delta;
      if (s % 2)
        comp_attn += delta;
      else
        comp_mlp += delta;
    }
  }
  a->count++;
  a->total += R->clean_logit[p] - logit;
  a->direct += direct;
  a->comp += comp;
  a->comp_attn += comp_attn;
  a->comp_mlp += comp_mlp;
  a->logit += logit;
  a->inv += inv;
  if (metrics) {
    a->logprob += metrics[0];
    a->prob += metrics[1];
    a->kl += metrics[2];
    a->rank += metrics[3];
    a->diff += metrics[4];
  }
}

static int variant_pass(run_t *R, variant_t *vs, int nv) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  const model_config_t *c = R->cfg;
  const engine_job_t *job = R->job;
  const int d = R->d, ns = R->n_slots, V = c->vocab_size, n_stage = 2 * c->n_layers;
  double t0 = e->profile ? now_s() : 0;
  e->passes++;
  int rows = 0;
  for (int i = 0; i < nv; i++) {
    vs[i].base = rows;
    rows += vs[i].rows;
  }
  int *host = malloc(sizeof(int) * ((size_t)rows * 6 + (size_t)nv * 2 + 2 * n_stage));
  float *out = malloc(sizeof(float) * ((size_t)nv * (ns + 2 + (R->full_logits ? 5 : 0))));
  int rc = -1;
  if (!host || !out) {
    err_set(R->err, "out of memory");
    goto done;
  }
  int *position = host, *ks = host + rows, *nk = host + 2 * rows, *ks2 = host + 3 * rows,
      *nk2 = host + 4 * rows, *clean_row = host + 5 * rows, *read_row = host + 6 * rows,
      *read_prompt = read_row + nv, *join = read_prompt + nv, *join_read = join + n_stage;
  for (int i = 0; i < nv; i++) {
    const variant_t *v = &vs[i];
    const int len = job->lengths[v->prompt], start = R->clean_start[v->cprompt];
    for (int t = v->p0; t < len; t++) {
      const int r = v->base + t - v->p0;
      position[r] = t;
      ks[r] = start; /* clean keys/values of positions < p0 */
      nk[r] = v->p0;
      ks2[r] = v->base; /* its own recomputed positions p0..t */
      nk2[r] = t - v->p0 + 1;
      clean_row[r] = start + t;
    }
    read_row[i] = v->base + len - 1 - v->p0;
    read_prompt[i] = v->cprompt;
  }
  for (int k = 0, i = 0; k < n_stage; k++) {
    while (i < nv && vs[i].stage <= k)
      i++;
    join_read[k] = i;
    join[k] = i < nv ? vs[i].base : rows;
  }
  const size_t ib = sizeof(int) * rows;
  if (op->upload(b, e->position, position, ib) || op->upload(b, e->key_start, ks, ib) ||
      op->upload(b, e->n_keys, nk, ib) || op->upload(b, e->key2_start, ks2, ib) ||
      op->upload(b, e->n_keys2, nk2, ib) || op->upload(b, e->index, clean_row, ib) ||
      op->upload(b, e->index2, read_row, sizeof(int) * nv) ||
      op->upload(b, e->index3, read_prompt, sizeof(int) * nv)) {
    err_set(R->err, "backend %s: %s", op->name, b->err);
    goto done;
  }
  pass_t P = {.rows = rows, .n_read = nv, .join = join, .join_read = join_read};
  phase(e, PH_TABLES, &t0);
  if (run_layers(R, &P, vs, nv) != 0)
    goto done;
  phase(e, PH_LAYERS, &t0);

  /* the final norm at each variant's final row; centred target logits; with
   * a full-distribution metric, each run's logits and their metrics against
   * its prompt's clean log-probs, where the logits are (logit_metrics) */
  float *de_out = out, *logit = out + (size_t)nv * ns, *inv = logit + nv, *metrics = inv + nv;
  if (op->gather_rows(b, e->tmp, e->x, e->index2, nv, d) ||
      norm_rows(e, e->xn, e->scale, e->tmp, e->dev->final_norm_w, e->dev->final_norm_b, nv) ||
      op->row_dots(b, e->logit_out, e->ident, e->xn, e->ident, e->udirs, e->index3, nv, d)) {
    err_set(R->err, "backend %s: %s", op->name, b->err);
    goto done;
  }
  for (int c0 = 0; c0 < nv && R->full_logits; c0 += LOGIT_ROWS) {
    const int n = nv - c0 < LOGIT_ROWS ? nv - c0 : LOGIT_ROWS;
    if (forward_matmul(e->fw, e->logits, e->xn + (size_t)c0 * d, e->dev->unembed, NULL, n, V, d,
                       0) ||
        op->logit_metrics(b, e->metric_out + (size_t)5 * c0, NULL, e->logits, n, V, e->index3 + c0,
                          e->ptarget, e->pfoil, e->clean_lp)) {
      err_set(R->err, "backend %s: %s", op->name, b->err);
      goto done;
    }
  }
  if (op->download(b, logit, e->logit_out, sizeof(float) * nv) ||
      op->download(b, inv, e->scale, sizeof(float) * nv) ||
      op->download(b, de_out, e->de_out, sizeof(float) * (size_t)nv * ns) ||
      (R->full_logits && op->download(b, metrics, e->metric_out, sizeof(float) * 5 * (size_t)nv))) {
    err_set(R->err, "backend %s: %s", op->name, b->err);
    goto done;
  }
  phase(e, PH_READOUT, &t0);
  for (int i = 0; i < nv; i++)
    accumulate(R, &vs[i], de_out, nv, i, logit[i], inv[i],
               R->full_logits ? metrics + 5 * (size_t)i : NULL);
  phase(e, PH_ACCUMULATE, &t0);
  rc = 0;
done:
  free(host);
  free(out);
  return rc;
}

/* ---- the run ---- */

static int check_job(const engine_t *e, const engine_job_t *job, char *err) {
  const model_config_t *c = &e->host->cfg;
  if (job->n_prompts < 1)
    return err_set(err, "no prompts");
  if (job->n_components < 0 || job->n_methods < 0 || job->samples < 1)
    return err_set(err, "bad component, method or sample counts");
  for (int p = 0; p < job->n_prompts; p++) {
    const int len = job->lengths[p];
    if (len < 1 || len > c->max_positions)
      return err_set(err, "prompt %d: %d tokens (the model takes 1 to %d)", p, len,
                     c->max_positions);
    const int n = job->position_offsets[p + 1] - job->position_offsets[p];
    if (n < 1 && job->n_components > 0)
      return err_set(err, "prompt %d: no position to intervene at", p);
    for (int k = 0; k < n; k++) {
      const int t = job->position_list[job->position_offsets[p] + k];
      if (t < 0 || t >= len || (k && t <= job->position_list[job->position_offsets[p] + k - 1]))
        return err_set(err, "prompt %d: intervention positions must increase within [0, %d)", p,
                       len);
    }
  }
  long row = 0;
  for (int p = 0; p < job->n_prompts; p++)
    for (int t = 0; t < job->lengths[p]; t++, row++)
      if (job->ids[row] < 0 || job->ids[row] >= c->vocab_size)
        return err_set(err, "prompt %d token %d: id %d is outside the vocabulary [0, %d)", p, t,
                       job->ids[row], c->vocab_size);
  for (int i = 0; i < job->n_components; i++) {
    const component_t *k = &job->components[i];
    const int limit = k->kind == COMPONENT_HEAD ? c->n_heads : c->d_mlp;
    if ((k->kind != COMPONENT_EMBED && (k->layer < 0 || k->layer >= c->n_layers)) ||
        ((k->kind == COMPONENT_HEAD || k->kind == COMPONENT_NEURON) &&
         (k->index < 0 || k->index >= limit)))
      return err_set(err, "component %d is outside the model", i);
  }
  for (int m = 0; m < job->n_methods; m++) {
    const method_t *k = &job->methods[m];
    if (k->kind == METHOD_RESAMPLE && job->n_prompts < 2)
      return err_set(err, "resample needs at least 2 prompts to draw from");
    if (k->kind == METHOD_PATCH && (k->source < 0 || k->source >= job->n_prompts))
      return err_set(err, "patch source %d is not a prompt of the job", k->source);
  }
  return 0;
}

/* Bytes of backend memory the store of clean outputs takes (see alloc_store). */
static size_t store_bytes(const run_t *R) {
  const engine_job_t *job = R->job;
  int needs = 0;
  for (int m = 0; m < job->n_methods; m++)
    needs |= method_needs_source(job->methods[m].kind);
  if (!needs)
    return 0;
  const long n_pos = job->position_offsets[job->n_prompts];
  size_t total = 0;
  for (int i = 0; i < job->n_components; i++) {
    const site_t s = component_site(&job->components[i]);
    int seen = 0;
    for (int k = 0; k < i && !seen; k++)
      seen = component_site(&job->components[k]) == s &&
             (s == SITE_EMBED || job->components[k].layer == job->components[i].layer);
    if (!seen)
      total += sizeof(float) * (size_t)n_pos * site_width(R->cfg, s);
  }
  return total;
}

static void free_store(engine_t *e, float **dstore, float **store, float **mean) {
  if (dstore)
    for (int i = 0; i < N_SITES * e->host->cfg.n_layers; i++) {
      if (dstore[i])
        e->b->ops->free(e->b, dstore[i]);
      free(store[i]);
      free(mean[i]);
    }
  free(dstore);
  free(store);
  free(mean);
}

static void drop_kept(engine_t *e, int i) {
  free_store(e, e->kept[i].dstore, e->kept[i].store, e->kept[i].mean);
  memset(&e->kept[i], 0, sizeof(e->kept[i]));
}

static size_t kept_bytes(const engine_t *e) {
  size_t n = 0;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    n += e->kept[i].bytes;
  return n;
}

/* The slot holding the store kept for a key; -1 if none. */
static int find_kept(const engine_t *e, uint64_t key) {
  for (int i = 0; key && i < ENGINE_KEPT_MAX; i++)
    if (e->kept[i].dstore && e->kept[i].key == key)
      return i;
  return -1;
}

/* Drops every kept store; 0 when there was none. */
static int drop_all_kept(engine_t *e) {
  int n = 0;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    if (e->kept[i].dstore) {
      drop_kept(e, i);
      n++;
    }
  return n > 0;
}

/* Drops the least recently used kept store other than slot `keep`; 0 when
 * there was none to drop. */
static int drop_oldest_kept(engine_t *e, int keep) {
  int old = -1;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    if (i != keep && e->kept[i].dstore && (old < 0 || e->kept[i].used < e->kept[old].used))
      old = i;
  if (old < 0)
    return 0;
  drop_kept(e, old);
  return 1;
}

int engine_kept_sources(const engine_t *e, size_t *bytes) {
  int n = 0;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    n += e->kept[i].dstore != NULL;
  if (bytes)
    *bytes = kept_bytes(e);
  return n;
}

void engine_retain_sources(engine_t *e, const uint64_t *keys, int n_keys) {
  for (int i = 0; i < ENGINE_KEPT_MAX; i++) {
    int live = 0;
    for (int k = 0; k < n_keys && !live; k++)
      live = e->kept[i].dstore && keys[k] == e->kept[i].key;
    if (!live)
      drop_kept(e, i);
  }
}

/* Allocates the store of clean outputs for every (site, layer) some
 * component needs as a source (and its host copy and means for mean
 * ablation), or takes the store a run of the same job kept in slot `kept`
 * (filled; -1: none). */
static int alloc_store(run_t *R, int kept) {
  const engine_job_t *job = R->job;
  const int n_idx = N_SITES * R->cfg->n_layers;
  const long n_pos = job->position_offsets[job->n_prompts];
  int needs = 0, needs_mean = 0;
  for (int m = 0; m < job->n_methods; m++) {
    needs |= method_needs_source(job->methods[m].kind);
    needs_mean |= job->methods[m].kind == METHOD_MEAN;
  }
  R->max_k = 0;
  for (int p = 0; p < job->n_prompts; p++)
    if (n_positions(R, p) > R->max_k)
      R->max_k = n_positions(R, p);
  engine_t *e = R->e;
  if (kept >= 0) {
    R->dstore = e->kept[kept].dstore;
    R->store = e->kept[kept].store;
    R->mean = e->kept[kept].mean;
    memset(&e->kept[kept], 0, sizeof(e->kept[kept])); /* the run holds it now */
    return 0;
  }
  R->dstore = calloc(n_idx, sizeof(float *));
  R->store = calloc(n_idx, sizeof(float *));
  R->mean = calloc(n_idx, sizeof(float *));
  if (!R->dstore || !R->store || !R->mean)
    return err_set(R->err, "out of memory");
  if (!needs)
    return 0;
  for (int i = 0; i < job->n_components; i++) {
    const component_t *c = &job->components[i];
    const site_t s = component_site(c);
    const int idx = store_index(R, s, c->layer);
    if (R->dstore[idx])
      continue;
    const size_t bytes = sizeof(float) * (size_t)n_pos * site_width(R->cfg, s);
    backend_t *b = R->e->b;
    if (!(R->dstore[idx] = b->ops->alloc(b, bytes)))
      return err_set(R->err, "out of backend memory for the clean outputs of %ld positions: %s",
                     n_pos, b->err);
    if (!needs_mean)
      continue;
    R->store[idx] = malloc(bytes);
    R->mean[idx] = calloc((size_t)R->max_k * site_width(R->cfg, s), sizeof(float));
    if (!R->store[idx] || !R->mean[idx])
      return err_set(R->err, "out of memory for the clean outputs of %ld positions", n_pos);
  }
  return 0;
}

/* Means over prompts of each stored output, aligned from the end. */
static void compute_means(run_t *R) {
  const engine_job_t *job = R->job;
  for (int idx = 0; idx < N_SITES * R->cfg->n_layers; idx++) {
    if (!R->store[idx])
      continue;
    const int width = site_width(R->cfg, (site_t)(idx / R->cfg->n_layers));
    double *sum = calloc((size_t)R->max_k * width, sizeof(double));
    int *count = calloc(R->max_k, sizeof(int));
    if (!sum || !count) {
      free(sum);
      free(count);
      continue;
    }
    for (int p = 0; p < job->n_prompts; p++) {
      const int n = n_positions(R, p);
      for (int k = 0; k < n; k++) {
        const float *row = R->store[idx] + (size_t)(job->position_offsets[p] + k) * width;
        const int from_end = n - 1 - k;
        count[from_end]++;
        for (int i = 0; i < width; i++)
          sum[(size_t)from_end * width + i] += row[i];
      }
    }
    for (int k = 0; k < R->max_k; k++)
      for (int i = 0; i < width; i++)
        R->mean[idx][(size_t)k * width + i] =
            count[k] ? (float)(sum[(size_t)k * width + i] / count[k]) : 0.0f;
    free(sum);
    free(count);
  }
}

/* The chunk of prompts starting at c0: clean rows within the budget, and the
 * accumulator within its own. */
static int chunk_end(const run_t *R, int c0, int budget) {
  const engine_job_t *job = R->job;
  const long per_prompt = (long)job->n_components * job->n_methods * (R->n_slots + 16);
  int c1 = c0, rows = 0;
  while (c1 < job->n_prompts) {
    if (c1 > c0 && (rows + job->lengths[c1] > budget ||
                    (long)(c1 - c0 + 1) * per_prompt > ACCUMULATOR_FLOATS ||
                    (R->lp_prompts > 0 && c1 - c0 + 1 > R->lp_prompts)))
      break;
    rows += job->lengths[c1++];
  }
  return c1;
}

/* The chunks of prompts [c0, c1) (as the run walks them, the last cut at c1):
 * widens *max_np and *max_rows to the largest one's prompts and rows;
 * returns how many there are. */
static int chunk_sizes(const run_t *R, int c0, int c1, int budget, int *max_np, int *max_rows) {
  int n = 0;
  for (int a = c0; a < c1; n++) {
    int b = chunk_end(R, a, budget);
    if (b > c1)
      b = c1;
    if (b - a > *max_np)
      *max_np = b - a;
    if (R->prompt_row[b] - R->prompt_row[a] > *max_rows)
      *max_rows = (int)(R->prompt_row[b] - R->prompt_row[a]);
    a = b;
  }
  return n;
}

/* Every variant of the chunk's prompts, sorted by the sub-stage they join at
 * (stably: a counting sort over the 2 n_layers stages). */
static variant_t *chunk_variants(run_t *R, long *n_out) {
  const engine_job_t *job = R->job;
  const int n_stage = 2 * R->cfg->n_layers;
  long n = 0;
  for (int m = 0; m < job->n_methods; m++)
    n += job->methods[m].kind == METHOD_RESAMPLE ? job->samples : 1;
  n *= (long)job->n_components * (R->c1 - R->c0);
  variant_t *vs = malloc(sizeof(variant_t) * (n ? n : 1)),
            *sorted = malloc(sizeof(variant_t) * (n ? n : 1));
  long *at = calloc((size_t)n_stage + 1, sizeof(long));
  if (!vs || !sorted || !at) {
    free(vs);
    free(sorted);
    free(at);
    return NULL;
  }
  long i = 0;
  for (int p = R->c0; p < R->c1; p++)
    for (int c = 0; c < job->n_components; c++)
      for (int m = 0; m < job->n_methods; m++) {
        const method_t *method = &job->methods[m];
        const int samples = method->kind == METHOD_RESAMPLE ? job->samples : 1;
        for (int s = 0; s < samples; s++, i++) {
          variant_t *v = &vs[i];
          v->prompt = p;
          v->cprompt = p - R->c0;
          v->component = c;
          v->method = m;
          v->sample = s;
          v->source = -1;
          if (method->kind == METHOD_PATCH)
            v->source = method->source;
          else if (method->kind == METHOD_RESAMPLE) {
            const int r = (int)(mix(job->seed, (uint64_t)p, (uint64_t)c, (uint64_t)s) %
                                (uint64_t)(job->n_prompts - 1));
            v->source = r < p ? r : r + 1;
          }
          const int first = job->position_list[job->position_offsets[p]];
          v->stage = job->reuse ? component_stage(&job->components[c]) : 0;
          v->p0 = job->reuse ? first : 0;
          v->rows = job->lengths[p] - v->p0;
          v->order = i;
          at[v->stage + 1]++;
        }
      }
  for (int k = 0; k < n_stage; k++)
    at[k + 1] += at[k];
  for (long j = 0; j < n; j++)
    sorted[at[vs[j].stage]++] = vs[j];
  free(vs);
  free(at);
  *n_out = n;
  return sorted;
}

static int emit_chunk(run_t *R) {
  const engine_job_t *job = R->job;
  const int ns = R->n_slots;
  float *delta = malloc(sizeof(float) * ns);
  if (!delta)
    return err_set(R->err, "out of memory");
  int rc = 0;
  for (int cp = 0; cp < R->c1 - R->c0 && !rc; cp++)
    for (int c = 0; c < job->n_components && !rc; c++)
      for (int m = 0; m < job->n_methods && !rc; m++) {
        const accum_t *a = &R->acc[((size_t)cp * job->n_components + c) * job->n_methods + m];
        const double n = a->count ? a->count : 1;
        for (int s = 0; s < ns; s++)
          delta[s] = (float)(a->delta[s] / n);
        engine_variant_t row = {.prompt = R->c0 + cp,
                                .component = c,
                                .method = m,
                                .samples = a->count,
                                .total_effect = (float)(a->total / n),
                                .direct_effect = (float)(a->direct / n),
                                .compensation = (float)(a->comp / n),
                                .compensation_attn = (float)(a->comp_attn / n),
                                .compensation_mlp = (float)(a->comp_mlp / n),
                                .ablated_logit = (float)(a->logit / n),
                                .inv_scale = (float)(a->inv / n),
                                .logprob = R->full_logits ? (float)(a->logprob / n) : NAN,
                                .prob = R->full_logits ? (float)(a->prob / n) : NAN,
                                .kl = R->full_logits ? (float)(a->kl / n) : NAN,
                                .rank = R->full_logits ? (float)(a->rank / n) : NAN,
                                .logit_diff = R->full_logits ? (float)(a->diff / n) : NAN,
                                .delta_de = delta};
        if (R->sink && R->sink->variant && R->sink->variant(R->sink->ctx, &row) != 0)
          rc = err_set(R->err, "cancelled");
      }
  free(delta);
  return rc;
}

static void free_run(run_t *R) {
  free_store(R->e, R->dstore, R->store, R->mean);
  free(R->prompt_row);
  free(R->target);
  free(R->foil);
  free(R->clean_logit);
  free(R->clean_inv);
  free(R->clean_diff);
  free(R->clean_start);
  free(R->clean_out);
  free(R->clean_de);
  free(R->clean_target_logprob);
  free(R->dirs_host);
  free(R->udirs_host);
  free(R->norm_bias_term);
  free(R->acc);
  free(R->acc_delta);
}

/* Sets up chunk [c0, c1): row offsets and host buffers. */
static int begin_chunk(run_t *R, int c0, int c1) {
  const int np = c1 - c0, ns = R->n_slots, d = R->d;
  R->c0 = c0;
  R->c1 = c1;
  R->clean_rows = (int)(R->prompt_row[c1] - R->prompt_row[c0]);
  for (int cp = 0; cp < np; cp++)
    R->clean_start[cp] = (int)(R->prompt_row[c0 + cp] - R->prompt_row[c0]);
  const size_t n_acc = (size_t)np * R->job->n_components * R->job->n_methods;
  memset(R->acc, 0, sizeof(accum_t) * n_acc);
  memset(R->acc_delta, 0, sizeof(double) * n_acc * ns);
  for (size_t i = 0; i < n_acc; i++)
    R->acc[i].delta = R->acc_delta + i * ns;
  (void)d;
  return 0;
}

int engine_run(engine_t *e, const engine_job_t *job, const engine_sink_t *sink, char *err) {
  char local[HYDRA_ERR_LEN] = "";
  if (!err)
    err = local;
  err[0] = '\0';
  if (check_job(e, job, err) != 0)
    return -1;
  if (job->prompt_end > 0 && (job->prompt_first < 0 || job->prompt_first >= job->prompt_end ||
                              job->prompt_end > job->n_prompts))
    return err_set(err, "prompt range [%d, %d) is not within the job's %d prompts",
                   job->prompt_first, job->prompt_end, job->n_prompts);
  const model_config_t *c = &e->host->cfg;
  run_t R = {.e = e,
             .job = job,
             .sink = sink,
             .cfg = c,
             .n_slots = engine_n_slots(c),
             .d = c->d_model,
             .err = err};
  R.full_logits = (job->metrics & (METRIC_LOGPROB | METRIC_PROB | METRIC_KL | METRIC_RANK |
                                   METRIC_LOGIT_DIFF)) != 0;
  const int P = job->n_prompts, ns = R.n_slots, d = R.d;
  int longest = 0;
  for (int p = 0; p < P; p++)
    if (job->lengths[p] > longest)
      longest = job->lengths[p];
  const int kept = find_kept(e, job->source_key);
  const size_t lp_row = sizeof(float) * (size_t)c->vocab_size, stored = store_bytes(&R),
               least = stored + (R.full_logits ? lp_row : 0) + (size_t)longest * bytes_per_row(e);
  /* Chunks of a full-distribution job hold at most lp_prompts prompts' clean
   * log-probs in backend memory (the reference of the ablated runs' KL):
   * CLEAN_LP_BYTES, a quarter of the memory, and what the store and a pass
   * over the longest prompt leave. */
  if (R.full_logits) {
    const size_t total = memory_total(e);
    size_t cap = CLEAN_LP_BYTES;
    if (total > 0 && total / 4 < cap)
      cap = total / 4;
    if (total > 0 && total > least && total - least + lp_row < cap)
      cap = total - least + lp_row;
    R.lp_prompts = cap / lp_row > (size_t)P ? P : (int)(cap / lp_row);
    if (R.lp_prompts < 1)
      R.lp_prompts = 1;
  }
  const size_t reserved = stored + lp_row * R.lp_prompts;
  /* A memory budget the job cannot fit in fails the job, never the process. */
  if (e->memory_budget > 0 && least > e->memory_budget)
    return err_set(err,
                   "the job needs at least %.1f MiB of backend memory (clean outputs %.1f MiB, "
                   "a pass over its longest prompt of %d tokens %.1f MiB%s), over the memory "
                   "budget of %.1f MiB",
                   least / 1048576.0, stored / 1048576.0, longest,
                   (double)longest * bytes_per_row(e) / 1048576.0,
                   R.full_logits ? ", a prompt's clean log-probs" : "",
                   e->memory_budget / 1048576.0);
  /* Passes are sized as if other jobs' kept stores were free; those stores
   * then stay only as long as they fit beside this run (least recent first
   * out): keeping them never costs a run rows per pass. */
  const int budget = job->max_rows > 0 ? (job->max_rows > longest ? job->max_rows : longest)
                                       : pass_rows(e, longest, reserved, NULL);
  const size_t total = memory_total(e);
  const size_t own = reserved + (size_t)budget * bytes_per_row(e);
  while (total > 0 && own + kept_bytes(e) - (kept >= 0 ? e->kept[kept].bytes : 0) > total &&
         drop_oldest_kept(e, kept))
    ;
  e->b->ops->set_precision(e->b, job->tf32);
  int rc = -1;
  double t_run = 0; /* HYDRA_ENGINE_PROFILE */
  R.prompt_row = malloc(sizeof(long) * (P + 1));
  R.target = malloc(sizeof(int) * P);
  R.foil = malloc(sizeof(int) * P);
  R.clean_logit = malloc(sizeof(float) * P);
  R.clean_inv = malloc(sizeof(float) * P);
  R.clean_diff = malloc(sizeof(float) * P);
  if (!R.prompt_row || !R.target || !R.foil || !R.clean_logit || !R.clean_inv || !R.clean_diff) {
    err_set(err, "out of memory");
    goto done;
  }
  R.prompt_row[0] = 0;
  for (int p = 0; p < P; p++)
    R.prompt_row[p + 1] = R.prompt_row[p] + job->lengths[p];
  if (alloc_store(&R, kept) != 0) {
    free_store(e, R.dstore, R.store, R.mean); /* the partial one */
    R.dstore = R.store = R.mean = NULL;
    if (!drop_all_kept(e) || alloc_store(&R, -1) != 0) /* other jobs' stores go back: once more */
      goto done;
  }

  /* the largest chunk sizes every buffer once: the chunks from prompt 0 (the
   * sources' passes) and those of the run's range, which can hold more */
  const int first = job->prompt_end > 0 ? job->prompt_first : 0;
  const int end = job->prompt_end > 0 ? job->prompt_end : P;
  int max_np = 0, max_rows = 0;
  const int n_chunks = chunk_sizes(&R, 0, P, budget, &max_np, &max_rows);
  chunk_sizes(&R, first, end, budget, &max_np, &max_rows);
  const size_t n_acc = (size_t)max_np * job->n_components * job->n_methods;
  R.clean_start = malloc(sizeof(int) * max_np);
  R.clean_out = malloc(sizeof(float) * (size_t)max_np * ns * d);
  R.clean_de = malloc(sizeof(float) * (size_t)max_np * ns);
  if (R.full_logits)
    R.clean_target_logprob = malloc(sizeof(float) * max_np);
  R.dirs_host = malloc(sizeof(float) * (size_t)max_np * d);
  R.udirs_host = malloc(sizeof(float) * (size_t)max_np * d);
  R.norm_bias_term = malloc(sizeof(float) * max_np);
  R.acc = malloc(sizeof(accum_t) * (n_acc ? n_acc : 1));
  R.acc_delta = malloc(sizeof(double) * (n_acc ? n_acc : 1) * ns);
  if (!R.clean_start || !R.clean_out || !R.clean_de || (R.full_logits && !R.clean_target_logprob) ||
      !R.dirs_host || !R.udirs_host || !R.norm_bias_term || !R.acc || !R.acc_delta) {
    err_set(err, "out of memory for chunks of %d prompts", max_np);
    goto done;
  }
  const int pass_rows = budget > max_rows ? budget : max_rows;
  const int reads = budget > max_np ? budget : max_np, lp = R.full_logits ? max_np : 0;
  if (ensure_lp_buffer(e, lp, err) != 0 ||
      ensure_pass_buffers(e, pass_rows, max_np, reads, err) != 0 ||
      ensure_clean_buffers(e, max_rows, err) != 0) {
    if (!drop_all_kept(e) || /* other jobs' stores go back: once more */
        ensure_lp_buffer(e, lp, err) != 0 ||
        ensure_pass_buffers(e, pass_rows, max_np, reads, err) != 0 ||
        ensure_clean_buffers(e, max_rows, err) != 0)
      goto done;
  }

  /* Sources from other chunks must be there before any variant runs. */
  t_run = e->profile ? now_s() : 0;
  double t0 = t_run;
  int needs_sources = 0;
  for (int m = 0; m < job->n_methods; m++)
    needs_sources |= method_needs_source(job->methods[m].kind);
  if (kept >= 0) /* filled by an earlier run of this job, means included */
    needs_sources = 0;
  if (needs_sources && n_chunks > 1)
    for (int c0 = 0; c0 < P;) {
      int c1 = chunk_end(&R, c0, budget);
      if (begin_chunk(&R, c0, c1) != 0 || clean_pass(&R, 0) != 0)
        goto done;
      c0 = c1;
    }
  phase(e, PH_CLEAN, &t0);

  R.total = engine_job_variants(job) / P * (end - first);
  if (needs_sources && n_chunks == 1) /* the single chunk's clean pass fills the store */
    needs_sources = 2;
  if (needs_sources == 2 && (first > 0 || end < P)) {
    if (begin_chunk(&R, 0, chunk_end(&R, 0, budget)) != 0 || clean_pass(&R, 0) != 0)
      goto done;
    compute_means(&R);
  }
  phase(e, PH_CLEAN, &t0);
  for (int c0 = first; c0 < end;) {
    int c1 = chunk_end(&R, c0, budget);
    if (c1 > end)
      c1 = end;
    if (begin_chunk(&R, c0, c1) != 0 || clean_pass(&R, 1) != 0)
      goto done;
    if (needs_sources && c0 == first)
      compute_means(&R);
    phase(e, PH_CLEAN, &t0);
    long nv = 0;
    variant_t *vs = chunk_variants(&R, &nv);
    if (!vs) {
      err_set(err, "out of memory");
      goto done;
    }
    phase(e, PH_SORT, &t0);
    for (long i = 0; i < nv;) {
      long j = i, rows = 0;
      while (j < nv && (j == i || rows + vs[j].rows <= budget))
        rows += vs[j++].rows;
      if (variant_pass(&R, vs + i, (int)(j - i)) != 0) {
        free(vs);
        goto done;
      }
      if (e->profile) /* variant_pass timed its own phases */
        t0 = now_s();
      R.done += j - i;
      if (sink && sink->progress && sink->progress(sink->ctx, R.done, R.total) != 0) {
        free(vs);
        err_set(err, "cancelled");
        goto done;
      }
      phase(e, PH_EMIT, &t0);
      i = j;
    }
    free(vs);
    if (emit_chunk(&R) != 0)
      goto done;
    phase(e, PH_EMIT, &t0);
    c0 = c1;
  }
  rc = 0;
  if (job->source_key && stored > 0) { /* complete now: the job's next run starts from it */
    int slot = 0;
    while (slot < ENGINE_KEPT_MAX && e->kept[slot].dstore)
      slot++;
    if (slot == ENGINE_KEPT_MAX) { /* full: the least recently used goes */
      drop_oldest_kept(e, -1);
      slot = 0;
      while (e->kept[slot].dstore)
        slot++;
    }
    e->kept[slot] = (kept_t){.key = job->source_key,
                             .dstore = R.dstore,
                             .store = R.store,
                             .mean = R.mean,
                             .bytes = stored,
                             .used = ++e->kept_clock};
    R.dstore = R.store = R.mean = NULL;
  }
done:
  if (e->profile && t_run > 0) { /* ended runs too: the phases counted them */
    e->run_s += now_s() - t_run;
    e->runs++;
  }
  free_run(&R);
  return rc;
}
