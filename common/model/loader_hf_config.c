/* loader_hf_config.c - a Hugging Face model's config.json read into the
 * block description (model_config_t): its typed fields, and each family's
 * keys mapped onto the description (hf_families[]); every choice hydra does not
 * compute is refused, naming the file and the key. */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "loader_hf_config_internal.h"

/* config.json, parsed. */
typedef struct {
  const char *path;
  const json_t *root;
} hf_config_t;

/* ---- config.json fields ---- */

/* A positive int. Absent: an error when required, else dflt (null too). */
static int config_int(const hf_config_t *c, const char *key, int required, int dflt, int *out,
                      char *err) {
  const json_t *v = json_object_get(c->root, key);
  if (!v && required)
    return err_set(err, "%s: %s is missing (a positive integer)", c->path, key);
  if (!v || (json_is_null(v) && !required)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > INT_MAX)
    return err_set(err, "%s: %s must be a positive integer", c->path, key);
  *out = (int)json_integer_value(v);
  return 0;
}

/* A positive, finite number, read from `obj` (config root or a nested object
 * called `where`) in double, as Python holds it. */
static int config_double_in(const hf_config_t *c, const json_t *obj, const char *where,
                            const char *key, int required, double dflt, double *out, char *err) {
  const json_t *v = json_object_get(obj, key);
  const char *dot = *where ? "." : "";
  if (!v && required)
    return err_set(err, "%s: %s%s%s is missing (a positive number)", c->path, where, dot, key);
  if (!v || (json_is_null(v) && !required)) {
    *out = dflt;
    return 0;
  }
  double x = json_number_value(v);
  if (!json_is_number(v) || !(x > 0.0 && x <= FLT_MAX))
    return err_set(err, "%s: %s%s%s must be a positive number", c->path, where, dot, key);
  *out = x;
  return 0;
}

static int config_number_in(const hf_config_t *c, const json_t *obj, const char *where,
                            const char *key, int required, double dflt, float *out, char *err) {
  double x;
  if (config_double_in(c, obj, where, key, required, dflt, &x, err))
    return -1;
  *out = (float)x;
  return 0;
}

static int config_number(const hf_config_t *c, const char *key, int required, double dflt,
                         float *out, char *err) {
  return config_number_in(c, c->root, "", key, required, dflt, out, err);
}

static int config_bool(const hf_config_t *c, const char *key, int dflt, int *out, char *err) {
  const json_t *v = json_object_get(c->root, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_boolean(v))
    return err_set(err, "%s: %s must be true or false", c->path, key);
  *out = json_is_true(v);
  return 0;
}

/* A string; dflt NULL makes it required. */
static int config_string(const hf_config_t *c, const char *key, const char *dflt, const char **out,
                         char *err) {
  const json_t *v = json_object_get(c->root, key);
  if (!v && !dflt)
    return err_set(err, "%s: %s is missing", c->path, key);
  if (!v || (json_is_null(v) && dflt)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_string(v))
    return err_set(err, "%s: %s must be a string", c->path, key);
  *out = json_string_value(v);
  return 0;
}

/* bos/eos: an integer, a list of integers (the first is taken) or null.
 * An id outside the vocabulary (random-init saves keep gpt2's 50256) reads as
 * unknown, -1. */
static int config_token_id(const hf_config_t *c, const char *key, int vocab_size, int *out,
                           char *err) {
  const json_t *v = json_object_get(c->root, key);
  *out = -1;
  if (!v || json_is_null(v))
    return 0;
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (!json_is_integer(json_array_get(v, i)))
        return err_set(err, "%s: %s[%zu] must be an integer", c->path, key, i);
    }
    v = json_array_get(v, 0);
    if (!v)
      return 0;
  }
  if (!json_is_integer(v))
    return err_set(err, "%s: %s must be an integer, a list of integers or null", c->path, key);
  json_int_t id = json_integer_value(v);
  if (id >= 0 && id < vocab_size)
    *out = (int)id;
  return 0;
}

/* A GELU MLP's activation by its transformers name (ACT2FN): gelu_new,
 * gelu_pytorch_tanh and gelu_fast are one function, the tanh approximation;
 * gelu is the exact (erf) one. */
static int gelu_activation(const hf_config_t *c, const char *key, const char *act,
                           model_config_t *cfg, char *err) {
  if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0 ||
      strcmp(act, "gelu_fast") == 0)
    cfg->activation = ACT_GELU_TANH;
  else if (strcmp(act, "gelu") == 0)
    cfg->activation = ACT_GELU_ERF;
  else
    return err_set(err,
                   "%s: %s \"%.40s\" is not supported (supported: gelu_new, "
                   "gelu_pytorch_tanh, gelu_fast, gelu)",
                   c->path, key, act);
  return 0;
}

static int gpt2_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int n_inner = 0, tied = 1, scale_attn = 1, scale_by_layer = 0;
  const char *act = NULL;
  snprintf(cfg->family, sizeof(cfg->family), "gpt2");
  if (config_int(c, "n_layer", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "n_embd", 1, 0, &cfg->d_model, err) ||
      config_int(c, "n_head", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "n_inner", 0, 0, &n_inner, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "n_positions", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "layer_norm_epsilon", 0, 1e-5, &cfg->norm_eps, err) ||
      config_string(c, "activation_function", "gelu_new", &act, err) ||
      config_bool(c, "tie_word_embeddings", 1, &tied, err) ||
      config_bool(c, "scale_attn_weights", 1, &scale_attn, err) ||
      config_bool(c, "scale_attn_by_inverse_layer_idx", 0, &scale_by_layer, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err))
    return -1;
  if (gelu_activation(c, "activation_function", act, cfg, err))
    return -1;
  if (!scale_attn)
    return err_set(err, "%s: scale_attn_weights = false is not supported", c->path);
  if (scale_by_layer)
    return err_set(err, "%s: scale_attn_by_inverse_layer_idx = true is not supported", c->path);
  if (cfg->d_model % cfg->n_heads)
    return err_set(err, "%s: n_embd = %d is not divisible by n_head = %d", c->path, cfg->d_model,
                   cfg->n_heads);
  cfg->n_kv_heads = cfg->n_heads;
  cfg->head_dim = cfg->d_model / cfg->n_heads;
  if (n_inner == 0 && cfg->d_model > INT_MAX / 4)
    return err_set(err, "%s: n_embd = %d is too large", c->path, cfg->d_model);
  cfg->d_mlp = n_inner ? n_inner : 4 * cfg->d_model;
  cfg->norm = NORM_LAYERNORM;
  cfg->positions = POSITIONS_LEARNED;
  cfg->mlp = MLP_GELU;
  cfg->qkv_bias = 1;
  cfg->o_bias = 1;
  cfg->mlp_bias = 1;
  cfg->tied_unembed = tied;
  return 0;
}

/* How a family spells its rotary settings at the top level of config.json
 * (transformers 4 style); transformers 5 writes them into rope_parameters. */
typedef struct {
  const char *theta_key;  /* "rope_theta" (gpt_neox: "rotary_emb_base") */
  const char *factor_key; /* "partial_rotary_factor" (gpt_neox: "rotary_pct") */
  double factor_dflt;     /* the rotated share of head_dim when none is given */
} rope_keys_t;

static const rope_keys_t rope_keys_default = {"rope_theta", "partial_rotary_factor", 1.0};

/* The pretraining context of llama3 and yarn: a top-level
 * original_max_position_embeddings wins (transformers' exception for Phi-3),
 * then the one in the rope object, then max_position_embeddings. */
static int rope_original_context(const hf_config_t *c, const json_t *params, const char *where,
                                 const model_config_t *cfg, int *out, char *err) {
  const json_t *top = json_object_get(c->root, "original_max_position_embeddings");
  if (top && !json_is_null(top))
    return config_int(c, "original_max_position_embeddings", 1, 0, out, err);
  hf_config_t in = {c->path, params};
  char key[96];
  snprintf(key, sizeof(key), "%s.original_max_position_embeddings", where);
  const json_t *v = json_object_get(params, "original_max_position_embeddings");
  if (v && !json_is_null(v) &&
      (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > INT_MAX))
    return err_set(err, "%s: %s must be a positive integer", c->path, key);
  return config_int(&in, "original_max_position_embeddings", 0, cfg->max_positions, out, err);
}

