/* fuzz_bpe - the GPT-2 pre-tokenizer and byte-level BPE (tiny GPT-2's
 * tokenizer) and SentencePiece BPE with byte fallback (tiny Llama's) on
 * arbitrary bytes. Byte-level BPE must round-trip every input exactly;
 * offsets must stay within the input. HYDRA_ROOT names the repository. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"
#include "tokenizer.h"

static tokenizer_t *gpt2, *llama;

static tokenizer_t *load(const char *name) {
  char path[1024], err[HYDRA_ERR_LEN];
  const char *root = getenv("HYDRA_ROOT");
  snprintf(path, sizeof(path), "%s/tests/data/%s", root ? root : ".", name);
  tokenizer_t *t = tokenizer_load(path, err);
  if (!t) {
    fprintf(stderr, "fuzz_bpe: %s (set HYDRA_ROOT)\n", err);
    abort();
  }
  return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!gpt2) {
    gpt2 = load("tiny-gpt2");
    llama = load("tiny-llama");
  }
  char err[HYDRA_ERR_LEN];
  tokenizer_t *ts[2] = {gpt2, llama};
  for (int k = 0; k < 2; k++) {
    tokenizer_encoding_t enc = {0};
    if (tokenizer_encode(ts[k], (const char *)data, size, 0, &enc, err) != 0)
      continue; /* rejected (e.g. invalid UTF-8 for SentencePiece): fine, with a message */
    for (size_t i = 0; i < enc.n; i++)
      if (enc.starts[i] > enc.ends[i] || enc.ends[i] > size)
        abort();
    size_t len = 0;
    char *back = tokenizer_decode(ts[k], enc.ids, enc.n, 0, &len, err);
    if (k == 0 && (!back || len != size || memcmp(back, data, size) != 0))
      abort(); /* byte-level BPE loses nothing */
    free(back);
    tokenizer_encoding_free(&enc);
  }
  return 0;
}
