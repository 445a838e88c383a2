/* loader_gguf_config.c - a GGUF file's general.architecture and its
 * "<arch>." metadata (as llama.cpp's convert_hf_to_gguf.py writes them) read
 * into the block description. Every key of the architecture is either read
 * or known not to change the computation; any other, and any value the
 * architecture cannot have, is refused naming the key. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "loader_gguf_internal.h"

#define F(x) GGUF_ARCH_##x

static const gguf_arch_t gguf_archs[] = {
    {"llama", "llama", NORM_RMSNORM, POSITIONS_ROPE, MLP_SWIGLU, ACT_SILU,
     F(PERMUTED_QK) | F(HEAD_DIM_KEY) | F(GQA) | F(OPTIONAL_BIASES) | F(ROPE_FREQS), 0, 0, 0.0f},
    {"qwen2", "qwen2", NORM_RMSNORM, POSITIONS_ROPE, MLP_SWIGLU, ACT_SILU,
     F(HEAD_DIM_KEY) | F(GQA) | F(QKV_BIAS), 0, 0, 0.0f},
    {"qwen3", "qwen3", NORM_RMSNORM, POSITIONS_ROPE, MLP_SWIGLU, ACT_SILU,
     F(HEAD_DIM_KEY) | F(GQA) | F(QK_NORM), 0, 0, 0.0f},
    /* Pythia's hidden_act is "gelu" (erf); the file does not say */
    {"gptneox", "gpt_neox", NORM_LAYERNORM, POSITIONS_ROPE, MLP_GELU, ACT_GELU_ERF,
     F(FUSED_QKV) | F(PARTIAL_ROTARY) | F(ALL_BIASES) | F(PARALLEL_RESIDUAL), 0, 0, 0.0f},
    {"gpt2", "gpt2", NORM_LAYERNORM, POSITIONS_LEARNED, MLP_GELU, ACT_GELU_TANH,
     F(FUSED_QKV) | F(ALL_BIASES), 0, 0, 0.0f},
    /* Gemma's norms are stored as (1 + w) by the converter: plain RMSNorm
     * weights here. ggml_gelu is the tanh approximation. */
    {"gemma", "gemma", NORM_RMSNORM, POSITIONS_ROPE, MLP_GEGLU, ACT_GELU_TANH,
     F(HEAD_DIM_KEY) | F(GQA) | F(GEMMA) | F(TIED_ONLY), 0, 0, 0.0f},
    {"gemma2", "gemma2", NORM_RMSNORM, POSITIONS_ROPE, MLP_GEGLU, ACT_GELU_TANH,
     F(HEAD_DIM_KEY) | F(GQA) | F(GEMMA) | F(TIED_ONLY) | F(POST_NORMS) | F(SOFTCAPS) | F(SWA), 2,
     46, 0.0f},
    {"gemma3", "gemma3_text", NORM_RMSNORM, POSITIONS_ROPE, MLP_GEGLU, ACT_GELU_TANH,
     F(HEAD_DIM_KEY) | F(GQA) | F(GEMMA) | F(POST_NORMS) | F(QK_NORM) | F(FINAL_SOFTCAP) | F(SWA) |
         F(LOCAL_BASE),
     6, 62, 0.0f},
    {"phi3", "phi3", NORM_RMSNORM, POSITIONS_ROPE, MLP_SWIGLU, ACT_SILU,
     F(FUSED_QKV_EITHER) | F(FUSED_GATE_UP) | F(GQA) | F(PARTIAL_ROTARY) | F(SWA_IGNORED) |
         F(LONGROPE),
     0, 0, 0.0f},
    {"phi2", "phi", NORM_LAYERNORM, POSITIONS_ROPE, MLP_GELU, ACT_GELU_TANH,
     F(FUSED_QKV_EITHER) | F(ALL_BIASES) | F(PARTIAL_ROTARY) | F(SHARED_NORM) | F(UNEMBED_BIAS), 0,
     0, 0.0f},
    {"stablelm", "stablelm", NORM_LAYERNORM, POSITIONS_ROPE, MLP_SWIGLU, ACT_SILU,
     F(GQA) | F(PARTIAL_ROTARY) | F(OPTIONAL_QKV_BIAS) | F(PARALLEL_RESIDUAL) | F(SHARED_NORM), 0,
     0, 0.0f},
    {"olmo2", "olmo2", NORM_RMSNORM, POSITIONS_ROPE, MLP_SWIGLU, ACT_SILU,
     F(HEAD_DIM_KEY) | F(GQA) | F(NO_PRE_NORMS) | F(POST_NORMS) | F(QK_NORM_WHOLE), 0, 0, 0.0f},
    {"granite", "granite", NORM_RMSNORM, POSITIONS_ROPE, MLP_SWIGLU, ACT_SILU,
     F(PERMUTED_QK) | F(HEAD_DIM_KEY) | F(GQA) | F(OPTIONAL_BIASES) | F(GRANITE), 0, 0, 0.0f},
};
#define N_ARCHS (sizeof(gguf_archs) / sizeof(gguf_archs[0]))

