/* plan_pairs.c - paired prompts: each prompt's counterfactual (its
 * corrupted version) tokenized and placed where the engine reads it. In
 * noising (the default) the prompts run as written and a patch from
 * "counterfactual" reads each prompt's counterfactual: another prompt of the
 * job, or a source-only prompt appended after the job's. In denoising each
 * prompt's counterfactual runs in its place and the prompt's own clean text,
 * appended as a source-only prompt, is the source. With a "trace", each
 * prompt's clean copy is its source (restore). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_internal.h"

typedef struct {
  int *ids; /* owned when own */
  int len, own;
} tokens_t;

/* Prompt i's counterfactual tokens. */
static int cf_tokens(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok,
                     const plan_limits_t *lim, const plan_t *p, const long *row, int i, tokens_t *t,
                     job_error_t *err) {
  const job_prompt_t *pr = &spec->prompts[i];
  char field[96];
  snprintf(field, sizeof(field), "prompts[%d].counterfactual", i);
  if (pr->cf_prompt >= 0) {
    t->ids = p->ids + row[pr->cf_prompt];
    t->len = p->lengths[pr->cf_prompt];
    return 0;
  }
  int is_limit = 0;
  const int max_tokens = plan_token_cap(m, lim, &is_limit);
  if (pr->cf_text) {
    if (!tok)
      return plan_fail(err, field, "the model has no tokenizer: give the counterfactual as ids");
    tokenizer_encoding_t enc = {0};
    char msg[HYDRA_ERR_LEN];
    const int rc = tokenizer_encode_max(tok, pr->cf_text, strlen(pr->cf_text),
                                        TOKENIZER_ADD_SPECIAL, (size_t)max_tokens, &enc, msg);
    if (rc == TOKENIZER_TOO_MANY) {
      tokenizer_encoding_free(&enc);
      plan_fail(err, field, "more than %d tokens", max_tokens);
      return is_limit ? plan_too_large(err) : -1;
    }
    if (rc != 0) {
      tokenizer_encoding_free(&enc);
      return plan_fail(err, field, "%s", msg);
    }
    t->len = (int)enc.n;
    t->ids = malloc(sizeof(int) * (t->len ? t->len : 1));
    if (t->ids)
      memcpy(t->ids, enc.ids, sizeof(int) * t->len);
    tokenizer_encoding_free(&enc);
    if (!t->ids)
      return plan_fail(err, "", "out of memory");
    t->own = 1;
  } else {
    t->ids = pr->cf_ids;
    t->len = pr->cf_n_ids;
    if (t->len > max_tokens) {
      plan_fail(err, field, "%d tokens: more than %d", t->len, max_tokens);
      return is_limit ? plan_too_large(err) : -1;
    }
    for (int k = 0; k < t->len; k++)
      if (t->ids[k] < 0 || t->ids[k] >= m->cfg.vocab_size) {
        snprintf(field, sizeof(field), "prompts[%d].counterfactual.ids[%d]", i, k);
        return plan_fail(err, field, "token id %d is outside the vocabulary of %d", t->ids[k],
                         m->cfg.vocab_size);
      }
  }
  if (t->len < 1)
    return plan_fail(err, field, "the counterfactual has no tokens");
  return 0;
}

