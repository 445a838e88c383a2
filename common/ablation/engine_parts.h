/* engine_parts.h - the parts of the ablation engine, shared by its
 * files and nothing else:
 *   engine.c         the run: chunks of prompts, variants in stage order, rows out
 *   profile.c        HYDRA_ENGINE_PROFILE: host time per phase
 *   passes.c         the clean pass and the variant passes, through the
 *                    transformer's hooks
 *   interventions.c  a site's intervention table for the rows of a pass
 *   sources.c        the store of clean sources (resample, patch, mean) and
 *                    the stores kept between a job's runs
 *   memory.c         backend buffers and the memory budget
 *   sites.c          components, their slots, sites and columns
 *   effects.c        the paper's equations (effects.h) */
#ifndef HYDRA_ENGINE_PARTS_H
#define HYDRA_ENGINE_PARTS_H

#include <stdint.h>

#include "engine.h"
#include "transformer.h"

#define LOGIT_ROWS 256 /* readout rows whose full logits are computed at once */
#define ACCUMULATOR_FLOATS (64L << 20)
/* Backend bytes of clean log-probs (a chunk's prompts x vocab floats, the
 * reference of the KL) a full-distribution job may hold: chunks hold at most
 * this many bytes' worth of prompts (and a quarter of the backend's memory). */
#define CLEAN_LP_BYTES (512L << 20)

/* HYDRA_ENGINE_PROFILE=1: host wall time per phase of engine_run, printed
 * when the engine is destroyed. */
enum { PH_CLEAN, PH_SORT, PH_TABLES, PH_LAYERS, PH_READOUT, PH_ACCUMULATE, PH_EMIT, PH_N };

/* A job's store of clean sources: [HOOK_N * n_layers] per (site, layer). */
typedef struct {
  float **dstore, **store, **mean;
} source_store_t;

typedef struct {
  uint64_t key;
  source_store_t s;
  size_t bytes;       /* backend memory */
  unsigned long used; /* when a run last took or kept it (least recent goes first) */
} kept_t;

struct engine {
  const model_t *host;
  const model_t *dev; /* weights in backend memory */
  backend_t *b;
  transformer_t *tf;
  float *u_mean; /* host [d]: mean unembedding row (Eq. 9's centring) */
  double b_mean; /* the unembedding bias's mean (0: none) */
  int width_max; /* max(d, H*hd, d_mlp) */

  /* pass buffers (backend memory) beside the transformer's, for cap_rows
   * rows, cap_prompts prompts and cap_read readouts */
  int cap_rows, cap_prompts, cap_read;
  float *values;        /* [rows][width_max]: intervention values made on the host */
  float *gathered;      /* [rows][width_max]: rows gathered for a download or the final norm */
  float *final_normed;  /* [reads][d]: the final norm of each readout row */
  float *final_inv;     /* [reads]: its 1/scale */
  float *logits;        /* [LOGIT_ROWS][vocab] */
  float *clean_stats;   /* [prompts][3]: logit_stats of the clean logits */
  int *token_ids;       /* [rows]: the clean pass's ids */
  int *clean_row;       /* [rows]: the clean row a variant row joins from */
  int *row_list;        /* [n_idx]: rows to gather for a download */
  int *read_row;        /* [reads]: each readout's row (a prompt's or variant's final row) */
  int *read_prompt;     /* [reads]: each readout's chunk prompt */
  int *resid_read;      /* [2][reads]: rows and prompts of a residual site's readouts */
  int *ident;           /* [n_idx]: 0, 1, 2, ... */
  int *job_targets;     /* [prompts]: the job's targets (-1: the argmax) and */
  int *job_foils;       /* foils of the chunk */
  int *argmax;          /* [prompts]: the clean argmax */
  int *ptarget, *pfoil; /* [prompts]: the resolved targets and foils */
  intervention_t *entries;
  float *dirs, *udirs, *de_out, *logit_out; /* readouts */
  float *metric_out;                        /* [cap_read][5]: logit_metrics' rows */
  /* shortcuts (shortcuts.c), for cap_rows rows */
  float *shortcut_clean; /* [rows][width_max]: the clean values at a delta's site */
  float *shortcut_resid; /* [rows][d]: a delta's change of the residual; a replace's new rows */
  int *shortcut_index;   /* [3 rows + 3 reads]: their rows' index lists */
  column_span_t *shortcut_spans; /* [cap_spans]: a delta's columns of each row */
  int cap_spans;

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
   * engine_job_t), one per job; s.dstore NULL in a free slot */
  kept_t kept[ENGINE_KEPT_MAX];
  unsigned long kept_clock; /* stamps kept_t.used */

  int profile; /* HYDRA_ENGINE_PROFILE */
  double phase_s[PH_N], run_s;
  long runs, passes;
  long shortcut_runs; /* variants run with a shortcut (engine_shortcut_runs) */
  long narrow_rows; /* delta rows multiplied by their columns alone (engine_shortcut_narrow_rows) */
};

