/* test_interventions.c - residual-stream sites and group ablations against
 * goldens from transformers with torch hooks
 * (tests/golden/make_intervention_golden.py): each golden case is a job
 * document as a user writes it, run through job_parse, plan_build and the
 * engine, every row compared with the golden's (total effect, ablated
 * logit, direct effect, compensation, every slot's direct effect).
 *
 * A grid over spans keys its golden rows by span name, the engine's rows by
 * the span's index in the plan's span_names.
 *
 * Each case runs three ways that must all agree with the golden: reuse on
 * (variants join at their unit's first sub-stage), reuse off (every variant
 * a full forward pass) and passes of a few rows (intervention tables
 * applied in pieces; chunks of one prompt); SmolLM2's golden (a smaller set
 * of cases, when the model is here) with reuse on only.
 *
 * Bound: GOLDEN_BOUND (1e-4) of the largest |clean logit|, as the engine
 * goldens (test_engine.c). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "checkpoint.h"
#include "engine.h"
#include "job.h"
#include "model.h"
#include "plan.h"
#include "tokenizer.h"

#define GOLDEN_BOUND 1e-4

typedef struct {
  const plan_t *plan;
  int n_slots;
  engine_variant_t *rows;
  float *deltas;
  float *clean_de;          /* [prompts][n_slots] */
  engine_clean_t clean[64]; /* (de not kept) */
  int n, cap;
} collect_t;

static int on_clean(void *ctx, const engine_clean_t *r) {
  collect_t *c = ctx;
  memcpy(c->clean_de + (size_t)r->prompt * c->n_slots, r->de, sizeof(float) * c->n_slots);
  if (r->prompt < 64)
    c->clean[r->prompt] = *r;
  return 0;
}

static int on_variant(void *ctx, const engine_variant_t *r) {
  collect_t *c = ctx;
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 256;
    c->rows = realloc(c->rows, sizeof(*c->rows) * c->cap);
    c->deltas = realloc(c->deltas, sizeof(float) * c->cap * c->n_slots);
    if (!c->rows || !c->deltas)
      abort();
  }
  c->rows[c->n] = *r;
  memcpy(c->deltas + (size_t)c->n * c->n_slots, r->delta_de, sizeof(float) * c->n_slots);
  c->rows[c->n].delta_de = NULL;
  c->n++;
  return 0;
}

static int find(const collect_t *c, int prompt, const char *unit, const char *method,
                int position) {
  for (int i = 0; i < c->n; i++) {
    const engine_variant_t *r = &c->rows[i];
    if (r->prompt == prompt && r->position == position &&
        strcmp(c->plan->component_names[r->component], unit) == 0 &&
        strcmp(c->plan->method_names[r->method], method) == 0)
      return i;
  }
  return -1;
}

