/* test_golden_logits - the forward pass against logits computed by Hugging
 * Face transformers (tests/golden/make_golden.py).
 *
 * usage: test_golden_logits ROOT GOLDEN.json [--model PATH] [--backend NAME]
 * All prompts of the golden run together in one batch of different lengths.
 * Pass: for every recorded position, max |ours - theirs| / max |theirs| over
 * the vocabulary <= 1e-4, and the argmax equal. A model named "$SMOLLM2" is
 * read from $HYDRA_SMOLLM2 or ROOT/models/smollm2-135m/; when it is absent
 * the test is skipped (77) unless HYDRA_REQUIRE_MODELS=1. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "checkpoint.h"
#include "forward.h"
#include "model.h"

#define BOUND 1e-4

static int fail(const char *msg, const char *detail) {
  fprintf(stderr, "test_golden_logits: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
  return 1;
}

/* Native weights give the floats of the weights dequantised at load: the
 * same forward pass on the fp32 model, every logit compared bit for bit
 * (each product decodes the values gguf_quants decodes at load, then runs
 * the same sgemm; on a backend whose products tile differently, a bound
 * would be stated here instead). */
static int same_as_dequantised(const char *model_path, backend_t *b, const forward_batch_t *batch,
                               const forward_out_t *native, int vocab) {
  char err[HYDRA_ERR_LEN];
  const size_t n = (size_t)native->n_logit_rows * (size_t)vocab;
  float *logits = malloc(n * sizeof(float));
  model_t *m = model_load(model_path, err);
  forward_t *f = m && logits ? forward_create(m, b, err) : NULL;
  forward_out_t out = *native;
  out.logits = logits;
  if (!f || forward_run(f, batch, &out, err) != 0)
    return fail("the dequantised-at-load run", err);
  size_t differ = 0;
  for (size_t i = 0; i < n; i++)
    differ += memcmp(&logits[i], &native->logits[i], sizeof(float)) != 0;
  printf("native vs dequantised at load: %zu of %zu logits differ\n", differ, n);
  CHECK(differ == 0, "native weights: %zu of %zu logits differ from the dequantised-at-load run",
        differ, n);
  forward_destroy(f);
  model_free(m);
  free(logits);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3)
    return fail("usage: test_golden_logits ROOT GOLDEN.json [--model PATH] [--backend NAME] "
                "[--weights-dtype native]",
                0);
  const char *root = argv[1], *golden = argv[2], *model_override = NULL, *backend = "cpu";
  int dtype = WEIGHTS_FP32;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--model") == 0)
      model_override = argv[i + 1];
    else if (strcmp(argv[i], "--backend") == 0)
      backend = argv[i + 1];
    else if (strcmp(argv[i], "--weights-dtype") == 0 &&
             (dtype = weights_dtype_parse(argv[i + 1])) != WEIGHTS_NATIVE)
      return fail("--weights-dtype", "only native is offered (bf16 has its own goldens)");
  }
  json_error_t jerr;
  json_t *g = json_load_file(golden, JSON_REJECT_DUPLICATES, &jerr);
  if (!g)
    return fail(golden, jerr.text);
  const char *model_name = json_string_value(json_object_get(g, "model"));
  const char *logits_name = json_string_value(json_object_get(g, "logits_file"));
  json_t *prompts = json_object_get(g, "prompts");
  int vocab = (int)json_integer_value(json_object_get(g, "vocab"));
  if (!model_name || !logits_name || !json_is_array(prompts) || vocab <= 0)
    return fail(golden, "missing model, logits_file, prompts or vocab");

  char model_path[2048], logits_path[2048];
  if (model_override)
    snprintf(model_path, sizeof(model_path), "%s", model_override);
  else if (strcmp(model_name, "$SMOLLM2") == 0) {
    const char *env = getenv("HYDRA_SMOLLM2");
    if (env)
      snprintf(model_path, sizeof(model_path), "%s", env);
    else
      snprintf(model_path, sizeof(model_path),
               "%s/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", root);
    if (access(model_path, R_OK) != 0) {
      const char *req = getenv("HYDRA_REQUIRE_MODELS");
      fprintf(stderr, "test_golden_logits: %s is not here (run deploy/get-model.sh)\n", model_path);
      return req && strcmp(req, "1") == 0 ? 1 : 77;
    }
  } else
    snprintf(model_path, sizeof(model_path), "%s/%s", root, model_name);
  const char *slash = strrchr(golden, '/');
  snprintf(logits_path, sizeof(logits_path), "%.*s%s", slash ? (int)(slash - golden + 1) : 0,
           golden, logits_name);

  /* The batch: every prompt, concatenated; the logit rows: recorded positions. */
  size_t n_seqs = json_array_size(prompts), n_rows = 0, n_logit = 0;
  for (size_t s = 0; s < n_seqs; s++) {
    json_t *p = json_array_get(prompts, s);
    n_rows += json_array_size(json_object_get(p, "ids"));
    n_logit += json_array_size(json_object_get(p, "positions"));
  }
  int *lengths = calloc(n_seqs, sizeof(int)), *ids = calloc(n_rows, sizeof(int));
  int *logit_rows = calloc(n_logit, sizeof(int)), *argmax = calloc(n_logit, sizeof(int));
  float *want = malloc(n_logit * vocab * sizeof(float)), *got = malloc(n_logit * vocab * 4);
  size_t r = 0, k = 0;
  for (size_t s = 0; s < n_seqs; s++) {
    json_t *p = json_array_get(prompts, s), *pi = json_object_get(p, "ids");
    json_t *pp = json_object_get(p, "positions"), *pa = json_object_get(p, "argmax");
    lengths[s] = (int)json_array_size(pi);
    for (size_t t = 0; t < json_array_size(pp); t++, k++) {
      logit_rows[k] = (int)(r + json_integer_value(json_array_get(pp, t)));
      argmax[k] = (int)json_integer_value(json_array_get(pa, t));
    }
    for (size_t t = 0; t < json_array_size(pi); t++)
      ids[r++] = (int)json_integer_value(json_array_get(pi, t));
  }
  FILE *lf = fopen(logits_path, "rb");
  if (!lf || fread(want, sizeof(float), n_logit * vocab, lf) != n_logit * vocab)
    return fail(logits_path, "cannot read the expected logits");
  fclose(lf);

  char err[HYDRA_ERR_LEN];
  model_t *m = model_load_dtype(model_path, dtype, err);
  if (!m)
    return fail("model_load", err);
  if (m->cfg.vocab_size != vocab)
    return fail(model_path, "vocabulary size differs from the golden's");
  backend_t *b = backend_create(backend, 0, err);
  if (!b) {
    fprintf(stderr, "test_golden_logits: %s\n", err);
    return strcmp(backend, "cpu") == 0 ? 1 : 77;
  }
  forward_t *f = forward_create(m, b, err);
  if (!f)
    return fail("forward_create", err);
  forward_batch_t batch = {.n_seqs = (int)n_seqs, .lengths = lengths, .ids = ids};
  forward_out_t out = {.logit_rows = logit_rows, .n_logit_rows = (int)n_logit, .logits = got};
  if (forward_run(f, &batch, &out, err) != 0)
    return fail("forward_run", err);

  double worst = 0;
  for (k = 0; k < n_logit; k++) {
    const float *a = got + k * vocab, *e = want + k * vocab;
    int best = 0;
    for (int i = 0; i < vocab; i++)
      if (a[i] > a[best])
        best = i;
    double rel = check_rel_error(a, e, (size_t)vocab);
    worst = fmax(worst, rel);
    CHECK(rel <= BOUND && best == argmax[k],
          "row %d: rel err %.3g (bound %.0e), argmax %d expected %d", logit_rows[k], rel, BOUND,
          best, argmax[k]);
  }
  printf("%s on %s (%s, weights %s): %zu prompts, %zu positions, worst rel err %.3g (bound %.0e)\n",
         golden, model_path, b->ops->name, weights_dtype_name(dtype), n_seqs, n_logit, worst,
         BOUND);
  if (dtype == WEIGHTS_NATIVE && same_as_dequantised(model_path, b, &batch, &out, vocab) != 0)
    return 1;
  forward_destroy(f);
  backend_destroy(b);
  model_free(m);
  json_decref(g);
  free(lengths), free(ids), free(logit_rows), free(argmax), free(want), free(got);
  return check_exit("test_golden_logits");
}
