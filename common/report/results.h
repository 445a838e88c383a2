/* results.h - the result rows of a job, as JSON objects.
 *
 * Rows, in order: one "header" (model, components, methods, slots,
 * precision), one "clean" row per prompt (target, centred logit, direct
 * effects of every slot), one "variant" row per prompt x component x method
 * (total effect, direct effect, compensation split attention/MLP, the norm's
 * share, metrics, and the per-slot change of direct effects: the effect-table
 * row), then one "summary" row per component x method over the prompts
 * (mean and 95% interval of direct effect, total effect and compensation, the
 * mean effect-table row, and the slope and R^2 of compensation against direct
 * effect: the paper's Fig. 7d), and an "end" row.
 *
 * The emitter receives each row (borrowed: serialize or json_incref it) and
 * returns non-zero to stop the job. Not thread-safe; one job per results_t. */
#ifndef HYDRA_RESULTS_H
#define HYDRA_RESULTS_H

#include <jansson.h>

#include "engine.h"
#include "plan.h"
#include "tokenizer.h"

typedef struct results results_t;
typedef int (*results_emit_fn)(void *ctx, json_t *row);

typedef struct {
  const char *model_name; /* as the job or the command line names it */
  const char *backend;    /* "cpu", "cuda" */
  const char *precision;  /* "fp32", "tf32" */
  int norm_scale_ablated;
} results_info_t;

results_t *results_create(const plan_t *plan, const model_t *m, const tokenizer_t *tok,
                          const results_info_t *info, results_emit_fn emit, void *ctx, char *err);
void results_free(results_t *r);

/* Emits the header row. */
int results_header(results_t *r);

/* A sink that turns engine rows into clean and variant rows and keeps the
 * sums the summary needs. Valid while r lives. */
engine_sink_t results_sink(results_t *r);

/* Emits the summary rows and the end row. */
int results_finish(results_t *r, double elapsed_s);

/* Adds a stored variant row (as on_variant wrote it) to the summary sums:
 * the daemon rebuilds a job's summary from its stored rows, so a restart
 * mid-job loses nothing. Rows of other types are ignored. */
int results_add_variant_row(results_t *r, const json_t *row);

/* Drops the summary sums (before re-adding every stored row). */
void results_reset_summary(results_t *r);

/* Rows emitted so far. */
long results_rows(const results_t *r);

/* Sets the count the end row reports (rows of the job stored before it). */
void results_set_rows(results_t *r, long rows);

#endif
