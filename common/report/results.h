/* results.h - the result rows of a job, as JSON objects.
 *
 * Rows, in order: one "header" (model, components, methods, slots,
 * precision, and from the job: seed, positions rule, target rule, prompt
 * texts), one "clean" row per prompt (its text, target, centred logit,
 * direct effects of every slot), one "variant" row per prompt x component x method
 * (total effect, direct effect, compensation split attention/MLP, the norm's
 * share, metrics, and the per-slot change of direct effects: the effect-table
 * row), then one "summary" row per component x method over the prompts
 * (mean and 95% interval of direct effect, total effect and compensation,
 * the interval's half-width Student's t with n - 1 degrees of freedom times
 * sd / sqrt(n); the mean effect-table row, and the slope and R^2 of
 * compensation against direct effect: the paper's Fig. 7d, null with an
 * "undefined" reason where effects_fit says the fit means nothing), and an
 * "end" row.
 *
 * JSON has no NaN: a non-finite value is written as null and its field is
 * listed in the row's "nonfinite" array (absent when there is none); metrics
 * the job asked for are always present. Summary rows count such rows per
 * component x method ("nonfinite": N) and leave the means they touch null;
 * the end row counts them for the job.
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
  /* The job as parsed, for the header's seed, positions and target rules
   * and prompt texts and the clean rows' texts; must outlive the results.
   * NULL: those are left out. */
  const job_spec_t *spec;
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

/* Adds a stored row (as the sink wrote it) to the summary: a variant row to
 * its sums, any row with a non-finite value to the count. The daemon rebuilds
 * a job's summary from its stored rows (a restart mid-job loses nothing) and
 * the sink sums each row through here too, so both summarise the same rows
 * alike. A null where a number belongs is non-finite: the sums it enters
 * are NaN and their means null, never 0. Other rows are ignored. */
int results_add_row(results_t *r, const json_t *row);

/* Drops the summary sums and the count (before re-adding every stored row). */
void results_reset_summary(results_t *r);

/* Rows added or emitted so far that hold a non-finite value (null in JSON,
 * named in the row's "nonfinite" list). */
long results_nonfinite(const results_t *r);

/* Rows emitted so far. */
long results_rows(const results_t *r);

/* Sets the count the end row reports (rows of the job stored before it). */
void results_set_rows(results_t *r, long rows);

#endif