/* The "<arch>." keys an architecture may carry: read below, or known to
 * leave the logits alone (tensor_data_layout, rope.scaling.finetuned,
 * expert_used_count without experts). */
static int key_allowed(const gguf_arch_t *a, const char *suffix) {
  static const char *const always[] = {"block_count", "context_length", "embedding_length",
                                       "feed_forward_length", "attention.head_count",
                                       "attention.head_count_kv", "vocab_size", "expert_count",
                                       "expert_used_count", "attention.sliding_window",
                                       /* llama.cpp's own bookkeeping */
                                       "tensor_data_layout"};
  static const char *const rope[] = {"rope.dimension_count",
                                     "rope.freq_base",
                                     "rope.scale_linear",
                                     "rope.scaling.type",
                                     "rope.scaling.factor",
                                     "rope.scaling.original_context_length",
                                     "rope.scaling.finetuned",
                                     "rope.scaling.yarn_beta_fast",
                                     "rope.scaling.yarn_beta_slow",
                                     "rope.scaling.yarn_ext_factor",
                                     "rope.scaling.attn_factor",
                                     "rope.scaling.yarn_attn_factor",
                                     "rope.scaling.yarn_log_multiplier"};
  static const char *const head_dim[] = {"attention.key_length", "attention.value_length"};
#define IN(list)                                                                                   \
  for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)                                      \
    if (strcmp(suffix, list[i]) == 0)                                                              \
      return 1;
  IN(always);
  if (a->positions == POSITIONS_ROPE)
    IN(rope);
  if (a->flags & F(HEAD_DIM_KEY))
    IN(head_dim);
  static const char *const softcaps[] = {"attn_logit_softcapping", "final_logit_softcapping"};
  static const char *const final_softcap[] = {"final_logit_softcapping"};
  static const char *const granite[] = {"attention.scale", "embedding_scale", "residual_scale",
                                        "logit_scale"};
  if (a->flags & F(SOFTCAPS))
    IN(softcaps);
  if (a->flags & F(FINAL_SOFTCAP))
    IN(final_softcap);
  if (a->flags & F(GRANITE))
    IN(granite);
  if ((a->flags & F(LOCAL_BASE)) && strcmp(suffix, "rope.freq_base_swa") == 0)
    return 1;
#undef IN
  if (a->norm == NORM_RMSNORM && strcmp(suffix, "attention.layer_norm_rms_epsilon") == 0)
    return 1;
  if (a->norm == NORM_LAYERNORM && strcmp(suffix, "attention.layer_norm_epsilon") == 0)
    return 1;
  return (a->flags & F(PARALLEL_RESIDUAL)) && strcmp(suffix, "use_parallel_residual") == 0;
}

