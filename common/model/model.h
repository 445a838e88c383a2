/* model.h - the one internal description of a decoder-only transformer.
 *
 * Every family (gpt2, llama, gpt_neox, qwen2, ...) is a loader that maps its tensor names onto this
 * description. Weights are held in host memory as fp32 (or, WEIGHTS_NATIVE,
 * the large matrices in a GGUF file's blocks), row-major, with every
 * projection stored as [out, in] (the torch nn.Linear layout): y = x W^T.
 * A model owns all its arrays (and its file mapping, which borrowed blocks
 * point into); model_free releases them. */
#ifndef HYDRA_MODEL_H
#define HYDRA_MODEL_H

#include <stddef.h>

#include "gguf.h"

#define MODEL_MAX_HEAD_DIM 1024 /* model_config_check's bound on head_dim */

typedef enum { NORM_LAYERNORM, NORM_RMSNORM } norm_kind_t;
typedef enum { POSITIONS_LEARNED, POSITIONS_ROPE, POSITIONS_NONE } position_kind_t;
/* ROPE_HALVES: dimension i pairs with i + rotary_dim/2 (Hugging Face
 * rotate_half: llama, neox); ROPE_ADJACENT: 2i with 2i + 1 (GPT-J). */
typedef enum { ROPE_HALVES, ROPE_ADJACENT } rope_pairs_t;
/* How the rotary's inverse frequencies theta^(-2i/rotary_dim) are scaled, as
 * transformers' rope_type (modeling_rope_utils.py): NONE ("default", and
 * "dynamic" within its static range); LINEAR: all divided by rope_factor;
 * LLAMA3: low frequencies divided by rope_factor, high ones kept, a smooth
 * ramp between (rope_low_freq_factor, rope_high_freq_factor,
 * rope_original_max_positions); YARN: interpolation and extrapolation mixed
 * by a linear ramp over the dimensions (rope_beta_fast, rope_beta_slow,
 * rope_truncate, rope_original_max_positions), cos and sin multiplied by
 * rope_attn_factor; LONGROPE (Phi-3's, within its pretraining context
 * rope_original_max_positions): the frequencies divided per pair by
 * rope_freq_factors (its short_factor), cos and sin multiplied by
 * rope_attn_factor. */
typedef enum {
  ROPE_SCALING_NONE,
  ROPE_SCALING_LINEAR,
  ROPE_SCALING_LLAMA3,
  ROPE_SCALING_YARN,
  ROPE_SCALING_LONGROPE
} rope_scaling_t;
/* MLP_GELU: down(act(up x)); MLP_SWIGLU: down(silu(gate x) * up x);
 * MLP_GEGLU: down(gelu(gate x) * up x). */
typedef enum { MLP_GELU, MLP_SWIGLU, MLP_GEGLU } mlp_kind_t;
typedef enum { ACT_GELU_TANH, ACT_GELU_ERF, ACT_SILU, ACT_RELU } activation_t;
/* QK_NORM_PER_HEAD: q and k RMS-normed over each head's head_dim (Qwen3);
 * QK_NORM_WHOLE: over the whole projection, n_heads*head_dim and
 * n_kv_heads*head_dim wide (OLMo-2); QK_NORM_LAYERNORM_HEADS: LayerNormed
 * over each head's head_dim (norm_eps), every head with its own weight (and
 * bias, with qk_norm_bias): StableLM 2's per-head norms; Phi's one
 * LayerNorm for all heads is repeated per head by its loader. All before
 * the rotary. */
typedef enum { QK_NORM_NONE, QK_NORM_PER_HEAD, QK_NORM_WHOLE, QK_NORM_LAYERNORM_HEADS } qk_norm_t;

/* The block description: every choice a family makes, as data. The one
 * transformer (compute/transformer.c) reads it; a family is a loader that
 * fills it and maps tensor names, never a second forward pass. A choice
 * the transformer does not implement yet is refused by model_config_check,
 * naming the field. */
