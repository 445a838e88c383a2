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

hook_site_t component_site(const component_t *c) {
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
  }
  return HOOK_ATTN_OUT;
}

int site_width(const model_config_t *c, hook_site_t s) {
  return s == HOOK_ATTN_HEADS   ? c->n_heads * c->head_dim
         : s == HOOK_MLP_HIDDEN ? c->d_mlp
                                : c->d_model;
}

void component_cols(const model_config_t *cfg, const component_t *c, int *c0, int *c1) {
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

int method_needs_source(method_kind_t k) {
  return k == METHOD_RESAMPLE || k == METHOD_PATCH || k == METHOD_MEAN;
}

long engine_job_variants(const engine_job_t *job) {
  long per_prompt = 0;
  for (int m = 0; m < job->n_methods; m++)
    per_prompt += job->methods[m].kind == METHOD_RESAMPLE ? job->samples : 1;
  return per_prompt * job->n_components * job->n_prompts;
}

int store_index(const model_config_t *c, hook_site_t s, int layer) {
  return (int)s * c->n_layers + (layer < 0 ? 0 : layer);
}

int n_positions(const run_t *R, int prompt) {
  return R->job->position_offsets[prompt + 1] - R->job->position_offsets[prompt];
}

int final_row(const run_t *R, int cprompt) {
  return R->clean_start[cprompt] + R->job->lengths[R->c0 + cprompt] - 1;
}
