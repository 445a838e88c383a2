#include "checkpoint.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"

/* A .json file names its model's directory for the model, and is itself the
 * tokenizer's file for the tokenizer. */
typedef enum { PATH_HF_DIR, PATH_GGUF, PATH_JSON } path_kind_t;

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int has_gguf_magic(const char *path) {
  char magic[4] = {0};
  FILE *f = fopen(path, "rb");
  if (!f)
    return 0;
  size_t got = fread(magic, 1, 4, f);
  fclose(f);
  return got == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* What `path` names, and the directory of a file inside a Hugging Face
 * checkpoint. */
static int classify(const char *path, path_kind_t *kind, char *dir, size_t dir_size, char *err) {
  struct stat st;
  if (!path || !*path)
    return err_set(err, "no model path given");
  if (stat(path, &st) != 0)
    return err_set(err, "%s: no such file or directory", path);
  if (S_ISDIR(st.st_mode)) {
    if ((size_t)snprintf(dir, dir_size, "%s", path) >= dir_size)
      return err_set(err, "%s: path too long", path);
    *kind = PATH_HF_DIR;
    return 0;
  }
  if (!S_ISREG(st.st_mode))
    return err_set(err, "%s: not a regular file or directory", path);
  if (ends_with(path, ".gguf") || has_gguf_magic(path)) {
    *kind = PATH_GGUF;
    return 0;
  }
  if (ends_with(path, ".safetensors") || ends_with(path, ".json")) {
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(dir, dir_size, "%.*s", (int)(slash - path), path)
                  : snprintf(dir, dir_size, ".");
    if (n < 0 || (size_t)n >= dir_size)
      return err_set(err, "%s: path too long", path);
    *kind = ends_with(path, ".json") ? PATH_JSON : PATH_HF_DIR;
    return 0;
  }
  return err_set(err, "%s: not a model directory (config.json + safetensors) nor a GGUF file",
                 path);
}

static tokenizer_t *tokenizer_of_dir(const char *path, const char *dir, char *err) {
  char json[2048];
  struct stat st;
  if ((size_t)snprintf(json, sizeof(json), "%s/tokenizer.json", dir) >= sizeof(json)) {
    err_set(err, "%s: path too long", path);
    return NULL;
  }
  if (stat(json, &st) != 0) {
    err_set(err, "%s: the model directory has no tokenizer.json", path);
    return NULL;
  }
  return tokenizer_load_json(json, err);
}

int checkpoint_open(const char *path, unsigned want, checkpoint_t *out, char *err) {
  memset(out, 0, sizeof(*out));
  path_kind_t kind;
  char dir[1024];
  if (classify(path, &kind, dir, sizeof(dir), err) != 0)
    return -1;
  const int want_model = (want & CHECKPOINT_MODEL) != 0;
  const int want_tok = (want & CHECKPOINT_TOKENIZER) != 0;
  /* the tokenizer's error goes to err when it is all that was asked for */
  char *tok_err = want_model ? out->tokenizer_err : err;
  gguf_t *g = NULL;
  if (kind == PATH_GGUF && !(g = gguf_open(path, err)))
    return -1;
  if (want_model && (want & CHECKPOINT_NATIVE) && !g) {
    err_set(err,
            "%s: native weights (--weights-dtype native) keep a GGUF file's blocks; this is "
            "not a GGUF file (use fp32 or bf16)",
            path);
    return -1;
  }
  if (want_model) {
    out->model = !g                         ? model_load_hf(dir, err)
                 : want & CHECKPOINT_NATIVE ? model_from_gguf_native(g, err)
                                            : model_from_gguf(g, err);
    if (!out->model) {
      gguf_close(g);
      return -1;
    }
  }
  if (want_tok) {
    if (g)
      out->tokenizer = tokenizer_from_gguf(g, tok_err);
    else if (kind == PATH_JSON)
      out->tokenizer = tokenizer_load_json(path, tok_err);
    else
      out->tokenizer = tokenizer_of_dir(path, dir, tok_err);
  }
  gguf_close(g);
  if (want_tok && !want_model && !out->tokenizer)
    return -1;
  return 0;
}

void checkpoint_close(checkpoint_t *c) {
  if (!c)
    return;
  model_free(c->model);
  tokenizer_free(c->tokenizer);
  c->model = NULL;
  c->tokenizer = NULL;
}

model_t *model_load_dtype(const char *path, int dtype, char *err) {
  checkpoint_t c;
  const unsigned want = CHECKPOINT_MODEL | (dtype == WEIGHTS_NATIVE ? CHECKPOINT_NATIVE : 0);
  if (checkpoint_open(path, want, &c, err) != 0)
    return NULL;
  if (dtype == WEIGHTS_BF16)
    model_round_bf16(c.model);
  return c.model;
}

model_t *model_load(const char *path, char *err) {
  checkpoint_t c;
  return checkpoint_open(path, CHECKPOINT_MODEL, &c, err) == 0 ? c.model : NULL;
}

tokenizer_t *tokenizer_load(const char *path, char *err) {
  checkpoint_t c;
  return checkpoint_open(path, CHECKPOINT_TOKENIZER, &c, err) == 0 ? c.tokenizer : NULL;
}