typedef struct {
  int prompt, cprompt; /* global and chunk-local prompt */
  int component;       /* the unit */
  int method, sample;
  int k;         /* a grid's position (index into the prompt's list); -1: all of them */
  int source;    /* resample/patch source prompt; -1 */
  int stage;     /* the sub-stage it joins at */
  int shortcut;  /* SHORTCUT_*: how it skips its first ablated sub-stage (stage - 1) */
  int final_hit; /* a shortcut's intervened positions include the final one */
  int p0;        /* first recomputed position */
  int rows, base;
  int weight; /* the draws this run stands for (resample's repeated draws) */
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

  /* clean outputs at intervened positions per (site, layer), or NULL: in
   * backend memory (dstore, read by the intervention op for resample and
   * patch) and, when a mean is asked for, on the host (store); mean: the
   * same index, [max_k][width] means aligned from the end */
  source_store_t src;
  int max_k;
  int pattern_stride; /* the longest prompt: a stored pattern row's floats (HOOK_PATTERN) */

  /* per unit: each slot's role in its effects (UNIT_*), and for a
   * residual-stream site the first slot downstream of it (else -1) */
  unsigned char *unit_role; /* [n_units][n_slots] */
  int *unit_resid;          /* [n_units] */

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
  float *unembed_bias_term; /* [chunk prompts]: b[target] - mean b (unembedding bias only) */
  /* [chunk prompts, and a grid's positions of each][n_units][n_methods] */
  accum_t *acc;
  int *acc_first; /* [chunk prompts]: a prompt's first accumulator run (positions before) */
  double *acc_delta;

  long done, total;
  char *err;
} run_t;

/* ---- shortcuts.c ---- */
/* A variant's first ablated sub-stage, not recomputed: SHORTCUT_DELTA adds
 * its ablated minus clean site values through the sub-stage's output
 * projection (a head, a neuron) to the clean residual after it;
 * SHORTCUT_REPLACE sets the residual to the clean one before it plus the
 * ablated output (attn.L, mlp.L replaced whole). */
enum { SHORTCUT_NONE, SHORTCUT_DELTA, SHORTCUT_REPLACE };
int shortcut_kind(const run_t *R, int unit, int method, int *stage);
int shortcut_needs_store(const engine_job_t *job, const model_config_t *cfg, const component_t *c);
/* Inside a pass's join at `stage`: the shortcut variants vs[i0, i1) joining
 * there get their residual rows (after the clean rows were gathered into
 * resid) and their skipped slot's direct effect in de_out[stage][i]. */
int shortcut_join(run_t *R, const variant_t *vs, int i0, int i1, int stage, float *resid, int n,
                  int n_read);

/* ---- sites.c ---- */
/* a slot's role in a unit's effects (effects_add_role) */
enum { UNIT_UNTOUCHED, UNIT_OWN, UNIT_DOWNSTREAM };
int component_stage(const model_config_t *cfg, const component_t *c);
int unit_stage(const engine_job_t *job, const model_config_t *cfg, int u);
int resid_first_downstream(const component_t *c);
int unit_roles(run_t *R);
int method_needs_source(method_kind_t k);

