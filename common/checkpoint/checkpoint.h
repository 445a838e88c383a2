/* checkpoint.h - the front door of a model path: one open builds the model
 * and its tokenizer.
 *
 * A path is a Hugging Face directory (config.json, model.safetensors or its
 * sharded index, tokenizer.json), a .safetensors or .json file inside one, or
 * a GGUF file (by extension, or by its magic when named otherwise). A GGUF
 * file is parsed once for both the model and the tokenizer.
 *
 * Lives above model/ and tokenizer/: their loaders never include it. */
#ifndef HYDRA_CHECKPOINT_H
#define HYDRA_CHECKPOINT_H

#include "error.h"
#include "model.h"
#include "tokenizer.h"

enum {
  CHECKPOINT_MODEL = 1,     /* load the model; a failure fails the open */
  CHECKPOINT_TOKENIZER = 2, /* load the tokenizer; see below */
  CHECKPOINT_NATIVE = 4,    /* a GGUF model's projections kept in their blocks
                               (WEIGHTS_NATIVE); any other model path fails */
};

typedef struct {
  model_t *model;         /* NULL unless CHECKPOINT_MODEL */
  tokenizer_t *tokenizer; /* NULL when not asked for or when it failed to load */
  /* Why the tokenizer is missing, when it was asked for with a model and did
   * not load (a model without one still opens: jobs give token ids). */
  char tokenizer_err[HYDRA_ERR_LEN];
} checkpoint_t;

/* Opens `path` once and loads what `want` asks for. With CHECKPOINT_MODEL
 * the open fails (-1, err naming the file and what is wrong) when the model
 * does not load; a tokenizer that does not load is then reported in
 * tokenizer_err. With CHECKPOINT_TOKENIZER alone its failure fails the open.
 * The caller owns what is loaded: checkpoint_close frees it. */
int checkpoint_open(const char *path, unsigned want, checkpoint_t *out, char *err);
void checkpoint_close(checkpoint_t *c);

/* The model alone, or the tokenizer alone, of a path (NULL and err filled
 * on failure). */
model_t *model_load(const char *path, char *err);
tokenizer_t *tokenizer_load(const char *path, char *err);
/* The model held as `dtype` (weights_dtype_t): fp32, rounded to bf16
 * (model_round_bf16), or native (CHECKPOINT_NATIVE). */
model_t *model_load_dtype(const char *path, int dtype, char *err);

#endif
