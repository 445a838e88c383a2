#include "model.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bf16.h"
#include "error.h"
#include "host_memory.h"

int model_config_check(const model_config_t *c, char *err) {
  if (c->n_layers <= 0 || c->n_layers > 4096)
    return err_set(err, "n_layers = %d is out of range", c->n_layers);
  if (c->d_model <= 0 || c->d_model > 65536)
    return err_set(err, "d_model = %d is out of range", c->d_model);
  if (c->n_heads <= 0 || c->n_heads > 1024)
    return err_set(err, "n_heads = %d is out of range", c->n_heads);
  if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
    return err_set(err, "n_kv_heads = %d does not divide n_heads = %d", c->n_kv_heads, c->n_heads);
  if (c->head_dim <= 0 || c->head_dim > MODEL_MAX_HEAD_DIM)
    return err_set(err, "head_dim = %d is out of range", c->head_dim);
  if (c->d_mlp <= 0 || c->d_mlp > 1 << 20)
    return err_set(err, "d_mlp = %d is out of range", c->d_mlp);
  if (c->vocab_size <= 0 || c->vocab_size > 1 << 22)
    return err_set(err, "vocab_size = %d is out of range", c->vocab_size);
  if (c->max_positions <= 0 || c->max_positions > 1 << 22)
    return err_set(err, "max_positions = %d is out of range", c->max_positions);
  if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
    return err_set(err, "norm_eps = %g is out of range", (double)c->norm_eps);
  if (c->positions == POSITIONS_ROPE) {
    if (!(c->rope_theta > 0.0f))
      return err_set(err, "rope_theta = %g must be positive", (double)c->rope_theta);
    if (c->rotary_dim <= 0 || c->rotary_dim > c->head_dim || c->rotary_dim % 2)
      return err_set(err, "rotary_dim = %d must be even and at most head_dim = %d", c->rotary_dim,
                     c->head_dim);
  }
  if (c->rope_n_freq_factors != 0) {
    if (c->positions != POSITIONS_ROPE || c->rope_n_freq_factors != c->rotary_dim / 2)
      return err_set(err, "rope_n_freq_factors = %d must be rotary_dim / 2 = %d",
                     c->rope_n_freq_factors, c->rotary_dim / 2);
    for (int i = 0; i < c->rope_n_freq_factors; i++)
      if (!(c->rope_freq_factors[i] > 0.0f && c->rope_freq_factors[i] <= FLT_MAX))
        return err_set(err, "rope_freq_factors[%d] = %g must be positive and finite", i,
                       (double)c->rope_freq_factors[i]);
  }
  if (c->positions == POSITIONS_ROPE && c->rope_scaling != ROPE_SCALING_NONE) {
    if (!(c->rope_factor >= 1.0f))
      return err_set(err, "rope_factor = %g must be at least 1", (double)c->rope_factor);
    if (c->rope_scaling != ROPE_SCALING_LINEAR && c->rope_original_max_positions <= 0)
      return err_set(err, "rope_original_max_positions = %d must be positive",
                     c->rope_original_max_positions);
    if (c->rope_scaling == ROPE_SCALING_LLAMA3 &&
        !(c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_low_freq_factor > 0.0f))
      return err_set(err, "rope_high_freq_factor must be above rope_low_freq_factor > 0");
  }
  if (c->no_pre_norms && c->parallel_residual)
    return err_set(err, "no_pre_norms with a parallel residual is not implemented");
  if (c->embed_proj_dim < 0)
    return err_set(err, "embed_proj_dim = %d must not be negative", c->embed_proj_dim);
  if (c->post_residual_norms && (c->no_pre_norms || c->post_norms || c->parallel_residual))
    return err_set(err, "post_residual_norms with no_pre_norms, post_norms or a parallel "
                        "residual is not implemented");
  if ((c->qk_norm == QK_NORM_PER_HEAD || c->qk_norm == QK_NORM_WHOLE) && c->norm != NORM_RMSNORM)
    return err_set(err, "qk_norm: RMS q/k norms need norm rmsnorm");
  if (c->qk_norm_bias && c->qk_norm != QK_NORM_LAYERNORM_HEADS)
    return err_set(err, "qk_norm_bias: q/k norm biases are LayerNorm heads' only");
  if (c->mlp == MLP_SWIGLU && c->activation != ACT_SILU)
    return err_set(err, "a SwiGLU MLP needs the SiLU activation");
  if (c->mlp == MLP_GEGLU && c->activation != ACT_GELU_TANH && c->activation != ACT_GELU_ERF)
    return err_set(err, "mlp: a GeGLU MLP needs a GELU activation");
  if (!(c->embed_scale >= 0.0f && c->embed_scale < 1e30f))
    return err_set(err, "embed_scale = %g is out of range", (double)c->embed_scale);
  if (!(c->residual_scale >= 0.0f && c->residual_scale < 1e30f))
    return err_set(err, "residual_scale = %g is out of range", (double)c->residual_scale);
  if (!(c->attn_scale >= 0.0f && c->attn_scale < 1e30f))
    return err_set(err, "attn_scale = %g is out of range", (double)c->attn_scale);
  if (!(c->attn_softcap >= 0.0f && c->attn_softcap < 1e30f))
    return err_set(err, "attn_softcap = %g is out of range", (double)c->attn_softcap);
  if (!(c->final_softcap >= 0.0f && c->final_softcap < 1e30f))
    return err_set(err, "final_softcap = %g is out of range", (double)c->final_softcap);
  if (c->sliding_window < 0 || c->sliding_period < 0 || c->sliding_offset < 0 ||
      c->sliding_first_layer < 0)
    return err_set(err,
                   "sliding_window = %d, sliding_period = %d, sliding_first_layer = %d must not "
                   "be negative",
                   c->sliding_window, c->sliding_period, c->sliding_first_layer);
  if (!(c->rope_local_theta >= 0.0f && c->rope_local_theta < 1e30f))
    return err_set(err, "rope_local_theta = %g is out of range", (double)c->rope_local_theta);
  /* described, not implemented yet: refused by name, never computed wrong */
  if (c->positions == POSITIONS_ROPE && c->rope_pairs != ROPE_HALVES)
    return err_set(err, "rope_pairs: adjacent-pair rotary (GPT-J style) is not implemented");
  return 0;
}