/* yarn_get_mscale of transformers (YaRN, Eq. 21). */
static double yarn_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* A rope_type's parameters (the object `where`) into cfg, as transformers'
 * rope init functions read them. */
static int rope_scaling_config(const hf_config_t *c, const json_t *params, const char *where,
                               const char *type_key, const char *type, model_config_t *cfg,
                               char *err) {
  double factor = 1.0, x;
  if (strcmp(type, "default") == 0)
    return 0;
  if (strcmp(type, "linear") != 0 && strcmp(type, "dynamic") != 0 && strcmp(type, "llama3") != 0 &&
      strcmp(type, "yarn") != 0)
    return err_set(err,
                   "%s: %s.%s \"%.40s\" is not supported (supported: default, linear, dynamic, "
                   "llama3, yarn)",
                   c->path, where, type_key, type);
  if (config_double_in(c, params, where, "factor", 1, 0.0, &factor, err))
    return -1;
  if (factor < 1.0)
    return err_set(err, "%s: %s.factor = %g must be at least 1", c->path, where, factor);
  cfg->rope_factor = (float)factor;
  if (strcmp(type, "linear") == 0) {
    cfg->rope_scaling = ROPE_SCALING_LINEAR;
    return 0;
  }
  if (strcmp(type, "dynamic") == 0) {
    /* transformers rescales only prompts longer than max_position_embeddings,
     * and hydra takes none: the frequencies stay the default ones. A shorter
     * original context would start the scaling within the prompts hydra takes
     * in other implementations: refused rather than guessed. */
    int original = 0;
    if (rope_original_context(c, params, where, cfg, &original, err))
      return -1;
    if (original < cfg->max_positions)
      return err_set(err,
                     "%s: %s.original_max_position_embeddings = %d with rope_type \"dynamic\" is "
                     "not supported (dynamic scaling within max_position_embeddings = %d)",
                     c->path, where, original, cfg->max_positions);
    cfg->rope_factor = 1.0f;
    return 0;
  }
  if (rope_original_context(c, params, where, cfg, &cfg->rope_original_max_positions, err))
    return -1;
  if (strcmp(type, "llama3") == 0) {
    cfg->rope_scaling = ROPE_SCALING_LLAMA3;
    if (config_number_in(c, params, where, "low_freq_factor", 1, 0.0, &cfg->rope_low_freq_factor,
                         err) ||
        config_number_in(c, params, where, "high_freq_factor", 1, 0.0, &cfg->rope_high_freq_factor,
                         err))
      return -1;
    if (cfg->rope_high_freq_factor <= cfg->rope_low_freq_factor)
      return err_set(err, "%s: %s.high_freq_factor must be above low_freq_factor", c->path, where);
    return 0;
  }
  /* yarn */
  double mscale = 0.0, mscale_all = 0.0, attn = 0.0, beta;
  int truncate = 1;
  const json_t *t = json_object_get(params, "truncate");
  cfg->rope_scaling = ROPE_SCALING_YARN;
  if (t && !json_is_null(t) && !json_is_boolean(t))
    return err_set(err, "%s: %s.truncate must be true or false", c->path, where);
  if (t && json_is_boolean(t))
    truncate = json_is_true(t);
  cfg->rope_truncate = truncate;
  if (config_double_in(c, params, where, "attention_factor", 0, 0.0, &attn, err) ||
      config_double_in(c, params, where, "mscale", 0, 0.0, &mscale, err) ||
      config_double_in(c, params, where, "mscale_all_dim", 0, 0.0, &mscale_all, err) ||
      config_double_in(c, params, where, "beta_fast", 0, 32.0, &beta, err))
    return -1;
  cfg->rope_beta_fast = (float)beta;
  if (config_double_in(c, params, where, "beta_slow", 0, 1.0, &x, err))
    return -1;
  cfg->rope_beta_slow = (float)x;
  if (attn == 0.0)
    attn = mscale > 0.0 && mscale_all > 0.0
               ? yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
               : yarn_mscale(factor, 1.0);
  cfg->rope_attn_factor = (float)attn;
  return 0;
}

/* A longrope factor list (key of `params`, at `where`): n positive numbers. */
static int longrope_factors(const hf_config_t *c, const json_t *params, const char *where,
                            const char *key, int n, float *out, char *err) {
  const json_t *v = json_object_get(params, key);
  if (!v || !json_is_array(v) || json_array_size(v) != (size_t)n)
    return err_set(err, "%s: %s.%s must be a list of %d numbers (rotated dimensions / 2)", c->path,
                   where, key, n);
  for (int i = 0; i < n; i++) {
    const json_t *x = json_array_get(v, (size_t)i);
    const double f = json_number_value(x);
    if (!json_is_number(x) || !(f > 0.0 && f <= FLT_MAX))
      return err_set(err, "%s: %s.%s[%d] must be a positive number", c->path, where, key, i);
    if (out)
      out[i] = (float)f;
  }
  return 0;
}

/* longrope (rotary_dim set first), as transformers'
 * _compute_longrope_parameters: every pair's inverse frequency divided by its
 * short_factor, cos and sin multiplied by attention_factor (when absent:
 * sqrt(1 + ln(factor) / ln(original)) with factor = max_position_embeddings /
 * original when absent too). transformers switches to long_factor for a
 * sequence past the pretraining context `original`; hydra does not, so the
 * context it accepts is that pretraining context. */
static int longrope_config(const hf_config_t *c, const json_t *params, const char *where,
                           int original, model_config_t *cfg, char *err) {
  double factor, attn;
  if (config_double_in(c, params, where, "factor", 0, (double)cfg->max_positions / original,
                       &factor, err))
    return -1;
  attn = factor <= 1.0 ? 1.0 : sqrt(1.0 + log(factor) / log((double)original));
  if (config_double_in(c, params, where, "attention_factor", 0, attn, &attn, err) ||
      longrope_factors(c, params, where, "short_factor", cfg->rotary_dim / 2,
                       cfg->rope_freq_factors, err) ||
      longrope_factors(c, params, where, "long_factor", cfg->rotary_dim / 2, NULL, err))
    return -1;
  cfg->rope_scaling = ROPE_SCALING_LONGROPE;
  cfg->rope_n_freq_factors = cfg->rotary_dim / 2;
  cfg->rope_factor = (float)fmax(factor, 1.0); /* shown by hydra info; the factors do the work */
  cfg->rope_attn_factor = (float)attn;
  cfg->rope_original_max_positions = original;
  if (cfg->max_positions > original)
    cfg->max_positions = original;
  return 0;
}

/* The rotary settings into cfg (head_dim set first). As transformers reads
 * them: a non-null rope_scaling (the older name) wins over rope_parameters;
 * a value in that object wins over the top-level key, which wins over the
 * default. A rope_type hydra does not compute is refused, never ignored. */