/* Inline: asked per variant and site in every pass. The hook site a
 * component is intervened at and that site's layer (resid_post.L below the
 * last layer is resid_pre.L+1: the same vector, so its variants join one
 * sub-stage later); a site's width; the columns of the site a component
 * covers; a (site, layer)'s index in a source store; a prompt's intervened
 * positions; a chunk prompt's final row in the clean pass; a unit's
 * components. */
static inline hook_site_t component_site(const model_config_t *cfg, const component_t *c,
                                         int *layer) {
  *layer = c->layer < 0 ? 0 : c->layer;
  switch (c->kind) {
  case COMPONENT_EMBED:
    return HOOK_EMBED;
  case COMPONENT_ATTN:
    return HOOK_ATTN_OUT;
  case COMPONENT_HEAD:
    return HOOK_ATTN_HEADS;
  case COMPONENT_MLP:
    return HOOK_MLP_OUT;
  case COMPONENT_NEURON:
    return HOOK_MLP_HIDDEN;
  case COMPONENT_Q:
    return HOOK_Q;
  case COMPONENT_K:
    return HOOK_K;
  case COMPONENT_V:
    return HOOK_V;
  case COMPONENT_PATTERN:
    return HOOK_PATTERN;
  case COMPONENT_RESID_PRE:
    return HOOK_RESID_PRE;
  case COMPONENT_RESID_MID:
    return HOOK_RESID_MID;
  case COMPONENT_RESID_POST:
    if (c->layer + 1 < cfg->n_layers) {
      *layer = c->layer + 1;
      return HOOK_RESID_PRE;
    }
    return HOOK_RESID_POST;
  }
  return HOOK_ATTN_OUT;
}

static inline int is_resid(const component_t *c) {
  return c->kind == COMPONENT_RESID_PRE || c->kind == COMPONENT_RESID_MID ||
         c->kind == COMPONENT_RESID_POST;
}

static inline int unit_first(const engine_job_t *job, int u) {
  return job->unit_first ? job->unit_first[u] : u;
}

static inline int unit_end(const engine_job_t *job, int u) {
  return job->unit_first ? job->unit_first[u + 1] : u + 1;
}

/* The job's prompts and then its source-only prompts. */
static inline int n_all_prompts(const engine_job_t *job) {
  return job->n_prompts + (job->n_sources > 0 ? job->n_sources : 0);
}

static inline int n_units(const engine_job_t *job) {
  return job->unit_first ? job->n_units : job->n_components;
}

static inline int site_width(const model_config_t *c, hook_site_t s) {
  return s == HOOK_ATTN_HEADS || s == HOOK_Q ? c->n_heads * c->head_dim
         : s == HOOK_K || s == HOOK_V        ? c->n_kv_heads * c->head_dim
         : s == HOOK_MLP_HIDDEN              ? c->d_mlp
                                             : c->d_model;
}