typedef struct {
  char family[16]; /* the model_type it was read as: "gpt2", "llama", "gpt_neox", ... */
  int n_layers;
  int d_model;
  int n_heads;
  int n_kv_heads; /* < n_heads: grouped-query attention */
  int head_dim;
  int d_mlp;
  int vocab_size;
  int max_positions; /* context length; the learned position table's rows */
  /* norms: the kind (LayerNorm has a bias), its epsilon; a pre norm before
   * attention and before the MLP unless no_pre_norms (OLMo-2: the sublayers
   * read the residual itself); post_norms: their outputs also pass through
   * their own norm before the residual add (OLMo-2, Gemma 2/3); qk_norm: q
   * and k normed before the rotary (qk_norm_t), with biases where
   * qk_norm_bias (Phi's). A "(1 + w)" scale (Gemma) is folded into the
   * weights by its loader. */
  norm_kind_t norm;
  float norm_eps;
  int no_pre_norms;
  int post_norms;
  /* post_residual_norms: the residual stream itself LayerNormed after each
   * sublayer's add (attn_norm after the attention's, mlp_norm after the
   * MLP's) and no norm before the sublayers (OPT-350m's
   * do_layer_norm_before false); no_final_norm: the last layer's output
   * goes to the unembedding as it is (final_norm_w NULL). */
  int post_residual_norms;
  int no_final_norm;
  /* embed_proj_dim > 0 (OPT-350m's word_embed_proj_dim): the token
   * embedding and the unembedding are that wide, the embedding projected up
   * to d_model by embed_proj_in before the positions are added, the last
   * residual projected down by embed_proj_out before the unembedding
   * (no biases); 0: both d_model wide, no projections. */
  int embed_proj_dim;
  qk_norm_t qk_norm;
  int qk_norm_bias;
  /* positions */
  position_kind_t positions;
  float rope_theta;
  int rotary_dim; /* dimensions rotated per head (== head_dim for llama) */
  rope_pairs_t rope_pairs;
  rope_scaling_t rope_scaling;
  float rope_factor;
  float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
  float rope_beta_fast, rope_beta_slow;              /* yarn */
  int rope_truncate;                                 /* yarn: the ramp's ends rounded outwards */
  float rope_attn_factor;                            /* yarn, longrope; 0 or 1: none */
  int rope_original_max_positions;                   /* llama3, yarn: the pretraining context */
  /* per-pair divisors of the inverse frequencies, after rope_scaling (a GGUF
   * rope_freqs.weight: Llama 3 scaling as llama.cpp stores it); 0 pairs: none */
  int rope_n_freq_factors; /* 0 or rotary_dim / 2 */
  float rope_freq_factors[MODEL_MAX_HEAD_DIM / 2];
  /* MLP */
  mlp_kind_t mlp;
  activation_t activation;
  /* residual stream */
  int parallel_residual; /* attention and MLP read the same residual (neox) */
  float embed_scale;     /* embeddings multiplied by it (0 or 1: none) */
  float residual_scale;  /* each sublayer's output multiplied by it before the residual add
                            (Granite's residual_multiplier; 0 or 1: none) */
  /* attention */
  int qkv_bias;        /* q, k and v projections have biases */
  int o_bias;          /* the attention output projection has a bias */
  int mlp_bias;        /* up and down projections have biases */
  float attn_scale;    /* scores = q.k * it (0: 1/sqrt(head_dim); Gemma 2/3:
                          query_pre_attn_scalar^-1/2) */
  float attn_softcap;  /* scores = c tanh(scores / c) (0: none) */
  float final_softcap; /* logits = c tanh(logits / c) (0: none) */
  /* sliding windows: a sliding layer's row reads the keys of its own and the
   * sliding_window - 1 positions before it (0: all keys, every layer). The
   * layers that slide: every one with sliding_period 0 or 1, else all but
   * every sliding_period-th (layer L slides unless (L + 1 + sliding_offset) %
   * period == 0: Gemma 2's alternation is period 2, Gemma 3's pattern 6), and
   * none below sliding_first_layer (Qwen2's max_window_layers). A sliding layer
   * rotates with rope_local_theta's frequencies where it is set (Gemma 3's
   * local base, unscaled), with the model's own otherwise. */
  int sliding_window;
  int sliding_period;
  int sliding_offset; /* the full layers are those with (L + 1 + offset) % period == 0 (GPT-Neo's
                         global layers 0, 2, ...: period 2, offset 1) */
  int sliding_first_layer; /* layers below it never slide (0: no such bound) */
  float rope_local_theta;
  int tied_unembed;   /* unembed aliases tok_embed */
  int unembed_bias;   /* the unembedding has a bias (Phi-2's lm_head) */
  int bos_id, eos_id; /* -1 when unknown */
} model_config_t;

/* How a model holds its projection matrices (`--weights-dtype`). */
typedef enum { WEIGHTS_FP32, WEIGHTS_BF16, WEIGHTS_NATIVE } weights_dtype_t;

/* "fp32", "bf16", "native"; and back (-1: none of them). */
const char *weights_dtype_name(int dtype);
int weights_dtype_parse(const char *name);

/* A projection matrix [rows, cols] kept in a GGUF file's own block format
 * (WEIGHTS_NATIVE): row r is row_bytes bytes at blocks + r * row_bytes, its
 * cols values in cols / block_size blocks of `type` (gguf_quants.h). Types
 * the backends multiply in their blocks are model_native_type's; a
 * projection of any other type is dequantised at load and held as F32
 * "blocks" (one float each). */
