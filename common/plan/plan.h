/* plan.h - a job made concrete against one model: prompts tokenised,
 * targets and foils resolved to ids, intervention positions per prompt,
 * components expanded; ready for engine_run.
 *
 * Errors that depend on the model (a layer out of range, a target that is
 * two tokens, a substring not found, an id outside the vocabulary) come back
 * as a job_error_t naming the field; the HTTP layer answers them with 422. */
#ifndef HYDRA_PLAN_H
#define HYDRA_PLAN_H

#include "engine.h"
#include "job.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
  engine_job_t job; /* points into the arrays below */
  /* Engine prompts. With "target": "next" each job prompt of n tokens
   * becomes up to n - 1 readouts: the prefix ending at position t, read at t
   * with the prompt's token t + 1 as target (causal attention: the prefix's
   * run is the full prompt's run up to t); prompt_of/position_of map a
   * readout back (NULL otherwise: engine prompt = job prompt). */
  int n_prompts;
  int *prompt_of, *position_of;
  int n_job_prompts;
  int *lengths, *ids, *targets, *foils;
  int *position_offsets, *position_list; /* [n_prompts + n_sources (+ 1)] */
  /* Paired prompts (plan_pairs): n_sources source-only prompts follow the
   * n_prompts in lengths, ids and positions; pair[i] is prompt i's patch
   * source for "counterfactual" (NULL: no pairs). */
  int n_sources;
  int *pair;
  /* A per-position grid ("positions": {"each": ...}): the positions some
   * prompt intervenes at, increasing (NULL otherwise). */
  int *grid;
  int n_grid;
  /* A grid over named spans ({"each": "spans"}): the span names in order of
   * first appearance (grid holds 0 .. n_spans - 1: a row's position is its
   * span's index) and the engine's cells (engine_job_t.cell_*); NULL
   * otherwise. */
  char **span_names;
  int n_spans;
  int *cell_offsets, *cell_start, *cell_key;
  /* Causal tracing ("trace"): the noise's standard deviation and each run
   * prompt's corrupted positions (its subject's tokens; offsets
   * [n_prompts + 1]); NULL without a trace. */
  float trace_std;
  int *trace_offsets, *trace_list;
  /* Units: what a variant ablates and a result row is keyed by. Each
   * component of the job is one unit, then each group; unit u ablates
   * atoms [unit_first[u], unit_first[u + 1]). */
  component_t *atoms;
  int n_atoms;
  int *unit_first;        /* [n_components + 1] */
  int n_components;       /* units */
  int n_groups;           /* the last n_groups units are the job's groups */
  char **component_names; /* [n_components]: canonical names, then the groups' names */
  method_t *methods;
  int n_methods;
  char **method_names; /* [n_methods] "resample", "scale:0.5", "patch:3" */
  long n_variants;     /* engine_job_variants */
} plan_t;

/* What a plan may take (0: no limit). */
typedef struct {
  int max_prompt_tokens; /* per prompt (tokenizing stops there) */
  long max_variants;     /* engine prompts x variants per prompt */
  size_t max_bytes;      /* the plan's own arrays */
} plan_limits_t;

/* Builds the plan. The tokenizer may be NULL when every prompt and target is
 * given as ids. Returns 0, or -1 with err naming the field. */
int plan_build(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok, plan_t *plan,
               job_error_t *err);

/* plan_build within limits: every size the plan will allocate (prompts,
 * tokens, readouts, positions, variants, bytes) is computed from the
 * document before it is allocated: variants and token-id prompts before
 * anything is tokenized, the rest from the token counts before the
 * positions and readouts are made. Also caps a positions list at the
 * model's context (422). A limit passed is an error with err->too_large set
 * (HTTP 413), naming the field. lim NULL: no limits. */
int plan_build_limited(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok,
                       const plan_limits_t *lim, plan_t *plan, job_error_t *err);

void plan_free(plan_t *plan);

#endif
