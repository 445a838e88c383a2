/* loader_gguf_internal.h - loader_gguf_config.c (a GGUF file's architecture
 * and metadata) as loader_gguf.c (its tensors, model_from_gguf) sees it;
 * nothing outside model/ includes it. */
#ifndef HYDRA_LOADER_GGUF_INTERNAL_H
#define HYDRA_LOADER_GGUF_INTERNAL_H

#include "gguf.h"
#include "model.h"

/* What an architecture's tensors look like beyond its block description.
 * The *_EITHER flags are settled per file by gguf_config_read from layer 0's
 * tensors (and leave FUSED_QKV set or not). */
enum {
  GGUF_ARCH_FUSED_QKV = 1 << 0,          /* blk.N.attn_qkv: the rows of q, then k, then v */
  GGUF_ARCH_PERMUTED_QK = 1 << 1,        /* attn_q/attn_k rows permuted for ggml's RoPE (llama) */
  GGUF_ARCH_PARTIAL_ROTARY = 1 << 2,     /* rope.dimension_count may be below the head size */
  GGUF_ARCH_HEAD_DIM_KEY = 1 << 3,       /* attention.key_length may set the head size */
  GGUF_ARCH_GQA = 1 << 4,                /* attention.head_count_kv may be below head_count */
  GGUF_ARCH_QKV_BIAS = 1 << 5,           /* attn_q, attn_k, attn_v have biases (qwen2) */
  GGUF_ARCH_ALL_BIASES = 1 << 6,         /* every projection has a bias (gpt2, gptneox, phi2) */
  GGUF_ARCH_OPTIONAL_BIASES = 1 << 7,    /* attention biases where the file has them (llama) */
  GGUF_ARCH_ROPE_FREQS = 1 << 8,         /* may carry rope_freqs.weight (Llama 3 scaling) */
  GGUF_ARCH_PARALLEL_RESIDUAL = 1 << 9,  /* <arch>.use_parallel_residual (gptneox, stablelm) */
  GGUF_ARCH_QK_NORM = 1 << 10,           /* attn_q_norm, attn_k_norm per head (qwen3, gemma3) */
  GGUF_ARCH_QK_NORM_WHOLE = 1 << 11,     /* attn_q_norm, attn_k_norm over the whole q, k (olmo2) */
  GGUF_ARCH_FUSED_QKV_EITHER = 1 << 12,  /* attn_qkv or attn_q/k/v, as layer 0 has (phi2, phi3) */
  GGUF_ARCH_FUSED_GATE_UP = 1 << 13,     /* ffn_up holds the gate's rows, then the up's (phi3) */
  GGUF_ARCH_SHARED_NORM = 1 << 14,       /* with a parallel residual: attn_norm only, read by
                                            attention and MLP (phi2; stablelm without ffn_norm) */
  GGUF_ARCH_UNEMBED_BIAS = 1 << 15,      /* output.bias (phi2) */
  GGUF_ARCH_GEMMA = 1 << 16,             /* embeddings times sqrt(embedding_length) */
  GGUF_ARCH_TIED_ONLY = 1 << 17,         /* no output.weight: the unembedding is token_embd */
  GGUF_ARCH_POST_NORMS = 1 << 18,        /* post_attention_norm, post_ffw_norm (gemma2/3, olmo2) */
  GGUF_ARCH_NO_PRE_NORMS = 1 << 19,      /* no attn_norm, ffn_norm (olmo2) */
  GGUF_ARCH_SOFTCAPS = 1 << 20,          /* attn_ and final_logit_softcapping (gemma2) */
  GGUF_ARCH_FINAL_SOFTCAP = 1 << 21,     /* final_logit_softcapping only (gemma3) */
  GGUF_ARCH_SWA = 1 << 22,               /* attention.sliding_window on a pattern of layers */
  GGUF_ARCH_SWA_IGNORED = 1 << 23,       /* attention.sliding_window read, not applied (phi3:
                                            llama.cpp disables it) */
  GGUF_ARCH_GRANITE = 1 << 24,           /* attention.scale, embedding_scale, residual_scale,
                                            logit_scale */
  GGUF_ARCH_OPTIONAL_QKV_BIAS = 1 << 25, /* attn_q/k/v biases where layer 0 has them (stablelm) */
  GGUF_ARCH_LOCAL_BASE = 1 << 26,        /* sliding layers rotate with base 10000 whatever
                                            rope.freq_base_swa says (gemma3, as llama.cpp) */
  GGUF_ARCH_LONGROPE = 1 << 27           /* rope_factors_short/long.weight: longrope (phi3) */
};

/* One general.architecture hydra computes: its name as llama.cpp writes it,
 * the block description's fixed choices and its tensors' layout; read for a
 * file, the flags and logit_scale are that file's. */
typedef struct {
  const char *name;
  const char *family; /* model_config_t.family: the Hugging Face model_type */
  norm_kind_t norm;
  position_kind_t positions;
  mlp_kind_t mlp;
  activation_t activation;
  unsigned flags;
  int swa_period;    /* GGUF_ARCH_SWA: every swa_period-th layer full (llama.cpp's pattern) */
  int big_layers;    /* gemma2/3: llama.cpp's 27B (this many layers) scales scores by
                        (embedding_length / head_count)^-1/2, not head size^-1/2 */
  float logit_scale; /* granite: the logits divided by it (0: none) */
} gguf_arch_t;

/* Reads the file's architecture and metadata into cfg (zeroed first), with
 * the vocabulary and tying from token_embd.weight and output.weight, a
 * llama file's rope_freqs.weight, and checks it with model_config_check;
 * *arch gets the architecture with this file's flags. Returns 0, or -1 with
 * err naming the file and the key (an architecture hydra does not compute:
 * its name and the list of those it does). */
int gguf_config_read(const gguf_t *g, model_config_t *cfg, gguf_arch_t *arch, char *err);

#endif