static int check_keys(const gguf_t *g, const gguf_arch_t *a, char *err) {
  const size_t len = strlen(a->name);
  for (int64_t i = 0; i < gguf_n_kv(g); i++) {
    const char *key = gguf_key(g, i);
    if (strncmp(key, a->name, len) != 0 || key[len] != '.')
      continue;
    if (!key_allowed(a, key + len + 1))
      return err_set(err,
                     "%s: metadata key %s is not one hydra reads for architecture '%s' (it may "
                     "change the computation)",
                     gguf_path(g), key, a->name);
  }
  return 0;
}

/* "<arch>.<suffix>" */
typedef struct {
  char s[128];
} arch_key_t;

static arch_key_t arch_key(const gguf_arch_t *a, const char *suffix) {
  arch_key_t k;
  snprintf(k.s, sizeof(k.s), "%s.%s", a->name, suffix);
  return k;
}

static int has(const gguf_t *g, const gguf_arch_t *a, const char *suffix) {
  return gguf_find_key(g, arch_key(a, suffix).s) >= 0;
}

/* An integer in [lo, hi]; absent: an error when required, else dflt. */
static int get_int(const gguf_t *g, const gguf_arch_t *a, const char *suffix, int required,
                   int64_t dflt, int64_t lo, int64_t hi, int *out, char *err) {
  const arch_key_t k = arch_key(a, suffix);
  int64_t v = dflt;
  if ((gguf_find_key(g, k.s) >= 0 || required) && gguf_get_int(g, k.s, &v, err))
    return -1;
  if (v < lo || v > hi)
    return err_set(err, "%s: metadata key %s = %lld is out of range [%lld, %lld]", gguf_path(g),
                   k.s, (long long)v, (long long)lo, (long long)hi);
  *out = (int)v;
  return 0;
}