typedef struct {
  uint32_t type; /* gguf_tensor_type_t */
  int rows, cols;
  size_t row_bytes;
  uint8_t *blocks; /* rows * row_bytes bytes: owned, or in the model's file mapping (borrowed) */
  int borrowed;    /* blocks lie in model_t.mapping: used in place, never freed */
} model_blocks_t;

/* Decodes row r of w into dst[w->cols], each value exactly as gguf_quants
 * decodes it (the dequantised-at-load float). */
void model_blocks_row(const model_blocks_t *w, int r, float *dst);

/* 1 when the backends multiply a projection of this GGUF type in its own
 * blocks (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K). */
int model_native_type(uint32_t type);

/* Biases are NULL where the family has none. */
typedef struct {
  float *attn_norm_w, *attn_norm_b;           /* [d_model], NULL with no_pre_norms */
  float *wq, *bq;                             /* [n_heads*head_dim, d_model] */
  float *wk, *bk;                             /* [n_kv_heads*head_dim, d_model] */
  float *wv, *bv;                             /* [n_kv_heads*head_dim, d_model] */
  float *wo, *bo;                             /* [d_model, n_heads*head_dim] */
  float *post_attn_norm_w, *post_attn_norm_b; /* [d_model], post_norms only */
  float *q_norm_w, *k_norm_w;     /* qk_norm only: [head_dim] (per head), [H*hd] and [KV*hd] (whole,
                                     LayerNorm heads: head h's at h*hd) */
  float *q_norm_b, *k_norm_b;     /* qk_norm_bias only: as q_norm_w, k_norm_w */
  float *mlp_norm_w, *mlp_norm_b; /* [d_model], NULL with no_pre_norms */
  float *w_up, *b_up;             /* [d_mlp, d_model] (gpt2 c_fc, llama up_proj) */
  float *w_gate;                  /* [d_mlp, d_model], SwiGLU only */
  float *w_down, *b_down;         /* [d_model, d_mlp] */
  float *post_mlp_norm_w, *post_mlp_norm_b; /* [d_model], post_norms only */
} layer_weights_t;

typedef struct {
  model_config_t cfg;
  char path[1024];         /* the file or directory it was loaded from */
  char weights_format[32]; /* "safetensors" or "gguf" */
  char tensor_types[128];  /* the on-disk tensor types seen, e.g. "F32,Q4_1" */
  char matrix_types[128];  /* GGUF: those of the layer projections, embedding and unembedding */
  float *tok_embed;        /* [vocab_size, model_embed_width] */
  float *embed_proj_in;    /* [d_model, embed_proj_dim], embed_proj_dim only */
  float *embed_proj_out;   /* [embed_proj_dim, d_model], embed_proj_dim only */
  float *pos_embed;        /* [max_positions, d_model], learned positions only */
  layer_weights_t *layers; /* [n_layers] */
  float *final_norm_w, *final_norm_b; /* [d_model]; NULL with no_final_norm */
  float *unembed;                     /* [vocab_size, model_embed_width]; == tok_embed when tied */
  float *unembed_b;                   /* [vocab_size], unembed_bias only */
  /* weights_dtype_t. WEIGHTS_BF16: every weight rounded to bfloat16
   * (model_round_bf16): a backend with its own memory keeps the projections
   * as bf16 there. WEIGHTS_NATIVE: every layer projection (wq wk wv wo w_up
   * w_gate w_down) points at a model_blocks_t, not at floats, and only
   * transformer_matmul reads it; the token embedding and the unembedding
   * are embed_blocks and unembed_blocks (tok_embed and unembed are NULL:
   * read their rows with model_embed_row, model_unembed_row); norms,
   * biases and learned positions stay fp32. */
  int weights_dtype;
  model_blocks_t *embed_blocks;   /* WEIGHTS_NATIVE: [vocab_size, d_model] */
  model_blocks_t *unembed_blocks; /* WEIGHTS_NATIVE: == embed_blocks when tied */
  /* GGUF types of the file's token embedding and unembedding (output.weight,
   * or token_embd.weight when tied); 0 (F32) for other formats */
  uint32_t embed_type, unembed_type;
  /* the model file, memory-mapped read-only (native GGUF loads where mmap
   * works; NULL otherwise): borrowed blocks lie in it; model_free unmaps */
  void *mapping;
  size_t mapping_bytes;
  /* values of the weights the loader read from the file (a tied
   * unembedding once, a norm shared by two sublayers once), as the
   * checkpoint counts its parameters; 0 for a model not read from a file */
  size_t n_params_file;
} model_t;

/* The width of the token embedding and the unembedding: embed_proj_dim
 * where the model projects them, else d_model. */
