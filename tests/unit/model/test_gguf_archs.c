/* test_gguf_archs - the GGUF loader's architectures (common/model/
 * loader_gguf_config.c, loader_gguf.c) on files that
 * tests/golden/make_gguf_arch_golden.py converts from tiny transformers models
 * as llama.cpp's converter does (their logits: ctest golden_logits_gguf-*).
 *
 * usage: test_gguf_archs ROOT
 *   (a) each architecture's file reads into the block description its
 *       family has (norm, positions, rotary, biases, q/k norms, residual,
 *       tying, Llama 3's per-pair frequency divisors);
 *   (b) each of tests/data/gguf/refused/ (a value the architecture cannot
 *       have, a key hydra does not read, a tensor missing or extra) is
 *       refused with an error naming the file and what is wrong; an
 *       architecture hydra does not compute is refused listing those it
 *       does. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "checkpoint.h"
#include "error.h"
#include "model.h"

static model_t *load(const char *root, const char *name, char *path, size_t size) {
  char err[HYDRA_ERR_LEN] = "";
  snprintf(path, size, "%s/tests/data/gguf/%s.gguf", root, name);
  model_t *m = model_load(path, err);
  if (!m)
    FAIL("%s: %s", name, err);
  return m;
}

/* The architectures whose blocks the Hugging Face loader also reads:
 * Gemma 1/2/3, Phi-3, Phi-2, StableLM, OLMo-2, Granite. */