int model_embed_width(const model_config_t *c) {
  return c->embed_proj_dim > 0 ? c->embed_proj_dim : c->d_model;
}

int model_layer_slides(const model_config_t *c, int layer) {
  return c->sliding_window > 0 && layer >= c->sliding_first_layer &&
         (c->sliding_period <= 1 || (layer + 1 + c->sliding_offset) % c->sliding_period != 0);
}

static const double PI = 3.14159265358979323846;

/* transformers' _compute_yarn_parameters: the dimension where a frequency
 * turns num_rotations times over the pretraining context. */
static double yarn_correction_dim(double num_rotations, int dim, double base, int context) {
  return (dim * log(context / (num_rotations * 2 * PI))) / (2 * log(base));
}

void model_rope_frequencies(const model_config_t *c, double *inv_freq, float *attn_scale) {
  const int dim = c->rotary_dim, half = dim / 2;
  const double factor = c->rope_factor, base = c->rope_theta;
  double low = 0.0, high = 0.0;
  *attn_scale = 1.0f;
  if (c->rope_scaling == ROPE_SCALING_YARN) {
    low = yarn_correction_dim(c->rope_beta_fast, dim, base, c->rope_original_max_positions);
    high = yarn_correction_dim(c->rope_beta_slow, dim, base, c->rope_original_max_positions);
    if (c->rope_truncate)
      low = floor(low), high = ceil(high);
    low = fmax(low, 0.0), high = fmin(high, dim - 1);
    if (low == high)
      high += 0.001; /* as transformers: no division by zero */
  }
  if ((c->rope_scaling == ROPE_SCALING_YARN || c->rope_scaling == ROPE_SCALING_LONGROPE) &&
      c->rope_attn_factor > 0.0f)
    *attn_scale = c->rope_attn_factor;
  for (int i = 0; i < half; i++) {
    const double f = pow(base, -2.0 * i / dim);
    switch (c->rope_scaling) {
    case ROPE_SCALING_NONE:
    case ROPE_SCALING_LONGROPE: /* divided by rope_freq_factors below */
      inv_freq[i] = f;
      break;
    case ROPE_SCALING_LINEAR:
      inv_freq[i] = f / factor;
      break;
    case ROPE_SCALING_LLAMA3: { /* Llama 3.1's apply_scaling */
      const double context = c->rope_original_max_positions, wavelen = 2 * PI / f;
      const double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
      if (wavelen > context / lo)
        inv_freq[i] = f / factor;
      else if (wavelen < context / hi)
        inv_freq[i] = f;
      else {
        const double smooth = (context / wavelen - lo) / (hi - lo);
        inv_freq[i] = (1 - smooth) * f / factor + smooth * f;
      }
      break;
    }
    case ROPE_SCALING_YARN: {
      const double ramp = fmin(fmax((i - low) / (high - low), 0.0), 1.0);
      const double extrapolation = 1 - ramp;
      inv_freq[i] = f / factor * (1 - extrapolation) + f * extrapolation;
      break;
    }
    }
    if (c->rope_n_freq_factors) /* llama.cpp's rope_freqs: theta / factor */
      inv_freq[i] /= c->rope_freq_factors[i];
  }
}