static void run_case(engine_t *e, const model_t *m, const tokenizer_t *tok, json_t *kase,
                     double scale, int mode) {
  static const char *const modes[] = {"reuse", "no reuse", "passes of a few rows"};
  const char *name = json_string_value(json_object_get(kase, "name"));
  json_t *doc = json_deep_copy(json_object_get(kase, "job"));
  if (mode == 1)
    json_object_set_new(doc, "reuse", json_false());
  char *text = json_dumps(doc, 0);
  json_decref(doc);
  job_error_t jerr;
  job_spec_t *spec = job_parse(text, strlen(text), &jerr);
  free(text);
  CHECK(spec != NULL, "%s: job refused: %s: %s", name, jerr.field, jerr.message);
  if (!spec)
    return;
  plan_t plan;
  if (plan_build(spec, m, tok, &plan, &jerr) != 0) {
    FAIL("%s: plan refused: %s: %s", name, jerr.field, jerr.message);
    job_free(spec);
    return;
  }
  json_t *tokens = json_object_get(kase, "tokens"); /* text prompts: transformers' tokens */
  for (size_t p = 0, at = 0; p < json_array_size(tokens) && (int)p < plan.n_prompts; p++) {
    json_t *want = json_array_get(tokens, p);
    int same = plan.lengths[p] == (int)json_array_size(want);
    for (int t = 0; same && t < plan.lengths[p]; t++)
      same = plan.ids[at + t] == json_integer_value(json_array_get(want, t));
    CHECK(same, "%s: prompt %zu tokenized as transformers does", name, p);
    at += plan.lengths[p];
  }
  const int ns = engine_n_slots(&m->cfg);
  collect_t c = {.plan = &plan, .n_slots = ns};
  c.clean_de = calloc((size_t)plan.n_prompts * ns, sizeof(float));
  engine_sink_t sink = {.ctx = &c, .clean = on_clean, .variant = on_variant};
  engine_job_t job = plan.job;
  if (mode == 2) {
    int longest = 0;
    for (int p = 0; p < job.n_prompts; p++)
      longest = job.lengths[p] > longest ? job.lengths[p] : longest;
    job.max_rows = longest; /* one prompt's rows per pass and per chunk */
  }
  char err[HYDRA_ERR_LEN];
  const int rc = engine_run(e, &job, &sink, err);
  CHECK(rc == 0, "%s (%s): engine_run: %s", name, modes[mode], err);
  json_t *rows = json_object_get(kase, "rows");
  int compared = 0;
  for (size_t i = 0; rc == 0 && i < json_array_size(rows); i++) {
    json_t *g = json_array_get(rows, i);
    const int p = (int)json_integer_value(json_object_get(g, "prompt"));
    const char *unit = json_string_value(json_object_get(g, "component"));
    const char *method = json_string_value(json_object_get(g, "method"));
    json_t *at = json_object_get(g, "position");
    const char *span = json_string_value(json_object_get(g, "span"));
    int position = at ? (int)json_integer_value(at) : -1;
    for (int s = 0; span && s < plan.n_spans; s++) /* a span grid's rows: the span's index */
      if (strcmp(plan.span_names[s], span) == 0)
        position = s;
    if (span && position < 0) {
      FAIL("%s (%s): the plan has no span \"%s\"", name, modes[mode], span);
      continue;
    }
    const int k = find(&c, p, unit, method, position);
    if (k < 0) {
      FAIL("%s (%s): no row for prompt %d %s %s position %d", name, modes[mode], p, unit, method,
           position);
      continue;
    }
    const engine_variant_t *r = &c.rows[k];
    char what[320];
    static const char *const keys[] = {"total_effect", "ablated_logit", "direct_effect",
                                       "compensation"};
    const double got[] = {r->total_effect, r->ablated_logit, r->direct_effect, r->compensation};
    for (int q = 0; q < 4; q++) {
      snprintf(what, sizeof(what), "%s (%s): prompt %d %s %s @%d %s", name, modes[mode], p, unit,
               method, position, keys[q]);
      CHECK_CLOSE(what, got[q], json_number_value(json_object_get(g, keys[q])), GOLDEN_BOUND,
                  scale);
    }
    json_t *diff = json_object_get(g, "logit_diff");
    if (diff) {
      snprintf(what, sizeof(what), "%s (%s): prompt %d %s %s logit_diff", name, modes[mode], p,
               unit, method);
      CHECK_CLOSE(what, r->logit_diff, json_number_value(diff), GOLDEN_BOUND, scale);
    }
    json_t *de = json_object_get(g, "de_clean_scale");
    for (int s = 0; s < ns; s++) {
      snprintf(what, sizeof(what), "%s (%s): prompt %d %s %s de[%d]", name, modes[mode], p, unit,
               method, s);
      CHECK_CLOSE(what, c.clean_de[(size_t)p * ns + s] + c.deltas[(size_t)k * ns + s],
                  json_number_value(json_array_get(de, s)), GOLDEN_BOUND, scale);
    }
    compared++;
  }
  json_t *clean = json_object_get(kase, "clean"); /* the runs' targets, logits, differences */
  for (size_t i = 0; rc == 0 && i < json_array_size(clean); i++) {
    json_t *g = json_array_get(clean, i);
    const int p = (int)json_integer_value(json_object_get(g, "prompt"));
    const engine_clean_t *r = &c.clean[p];
    char what[256];
    CHECK(r->target == json_integer_value(json_object_get(g, "target")),
          "%s (%s): prompt %d clean target %d, want %lld", name, modes[mode], p, r->target,
          json_integer_value(json_object_get(g, "target")));
    snprintf(what, sizeof(what), "%s (%s): prompt %d clean logit", name, modes[mode], p);
    CHECK_CLOSE(what, r->logit, json_number_value(json_object_get(g, "clean_logit")), GOLDEN_BOUND,
                scale);
    snprintf(what, sizeof(what), "%s (%s): prompt %d clean logit_diff", name, modes[mode], p);
    CHECK_CLOSE(what, r->logit_diff, json_number_value(json_object_get(g, "logit_diff")),
                GOLDEN_BOUND, scale);
  }
  CHECK(rc != 0 || (compared == (int)json_array_size(rows) && c.n == compared),
        "%s (%s): %d golden rows compared of %zu, the engine gave %d", name, modes[mode], compared,
        json_array_size(rows), c.n);
  printf("  %s (%s): %d rows\n", name, modes[mode], compared);
  free(c.rows);
  free(c.deltas);
  free(c.clean_de);
  plan_free(&plan);
  job_free(spec);
}

