/* loader_gguf.c - model_load_gguf: a llama-architecture GGUF file (as written
 * by llama.cpp's convert_hf_to_gguf.py) mapped onto model_t.
 *
 * GGUF lists dimensions fastest first, so a projection with ne = [in, out] is
 * row-major [out][in], which is already model_t's layout. Every tensor is
 * dequantised to fp32. The converter permutes the rows of attn_q and attn_k
 * for ggml's RoPE, which rotates adjacent pairs; this loader undoes that, for
 * the rotate_half pairing (i, i + head_dim/2) that Hugging Face and hydra use. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "model.h"

#define ARCH "llama"
#define NAME_LEN 64

/* One tensor the model needs: its name, expected shape (GGUF order) and
 * where it goes; n_heads > 0 marks q/k rows to un-permute. */
typedef struct {
  char name[NAME_LEN];
  int n_dims;
  uint64_t ne[2];
  float *dst;
  int n_heads;
  const gguf_tensor_t *t;
} planned_t;

static int get_int(const gguf_t *g, const char *key, int required, int64_t dflt, int64_t lo,
                   int64_t hi, int *out, char *err) {
  int64_t v = dflt;
  if (gguf_find_key(g, key) >= 0 || required)
    if (gguf_get_int(g, key, &v, err))
      return -1;
  if (v < lo || v > hi)
    return err_set(err, "%s: metadata key %s = %lld is out of range [%lld, %lld]", gguf_path(g),
                   key, (long long)v, (long long)lo, (long long)hi);
  *out = (int)v;
  return 0;
}

static int get_float(const gguf_t *g, const char *key, int required, double dflt, float *out,
                     char *err) {
  double v = dflt;
  if (gguf_find_key(g, key) >= 0 || required)
    if (gguf_get_float(g, key, &v, err))
      return -1;
  *out = (float)v;
  return 0;
}

/* A special-token id, -1 (unset) when absent or outside the vocabulary:
 * llama.cpp's converters write 0xFFFFFFFF for a token the model lacks, and
 * llama.cpp reads any id past the vocabulary as "bad special token" and
 * ignores it (tokenizer_gguf.c does the same for the tokenizer). */
static int get_special_id(const gguf_t *g, const char *key, int vocab_size, int *out, char *err) {
  int64_t v = -1;
  if (gguf_find_key(g, key) >= 0 && gguf_get_int(g, key, &v, err))
    return -1;
  *out = v >= 0 && v < vocab_size ? (int)v : -1;
  return 0;
}

/* Rejects llama variants this loader would silently get wrong. */
static int check_supported(const gguf_t *g, char *err) {
  const char *scaling = NULL;
  float factor = 1.0f;
  int n_experts = 0;
  if (gguf_find_key(g, ARCH ".rope.scaling.type") >= 0 &&
      gguf_get_string(g, ARCH ".rope.scaling.type", &scaling, NULL, err))
    return -1;
  if (get_float(g, ARCH ".rope.scaling.factor", 0, 1.0, &factor, err))
    return -1;
  if (scaling && strcmp(scaling, "none") != 0 && factor != 1.0f)
    return err_set(err, "%s: RoPE scaling '%s' (factor %g) is not supported", gguf_path(g), scaling,
                   (double)factor);
  if (get_int(g, ARCH ".expert_count", 0, 0, 0, INT32_MAX, &n_experts, err))
    return -1;
  if (n_experts > 0)
    return err_set(err, "%s: mixture-of-experts llama (%d experts) is not supported", gguf_path(g),
                   n_experts);
  return 0;
}

