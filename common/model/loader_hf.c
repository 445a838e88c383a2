/* loader_hf.c - the Hugging Face loader: config.json (loader_hf_config.c) +
 * safetensors weights (one model.safetensors, or shards listed by
 * model.safetensors.index.json), mapped onto model_t per family
 * (hf_loaders[]). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "loader_hf_config_internal.h"
#include "safetensors.h"

#define HF_PATH_LEN 2048
#define HF_NAME_LEN 256

/* The safetensors files of one model directory. */
typedef struct {
  char index_path[HF_PATH_LEN]; /* "" when the weights are one model.safetensors */
  json_t *index;
  json_t *weight_map;       /* borrowed from index */
  safetensors_t **shards;   /* one per distinct file */
  const char **shard_names; /* as weight_map spells them; borrowed from index */
  size_t n_shards;
  float *scratch; /* Conv1D weights before transposing */
  size_t scratch_n;
  char types[128];      /* dtypes read, comma-separated */
  size_t values_read;   /* values of the tensors read: the checkpoint's parameter count */
  const json_t *config; /* config.json, parsed (borrowed): keys a family's loader folds in */
  /* A multimodal model's language model: its tensors' names start with
   * lm_prefix where a text model's start with "model.", and its lm_head with
   * lm_head_prefix ("" when the file has none). */
  const char *lm_prefix, *lm_head_prefix;
} hf_weights_t;

/* The file's name for the text model's tensor `name` (in buf when it differs). */
static const char *weights_name(const hf_weights_t *w, const char *name, char *buf, size_t len) {
  if (!w->lm_prefix)
    return name;
  if (strncmp(name, "model.", 6) == 0)
    snprintf(buf, len, "%s%s", w->lm_prefix, name + 6);
  else if (strncmp(name, "lm_head.", 8) == 0)
    snprintf(buf, len, "%s%s", w->lm_head_prefix, name);
  else
    return name;
  return buf;
}

static int join_path(char *buf, const char *dir, const char *name, char *err) {
  int n = snprintf(buf, HF_PATH_LEN, "%s/%s", dir, name);
  if (n < 0 || n >= HF_PATH_LEN)
    return err_set(err, "%s: path too long", dir);
  return 0;
}

/* ---- the safetensors files ---- */

static int weights_add_shard(hf_weights_t *w, const char *dir, const char *name, char *err) {
  char path[HF_PATH_LEN];
  if (join_path(path, dir, name, err))
    return -1;
  safetensors_t *st = safetensors_open(path, err);
  if (!st)
    return -1;
  w->shards[w->n_shards] = st;
  w->shard_names[w->n_shards] = name;
  w->n_shards++;
  return 0;
}

static int shard_name_ok(const char *name) {
  return *name && name[0] != '/' && !strstr(name, "..");
}

