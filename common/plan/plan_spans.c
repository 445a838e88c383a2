/* plan_spans.c - a grid over named spans ({"each": "spans"}): each prompt's
 * subject and "spans" found in its tokens, every token of each, as the cells
 * of the engine's grid (one variant per span), keyed by the span's name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_internal.h"

typedef struct {
  int first, last, key;
  int subject; /* the prompt's subject, as span "subject" */
  const char *name, *text;
} span_t;

/* The index of a span name in the plan's list, appended when new; -1 when
 * out of memory. (A linear search: a prompt has at most JOB_MAX_SPANS.) */
static int span_key(plan_t *p, const char *name) {
  for (int k = 0; k < p->n_spans; k++)
    if (strcmp(p->span_names[k], name) == 0)
      return k;
  char **names = realloc(p->span_names, sizeof(char *) * (p->n_spans + 1));
  if (!names)
    return -1;
  p->span_names = names;
  if (!(names[p->n_spans] = strdup(name)))
    return -1;
  return p->n_spans++;
}

static int by_first(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  return (x->first > y->first) - (x->first < y->first);
}

/* Grows the cell arrays for `more` cells of prompt i (cell_offsets has
 * n_prompts + 1 entries, made on the first call). */
static int grow_cells(plan_t *p, int i, int more) {
  if (!p->cell_offsets && !(p->cell_offsets = calloc((size_t)p->n_prompts + 1, sizeof(int))))
    return -1;
  const int n = p->cell_offsets[i] + more;
  int *start = realloc(p->cell_start, sizeof(int) * (n + 1));
  if (start)
    p->cell_start = start;
  int *key = realloc(p->cell_key, sizeof(int) * (n + 1));
  if (key)
    p->cell_key = key;
  return start && key ? 0 : -1;
}

int plan_prompt_spans(const job_spec_t *spec, plan_t *p, int i, const tokenizer_encoding_t *enc,
                      int *n, job_error_t *err) {
  const job_prompt_t *pr = &spec->prompts[i];
  char field[JOB_FIELD_LEN + 80], msg[HYDRA_ERR_LEN];
  span_t spans[JOB_MAX_SPANS + 1];
  int ns = 0, has_subject_span = 0;
  for (int k = 0; k < pr->n_spans; k++)
    has_subject_span |= strcmp(pr->span_names[k], "subject") == 0;
  if (pr->subject && !has_subject_span)
    spans[ns++] = (span_t){.name = "subject", .text = pr->subject, .subject = 1};
  for (int k = 0; k < pr->n_spans; k++)
    spans[ns++] = (span_t){.name = pr->span_names[k], .text = pr->span_texts[k]};
  for (int s = 0; s < ns; s++) {
    if (spans[s].subject)
      snprintf(field, sizeof(field), "prompts[%d].subject", i);
    else
      snprintf(field, sizeof(field), "prompts[%d].spans.%s", i, spans[s].name);
    size_t first, last;
    const char *sub = spans[s].text;
    if (tokenizer_find_substring(enc, pr->text, strlen(pr->text), sub, strlen(sub), &first, &last,
                                 msg) != 0)
      return plan_fail(err, field, "prompt %d: %s", i, msg);
    spans[s].first = (int)first;
    spans[s].last = (int)last;
  }
  qsort(spans, ns, sizeof(span_t), by_first);
  for (int s = 0; s < ns; s++) /* names in order of first appearance, in token order */
    if ((spans[s].key = span_key(p, spans[s].name)) < 0)
      return plan_fail(err, "", "out of memory");
  for (int s = 1; s < ns; s++)
    if (spans[s].first <= spans[s - 1].last) {
      snprintf(field, sizeof(field), "prompts[%d].spans", i);
      return plan_fail(err, field,
                       "spans \"%s\" (tokens %d-%d) and \"%s\" (tokens %d-%d) overlap: a grid "
                       "cell is one span's tokens",
                       spans[s - 1].name, spans[s - 1].first, spans[s - 1].last, spans[s].name,
                       spans[s].first, spans[s].last);
    }
  if (grow_cells(p, i, ns) != 0)
    return plan_fail(err, "", "out of memory");
  int c = p->cell_offsets[i];
  for (int s = 0; s < ns; s++, c++) {
    p->cell_start[c] = *n;
    p->cell_key[c] = spans[s].key;
    for (int t = spans[s].first; t <= spans[s].last; t++)
      p->position_list[(*n)++] = t;
  }
  p->cell_offsets[i + 1] = c;
  p->cell_start[c] = *n; /* the end of the prompt's last cell (the next prompt's first) */
  return 0;
}