static int rope_config(const hf_config_t *c, const rope_keys_t *keys, model_config_t *cfg,
                       char *err) {
  const char *where = "rope_scaling";
  const json_t *params = json_object_get(c->root, where);
  double theta, factor;
  int longrope = 0, original = 0;
  if (!params || json_is_null(params)) {
    where = "rope_parameters";
    params = json_object_get(c->root, where);
  }
  if (params && json_is_null(params))
    params = NULL;
  if (params && !json_is_object(params))
    return err_set(err, "%s: %s must be an object", c->path, where);
  if (config_double_in(c, c->root, "", keys->theta_key, 0, 10000.0, &theta, err) ||
      config_double_in(c, c->root, "", keys->factor_key, 0, keys->factor_dflt, &factor, err))
    return -1;
  if (params) {
    const char *type_key = json_object_get(params, "rope_type") ? "rope_type" : "type";
    const json_t *type = json_object_get(params, type_key);
    if (type && !json_is_string(type))
      return err_set(err, "%s: %s.%s must be a string", c->path, where, type_key);
    longrope = type && strcmp(json_string_value(type), "longrope") == 0;
    if (config_double_in(c, params, where, "rope_theta", 0, theta, &theta, err) ||
        config_double_in(c, params, where, "partial_rotary_factor", 0, factor, &factor, err) ||
        (!longrope && rope_scaling_config(c, params, where, type_key,
                                          type ? json_string_value(type) : "default", cfg, err)))
      return -1;
  }
  if (factor > 1.0)
    return err_set(err, "%s: the partial rotary factor %g is over 1", c->path, factor);
  cfg->rope_theta = (float)theta;
  cfg->rotary_dim = (int)(cfg->head_dim * factor); /* int(head_dim * factor), as transformers */
  if (cfg->rotary_dim % 2 || cfg->rotary_dim == 0)
    return err_set(err,
                   "%s: the partial rotary factor %g gives %d rotated dimensions of %d (must "
                   "be even and positive)",
                   c->path, factor, cfg->rotary_dim, cfg->head_dim);
  cfg->positions = POSITIONS_ROPE;
  cfg->rope_pairs = ROPE_HALVES;
  if (longrope && (rope_original_context(c, params, where, cfg, &original, err) ||
                   longrope_config(c, params, where, original, cfg, err)))
    return -1;
  return 0;
}

/* The keys llama and its descendants (qwen2, ...) share: RMSNorm, whole-head
 * RoPE, a SwiGLU MLP without biases, GQA, tied or untied lm_head. An absent
 * head_dim is head_dim_dflt (0: hidden_size / num_attention_heads); an absent
 * rms_norm_eps is eps_dflt, the family's config class default (0: required). */
static int llama_like_config(const hf_config_t *c, const char *family, double eps_dflt,
                             int head_dim_dflt, int partial_rotary, model_config_t *cfg,
                             char *err) {
  const char *act = NULL;
  snprintf(cfg->family, sizeof(cfg->family), "%s", family);
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_hidden_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_attention_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "num_key_value_heads", 0, cfg->n_heads, &cfg->n_kv_heads, err) ||
      config_int(c, "head_dim", 0, head_dim_dflt, &cfg->head_dim, err) ||
      config_int(c, "intermediate_size", 1, 0, &cfg->d_mlp, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "rms_norm_eps", eps_dflt == 0.0, eps_dflt, &cfg->norm_eps, err) ||
      config_string(c, "hidden_act", "silu", &act, err) ||
      config_bool(c, "tie_word_embeddings", 0, &cfg->tied_unembed, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err))
    return -1;
  if (strcmp(act, "silu") != 0)
    return err_set(err, "%s: hidden_act \"%.40s\" is not supported (%s needs silu)", c->path, act,
                   family);
  if (cfg->head_dim == 0) {
    if (cfg->d_model % cfg->n_heads)
      return err_set(err,
                     "%s: hidden_size = %d is not divisible by num_attention_heads = %d and "
                     "head_dim is not given",
                     c->path, cfg->d_model, cfg->n_heads);
    cfg->head_dim = cfg->d_model / cfg->n_heads;
  }
  if (rope_config(c, &rope_keys_default, cfg, err))
    return -1;
  if (cfg->rotary_dim != cfg->head_dim && !partial_rotary) /* the family rotates whole heads */
    return err_set(err,
                   "%s: partial_rotary_factor < 1 is not supported (%s rotates every "
                   "dimension)",
                   c->path, family);
  cfg->norm = NORM_RMSNORM;
  cfg->mlp = MLP_SWIGLU;
  cfg->activation = ACT_SILU;
  cfg->mlp_bias = 0;
  return 0;
}

static int llama_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int attn_bias = 0, mlp_bias = 0;
  if (llama_like_config(c, "llama", 0.0, 0, 0, cfg, err) ||
      config_bool(c, "attention_bias", 0, &attn_bias, err) ||
      config_bool(c, "mlp_bias", 0, &mlp_bias, err))
    return -1;
  if (mlp_bias)
    return err_set(err, "%s: mlp_bias = true is not supported (no gate_proj bias in the model)",
                   c->path);
  cfg->qkv_bias = cfg->o_bias = attn_bias;
  return 0;
}

/* A non-negative integer (0 allowed), absent or null: dflt. */
static int config_count(const hf_config_t *c, const char *key, int dflt, int *out, char *err) {
  const json_t *v = json_object_get(c->root, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
    return err_set(err, "%s: %s must be a non-negative integer", c->path, key);
  *out = (int)json_integer_value(v);
  return 0;
}

/* Qwen2's and Qwen3's sliding window, as transformers reads it: in effect only with
 * use_sliding_window true and a sliding_window (4096 when absent; null:
 * none), on the layers layer_types names "sliding_attention"; without
 * layer_types, those from max_window_layers (28 when absent) on: layers
 * below it attend over every key. A row of a sliding layer reads its own key
 * and the sliding_window - 1 before it (transformers' sliding mask). A
 * layer_types list hydra cannot describe (a sliding layer below a full one)
 * is refused by name. */
static int qwen_sliding_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int use = 0, window = 4096, first_sliding = 28;
  const json_t *v = json_object_get(c->root, "sliding_window");
  if (config_bool(c, "use_sliding_window", 0, &use, err) ||
      config_count(c, "max_window_layers", 28, &first_sliding, err))
    return -1;
  if (!use || (v && json_is_null(v)))
    return 0;
  if (config_int(c, "sliding_window", 0, 4096, &window, err))
    return -1;
  const json_t *types = json_object_get(c->root, "layer_types");
  if (types && !json_is_null(types)) {
    if (!json_is_array(types) || json_array_size(types) != (size_t)cfg->n_layers)
      return err_set(err, "%s: layer_types must be a list of num_hidden_layers = %d strings",
                     c->path, cfg->n_layers);
    first_sliding = cfg->n_layers;
    for (int l = cfg->n_layers - 1; l >= 0; l--) {
      const char *t = json_string_value(json_array_get(types, (size_t)l));
      if (!t || (strcmp(t, "full_attention") != 0 && strcmp(t, "sliding_attention") != 0))
        return err_set(err,
                       "%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"",
                       c->path, l);
      if (strcmp(t, "sliding_attention") == 0 && first_sliding == l + 1)
        first_sliding = l;
      else if (strcmp(t, "sliding_attention") == 0)
        return err_set(err,
                       "%s: layer_types is not supported (hydra's Qwen sliding layers are those "
                       "from one layer on; layer %d slides below a full layer)",
                       c->path, l);
    }
  }
  if (first_sliding >= cfg->n_layers || window >= cfg->max_positions)
    return 0; /* no layer slides, or no prompt reaches past the window */
  cfg->sliding_window = window;
  cfg->sliding_period = 0;
  cfg->sliding_first_layer = first_sliding;
  return 0;
}

/* Qwen2: llama's block with q, k and v biases and no o_proj bias. */
static int qwen2_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  if (llama_like_config(c, "qwen2", 1e-6, 0, 0, cfg, err) || qwen_sliding_config(c, cfg, err))
    return -1;
  cfg->qkv_bias = 1;
  cfg->o_bias = 0;
  return 0;
}

/* Qwen3: llama's block with q and k RMS-normed per head (over head_dim, with
 * rms_norm_eps) before the rotary, biases on q, k, v and o together
 * (attention_bias), head_dim 128 when absent (Qwen3Config's default), and
 * Qwen2's sliding window. */
static int qwen3_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int attn_bias = 0;
  if (llama_like_config(c, "qwen3", 1e-6, 128, 0, cfg, err) || qwen_sliding_config(c, cfg, err) ||
      config_bool(c, "attention_bias", 0, &attn_bias, err))
    return -1;
  cfg->qkv_bias = cfg->o_bias = attn_bias;
  cfg->qk_norm = QK_NORM_PER_HEAD;
  return 0;
}