static float *tensor_alloc(size_t n, int *failed) {
  if (*failed)
    return NULL;
  float *p = calloc(n, sizeof(float));
  if (!p)
    *failed = 1;
  return p;
}

/* A projection's slot: n fp32 values, or (native) an empty model_blocks_t
 * that the loader fills. */
static float *proj_alloc(size_t n, int native, int *failed) {
  if (!native)
    return tensor_alloc(n, failed);
  void *p = calloc(1, sizeof(model_blocks_t));
  if (!p)
    *failed = 1;
  return p;
}

static model_t *alloc_model(const model_config_t *cfg, int native, char *err) {
  if (model_config_check(cfg, err))
    return NULL;
  model_t *m = calloc(1, sizeof(*m));
  if (!m) {
    err_set(err, "out of memory allocating a model");
    return NULL;
  }
  m->cfg = *cfg;
  m->weights_dtype = native ? WEIGHTS_NATIVE : WEIGHTS_FP32; /* so that model_free frees blocks */
  const size_t d = (size_t)cfg->d_model, q = (size_t)cfg->n_heads * cfg->head_dim,
               kv = (size_t)cfg->n_kv_heads * cfg->head_dim, f = (size_t)cfg->d_mlp,
               v = (size_t)cfg->vocab_size;
  const int ln = cfg->norm == NORM_LAYERNORM;
  int failed = 0;
  const size_t e = (size_t)model_embed_width(cfg);
  if (native) {
    m->embed_blocks = calloc(1, sizeof(model_blocks_t));
    m->unembed_blocks = cfg->tied_unembed ? m->embed_blocks : calloc(1, sizeof(model_blocks_t));
    failed = !m->embed_blocks || !m->unembed_blocks;
  } else {
    m->tok_embed = tensor_alloc(v * e, &failed);
  }
  if (cfg->embed_proj_dim) {
    m->embed_proj_in = tensor_alloc(d * e, &failed);
    m->embed_proj_out = tensor_alloc(e * d, &failed);
  }
  if (cfg->positions == POSITIONS_LEARNED)
    m->pos_embed = tensor_alloc((size_t)cfg->max_positions * d, &failed);
  m->layers = calloc((size_t)cfg->n_layers, sizeof(layer_weights_t));
  if (!m->layers)
    failed = 1;
  for (int l = 0; l < cfg->n_layers && !failed; l++) {
    layer_weights_t *w = &m->layers[l];
    if (!cfg->no_pre_norms)
      w->attn_norm_w = tensor_alloc(d, &failed);
    if (!cfg->no_pre_norms)
      w->mlp_norm_w = tensor_alloc(d, &failed);
    if (ln && !cfg->no_pre_norms) {
      w->attn_norm_b = tensor_alloc(d, &failed);
      w->mlp_norm_b = tensor_alloc(d, &failed);
    }
    if (cfg->post_norms) {
      w->post_attn_norm_w = tensor_alloc(d, &failed);
      w->post_mlp_norm_w = tensor_alloc(d, &failed);
      if (ln) {
        w->post_attn_norm_b = tensor_alloc(d, &failed);
        w->post_mlp_norm_b = tensor_alloc(d, &failed);
      }
    }
    if (cfg->qk_norm) {
      const int wide = cfg->qk_norm != QK_NORM_PER_HEAD;
      w->q_norm_w = tensor_alloc(wide ? q : (size_t)cfg->head_dim, &failed);
      w->k_norm_w = tensor_alloc(wide ? kv : (size_t)cfg->head_dim, &failed);
      if (cfg->qk_norm_bias) {
        w->q_norm_b = tensor_alloc(q, &failed);
        w->k_norm_b = tensor_alloc(kv, &failed);
      }
    }
    w->wq = proj_alloc(q * d, native, &failed);
    w->wk = proj_alloc(kv * d, native, &failed);
    w->wv = proj_alloc(kv * d, native, &failed);
    w->wo = proj_alloc(d * q, native, &failed);
    if (cfg->qkv_bias) {
      w->bq = tensor_alloc(q, &failed);
      w->bk = tensor_alloc(kv, &failed);
      w->bv = tensor_alloc(kv, &failed);
    }
    if (cfg->o_bias)
      w->bo = tensor_alloc(d, &failed);
    w->w_up = proj_alloc(f * d, native, &failed);
    if (cfg->mlp != MLP_GELU)
      w->w_gate = proj_alloc(f * d, native, &failed);
    w->w_down = proj_alloc(d * f, native, &failed);
    if (cfg->mlp_bias) {
      w->b_up = tensor_alloc(f, &failed);
      w->b_down = tensor_alloc(d, &failed);
    }
  }
  if (!cfg->no_final_norm)
    m->final_norm_w = tensor_alloc(d, &failed);
  if (ln && !cfg->no_final_norm)
    m->final_norm_b = tensor_alloc(d, &failed);
  if (!native)
    m->unembed = cfg->tied_unembed ? m->tok_embed : tensor_alloc(v * e, &failed);
  if (cfg->unembed_bias)
    m->unembed_b = tensor_alloc(v, &failed);
  if (failed) {
    model_free(m);
    err_set(err, "out of memory allocating a model of %d layers, width %d, vocabulary %d",
            cfg->n_layers, cfg->d_model, cfg->vocab_size);
    return NULL;
  }
  return m;
}

