/* fuzz_tokenizer_json - tokenizer.json loading on arbitrary bytes; a file it
 * accepts must encode and decode a fixed text without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzz_util.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[HYDRA_ERR_LEN];
  tokenizer_t *t = tokenizer_load_json(fuzz_scratch("tokenizer.json", data, size), err);
  if (!t)
    return 0;
  static const char text[] =
      "The Eiffel Tower is in Paris, 1889 \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80!";
  tokenizer_encoding_t enc = {0};
  if (tokenizer_encode(t, text, strlen(text), TOKENIZER_ADD_SPECIAL, &enc, err) == 0) {
    size_t len = 0;
    free(tokenizer_decode(t, enc.ids, enc.n, 0, &len, err));
  }
  tokenizer_encoding_free(&enc); /* a failed encode may hold memory too */
  tokenizer_free(t);
  return 0;
}