static int read_config(const gguf_t *g, model_config_t *c, char *err) {
  const char *path = gguf_path(g);
  memset(c, 0, sizeof(*c));
  snprintf(c->family, sizeof(c->family), "llama");
  if (get_int(g, ARCH ".block_count", 1, 0, 1, INT32_MAX, &c->n_layers, err) ||
      get_int(g, ARCH ".embedding_length", 1, 0, 1, INT32_MAX, &c->d_model, err) ||
      get_int(g, ARCH ".attention.head_count", 1, 0, 1, INT32_MAX, &c->n_heads, err) ||
      get_int(g, ARCH ".attention.head_count_kv", 0, c->n_heads, 1, INT32_MAX, &c->n_kv_heads,
              err) ||
      get_int(g, ARCH ".feed_forward_length", 1, 0, 1, INT32_MAX, &c->d_mlp, err) ||
      get_int(g, ARCH ".context_length", 1, 0, 1, INT32_MAX, &c->max_positions, err) ||
      get_float(g, ARCH ".rope.freq_base", 0, 10000.0, &c->rope_theta, err) ||
      get_float(g, ARCH ".attention.layer_norm_rms_epsilon", 1, 0.0, &c->norm_eps, err))
    return -1;
  if (gguf_find_key(g, ARCH ".attention.key_length") >= 0) {
    if (get_int(g, ARCH ".attention.key_length", 1, 0, 1, INT32_MAX, &c->head_dim, err))
      return -1;
  } else {
    if (c->d_model % c->n_heads)
      return err_set(err,
                     "%s: " ARCH ".embedding_length = %d is not a multiple of " ARCH
                     ".attention.head_count = %d",
                     path, c->d_model, c->n_heads);
    c->head_dim = c->d_model / c->n_heads;
  }
  if (c->head_dim % 2)
    return err_set(err, "%s: head dimension %d is odd; RoPE needs it even", path, c->head_dim);
  int value_length = c->head_dim;
  if (get_int(g, ARCH ".attention.value_length", 0, c->head_dim, 1, INT32_MAX, &value_length, err))
    return -1;
  if (value_length != c->head_dim)
    return err_set(err, "%s: value head size %d differs from key head size %d (not supported)",
                   path, value_length, c->head_dim);
  if (get_int(g, ARCH ".rope.dimension_count", 0, c->head_dim, 1, INT32_MAX, &c->rotary_dim, err))
    return -1;
  c->norm = NORM_RMSNORM;
  c->positions = POSITIONS_ROPE;
  c->mlp = MLP_SWIGLU;
  c->activation = ACT_SILU;

  const gguf_tensor_t *embed = gguf_tensor_find(g, "token_embd.weight");
  if (!embed)
    return err_set(err, "%s: missing tensor token_embd.weight", path);
  if (embed->n_dims != 2 || embed->ne[0] != (uint64_t)c->d_model || embed->ne[1] > INT32_MAX)
    return err_set(err,
                   "%s: tensor token_embd.weight has shape [%llu, %llu] but the config says "
                   "[%d, vocab]",
                   path, (unsigned long long)embed->ne[0], (unsigned long long)embed->ne[1],
                   c->d_model);
  c->vocab_size = (int)embed->ne[1];
  c->tied_unembed = gguf_tensor_find(g, "output.weight") == NULL;
  if (get_special_id(g, "tokenizer.ggml.bos_token_id", c->vocab_size, &c->bos_id, err) ||
      get_special_id(g, "tokenizer.ggml.eos_token_id", c->vocab_size, &c->eos_id, err))
    return -1;
  char inner[HYDRA_ERR_LEN];
  if (model_config_check(c, inner))
    return err_set(err, "%s: %s", path, inner);
  return 0;
}

static planned_t *plan_add(planned_t *p, const char *name, int n_dims, int ne0, int ne1, float *dst,
                           int n_heads) {
  snprintf(p->name, sizeof(p->name), "%s", name);
  p->n_dims = n_dims;
  p->ne[0] = (uint64_t)ne0;
  p->ne[1] = (uint64_t)ne1;
  p->dst = dst;
  p->n_heads = n_heads;
  return p + 1;
}