model_t *model_alloc(const model_config_t *cfg, char *err) {
  return alloc_model(cfg, 0, err);
}

model_t *model_alloc_native(const model_config_t *cfg, char *err) {
  return alloc_model(cfg, 1, err);
}

int model_memory_check(const char *path, uint64_t need, const char *what, const char *hint,
                       char *err) {
  const char *off = getenv("HYDRA_NO_MEMORY_CHECK"); /* where the kernel's figure is too low */
  if (off && *off && strcmp(off, "0") != 0)
    return 0;
  host_memory_t host;
  host_memory_available(&host);
  if (need <= host.bytes)
    return 0;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  return err_set(err, "%s: %s need %.2f GiB of host memory but %.2f GiB is available (%s)%s", path,
                 what, (double)need / gib, (double)host.bytes / gib, host.what, hint);
}

size_t model_n_params(const model_t *m) {
  return m->n_params_file ? m->n_params_file : model_config_n_params(&m->cfg);
}

size_t model_config_n_params(const model_config_t *c) {
  const size_t d = (size_t)c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, f = (size_t)c->d_mlp,
               v = (size_t)c->vocab_size;
  size_t per_layer = (c->no_pre_norms ? 0 : 2 * d) + q * d + 2 * kv * d + d * q +
                     f * d * (c->mlp == MLP_GELU ? 2 : 3);
  if (c->post_norms)
    per_layer += c->norm == NORM_LAYERNORM ? 4 * d : 2 * d;
  if (c->norm == NORM_LAYERNORM && !c->no_pre_norms)
    per_layer += 2 * d;
  per_layer += (c->qkv_bias ? q + 2 * kv : 0) + (c->o_bias ? d : 0) + (c->mlp_bias ? f + d : 0);
  if (c->qk_norm == QK_NORM_PER_HEAD)
    per_layer += 2 * (size_t)c->head_dim;
  if (c->qk_norm == QK_NORM_WHOLE || c->qk_norm == QK_NORM_LAYERNORM_HEADS)
    per_layer += (q + kv) * (c->qk_norm_bias ? 2 : 1);
  const size_t e = (size_t)model_embed_width(c);
  size_t n = v * e + (c->tied_unembed ? 0 : v * e) + c->n_layers * per_layer +
             (c->no_final_norm ? 0 : (c->norm == NORM_LAYERNORM ? 2 * d : d)) +
             (c->embed_proj_dim ? 2 * d * e : 0);
  if (c->positions == POSITIONS_LEARNED)
    n += (size_t)c->max_positions * d;
  if (c->unembed_bias)
    n += v;
  return n;
}

