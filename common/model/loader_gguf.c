/* loader_gguf.c - model_from_gguf: a GGUF file of an architecture hydra
 * computes (loader_gguf_config.c reads its metadata), its tensors, as
 * llama.cpp's convert_hf_to_gguf.py writes them, mapped onto model_t.
 *
 * GGUF lists dimensions fastest first, so a projection with ne = [in, out] is
 * row-major [out][in], which is already model_t's layout (gpt2's converter
 * transposes its Conv1D weights to it). Every tensor is dequantised to fp32.
 * A fused attn_qkv (gpt2, phi3, older phi2 files; gptneox, whose converter
 * gathers each head's interleaved q, k, v) holds the rows of q, then k, then
 * v; phi3's fused ffn_up the gate's rows, then the up's. A shared norm (phi2,
 * parallel stablelm) is copied into the MLP's pre norm. The llama and
 * granite converters permute the rows of attn_q and attn_k (and biases) for
 * ggml's RoPE, which rotates adjacent pairs; this loader undoes that, for the
 * rotate_half pairing (i, i + head_dim/2) that Hugging Face and hydra use
 * (ggml's NEOX RoPE, which the other architectures' rows already have).
 * model_from_gguf_native keeps the layer projections in their blocks
 * instead: rows move whole, so the same un-permuting and splitting apply to
 * rows of bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "loader_gguf_internal.h"
#include "model.h"

#define NAME_LEN 64
#define MAX_PER_LAYER 24 /* planned tensors of one layer, at most */

/* One tensor the model needs: its name, expected shape (GGUF order) and
 * where it goes: dst, or (a fused qkv) its rows split over dst, dst_k and
 * dst_v; n_heads > 0 marks q/k rows to un-permute; no destination at all: a
 * tensor read elsewhere (rope_freqs). */
typedef struct {
  char name[NAME_LEN];
  int n_dims;
  uint64_t ne[2];
  float *dst, *dst_k, *dst_v;
  size_t rows_q, rows_kv; /* a fused qkv's split */
  int n_heads;
  int proj; /* a layer's projection matrix: kept in its blocks by the native load */
  const gguf_tensor_t *t;
} planned_t;

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

/* A fused qkv weight (n_dims 2) or bias (n_dims 1), split into q, k, v. */
static planned_t *plan_qkv(planned_t *p, const char *name, int n_dims, int d, int q, int kv,
                           float *dq, float *dk, float *dv) {
  p = plan_add(p, name, n_dims, n_dims == 2 ? d : q + 2 * kv, n_dims == 2 ? q + 2 * kv : 1, dq, 0);
  p[-1].dst_k = dk;
  p[-1].dst_v = dv;
  p[-1].rows_q = (size_t)q;
  p[-1].rows_kv = (size_t)kv;
  return p;
}