/* Mistral: llama's block without biases, every layer attending over a
 * sliding_window of keys (4096 when absent, as MistralConfig; null: all), as
 * Mistral 7B v0.1 does: a row reads its own key and the window - 1 before
 * it. */
static int mistral_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int window = 4096;
  const json_t *v = json_object_get(c->root, "sliding_window");
  if (llama_like_config(c, "mistral", 1e-6, 0, 0, cfg, err) ||
      (!(v && json_is_null(v)) && config_int(c, "sliding_window", 0, 4096, &window, err)))
    return -1;
  if (v && json_is_null(v))
    return 0;
  cfg->sliding_window = window < cfg->max_positions ? window : 0; /* 0: every key */
  cfg->sliding_period = 0;                                        /* every layer */
  return 0;
}

/* OLMo-2: llama's block with no pre norms (attention and MLP read the
 * residual itself), an RMSNorm on each sublayer's output before the residual
 * add (post norms), q and k RMS-normed over their whole projections (not per
 * head) before the rotary, and q/k/v/o biases with attention_bias. */
static int olmo2_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int attn_bias = 0;
  if (llama_like_config(c, "olmo2", 0.0, 0, 0, cfg, err) ||
      config_bool(c, "attention_bias", 0, &attn_bias, err))
    return -1;
  cfg->qkv_bias = cfg->o_bias = attn_bias;
  cfg->no_pre_norms = 1;
  cfg->post_norms = 1;
  cfg->qk_norm = QK_NORM_WHOLE;
  return 0;
}

/* A non-negative number where null means "none" (0) and absence the
 * family's default: Gemma 2's soft-caps. */
static int config_cap(const hf_config_t *c, const char *key, double dflt, float *out, char *err) {
  const json_t *v = json_object_get(c->root, key);
  if (v && json_is_null(v)) {
    *out = 0.0f;
    return 0;
  }
  return config_number(c, key, 0, dflt, out, err);
}

/* layer_types (a list of "sliding_attention" / "full_attention"), or absent:
 * every period-th layer full, the others sliding (period 0: none slide). The
 * list must follow such a pattern (model_layer_slides); refused otherwise. */
static int sliding_layers_config(const hf_config_t *c, int period, model_config_t *cfg, char *err) {
  const json_t *types = json_object_get(c->root, "layer_types");
  cfg->sliding_period = period;
  if (!types || json_is_null(types))
    return 0;
  if (!json_is_array(types) || json_array_size(types) != (size_t)cfg->n_layers)
    return err_set(err, "%s: layer_types must be a list of num_hidden_layers = %d strings", c->path,
                   cfg->n_layers);
  int first_full = -1;
  for (int l = 0; l < cfg->n_layers; l++) {
    const char *t = json_string_value(json_array_get(types, (size_t)l));
    if (!t || (strcmp(t, "full_attention") != 0 && strcmp(t, "sliding_attention") != 0))
      return err_set(err, "%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"",
                     c->path, l);
    if (first_full < 0 && strcmp(t, "full_attention") == 0)
      first_full = l;
  }
  cfg->sliding_period = first_full < 0 ? 0 : first_full + 1;
  if (first_full == 0) /* every layer full: nothing slides */
    cfg->sliding_window = 0;
  for (int l = 0; l < cfg->n_layers; l++) {
    const int slides =
        strcmp(json_string_value(json_array_get(types, (size_t)l)), "sliding_attention") == 0;
    if (cfg->sliding_window > 0 && slides != model_layer_slides(cfg, l))
      return err_set(err,
                     "%s: layer_types is not supported (hydra's sliding layers are all but every "
                     "k-th; layer %d breaks the pattern of every %d-th full)",
                     c->path, l, cfg->sliding_period);
  }
  return 0;
}

/* Granite: llama's block with its multipliers: embeddings times
 * embedding_multiplier, scores times attention_multiplier (instead of
 * 1/sqrt(head_dim)), each sublayer's output times residual_multiplier, and
 * the logits divided by logits_scaling (folded into the final norm's weight
 * by loader_hf.c: the norm is RMSNorm, so the logits are linear in it). */
static int granite_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int attn_bias = 0, mlp_bias = 0;
  float logits_scaling = 1.0f;
  if (llama_like_config(c, "granite", 1e-6, 0, 0, cfg, err) ||
      config_bool(c, "attention_bias", 0, &attn_bias, err) ||
      config_bool(c, "mlp_bias", 0, &mlp_bias, err) ||
      config_number(c, "embedding_multiplier", 0, 1.0, &cfg->embed_scale, err) ||
      config_number(c, "attention_multiplier", 0, 1.0, &cfg->attn_scale, err) ||
      config_number(c, "residual_multiplier", 0, 1.0, &cfg->residual_scale, err) ||
      config_number(c, "logits_scaling", 0, 1.0, &logits_scaling, err))
    return -1;
  if (mlp_bias)
    return err_set(err, "%s: mlp_bias = true is not supported (no gate_proj bias in the model)",
                   c->path);
  cfg->qkv_bias = cfg->o_bias = attn_bias;
  return 0;
}

/* Phi-3: llama's block (loader_hf.c splits its fused qkv_proj and
 * gate_up_proj), partial rotary allowed (Phi-4-mini), a sliding_window on
 * every layer (null: none), the default rotary or longrope (Phi-3-128k,
 * Phi-3.5, Phi-4-mini). */
static int phi3_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  const char *where = "rope_scaling";
  const json_t *params = json_object_get(c->root, where);
  const char *type_key = NULL;
  int longrope = 0;
  if (!params || json_is_null(params))
    params = json_object_get(c->root, where = "rope_parameters");
  if (params && json_is_object(params)) {
    type_key = json_object_get(params, "rope_type") ? "rope_type" : "type";
    const json_t *type = json_object_get(params, type_key);
    const char *t = json_is_string(type) ? json_string_value(type) : NULL;
    longrope = t && (strcmp(t, "longrope") == 0 || strcmp(t, "su") == 0 || strcmp(t, "yarn") == 0);
    if (type && !longrope && (!t || strcmp(t, "default") != 0))
      return err_set(err,
                     "%s: %s.%s %s%.40s%s is not supported (phi3 takes \"default\" and "
                     "\"longrope\", which \"su\" and \"yarn\" mean for phi3)",
                     c->path, where, type_key, t ? "\"" : "", t ? t : "(not a string)",
                     t ? "\"" : "");
  }
  const json_t *window = json_object_get(c->root, "sliding_window");
  if (longrope) { /* the block as a default rotary's, then the longrope */
    json_t *plain = json_deep_copy(c->root);
    json_t *plain_params = plain ? json_object_get(plain, where) : NULL;
    if (!plain_params || json_object_set_new(plain_params, type_key, json_string("default")))
      return json_decref(plain), err_set(err, "%s: out of memory", c->path);
    hf_config_t pc = {c->path, plain};
    int rc = llama_like_config(&pc, "phi3", 1e-5, 0, 1, cfg, err);
    json_decref(plain);
    int original = 4096; /* the top-level key, Phi3Config's 4096 when absent */
    if (rc || config_int(c, "original_max_position_embeddings", 0, 4096, &original, err) ||
        longrope_config(c, params, where, original, cfg, err))
      return -1;
  } else if (llama_like_config(c, "phi3", 1e-5, 0, 1, cfg, err)) {
    return -1;
  }
  if (window && !json_is_null(window) &&
      config_int(c, "sliding_window", 0, 0, &cfg->sliding_window, err))
    return -1;
  cfg->sliding_period = 0; /* every layer */
  return 0;
}

/* Phi (Phi-2): LayerNorm with biases, one input_layernorm read by attention
 * and MLP side by side (a parallel residual; loader_hf.c gives both pre norms
 * its weights), partial rotary (partial_rotary_factor, 0.5 when absent, as
 * PhiConfig), q/k/v/dense and fc1/fc2 biases, a GELU MLP, an lm_head bias;
 * with qk_layernorm, q and k LayerNormed per head (one weight and bias for
 * every head) before the rotary. */
