/* plan_internal.h - what the plan's files share; nothing outside plan/
 * includes it:
 *   plan.c        prompts, positions, targets, units, methods: the plan
 *   plan_pairs.c  paired prompts: counterfactuals as sources or runs
 *   plan_spans.c  a grid over named spans */
#ifndef HYDRA_PLAN_INTERNAL_H
#define HYDRA_PLAN_INTERNAL_H

#include "plan.h"

/* Fills err (field and message); returns -1. */
int plan_fail(job_error_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Marks err as a size limit passed (HTTP 413); returns -1. */
int plan_too_large(job_error_t *err);
/* The tokens a prompt may have: the model's context, and max_prompt_tokens
 * (413) when that is smaller (*is_limit then 1). */
int plan_token_cap(const model_t *m, const plan_limits_t *lim, int *is_limit);

/* Paired prompts (plan_pairs.c): with a patch from counterfactuals or
 * "patching": "denoising", tokenizes the counterfactuals and appends the
 * source-only prompts after the plan's prompts (their positions the paired
 * prompt's), sets each prompt's pair, and for denoising swaps each prompt's
 * tokens for its counterfactual's. Called once the positions and targets
 * are resolved. */
int plan_pairs(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok,
               const plan_limits_t *lim, plan_t *p, job_error_t *err);

/* A grid over spans (plan_spans.c): prompt i's subject and named spans
 * found in its tokens (enc), sorted, refused when they overlap (naming the
 * field), every token of each appended to position_list at *n (advanced);
 * each span one cell (plan_t.cell_*), its key the span name's index in
 * plan_t.span_names (appended when new, in token order). Called for the
 * prompts in order. */
int plan_prompt_spans(const job_spec_t *spec, plan_t *p, int i, const tokenizer_encoding_t *enc,
                      int *n, job_error_t *err);

#endif