/* One layer's tensors, with llama.cpp's names. */
static planned_t *plan_layer(const model_config_t *c, const gguf_arch_t *a, int l,
                             layer_weights_t *w, planned_t *p) {
  const int d = c->d_model, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim,
            f = c->d_mlp, ln = c->norm == NORM_LAYERNORM;
  const int perm_q = (a->flags & GGUF_ARCH_PERMUTED_QK) ? c->n_heads : 0;
  const int perm_k = (a->flags & GGUF_ARCH_PERMUTED_QK) ? c->n_kv_heads : 0;
  char name[NAME_LEN];
#define LAYER(suffix, n_dims, ne0, ne1, field, heads)                                              \
  snprintf(name, sizeof(name), "blk.%d." suffix, l);                                               \
  p = plan_add(p, name, n_dims, ne0, ne1, w ? w->field : NULL, heads);                             \
  p[-1].proj = n_dims == 2
  if (!c->no_pre_norms) {
    LAYER("attn_norm.weight", 1, d, 1, attn_norm_w, 0);
  }
  if (ln) {
    LAYER("attn_norm.bias", 1, d, 1, attn_norm_b, 0);
  }
  if (a->flags & GGUF_ARCH_FUSED_QKV) {
    snprintf(name, sizeof(name), "blk.%d.attn_qkv.weight", l);
    p = plan_qkv(p, name, 2, d, q, kv, w ? w->wq : NULL, w ? w->wk : NULL, w ? w->wv : NULL);
    p[-1].proj = 1;
    if (c->qkv_bias) {
      snprintf(name, sizeof(name), "blk.%d.attn_qkv.bias", l);
      p = plan_qkv(p, name, 1, d, q, kv, w ? w->bq : NULL, w ? w->bk : NULL, w ? w->bv : NULL);
    }
  } else {
    LAYER("attn_q.weight", 2, d, q, wq, perm_q);
    LAYER("attn_k.weight", 2, d, kv, wk, perm_k);
    LAYER("attn_v.weight", 2, d, kv, wv, 0);
    if (c->qkv_bias) {
      LAYER("attn_q.bias", 1, q, 1, bq, perm_q);
      LAYER("attn_k.bias", 1, kv, 1, bk, perm_k);
      LAYER("attn_v.bias", 1, kv, 1, bv, 0);
    }
  }
  if (c->qk_norm) {
    const int whole = c->qk_norm == QK_NORM_WHOLE;
    LAYER("attn_q_norm.weight", 1, whole ? q : c->head_dim, 1, q_norm_w, 0);
    LAYER("attn_k_norm.weight", 1, whole ? kv : c->head_dim, 1, k_norm_w, 0);
  }
  LAYER("attn_output.weight", 2, q, d, wo, 0);
  if (c->o_bias) {
    LAYER("attn_output.bias", 1, d, 1, bo, 0);
  }
  if (c->post_norms) {
    LAYER("post_attention_norm.weight", 1, d, 1, post_attn_norm_w, 0);
  }
  if (!c->no_pre_norms && !(a->flags & GGUF_ARCH_SHARED_NORM)) {
    LAYER("ffn_norm.weight", 1, d, 1, mlp_norm_w, 0);
    if (ln) {
      LAYER("ffn_norm.bias", 1, d, 1, mlp_norm_b, 0);
    }
  }
  if (a->flags & GGUF_ARCH_FUSED_GATE_UP) { /* the gate's rows, then the up's */
    snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", l);
    p = plan_add(p, name, 2, d, 2 * f, w ? w->w_gate : NULL, 0);
    p[-1].dst_k = w ? w->w_up : NULL;
    p[-1].rows_q = p[-1].rows_kv = (size_t)f;
    p[-1].proj = 1;
  } else {
    if (c->mlp != MLP_GELU) {
      LAYER("ffn_gate.weight", 2, d, f, w_gate, 0);
    }
    LAYER("ffn_up.weight", 2, d, f, w_up, 0);
  }
  LAYER("ffn_down.weight", 2, f, d, w_down, 0);
  if (c->mlp_bias) {
    LAYER("ffn_up.bias", 1, f, 1, b_up, 0);
    LAYER("ffn_down.bias", 1, d, 1, b_down, 0);
  }
  if (c->post_norms) {
    LAYER("post_ffw_norm.weight", 1, d, 1, post_mlp_norm_w, 0);
  }
#undef LAYER
  return p;
}

/* Where the embedding or the unembedding is loaded: a native load keeps it
 * in its blocks (blocks non-NULL), any other into its fp32 array. */
static float *vocab_destination(model_blocks_t *blocks, float *fp32) {
  return blocks ? (float *)blocks : fp32;
}

/* Fills plan (at most 8 + MAX_PER_LAYER n_layers entries) with names, shapes
 * and, when m is non-NULL, destinations; leaves each entry's `t` alone.
 * Returns the number of entries. */
