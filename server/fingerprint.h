/* fingerprint.h - a loaded model's identity, pinned by every job submitted
 * for it: the SHA-256 of its files' contents, then its shapes and its
 * tokenizer, as one line of text. Two workers hold the same model under a
 * name exactly when their fingerprints are equal; a job runs only where its
 * fingerprint is held, never on rows of two models.
 *
 * The content hash of a GGUF file is its SHA-256 (what sha256sum prints);
 * of a Hugging Face directory, the SHA-256 of sha256sum's listing of its
 * files that the loaders read (config.json, tokenizer.json,
 * tokenizer_config.json, *.safetensors, *.safetensors.index.json), sorted
 * by name. Each file's hash is computed once and cached beside it, in
 * FILE.hydra-fingerprint, keyed by the file's size, modification and change
 * times and inode: a cache that does not match is computed again, and where
 * the directory cannot be written, the hash is computed at every start. */
#ifndef HYDRA_FINGERPRINT_H
#define HYDRA_FINGERPRINT_H

#include <stddef.h>

#include "model.h"
#include "tokenizer.h"

/* Where per-file hashes are cached. */
typedef enum {
  FINGERPRINT_CACHE_BESIDE, /* FILE.hydra-fingerprint, when the directory is writable */
  FINGERPRINT_CACHE_OFF,    /* computed at every start, nothing written */
} fingerprint_cache_t;

/* Fills out (out_len bytes, STORE_FINGERPRINT_LEN is enough) with the
 * fingerprint of the model loaded from path (hydrad's --model PATH, checked
 * by checkpoint_open already) as m and tok (NULL: none):
 * "sha256:HEX FAMILY L.. d.. h../.. f.. v.. tok:KIND/N", KIND's spaces as '-'. *n_hashed (may be
 * NULL) gets the files whose hash was computed (0: every one came from its
 * cache). -1 with err naming the file when one cannot be read. */
int fingerprint_model(const char *path, const model_t *m, const tokenizer_t *tok,
                      fingerprint_cache_t cache, char *out, size_t out_len, int *n_hashed,
                      char *err);

#endif