static inline void component_cols(const model_config_t *cfg, const component_t *c, int *c0,
                                  int *c1) {
  if (c->kind == COMPONENT_HEAD || c->kind == COMPONENT_Q || c->kind == COMPONENT_K ||
      c->kind == COMPONENT_V) {
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

static inline int store_index(const model_config_t *c, hook_site_t s, int layer) {
  return (int)s * c->n_layers + (layer < 0 ? 0 : layer);
}

static inline int n_positions(const run_t *R, int prompt) {
  return R->job->position_offsets[prompt + 1] - R->job->position_offsets[prompt];
}

/* The runs a prompt's accumulators hold: its grid cells (positions or
 * spans), or 1. */
static inline int prompt_runs(const run_t *R, int prompt) {
  const engine_job_t *job = R->job;
  if (!job->each_position)
    return 1;
  return job->cell_offsets ? job->cell_offsets[prompt + 1] - job->cell_offsets[prompt]
                           : n_positions(R, prompt);
}

/* The prompt's listed positions [*k0, *k1) (indices into its list) that
 * grid run k intervenes at: a span's, one position's, or (k < 0) all. */
static inline void run_positions(const run_t *R, int prompt, int k, int *k0, int *k1) {
  const engine_job_t *job = R->job;
  if (k < 0) {
    *k0 = 0;
    *k1 = n_positions(R, prompt);
  } else if (job->cell_offsets) {
    const int c = job->cell_offsets[prompt] + k, off = job->position_offsets[prompt];
    *k0 = job->cell_start[c] - off;
    *k1 = job->cell_start[c + 1] - off;
  } else {
    *k0 = k;
    *k1 = k + 1;
  }
}

/* The key a grid run's rows carry as their position: the position, or the
 * span's index. */
static inline int run_key(const run_t *R, int prompt, int k) {
  const engine_job_t *job = R->job;
  return job->cell_offsets ? job->cell_key[job->cell_offsets[prompt] + k]
                           : job->position_list[job->position_offsets[prompt] + k];
}

static inline int final_row(const run_t *R, int cprompt) {
  return R->clean_start[cprompt] + R->job->lengths[R->c0 + cprompt] - 1;
}

/* The floats per position of a (site, layer)'s store of clean sources: the
 * site's width, or for attention patterns every head's row of up to
 * pattern_stride keys. */
static inline int store_width(const run_t *R, hook_site_t s) {
  return s == HOOK_PATTERN ? R->cfg->n_heads * R->pattern_stride : site_width(R->cfg, s);
}

/* ---- memory.c ---- */
void free_pass_buffers(engine_t *e);
void free_clean_buffers(engine_t *e);
int ensure_pass_buffers(engine_t *e, int rows, int prompts, int reads, char *err);
int ensure_clean_buffers(engine_t *e, int rows, char *err);
int ensure_lp_buffer(engine_t *e, int lp, char *err);
size_t bytes_per_row(const engine_t *e);
size_t memory_total(engine_t *e);
int pass_rows(engine_t *e, int longest, size_t reserved, size_t *bytes);

/* ---- sources.c ---- */
int capture_sources(run_t *R, hook_site_t site, int layer, const float *buf);
long source_row(const run_t *R, const variant_t *v, int k);
int mean_values(run_t *R, const variant_t *v, hook_site_t site, int layer, int k, int c0, int c1,
                float *out);
size_t store_bytes(const run_t *R);
int alloc_store(run_t *R, int kept);
void free_store(engine_t *e, source_store_t *s);
void compute_means(run_t *R);
size_t kept_bytes(const engine_t *e);
int find_kept(const engine_t *e, uint64_t key);
int drop_all_kept(engine_t *e);
int drop_oldest_kept(engine_t *e, int keep);
void keep_store(run_t *R, size_t bytes);

/* ---- interventions.c ---- */
/* row_map (NULL: none): a pass row's row of buf, -1 to leave it out. */
int apply_site(run_t *R, const variant_t *vs, int nv, int n_joined, hook_site_t site, int layer,
               float *buf, const int *row_map);

/* Attention patterns (pattern.L.H) of layer L, inside the transformer's
 * pattern hook: the clean pass reads every head's row at the chunk's
 * intervened positions into the store (when a patch, resample or mean
 * needs them; to the host too for a mean); a variant pass scales its
 * heads' rows (zero, scale), sets its source's (patch, resample) or the
 * prompts' mean row (mean). */
int capture_patterns(run_t *R, int layer);
int apply_patterns(run_t *R, const variant_t *vs, int nv, int n_joined, int layer);

/* Causal tracing's noise at HOOK_EMBED of the clean pass (the first n rows):
 * the corrupted run every variant joins from. */
int apply_trace(run_t *R, int n, float *buf);

/* ---- passes.c ---- */
int download_rows(run_t *R, float *host, const float *buf, int width, const int *rows, int n);
int clean_pass(run_t *R, int emit);
int variant_pass(run_t *R, variant_t *vs, int nv);

/* ---- profile.c ---- */
double engine_now(void);
void engine_phase(engine_t *e, int ph, double *t0);
void engine_print_profile(const engine_t *e);

#endif