static int plan_tensors(const model_config_t *c, const gguf_arch_t *a, model_t *m,
                        planned_t *plan) {
  const int d = c->d_model;
  planned_t *p = plan;
  p = plan_add(p, "token_embd.weight", 2, d, c->vocab_size,
               m ? vocab_destination(m->embed_blocks, m->tok_embed) : NULL, 0);
  p[-1].proj = 1;
  if (c->positions == POSITIONS_LEARNED)
    p = plan_add(p, "position_embd.weight", 2, d, c->max_positions, m ? m->pos_embed : NULL, 0);
  if (c->rope_n_freq_factors && c->rope_scaling == ROPE_SCALING_LONGROPE) { /* read there too */
    p = plan_add(p, "rope_factors_short.weight", 1, c->rope_n_freq_factors, 1, NULL, 0);
    p = plan_add(p, "rope_factors_long.weight", 1, c->rope_n_freq_factors, 1, NULL, 0);
  } else if (c->rope_n_freq_factors) { /* read by gguf_config_read */
    p = plan_add(p, "rope_freqs.weight", 1, c->rope_n_freq_factors, 1, NULL, 0);
  }
  p = plan_add(p, "output_norm.weight", 1, d, 1, m ? m->final_norm_w : NULL, 0);
  if (c->norm == NORM_LAYERNORM)
    p = plan_add(p, "output_norm.bias", 1, d, 1, m ? m->final_norm_b : NULL, 0);
  if (!c->tied_unembed) {
    p = plan_add(p, "output.weight", 2, d, c->vocab_size,
                 m ? vocab_destination(m->unembed_blocks, m->unembed) : NULL, 0);
    p[-1].proj = 1;
  }
  if (c->unembed_bias)
    p = plan_add(p, "output.bias", 1, c->vocab_size, 1, m ? m->unembed_b : NULL, 0);
  for (int l = 0; l < c->n_layers; l++)
    p = plan_layer(c, a, l, m ? &m->layers[l] : NULL, p);
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
 * and the file holds no other tensor (a bias or norm the architecture does
 * not have, rope_freqs outside llama, ...). */
static int match_plan(const gguf_t *g, const gguf_arch_t *a, planned_t *plan, int n, char *err) {
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
        return err_set(err,
                       "%s: tensor %s is not part of a '%s' model as hydra reads it (from its "
                       "metadata and layer 0's tensors)",
                       path, name, a->name);
    }
  return 0;
}

/* llama.cpp's converter stores head row 2i + j (j in {0, 1}) at what Hugging
 * Face calls row j * head_dim/2 + i; this is transformers'
 * LlamaTensorProcessor._reverse_permute_weights. Rows of row_bytes bytes. */
static void unpermute_rows(const uint8_t *src, uint8_t *dst, int n_heads, size_t head_dim,
                           size_t row_bytes) {
  const size_t half = head_dim / 2;
  for (size_t h = 0; h < (size_t)n_heads; h++)
    for (size_t j = 0; j < 2; j++)
      for (size_t i = 0; i < half; i++)
        memcpy(dst + (h * head_dim + j * half + i) * row_bytes,
               src + (h * head_dim + 2 * i + j) * row_bytes, row_bytes);
}

static int load_planned(const gguf_t *g, const planned_t *p, char *err) {
  const size_t n = (size_t)p->t->n_elements;
  const size_t rows = p->n_dims == 2 ? (size_t)p->ne[1] : (size_t)p->ne[0];
  const size_t cols = p->n_dims == 2 ? (size_t)p->ne[0] : 1;
  if (!p->dst)
    return 0;
  if (!p->n_heads && !p->dst_k)
    return gguf_tensor_read_f32(g, p->t, p->dst, n, err);
  float *tmp = malloc(n * sizeof(float));
  if (!tmp)
    return err_set(err, "%s: out of memory reading tensor %s", gguf_path(g), p->name);
  int rc = gguf_tensor_read_f32(g, p->t, tmp, n, err);
  if (rc == 0 && p->n_heads)
    unpermute_rows((const uint8_t *)tmp, (uint8_t *)p->dst, p->n_heads, rows / (size_t)p->n_heads,
                   cols * sizeof(float));
  if (rc == 0 && p->dst_k) {
    memcpy(p->dst, tmp, p->rows_q * cols * sizeof(float));
    memcpy(p->dst_k, tmp + p->rows_q * cols, p->rows_kv * cols * sizeof(float));
    if (p->dst_v)
      memcpy(p->dst_v, tmp + (p->rows_q + p->rows_kv) * cols, p->rows_kv * cols * sizeof(float));
  }
  free(tmp);
  return rc;
}

/* dst (a model_blocks_t behind a layer slot) gets n rows of row_bytes bytes
 * from rows_src, un-permuted as llama's q/k (whole_perm) or as stored; with
 * borrow (rows_src in the file's mapping, rows as stored), rows_src itself. */
static int take_rows(model_blocks_t *dst, uint32_t type, int cols, size_t row_bytes,
                     const uint8_t *rows_src, size_t n, const planned_t *p, int whole_perm,
                     int borrow, char *err) {
  dst->type = type;
  dst->rows = (int)n;
  dst->cols = cols;
  dst->row_bytes = row_bytes;
  if (borrow && !whole_perm) {
    dst->blocks = (uint8_t *)rows_src; /* read only: the mapping is PROT_READ */
    dst->borrowed = 1;
    return 0;
  }
  if (!(dst->blocks = malloc(n * row_bytes)))
    return err_set(err, "out of memory keeping tensor %s", p->name);
  if (whole_perm)
    unpermute_rows(rows_src, dst->blocks, p->n_heads, n / (size_t)p->n_heads, row_bytes);
  else
    memcpy(dst->blocks, rows_src, n * row_bytes);
  return 0;
}

