/* engine.h - the batched ablation engine.
 *
 * For P prompts and V ablated variants of each, computes the quantities of
 * McGrath et al. (arXiv 2307.15771): the clean centred target logit, every
 * component's direct effect through the final norm with its scale frozen
 * from the clean run (Eq. 10), each variant's total effect (clean minus
 * ablated centred target logit, Eq. 12 with the sign turned), the change of
 * every downstream direct effect, and compensation (Eq. 33).
 *
 * How: a clean pass per chunk of prompts keeps each layer's residuals and
 * keys/values; each variant starts at its first intervened sublayer from the
 * cached residual and recomputes only positions from its first intervened
 * position on, reading earlier keys/values from the clean cache; each layer
 * runs once over all active rows; interventions are one op per site and
 * layer over a table. With reuse off, every variant is a full forward pass
 * (the reference the reuse path is tested against).
 *
 * Slots: direct effects are reported per slot: slot 0 the embeddings, slot
 * 1 + 2L attention layer L, slot 2 + 2L MLP layer L (1 + 2 n_layers slots).
 * A head belongs to its attention slot, a neuron to its MLP slot.
 *
 * Resample/patch/mean sources: the k-th intervened position of a prompt takes
 * its source from the k-th intervened position, counted from the end, of the
 * source prompt (so "last" maps to "last"). Resample draws, per prompt,
 * component and sample, another prompt of the job uniformly (seeded; the
 * same draws whatever the chunking); effects are averaged over samples. */
#ifndef HYDRA_ENGINE_H
#define HYDRA_ENGINE_H

#include <stdint.h>

#include "backend.h"
#include "job.h"
#include "model.h"

typedef struct engine engine_t;

#define ENGINE_TRACE_KEY 0x7472616365ULL /* "trace" */

typedef struct {
  int n_prompts;
  const int *lengths; /* [n_prompts] */
  const int *ids;     /* [sum of lengths], prompts concatenated */
  const int *targets; /* [n_prompts]: target id, or -1 for the clean argmax */
  const int *foils;   /* NULL or [n_prompts]: foil ids for METRIC_LOGIT_DIFF */
  const component_t *components;
  int n_components;
  /* Units, what a variant ablates together and a row is keyed by
   * (engine_variant_t.component): unit u is components [unit_first[u],
   * unit_first[u + 1]). NULL: each component is its own unit (n_units
   * ignored). A unit with a residual-stream site has only that one. */
  const int *unit_first;
  int n_units;
  const method_t *methods;
  int n_methods;
  int samples; /* resample draws (>= 1) */
  uint64_t seed;
  /* Source-only prompts: lengths, ids and positions of n_sources more
   * prompts follow the n_prompts' (a paired dataset's counterfactuals).
   * Their clean outputs are stored as patch sources; they get no rows, no
   * resample draws them, no mean counts them. */
  int n_sources;
  /* [n_prompts]: each prompt's source (an index into the prompts and then
   * the source-only prompts) for METHOD_PATCH with source
   * METHOD_SOURCE_COUNTERFACTUAL; NULL when no method patches from pairs. */
  const int *pair;
  const int *position_offsets; /* [n_prompts + n_sources + 1] */
  /* 0: a variant intervenes at every position of its prompt's list; 1: a
   * per-position grid, one variant per listed position (rows carry it). */
  int each_position;
  /* A grid over spans (with each_position): the cells of run prompt p are
   * cell_offsets[p] .. cell_offsets[p + 1]; cell c intervenes at the listed
   * positions cell_start[c] .. cell_start[c + 1] (indices into
   * position_list, the prompt's cells in order and covering its list) and
   * its rows carry cell_key[c] as their position (the span's index). NULL:
   * every listed position is its own cell. */
  const int *cell_offsets, *cell_start, *cell_key;
  /* Causal tracing: noise of standard deviation trace_std (0: none) added
   * to the embeddings of run prompt p at positions trace_list[
   * trace_offsets[p] .. trace_offsets[p + 1]) in its clean pass, which every
   * variant joins from (so the variant's own intervention comes after
   * it), never to a source-only prompt. Draw of (p, t, column c): trace_std *
   * rng_gaussian(rng_mix(trace_seed, p << 20 | t, ENGINE_TRACE_KEY, c)). */
  float trace_std;
  uint64_t trace_seed;
  const int *trace_offsets, *trace_list;
  const int *position_list; /* per prompt, increasing positions to intervene at */
  unsigned metrics;         /* METRIC_* */
  int norm_scale_ablated;   /* direct effects of ablated runs with their own norm scale */
  int reuse;                /* 0: full recompute of every variant */
  /* Resample draws with replacement; two draws of the same source for the
   * same (prompt, position, unit, method) are one run, computed once and
   * counted twice in the averages. 1: every draw computed (the reference
   * the tests and benchmarks compare with). */
  int each_draw;
  /* 0: a variant whose first ablated sub-stage is an exact update of that
   * sub-stage's clean output skips recomputing it, joining at the next one
   * (with reuse on): a head's or neuron's change through its columns of the
   * output or down projection (sequential residual, no post norm), the
   * whole output of attn.L or mlp.L set by zero, mean, resample or patch
   * (not the last layer's MLP). 1: every ablated sub-stage recomputed (the
   * reference the tests and benchmarks compare with). */
  int whole_stages;
  int max_rows; /* rows per pass; 0: sized from the memory budget (below) */
  int tf32;     /* matrix products on TF32 tensor cores where the backend has them */
  /* Run only the prompts [prompt_first, prompt_end) (a work unit); 0, 0: all.
   * Sources (resample, patch, mean) still come from every prompt of the job,
   * and rows carry the job's prompt indices. */
  int prompt_first, prompt_end;
  /* Nonzero: every run given this key is the same job (prompts, components,
   * methods, positions), e.g. its work units. The engine keeps the job's
   * store of clean sources (resample, patch, mean) in backend memory from one
   * such run to the next instead of recomputing it from a clean pass over
   * every prompt (see engine_retain_sources). 0: nothing kept. */
  uint64_t source_key;
} engine_job_t;