/* Fills plan (3 + 9 n_layers entries, output.weight only when untied) with
 * names, shapes and, when m is non-NULL, destinations; leaves each entry's
 * `t` alone. Returns the number of entries. */
static int plan_tensors(const model_config_t *c, model_t *m, planned_t *plan) {
  const int d = c->d_model, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim,
            f = c->d_mlp;
  planned_t *p = plan;
  p = plan_add(p, "token_embd.weight", 2, d, c->vocab_size, m ? m->tok_embed : NULL, 0);
  p = plan_add(p, "output_norm.weight", 1, d, 1, m ? m->final_norm_w : NULL, 0);
  if (!c->tied_unembed)
    p = plan_add(p, "output.weight", 2, d, c->vocab_size, m ? m->unembed : NULL, 0);
  for (int l = 0; l < c->n_layers; l++) {
    layer_weights_t *w = m ? &m->layers[l] : NULL;
    char name[NAME_LEN];
#define LAYER(suffix, n_dims, ne0, ne1, field, heads)                                              \
  snprintf(name, sizeof(name), "blk.%d." suffix, l);                                               \
  p = plan_add(p, name, n_dims, ne0, ne1, w ? w->field : NULL, heads)
    LAYER("attn_norm.weight", 1, d, 1, attn_norm_w, 0);
    LAYER("attn_q.weight", 2, d, q, wq, c->n_heads);
    LAYER("attn_k.weight", 2, d, kv, wk, c->n_kv_heads);
    LAYER("attn_v.weight", 2, d, kv, wv, 0);
    LAYER("attn_output.weight", 2, q, d, wo, 0);
    LAYER("ffn_norm.weight", 1, d, 1, mlp_norm_w, 0);
    LAYER("ffn_gate.weight", 2, d, f, w_gate, 0);
    LAYER("ffn_up.weight", 2, d, f, w_up, 0);
    LAYER("ffn_down.weight", 2, f, d, w_down, 0);
#undef LAYER
  }
  return (int)(p - plan);
}

static void format_shape(char *out, size_t size, int n_dims, const uint64_t *ne) {
  int at = snprintf(out, size, "[");
  for (int i = 0; i < n_dims && at > 0 && (size_t)at < size; i++)
    at += snprintf(out + at, size - (size_t)at, "%s%llu", i ? ", " : "", (unsigned long long)ne[i]);
  if (at > 0 && (size_t)at < size)
    snprintf(out + at, size - (size_t)at, "]");
}

/* Every planned tensor is present with its shape and a type hydra decodes,
 * and the file holds no other tensor (rope_freqs, biases, ...). */
static int match_plan(const gguf_t *g, planned_t *plan, int n, char *err) {
  const char *path = gguf_path(g);
  for (int i = 0; i < n; i++) {
    planned_t *p = &plan[i];
    p->t = gguf_tensor_find(g, p->name);
    if (!p->t)
      return err_set(err, "%s: missing tensor %s", path, p->name);
    int same = 1;
    for (int k = 0; k < GGUF_MAX_DIMS; k++)
      same &= p->t->ne[k] == (k < 2 ? p->ne[k] : 1);
    if (!same) {
      char have[128], want[128];
      format_shape(have, sizeof(have), (int)p->t->n_dims, p->t->ne);
      format_shape(want, sizeof(want), p->n_dims, p->ne);
      return err_set(err, "%s: tensor %s has shape %s but the config says %s", path, p->name, have,
                     want);
    }
    if (!gguf_tensor_type_supported(p->t->type))
      return err_set(err, "%s: tensor %s has type %s, which hydra cannot dequantise", path, p->name,
                     gguf_tensor_type_name(p->t->type));
  }
  if (gguf_n_tensors(g) != n)
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
      const char *name = gguf_tensor(g, i)->name;
      int known = 0;
      for (int j = 0; j < n && !known; j++)
        known = strcmp(plan[j].name, name) == 0;
      if (!known)
        return err_set(err, "%s: tensor %s is not part of a llama model hydra supports", path,
                       name);
    }
  return 0;
}

