/* bench_tokenizer - encoding throughput of hydra's tokenizer, single thread.
 *
 * usage: bench_tokenizer TOKENIZER DOCS [--runs N] [--ids-out FILE]
 *   TOKENIZER: what tokenizer_load takes (model directory, tokenizer.json,
 *   .gguf); DOCS: one JSON string per line (tests/bench/tokenizer_hf.py
 *   --make-docs writes it). Each document is encoded on its own, with the
 *   tokenizer's special tokens (as Hugging Face's encode_batch does); one
 *   warm-up pass, then the median of N timed passes. Prints one line of
 *   key=value results for tests/bench/tokenizer.sh; --ids-out writes each
 *   document's ids (one line each) so the run can be checked against
 *   Hugging Face's. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "error.h"
#include "tokenizer.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  char **text;
  size_t *len;
  size_t n, cap, bytes;
} docs_t;

static int read_docs(const char *path, docs_t *d) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "bench_tokenizer: cannot open %s\n", path);
    return -1;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  int rc = 0;
  while ((got = getline(&line, &cap, f)) > 0) {
    json_error_t je;
    json_t *s = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!json_is_string(s)) {
      fprintf(stderr, "bench_tokenizer: %s line %zu: not a JSON string\n", path, d->n + 1);
      json_decref(s);
      rc = -1;
      break;
    }
    if (d->n == d->cap) {
      d->cap = d->cap ? 2 * d->cap : 1024;
      d->text = realloc(d->text, d->cap * sizeof(char *));
      d->len = realloc(d->len, d->cap * sizeof(size_t));
      if (!d->text || !d->len) {
        json_decref(s);
        rc = -1;
        break;
      }
    }
    size_t n = json_string_length(s);
    d->text[d->n] = malloc(n + 1);
    if (!d->text[d->n]) {
      json_decref(s);
      rc = -1;
      break;
    }
    memcpy(d->text[d->n], json_string_value(s), n + 1);
    d->len[d->n++] = n;
    d->bytes += n;
    json_decref(s);
  }
  free(line);
  fclose(f);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_tokenizer TOKENIZER DOCS [--runs N] [--ids-out FILE]\n");
    return 2;
  }
  int runs = 5;
  const char *ids_out = NULL;
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (strcmp(argv[i], "--ids-out") == 0 && i + 1 < argc)
      ids_out = argv[++i];
    else {
      fprintf(stderr, "bench_tokenizer: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (runs < 1)
    runs = 1;
  char err[HYDRA_ERR_LEN];
  double t0 = now();
  tokenizer_t *t = tokenizer_load(argv[1], err);
  double load_s = now() - t0;
  if (!t) {
    fprintf(stderr, "bench_tokenizer: %s\n", err);
    return 1;
  }
  docs_t d = {0};
  int rc = 1;
  tokenizer_encoding_t enc = {0};
  double *times = malloc((size_t)runs * sizeof(double));
  if (!times || read_docs(argv[2], &d))
    goto done;
  size_t n_tokens = 0;
  FILE *out = ids_out ? fopen(ids_out, "w") : NULL;
  for (size_t i = 0; i < d.n; i++) { /* warm-up, and the ids */
    if (tokenizer_encode(t, d.text[i], d.len[i], TOKENIZER_ADD_SPECIAL, &enc, err)) {
      fprintf(stderr, "bench_tokenizer: document %zu: %s\n", i + 1, err);
      if (out)
        fclose(out);
      goto done;
    }
    n_tokens += enc.n;
    for (size_t k = 0; out && k < enc.n; k++)
      fprintf(out, "%s%d", k ? " " : "", (int)enc.ids[k]);
    if (out)
      fputc('\n', out);
  }
  if (out)
    fclose(out);
  for (int r = 0; r < runs; r++) {
    t0 = now();
    for (size_t i = 0; i < d.n; i++)
      if (tokenizer_encode(t, d.text[i], d.len[i], TOKENIZER_ADD_SPECIAL, &enc, err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err);
        goto done;
      }
    times[r] = now() - t0;
  }
  qsort(times, (size_t)runs, sizeof(double), cmp_double);
  double med = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
  printf("backend=hydra docs=%zu bytes=%zu tokens=%zu runs=%d load_s=%.3f median_s=%.4f "
         "tokens_per_s=%.0f mb_per_s=%.2f\n",
         d.n, d.bytes, n_tokens, runs, load_s, med, (double)n_tokens / med,
         (double)d.bytes / med / 1e6);
  rc = 0;
done:
  tokenizer_encoding_free(&enc);
  for (size_t i = 0; i < d.n; i++)
    free(d.text[i]);
  free(d.text);
  free(d.len);
  free(times);
  tokenizer_free(t);
  return rc;
}
