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
  int *position_offsets, *position_list;
  component_t *components;
  int n_components;
  char **component_names; /* [n_components] canonical names */
  method_t *methods;
  int n_methods;
  char **method_names; /* [n_methods] "resample", "scale:0.5", "patch:3" */
  long n_variants;     /* engine_job_variants */
} plan_t;

/* Builds the plan. The tokenizer may be NULL when every prompt and target is
 * given as ids. Returns 0, or -1 with err naming the field. */
int plan_build(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok, plan_t *plan,
               job_error_t *err);

void plan_free(plan_t *plan);

#endif