/* A positive finite number; absent: an error when required, else dflt. */
static int get_float(const gguf_t *g, const gguf_arch_t *a, const char *suffix, int required,
                     double dflt, float *out, char *err) {
  const arch_key_t k = arch_key(a, suffix);
  double v = dflt;
  if ((gguf_find_key(g, k.s) >= 0 || required) && gguf_get_float(g, k.s, &v, err))
    return -1;
  if (!(v > 0.0 && v <= FLT_MAX))
    return err_set(err, "%s: metadata key %s = %g must be positive and finite", gguf_path(g), k.s,
                   v);
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

static int find_arch(const gguf_t *g, const gguf_arch_t **out, char *err) {
  const char *name = NULL;
  if (gguf_get_string(g, "general.architecture", &name, NULL, err))
    return -1;
  for (size_t i = 0; i < N_ARCHS; i++)
    if (strcmp(name, gguf_archs[i].name) == 0) {
      *out = &gguf_archs[i];
      return 0;
    }
  char names[256] = "";
  size_t used = 0;
  for (size_t i = 0; i < N_ARCHS && used < sizeof(names); i++)
    used += (size_t)snprintf(names + used, sizeof(names) - used, "%s'%s'", i ? ", " : "",
                             gguf_archs[i].name);
  return err_set(err, "%s: architecture '%.64s' is not supported (supported: %s)", gguf_path(g),
                 name, names);
}

/* Sizes: layers, width, heads, the head size, the MLP, the context. */
static int read_sizes(const gguf_t *g, const gguf_arch_t *a, model_config_t *c, char *err) {
  const char *path = gguf_path(g);
  if (get_int(g, a, "block_count", 1, 0, 1, INT32_MAX, &c->n_layers, err) ||
      get_int(g, a, "embedding_length", 1, 0, 1, INT32_MAX, &c->d_model, err) ||
      get_int(g, a, "attention.head_count", 1, 0, 1, INT32_MAX, &c->n_heads, err) ||
      get_int(g, a, "attention.head_count_kv", 0, c->n_heads, 1, INT32_MAX, &c->n_kv_heads, err) ||
      get_int(g, a, "feed_forward_length", 1, 0, 1, INT32_MAX, &c->d_mlp, err) ||
      get_int(g, a, "context_length", 1, 0, 1, INT32_MAX, &c->max_positions, err))
    return -1;
  if (!(a->flags & F(GQA)) && c->n_kv_heads != c->n_heads)
    return err_set(err, "%s: %s = %d differs from %s = %d (%s has no grouped-query attention)",
                   path, arch_key(a, "attention.head_count_kv").s, c->n_kv_heads,
                   arch_key(a, "attention.head_count").s, c->n_heads, a->name);
  if (has(g, a, "attention.key_length")) {
    if (get_int(g, a, "attention.key_length", 1, 0, 1, INT32_MAX, &c->head_dim, err))
      return -1;
  } else {
    if (c->d_model % c->n_heads)
      return err_set(err, "%s: %s = %d is not a multiple of %s = %d", path,
                     arch_key(a, "embedding_length").s, c->d_model,
                     arch_key(a, "attention.head_count").s, c->n_heads);
    c->head_dim = c->d_model / c->n_heads;
  }
  int value_length = c->head_dim;
  if (get_int(g, a, "attention.value_length", 0, c->head_dim, 1, INT32_MAX, &value_length, err))
    return -1;
  if (value_length != c->head_dim)
    return err_set(err, "%s: %s = %d differs from the key head size %d (not supported)", path,
                   arch_key(a, "attention.value_length").s, value_length, c->head_dim);
  int window = 0;
  if (get_int(g, a, "attention.sliding_window", 0, 0, 0, INT32_MAX, &window, err))
    return -1;
  if (!(a->flags & (F(SWA) | F(SWA_IGNORED))) && window != 0 &&
      window < c->max_positions) /* as the Hugging Face loader: no prompt reaches past it */
    return err_set(err,
                   "%s: %s = %d is not supported (hydra reads no sliding layers for "
                   "architecture '%s'; 0 or a window of at least %s = %d is accepted)",
                   path, arch_key(a, "attention.sliding_window").s, window, a->name,
                   arch_key(a, "context_length").s, c->max_positions);
  int experts = 0;
  if (get_int(g, a, "expert_count", 0, 0, 0, INT32_MAX, &experts, err))
    return -1;
  if (experts > 0)
    return err_set(err, "%s: %s = %d: mixture-of-experts models are not supported", path,
                   arch_key(a, "expert_count").s, experts);
  return 0;
}

/* A key that must hold its llama.cpp default where present. */
static int require_default(const gguf_t *g, const gguf_arch_t *a, const char *suffix, double dflt,
                           const char *why, char *err) {
  const arch_key_t k = arch_key(a, suffix);
  double v = dflt;
  if (gguf_find_key(g, k.s) >= 0 && gguf_get_float(g, k.s, &v, err))
    return -1;
  if (v != dflt)
    return err_set(err, "%s: %s = %g is not supported (%s)", gguf_path(g), k.s, v, why);
  return 0;
}

/* YaRN as llama.cpp computes it (ggml's rope_yarn): the ramp between
 * floor and ceil of the correction dimensions of yarn_beta_fast and
 * yarn_beta_slow (32, 1) over the original context, cos and sin scaled by
 * 1 + 0.1 ln(factor). That is transformers' yarn with truncate and its
 * default attention factor (read_rope refuses a file's own). */
static int read_yarn(const gguf_t *g, const gguf_arch_t *a, model_config_t *c, char *err) {
  if (get_int(g, a, "rope.scaling.original_context_length", 1, 0, 1, INT32_MAX,
              &c->rope_original_max_positions, err) ||
      get_float(g, a, "rope.scaling.yarn_beta_fast", 0, 32.0, &c->rope_beta_fast, err) ||
      get_float(g, a, "rope.scaling.yarn_beta_slow", 0, 1.0, &c->rope_beta_slow, err) ||
      require_default(g, a, "rope.scaling.yarn_ext_factor", 1.0,
                      "only the full YaRN ramp is implemented", err))
    return -1;
  c->rope_scaling = ROPE_SCALING_YARN;
  c->rope_truncate = 1;
  c->rope_attn_factor = 1.0f + 0.1f * logf(c->rope_factor);
  return 0;
}

/* RoPE: the rotated dimensions, the base, the scaling (linear, yarn). */
static int read_rope(const gguf_t *g, const gguf_arch_t *a, model_config_t *c, char *err) {
  const char *path = gguf_path(g);
  const arch_key_t dims = arch_key(a, "rope.dimension_count");
  c->positions = POSITIONS_ROPE;
  c->rope_pairs = ROPE_HALVES; /* ggml's NEOX RoPE; llama's rows are un-permuted to it */
  if (get_int(g, a, "rope.dimension_count", 0, c->head_dim, 1, INT32_MAX, &c->rotary_dim, err) ||
      get_float(g, a, "rope.freq_base", 0, 10000.0, &c->rope_theta, err))
    return -1;
  if (!(a->flags & F(PARTIAL_ROTARY)) && c->rotary_dim != c->head_dim)
    return err_set(err,
                   "%s: %s = %d differs from the head size %d: architecture '%s' rotates whole "
                   "heads%s",
                   path, dims.s, c->rotary_dim, c->head_dim, a->name,
                   a->flags & F(PERMUTED_QK) ? " (llama.cpp refuses it too)" : "");
  if (c->rotary_dim > c->head_dim || c->rotary_dim % 2)
    return err_set(err, "%s: %s = %d must be even and at most the head size %d", path, dims.s,
                   c->rotary_dim, c->head_dim);
  /* llama.cpp: the factor is rope.scaling.factor, else the older
   * rope.scale_linear, applied as the type says (linear when absent) */
  float factor = 1.0f;
  const char *type = "linear";
  const arch_key_t type_key = arch_key(a, "rope.scaling.type");
  if (get_float(g, a,
                has(g, a, "rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear", 0,
                1.0, &factor, err) ||
      (gguf_find_key(g, type_key.s) >= 0 && gguf_get_string(g, type_key.s, &type, NULL, err)))
    return -1;
  /* llama.cpp multiplies cos and sin by these whatever the scaling;
   * transformers reads them differently or not at all */
  static const char *why = "llama.cpp and transformers read it differently";
  const int longrope = (a->flags & F(LONGROPE)) && gguf_tensor_find(g, "rope_factors_short.weight");
  if ((!longrope && require_default(g, a, "rope.scaling.attn_factor", 1.0, why, err)) ||
      require_default(g, a, "rope.scaling.yarn_attn_factor", 1.0, why, err) ||
      require_default(g, a, "rope.scaling.yarn_log_multiplier", 0.0, why, err))
    return -1;
  if (factor == 1.0f)
    return 0;
  c->rope_factor = factor;
  if (strcmp(type, "linear") == 0) {
    c->rope_scaling = ROPE_SCALING_LINEAR;
    return 0;
  }
  if (strcmp(type, "yarn") == 0)
    return read_yarn(g, a, c, err);
  return err_set(err, "%s: %s = '%.32s' with factor %g is not supported (linear or yarn)", path,
                 type_key.s, type, (double)factor);
}

/* A tensor of llama.cpp's per-pair divisors of the frequencies (name), into
 * c->rope_freq_factors (NULL: only checked); 0 when the file has none. */
static int read_freq_factors(const gguf_t *g, const char *name, model_config_t *c, float *dst,
                             char *err) {
  const gguf_tensor_t *t = gguf_tensor_find(g, name);
  if (!t)
    return 0;
  const int pairs = c->rotary_dim / 2;
  if (c->rotary_dim > MODEL_MAX_HEAD_DIM) /* before model_config_check: the array's bound */
    return err_set(err, "%s: head size %d is out of range", gguf_path(g), c->head_dim);
  if (t->n_dims != 1 || t->ne[0] != (uint64_t)pairs)
    return err_set(err, "%s: tensor %s has %llu values; the rotary needs %d", gguf_path(g), name,
                   (unsigned long long)t->n_elements, pairs);
  if (!gguf_tensor_type_supported(t->type))
    return err_set(err, "%s: tensor %s has type %s, which hydra cannot dequantise", gguf_path(g),
                   name, gguf_tensor_type_name(t->type));
  float scratch[MODEL_MAX_HEAD_DIM / 2];
  if (gguf_tensor_read_f32(g, t, dst ? dst : scratch, (size_t)pairs, err))
    return -1;
  if (dst) { /* model_config_check checks them */
    c->rope_n_freq_factors = pairs;
    return 0;
  }
  for (int i = 0; i < pairs; i++)
    if (!(scratch[i] > 0.0f && scratch[i] <= FLT_MAX))
      return err_set(err, "%s: tensor %s[%d] = %g must be positive and finite", gguf_path(g), name,
                     i, (double)scratch[i]);
  return 0;
}

/* rope_freqs.weight: Llama 3's scaling as llama.cpp stores it. */
static int read_rope_freqs(const gguf_t *g, model_config_t *c, char *err) {
  return read_freq_factors(g, "rope_freqs.weight", c, c->rope_freq_factors, err);
}

/* Phi-3's longrope as llama.cpp's converter writes it: per-pair divisors in
 * rope_factors_short.weight and rope_factors_long.weight, cos and sin times
 * rope.scaling.attn_factor, the pretraining context in
 * rope.scaling.original_context_length. Computed as transformers does within
 * that context (the short factors); llama.cpp picks the long ones for a
 * context set past it, transformers for a prompt past it, and hydra takes no
 * prompt past it (the context is cut to it). */
static int read_longrope(const gguf_t *g, const gguf_arch_t *a, model_config_t *c, char *err) {
  const int has_short = gguf_tensor_find(g, "rope_factors_short.weight") != NULL,
            has_long = gguf_tensor_find(g, "rope_factors_long.weight") != NULL;
  if (!has_short && !has_long)
    return 0;
  if (!has_short || !has_long)
    return err_set(err, "%s: tensor %s without %s (longrope needs both)", gguf_path(g),
                   has_short ? "rope_factors_short.weight" : "rope_factors_long.weight",
                   has_short ? "rope_factors_long.weight" : "rope_factors_short.weight");
  if (c->rope_scaling != ROPE_SCALING_NONE)
    return err_set(err, "%s: rope factor tensors with %s: one scaling or the other", gguf_path(g),
                   arch_key(a, "rope.scaling.type").s);
  int original = c->max_positions;
  if (read_freq_factors(g, "rope_factors_short.weight", c, c->rope_freq_factors, err) ||
      read_freq_factors(g, "rope_factors_long.weight", c, NULL, err) ||
      get_float(g, a, "rope.scaling.attn_factor", 0, 1.0, &c->rope_attn_factor, err) ||
      get_int(g, a, "rope.scaling.original_context_length", 0, c->max_positions, 1, INT32_MAX,
              &original, err))
    return -1;
  c->rope_scaling = ROPE_SCALING_LONGROPE;
  c->rope_original_max_positions = original;
  c->rope_factor = c->max_positions > original ? (float)c->max_positions / (float)original : 1.0f;
  if (c->max_positions > original)
    c->max_positions = original;
  return 0;
}

/* Gemma: embeddings times sqrt(embedding_length) (llama.cpp and
 * transformers alike). Gemma 2/3 as llama.cpp reads them: scores scaled by
 * head size^-1/2 but at the 27B's layer count by (embedding_length /
 * head_count)^-1/2 (the checkpoints' query_pre_attn_scalar), soft-caps from
 * their keys (gemma2: 50 and 30 when absent; gemma3: a final one only, none
 * when absent), every swa_period-th layer full and the others sliding over
 * attention.sliding_window keys (gemma2: 4096 when absent; gemma3: no window
 * when absent or 0), gemma3's sliding layers rotating with base 10000,
 * unscaled. */
static int read_gemma(const gguf_t *g, const gguf_arch_t *a, model_config_t *c, char *err) {
  c->embed_scale = (float)sqrt((double)c->d_model);
  if (!(a->flags & F(SWA)))
    return 0;
  if (c->n_layers == a->big_layers)
    c->attn_scale = 1.0f / sqrtf((float)(c->d_model / c->n_heads));
  if (a->flags & F(SOFTCAPS)) {
    if (get_float(g, a, "attn_logit_softcapping", 0, 50.0, &c->attn_softcap, err) ||
        get_float(g, a, "final_logit_softcapping", 0, 30.0, &c->final_softcap, err))
      return -1;
  } else if (has(g, a, "final_logit_softcapping") &&
             get_float(g, a, "final_logit_softcapping", 1, 0.0, &c->final_softcap, err)) {
    return -1;
  }
  const int gemma2 = (a->flags & F(SOFTCAPS)) != 0;
  if (get_int(g, a, "attention.sliding_window", 0, gemma2 ? 4096 : 0, gemma2, INT32_MAX,
              &c->sliding_window, err))
    return -1;
  c->sliding_period = a->swa_period;
  /* llama.cpp sets gemma3's local base to 10000 after reading the file's
   * rope.freq_base_swa (which newer converters write): any other is refused */
  if ((a->flags & F(LOCAL_BASE)) &&
      require_default(g, a, "rope.freq_base_swa", 10000.0,
                      "llama.cpp rotates gemma3's sliding layers with base 10000", err))
    return -1;
  if ((a->flags & F(LOCAL_BASE)) && c->sliding_window > 0)
    c->rope_local_theta = 10000.0f;
  return 0;
}

/* Granite's multipliers as llama.cpp reads them: scores times
 * attention.scale (absent: head size^-1/2), embeddings times
 * embedding_scale, each sublayer's output times residual_scale, the logits
 * divided by logit_scale (kept in *a: loader_gguf.c divides the final
 * RMSNorm's weight by it, the logits being linear in it). */
static int read_granite(const gguf_t *g, gguf_arch_t *a, model_config_t *c, char *err) {
  float logit_scale = 1.0f;
  if ((has(g, a, "attention.scale") &&
       get_float(g, a, "attention.scale", 1, 0.0, &c->attn_scale, err)) ||
      get_float(g, a, "embedding_scale", 0, 1.0, &c->embed_scale, err) ||
      get_float(g, a, "residual_scale", 0, 1.0, &c->residual_scale, err) ||
      get_float(g, a, "logit_scale", 0, 1.0, &logit_scale, err))
    return -1;
  a->logit_scale = logit_scale;
  return 0;
}

/* A parallel residual: gptneox says so in use_parallel_residual (required);
 * stablelm has one when its layers lack ffn_norm (llama.cpp looks at the
 * tensor; the key, where present, must agree); phi2 always has one. With a
 * shared norm, attention and MLP read attn_norm's output. */
static int read_residual(const gguf_t *g, gguf_arch_t *a, model_config_t *c, char *err) {
  const arch_key_t k = arch_key(a, "use_parallel_residual");
  if (!(a->flags & F(PARALLEL_RESIDUAL))) {
    c->parallel_residual = (a->flags & F(SHARED_NORM)) != 0;
    return 0;
  }
  if (!(a->flags & F(SHARED_NORM)))
    return gguf_get_bool(g, k.s, &c->parallel_residual, err);
  c->parallel_residual = gguf_tensor_find(g, "blk.0.ffn_norm.weight") == NULL;
  if (!c->parallel_residual)
    a->flags &= ~(unsigned)F(SHARED_NORM);
  int said = c->parallel_residual;
  if (gguf_find_key(g, k.s) >= 0 && gguf_get_bool(g, k.s, &said, err))
    return -1;
  if (said != c->parallel_residual)
    return err_set(err, "%s: %s = %s but layer 0 %s ffn_norm (llama.cpp follows the tensors)",
                   gguf_path(g), k.s, said ? "true" : "false",
                   c->parallel_residual ? "has no" : "has an");
  return 0;
}

/* The vocabulary from token_embd.weight, tying, biases from the tensors. */
static int read_tensor_facts(const gguf_t *g, gguf_arch_t *a, model_config_t *c, char *err) {
  const char *path = gguf_path(g);
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
  int vocab = c->vocab_size;
  if (get_int(g, a, "vocab_size", 0, c->vocab_size, 1, INT32_MAX, &vocab, err))
    return -1;
  if (vocab != c->vocab_size)
    return err_set(err, "%s: %s = %d but token_embd.weight has %d rows", path,
                   arch_key(a, "vocab_size").s, vocab, c->vocab_size);
  c->tied_unembed = (a->flags & F(TIED_ONLY)) || gguf_tensor_find(g, "output.weight") == NULL;
  c->unembed_bias = (a->flags & F(UNEMBED_BIAS)) != 0;
  if ((a->flags & F(FUSED_QKV_EITHER)) && gguf_tensor_find(g, "blk.0.attn_qkv.weight"))
    a->flags |= F(FUSED_QKV);
  if (a->flags & F(ALL_BIASES))
    c->qkv_bias = c->o_bias = c->mlp_bias = 1;
  else if (a->flags & F(QKV_BIAS))
    c->qkv_bias = 1;
  else if (a->flags & F(OPTIONAL_BIASES)) { /* as layer 0 has them; every layer must */
    c->qkv_bias = gguf_tensor_find(g, "blk.0.attn_q.bias") != NULL;
    c->o_bias = gguf_tensor_find(g, "blk.0.attn_output.bias") != NULL;
  } else if (a->flags & F(OPTIONAL_QKV_BIAS)) {
    c->qkv_bias = gguf_tensor_find(g, "blk.0.attn_q.bias") != NULL;
  }
  return get_special_id(g, "tokenizer.ggml.bos_token_id", c->vocab_size, &c->bos_id, err) ||
         get_special_id(g, "tokenizer.ggml.eos_token_id", c->vocab_size, &c->eos_id, err);
}

int gguf_config_read(const gguf_t *g, model_config_t *c, gguf_arch_t *arch, char *err) {
  const gguf_arch_t *found = NULL;
  memset(c, 0, sizeof(*c));
  if (find_arch(g, &found, err))
    return -1;
  gguf_arch_t file_arch = *found, *a = &file_arch;
  if (check_keys(g, a, err) || read_sizes(g, a, c, err))
    return -1;
  snprintf(c->family, sizeof(c->family), "%s", a->family);
  c->norm = a->norm;
  c->mlp = a->mlp;
  c->activation = a->activation;
  c->positions = a->positions;
  c->qk_norm = (a->flags & F(QK_NORM))         ? QK_NORM_PER_HEAD
               : (a->flags & F(QK_NORM_WHOLE)) ? QK_NORM_WHOLE
                                               : QK_NORM_NONE;
  c->no_pre_norms = (a->flags & F(NO_PRE_NORMS)) != 0;
  c->post_norms = (a->flags & F(POST_NORMS)) != 0;
  if (get_float(g, a,
                a->norm == NORM_RMSNORM ? "attention.layer_norm_rms_epsilon"
                                        : "attention.layer_norm_epsilon",
                1, 0.0, &c->norm_eps, err))
    return -1;
  if (read_residual(g, a, c, err))
    return -1;
  if (a->positions == POSITIONS_ROPE && read_rope(g, a, c, err))
    return -1;
  if ((a->flags & F(ROPE_FREQS)) && read_rope_freqs(g, c, err))
    return -1;
  if ((a->flags & F(LONGROPE)) && read_longrope(g, a, c, err))
    return -1;
  if ((a->flags & F(GEMMA)) && read_gemma(g, a, c, err))
    return -1;
  if ((a->flags & F(GRANITE)) && read_granite(g, a, c, err))
    return -1;
  if (read_tensor_facts(g, a, c, err))
    return -1;
  char inner[HYDRA_ERR_LEN];
  if (model_config_check(c, inner))
    return err_set(err, "%s: %s", gguf_path(g), inner);
  *arch = *a;
  return 0;
}