/* A layer projection, the token embedding or the unembedding kept in its
 * blocks (a type the backends multiply natively, whole blocks per row),
 * else dequantised to F32 rows. With the file mapped (map non-NULL), kept
 * blocks are used in place from it; otherwise read with pread. */
static int load_planned_native(const gguf_t *g, const uint8_t *map, const planned_t *p, char *err) {
  const gguf_tensor_t *t = p->t;
  const gguf_quant_type_t *tt = gguf_quant_type(t->type);
  const int cols = (int)p->ne[0];
  const size_t rows = (size_t)p->ne[1];
  const int keep = model_native_type(t->type) && p->ne[0] % tt->block_size == 0;
  /* F32 rows are multiplied as floats where they lie: borrowed only when
   * aligned for them (general.alignment may be any power of two) */
  const int borrow = keep && map && (t->type != GGUF_TENSOR_F32 || t->offset % sizeof(float) == 0);
  const size_t row_bytes =
      keep ? (size_t)(p->ne[0] / tt->block_size) * tt->type_size : (size_t)cols * sizeof(float);
  uint8_t *raw = borrow ? (uint8_t *)map + t->offset : malloc(rows * row_bytes);
  if (!raw)
    return err_set(err, "%s: out of memory reading tensor %s", gguf_path(g), p->name);
  int rc = borrow ? 0
           : keep ? gguf_tensor_read_raw(g, t, raw, rows * row_bytes, err)
                  : gguf_tensor_read_f32(g, t, (float *)raw, rows * (size_t)cols, err);
  const uint32_t type = keep ? t->type : GGUF_TENSOR_F32;
  if (rc == 0 && p->dst_k) {
    rc = take_rows((model_blocks_t *)p->dst, type, cols, row_bytes, raw, p->rows_q, p, 0, borrow,
                   err);
    if (rc == 0)
      rc = take_rows((model_blocks_t *)p->dst_k, type, cols, row_bytes, raw + p->rows_q * row_bytes,
                     p->rows_kv, p, 0, borrow, err);
    if (rc == 0 && p->dst_v)
      rc = take_rows((model_blocks_t *)p->dst_v, type, cols, row_bytes,
                     raw + (p->rows_q + p->rows_kv) * row_bytes, p->rows_kv, p, 0, borrow, err);
  } else if (rc == 0) {
    rc = take_rows((model_blocks_t *)p->dst, type, cols, row_bytes, raw, rows, p, p->n_heads > 0,
                   borrow, err);
  }
  if (!borrow)
    free(raw);
  return rc;
}

/* Host bytes a native load takes: the blocks not used in place from the
 * mapping (all of them unmapped; llama's un-permuted q and k; F32 rows the
 * mapping misaligns), the tensors it dequantises (every tensor of a type
 * it does not keep, every norm and bias), and the scratch a product decodes
 * a layer projection into (the largest one, in fp32). */
static uint64_t native_bytes(const planned_t *plan, int n, int mapped) {
  uint64_t held = 0, scratch = 0;
  for (int i = 0; i < n; i++) {
    const planned_t *p = &plan[i];
    const gguf_tensor_t *t = p->t;
    const uint64_t fp32 = t->n_elements * sizeof(float);
    const int keep = p->proj && model_native_type(t->type);
    const int borrow = keep && mapped && !p->n_heads &&
                       (t->type != GGUF_TENSOR_F32 || t->offset % sizeof(float) == 0);
    held += borrow ? 0 : keep ? t->n_bytes : fp32;
    if (p->proj && strncmp(p->name, "blk.", 4) == 0 && fp32 > scratch)
      scratch = fp32;
  }
  return held + scratch;
}

/* The load's memory, checked before any array is allocated: fp32 weights
 * (the bf16 load holds them too), or native ones (native_bytes). */