typedef struct {
  int prompt;
  int target, foil;        /* foil -1 when none */
  float logit;             /* centred target logit */
  float logit_diff;        /* target minus foil logit (foil given) */
  float logprob, prob;     /* of the target */
  float inv_scale;         /* the final norm's 1/scale at the final position */
  float norm_bias_term;    /* LayerNorm's beta . u (0 for RMSNorm) */
  float unembed_bias_term; /* the unembedding bias's centred b[target] - mean b (0: none) */
  const float *de;         /* [n_slots] direct effects; they sum with the two bias terms to logit */
} engine_clean_t;

typedef struct {
  int prompt, component, method; /* component: the unit (engine_job_t.unit_first) */
  int position;                  /* a grid's intervened position; -1 otherwise */
  int samples;                   /* variants averaged into this row */
  float total_effect;            /* clean logit - ablated logit */
  /* The unit's own direct-effect drop: summed over its slots for a group;
   * for a residual-stream site, the drop of the residual's own projection
   * on the frozen-norm direction at the final position (the sum of the
   * direct effects of every slot upstream of it, as the site holds them). */
  float direct_effect;
  float compensation; /* sum of downstream direct-effect changes (slots not in the unit) */
  float compensation_attn, compensation_mlp;
  float ablated_logit;                       /* centred target logit of the ablated run */
  float inv_scale;                           /* the ablated run's final-norm 1/scale */
  float logprob, prob, kl, rank, logit_diff; /* when asked for */
  const float *delta_de; /* [n_slots] mean change of each slot's direct effect */
} engine_variant_t;

/* Rows go out through a sink as soon as their chunk is done. A callback
 * returning non-zero stops the run (cancel); engine_run then fails with
 * "cancelled". */
typedef struct {
  void *ctx;
  int (*clean)(void *ctx, const engine_clean_t *row);
  int (*variant)(void *ctx, const engine_variant_t *row);
  int (*progress)(void *ctx, long variants_done, long variants_total);
} engine_sink_t;

/* Uploads the model's weights to the backend once; both must outlive the
 * engine. */
engine_t *engine_create(const model_t *m, backend_t *b, char *err);
void engine_destroy(engine_t *e);

/* Memory for activations: with 0 (the default) a backend that knows its free
 * memory (CUDA) gets passes sized to ENGINE_MEMORY_SHARE of what is free when
 * a job starts, and a host backend keeps passes of ENGINE_DEFAULT_ROWS rows;
 * with bytes > 0, passes are sized to at most that many bytes. Rows per pass
 * stay within [the longest prompt, ENGINE_MAX_ROWS]. */
#define ENGINE_DEFAULT_ROWS 4096
#define ENGINE_MAX_ROWS 65536
#define ENGINE_MEMORY_SHARE 0.8
void engine_set_memory_budget(engine_t *e, size_t bytes);
/* The rows per pass a job without max_rows gets now, and the bytes they take. */
int engine_pass_rows(engine_t *e, int longest, size_t *bytes);
/* Precision a job's matrix products run in on this engine's backend:
 * "fp32" or "tf32" (what the backend grants). */
const char *engine_precision(const engine_t *e, int tf32);

/* Stores of clean sources kept for keyed jobs (engine_job_t.source_key):
 * one per key, at most ENGINE_KEPT_MAX, so jobs whose units interleave (one
 * user's, then another's) each keep theirs. A run sizes its passes as if
 * the other jobs' stores were free, then drops them, least recently used
 * first, until the rest fits its memory beside the run; a full table drops
 * its least recently used store. engine_retain_sources drops every store
 * whose key is not listed (the caller's jobs that have ended);
 * engine_kept_sources counts the stores kept and their backend bytes. */
#define ENGINE_KEPT_MAX 4
void engine_retain_sources(engine_t *e, const uint64_t *keys, int n_keys);
int engine_kept_sources(const engine_t *e, size_t *bytes);

/* Variants this engine ran with a shortcut (engine_job_t.whole_stages 0)
 * since it was created. */
long engine_shortcut_runs(const engine_t *e);

/* Rows of head and neuron shortcuts whose change was multiplied through
 * their own columns of the output or down projection alone (the narrow
 * product, backend op column_products) since the engine was created. */
long engine_shortcut_narrow_rows(const engine_t *e);

/* Runs a job. Errors (bad ids, a patch source without the position, out of
 * backend memory, cancel) fail the run with err filled; rows already given
 * to the sink stay valid. */
int engine_run(engine_t *e, const engine_job_t *job, const engine_sink_t *sink, char *err);

int engine_n_slots(const model_config_t *cfg);
void engine_slot_name(int slot, char *buf, size_t len);
/* The slot a component's direct effect is counted in; -1 for a
 * residual-stream site (not a slot). */
int engine_component_slot(const component_t *c);
/* Number of variants a job runs (resample counts each sample; a grid each
 * position), and those of its prompts [first, end). */
long engine_job_variants(const engine_job_t *job);
long engine_range_variants(const engine_job_t *job, int first, int end);
/* The source prompt of resample draw `sample` of (prompt, unit): any of the
 * job's prompts but `prompt`, the same whatever the chunking. Draws repeat
 * (with replacement); the engine runs each distinct source once. */
int engine_resample_source(const engine_job_t *job, int prompt, int unit, int sample);

#endif