static int phi_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  static const rope_keys_t keys = {"rope_theta", "partial_rotary_factor", 0.5};
  const char *act = NULL;
  int qk_layernorm = 0;
  snprintf(cfg->family, sizeof(cfg->family), "phi");
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_hidden_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_attention_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "num_key_value_heads", 0, cfg->n_heads, &cfg->n_kv_heads, err) ||
      config_int(c, "intermediate_size", 1, 0, &cfg->d_mlp, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "layer_norm_eps", 0, 1e-5, &cfg->norm_eps, err) ||
      config_string(c, "hidden_act", "gelu_new", &act, err) ||
      config_bool(c, "tie_word_embeddings", 0, &cfg->tied_unembed, err) ||
      config_bool(c, "qk_layernorm", 0, &qk_layernorm, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err) ||
      gelu_activation(c, "hidden_act", act, cfg, err))
    return -1;
  if (cfg->d_model % cfg->n_heads)
    return err_set(err, "%s: hidden_size = %d is not divisible by num_attention_heads = %d",
                   c->path, cfg->d_model, cfg->n_heads);
  if (config_int(c, "head_dim", 0, cfg->d_model / cfg->n_heads, &cfg->head_dim, err) ||
      rope_config(c, &keys, cfg, err))
    return -1;
  if (qk_layernorm && cfg->head_dim != cfg->d_model / cfg->n_heads)
    return err_set(err,
                   "%s: qk_layernorm = true with head_dim = %d is not supported (phi's q/k "
                   "LayerNorms are hidden_size / num_attention_heads = %d wide)",
                   c->path, cfg->head_dim, cfg->d_model / cfg->n_heads);
  if (qk_layernorm) { /* one LayerNorm with a bias for every head (repeated per head at load) */
    cfg->qk_norm = QK_NORM_LAYERNORM_HEADS;
    cfg->qk_norm_bias = 1;
  }
  cfg->norm = NORM_LAYERNORM;
  cfg->mlp = MLP_GELU;
  cfg->parallel_residual = 1;
  cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = 1;
  cfg->unembed_bias = 1;
  return 0;
}

/* GPT-Neo's attention_layers ("global" / "local" per layer), expanded from
 * attention_types ([[["global", "local"], 12]]: the pair 12 times) when the
 * file has only those, into the sliding pattern: local layers slide. A list
 * that is not "all but every k-th" (at an offset) is refused by name. */
static int gpt_neo_layers_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  char global[4096];
  int n = 0;
  const json_t *types = json_object_get(c->root, "attention_types");
  if (!types || !json_is_array(types))
    return err_set(err, "%s: attention_types must be a list of [[types...], count]", c->path);
  for (size_t i = 0; i < json_array_size(types); i++) {
    const json_t *item = json_array_get(types, i), *names = json_array_get(item, 0),
                 *count = json_array_get(item, 1);
    if (!json_is_array(item) || !json_is_array(names) || !json_is_integer(count) ||
        json_integer_value(count) < 0 || json_integer_value(count) > 4096)
      return err_set(err, "%s: attention_types[%zu] must be [[types...], count]", c->path, i);
    for (json_int_t k = 0; k < json_integer_value(count); k++)
      for (size_t j = 0; j < json_array_size(names); j++) {
        const char *t = json_string_value(json_array_get(names, j));
        if (!t || (strcmp(t, "global") != 0 && strcmp(t, "local") != 0))
          return err_set(err, "%s: attention_types[%zu]: a type must be \"global\" or \"local\"",
                         c->path, i);
        if (n >= cfg->n_layers || n >= (int)sizeof(global))
          return err_set(err, "%s: attention_types names more layers than num_layers = %d", c->path,
                         cfg->n_layers);
        global[n++] = strcmp(t, "global") == 0;
      }
  }
  if (n != cfg->n_layers)
    return err_set(err, "%s: attention_types names %d layers, num_layers is %d", c->path, n,
                   cfg->n_layers);
  int first = -1, second = -1;
  for (int l = 0; l < n && second < 0; l++) {
    if (global[l] && first >= 0)
      second = l;
    else if (global[l])
      first = l;
  }
  if (first < 0) { /* every layer local */
    cfg->sliding_period = 0;
    return 0;
  }
  cfg->sliding_period = second > 0 ? second - first : n + 1;
  cfg->sliding_offset =
      (cfg->sliding_period - (first + 1) % cfg->sliding_period) % cfg->sliding_period;
  if (cfg->sliding_period == 1) /* every layer global */
    cfg->sliding_window = 0;
  for (int l = 0; l < n; l++)
    if (cfg->sliding_window > 0 && (!global[l]) != model_layer_slides(cfg, l))
      return err_set(err,
                     "%s: attention_types is not supported (hydra's local layers are all but "
                     "every k-th; layer %d breaks the pattern)",
                     c->path, l);
  return 0;
}

/* GPT-Neo: GPT-2's block (LayerNorm with biases, learned positions, a GELU
 * MLP with biases) with separate q/k/v projections without biases, an
 * out_proj with one, scores NOT scaled (no 1/sqrt(head_dim), as GPT-Neo),
 * local layers attending over window_size keys, tied unembedding unless
 * tie_word_embeddings is false. */
static int gpt_neo_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  const char *act = NULL;
  int inner = 0;
  snprintf(cfg->family, sizeof(cfg->family), "gpt_neo");
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "intermediate_size", 0, 0, &inner, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_int(c, "window_size", 0, 256, &cfg->sliding_window, err) ||
      config_number(c, "layer_norm_epsilon", 0, 1e-5, &cfg->norm_eps, err) ||
      config_string(c, "activation_function", "gelu_new", &act, err) ||
      config_bool(c, "tie_word_embeddings", 1, &cfg->tied_unembed, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err) ||
      gelu_activation(c, "activation_function", act, cfg, err))
    return -1;
  if (cfg->d_model % cfg->n_heads)
    return err_set(err, "%s: hidden_size = %d is not divisible by num_heads = %d", c->path,
                   cfg->d_model, cfg->n_heads);
  if (inner == 0 && cfg->d_model > INT_MAX / 4)
    return err_set(err, "%s: hidden_size = %d is too large", c->path, cfg->d_model);
  cfg->d_mlp = inner ? inner : 4 * cfg->d_model;
  cfg->n_kv_heads = cfg->n_heads;
  cfg->head_dim = cfg->d_model / cfg->n_heads;
  cfg->norm = NORM_LAYERNORM;
  cfg->positions = POSITIONS_LEARNED;
  cfg->mlp = MLP_GELU;
  cfg->qkv_bias = 0;
  cfg->o_bias = cfg->mlp_bias = 1;
  cfg->attn_scale = 1.0f;
  return gpt_neo_layers_config(c, cfg, err);
}

/* StableLM: LayerNorm with biases, partial rotary (partial_rotary_factor,
 * 0.25 when absent, as StableLmConfig), q/k/v biases with use_qkv_bias, no
 * o_proj bias, a SwiGLU MLP without biases, untied by default; with
 * use_parallel_residual one input_layernorm read by attention and MLP (as
 * phi); with qk_layernorm, q and k LayerNormed per head before the rotary,
 * each head with its own weight and no bias (StableLM 2 12B). */