int main(int argc, char **argv) {
  if (argc < 3 || (argc > 3 && (argc != 5 || strcmp(argv[3], "--backend") != 0))) {
    fprintf(stderr, "usage: test_interventions ROOT GOLDEN.json [--backend NAME]\n");
    return 2;
  }
  const char *backend = argc == 5 ? argv[4] : "cpu";
  check_quiet_after(40);
  json_error_t jerr;
  json_t *g = json_load_file(argv[2], JSON_REJECT_DUPLICATES, &jerr);
  if (!g) {
    fprintf(stderr, "test_interventions: %s: %s\n", argv[2], jerr.text);
    return 1;
  }
  char path[2048], err[HYDRA_ERR_LEN];
  const char *model_name = json_string_value(json_object_get(g, "model"));
  const int found =
      check_golden_model_path("test_interventions", argv[1], model_name, path, sizeof(path));
  if (found != 0) {
    json_decref(g);
    return found;
  }
  model_t *m = model_load(path, err);
  tokenizer_t *tok = m ? tokenizer_load(path, err) : NULL;
  backend_t *b = tok ? backend_create(backend, 0, err) : NULL;
  engine_t *e = b ? engine_create(m, b, err) : NULL;
  if (!e) {
    fprintf(stderr, "test_interventions: %s\n", err);
    return b || !tok || strcmp(backend, "cpu") == 0 ? 1 : 77; /* 77: no such backend here */
  }
  double scale = 0;
  json_t *prompts = json_object_get(g, "prompts");
  for (size_t p = 0; p < json_array_size(prompts); p++)
    scale = fmax(
        scale, fabs(json_number_value(json_object_get(json_array_get(prompts, p), "clean_logit"))));
  printf("test_interventions: %s on %s (%s), scale %.3f, bound %.3g\n", argv[2], path, b->ops->name,
         scale, GOLDEN_BOUND * scale);
  /* the three ways on the tiny models; the real model (minutes each way) with reuse */
  const int modes = model_name && strcmp(model_name, "$SMOLLM2") == 0 ? 1 : 3;
  json_t *cases = json_object_get(g, "cases");
  for (size_t k = 0; k < json_array_size(cases); k++)
    for (int mode = 0; mode < modes; mode++)
      run_case(e, m, tok, json_array_get(cases, k), scale, mode);
  engine_destroy(e);
  backend_destroy(b);
  tokenizer_free(tok);
  model_free(m);
  json_decref(g);
  return check_exit("test_interventions");
}