static int memory_check(const gguf_t *g, const model_config_t *c, const planned_t *plan, int n,
                        int native, int mapped, char *err) {
  const double gib = 1024.0 * 1024.0 * 1024.0;
  const uint64_t blocks = native_bytes(plan, n, native ? mapped : 1);
  if (native)
    return model_memory_check(gguf_path(g), blocks,
                              "native weights (what is not used in place from the mapped file: "
                              "tensors dequantised to fp32, copied blocks, the decoding scratch)",
                              "", err);
  char hint[160];
  snprintf(hint, sizeof(hint), "; --weights-dtype native keeps the file's blocks in about %.2f GiB",
           (double)blocks / gib);
  return model_memory_check(gguf_path(g), (uint64_t)model_config_n_params(c) * sizeof(float),
                            "its weights in fp32", hint, err);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct on-disk types of the planned tensors (only_proj: of those a
 * native load may keep in blocks), sorted by name: "F32,Q4_1". */
static void list_types(const planned_t *plan, int n, int only_proj, char *out, size_t size) {
  const char *names[64];
  int n_names = 0;
  for (int i = 0; i < n; i++) {
    if (only_proj && !plan[i].proj)
      continue;
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

/* What the file's tensors leave to the loader: a shared norm copied into
 * the MLP's pre norm, granite's logit_scale folded into the final norm. */
static void finish_weights(const gguf_arch_t *a, model_t *m) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model;
  for (int l = 0; l < c->n_layers && (a->flags & GGUF_ARCH_SHARED_NORM); l++) {
    layer_weights_t *w = &m->layers[l];
    memcpy(w->mlp_norm_w, w->attn_norm_w, d * sizeof(float));
    if (w->mlp_norm_b)
      memcpy(w->mlp_norm_b, w->attn_norm_b, d * sizeof(float));
  }
  if (a->logit_scale > 0.0f)
    for (size_t i = 0; i < d; i++)
      m->final_norm_w[i] = (float)(m->final_norm_w[i] / (double)a->logit_scale);
}

static model_t *load_gguf(const gguf_t *g, int native, char *err) {
  model_t *m = NULL;
  planned_t *plan = NULL;
  model_config_t cfg;
  gguf_arch_t arch_read, *arch = &arch_read;
  const char *file = gguf_path(g);
  if (gguf_config_read(g, &cfg, arch, err))
    goto fail;
  plan = calloc(8 + MAX_PER_LAYER * (size_t)cfg.n_layers, sizeof(*plan));
  if (!plan) {
    err_set(err, "%s: out of memory", file);
    goto fail;
  }
  int n = plan_tensors(&cfg, arch, NULL, plan);
  if (match_plan(g, arch, plan, n, err))
    goto fail;
  char inner[HYDRA_ERR_LEN];
  size_t mapping_bytes = 0;
  void *mapping = native ? gguf_map(g, &mapping_bytes, inner) : NULL; /* NULL: pread instead */
  if (memory_check(g, &cfg, plan, n, native, mapping != NULL, err)) {
    gguf_unmap(mapping, mapping_bytes);
    goto fail;
  }
  m = native ? model_alloc_native(&cfg, inner) : model_alloc(&cfg, inner);
  if (!m) {
    gguf_unmap(mapping, mapping_bytes);
    err_set(err, "%s: %s", file, inner);
    goto fail;
  }
  m->mapping = mapping;
  m->mapping_bytes = mapping_bytes;
  plan_tensors(&cfg, arch, m, plan);
  for (int i = 0; i < n; i++)
    if (native && plan[i].proj ? load_planned_native(g, m->mapping, &plan[i], err)
                               : load_planned(g, &plan[i], err))
      goto fail;
  m->embed_type = plan[0].t->type; /* token_embd.weight */
  const gguf_tensor_t *out = gguf_tensor_find(g, "output.weight");
  m->unembed_type = out ? out->type : m->embed_type;
  finish_weights(arch, m);
  snprintf(m->path, sizeof(m->path), "%s", file);
  snprintf(m->weights_format, sizeof(m->weights_format), "gguf");
  list_types(plan, n, 0, m->tensor_types, sizeof(m->tensor_types));
  list_types(plan, n, 1, m->matrix_types, sizeof(m->matrix_types));
  for (int i = 0; i < n; i++) /* the weights (rope factors are read into the config) */
    if (plan[i].dst)
      m->n_params_file += (size_t)plan[i].ne[0] * (plan[i].n_dims == 2 ? (size_t)plan[i].ne[1] : 1);
  free(plan);
  return m;
fail:
  model_free(m);
  free(plan);
  return NULL;
}

model_t *model_from_gguf(const gguf_t *g, char *err) {
  return load_gguf(g, 0, err);
}

model_t *model_from_gguf_native(const gguf_t *g, char *err) {
  return load_gguf(g, 1, err);
}