static int weights_open_index(hf_weights_t *w, const char *dir, char *err) {
  json_error_t jerr;
  const char *path = w->index_path, *tensor;
  json_t *file;
  w->index = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (!w->index)
    return err_set(err, "%s: not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
  if (!json_is_object(w->index))
    return err_set(err, "%s: not a JSON object", path);
  w->weight_map = json_object_get(w->index, "weight_map");
  if (!w->weight_map)
    return err_set(err, "%s: weight_map is missing", path);
  if (!json_is_object(w->weight_map))
    return err_set(err, "%s: weight_map is not an object", path);
  size_t n = json_object_size(w->weight_map);
  w->shards = calloc(n ? n : 1, sizeof(*w->shards));
  w->shard_names = calloc(n ? n : 1, sizeof(*w->shard_names));
  if (!w->shards || !w->shard_names)
    return err_set(err, "%s: out of memory", path);
  json_object_foreach(w->weight_map, tensor, file) {
    if (!json_is_string(file) || !shard_name_ok(json_string_value(file)))
      return err_set(err, "%s: weight_map.%s is not a file name inside the model directory", path,
                     tensor);
    const char *name = json_string_value(file);
    size_t i = 0;
    while (i < w->n_shards && strcmp(w->shard_names[i], name) != 0)
      i++;
    if (i < w->n_shards)
      continue;
    if (weights_add_shard(w, dir, name, err)) {
      char why[HYDRA_ERR_LEN];
      snprintf(why, sizeof(why), "%s", err ? err : "");
      return err_set(err, "%s (a shard named by %s)", why, path);
    }
  }
  return 0;
}

static int weights_open(hf_weights_t *w, const char *dir, char *err) {
  char single[HF_PATH_LEN];
  if (join_path(single, dir, "model.safetensors", err) ||
      join_path(w->index_path, dir, "model.safetensors.index.json", err))
    return -1;
  if (file_exists(single)) {
    w->index_path[0] = '\0';
    w->shards = calloc(1, sizeof(*w->shards));
    w->shard_names = calloc(1, sizeof(*w->shard_names));
    if (!w->shards || !w->shard_names)
      return err_set(err, "%s: out of memory", dir);
    return weights_add_shard(w, dir, "model.safetensors", err);
  }
  if (file_exists(w->index_path))
    return weights_open_index(w, dir, err);
  return err_set(err, "%s: no model.safetensors nor model.safetensors.index.json", dir);
}

static void weights_close(hf_weights_t *w) {
  for (size_t i = 0; i < w->n_shards; i++)
    safetensors_close(w->shards[i]);
  free(w->shards);
  free(w->shard_names);
  free(w->scratch);
  json_decref(w->index);
}

/* The shard that should hold `name` (per the index), or NULL. */
static safetensors_t *weights_shard_of(const hf_weights_t *w, const char *name) {
  if (!w->weight_map)
    return w->shards[0];
  const char *file = json_string_value(json_object_get(w->weight_map, name));
  for (size_t i = 0; file && i < w->n_shards; i++) {
    if (strcmp(w->shard_names[i], file) == 0)
      return w->shards[i];
  }
  return NULL;
}

static int weights_has(const hf_weights_t *w, const char *text_name) {
  char buf[HF_NAME_LEN];
  const char *name = weights_name(w, text_name, buf, sizeof buf);
  safetensors_t *st = weights_shard_of(w, name);
  return st && safetensors_find(st, name);
}

static const safetensors_tensor_t *weights_get(const hf_weights_t *w, const char *text_name,
                                               safetensors_t **st, char *err) {
  char buf[HF_NAME_LEN];
  const char *name = weights_name(w, text_name, buf, sizeof buf);
  *st = weights_shard_of(w, name);
  if (!*st) {
    err_set(err, "%s: tensor %s is missing from weight_map", w->index_path, name);
    return NULL;
  }
  const safetensors_tensor_t *t = safetensors_find(*st, name);
  if (!t)
    err_set(err, "%s: tensor %s is missing%s", safetensors_path(*st), name,
            w->weight_map ? " (the index says it is here)" : "");
  return t;
}

static void weights_note_type(hf_weights_t *w, safetensors_dtype_t dtype) {
  const char *name = safetensors_dtype_name(dtype);
  size_t len = strlen(name);
  for (const char *p = w->types; (p = strstr(p, name)); p += len) {
    if ((p == w->types || p[-1] == ',') && (p[len] == ',' || p[len] == '\0'))
      return;
  }
  size_t used = strlen(w->types);
  snprintf(w->types + used, sizeof(w->types) - used, "%s%s", used ? "," : "", name);
}

/* Reads tensor `name` into dst after checking its shape is exactly dims. */
static int weights_load(hf_weights_t *w, const char *name, int n_dims, const uint64_t *dims,
                        float *dst, char *err) {
  safetensors_t *st;
  const safetensors_tensor_t *t = weights_get(w, name, &st, err);
  if (!t)
    return -1;
  if (t->n_dims != n_dims || memcmp(t->shape, dims, (size_t)n_dims * sizeof(*dims)) != 0) {
    char have[160], want[160];
    safetensors_format_shape(t->shape, t->n_dims, have, sizeof(have));
    safetensors_format_shape(dims, n_dims, want, sizeof(want));
    return err_set(err, "%s: %s has shape %s but the config says %s", safetensors_path(st), name,
                   have, want);
  }
  if (safetensors_read_f32(st, t, dst, (size_t)t->n_elements, err))
    return -1;
  weights_note_type(w, t->dtype);
  w->values_read += (size_t)t->n_elements;
  return 0;
}

static int load_vector(hf_weights_t *w, const char *name, size_t n, float *dst, char *err) {
  const uint64_t dims[1] = {n};
  return weights_load(w, name, 1, dims, dst, err);
}

static int load_matrix(hf_weights_t *w, const char *name, size_t rows, size_t cols, float *dst,
                       char *err) {
  const uint64_t dims[2] = {rows, cols};
  return weights_load(w, name, 2, dims, dst, err);
}

static float *weights_scratch(hf_weights_t *w, size_t n, char *err) {
  if (n > w->scratch_n) {
    float *p = realloc(w->scratch, n * sizeof(float));
    if (!p) {
      err_set(err, "out of memory for a %zu-element tensor", n);
      return NULL;
    }
    w->scratch = p;
    w->scratch_n = n;
  }
  return w->scratch;
}

/* dst[o][i] = src[i][col0 + o] for o < n_out: a Conv1D [in, out] slice as a
 * Linear [out, in]. */
static void transpose_columns(const float *src, size_t n_in, size_t src_cols, size_t col0,
                              size_t n_out, float *dst) {
  for (size_t i = 0; i < n_in; i++) {
    for (size_t o = 0; o < n_out; o++)
      dst[o * n_in + i] = src[i * src_cols + col0 + o];
  }
}

/* A GPT-2 Conv1D weight, stored [n_in, n_out * n_parts], split into n_parts
 * Linear [n_out, n_in] matrices. */
static int load_conv1d(hf_weights_t *w, const char *name, size_t n_in, size_t n_out, int n_parts,
                       float **dst, char *err) {
  const size_t cols = n_out * (size_t)n_parts;
  float *src = weights_scratch(w, n_in * cols, err);
  if (!src || load_matrix(w, name, n_in, cols, src, err))
    return -1;
  for (int p = 0; p < n_parts; p++)
    transpose_columns(src, n_in, cols, (size_t)p * n_out, n_out, dst[p]);
  return 0;
}

/* A bias of n_parts * n each, split. */
static int load_split_vector(hf_weights_t *w, const char *name, size_t n, int n_parts, float **dst,
                             char *err) {
  float *src = weights_scratch(w, n * (size_t)n_parts, err);
  if (!src || load_vector(w, name, n * (size_t)n_parts, src, err))
    return -1;
  for (int p = 0; p < n_parts; p++)
    memcpy(dst[p], src + (size_t)p * n, n * sizeof(float));
  return 0;
}

static const char *tensor_name(char *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *tensor_name(char *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, HF_NAME_LEN, fmt, ap);
  va_end(ap);
  return buf;
}

/* ---- families ---- */

static int gpt2_load_layer(hf_weights_t *w, const char *h, const model_config_t *c,
                           layer_weights_t *lw, char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp;
  char n[HF_NAME_LEN];
  float *qkv_w[3] = {lw->wq, lw->wk, lw->wv}, *qkv_b[3] = {lw->bq, lw->bk, lw->bv};
  if (load_vector(w, tensor_name(n, "%s.ln_1.weight", h), d, lw->attn_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.ln_1.bias", h), d, lw->attn_norm_b, err) ||
      load_conv1d(w, tensor_name(n, "%s.attn.c_attn.weight", h), d, d, 3, qkv_w, err) ||
      load_split_vector(w, tensor_name(n, "%s.attn.c_attn.bias", h), d, 3, qkv_b, err) ||
      load_conv1d(w, tensor_name(n, "%s.attn.c_proj.weight", h), d, d, 1, &lw->wo, err) ||
      load_vector(w, tensor_name(n, "%s.attn.c_proj.bias", h), d, lw->bo, err) ||
      load_vector(w, tensor_name(n, "%s.ln_2.weight", h), d, lw->mlp_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.ln_2.bias", h), d, lw->mlp_norm_b, err) ||
      load_conv1d(w, tensor_name(n, "%s.mlp.c_fc.weight", h), d, f, 1, &lw->w_up, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.c_fc.bias", h), f, lw->b_up, err) ||
      load_conv1d(w, tensor_name(n, "%s.mlp.c_proj.weight", h), f, d, 1, &lw->w_down, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.c_proj.bias", h), d, lw->b_down, err))
    return -1;
  return 0;
}

static int gpt2_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model;
  /* GPT2LMHeadModel saves "transformer.wte.weight", GPT2Model "wte.weight". */
  const char *p = weights_has(w, "transformer.wte.weight") ? "transformer." : "";
  char n[HF_NAME_LEN], h[HF_NAME_LEN];
  if (load_matrix(w, tensor_name(n, "%swte.weight", p), (size_t)c->vocab_size, d, m->tok_embed,
                  err) ||
      load_matrix(w, tensor_name(n, "%swpe.weight", p), (size_t)c->max_positions, d, m->pos_embed,
                  err))
    return -1;
  for (int l = 0; l < c->n_layers; l++) {
    if (gpt2_load_layer(w, tensor_name(h, "%sh.%d", p, l), c, &m->layers[l], err))
      return -1;
  }
  if (load_vector(w, tensor_name(n, "%sln_f.weight", p), d, m->final_norm_w, err) ||
      load_vector(w, tensor_name(n, "%sln_f.bias", p), d, m->final_norm_b, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", (size_t)c->vocab_size, d, m->unembed, err);
  return 0;
}

static int llama_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                            char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp,
               q = (size_t)c->n_heads * (size_t)c->head_dim,
               kv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
  char n[HF_NAME_LEN];
  const char *a = "self_attn";
  /* With post norms (OLMo-2, Gemma 2/3) post_attention_layernorm is the
   * attention's post norm and the pre-MLP norm is pre_feedforward_layernorm;
   * without (llama, Gemma 1) post_attention_layernorm is the pre-MLP norm. */
  const char *post_attn = "post_attention_layernorm",
             *pre_mlp = c->post_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm";
  if (!c->no_pre_norms &&
      (load_vector(w, tensor_name(n, "model.layers.%d.input_layernorm.weight", l), d,
                   lw->attn_norm_w, err) ||
       load_vector(w, tensor_name(n, "model.layers.%d.%s.weight", l, pre_mlp), d, lw->mlp_norm_w,
                   err)))
    return -1;
  if (c->post_norms &&
      (load_vector(w, tensor_name(n, "model.layers.%d.%s.weight", l, post_attn), d,
                   lw->post_attn_norm_w, err) ||
       load_vector(w, tensor_name(n, "model.layers.%d.post_feedforward_layernorm.weight", l), d,
                   lw->post_mlp_norm_w, err)))
    return -1;
  if (load_matrix(w, tensor_name(n, "model.layers.%d.%s.q_proj.weight", l, a), q, d, lw->wq, err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.%s.k_proj.weight", l, a), kv, d, lw->wk,
                  err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.%s.v_proj.weight", l, a), kv, d, lw->wv,
                  err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.%s.o_proj.weight", l, a), d, q, lw->wo, err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.mlp.gate_proj.weight", l), f, d, lw->w_gate,
                  err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.mlp.up_proj.weight", l), f, d, lw->w_up,
                  err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.mlp.down_proj.weight", l), d, f, lw->w_down,
                  err))
    return -1;
  if (c->qkv_bias &&
      (load_vector(w, tensor_name(n, "model.layers.%d.%s.q_proj.bias", l, a), q, lw->bq, err) ||
       load_vector(w, tensor_name(n, "model.layers.%d.%s.k_proj.bias", l, a), kv, lw->bk, err) ||
       load_vector(w, tensor_name(n, "model.layers.%d.%s.v_proj.bias", l, a), kv, lw->bv, err)))
    return -1;
  if (c->o_bias &&
      load_vector(w, tensor_name(n, "model.layers.%d.%s.o_proj.bias", l, a), d, lw->bo, err))
    return -1;
  const size_t qn = c->qk_norm == QK_NORM_WHOLE ? q : (size_t)c->head_dim,
               kn = c->qk_norm == QK_NORM_WHOLE ? kv : (size_t)c->head_dim;
  if (c->qk_norm && (load_vector(w, tensor_name(n, "model.layers.%d.%s.q_norm.weight", l, a), qn,
                                 lw->q_norm_w, err) ||
                     load_vector(w, tensor_name(n, "model.layers.%d.%s.k_norm.weight", l, a), kn,
                                 lw->k_norm_w, err)))
    return -1;
  return 0;
}

static int llama_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size;
  if (load_matrix(w, "model.embed_tokens.weight", v, d, m->tok_embed, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++) {
    if (llama_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  }
  if (load_vector(w, "model.norm.weight", d, m->final_norm_w, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", v, d, m->unembed, err);
  return 0;
}

/* Rows [first, first + n) of a fused [rows, cols] projection into dst. */
static void copy_rows(float *dst, const float *src, size_t first, size_t n, size_t cols) {
  memcpy(dst, src + first * cols, n * cols * sizeof(float));
}

/* Phi-3: llama's names, with q, k and v fused as qkv_proj (rows q, then k,
 * then v) and gate and up as gate_up_proj (rows gate, then up). */
static int phi3_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                           char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp,
               q = (size_t)c->n_heads * (size_t)c->head_dim,
               kv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
  char n[HF_NAME_LEN];
  float *fused =
      weights_scratch(w, (q + 2 * kv) * d > 2 * f * d ? (q + 2 * kv) * d : 2 * f * d, err);
  if (!fused ||
      load_vector(w, tensor_name(n, "model.layers.%d.input_layernorm.weight", l), d,
                  lw->attn_norm_w, err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.self_attn.qkv_proj.weight", l), q + 2 * kv, d,
                  fused, err))
    return -1;
  copy_rows(lw->wq, fused, 0, q, d);
  copy_rows(lw->wk, fused, q, kv, d);
  copy_rows(lw->wv, fused, q + kv, kv, d);
  if (load_matrix(w, tensor_name(n, "model.layers.%d.self_attn.o_proj.weight", l), d, q, lw->wo,
                  err) ||
      load_vector(w, tensor_name(n, "model.layers.%d.post_attention_layernorm.weight", l), d,
                  lw->mlp_norm_w, err) ||
      load_matrix(w, tensor_name(n, "model.layers.%d.mlp.gate_up_proj.weight", l), 2 * f, d, fused,
                  err))
    return -1;
  copy_rows(lw->w_gate, fused, 0, f, d);
  copy_rows(lw->w_up, fused, f, f, d);
  return load_matrix(w, tensor_name(n, "model.layers.%d.mlp.down_proj.weight", l), d, f, lw->w_down,
                     err);
}

static int phi3_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size;
  if (load_matrix(w, "model.embed_tokens.weight", v, d, m->tok_embed, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++)
    if (phi3_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  if (load_vector(w, "model.norm.weight", d, m->final_norm_w, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", v, d, m->unembed, err);
  return 0;
}

/* GPT-Neo: transformer.h.L.{ln_1, attn.attention.{q,k,v}_proj (no biases),
 * attn.attention.out_proj, ln_2, mlp.c_fc, mlp.c_proj} as nn.Linear. */
static int gpt_neo_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                              char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp;
  char n[HF_NAME_LEN], p[HF_NAME_LEN];
  tensor_name(p, "transformer.h.%d", l);
  if (load_vector(w, tensor_name(n, "%s.ln_1.weight", p), d, lw->attn_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.ln_1.bias", p), d, lw->attn_norm_b, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.attention.q_proj.weight", p), d, d, lw->wq, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.attention.k_proj.weight", p), d, d, lw->wk, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.attention.v_proj.weight", p), d, d, lw->wv, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.attention.out_proj.weight", p), d, d, lw->wo, err) ||
      load_vector(w, tensor_name(n, "%s.attn.attention.out_proj.bias", p), d, lw->bo, err) ||
      load_vector(w, tensor_name(n, "%s.ln_2.weight", p), d, lw->mlp_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.ln_2.bias", p), d, lw->mlp_norm_b, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.c_fc.weight", p), f, d, lw->w_up, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.c_fc.bias", p), f, lw->b_up, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.c_proj.weight", p), d, f, lw->w_down, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.c_proj.bias", p), d, lw->b_down, err))
    return -1;
  return 0;
}

static int gpt_neo_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size;
  if (load_matrix(w, "transformer.wte.weight", v, d, m->tok_embed, err) ||
      load_matrix(w, "transformer.wpe.weight", (size_t)c->max_positions, d, m->pos_embed, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++)
    if (gpt_neo_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  if (load_vector(w, "transformer.ln_f.weight", d, m->final_norm_w, err) ||
      load_vector(w, "transformer.ln_f.bias", d, m->final_norm_b, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", v, d, m->unembed, err);
  return 0;
}

/* StableLM: llama's projection names, LayerNorms with biases
 * (input_layernorm, post_attention_layernorm; with a parallel residual only
 * the first, given to both pre norms), model.norm with a bias. */
static int stablelm_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                               char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp,
               q = (size_t)c->n_heads * (size_t)c->head_dim,
               kv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
  char n[HF_NAME_LEN], p[HF_NAME_LEN];
  tensor_name(p, "model.layers.%d", l);
  if (load_vector(w, tensor_name(n, "%s.input_layernorm.weight", p), d, lw->attn_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.input_layernorm.bias", p), d, lw->attn_norm_b, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.q_proj.weight", p), q, d, lw->wq, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.k_proj.weight", p), kv, d, lw->wk, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.v_proj.weight", p), kv, d, lw->wv, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.o_proj.weight", p), d, q, lw->wo, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.gate_proj.weight", p), f, d, lw->w_gate, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.up_proj.weight", p), f, d, lw->w_up, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.down_proj.weight", p), d, f, lw->w_down, err))
    return -1;
  if (c->qkv_bias &&
      (load_vector(w, tensor_name(n, "%s.self_attn.q_proj.bias", p), q, lw->bq, err) ||
       load_vector(w, tensor_name(n, "%s.self_attn.k_proj.bias", p), kv, lw->bk, err) ||
       load_vector(w, tensor_name(n, "%s.self_attn.v_proj.bias", p), kv, lw->bv, err)))
    return -1;
  /* qk_layernorm: q_layernorm.norms.H.weight, one LayerNorm (no bias) per head */
  const size_t hd = (size_t)c->head_dim;
  for (int h = 0; c->qk_norm && h < c->n_heads; h++)
    if (load_vector(w, tensor_name(n, "%s.self_attn.q_layernorm.norms.%d.weight", p, h), hd,
                    lw->q_norm_w + h * hd, err) ||
        (h < c->n_kv_heads &&
         load_vector(w, tensor_name(n, "%s.self_attn.k_layernorm.norms.%d.weight", p, h), hd,
                     lw->k_norm_w + h * hd, err)))
      return -1;
  if (c->parallel_residual) {
    memcpy(lw->mlp_norm_w, lw->attn_norm_w, d * sizeof(float));
    memcpy(lw->mlp_norm_b, lw->attn_norm_b, d * sizeof(float));
    return 0;
  }
  return load_vector(w, tensor_name(n, "%s.post_attention_layernorm.weight", p), d, lw->mlp_norm_w,
                     err) ||
                 load_vector(w, tensor_name(n, "%s.post_attention_layernorm.bias", p), d,
                             lw->mlp_norm_b, err)
             ? -1
             : 0;
}

static int stablelm_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size;
  if (load_matrix(w, "model.embed_tokens.weight", v, d, m->tok_embed, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++)
    if (stablelm_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  if (load_vector(w, "model.norm.weight", d, m->final_norm_w, err) ||
      load_vector(w, "model.norm.bias", d, m->final_norm_b, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", v, d, m->unembed, err);
  return 0;
}

/* OPT: model.decoder.{embed_tokens, embed_positions (rows 2.. : OPT adds 2
 * to every position id), layers.L.{self_attn_layer_norm, self_attn.{q,k,v,
 * out}_proj, final_layer_norm (the MLP's pre norm; OPT-350m's: after its
 * residual add), fc1, fc2}, final_layer_norm (absent in OPT-350m),
 * project_in and project_out (OPT-350m)}. */
static int opt_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                          char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp;
  char n[HF_NAME_LEN], p[HF_NAME_LEN];
  tensor_name(p, "model.decoder.layers.%d", l);
  if (load_vector(w, tensor_name(n, "%s.self_attn_layer_norm.weight", p), d, lw->attn_norm_w,
                  err) ||
      load_vector(w, tensor_name(n, "%s.self_attn_layer_norm.bias", p), d, lw->attn_norm_b, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.q_proj.weight", p), d, d, lw->wq, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.k_proj.weight", p), d, d, lw->wk, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.v_proj.weight", p), d, d, lw->wv, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.out_proj.weight", p), d, d, lw->wo, err) ||
      load_vector(w, tensor_name(n, "%s.final_layer_norm.weight", p), d, lw->mlp_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.final_layer_norm.bias", p), d, lw->mlp_norm_b, err) ||
      load_matrix(w, tensor_name(n, "%s.fc1.weight", p), f, d, lw->w_up, err) ||
      load_matrix(w, tensor_name(n, "%s.fc2.weight", p), d, f, lw->w_down, err))
    return -1;
  if (c->qkv_bias &&
      (load_vector(w, tensor_name(n, "%s.self_attn.q_proj.bias", p), d, lw->bq, err) ||
       load_vector(w, tensor_name(n, "%s.self_attn.k_proj.bias", p), d, lw->bk, err) ||
       load_vector(w, tensor_name(n, "%s.self_attn.v_proj.bias", p), d, lw->bv, err) ||
       load_vector(w, tensor_name(n, "%s.self_attn.out_proj.bias", p), d, lw->bo, err) ||
       load_vector(w, tensor_name(n, "%s.fc1.bias", p), f, lw->b_up, err) ||
       load_vector(w, tensor_name(n, "%s.fc2.bias", p), d, lw->b_down, err)))
    return -1;
  return 0;
}

static int opt_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size, np = (size_t)c->max_positions,
               e = (size_t)model_embed_width(c);
  float *positions = weights_scratch(w, (np + 2) * d, err);
  if (!positions || load_matrix(w, "model.decoder.embed_tokens.weight", v, e, m->tok_embed, err) ||
      load_matrix(w, "model.decoder.embed_positions.weight", np + 2, d, positions, err))
    return -1;
  memcpy(m->pos_embed, positions + 2 * d, np * d * sizeof(float));
  for (int l = 0; l < c->n_layers; l++)
    if (opt_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  if (c->embed_proj_dim &&
      (load_matrix(w, "model.decoder.project_in.weight", d, e, m->embed_proj_in, err) ||
       load_matrix(w, "model.decoder.project_out.weight", e, d, m->embed_proj_out, err)))
    return -1;
  if (!c->no_final_norm &&
      (load_vector(w, "model.decoder.final_layer_norm.weight", d, m->final_norm_w, err) ||
       load_vector(w, "model.decoder.final_layer_norm.bias", d, m->final_norm_b, err)))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", v, e, m->unembed, err);
  return 0;
}

/* GPT-J rotates q and k in adjacent pairs (2i, 2i + 1) of each head's first
 * rotary_dim dimensions; the transformer pairs halves (i, i + rotary_dim/2).
 * Permuting the rows of wq and wk alike, per head, turns the one into the
 * other: q.k is unchanged, so are the scores and every head's output. */
static void adjacent_to_halves(float *w, const model_config_t *c, float *row_tmp) {
  const size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, half = (size_t)c->rotary_dim / 2;
  for (int h = 0; h < c->n_heads; h++) {
    float *head = w + (size_t)h * hd * d;
    memcpy(row_tmp, head, 2 * half * d * sizeof(float));
    for (size_t i = 0; i < half; i++) {
      memcpy(head + i * d, row_tmp + 2 * i * d, d * sizeof(float));
      memcpy(head + (half + i) * d, row_tmp + (2 * i + 1) * d, d * sizeof(float));
    }
  }
}

/* GPT-J: transformer.h.L.{ln_1, attn.{q,k,v,out}_proj (no biases),
 * mlp.fc_in, mlp.fc_out}; the one ln_1 given to both pre norms. */
static int gptj_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                           char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp;
  char n[HF_NAME_LEN], p[HF_NAME_LEN];
  float *row_tmp = weights_scratch(w, (size_t)c->rotary_dim * d, err);
  tensor_name(p, "transformer.h.%d", l);
  if (!row_tmp || load_vector(w, tensor_name(n, "%s.ln_1.weight", p), d, lw->attn_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.ln_1.bias", p), d, lw->attn_norm_b, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.q_proj.weight", p), d, d, lw->wq, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.k_proj.weight", p), d, d, lw->wk, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.v_proj.weight", p), d, d, lw->wv, err) ||
      load_matrix(w, tensor_name(n, "%s.attn.out_proj.weight", p), d, d, lw->wo, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.fc_in.weight", p), f, d, lw->w_up, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.fc_in.bias", p), f, lw->b_up, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.fc_out.weight", p), d, f, lw->w_down, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.fc_out.bias", p), d, lw->b_down, err))
    return -1;
  adjacent_to_halves(lw->wq, c, row_tmp);
  adjacent_to_halves(lw->wk, c, row_tmp);
  memcpy(lw->mlp_norm_w, lw->attn_norm_w, d * sizeof(float));
  memcpy(lw->mlp_norm_b, lw->attn_norm_b, d * sizeof(float));
  return 0;
}

static int gptj_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size;
  if (load_matrix(w, "transformer.wte.weight", v, d, m->tok_embed, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++)
    if (gptj_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  if (load_vector(w, "transformer.ln_f.weight", d, m->final_norm_w, err) ||
      load_vector(w, "transformer.ln_f.bias", d, m->final_norm_b, err) ||
      load_vector(w, "lm_head.bias", v, m->unembed_b, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", v, d, m->unembed, err);
  return 0;
}

/* Granite: llama's names; its logits_scaling (checked positive by
 * loader_hf_config.c) divides the final norm's weight. */
static int granite_load(hf_weights_t *w, model_t *m, char *err) {
  if (llama_load(w, m, err))
    return -1;
  const json_t *v = json_object_get(w->config, "logits_scaling");
  const double scaling = v && json_is_number(v) ? json_number_value(v) : 1.0;
  for (int i = 0; i < m->cfg.d_model; i++)
    m->final_norm_w[i] = (float)(m->final_norm_w[i] / scaling);
  return 0;
}

/* Phi (Phi-2): q/k/v_proj and dense with biases, fc1/fc2 with biases, one
 * input_layernorm for both sublayers (copied into the MLP's pre norm: the
 * parallel residual reads it twice), final_layernorm, lm_head with a bias. */
static int phi_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                          char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp,
               q = (size_t)c->n_heads * (size_t)c->head_dim,
               kv = (size_t)c->n_kv_heads * (size_t)c->head_dim;
  char n[HF_NAME_LEN], p[HF_NAME_LEN];
  tensor_name(p, "model.layers.%d", l);
  if (load_vector(w, tensor_name(n, "%s.input_layernorm.weight", p), d, lw->attn_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.input_layernorm.bias", p), d, lw->attn_norm_b, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.q_proj.weight", p), q, d, lw->wq, err) ||
      load_vector(w, tensor_name(n, "%s.self_attn.q_proj.bias", p), q, lw->bq, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.k_proj.weight", p), kv, d, lw->wk, err) ||
      load_vector(w, tensor_name(n, "%s.self_attn.k_proj.bias", p), kv, lw->bk, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.v_proj.weight", p), kv, d, lw->wv, err) ||
      load_vector(w, tensor_name(n, "%s.self_attn.v_proj.bias", p), kv, lw->bv, err) ||
      load_matrix(w, tensor_name(n, "%s.self_attn.dense.weight", p), d, q, lw->wo, err) ||
      load_vector(w, tensor_name(n, "%s.self_attn.dense.bias", p), d, lw->bo, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.fc1.weight", p), f, d, lw->w_up, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.fc1.bias", p), f, lw->b_up, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.fc2.weight", p), d, f, lw->w_down, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.fc2.bias", p), d, lw->b_down, err))
    return -1;
  memcpy(lw->mlp_norm_w, lw->attn_norm_w, d * sizeof(float));
  memcpy(lw->mlp_norm_b, lw->attn_norm_b, d * sizeof(float));
  if (!c->qk_norm)
    return 0;
  /* qk_layernorm: one LayerNorm for every head of q (of k), repeated per head */
  const size_t hd = (size_t)c->head_dim;
  if (load_vector(w, tensor_name(n, "%s.self_attn.q_layernorm.weight", p), hd, lw->q_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.self_attn.q_layernorm.bias", p), hd, lw->q_norm_b, err) ||
      load_vector(w, tensor_name(n, "%s.self_attn.k_layernorm.weight", p), hd, lw->k_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.self_attn.k_layernorm.bias", p), hd, lw->k_norm_b, err))
    return -1;
  for (int h = 1; h < c->n_heads; h++) {
    memcpy(lw->q_norm_w + h * hd, lw->q_norm_w, hd * sizeof(float));
    memcpy(lw->q_norm_b + h * hd, lw->q_norm_b, hd * sizeof(float));
  }
  for (int h = 1; h < c->n_kv_heads; h++) {
    memcpy(lw->k_norm_w + h * hd, lw->k_norm_w, hd * sizeof(float));
    memcpy(lw->k_norm_b + h * hd, lw->k_norm_b, hd * sizeof(float));
  }
  return 0;
}

static int phi_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size;
  if (load_matrix(w, "model.embed_tokens.weight", v, d, m->tok_embed, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++)
    if (phi_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  if (load_vector(w, "model.final_layernorm.weight", d, m->final_norm_w, err) ||
      load_vector(w, "model.final_layernorm.bias", d, m->final_norm_b, err) ||
      load_vector(w, "lm_head.bias", v, m->unembed_b, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "lm_head.weight", v, d, m->unembed, err);
  return 0;
}

static void add_one(float *x, size_t n) {
  for (size_t i = 0; x && i < n; i++)
    x[i] += 1.0f;
}

/* Gemma 1/2/3: llama's tensor names (with Gemma 2/3's pre and post norms and
 * Gemma 3's q/k norms); every RMSNorm scales by (1 + w), folded into the
 * weights here (fp32, as GemmaRMSNorm's 1.0 + weight.float()). */
static int gemma_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim;
  if (llama_load(w, m, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++) {
    layer_weights_t *lw = &m->layers[l];
    add_one(lw->attn_norm_w, d);
    add_one(lw->mlp_norm_w, d);
    add_one(lw->post_attn_norm_w, d);
    add_one(lw->post_mlp_norm_w, d);
    add_one(lw->q_norm_w, hd);
    add_one(lw->k_norm_w, hd);
  }
  add_one(m->final_norm_w, d);
  return 0;
}

/* GPT-NeoX's fused query_key_value: rows [n_heads, 3, head_dim] (q, k, v of
 * head 0, then of head 1, ...), de-interleaved into wq, wk, wv and their
 * biases (NULL: none). */
static int load_neox_qkv(hf_weights_t *w, const char *prefix, const model_config_t *c,
                         layer_weights_t *lw, int bias, char *err) {
  const size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, heads = (size_t)c->n_heads;
  float *dst_w[3] = {lw->wq, lw->wk, lw->wv}, *dst_b[3] = {lw->bq, lw->bk, lw->bv};
  char n[HF_NAME_LEN];
  for (int part = 0; part < 1 + bias; part++) {
    const size_t cols = part ? 1 : d; /* the weight's rows are d wide, the bias's 1 */
    float *src = weights_scratch(w, 3 * heads * hd * cols, err);
    if (!src)
      return -1;
    if (part ? load_vector(w, tensor_name(n, "%s.bias", prefix), 3 * heads * hd, src, err)
             : load_matrix(w, tensor_name(n, "%s.weight", prefix), 3 * heads * hd, d, src, err))
      return -1;
    for (size_t h = 0; h < heads; h++)
      for (int j = 0; j < 3; j++)
        memcpy((part ? dst_b : dst_w)[j] + h * hd * cols, src + (h * 3 + (size_t)j) * hd * cols,
               hd * cols * sizeof(float));
  }
  return 0;
}

static int gpt_neox_load_layer(hf_weights_t *w, int l, const model_config_t *c, layer_weights_t *lw,
                               char *err) {
  const size_t d = (size_t)c->d_model, f = (size_t)c->d_mlp;
  char n[HF_NAME_LEN], p[HF_NAME_LEN];
  tensor_name(p, "gpt_neox.layers.%d", l);
  if (load_vector(w, tensor_name(n, "%s.input_layernorm.weight", p), d, lw->attn_norm_w, err) ||
      load_vector(w, tensor_name(n, "%s.input_layernorm.bias", p), d, lw->attn_norm_b, err) ||
      load_neox_qkv(w, tensor_name(n, "%s.attention.query_key_value", p), c, lw, c->qkv_bias,
                    err) ||
      load_matrix(w, tensor_name(n, "%s.attention.dense.weight", p), d, d, lw->wo, err) ||
      (c->o_bias && load_vector(w, tensor_name(n, "%s.attention.dense.bias", p), d, lw->bo, err)) ||
      load_vector(w, tensor_name(n, "%s.post_attention_layernorm.weight", p), d, lw->mlp_norm_w,
                  err) ||
      load_vector(w, tensor_name(n, "%s.post_attention_layernorm.bias", p), d, lw->mlp_norm_b,
                  err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.dense_h_to_4h.weight", p), f, d, lw->w_up, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.dense_h_to_4h.bias", p), f, lw->b_up, err) ||
      load_matrix(w, tensor_name(n, "%s.mlp.dense_4h_to_h.weight", p), d, f, lw->w_down, err) ||
      load_vector(w, tensor_name(n, "%s.mlp.dense_4h_to_h.bias", p), d, lw->b_down, err))
    return -1;
  return 0;
}

static int gpt_neox_load(hf_weights_t *w, model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size;
  if (load_matrix(w, "gpt_neox.embed_in.weight", v, d, m->tok_embed, err))
    return -1;
  for (int l = 0; l < c->n_layers; l++) {
    if (gpt_neox_load_layer(w, l, c, &m->layers[l], err))
      return -1;
  }
  if (load_vector(w, "gpt_neox.final_layer_norm.weight", d, m->final_norm_w, err) ||
      load_vector(w, "gpt_neox.final_layer_norm.bias", d, m->final_norm_b, err))
    return -1;
  if (!c->tied_unembed)
    return load_matrix(w, "embed_out.weight", v, d, m->unembed, err);
  return 0;
}

/* Each family's tensor names (the family loader_hf_config.c wrote into cfg). */
static const struct {
  const char *family;
  int (*load)(hf_weights_t *w, model_t *m, char *err);
} hf_loaders[] = {
    {"gpt2", gpt2_load},         {"llama", llama_load},     {"gpt_neox", gpt_neox_load},
    {"qwen2", llama_load},       {"qwen3", llama_load},     {"mistral", llama_load},
    {"olmo2", llama_load},       {"gemma", gemma_load},     {"gemma2", gemma_load},
    {"gemma3_text", gemma_load}, {"phi3", phi3_load},       {"phi", phi_load},
    {"granite", granite_load},   {"gpt_neo", gpt_neo_load}, {"stablelm", stablelm_load},
    {"opt", opt_load},           {"gptj", gptj_load},
};

static int load_family(hf_weights_t *w, model_t *m, char *err) {
  for (size_t i = 0; i < sizeof(hf_loaders) / sizeof(hf_loaders[0]); i++)
    if (strcmp(hf_loaders[i].family, m->cfg.family) == 0)
      return hf_loaders[i].load(w, m, err);
  return err_set(err, "%s: no tensor mapping for family %s", m->path, m->cfg.family);
}

/* A tied model (tie_word_embeddings true, or the family's default) whose
 * file still holds its own unembedding: transformers 5 then leaves the two
 * untied and reads the file's head, transformers 4 ties them and reads the
 * embedding. One that equals the embedding changes nothing; one that differs
 * is refused by name rather than silently dropped. */
static int tied_head_check(hf_weights_t *w, const model_t *m, char *err) {
  const model_config_t *c = &m->cfg;
  const char *head = strcmp(c->family, "gpt_neox") == 0 ? "embed_out.weight" : "lm_head.weight";
  const size_t v = (size_t)c->vocab_size, d = (size_t)model_embed_width(c);
  if (!c->tied_unembed || !weights_has(w, head))
    return 0;
  const size_t counted = w->values_read; /* a copy of the embedding: not a parameter of its own */
  float *file_head = weights_scratch(w, v * d, err);
  if (!file_head || load_matrix(w, head, v, d, file_head, err))
    return -1;
  w->values_read = counted;
  if (memcmp(file_head, m->tok_embed, v * d * sizeof(float)) == 0)
    return 0;
  return err_set(err,
                 "%s: tie_word_embeddings is true (or the %s default) but the weights hold their "
                 "own %s, which differs from the token embedding (transformers 5 would read %s, "
                 "transformers 4 the embedding): set tie_word_embeddings to say which",
                 m->path, c->family, head, head);
}

/* Where a multimodal checkpoint keeps its language model: under
 * "model.language_model." with the lm_head at the top (as transformers 5
 * saves Gemma3ForConditionalGeneration), or under "language_model.model."
 * with "language_model.lm_head." (as the published Gemma 3 files, written
 * by transformers 4.50, do). */
static int language_model_names(hf_weights_t *w, const char *dir, char *err) {
  static const char *const layouts[][2] = {{"model.language_model.", ""},
                                           {"language_model.model.", "language_model."}};
  for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
    w->lm_prefix = layouts[i][0];
    w->lm_head_prefix = layouts[i][1];
    if (weights_has(w, "model.embed_tokens.weight"))
      return 0;
  }
  w->lm_prefix = w->lm_head_prefix = NULL;
  return err_set(err,
                 "%s: no language model in the weights (neither "
                 "model.language_model.embed_tokens.weight nor "
                 "language_model.model.embed_tokens.weight)",
                 dir);
}

model_t *model_load_hf(const char *dir, char *err) {
  char config_path[HF_PATH_LEN];
  json_t *root = NULL;
  hf_weights_t w = {0};
  json_t *text = NULL; /* a multimodal model's language model's config */
  model_t *m = NULL;
  model_config_t cfg;
  if (strlen(dir) >= sizeof(m->path)) {
    err_set(err, "%.64s...: model directory path is too long", dir);
    return NULL;
  }
  if (join_path(config_path, dir, "config.json", err) ||
      hf_config_load(config_path, &root, &cfg, err) || weights_open(&w, dir, err) ||
      hf_config_language_model(config_path, root, &text, err) ||
      (text && language_model_names(&w, dir, err)) ||
      model_memory_check(dir, (uint64_t)model_config_n_params(&cfg) * sizeof(float),
                         "its weights in fp32", "", err))
    goto fail;
  m = model_alloc(&cfg, err);
  if (!m)
    goto fail;
  snprintf(m->path, sizeof(m->path), "%s", dir);
  w.config = text ? text : root;
  if (load_family(&w, m, err) || tied_head_check(&w, m, err))
    goto fail;
  snprintf(m->weights_format, sizeof(m->weights_format), "safetensors");
  snprintf(m->tensor_types, sizeof(m->tensor_types), "%s", w.types);
  m->n_params_file = w.values_read;
  weights_close(&w);
  json_decref(text);
  json_decref(root);
  return m;
fail:
  model_free(m);
  weights_close(&w);
  json_decref(text);
  json_decref(root);
  return NULL;
}
