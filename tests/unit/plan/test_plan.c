/* test_plan - bad jobs get the right status and field path, good jobs the
 * right plan. A job is checked in two steps, as the daemon does: job_parse
 * (what needs no model: 400) and plan_build against the model (422).
 * usage: test_plan ROOT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checkpoint.h"
#include "job.h"
#include "model.h"
#include "plan.h"
#include "tokenizer.h"

/* The status the daemon answers: 0 for a job that runs. */
static int status_of(const model_t *m, const tokenizer_t *tok, const char *doc, plan_t *plan,
                     job_error_t *err) {
  memset(err, 0, sizeof(*err));
  job_spec_t *spec = job_parse(doc, strlen(doc), err);
  if (!spec)
    return 400;
  int rc = plan_build(spec, m, tok, plan, err);
  job_free(spec);
  return rc ? 422 : 0;
}

typedef struct {
  int status;
  const char *field;
  const char *doc;
} bad_t;

static const bad_t bad[] = {
    {400, "", "{\"prompts\": [\"a\"],"},
    {400, "prompts", "{\"ablations\": {\"components\": [\"attn.0\"]}}"},
    {400, "ablations.compnents", "{\"prompts\": [\"a b\"], \"ablations\": {\"compnents\": []}}"},
    {400, "ablations.methods[0]",
     "{\"prompts\": [\"a\"], \"ablations\": {\"components\": [\"attn.0\"], \"methods\": "
     "[\"scale:x\"]}}"},
    {400, "ablations.components[1]",
     "{\"prompts\": [\"a\"], \"ablations\": {\"components\": [\"attn.0\", \"layer.3\"]}}"},
    {422, "ablations.components[0]",
     "{\"prompts\": [\"a\"], \"ablations\": {\"components\": [\"mlp.9\"], \"methods\": "
     "[\"zero\"]}}"},
    {422, "ablations.components[1]",
     "{\"prompts\": [\"a\"], \"ablations\": {\"components\": [\"attn.1\", \"head.0.7\"], "
     "\"methods\": [\"zero\"]}}"},
    {422, "ablations.components[0]",
     "{\"prompts\": [\"a\"], \"ablations\": {\"components\": [\"neuron.2.999\"], \"methods\": "
     "[\"zero\"]}}"},
    {422, "prompts[1].ids[2]",
     "{\"prompts\": [\"a\", {\"ids\": [1, 2, 5000]}], \"ablations\": {\"components\": "
     "[\"attn.0\"], \"methods\": [\"zero\"]}}"},
    {422, "ablations.positions[0]",
     "{\"prompts\": [{\"ids\": [1, 2, 3]}], \"ablations\": {\"components\": [\"attn.0\"], "
     "\"methods\": [\"zero\"], \"positions\": [-40]}}"},
    {422, "target",
     "{\"prompts\": [\"the cat\"], \"target\": {\"token\": \" zq xv\"}, \"ablations\": "
     "{\"components\": [\"attn.0\"], \"methods\": [\"zero\"]}}"},
    {422, "target.foil",
     "{\"prompts\": [\"the cat\"], \"target\": {\"id\": 5, \"foil_id\": 4000}, \"ablations\": "
     "{\"components\": [\"attn.0\"], \"methods\": [\"zero\"]}}"},
    /* "target": "next" */
    {422, "ablations.methods[0]",
     "{\"prompts\": [\"the cat\", \"a dog\"], \"target\": \"next\", \"ablations\": "
     "{\"components\": [\"attn.0\"], \"methods\": [{\"patch\": {\"source\": 1}}]}}"},
    {422, "target",
     "{\"prompts\": [{\"ids\": [5]}], \"target\": \"next\", \"ablations\": {\"components\": "
     "[\"attn.0\"], \"methods\": [\"zero\"]}}"},
    {422, "ablations.positions",
     "{\"prompts\": [{\"ids\": [5, 6, 7]}], \"target\": \"next\", \"ablations\": "
     "{\"components\": [\"attn.0\"], \"methods\": [\"zero\"], \"positions\": [2]}}"},
    /* paired prompts */
    {422, "prompts[0].counterfactual",
     "{\"prompts\": [{\"ids\": [5, 6, 7], \"counterfactual\": {\"ids\": [5, 6]}}], "
     "\"ablations\": {\"components\": [\"attn.0\"], \"methods\": [{\"patch\": "
     "{\"source\": \"counterfactual\"}}], \"positions\": \"all\"}}"},
    {422, "prompts[0].counterfactual.ids[1]",
     "{\"prompts\": [{\"ids\": [5, 6], \"counterfactual\": {\"ids\": [5, 6000]}}], "
     "\"ablations\": {\"components\": [\"attn.0\"], \"methods\": [{\"patch\": "
     "{\"source\": \"counterfactual\"}}]}}"},
    /* attention patterns: zero, scale and patch from a prompt of the same token count and
     * position only; a head of the model */
    {422, "ablations.components[0]",
     "{\"prompts\": [{\"ids\": [5, 6]}], \"ablations\": {\"components\": [\"pattern.0.4\"], "
     "\"methods\": [\"zero\"]}}"},
    {422, "ablations.methods[1]",
     "{\"prompts\": [{\"ids\": [5, 6]}, {\"ids\": [7, 8]}], \"ablations\": {\"components\": "
     "[\"pattern.1.0\"], \"methods\": [\"zero\", \"noise:0.1\"]}}"},
    {422, "ablations.methods[1]",
     "{\"prompts\": [{\"ids\": [5, 6]}, {\"ids\": [7, 8, 9]}], \"ablations\": {\"components\": "
     "[\"pattern.1.0\"], \"methods\": [\"zero\", \"mean\"]}}"},
    {422, "ablations.methods[0]",
     "{\"prompts\": [{\"ids\": [5, 6, 4]}, {\"ids\": [7, 8]}], \"ablations\": {\"components\": "
     "[\"pattern.1.0\"], \"methods\": [\"resample\"]}}"},
    {422, "ablations.methods[1]",
     "{\"prompts\": [{\"ids\": [5, 6, 9]}, {\"ids\": [7, 8]}], \"ablations\": {\"components\": "
     "[\"pattern.1.0\"], \"methods\": [\"zero\", {\"patch\": {\"source\": 1}}]}}"},
    {422, "ablations.methods[0]",
     "{\"prompts\": [{\"text\": \"the cat sat on\", \"subject\": \"cat\"}, {\"text\": "
     "\"cat the sat on\", \"subject\": \"cat\"}], \"ablations\": {\"components\": "
     "[\"pattern.1.0\"], \"methods\": [{\"patch\": {\"source\": 1}}], \"positions\": "
     "\"subject\"}}"},
    {422, "prompts[0].counterfactual",
     "{\"prompts\": [{\"ids\": [5, 6, 7], \"counterfactual\": {\"ids\": [5, 6]}}], "
     "\"ablations\": {\"components\": [\"pattern.2.1\"], \"methods\": [{\"patch\": "
     "{\"source\": \"counterfactual\"}}]}}"},
    /* a grid over named spans */
    {400, "ablations.positions",
     "{\"prompts\": [{\"text\": \"the cat sat\", \"subject\": \"cat\"}], \"ablations\": "
     "{\"components\": [\"attn.0\"], \"methods\": [\"zero\"], \"positions\": \"spans\"}}"},
    {400, "prompts[1].spans",
     "{\"prompts\": [{\"text\": \"the cat sat\", \"subject\": \"cat\"}, \"a dog\"], "
     "\"ablations\": {\"components\": [\"attn.0\"], \"methods\": [\"zero\"], \"positions\": "
     "{\"each\": \"spans\"}}}"},
    {400, "prompts[0].spans",
     "{\"prompts\": [{\"ids\": [1, 2], \"spans\": {\"a\": \"b\"}}], \"ablations\": "
     "{\"components\": [\"attn.0\"], \"methods\": [\"zero\"]}}"},
    {400, "prompts[0].spans.verb",
     "{\"prompts\": [{\"text\": \"the cat sat\", \"spans\": {\"verb\": \" ran\"}}], "
     "\"ablations\": {\"components\": [\"attn.0\"], \"methods\": [\"zero\"]}}"},
    {422, "prompts[0].spans",
     "{\"prompts\": [{\"text\": \"the cat sat on\", \"subject\": \"the cat\", \"spans\": "
     "{\"animal\": \"cat\"}}], \"ablations\": {\"components\": [\"attn.0\"], \"methods\": "
     "[\"zero\"], \"positions\": {\"each\": \"spans\"}}}"},
    {422, "prompts[1].foil",
     "{\"prompts\": [{\"ids\": [5], \"target\": 7, \"foil\": 8}, {\"ids\": [6], "
     "\"target\": 7, \"foil\": 9000}], \"ablations\": {\"components\": [\"attn.0\"], "
     "\"methods\": [\"zero\"]}}"},
};

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : ".";
  char path[1024], err[HYDRA_ERR_LEN];
  snprintf(path, sizeof(path), "%s/tests/data/tiny-gpt2", root);
  model_t *m = model_load(path, err);
  tokenizer_t *tok = m ? tokenizer_load(path, err) : NULL;
  if (!m || !tok) {
    fprintf(stderr, "test_plan: %s\n", err);
    return 1;
  }
  job_error_t jerr;
  plan_t plan;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int status = status_of(m, tok, bad[i].doc, &plan, &jerr);
    CHECK(status == bad[i].status && strcmp(jerr.field, bad[i].field) == 0,
          "bad job %zu: status %d field \"%s\" (%s); expected %d \"%s\"", i, status, jerr.field,
          jerr.message, bad[i].status, bad[i].field);
    if (status == 0)
      plan_free(&plan);
  }
  /* a grid over spans: the subject and the named spans, each prompt's in token order, every
   * token of each; a cell per span a prompt has */
  const char *spans =
      "{\"prompts\": [{\"text\": \"the cat sat on the mat\", \"subject\": \"the cat\", "
      "\"spans\": {\"place\": \" the mat\", \"verb\": \" sat\"}}, {\"text\": \"a dog ran\", "
      "\"spans\": {\"verb\": \" ran\"}}], \"ablations\": {\"components\": [\"attn.0\", "
      "\"mlp.1\"], \"methods\": [\"zero\"], \"positions\": {\"each\": \"spans\"}}}";
  CHECK(status_of(m, tok, spans, &plan, &jerr) == 0, "span grid refused: %s: %s", jerr.field,
        jerr.message);
  if (plan.span_names) {
    CHECK(plan.n_spans == 3 && !strcmp(plan.span_names[0], "subject") &&
              !strcmp(plan.span_names[1], "verb") && !strcmp(plan.span_names[2], "place"),
          "span names: %d, first %s", plan.n_spans, plan.span_names[0]);
    CHECK(plan.n_variants == (3 + 1) * 2, "span grid variants %ld, want 8", plan.n_variants);
    CHECK(plan.cell_offsets[1] == 3 && plan.cell_offsets[2] == 4 && plan.cell_key[3] == 1,
          "cells: prompt 0 has 3, prompt 1 its verb");
    const int *pos = plan.position_list;
    const int c = plan.cell_start[1], e = plan.cell_start[2]; /* prompt 0's " sat" */
    CHECK(e - c >= 1 && pos[c] > pos[plan.cell_start[1] - 1], "the verb follows the subject");
    CHECK(plan.n_grid == 3 && plan.job.cell_start == plan.cell_start, "grid of span indices");
    plan_free(&plan);
  }
  /* a prompt longer than the context (128 positions) */
  char *doc = malloc(8192);
  int n = snprintf(doc, 8192, "{\"prompts\": [{\"ids\": [");
  for (int t = 0; t < 130; t++)
    n += snprintf(doc + n, 8192 - n, "%s%d", t ? "," : "", t % 50);
  snprintf(doc + n, 8192 - n,
           "]}], \"ablations\": {\"components\": [\"*\"], \"methods\": [\"zero\"]}}");
  CHECK(status_of(m, tok, doc, &plan, &jerr) == 422 && strcmp(jerr.field, "prompts[0].ids") == 0,
        "a prompt longer than the context: field \"%s\" (%s)", jerr.field, jerr.message);
  free(doc);

  /* Limits, checked before the plan's arrays are made (plan_build_limited). */
  const char *dup = "{\"prompts\": [{\"ids\": [1, 2, 3, 4]}], \"ablations\": {\"components\": "
                    "[\"attn.0\"], \"methods\": [\"zero\"], \"positions\": [0, 2, 0]}}";
  CHECK(status_of(m, tok, dup, &plan, &jerr) == 400 &&
            strcmp(jerr.field, "ablations.positions[2]") == 0,
        "a position given twice: field \"%s\" (%s)", jerr.field, jerr.message);
  doc = malloc(8192);
  n = snprintf(doc, 8192,
               "{\"prompts\": [{\"ids\": [1, 2]}], \"ablations\": {\"components\": "
               "[\"attn.0\"], \"methods\": [\"zero\"], \"positions\": [");
  for (int t = 0; t < 129; t++) /* one more than the context */
    n += snprintf(doc + n, 8192 - n, "%s%d", t ? "," : "", t);
  snprintf(doc + n, 8192 - n, "]}}");
  CHECK(status_of(m, tok, doc, &plan, &jerr) == 422 &&
            strcmp(jerr.field, "ablations.positions") == 0,
        "positions beyond the context: field \"%s\" (%s)", jerr.field, jerr.message);
  /* "next" x "all" over 4 prompts of 100 tokens: 4 x (100 + 2 x 4950) ids and
   * positions = 160 kB of plan, over a 64 kB budget */
  n = snprintf(doc, 8192, "{\"prompts\": [");
  for (int p = 0; p < 4; p++) {
    n += snprintf(doc + n, 8192 - n, "%s{\"ids\": [", p ? "," : "");
    for (int t = 0; t < 100; t++)
      n += snprintf(doc + n, 8192 - n, "%s%d", t ? "," : "", (7 * t + p) % 50);
    n += snprintf(doc + n, 8192 - n, "]}");
  }
  snprintf(doc + n, 8192 - n,
           "], \"target\": \"next\", \"ablations\": {\"components\": [\"attn.0\"], "
           "\"methods\": [\"zero\"], \"positions\": \"all\"}}");
  job_spec_t *spec = job_parse(doc, strlen(doc), &jerr);
  const plan_limits_t small = {
      .max_prompt_tokens = 1000, .max_variants = 1000000, .max_bytes = 64 << 10};
  const plan_limits_t roomy = {
      .max_prompt_tokens = 1000, .max_variants = 1000000, .max_bytes = 1 << 20};
  const plan_limits_t few_tokens = {.max_prompt_tokens = 64};
  const plan_limits_t few_variants = {.max_variants = 300};
  CHECK(spec && plan_build_limited(spec, m, tok, &small, &plan, &jerr) == -1 && jerr.too_large &&
            strcmp(jerr.field, "target") == 0,
        "next x all over the memory budget: field \"%s\" (%s)", jerr.field, jerr.message);
  int ok = spec && plan_build_limited(spec, m, tok, &roomy, &plan, &jerr) == 0;
  CHECK(ok && plan.n_prompts == 4 * 99, "next x all within the budget: %s", jerr.message);
  if (ok)
    plan_free(&plan);
  CHECK(spec && plan_build_limited(spec, m, tok, &few_tokens, &plan, &jerr) == -1 &&
            jerr.too_large && strcmp(jerr.field, "prompts[0]") == 0,
        "ids over max_prompt_tokens: field \"%s\" (%s)", jerr.field, jerr.message);
  CHECK(spec && plan_build_limited(spec, m, tok, &few_variants, &plan, &jerr) == -1 &&
            jerr.too_large && strcmp(jerr.field, "target") == 0,
        "next's readouts over max_variants: field \"%s\" (%s)", jerr.field, jerr.message);
  job_free(spec);
  free(doc);
  /* tokenizing stops at the limit: one 1 MB word, 16 tokens at most */
  const size_t big = 1 << 20;
  char *word = malloc(big);
  memset(word, 'q', big);
  tokenizer_encoding_t capped = {0};
  CHECK(tokenizer_encode_max(tok, word, big, 0, 16, &capped, err) == TOKENIZER_TOO_MANY &&
            capped.n == 0,
        "a 1 MB word against 16 tokens: %zu tokens (%s)", capped.n, err);
  tokenizer_encoding_t plain = {0};
  tokenizer_encode(tok, "the cat sat", 11, 0, &plain, err);
  CHECK(tokenizer_encode_max(tok, "the cat sat", 11, 0, 16, &capped, err) == 0 &&
            capped.n == plain.n && plain.n > 0,
        "\"the cat sat\" within 16 tokens: %zu tokens, %zu without a limit", capped.n, plain.n);
  CHECK(tokenizer_encode_max(tok, "the cat sat", 11, 0, plain.n - 1, &capped, err) ==
            TOKENIZER_TOO_MANY,
        "\"the cat sat\" against one token fewer than it has");
  tokenizer_encoding_free(&plain);
  tokenizer_encoding_free(&capped);
  free(word);

  /* a good job: text prompts, a subject, a named target, the hydra preset */
  const char *good = "{\"preset\": \"hydra\", \"prompts\": [{\"text\": \"the cat sat on the mat\", "
                     "\"subject\": \"cat\"}, {\"text\": \"a dog ran\", \"subject\": \"dog\"}], "
                     "\"target\": {\"token\": \" the\"}, "
                     "\"ablations\": {\"positions\": \"subject\"}}";
  int status = status_of(m, tok, good, &plan, &jerr);
  CHECK(status == 0, "good job: %d %s: %s", status, jerr.field, jerr.message);
  if (status == 0) {
    tokenizer_encoding_t enc = {0};
    tokenizer_encode(tok, "the cat sat on the mat", 22, 0, &enc, err);
    size_t first = 0, last = 0;
    tokenizer_find_substring(&enc, "the cat sat on the mat", 22, "cat", 3, &first, &last, err);
    tokenizer_encoding_t tgt = {0};
    tokenizer_encode(tok, " the", 4, 0, &tgt, err);
    CHECK(plan.n_components == 6 && plan.job.samples == 15 && plan.n_variants == 2 * 6 * 15 &&
              plan.lengths[0] == (int)enc.n && plan.position_list[0] == (int)last &&
              plan.targets[0] == tgt.ids[0] && strcmp(plan.component_names[1], "mlp.0") == 0,
          "good job planned wrongly: %d components, %d samples, %ld variants, position %d (want "
          "%zu), target %d (want %d)",
          plan.n_components, plan.job.samples, plan.n_variants, plan.position_list[0], last,
          plan.targets[0], tgt.n ? tgt.ids[0] : -1);
    tokenizer_encoding_free(&enc);
    tokenizer_encoding_free(&tgt);
    plan_free(&plan);
  }
  tokenizer_free(tok);
  model_free(m);
  printf("test_plan: %zu bad jobs\n", sizeof(bad) / sizeof(bad[0]) + 1);
  return check_exit("test_plan");
}
