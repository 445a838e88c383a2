/* loader_hf_config.c - a Hugging Face model's config.json read into the
 * block description (model_config_t): its typed fields, and the gpt2 and llama
 * families' keys mapped onto the description; every choice hydra does not
 * compute is refused, naming the file and the key. */
#include <errno.h>
#include <float.h>
#include <limits.h>
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
 * called `where`). */
static int config_number_in(const hf_config_t *c, const json_t *obj, const char *where,
                            const char *key, int required, double dflt, float *out, char *err) {
  const json_t *v = json_object_get(obj, key);
  const char *dot = *where ? "." : "";
  if (!v && required)
    return err_set(err, "%s: %s%s%s is missing (a positive number)", c->path, where, dot, key);
  if (!v || (json_is_null(v) && !required)) {
    *out = (float)dflt;
    return 0;
  }
  double x = json_number_value(v);
  if (!json_is_number(v) || !(x > 0.0 && x <= FLT_MAX))
    return err_set(err, "%s: %s%s%s must be a positive number", c->path, where, dot, key);
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
  /* gelu_new, gelu_pytorch_tanh and gelu_fast are one function: the tanh approximation. */
  if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0 ||
      strcmp(act, "gelu_fast") == 0)
    cfg->activation = ACT_GELU_TANH;
  else if (strcmp(act, "gelu") == 0)
    cfg->activation = ACT_GELU_ERF;
  else
    return err_set(err,
                   "%s: activation_function \"%.40s\" is not supported (supported: gelu_new, "
                   "gelu_pytorch_tanh, gelu_fast, gelu)",
                   c->path, act);
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
  cfg->attn_bias = 1;
  cfg->mlp_bias = 1;
  cfg->tied_unembed = tied;
  return 0;
}

/* rope_theta lives at the top level (transformers 4) or in rope_parameters
 * (transformers 5); any rope scaling is refused rather than ignored. */
static int llama_rope_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  const json_t *scaling = json_object_get(c->root, "rope_scaling");
  const json_t *params = json_object_get(c->root, "rope_parameters");
  if (scaling && !json_is_null(scaling))
    return err_set(err, "%s: rope_scaling is not supported (it must be null or absent)", c->path);
  if (config_number(c, "rope_theta", 0, 10000.0, &cfg->rope_theta, err))
    return -1;
  if (params && !json_is_null(params)) {
    if (!json_is_object(params))
      return err_set(err, "%s: rope_parameters must be an object", c->path);
    const json_t *type = json_object_get(params, "rope_type");
    if (!type)
      type = json_object_get(params, "type");
    if (type && !json_is_string(type))
      return err_set(err, "%s: rope_parameters.rope_type must be a string", c->path);
    if (type && strcmp(json_string_value(type), "default") != 0)
      return err_set(err,
                     "%s: rope_parameters.rope_type \"%.40s\" is not supported: rope_scaling is "
                     "not supported (only \"default\")",
                     c->path, json_string_value(type));
    if (config_number_in(c, params, "rope_parameters", "rope_theta", 0, cfg->rope_theta,
                         &cfg->rope_theta, err))
      return -1;
  }
  return 0;
}

static int llama_config(const hf_config_t *c, model_config_t *cfg, char *err) {
  int tied = 0, mlp_bias = 0;
  const char *act = NULL;
  snprintf(cfg->family, sizeof(cfg->family), "llama");
  if (config_int(c, "hidden_size", 1, 0, &cfg->d_model, err) ||
      config_int(c, "num_hidden_layers", 1, 0, &cfg->n_layers, err) ||
      config_int(c, "num_attention_heads", 1, 0, &cfg->n_heads, err) ||
      config_int(c, "num_key_value_heads", 0, cfg->n_heads, &cfg->n_kv_heads, err) ||
      config_int(c, "head_dim", 0, 0, &cfg->head_dim, err) ||
      config_int(c, "intermediate_size", 1, 0, &cfg->d_mlp, err) ||
      config_int(c, "vocab_size", 1, 0, &cfg->vocab_size, err) ||
      config_int(c, "max_position_embeddings", 1, 0, &cfg->max_positions, err) ||
      config_number(c, "rms_norm_eps", 1, 0.0, &cfg->norm_eps, err) ||
      config_string(c, "hidden_act", "silu", &act, err) ||
      config_bool(c, "tie_word_embeddings", 0, &tied, err) ||
      config_bool(c, "attention_bias", 0, &cfg->attn_bias, err) ||
      config_bool(c, "mlp_bias", 0, &mlp_bias, err) ||
      config_token_id(c, "bos_token_id", cfg->vocab_size, &cfg->bos_id, err) ||
      config_token_id(c, "eos_token_id", cfg->vocab_size, &cfg->eos_id, err) ||
      llama_rope_config(c, cfg, err))
    return -1;
  if (strcmp(act, "silu") != 0)
    return err_set(err, "%s: hidden_act \"%.40s\" is not supported (llama needs silu)", c->path,
                   act);
  if (mlp_bias)
    return err_set(err, "%s: mlp_bias = true is not supported (no gate_proj bias in the model)",
                   c->path);
  if (cfg->head_dim == 0) {
    if (cfg->d_model % cfg->n_heads)
      return err_set(err,
                     "%s: hidden_size = %d is not divisible by num_attention_heads = %d and "
                     "head_dim is not given",
                     c->path, cfg->d_model, cfg->n_heads);
    cfg->head_dim = cfg->d_model / cfg->n_heads;
  }
  cfg->norm = NORM_RMSNORM;
  cfg->positions = POSITIONS_ROPE;
  cfg->rotary_dim = cfg->head_dim;
  cfg->mlp = MLP_SWIGLU;
  cfg->activation = ACT_SILU;
  cfg->mlp_bias = 0;
  cfg->tied_unembed = tied;
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
  if (config_string(&c, "model_type", NULL, &model_type, err))
    return -1;
  if (strcmp(model_type, "gpt2") == 0) {
    if (gpt2_config(&c, cfg, err))
      return -1;
  } else if (strcmp(model_type, "llama") == 0) {
    if (llama_config(&c, cfg, err))
      return -1;
  } else {
    return err_set(err, "%s: model_type \"%.40s\" is not supported (supported: gpt2, llama)", path,
                   model_type);
  }
  char why[HYDRA_ERR_LEN];
  if (model_config_check(cfg, why))
    return err_set(err, "%s: %s", path, why);
  return 0;
}