static void test_new_configs(const char *root) {
  char path[2048];
  model_t *m = load(root, "arch-gemma2", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "gemma2") && c->mlp == MLP_GEGLU && c->activation == ACT_GELU_TANH &&
              c->post_norms && !c->qk_norm && c->head_dim == 256 && c->attn_scale == 0.0f &&
              c->attn_softcap == 50.0f && c->final_softcap == 30.0f && c->sliding_window == 4 &&
              c->sliding_period == 2 && model_layer_slides(c, 0) && !model_layer_slides(c, 1) &&
              c->tied_unembed && fabsf(c->embed_scale - 4.0f) < 1e-6f &&
              m->layers[2].post_mlp_norm_w,
          "gemma2: post norms, soft-caps 50/30, every other layer sliding over 4, sqrt(16) "
          "embeddings");
    model_free(m);
  }
  m = load(root, "arch-gemma2-46-layers", path, sizeof(path));
  if (m) {
    CHECK(m->cfg.n_layers == 46 && m->cfg.head_dim == 8 && m->cfg.attn_scale == 0.5f,
          "gemma2 at 46 layers (llama.cpp's 27B): scores times (8 / 2)^-1/2, not 8^-1/2");
    model_free(m);
  }
  m = load(root, "arch-gemma3", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "gemma3_text") && c->qk_norm == QK_NORM_PER_HEAD && c->post_norms &&
              c->attn_softcap == 0.0f && c->final_softcap == 0.0f && c->sliding_window == 4 &&
              c->sliding_period == 6 && model_layer_slides(c, 4) && !model_layer_slides(c, 5) &&
              c->rope_theta == 50000.0f && c->rope_local_theta == 10000.0f,
          "gemma3: per-head q/k norms, no caps, layer 5 of 6 full, bases 50000 and 10000");
    model_free(m);
  }
  m = load(root, "arch-gemma", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "gemma") && !c->post_norms && c->tied_unembed &&
              c->sliding_window == 0 && c->head_dim == 16 && c->embed_scale == 4.0f,
          "gemma: no post norms, tied, no window");
    model_free(m);
  }
  m = load(root, "arch-phi3", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "phi3") && c->mlp == MLP_SWIGLU && c->n_kv_heads == 2 &&
              c->sliding_window == 0 && c->rope_theta == 20000.0f && m->layers[0].w_gate &&
              m->layers[0].w_up != m->layers[0].w_gate,
          "phi3: fused qkv and gate_up split, its window not applied (as llama.cpp)");
    model_free(m);
  }
  m = load(root, "arch-phi3-longrope", path, sizeof(path));
  if (m) { /* the short factors, the converter's attention factor, the context cut to 64 */
    const model_config_t *c = &m->cfg;
    CHECK(c->rope_scaling == ROPE_SCALING_LONGROPE && c->rope_n_freq_factors == 4 &&
              c->rope_freq_factors[1] == 2.5f && c->rope_original_max_positions == 64 &&
              c->max_positions == 64 && fabsf(c->rope_attn_factor - 1.1547005f) < 1e-6f,
          "phi3 longrope: short factors, attention factor %g, context %d",
          (double)c->rope_attn_factor, c->max_positions);
    model_free(m);
  }
  m = load(root, "arch-phi2", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "phi") && c->norm == NORM_LAYERNORM && c->parallel_residual &&
              c->rotary_dim == 4 && c->head_dim == 8 && c->unembed_bias && m->unembed_b &&
              c->qkv_bias && c->o_bias && c->mlp_bias && c->d_mlp == 128 &&
              !memcmp(m->layers[1].mlp_norm_w, m->layers[1].attn_norm_w, 32 * sizeof(float)) &&
              !memcmp(m->layers[1].mlp_norm_b, m->layers[1].attn_norm_b, 32 * sizeof(float)),
          "phi2: one LayerNorm for both sublayers, partial rotary 4 of 8, output.bias");
    model_free(m);
  }
  const char *stablelm[] = {"arch-stablelm", "arch-stablelm-parallel"};
  for (int k = 0; k < 2; k++) {
    m = load(root, stablelm[k], path, sizeof(path));
    if (!m)
      continue;
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "stablelm") && c->parallel_residual == k && c->qkv_bias == !k &&
              !c->o_bias && c->rotary_dim == 4 && c->head_dim == 16 && c->mlp == MLP_SWIGLU,
          "%s: parallel %d (from ffn_norm), q/k/v biases %d, rotary 4 of 16", stablelm[k], k, !k);
    model_free(m);
  }
  m = load(root, "arch-olmo2", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "olmo2") && c->no_pre_norms && c->post_norms &&
              c->qk_norm == QK_NORM_WHOLE && !m->layers[0].attn_norm_w && m->layers[0].k_norm_w,
          "olmo2: no pre norms, post norms, q/k normed whole");
    model_free(m);
  }
  m = load(root, "arch-granite", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "granite") && fabsf(c->attn_scale - 0.3f) < 1e-7f &&
              c->embed_scale == 3.0f && fabsf(c->residual_scale - 0.6f) < 1e-7f,
          "granite: attention.scale 0.3, embedding_scale 3, residual_scale 0.6");
    model_free(m);
  }
}