int plan_pairs(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok,
               const plan_limits_t *lim, plan_t *p, job_error_t *err) {
  int use = spec->denoising || spec->trace;
  for (int k = 0; k < spec->n_methods; k++)
    use |= spec->methods[k].kind == METHOD_PATCH &&
           spec->methods[k].source == METHOD_SOURCE_COUNTERFACTUAL;
  if (!use)
    return 0;
  const int P = p->n_prompts;
  if (P != spec->n_prompts) /* "target": "next" is refused with pairs before this */
    return plan_fail(err, "target", "paired prompts need one readout per prompt");
  tokens_t *cf = calloc((size_t)P, sizeof(*cf));
  long *row = malloc(sizeof(long) * (P + 1));
  int *pair = malloc(sizeof(int) * P), *src_of = malloc(sizeof(int) * P);
  int rc = -1;
  int *ids = NULL, *lengths = NULL, *offsets = NULL, *list = NULL;
  if (!cf || !row || !pair || !src_of) {
    plan_fail(err, "", "out of memory");
    goto done;
  }
  row[0] = 0;
  for (int i = 0; i < P; i++)
    row[i + 1] = row[i] + p->lengths[i];
  /* each prompt's counterfactual; the source-only prompts and their sizes */
  int n_src = 0;
  long n_ids = row[P], n_pos = p->position_offsets[P];
  for (int i = 0; i < P; i++) {
    if (spec->trace) { /* the source: the same tokens, run clean */
      cf[i].ids = p->ids + row[i];
      cf[i].len = p->lengths[i];
    } else if (cf_tokens(spec, m, tok, lim, p, row, i, &cf[i], err) != 0)
      goto done;
    if (cf[i].len != p->lengths[i] && spec->positions != POSITIONS_LAST) {
      char field[64];
      snprintf(field, sizeof(field), "prompts[%d].counterfactual", i);
      plan_fail(err, field,
                "%d tokens, the prompt %d: with \"positions\" other than \"last\" a prompt and "
                "its counterfactual need the same number of tokens (positions pair one to one)",
                cf[i].len, p->lengths[i]);
      goto done;
    }
    const int extra = spec->denoising || spec->trace || spec->prompts[i].cf_prompt < 0;
    const int np = p->position_offsets[i + 1] - p->position_offsets[i];
    if (extra) {
      src_of[n_src] = i;
      pair[i] = P + n_src++;
      n_ids += spec->denoising ? p->lengths[i] : cf[i].len;
      n_pos += np;
    } else
      pair[i] = spec->prompts[i].cf_prompt;
    if (spec->denoising)
      n_ids += cf[i].len - p->lengths[i];
  }
  if (lim && lim->max_bytes > 0 &&
      (double)sizeof(int) * (n_ids + n_pos + 2.0 * (P + n_src)) > (double)lim->max_bytes) {
    plan_fail(err, "prompts",
              "the prompts and their counterfactuals would take %.0f MiB: more "
              "than the server's %.0f MiB per job",
              (double)sizeof(int) * (n_ids + n_pos) / 1048576, (double)lim->max_bytes / 1048576);
    plan_too_large(err);
    goto done;
  }
  ids = malloc(sizeof(int) * (n_ids ? n_ids : 1));
  lengths = malloc(sizeof(int) * (P + n_src));
  offsets = malloc(sizeof(int) * (P + n_src + 1));
  list = malloc(sizeof(int) * (n_pos ? n_pos : 1));
  if (!ids || !lengths || !offsets || !list) {
    plan_fail(err, "", "out of memory");
    goto done;
  }
  /* the runs: each prompt, or in denoising its counterfactual; then the
   * sources. Positions: the prompt's; with "last" a counterfactual of
   * another length has its own last. */
  long at = 0, pos = 0;
  for (int q = 0; q < P + n_src; q++) {
    const int i = q < P ? q : -1, src = q < P ? -1 : src_of[q - P]; /* a source's pair */
    const int base = i >= 0 ? i : src; /* the job prompt whose positions it takes */
    const int *from;
    int len;
    if (i >= 0) {
      from = spec->denoising ? cf[i].ids : p->ids + row[i];
      len = spec->denoising ? cf[i].len : p->lengths[i];
    } else {
      from = spec->denoising ? p->ids + row[src] : cf[src].ids;
      len = spec->denoising ? p->lengths[src] : cf[src].len;
    }
    memcpy(ids + at, from, sizeof(int) * len);
    lengths[q] = len;
    offsets[q] = (int)pos;
    if (len != p->lengths[base]) /* "last" (checked above) */
      list[pos++] = len - 1;
    else
      for (int k = p->position_offsets[base]; k < p->position_offsets[base + 1]; k++)
        list[pos++] = p->position_list[k];
    at += len;
  }
  offsets[P + n_src] = (int)pos;
  free(p->ids), free(p->lengths), free(p->position_offsets), free(p->position_list);
  p->ids = ids, p->lengths = lengths, p->position_offsets = offsets, p->position_list = list;
  ids = lengths = offsets = list = NULL;
  p->pair = pair;
  pair = NULL;
  p->n_sources = n_src;
  rc = 0;
done:
  for (int i = 0; cf && i < P; i++)
    if (cf[i].own)
      free(cf[i].ids);
  free(cf);
  free(row);
  free(pair);
  free(src_of);
  free(ids), free(lengths), free(offsets), free(list);
  return rc;
}