static int stablelm_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  static const rope_keys_t keys = {"rope_theta", "partial_rotary_factor", 0.25};
  const char *act = NULL;
  int qk_layernorm = 0;
  snprintf(cfg->family, sizeof(cfg->family), "stablelm");
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_hidden_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_attention_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "num_key_value_heads", 0, cfg->n_heads, &cfg->n_kv_heads, err) ||
      config_int(c, "intermediate_size", 1, 0, &cfg->d_mlp, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "layer_norm_eps", 0, 1e-5, &cfg->norm_eps, err) ||
      config_string(c, "hidden_act", "silu", &act, err) ||
      config_bool(c, "tie_word_embeddings", 0, &cfg->tied_unembed, err) ||
      config_bool(c, "use_qkv_bias", 0, &cfg->qkv_bias, err) ||
      config_bool(c, "qk_layernorm", 0, &qk_layernorm, err) ||
      config_bool(c, "use_parallel_residual", 0, &cfg->parallel_residual, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err))
    return -1;
  if (strcmp(act, "silu") != 0)
    return err_set(err, "%s: hidden_act \"%.40s\" is not supported (stablelm needs silu)", c->path,
                   act);
  if (qk_layernorm) /* StableLM 2 12B: a LayerNorm without bias for each head of q and of k */
    cfg->qk_norm = QK_NORM_LAYERNORM_HEADS;
  if (cfg->d_model % cfg->n_heads)
    return err_set(err, "%s: hidden_size = %d is not divisible by num_attention_heads = %d",
                   c->path, cfg->d_model, cfg->n_heads);
  cfg->head_dim = cfg->d_model / cfg->n_heads;
  if (rope_config(c, &keys, cfg, err))
    return -1;
  cfg->norm = NORM_LAYERNORM;
  cfg->mlp = MLP_SWIGLU;
  cfg->activation = ACT_SILU;
  return 0;
}

/* OPT: LayerNorm with biases before each sublayer and a final one
 * (do_layer_norm_before), or, OPT-350m's do_layer_norm_before false, after
 * each sublayer's residual add and none at the end; learned positions
 * (loader_hf.c drops the table's first two rows: OPT offsets position ids by
 * 2), an MLP fc1/fc2 with ReLU (or a GELU), biases everywhere with
 * enable_bias, tied by default; a word_embed_proj_dim other than
 * hidden_size (OPT-350m) makes the embedding and unembedding that wide, with
 * project_in and project_out around the decoder. LayerNorms without weights
 * and _remove_final_layer_norm are refused by name. */
static int opt_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  const char *act = NULL;
  int pre_norm = 1, bias = 1, affine = 1, remove_final = 0, proj = 0;
  snprintf(cfg->family, sizeof(cfg->family), "opt");
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_hidden_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_attention_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "ffn_dim", 1, 0, &cfg->d_mlp, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_int(c, "word_embed_proj_dim", 0, cfg->d_model, &proj, err) ||
      config_string(c, "activation_function", "relu", &act, err) ||
      config_bool(c, "do_layer_norm_before", 1, &pre_norm, err) ||
      config_bool(c, "enable_bias", 1, &bias, err) ||
      config_bool(c, "layer_norm_elementwise_affine", 1, &affine, err) ||
      config_bool(c, "_remove_final_layer_norm", 0, &remove_final, err) ||
      config_bool(c, "tie_word_embeddings", 1, &cfg->tied_unembed, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err))
    return -1;
  cfg->post_residual_norms = cfg->no_final_norm = !pre_norm;
  cfg->embed_proj_dim = proj != cfg->d_model ? proj : 0;
  if (!affine)
    return err_set(err, "%s: layer_norm_elementwise_affine = false is not supported", c->path);
  if (remove_final)
    return err_set(err, "%s: _remove_final_layer_norm = true is not supported", c->path);
  if (strcmp(act, "relu") == 0)
    cfg->activation = ACT_RELU;
  else if (gelu_activation(c, "activation_function", act, cfg, err))
    return -1;
  if (cfg->d_model % cfg->n_heads)
    return err_set(err, "%s: hidden_size = %d is not divisible by num_attention_heads = %d",
                   c->path, cfg->d_model, cfg->n_heads);
  cfg->n_kv_heads = cfg->n_heads;
  cfg->head_dim = cfg->d_model / cfg->n_heads;
  cfg->norm = NORM_LAYERNORM;
  cfg->norm_eps = 1e-5f; /* nn.LayerNorm's default: OPT sets none */
  cfg->positions = POSITIONS_LEARNED;
  cfg->mlp = MLP_GELU;
  cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = bias;
  return 0;
}

/* GPT-J: one ln_1 read by attention and MLP side by side (a parallel
 * residual), q/k/v/out_proj without biases, rotary_dim dimensions rotated
 * in adjacent pairs with base 10000 (loader_hf.c permutes q's and k's rows
 * into the halves pairing: the scores are unchanged), a GELU MLP
 * fc_in/fc_out with biases, an lm_head with a bias, untied. */
static int gptj_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  const char *act = NULL;
  int inner = 0;
  snprintf(cfg->family, sizeof(cfg->family), "gptj");
  if (config_int(c, "n_embd", 1, 0, &cfg->d_model, err) ||
      config_int(c, "n_layer", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "n_head", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "n_inner", 0, 0, &inner, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "n_positions", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "layer_norm_epsilon", 0, 1e-5, &cfg->norm_eps, err) ||
      config_string(c, "activation_function", "gelu_new", &act, err) ||
      config_bool(c, "tie_word_embeddings", 0, &cfg->tied_unembed, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err) ||
      gelu_activation(c, "activation_function", act, cfg, err))
    return -1;
  if (cfg->d_model % cfg->n_heads)
    return err_set(err, "%s: n_embd = %d is not divisible by n_head = %d", c->path, cfg->d_model,
                   cfg->n_heads);
  if (inner == 0 && cfg->d_model > INT_MAX / 4)
    return err_set(err, "%s: n_embd = %d is too large", c->path, cfg->d_model);
  cfg->head_dim = cfg->d_model / cfg->n_heads;
  const json_t *rot = json_object_get(c->root, "rotary_dim");
  if (rot && json_is_null(rot))
    cfg->rotary_dim = cfg->head_dim; /* GPT-J then rotates the whole of every head */
  else if (config_int(c, "rotary_dim", 0, 64, &cfg->rotary_dim, err))
    return -1;
  if (cfg->rotary_dim > cfg->head_dim || cfg->rotary_dim % 2)
    return err_set(err, "%s: rotary_dim = %d must be even and at most the head size %d", c->path,
                   cfg->rotary_dim, cfg->head_dim);
  cfg->d_mlp = inner ? inner : 4 * cfg->d_model;
  cfg->n_kv_heads = cfg->n_heads;
  cfg->norm = NORM_LAYERNORM;
  cfg->positions = POSITIONS_ROPE;
  cfg->rope_theta = 10000.0f;
  cfg->rope_pairs = ROPE_HALVES; /* after the loader's permutation */
  cfg->mlp = MLP_GELU;
  cfg->parallel_residual = 1;
  cfg->mlp_bias = 1;
  cfg->unembed_bias = 1;
  return 0;
}

/* The keys Gemma 1, 2 and 3 share: llama's shape keys (head_dim given, 256
 * when absent), RMSNorm with (1 + w) (folded into the weights by
 * loader_hf.c), a GeGLU MLP whose GELU is `act_key`, embeddings scaled by
 * sqrt(hidden_size) (in fp32, as the models' normalizer), a tied unembedding
 * unless tie_word_embeddings is false, attention_bias on q/k/v/o. */
static int gemma_like_config(const hf_config_t *c, const char *family, const char *act_key,
                             model_config_t *cfg, char *err) {
  const char *act = NULL;
  int attn_bias = 0, bidirectional = 0;
  snprintf(cfg->family, sizeof(cfg->family), "%s", family);
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_hidden_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_attention_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "num_key_value_heads", 0, cfg->n_heads, &cfg->n_kv_heads, err) ||
      config_int(c, "head_dim", 0, 256, &cfg->head_dim, err) ||
      config_int(c, "intermediate_size", 1, 0, &cfg->d_mlp, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "rms_norm_eps", 0, 1e-6, &cfg->norm_eps, err) ||
      config_string(c, act_key, "gelu_pytorch_tanh", &act, err) ||
      config_bool(c, "tie_word_embeddings", 1, &cfg->tied_unembed, err) ||
      config_bool(c, "attention_bias", 0, &attn_bias, err) ||
      config_bool(c, "use_bidirectional_attention", 0, &bidirectional, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err))
    return -1;
  if (bidirectional)
    return err_set(err,
                   "%s: use_bidirectional_attention = true is not supported (hydra's "
                   "attention is causal)",
                   c->path);
  /* GemmaConfig reads Gemma 1's legacy "gelu" as the tanh approximation */
  if (strcmp(family, "gemma") == 0 && strcmp(act, "gelu") == 0)
    act = "gelu_pytorch_tanh";
  if (gelu_activation(c, act_key, act, cfg, err))
    return -1;
  cfg->norm = NORM_RMSNORM;
  cfg->mlp = MLP_GEGLU;
  cfg->qkv_bias = cfg->o_bias = attn_bias;
  cfg->embed_scale = (float)sqrt((double)cfg->d_model);
  return 0;
}