static void test_configs(const char *root) {
  char path[2048];
  model_t *m = load(root, "arch-llama", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "llama") && c->norm == NORM_RMSNORM && c->mlp == MLP_SWIGLU &&
              c->n_heads == 4 && c->n_kv_heads == 2 && c->head_dim == 8 && c->rotary_dim == 8 &&
              c->rope_theta == 20000.0f && !c->qkv_bias && !c->o_bias && !c->tied_unembed &&
              c->rope_scaling == ROPE_SCALING_NONE && c->rope_n_freq_factors == 0,
          "llama config");
    model_free(m);
  }
  m = load(root, "arch-mistral", path, sizeof(path));
  if (m) {
    CHECK(m->cfg.head_dim == 16 && m->cfg.d_model == 32 && m->cfg.sliding_window == 0,
          "mistral-as-llama: key_length 16 on a 32-wide model");
    model_free(m);
  }
  m = load(root, "arch-llama3", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    double inv_freq[6];
    float scale;
    model_rope_frequencies(c, inv_freq, &scale);
    int ok = c->rope_n_freq_factors == 6 && c->rope_scaling == ROPE_SCALING_NONE;
    for (int i = 0; i < 6 && ok; i++) /* theta^(-2i/d) / factor, llama.cpp's rope_freqs */
      ok = fabs(inv_freq[i] * c->rope_freq_factors[i] / pow(500000.0, -2.0 * i / 12) - 1) < 1e-12;
    CHECK(ok && c->rope_freq_factors[0] == 1.0f && c->rope_freq_factors[5] == 8.0f &&
              c->rope_freq_factors[1] > 1.0f && c->rope_freq_factors[1] < 8.0f,
          "llama3: rope_freqs.weight read as per-pair divisors (kept, smoothed, divided)");
    model_free(m);
  }
  m = load(root, "arch-llama-linear", path, sizeof(path));
  if (m) {
    CHECK(m->cfg.rope_scaling == ROPE_SCALING_LINEAR && m->cfg.rope_factor == 4.0f,
          "llama.rope.scaling.type linear, factor 4");
    model_free(m);
  }
  m = load(root, "arch-qwen2", path, sizeof(path));
  if (m) {
    CHECK(!strcmp(m->cfg.family, "qwen2") && m->cfg.qkv_bias && !m->cfg.o_bias && m->layers[1].bk,
          "qwen2: q/k/v biases, no output bias");
    model_free(m);
  }
  m = load(root, "arch-qwen2-yarn", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(c->rope_scaling == ROPE_SCALING_YARN && c->rope_factor == 4.0f &&
              c->rope_original_max_positions == 32 && c->rope_beta_fast == 32.0f &&
              c->rope_beta_slow == 1.0f && c->rope_truncate &&
              fabsf(c->rope_attn_factor - 1.138629f) < 1e-6f,
          "qwen2.rope.scaling.type yarn: factor 4, context 32, betas 32/1, attention 1 + 0.1 ln 4");
    model_free(m);
  }
  m = load(root, "arch-qwen3", path, sizeof(path));
  if (m) {
    CHECK(!strcmp(m->cfg.family, "qwen3") && m->cfg.qk_norm && m->cfg.head_dim == 128 &&
              !m->cfg.qkv_bias && m->layers[0].q_norm_w,
          "qwen3: per-head q/k norms, key_length 128");
    model_free(m);
  }
  const char *neox[] = {"arch-gptneox", "arch-gptneox-sequential"};
  for (int k = 0; k < 2; k++) {
    m = load(root, neox[k], path, sizeof(path));
    if (!m)
      continue;
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "gpt_neox") && c->norm == NORM_LAYERNORM && c->mlp == MLP_GELU &&
              c->activation == ACT_GELU_ERF && c->parallel_residual == !k &&
              c->rotary_dim == (k ? 4 : 6) && c->head_dim == (k ? 16 : 12) && c->qkv_bias &&
              c->o_bias && c->mlp_bias && !c->tied_unembed && c->rope_theta == 10000.0f,
          "%s: LayerNorm, erf GELU, partial rotary, parallel residual %d", neox[k], !k);
    model_free(m);
  }
  const char *seeds[] = {"../../fuzz/corpus/gguf/llama", "../../fuzz/corpus/gguf/gptneox"};
  for (int k = 0; k < 2; k++) /* fuzz_gguf's seeds reach the tensors */
    model_free(load(root, seeds[k], path, sizeof(path)));
  m = load(root, "arch-gpt2", path, sizeof(path));
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(!strcmp(c->family, "gpt2") && c->positions == POSITIONS_LEARNED && m->pos_embed &&
              c->max_positions == 1024 && c->activation == ACT_GELU_TANH && c->tied_unembed &&
              m->unembed == m->tok_embed && c->d_mlp == 128,
          "gpt2: learned positions, tied output, tanh GELU");
    model_free(m);
  }
  test_new_configs(root);
}

