/* loader_gguf_internal.h - loader_gguf_config.c (a GGUF file's architecture
 * and metadata) as loader_gguf.c (its tensors, model_from_gguf) sees it;
 * nothing outside model/ includes it. */
#ifndef HYDRA_LOADER_GGUF_INTERNAL_H
#define HYDRA_LOADER_GGUF_INTERNAL_H

#include "gguf.h"
#include "model.h"

/* What an architecture's tensors look like beyond its block description. */
enum {
  GGUF_ARCH_FUSED_QKV = 1 << 0,         /* blk.N.attn_qkv: the rows of q, then k, then v */
  GGUF_ARCH_PERMUTED_QK = 1 << 1,       /* attn_q/attn_k rows permuted for ggml's RoPE (llama) */
  GGUF_ARCH_PARTIAL_ROTARY = 1 << 2,    /* rope.dimension_count may be below the head size */
  GGUF_ARCH_HEAD_DIM_KEY = 1 << 3,      /* attention.key_length may set the head size */
  GGUF_ARCH_GQA = 1 << 4,               /* attention.head_count_kv may be below head_count */
  GGUF_ARCH_QKV_BIAS = 1 << 5,          /* attn_q, attn_k, attn_v have biases (qwen2) */
  GGUF_ARCH_ALL_BIASES = 1 << 6,        /* every projection has a bias (gpt2, gptneox) */
  GGUF_ARCH_OPTIONAL_BIASES = 1 << 7,   /* attention biases where the file has them (llama) */
  GGUF_ARCH_ROPE_FREQS = 1 << 8,        /* may carry rope_freqs.weight (Llama 3 scaling) */
  GGUF_ARCH_PARALLEL_RESIDUAL = 1 << 9, /* <arch>.use_parallel_residual (gptneox) */
  GGUF_ARCH_QK_NORM = 1 << 10           /* attn_q_norm, attn_k_norm per head (qwen3) */
};

/* One general.architecture hydra computes: its name as llama.cpp writes it,
 * the block description's fixed choices and its tensors' layout. */
typedef struct {
  const char *name;
  const char *family; /* model_config_t.family: the Hugging Face model_type */
  norm_kind_t norm;
  position_kind_t positions;
  mlp_kind_t mlp;
  activation_t activation;
  unsigned flags;
} gguf_arch_t;

/* Reads the file's architecture and metadata into cfg (zeroed first), with
 * the vocabulary and tying from token_embd.weight and output.weight, a
 * llama file's rope_freqs.weight, and checks it with model_config_check;
 * *arch gets the architecture. Returns 0, or -1 with err naming the file and
 * the key (an architecture hydra does not compute: its name and the list of
 * those it does). */
int gguf_config_read(const gguf_t *g, model_config_t *cfg, const gguf_arch_t **arch, char *err);

#endif