/* Gemma: llama's block with Gemma's norms, GeGLU and embedding scale. */
static int gemma_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  if (gemma_like_config(c, "gemma", "hidden_act", cfg, err) ||
      rope_config(c, &rope_keys_default, cfg, err))
    return -1;
  if (cfg->rotary_dim != cfg->head_dim)
    return err_set(err,
                   "%s: partial_rotary_factor < 1 is not supported (gemma rotates every "
                   "dimension)",
                   c->path);
  return 0;
}

/* Gemma 2's and 3's attention: scores scaled by query_pre_attn_scalar^-1/2
 * (256 when absent), attention and final-logit soft-caps (absent: the
 * family's default; null: none), a sliding_window (4096 when absent; null:
 * none) on the layers layer_types names (absent: all but every period-th). */
static int gemma_attention_config(const hf_config_t *c, double softcap_attn, double softcap_final,
                                  int period, model_config_t *cfg, char *err) {
  double scalar = 256.0;
  const json_t *window = json_object_get(c->root, "sliding_window");
  cfg->sliding_window = 4096;
  if (config_double_in(c, c->root, "", "query_pre_attn_scalar", 0, 256.0, &scalar, err) ||
      config_cap(c, "attn_logit_softcapping", softcap_attn, &cfg->attn_softcap, err) ||
      config_cap(c, "final_logit_softcapping", softcap_final, &cfg->final_softcap, err))
    return -1;
  if (window && json_is_null(window))
    cfg->sliding_window = 0;
  else if (config_int(c, "sliding_window", 0, 4096, &cfg->sliding_window, err))
    return -1;
  cfg->attn_scale = (float)pow(scalar, -0.5);
  cfg->post_norms = 1;
  return sliding_layers_config(c, period, cfg, err);
}

/* Gemma 2: pre and post norms around both sublayers, soft-caps (50 on the
 * attention scores, 30 on the final logits by default), every other layer
 * sliding (layers 0, 2, ...). */
static int gemma2_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  if (gemma_like_config(c, "gemma2", "hidden_activation", cfg, err) ||
      rope_config(c, &rope_keys_default, cfg, err) ||
      gemma_attention_config(c, 50.0, 30.0, 2, cfg, err))
    return -1;
  if (cfg->rotary_dim != cfg->head_dim)
    return err_set(err,
                   "%s: partial_rotary_factor < 1 is not supported (gemma2 rotates every "
                   "dimension)",
                   c->path);
  return 0;
}

/* Gemma 3's rotary: full-attention layers with rope_parameters.full_attention
 * (its rope_theta, 1e6 when absent, and its scaling: linear for the larger
 * models), sliding layers with rope_parameters.sliding_attention's theta
 * (1e4), unscaled; or, as transformers 4 wrote them, rope_theta, rope_scaling
 * and rope_local_base_freq at the top level. */
static int gemma3_rope_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  const json_t *params = json_object_get(c->root, "rope_parameters");
  const json_t *full = NULL, *local = NULL;
  double theta = 1e6, local_theta = 1e4;
  const char *where = "rope_scaling";
  if (config_double_in(c, c->root, "", "rope_theta", 0, theta, &theta, err) ||
      config_double_in(c, c->root, "", "rope_local_base_freq", 0, local_theta, &local_theta, err))
    return -1;
  if (params && json_is_object(params) && json_object_get(params, "full_attention")) {
    full = json_object_get(params, "full_attention");
    local = json_object_get(params, "sliding_attention");
    where = "rope_parameters.full_attention";
  } else {
    full = json_object_get(c->root, "rope_scaling");
  }
  if (full && json_is_null(full))
    full = NULL;
  if (full && !json_is_object(full))
    return err_set(err, "%s: %s must be an object", c->path, where);
  if (local && !json_is_null(local)) {
    const char *lw = "rope_parameters.sliding_attention";
    if (!json_is_object(local))
      return err_set(err, "%s: %s must be an object", c->path, lw);
    const json_t *type = json_object_get(local, "rope_type");
    if (type && (!json_is_string(type) || strcmp(json_string_value(type), "default") != 0))
      return err_set(err,
                     "%s: %s.rope_type must be \"default\" (a scaled local rotary is not "
                     "supported)",
                     c->path, lw);
    if (config_double_in(c, local, lw, "rope_theta", 0, local_theta, &local_theta, err))
      return -1;
  }
  if (full) {
    const char *type_key = json_object_get(full, "rope_type") ? "rope_type" : "type";
    const json_t *type = json_object_get(full, type_key);
    if (type && !json_is_string(type))
      return err_set(err, "%s: %s.%s must be a string", c->path, where, type_key);
    if (config_double_in(c, full, where, "rope_theta", 0, theta, &theta, err) ||
        rope_scaling_config(c, full, where, type_key, type ? json_string_value(type) : "default",
                            cfg, err))
      return -1;
  }
  cfg->rope_theta = (float)theta;
  cfg->rope_local_theta = (float)local_theta;
  cfg->rotary_dim = cfg->head_dim;
  cfg->positions = POSITIONS_ROPE;
  cfg->rope_pairs = ROPE_HALVES;
  return 0;
}

/* Gemma 3 (text, model_type gemma3_text): Gemma 2's block with q and k
 * RMS-normed per head ((1 + w)) before the rotary, no soft-caps by default,
 * five sliding layers to one full (sliding_window_pattern, 6), local and
 * global rotary bases. */
static int gemma3_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int pattern = 6;
  if (gemma_like_config(c, "gemma3_text", "hidden_activation", cfg, err) ||
      config_int(c, "sliding_window_pattern", 0, 6, &pattern, err) ||
      gemma3_rope_config(c, cfg, err) || gemma_attention_config(c, 0.0, 0.0, pattern, cfg, err))
    return -1;
  /* Gemma3Attention keeps the key but never caps its scores (transformers
   * 5), and the published models set it null: a cap would be a model nobody
   * computes the same way, so it is refused rather than applied or dropped. */
  if (cfg->attn_softcap > 0.0f)
    return err_set(err,
                   "%s: attn_logit_softcapping = %g is not supported for gemma3_text "
                   "(transformers' Gemma 3 does not apply it; Gemma 3 models set it null)",
                   c->path, (double)cfg->attn_softcap);
  cfg->qk_norm = QK_NORM_PER_HEAD;
  return 0;
}

/* GPT-NeoX (Pythia): LayerNorm with biases, a fused per-head qkv (split by
 * loader_hf.c), partial rotary, a parallel residual unless
 * use_parallel_residual is false. */
static int gpt_neox_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  static const rope_keys_t keys = {"rotary_emb_base", "rotary_pct", 0.25};
  const char *act = NULL;
  int bias = 1;
  snprintf(cfg->family, sizeof(cfg->family), "gpt_neox");
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_hidden_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_attention_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "intermediate_size", 1, 0, &cfg->d_mlp, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "layer_norm_eps", 0, 1e-5, &cfg->norm_eps, err) ||
      config_string(c, "hidden_act", "gelu", &act, err) ||
      config_bool(c, "tie_word_embeddings", 0, &cfg->tied_unembed, err) ||
      config_bool(c, "use_parallel_residual", 1, &cfg->parallel_residual, err) ||
      config_bool(c, "attention_bias", 1, &bias, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err) ||
      gelu_activation(c, "hidden_act", act, cfg, err))
    return -1;
  if (cfg->d_model % cfg->n_heads)
    return err_set(err, "%s: hidden_size = %d is not divisible by num_attention_heads = %d",
                   c->path, cfg->d_model, cfg->n_heads);
  cfg->n_kv_heads = cfg->n_heads;
  cfg->head_dim = cfg->d_model / cfg->n_heads;
  if (rope_config(c, &keys, cfg, err))
    return -1;
  cfg->norm = NORM_LAYERNORM;
  cfg->mlp = MLP_GELU;
  cfg->qkv_bias = cfg->o_bias = bias;
  cfg->mlp_bias = 1;
  return 0;
}