/* Adds a table's bytes to *held or *mapped: fp32 floats (blocks NULL), or
 * blocks, owned or borrowed. */
static void count_table(const float *fp32, size_t n, const model_blocks_t *blocks, uint64_t *held,
                        uint64_t *mapped) {
  if (blocks) {
    *(blocks->borrowed ? mapped : held) += (uint64_t)blocks->rows * blocks->row_bytes;
    *held += sizeof(*blocks);
  } else if (fp32) {
    *held += n * sizeof(float);
  }
}

void model_memory(const model_t *m, uint64_t *held, uint64_t *mapped) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, v = (size_t)c->vocab_size, e = (size_t)model_embed_width(c);
  const int native = m->weights_dtype == WEIGHTS_NATIVE;
  *held = *mapped = 0;
  for (int l = 0; l < c->n_layers; l++) {
    float **ptr[MODEL_LAYER_TENSORS];
    size_t len[MODEL_LAYER_TENSORS];
    int proj[MODEL_LAYER_TENSORS];
    int n = model_layer_tensors(c, &m->layers[l], ptr, len, proj);
    for (int i = 0; i < n; i++)
      count_table(*ptr[i], len[i], native && proj[i] ? (const model_blocks_t *)*ptr[i] : NULL, held,
                  mapped);
  }
  count_table(m->tok_embed, v * e, m->embed_blocks, held, mapped);
  if (m->unembed != m->tok_embed || m->unembed_blocks != m->embed_blocks)
    count_table(m->unembed, v * e, m->unembed_blocks, held, mapped);
  count_table(m->embed_proj_in, d * e, NULL, held, mapped);
  count_table(m->embed_proj_out, e * d, NULL, held, mapped);
  count_table(m->pos_embed, (size_t)c->max_positions * d, NULL, held, mapped);
  count_table(m->final_norm_w, d, NULL, held, mapped);
  count_table(m->final_norm_b, d, NULL, held, mapped);
  count_table(m->unembed_b, v, NULL, held, mapped);
}

int model_layer_tensors(const model_config_t *c, layer_weights_t *w, float ***ptr, size_t *len,
                        int *proj) {
  const size_t d = (size_t)c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, f = (size_t)c->d_mlp;
  const size_t qn = c->qk_norm == QK_NORM_PER_HEAD ? (size_t)c->head_dim : q,
               kn = c->qk_norm == QK_NORM_PER_HEAD ? (size_t)c->head_dim : kv;
  float **p[MODEL_LAYER_TENSORS] = {&w->attn_norm_w,
                                    &w->attn_norm_b,
                                    &w->wq,
                                    &w->bq,
                                    &w->wk,
                                    &w->bk,
                                    &w->wv,
                                    &w->bv,
                                    &w->wo,
                                    &w->bo,
                                    &w->mlp_norm_w,
                                    &w->mlp_norm_b,
                                    &w->w_up,
                                    &w->b_up,
                                    &w->w_gate,
                                    &w->w_down,
                                    &w->b_down,
                                    &w->post_attn_norm_w,
                                    &w->post_attn_norm_b,
                                    &w->post_mlp_norm_w,
                                    &w->post_mlp_norm_b,
                                    &w->q_norm_w,
                                    &w->k_norm_w,
                                    &w->q_norm_b,
                                    &w->k_norm_b};
  const size_t n[MODEL_LAYER_TENSORS] = {d, d, q * d, q,     kv * d, kv,    kv * d, kv, d * q,
                                         d, d, d,     f * d, f,      f * d, d * f,  d,  d,
                                         d, d, d,     qn,    kn,     q,     kv};
  const int is_proj[MODEL_LAYER_TENSORS] = {0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1,
                                            0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < MODEL_LAYER_TENSORS; i++) {
    ptr[i] = p[i];
    len[i] = n[i];
    if (proj)
      proj[i] = is_proj[i];
  }
  return MODEL_LAYER_TENSORS;
}

const char *weights_dtype_name(int dtype) {
  static const char *const names[] = {"fp32", "bf16", "native"};
  return dtype >= 0 && dtype <= WEIGHTS_NATIVE ? names[dtype] : "?";
}

int weights_dtype_parse(const char *name) {
  for (int i = WEIGHTS_FP32; i <= WEIGHTS_NATIVE; i++)
    if (strcmp(name, weights_dtype_name(i)) == 0)
      return i;
  return -1;
}

