/* sites.c - components and units: the slot of their direct effect, the
 * hook site and columns they are intervened at, the sub-stage their
 * variants join at, each slot's role in a unit's effects. */
#include <stdio.h>
#include <stdlib.h>

#include "effects.h"
#include "engine_parts.h"

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
  case COMPONENT_Q:
  case COMPONENT_K:
  case COMPONENT_V:
  case COMPONENT_PATTERN:
    return 1 + 2 * c->layer;
  case COMPONENT_MLP:
  case COMPONENT_NEURON:
    return 2 + 2 * c->layer;
  case COMPONENT_RESID_PRE:
  case COMPONENT_RESID_MID:
  case COMPONENT_RESID_POST:
    return -1;
  }
  return 0;
}

/* The first slot downstream of a residual-stream site: every slot from it
 * on reads the site; those before it are summed in it. */
int resid_first_downstream(const component_t *c) {
  return c->kind == COMPONENT_RESID_PRE   ? 1 + 2 * c->layer
         : c->kind == COMPONENT_RESID_MID ? 2 + 2 * c->layer
                                          : 3 + 2 * c->layer;
}

/* The sub-stage a component's variant joins at: 2L the attention of layer
 * L, 2L + 1 its MLP (with a parallel residual the MLP reads the layer's
 * input: 2L too); the embeddings join at 0 (before attention 0). */
int component_stage(const model_config_t *cfg, const component_t *c) {
  if (is_resid(c)) { /* the sub-stage whose start reaches the site */
    int layer;
    const hook_site_t site = component_site(cfg, c, &layer);
    return site == HOOK_RESID_PRE                              ? 2 * layer
           : site == HOOK_RESID_MID || !cfg->parallel_residual ? 2 * layer + 1
                                                               : 2 * layer;
  }
  const int slot = engine_component_slot(c);
  if (slot == 0)
    return 0;
  return cfg->parallel_residual ? 2 * c->layer : slot - 1;
}

/* A unit joins where its first component does. */
int unit_stage(const engine_job_t *job, const model_config_t *cfg, int u) {
  int stage = 2 * cfg->n_layers;
  for (int a = unit_first(job, u); a < unit_end(job, u); a++) {
    const int s = component_stage(cfg, &job->components[a]);
    if (s < stage)
      stage = s;
  }
  return stage;
}

/* Each unit's slots: its own (their drop is its direct effect), downstream
 * of one of its components and not its own (their changes are its
 * compensation), or untouched. */
int unit_roles(run_t *R) {
  const engine_job_t *job = R->job;
  const int nu = n_units(job), ns = R->n_slots, parallel = R->cfg->parallel_residual;
  R->unit_role = calloc((size_t)(nu ? nu : 1) * ns, 1);
  R->unit_resid = malloc(sizeof(int) * (nu ? nu : 1));
  if (!R->unit_role || !R->unit_resid)
    return err_set(R->err, "out of memory");
  for (int u = 0; u < nu; u++) {
    unsigned char *role = R->unit_role + (size_t)u * ns;
    R->unit_resid[u] = -1;
    for (int a = unit_first(job, u); a < unit_end(job, u); a++) {
      const component_t *c = &job->components[a];
      if (is_resid(c)) {
        R->unit_resid[u] = resid_first_downstream(c);
        for (int s = R->unit_resid[u]; s < ns; s++)
          role[s] = UNIT_DOWNSTREAM;
        continue;
      }
      const int of = engine_component_slot(c);
      role[of] = UNIT_OWN;
      for (int s = 0; s < ns; s++)
        if (role[s] == UNIT_UNTOUCHED && effects_downstream(s, of, parallel))
          role[s] = UNIT_DOWNSTREAM;
    }
    for (int a = unit_first(job, u); a < unit_end(job, u); a++) { /* own wins over downstream */
      const int of = engine_component_slot(&job->components[a]);
      if (of >= 0)
        role[of] = UNIT_OWN;
    }
  }
  return 0;
}

int method_needs_source(method_kind_t k) {
  return k == METHOD_RESAMPLE || k == METHOD_PATCH || k == METHOD_MEAN;
}

long engine_range_variants(const engine_job_t *job, int first, int end) {
  long per_prompt = 0, runs = 0;
  for (int m = 0; m < job->n_methods; m++)
    per_prompt += job->methods[m].kind == METHOD_RESAMPLE ? job->samples : 1;
  for (int p = first; p < end; p++)
    runs += !job->each_position ? 1
            : job->cell_offsets ? job->cell_offsets[p + 1] - job->cell_offsets[p]
                                : job->position_offsets[p + 1] - job->position_offsets[p];
  return per_prompt * n_units(job) * runs;
}

long engine_job_variants(const engine_job_t *job) {
  return engine_range_variants(job, 0, job->n_prompts);
}
