/* test_next - "target": "next" (the true next token at every position)
 * through the planner and the engine, against goldens made with
 * transformers + torch hooks (tests/golden/make_next_golden.py): for every
 * readout (prompt, position t) the clean centred logit of token t + 1 at t,
 * and for each ablation (component, method, positions "last" or "all") the
 * total effect and the ablated component's direct-effect drop.
 * usage: test_next ROOT GOLDEN.json [--backend NAME]
 * Bound: 1e-4 of the largest |clean logit| (as the other engine goldens). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "checkpoint.h"
#include "engine.h"
#include "job.h"
#include "model.h"
#include "plan.h"

#define BOUND 1e-4 /* of the largest |clean logit| */

typedef struct {
  const plan_t *plan;
  int n;
  double *clean, *total, *direct; /* [engine prompt] */
  int *target, *seen;
} rows_t;

static int on_clean(void *ctx, const engine_clean_t *c) {
  rows_t *R = ctx;
  R->clean[c->prompt] = c->logit;
  R->target[c->prompt] = c->target;
  return 0;
}

static int on_variant(void *ctx, const engine_variant_t *v) {
  rows_t *R = ctx;
  R->total[v->prompt] = v->total_effect;
  R->direct[v->prompt] = v->direct_effect;
  R->seen[v->prompt]++;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: test_next ROOT GOLDEN.json [--backend NAME]\n");
    return 2;
  }
  const char *root = argv[1], *backend = argc >= 5 ? argv[4] : "cpu";
  json_error_t jerr;
  json_t *g = json_load_file(argv[2], JSON_REJECT_DUPLICATES, &jerr);
  if (!g) {
    fprintf(stderr, "test_next: %s: %s\n", argv[2], jerr.text);
    return 1;
  }
  char path[2048], err[HYDRA_ERR_LEN];
  snprintf(path, sizeof(path), "%s/%s", root, json_string_value(json_object_get(g, "model")));
  model_t *m = model_load(path, err);
  backend_t *b = m ? backend_create(backend, 0, err) : NULL;
  engine_t *e = b ? engine_create(m, b, err) : NULL;
  if (!e) {
    fprintf(stderr, "test_next: %s\n", err);
    return b || strcmp(backend, "cpu") == 0 ? 1 : 77;
  }
  json_t *readouts = json_object_get(g, "readouts"), *abl = json_object_get(g, "ablations");
  double scale = 1.0;
  for (size_t k = 0; k < json_array_size(readouts); k++) {
    double cl =
        fabs(json_number_value(json_object_get(json_array_get(readouts, k), "clean_logit")));
    if (cl > scale)
      scale = cl;
  }
  char *prompts = json_dumps(json_object_get(g, "prompts"), JSON_COMPACT);
  printf("test_next: %s on %s (%s): %zu readouts, %zu ablations, bound %.3g\n", argv[2], path,
         b->ops->name, json_array_size(readouts), json_array_size(abl), BOUND * scale);

  for (size_t a = 0; a < json_array_size(abl); a++) {
    json_t *A = json_array_get(abl, a);
    const char *comp = json_string_value(json_object_get(A, "component")),
               *method = json_string_value(json_object_get(A, "method")),
               *positions = json_string_value(json_object_get(A, "positions"));
    /* the job a user would send: prompts as ids, target next */
    char spec_text[16384];
    json_t *pr = json_loads(prompts, 0, NULL), *list = json_array();
    for (size_t i = 0; i < json_array_size(pr); i++)
      json_array_append_new(list, json_pack("{s:O}", "ids", json_array_get(pr, i)));
    json_t *spec_json =
        json_pack("{s:o, s:s, s:{s:[s], s:[s], s:s}}", "prompts", list, "target", "next",
                  "ablations", "components", comp, "methods", method, "positions", positions);
    char *txt = json_dumps(spec_json, JSON_COMPACT);
    snprintf(spec_text, sizeof(spec_text), "%s", txt);
    free(txt);
    json_decref(spec_json);
    json_decref(pr);
    job_error_t je;
    job_spec_t *spec = job_parse(spec_text, strlen(spec_text), &je);
    plan_t plan;
    if (!spec || plan_build(spec, m, NULL, &plan, &je) != 0) {
      FAIL("%s %s %s: %s: %s", comp, method, positions, je.field, je.message);
      job_free(spec);
      continue;
    }
    const int n = plan.n_prompts;
    rows_t R = {.plan = &plan,
                .n = n,
                .clean = calloc(n, sizeof(double)),
                .total = calloc(n, sizeof(double)),
                .direct = calloc(n, sizeof(double)),
                .target = calloc(n, sizeof(int)),
                .seen = calloc(n, sizeof(int))};
    engine_sink_t sink = {.ctx = &R, .clean = on_clean, .variant = on_variant};
    if (engine_run(e, &plan.job, &sink, err) != 0) {
      FAIL("%s %s %s: engine: %s", comp, method, positions, err);
    } else {
      /* every golden readout is one engine prompt, in the same order */
      int compared = 0;
      for (size_t k = 0; k < json_array_size(readouts); k++) {
        json_t *r = json_array_get(readouts, k);
        const int p = (int)json_integer_value(json_object_get(r, "prompt")),
                  t = (int)json_integer_value(json_object_get(r, "position"));
        int ep = -1;
        for (int i = 0; i < n && ep < 0; i++)
          if (plan.prompt_of[i] == p && plan.position_of[i] == t)
            ep = i;
        char what[160];
        snprintf(what, sizeof(what), "%s %s %s prompt %d position %d", comp, method, positions, p,
                 t);
        if (ep < 0 || R.seen[ep] != 1) {
          FAIL("%s: no single row for the readout", what);
          continue;
        }
        CHECK(R.target[ep] == (int)json_integer_value(json_object_get(r, "target")),
              "%s: target %d", what, R.target[ep]);
        CHECK_CLOSE(what, R.clean[ep], json_number_value(json_object_get(r, "clean_logit")), BOUND,
                    scale);
        CHECK_CLOSE(what, R.total[ep],
                    json_number_value(json_array_get(json_object_get(r, "total_effect"), a)), BOUND,
                    scale);
        CHECK_CLOSE(what, R.direct[ep],
                    json_number_value(json_array_get(json_object_get(r, "direct_effect"), a)),
                    BOUND, scale);
        compared++;
      }
      printf("  %-8s %-10s %-4s: %d readouts compared (%d engine prompts)\n", comp, method,
             positions, compared, n);
      CHECK(compared == n, "%s %s %s: %d engine prompts, %d golden readouts", comp, method,
            positions, n, compared);
    }
    free(R.clean), free(R.total), free(R.direct), free(R.target), free(R.seen);
    plan_free(&plan);
    job_free(spec);
  }
  free(prompts);
  json_decref(g);
  engine_destroy(e);
  backend_destroy(b);
  model_free(m);
  return check_exit("test_next");
}
