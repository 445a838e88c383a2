/* sites.c - components: the slot of their direct effect, the hook site and
 * columns they are intervened at, the sub-stage their variants join at. */
#include <stdio.h>

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
    return 1 + 2 * c->layer;
  case COMPONENT_MLP:
  case COMPONENT_NEURON:
    return 2 + 2 * c->layer;
  }
  return 0;
}

/* The sub-stage a component's variant joins at: 2L the attention of layer
 * L, 2L + 1 its MLP (with a parallel residual the MLP reads the layer's
 * input: 2L too); the embeddings join at 0 (before attention 0). */
int component_stage(const model_config_t *cfg, const component_t *c) {
  const int slot = engine_component_slot(c);
  if (slot == 0)
    return 0;
  return cfg->parallel_residual ? 2 * c->layer : slot - 1;
}

int method_needs_source(method_kind_t k) {
  return k == METHOD_RESAMPLE || k == METHOD_PATCH || k == METHOD_MEAN;
}

long engine_job_variants(const engine_job_t *job) {
  long per_prompt = 0;
  for (int m = 0; m < job->n_methods; m++)
    per_prompt += job->methods[m].kind == METHOD_RESAMPLE ? job->samples : 1;
  return per_prompt * job->n_components * job->n_prompts;
}