int model_embed_width(const model_config_t *c);

/* Row `token` of the token embedding (the unembedding) as model_embed_width
 * floats: a pointer into the fp32 table, or, for a model holding it in
 * blocks, buf (d_model floats) with the row decoded into it. */
const float *model_embed_row(const model_t *m, int token, float *buf);
const float *model_unembed_row(const model_t *m, int token, float *buf);

/* Allocates a model whose every tensor (per cfg: biases where qkv_bias,
 * o_bias, mlp_bias or LayerNorm ask for them) is present and zeroed. Used by loaders
 * and tests. Returns NULL on bad cfg or out of memory. */
model_t *model_alloc(const model_config_t *cfg, char *err);

/* As model_alloc, for a WEIGHTS_NATIVE load: every layer projection slot,
 * embed_blocks and unembed_blocks (the same one when tied) hold an empty
 * model_blocks_t for the loader to fill, and no fp32 array is allocated for
 * them (tok_embed and unembed are NULL). */
model_t *model_alloc_native(const model_config_t *cfg, char *err);

/* Refuses (-1, err "PATH: WHAT need N GiB of host memory but M GiB is
 * available (LIMIT)HINT") when `need` bytes are more than the host can still
 * give this process (host_memory.h), so that a model too large for the
 * machine is refused by name before its arrays are allocated, never killed
 * by the kernel halfway through its load. hint may be "". HYDRA_NO_MEMORY_CHECK=1
 * turns the check off (memory the kernel does not count as available, such
 * as a ZFS cache, would be refused). */
int model_memory_check(const char *path, uint64_t need, const char *what, const char *hint,
                       char *err);

/* Checks a config for internal consistency (positive sizes, heads divide,
 * ...). Returns 0 or -1 with err naming the field. */
int model_config_check(const model_config_t *cfg, char *err);

/* The rotary's inverse frequency of each dimension pair, inv_freq[rotary_dim
 * / 2], with its rope_scaling applied, and the factor cos and sin are
 * multiplied by (*attn_scale, 1 unless yarn), computed in double as
 * transformers' rope init functions compute them. */
void model_rope_frequencies(const model_config_t *c, double *inv_freq, float *attn_scale);

/* 1 when layer L attends through a sliding window (see sliding_window). */
int model_layer_slides(const model_config_t *c, int layer);

/* Number of parameters: the file's (n_params_file) for a loaded model; for
 * one built from a config, every weight and bias the config describes (a
 * tied unembedding once). */
size_t model_n_params(const model_t *m);
/* Every weight and bias the config describes (a tied unembedding once),
 * before any array is allocated. */
size_t model_config_n_params(const model_config_t *c);

/* The bytes of the model's weights in host memory: *held, what its arrays
 * and owned blocks take; *mapped, the blocks it uses in place from its
 * file's mapping (pages of the page cache, shared, loaded as they are
 * read). */
void model_memory(const model_t *m, uint64_t *held, uint64_t *mapped);

void model_free(model_t *m);

/* Every per-layer array slot of w (NULL where the family has none), in a
 * fixed order, with its length in floats; returns the count (at most
 * MODEL_LAYER_TENSORS). *proj[i] is 1 for the projection matrices (wq, wk,
 * wv, wo, w_up, w_gate, w_down), 0 for norms and biases. */
#define MODEL_LAYER_TENSORS 25
int model_layer_tensors(const model_config_t *c, layer_weights_t *w, float ***ptr, size_t *len,
                        int *proj);

/* `--weights-dtype bf16`: rounds every weight in place to the nearest
 * bfloat16 (ties to even, as torch's .to(torch.bfloat16)) and marks the model
 * so. The numbers are then those of the checkpoint in bf16, computed in fp32;
 * a GPU backend stores the projection matrices in half the memory. */
void model_round_bf16(model_t *m);

/* Format loaders, called by checkpoint_open (checkpoint/checkpoint.h, where
 * model_load takes any model path): a Hugging Face directory (config.json
 * and safetensors), an open GGUF file. NULL with err filled on failure. */
model_t *model_load_hf(const char *dir, char *err);
model_t *model_from_gguf(const gguf_t *g, char *err);
/* The same with the layer projections, the token embedding and the
 * unembedding kept in the file's blocks (WEIGHTS_NATIVE): no fp32 copy of
 * them is made. The file is memory-mapped (read-only) and blocks are used in
 * place from the mapping (a fused qkv split by rows in place too); the llama
 * converter's permuted q/k rows are copied, un-permuted, into memory of
 * their stored size. Where mmap fails, every tensor is read with pread into
 * memory of its stored size. */
model_t *model_from_gguf_native(const gguf_t *g, char *err);

#endif