int model_native_type(uint32_t type) {
  switch (type) {
  case GGUF_TENSOR_F32:
  case GGUF_TENSOR_F16:
  case GGUF_TENSOR_BF16:
  case GGUF_TENSOR_Q4_0:
  case GGUF_TENSOR_Q4_1:
  case GGUF_TENSOR_Q5_0:
  case GGUF_TENSOR_Q5_1:
  case GGUF_TENSOR_Q8_0:
  case GGUF_TENSOR_Q4_K:
  case GGUF_TENSOR_Q5_K:
  case GGUF_TENSOR_Q6_K:
    return 1;
  default:
    return 0;
  }
}

void model_blocks_row(const model_blocks_t *w, int r, float *dst) {
  const uint8_t *row = w->blocks + (size_t)r * w->row_bytes;
  const gguf_quant_type_t *tt = gguf_quant_type(w->type);
  if (w->type == GGUF_TENSOR_F32)
    memcpy(dst, row, (size_t)w->cols * sizeof(float));
  else
    tt->decode(row, dst, (size_t)w->cols / tt->block_size);
}

const float *model_embed_row(const model_t *m, int token, float *buf) {
  if (m->tok_embed)
    return m->tok_embed + (size_t)token * model_embed_width(&m->cfg);
  model_blocks_row(m->embed_blocks, token, buf);
  return buf;
}

const float *model_unembed_row(const model_t *m, int token, float *buf) {
  if (m->unembed)
    return m->unembed + (size_t)token * model_embed_width(&m->cfg);
  model_blocks_row(m->unembed_blocks, token, buf);
  return buf;
}

static void free_blocks(model_blocks_t *w) {
  if (w && !w->borrowed)
    free(w->blocks);
  free(w);
}

void model_free(model_t *m) {
  if (!m)
    return;
  if (m->layers) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
      float **ptr[MODEL_LAYER_TENSORS];
      size_t len[MODEL_LAYER_TENSORS];
      int proj[MODEL_LAYER_TENSORS];
      int n = model_layer_tensors(&m->cfg, &m->layers[l], ptr, len, proj);
      for (int i = 0; i < n; i++) {
        if (m->weights_dtype == WEIGHTS_NATIVE && proj[i])
          free_blocks((model_blocks_t *)*ptr[i]);
        else
          free(*ptr[i]);
      }
    }
    free(m->layers);
  }
  if (m->unembed_blocks != m->embed_blocks)
    free_blocks(m->unembed_blocks);
  free_blocks(m->embed_blocks);
  gguf_unmap(m->mapping, m->mapping_bytes);
  if (m->unembed != m->tok_embed)
    free(m->unembed);
  free(m->tok_embed);
  free(m->embed_proj_in);
  free(m->embed_proj_out);
  free(m->pos_embed);
  free(m->final_norm_w);
  free(m->final_norm_b);
  free(m->unembed_b);
  free(m);
}

static void round_bf16(float *x, size_t n) {
  if (x)
    for (size_t i = 0; i < n; i++)
      x[i] = bf16_to_float(bf16_from_float(x[i]));
}

void model_round_bf16(model_t *m) {
  const model_config_t *c = &m->cfg;
  const size_t d = (size_t)c->d_model, vd = (size_t)c->vocab_size * model_embed_width(c);
  round_bf16(m->embed_proj_in, d * c->embed_proj_dim);
  round_bf16(m->embed_proj_out, d * c->embed_proj_dim);
  for (int l = 0; l < c->n_layers; l++) {
    float **ptr[MODEL_LAYER_TENSORS];
    size_t len[MODEL_LAYER_TENSORS];
    int n = model_layer_tensors(c, &m->layers[l], ptr, len, NULL);
    for (int i = 0; i < n; i++)
      round_bf16(*ptr[i], len[i]);
  }
  round_bf16(m->tok_embed, vd);
  if (m->unembed != m->tok_embed)
    round_bf16(m->unembed, vd);
  if (m->pos_embed)
    round_bf16(m->pos_embed, (size_t)c->max_positions * d);
  round_bf16(m->final_norm_w, d);
  round_bf16(m->final_norm_b, d);
  round_bf16(m->unembed_b, (size_t)c->vocab_size);
  m->weights_dtype = WEIGHTS_BF16;
}