/* llama.cpp's converter stores head row 2i + j (j in {0, 1}) at what Hugging
 * Face calls row j * head_dim/2 + i; this is transformers'
 * LlamaTensorProcessor._reverse_permute_weights. */
static void unpermute_rows(const float *src, float *dst, int n_heads, size_t head_dim,
                           size_t cols) {
  const size_t half = head_dim / 2;
  for (size_t h = 0; h < (size_t)n_heads; h++)
    for (size_t j = 0; j < 2; j++)
      for (size_t i = 0; i < half; i++)
        memcpy(dst + (h * head_dim + j * half + i) * cols, src + (h * head_dim + 2 * i + j) * cols,
               cols * sizeof(float));
}

static int load_planned(const gguf_t *g, const planned_t *p, char *err) {
  const size_t n = (size_t)p->t->n_elements;
  if (!p->n_heads)
    return gguf_tensor_read_f32(g, p->t, p->dst, n, err);
  float *tmp = malloc(n * sizeof(float));
  if (!tmp)
    return err_set(err, "%s: out of memory reading tensor %s", gguf_path(g), p->name);
  int rc = gguf_tensor_read_f32(g, p->t, tmp, n, err);
  if (rc == 0)
    unpermute_rows(tmp, p->dst, p->n_heads, (size_t)p->ne[1] / (size_t)p->n_heads,
                   (size_t)p->ne[0]);
  free(tmp);
  return rc;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct on-disk types of the planned tensors, sorted by name: "F32,Q4_1". */
static void list_types(const planned_t *plan, int n, char *out, size_t size) {
  const char *names[64];
  int n_names = 0;
  for (int i = 0; i < n; i++) {
    const char *name = gguf_tensor_type_name(plan[i].t->type);
    int seen = 0;
    for (int k = 0; k < n_names && !seen; k++)
      seen = strcmp(names[k], name) == 0;
    if (!seen && n_names < 64)
      names[n_names++] = name;
  }
  qsort(names, (size_t)n_names, sizeof(names[0]), cmp_str);
  size_t at = 0;
  out[0] = '\0';
  for (int k = 0; k < n_names && at < size; k++)
    at += (size_t)snprintf(out + at, size - at, "%s%s", k ? "," : "", names[k]);
}

model_t *model_from_gguf(const gguf_t *g, char *err) {
  model_t *m = NULL;
  planned_t *plan = NULL;
  model_config_t cfg;
  const char *arch = NULL;
  const char *file = gguf_path(g);
  if (gguf_get_string(g, "general.architecture", &arch, NULL, err))
    goto fail;
  if (strcmp(arch, ARCH) != 0) {
    err_set(err, "%s: architecture '%s' is not supported (only '" ARCH "')", file, arch);
    goto fail;
  }
  if (check_supported(g, err) || read_config(g, &cfg, err))
    goto fail;
  plan = calloc(3 + 9 * (size_t)cfg.n_layers, sizeof(*plan));
  if (!plan) {
    err_set(err, "%s: out of memory", file);
    goto fail;
  }
  int n = plan_tensors(&cfg, NULL, plan);
  if (match_plan(g, plan, n, err))
    goto fail;
  char inner[HYDRA_ERR_LEN];
  m = model_alloc(&cfg, inner);
  if (!m) {
    err_set(err, "%s: %s", file, inner);
    goto fail;
  }
  plan_tensors(&cfg, m, plan);
  for (int i = 0; i < n; i++)
    if (load_planned(g, &plan[i], err))
      goto fail;
  snprintf(m->path, sizeof(m->path), "%s", file);
  snprintf(m->weights_format, sizeof(m->weights_format), "gguf");
  list_types(plan, n, m->tensor_types, sizeof(m->tensor_types));
  free(plan);
  return m;
fail:
  model_free(m);
  free(plan);
  return NULL;
}