/* The families config.json may name, with their mappings. */
typedef struct {
  const char *model_type;
  int (*config)(const hf_config_t *c, model_config_t *cfg, char *err);
} hf_family_t;

static const hf_family_t hf_families[] = {
    {"gpt2", gpt2_config},         {"llama", llama_config},
    {"gpt_neox", gpt_neox_config}, {"qwen2", qwen2_config},
    {"qwen3", qwen3_config},       {"mistral", mistral_config},
    {"olmo2", olmo2_config},       {"gemma", gemma_config},
    {"gemma2", gemma2_config},     {"gemma3_text", gemma3_config},
    {"phi3", phi3_config},         {"phi", phi_config},
    {"granite", granite_config},   {"gpt_neo", gpt_neo_config},
    {"stablelm", stablelm_config}, {"opt", opt_config},
    {"gptj", gptj_config},
};
#define N_HF_FAMILIES (sizeof(hf_families) / sizeof(hf_families[0]))

/* Gemma3TextConfig's defaults for the keys a published multimodal Gemma 3
 * (gemma-3-4b, -12b, -27b) leaves out of its text_config. */
static const char GEMMA3_TEXT_DEFAULTS[] =
    "{\"model_type\":\"gemma3_text\",\"vocab_size\":262208,\"hidden_size\":2304,"
    "\"intermediate_size\":9216,\"num_hidden_layers\":26,\"num_attention_heads\":8,"
    "\"num_key_value_heads\":4,\"head_dim\":256,\"max_position_embeddings\":131072,"
    "\"bos_token_id\":2,\"eos_token_id\":1,\"tie_word_embeddings\":true}";

int hf_config_language_model(const char *path, const json_t *root, json_t **text, char *err) {
  *text = NULL;
  const json_t *type = json_object_get(root, "model_type");
  if (!json_is_string(type) || strcmp(json_string_value(type), "gemma3") != 0)
    return 0;
  const json_t *given = json_object_get(root, "text_config");
  if (!given || !json_is_object(given))
    return err_set(err,
                   "%s: text_config is %s (model_type gemma3 is Gemma 3's multimodal "
                   "model: hydra reads its language model from text_config)",
                   path, given ? "not an object" : "missing");
  const json_t *text_type = json_object_get(given, "model_type");
  if (text_type &&
      (!json_is_string(text_type) || strcmp(json_string_value(text_type), "gemma3_text") != 0))
    return err_set(err, "%s: text_config.model_type must be \"gemma3_text\"", path);
  json_error_t jerr;
  *text = json_loads(GEMMA3_TEXT_DEFAULTS, 0, &jerr);
  if (!*text || json_object_update(*text, (json_t *)given) != 0) {
    json_decref(*text);
    *text = NULL;
    return err_set(err, "%s: out of memory", path);
  }
  /* both levels may say whether the unembedding is the embedding */
  const json_t *tied = json_object_get(root, "tie_word_embeddings");
  if (tied && !json_is_null(tied) &&
      !json_equal((json_t *)tied, json_object_get(*text, "tie_word_embeddings"))) {
    json_decref(*text);
    *text = NULL;
    return err_set(err, "%s: tie_word_embeddings differs from text_config.tie_word_embeddings",
                   path);
  }
  return 0;
}

/* Mixture-of-experts families: refused as such (their experts are not
 * components hydra computes), naming the key that counts the experts. */
static const char *const MOE_FAMILIES[][2] = {
    {"mixtral", "num_local_experts"},
    {"qwen2_moe", "num_experts"},
    {"qwen3_moe", "num_experts"},
    {"olmoe", "num_experts"},
    {"deepseek_v2", "n_routed_experts"},
    {"deepseek_v3", "n_routed_experts"},
    {"phimoe", "num_local_experts"},
    {"granitemoe", "num_local_experts"},
    {"dbrx", "ffn_config"},
    {"jamba", "num_experts"},
};

static int unsupported_model_type(const hf_config_t *c, const char *model_type, char *err) {
  for (size_t i = 0; i < sizeof(MOE_FAMILIES) / sizeof(MOE_FAMILIES[0]); i++)
    if (strcmp(model_type, MOE_FAMILIES[i][0]) == 0)
      return err_set(err,
                     "%s: model_type \"%s\" is a mixture of experts (%s): its routed experts "
                     "are not supported (hydra computes dense blocks only)",
                     c->path, model_type, MOE_FAMILIES[i][1]);
  char names[256] = "";
  size_t used = 0;
  for (size_t i = 0; i < N_HF_FAMILIES && used < sizeof(names); i++)
    used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
                             hf_families[i].model_type);
  return err_set(
      err, "%s: model_type \"%.40s\" is not supported (supported: %s, gemma3 (its language model))",
      c->path, model_type, names);
}

/* A quantised checkpoint (GPTQ, AWQ, bitsandbytes, FP8, compressed-tensors,
 * ...) stores weights that need its method's kernels or scales, which hydra
 * does not apply: refused by name, whatever the tensors' dtypes (a GPTQ
 * file's float tensors would load and compute something else). */
static int quantized_refused(const hf_config_t *c, char *err) {
  static const char *const keys[] = {"quantization_config", "compression_config"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    const json_t *q = json_object_get(c->root, keys[i]);
    if (!q || json_is_null(q))
      continue;
    const json_t *method = json_is_object(q) ? json_object_get(q, "quant_method") : NULL;
    return err_set(err,
                   "%s: %s is not supported (a quantised checkpoint%s%.40s%s: hydra reads "
                   "F32/F16/BF16 weights, or a GGUF file)",
                   c->path, keys[i], json_is_string(method) ? ", quant_method \"" : "",
                   json_is_string(method) ? json_string_value(method) : "",
                   json_is_string(method) ? "\"" : "");
  }
  return 0;
}

int hf_config_load(const char *path, json_t **root, model_config_t *cfg, char *err) {
  json_error_t jerr;
  const char *model_type = NULL;
  if (!file_exists(path))
    return err_set(err, "%s: cannot read: %s", path, strerror(errno));
  *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (!*root)
    return err_set(err, "%s: not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
  if (!json_is_object(*root))
    return err_set(err, "%s: not a JSON object", path);
  hf_config_t c = {path, *root};
  memset(cfg, 0, sizeof(*cfg));
  if (config_string(&c, "model_type", NULL, &model_type, err) || quantized_refused(&c, err))
    return -1;
  json_t *text = NULL;
  if (hf_config_language_model(path, *root, &text, err))
    return -1;
  if (text) { /* a multimodal model's language model */
    hf_config_t tc = {path, text};
    int rc = gemma3_config(&tc, cfg, err);
    json_decref(text);
    if (rc)
      return -1;
    char why[HYDRA_ERR_LEN];
    if (model_config_check(cfg, why))
      return err_set(err, "%s: %s", path, why);
    return 0;
  }
  size_t f = 0;
  while (f < N_HF_FAMILIES && strcmp(hf_families[f].model_type, model_type) != 0)
    f++;
  if (f == N_HF_FAMILIES)
    return unsupported_model_type(&c, model_type, err);
  if (hf_families[f].config(&c, cfg, err))
    return -1;
  char why[HYDRA_ERR_LEN];
  if (model_config_check(cfg, why))
    return err_set(err, "%s: %s", path, why);
  return 0;
}