static void test_refused(const char *root) {
  static const struct {
    const char *file, *want;
  } refused[] = {
      {"llama-rope-dims-half",
       "llama.rope.dimension_count = 4 differs from the head size 8: architecture 'llama' rotates "
       "whole heads"},
      {"llama-rope-dims-over", "llama.rope.dimension_count = 16 differs from the head size 8"},
      {"llama-attention-scale", "metadata key llama.attention.scale is not one hydra reads"},
      {"llama-sliding-window", "llama.attention.sliding_window = 16 is not supported"},
      {"llama-rope-longrope",
       "llama.rope.scaling.type = 'longrope' with factor 4 is not supported (linear or yarn)"},
      {"llama-rope-yarn-attn-factor",
       "llama.rope.scaling.yarn_attn_factor = 0.8 is not supported (llama.cpp and transformers "
       "read it differently)"},
      {"llama-experts", "llama.expert_count = 8: mixture-of-experts"},
      {"llama-rope-freqs-short", "tensor rope_freqs.weight has 2 values; the rotary needs 4"},
      {"llama-rope-freqs-zero", "rope_freq_factors[1] = 0 must be positive"},
      {"qwen2-no-k-bias", "missing tensor blk.0.attn_k.bias"},
      {"qwen2-rope-freqs", "tensor rope_freqs.weight is not part of a 'qwen2' model"},
      {"qwen3-rope-dims", "qwen3.rope.dimension_count = 6 differs from the head size 8"},
      {"gptneox-rope-dims-odd", "gptneox.rope.dimension_count = 3 must be even"},
      {"gptneox-rope-dims-over",
       "gptneox.rope.dimension_count = 10 must be even and at most the head size 8"},
      {"gptneox-no-parallel-key", "gptneox.use_parallel_residual"},
      {"gptneox-kv-heads", "gptneox.attention.head_count_kv = 1 differs from"},
      {"gpt2-rope-key", "metadata key gpt2.rope.dimension_count is not one hydra reads"},
      {"gemma2-softcap-zero", "gemma2.attn_logit_softcapping = 0 must be positive"},
      {"gemma3-attn-softcap", "metadata key gemma3.attn_logit_softcapping is not one hydra reads"},
      {"gemma3-freq-base-swa",
       "gemma3.rope.freq_base_swa = 20000 is not supported (llama.cpp rotates gemma3's sliding "
       "layers with base 10000)"},
      {"phi3-rope-factors",
       "tensor rope_factors_long.weight without rope_factors_short.weight (longrope needs both)"},
      {"gemma-output", "tensor output.weight is not part of a 'gemma' model"},
      {"olmo2-sliding-window", "olmo2.attention.sliding_window = 16 is not supported"},
      {"stablelm-parallel-key",
       "stablelm.use_parallel_residual = true but layer 0 has an ffn_norm"},
      {"phi2-no-output-bias", "missing tensor output.bias"},
      {"granite-logit-scale-zero", "granite.logit_scale = 0 must be positive"},
      {"../quant_types", "architecture 'test' is not supported (supported: 'llama', 'qwen2', "
                         "'qwen3', 'gptneox', 'gpt2', 'gemma', 'gemma2', 'gemma3', 'phi3', "
                         "'phi2', 'stablelm', 'olmo2', 'granite')"},
  };
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    char path[2048], err[HYDRA_ERR_LEN] = "";
    snprintf(path, sizeof(path), "%s/tests/data/gguf/refused/%s.gguf", root, refused[i].file);
    model_t *m = model_load(path, err);
    CHECK(!m && strstr(err, refused[i].want) && strstr(err, path), "%s: expected '%s', got '%s'",
          refused[i].file, refused[i].want, err);
    if (!m && strstr(err, path))
      printf("  %-24s -> %s\n", refused[i].file, err + strlen(path) + 2);
    model_free(m);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_gguf_archs ROOT\n");
    return 2;
  }
  printf("(a) each architecture's block description\n");
  test_configs(argv[1]);
  printf("(b) refused files\n");
  test_refused(argv[1]);
  return check_exit("test_gguf_archs");
}
