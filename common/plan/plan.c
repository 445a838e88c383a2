#include "plan.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "plan_internal.h"

int plan_fail(job_error_t *err, const char *field, const char *fmt, ...) {
  if (err) {
    snprintf(err->field, sizeof(err->field), "%s", field);
    err->too_large = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* A target given as text must be exactly one token. */
static int resolve_token(const job_token_t *t, const model_t *m, const tokenizer_t *tok,
                         const char *field, int *id, job_error_t *err) {
  if (t->id >= 0) {
    if (t->id >= m->cfg.vocab_size)
      return plan_fail(err, field, "token id %d is outside the vocabulary of %d", t->id,
                       m->cfg.vocab_size);
    *id = t->id;
    return 0;
  }
  if (!t->text)
    return plan_fail(err, field, "no token given");
  if (!tok)
    return plan_fail(err, field, "the model has no tokenizer: give the token as an id");
  char msg[HYDRA_ERR_LEN];
  tokenizer_encoding_t enc = {0};
  if (tokenizer_encode(tok, t->text, strlen(t->text), 0, &enc, msg) != 0)
    return plan_fail(err, field, "%s", msg);
  if (enc.n != 1) {
    size_t n = enc.n;
    tokenizer_encoding_free(&enc);
    return plan_fail(err, field, "\"%.64s\" is %zu tokens, not one", t->text, n);
  }
  *id = enc.ids[0];
  tokenizer_encoding_free(&enc);
  if (*id >= m->cfg.vocab_size)
    return plan_fail(err, field, "token id %d is outside the model's vocabulary of %d", *id,
                     m->cfg.vocab_size);
  return 0;
}

static int method_label(const method_t *m, char *buf, size_t len) {
  switch (m->kind) {
  case METHOD_RESAMPLE:
    return snprintf(buf, len, "resample");
  case METHOD_ZERO:
    return snprintf(buf, len, "zero");
  case METHOD_MEAN:
    return snprintf(buf, len, "mean");
  case METHOD_SCALE:
    return snprintf(buf, len, "scale:%g", (double)m->value);
  case METHOD_NOISE:
    return snprintf(buf, len, "noise:%g", (double)m->value);
  case METHOD_PATCH:
    if (m->source == METHOD_SOURCE_COUNTERFACTUAL)
      return snprintf(buf, len, "patch:counterfactual");
    if (m->source == METHOD_SOURCE_CLEAN)
      return snprintf(buf, len, "restore");
    return snprintf(buf, len, "patch:%d", m->source);
  }
  return snprintf(buf, len, "?");
}

int plan_too_large(job_error_t *err) {
  err->too_large = 1;
  return -1;
}

int plan_token_cap(const model_t *m, const plan_limits_t *lim, int *is_limit) {
  const int limit = lim && lim->max_prompt_tokens > 0 ? lim->max_prompt_tokens : 0;
  *is_limit = limit > 0 && limit < m->cfg.max_positions;
  return *is_limit ? limit : m->cfg.max_positions;
}

/* Tokens of every prompt, concatenated; encodings kept for substrings. */
static int tokenize_prompts(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok,
                            const plan_limits_t *lim, plan_t *p, tokenizer_encoding_t *enc,
                            job_error_t *err) {
  size_t cap = 0, n = 0;
  char field[64];
  int is_limit = 0;
  const int max_tokens = plan_token_cap(m, lim, &is_limit);
  for (int i = 0; i < spec->n_prompts; i++) {
    const job_prompt_t *pr = &spec->prompts[i];
    const int *ids = pr->ids;
    int len = pr->n_ids;
    if (pr->text) {
      snprintf(field, sizeof(field), "prompts[%d].text", i);
      if (!tok)
        return plan_fail(err, field, "the model has no tokenizer: give the prompt as ids");
      char msg[HYDRA_ERR_LEN];
      const int rc = tokenizer_encode_max(tok, pr->text, strlen(pr->text), TOKENIZER_ADD_SPECIAL,
                                          (size_t)max_tokens, &enc[i], msg);
      len = rc == TOKENIZER_TOO_MANY ? max_tokens + 1 : (int)enc[i].n;
      if (rc != 0 && rc != TOKENIZER_TOO_MANY)
        return plan_fail(err, field, "%s", msg);
    } else
      snprintf(field, sizeof(field), "prompts[%d].ids", i);
    if (len < 1)
      return plan_fail(err, field, "the prompt has no tokens");
    if (is_limit && len > max_tokens) {
      snprintf(field, sizeof(field), "prompts[%d]", i);
      plan_fail(err, field, "more than %d tokens", max_tokens);
      return plan_too_large(err);
    }
    if (len > m->cfg.max_positions)
      return plan_fail(err, field, "%s%d tokens: more than the model's context of %d",
                       pr->text ? "over " : "", pr->text ? len - 1 : len, m->cfg.max_positions);
    if (buffer_grow((void **)&p->ids, &cap, n + len, sizeof(int)))
      return plan_fail(err, "", "out of memory");
    for (int t = 0; t < len; t++) {
      const int id = pr->text ? enc[i].ids[t] : ids[t];
      if (id < 0 || id >= m->cfg.vocab_size) {
        snprintf(field, sizeof(field), "prompts[%d].ids[%d]", i, t);
        return plan_fail(err, field, "token id %d is outside the vocabulary of %d", id,
                         m->cfg.vocab_size);
      }
      p->ids[n + t] = id;
    }
    p->lengths[i] = len;
    n += len;
  }
  return 0;
}

static int resolve_positions(const job_spec_t *spec, plan_t *p, tokenizer_encoding_t *enc,
                             job_error_t *err) {
  size_t cap = 0, n = 0;
  char field[64];
  for (int i = 0; i < spec->n_prompts; i++) {
    const int len = p->lengths[i];
    p->position_offsets[i] = (int)n;
    if (buffer_grow((void **)&p->position_list, &cap, n + len, sizeof(int)))
      return plan_fail(err, "", "out of memory");
    switch (spec->positions) {
    case POSITIONS_LAST:
      p->position_list[n++] = len - 1;
      break;
    case POSITIONS_ALL:
      for (int t = 0; t < len; t++)
        p->position_list[n++] = t;
      break;
    case POSITIONS_LIST: {
      char *seen = calloc(len, 1);
      if (!seen)
        return plan_fail(err, "", "out of memory");
      for (int k = 0; k < spec->n_positions; k++) {
        int t = spec->position_list[k];
        if (t < 0)
          t += len;
        if (t < 0 || t >= len) {
          free(seen);
          snprintf(field, sizeof(field), "ablations.positions[%d]", k);
          return plan_fail(err, field, "position %d is outside prompt %d of %d tokens",
                           spec->position_list[k], i, len);
        }
        seen[t] = 1;
      }
      for (int t = 0; t < len; t++)
        if (seen[t])
          p->position_list[n++] = t;
      free(seen);
      break;
    }
    case POSITIONS_SUBSTRING: {
      const job_prompt_t *pr = &spec->prompts[i];
      const char *sub = spec->position_substring ? spec->position_substring : pr->subject;
      snprintf(field, sizeof(field), "%s",
               spec->position_substring ? "ablations.positions.substring" : "");
      if (!spec->position_substring)
        snprintf(field, sizeof(field), "prompts[%d].subject", i);
      if (!pr->text || !sub)
        return plan_fail(err, field, "naming positions by a substring needs the prompt as text");
      size_t first, last;
      char msg[HYDRA_ERR_LEN];
      if (tokenizer_find_substring(&enc[i], pr->text, strlen(pr->text), sub, strlen(sub), &first,
                                   &last, msg) != 0)
        return plan_fail(err, field, "prompt %d: %s", i, msg);
      p->position_list[n++] = (int)last; /* the subject's last token, as in causal tracing */
      break;
    }
    case POSITIONS_SPANS: {
      int at = (int)n;
      if (plan_prompt_spans(spec, p, i, &enc[i], &at, err) != 0)
        return -1;
      n = (size_t)at;
      break;
    }
    }
  }
  p->position_offsets[spec->n_prompts] = (int)n;
  return 0;
}

static int resolve_targets(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok,
                           plan_t *p, job_error_t *err) {
  char field[64];
  int job_target = -1, job_foil = -1;
  if (spec->target == TARGET_NEXT)
    return 0; /* set by expand_next */
  if ((spec->target == TARGET_TOKEN || spec->target == TARGET_FOIL) &&
      (spec->target_token.text || spec->target_token.id >= 0))
    if (resolve_token(&spec->target_token, m, tok, "target", &job_target, err))
      return -1;
  if (spec->target == TARGET_FOIL) {
    if ((spec->foil_token.text || spec->foil_token.id >= 0) &&
        resolve_token(&spec->foil_token, m, tok, "target.foil", &job_foil, err))
      return -1;
    p->foils = malloc(sizeof(int) * spec->n_prompts);
    if (!p->foils)
      return plan_fail(err, "", "out of memory");
  }
  for (int i = 0; i < spec->n_prompts; i++) {
    const job_token_t *t = &spec->prompts[i].target;
    p->targets[i] = job_target;
    if (t->text || t->id >= 0) {
      snprintf(field, sizeof(field), "prompts[%d].target", i);
      if (resolve_token(t, m, tok, field, &p->targets[i], err))
        return -1;
    }
    if (p->foils)
      p->foils[i] = job_foil;
    const job_token_t *f = &spec->prompts[i].foil;
    if (p->foils && (f->text || f->id >= 0)) {
      snprintf(field, sizeof(field), "prompts[%d].foil", i);
      if (resolve_token(f, m, tok, field, &p->foils[i], err))
        return -1;
    }
    if (p->foils && p->foils[i] == p->targets[i]) {
      snprintf(field, sizeof(field), "prompts[%d].foil", i);
      return plan_fail(err, field, "token %d is also the prompt's target", p->foils[i]);
    }
  }
  return 0;
}

/* "target": "next": every job prompt becomes its readouts (see plan.h).
 * A readout keeps the prompt's intervened positions up to its own position
 * ("last" is the readout's own position); a readout none of whose positions
 * is intervened is left out (every effect there would be exactly zero). */
static int expand_next(const job_spec_t *spec, plan_t *p, job_error_t *err) {
  const int P = p->n_prompts;
  long n_read = 0, n_ids = 0, n_pos = 0;
  for (int i = 0; i < P; i++)
    for (int t = 0; t + 1 < p->lengths[i]; t++) {
      n_read++;
      n_ids += t + 1;
      n_pos += spec->positions == POSITIONS_LAST
                   ? 1
                   : p->position_offsets[i + 1] - p->position_offsets[i];
    }
  if (n_read == 0)
    return plan_fail(err, "target", "\"next\" needs a prompt of at least 2 tokens");
  if (n_read > (1L << 24) || n_ids > (1L << 30))
    return plan_fail(err, "target", "\"next\" over these prompts makes %ld readouts: too many",
                     n_read);
  int *lengths = malloc(sizeof(int) * n_read), *ids = malloc(sizeof(int) * n_ids),
      *targets = malloc(sizeof(int) * n_read), *offsets = malloc(sizeof(int) * (n_read + 1)),
      *list = malloc(sizeof(int) * (n_pos ? n_pos : 1)), *prompt_of = malloc(sizeof(int) * n_read),
      *position_of = malloc(sizeof(int) * n_read);
  if (!lengths || !ids || !targets || !offsets || !list || !prompt_of || !position_of) {
    free(lengths), free(ids), free(targets), free(offsets), free(list), free(prompt_of),
        free(position_of);
    return plan_fail(err, "", "out of memory");
  }
  long r = 0, at = 0, np = 0, start = 0;
  for (int i = 0; i < P; i++) {
    const int *pid = p->ids + start;
    for (int t = 0; t + 1 < p->lengths[i]; t++) {
      const long first_pos = np;
      if (spec->positions == POSITIONS_LAST)
        list[np++] = t;
      else
        for (int k = p->position_offsets[i]; k < p->position_offsets[i + 1]; k++)
          if (p->position_list[k] <= t)
            list[np++] = p->position_list[k];
      if (np == first_pos)
        continue; /* nothing intervened up to t */
      offsets[r] = (int)first_pos;
      lengths[r] = t + 1;
      targets[r] = pid[t + 1];
      prompt_of[r] = i;
      position_of[r] = t;
      memcpy(ids + at, pid, sizeof(int) * (t + 1));
      at += t + 1;
      r++;
    }
    start += p->lengths[i];
  }
  if (r == 0) {
    free(lengths), free(ids), free(targets), free(offsets), free(list), free(prompt_of),
        free(position_of);
    return plan_fail(
        err, "ablations.positions",
        "with \"target\": \"next\" no readout has an intervened position at or before it");
  }
  offsets[r] = (int)np;
  free(p->lengths), free(p->ids), free(p->targets), free(p->position_offsets),
      free(p->position_list);
  p->lengths = lengths;
  p->ids = ids;
  p->targets = targets;
  p->position_offsets = offsets;
  p->position_list = list;
  p->prompt_of = prompt_of;
  p->position_of = position_of;
  p->n_prompts = (int)r;
  return 0;
}

/* The units: the components expanded (one unit each), then each group
 * (one unit of its components). */
static int expand_units(const job_spec_t *spec, const model_config_t *cfg, plan_t *p,
                        job_error_t *err) {
  int n = 0;
  if (job_expand_components(spec, cfg, &p->atoms, &n, err))
    return -1;
  const long units = (long)n + spec->n_groups;
  if (units > JOB_MAX_VARIANTS)
    return plan_fail(err, "ablations.groups", "%ld components and groups: more than %d", units,
                     JOB_MAX_VARIANTS);
  p->n_atoms = n;
  p->n_components = (int)units;
  p->n_groups = spec->n_groups;
  if (!(p->unit_first = malloc(sizeof(int) * (units + 1))))
    return plan_fail(err, "", "out of memory");
  for (int u = 0; u <= n; u++)
    p->unit_first[u] = u;
  for (int g = 0; g < spec->n_groups; g++) {
    component_t *atoms = NULL;
    int k = 0;
    if (job_expand_group(spec, g, cfg, &atoms, &k, err))
      return -1;
    if ((long)p->n_atoms + k > JOB_MAX_VARIANTS) {
      free(atoms);
      return plan_fail(err, "ablations.groups", "the groups take more than %d components in all",
                       JOB_MAX_VARIANTS);
    }
    component_t *all = realloc(p->atoms, sizeof(component_t) * (size_t)(p->n_atoms + k));
    if (!all) {
      free(atoms);
      return plan_fail(err, "", "out of memory");
    }
    memcpy(all + p->n_atoms, atoms, sizeof(component_t) * (size_t)k);
    free(atoms);
    p->atoms = all;
    p->n_atoms += k;
    p->unit_first[n + g + 1] = p->n_atoms;
  }
  return 0;
}

/* Causal tracing: the noise's standard deviation (an absolute one, or a
 * multiple of the token embedding table's standard deviation over all its
 * entries) and every prompt's subject tokens, the positions it corrupts. */
static int trace_positions(const job_spec_t *spec, const model_t *m, plan_t *p,
                           tokenizer_encoding_t *enc, job_error_t *err) {
  if (!spec->trace)
    return 0;
  double std = spec->trace_std;
  if (std < 0) {
    const int d = m->cfg.d_model;
    const size_t n = (size_t)m->cfg.vocab_size * d;
    double sum = 0, sum2 = 0;
    float *buf = malloc(sizeof(float) * (size_t)d);
    if (!buf)
      return plan_fail(err, "", "out of memory");
    for (int t = 0; t < m->cfg.vocab_size; t++) { /* row by row: a native model's are in blocks */
      const float *row = model_embed_row(m, t, buf);
      for (int i = 0; i < d; i++) {
        sum += row[i];
        sum2 += (double)row[i] * row[i];
      }
    }
    free(buf);
    const double mean = sum / (double)n, es = m->cfg.embed_scale > 0 ? m->cfg.embed_scale : 1.0;
    /* the embeddings as the model feeds them (Gemma scales them by sqrt(d)) */
    std = spec->trace_scale * es * sqrt(fmax(sum2 / (double)n - mean * mean, 0.0));
  }
  p->trace_std = (float)std;
  const int P = spec->n_prompts;
  long total = 0;
  p->trace_offsets = malloc(sizeof(int) * (P + 1));
  if (!p->trace_offsets)
    return plan_fail(err, "", "out of memory");
  size_t *first = malloc(sizeof(size_t) * 2 * (P ? P : 1));
  if (!first)
    return plan_fail(err, "", "out of memory");
  for (int i = 0; i < P; i++) {
    const job_prompt_t *pr = &spec->prompts[i];
    char field[64], msg[HYDRA_ERR_LEN];
    snprintf(field, sizeof(field), "prompts[%d].subject", i);
    if (!pr->text || !pr->subject) {
      free(first);
      return plan_fail(err, field, "\"trace\" needs each prompt as text with its subject");
    }
    if (tokenizer_find_substring(&enc[i], pr->text, strlen(pr->text), pr->subject,
                                 strlen(pr->subject), &first[2 * i], &first[2 * i + 1], msg) != 0) {
      free(first);
      return plan_fail(err, field, "%s", msg);
    }
    p->trace_offsets[i] = (int)total;
    total += (long)(first[2 * i + 1] - first[2 * i] + 1);
  }
  p->trace_offsets[P] = (int)total;
  p->trace_list = malloc(sizeof(int) * (total ? total : 1));
  if (!p->trace_list) {
    free(first);
    return plan_fail(err, "", "out of memory");
  }
  for (int i = 0; i < P; i++)
    for (size_t t = first[2 * i]; t <= first[2 * i + 1]; t++)
      p->trace_list[p->trace_offsets[i] + (t - first[2 * i])] = (int)t;
  free(first);
  return 0;
}

/* A per-position grid's positions: every position some prompt intervenes
 * at, increasing (the summary has a row per unit x method x position); the
 * summary's effect tables within GRID_SUMMARY_FLOATS. */
#define GRID_SUMMARY_FLOATS (1L << 24)
static int grid_positions(const job_spec_t *spec, const model_t *m, plan_t *p, job_error_t *err) {
  if (!spec->positions_each)
    return 0;
  if (spec->positions == POSITIONS_SPANS) { /* the grid's keys: the span names' indices */
    const double floats =
        (double)p->n_spans * p->n_components * spec->n_methods * engine_n_slots(&m->cfg);
    if (floats > (double)GRID_SUMMARY_FLOATS) {
      plan_fail(err, "ablations.positions.each",
                "a grid of %d spans x %d components x %d methods: its summary would hold %.0f M "
                "effect-table entries, more than %ld M",
                p->n_spans, p->n_components, spec->n_methods, floats / 1e6,
                GRID_SUMMARY_FLOATS >> 20);
      return plan_too_large(err);
    }
    if (!(p->grid = malloc(sizeof(int) * (p->n_spans ? p->n_spans : 1))))
      return plan_fail(err, "", "out of memory");
    for (p->n_grid = 0; p->n_grid < p->n_spans; p->n_grid++)
      p->grid[p->n_grid] = p->n_grid;
    return 0;
  }
  int max = 0;
  for (long k = 0; k < p->position_offsets[p->n_prompts]; k++)
    if (p->position_list[k] + 1 > max)
      max = p->position_list[k] + 1;
  unsigned char *seen = calloc((size_t)max + 1, 1);
  if (!seen)
    return plan_fail(err, "", "out of memory");
  for (long k = 0; k < p->position_offsets[p->n_prompts]; k++)
    seen[p->position_list[k]] = 1;
  int n = 0;
  for (int t = 0; t < max; t++)
    n += seen[t];
  const double floats = (double)n * p->n_components * spec->n_methods * engine_n_slots(&m->cfg);
  if (floats > (double)GRID_SUMMARY_FLOATS) {
    free(seen);
    plan_fail(err, "ablations.positions.each",
              "a grid of %d positions x %d components x %d methods: its summary would hold "
              "%.0f M effect-table entries, more than %ld M; grid fewer positions or components",
              n, p->n_components, spec->n_methods, floats / 1e6, GRID_SUMMARY_FLOATS >> 20);
    return plan_too_large(err);
  }
  p->grid = malloc(sizeof(int) * (n ? n : 1));
  if (!p->grid) {
    free(seen);
    return plan_fail(err, "", "out of memory");
  }
  for (int t = 0; t < max; t++)
    if (seen[t])
      p->grid[p->n_grid++] = t;
  free(seen);
  return 0;
}

/* A method's source prompt for engine prompt i (-1: none). */
static int patch_source(const plan_t *p, const method_t *m, int i) {
  if (m->kind != METHOD_PATCH)
    return -1;
  return m->source >= 0 ? m->source : p->pair ? p->pair[i] : -1;
}

/* An attention pattern (pattern.L.H) is a row of probabilities over its
 * position's keys: it is zeroed, scaled, or patched from a source whose
 * aligned position is the same (so the row has as many keys); resample and
 * mean take other prompts' rows, so they need every prompt with the same
 * token count and positions; noise is refused (its row would not be a
 * distribution). */
static int check_patterns(const plan_t *p, int n_prompts, job_error_t *err) {
  int has = 0;
  for (int a = 0; a < p->n_atoms; a++)
    has |= p->atoms[a].kind == COMPONENT_PATTERN;
  if (!has)
    return 0;
  for (int k = 0; k < p->n_methods; k++) {
    const method_t *m = &p->methods[k];
    char field[64];
    snprintf(field, sizeof(field), "ablations.methods[%d]", k);
    if (m->kind == METHOD_NOISE)
      return plan_fail(err, field,
                       "%s on an attention pattern (pattern.L.H) is refused: a noisy row is not "
                       "probabilities; use zero, scale, patch, mean or resample",
                       p->method_names[k]);
    const int all_prompts = m->kind == METHOD_MEAN || m->kind == METHOD_RESAMPLE;
    for (int i = 1; all_prompts && i < n_prompts; i++) {
      const int n0 = p->position_offsets[1] - p->position_offsets[0];
      const int ni = p->position_offsets[i + 1] - p->position_offsets[i];
      int same = p->lengths[i] == p->lengths[0] && ni == n0;
      for (int e = 0; same && e < n0; e++)
        same = p->position_list[p->position_offsets[i] + e] == p->position_list[e];
      if (!same)
        return plan_fail(err, field,
                         "%s on an attention pattern (pattern.L.H) takes other prompts' pattern "
                         "rows: every prompt needs prompt 0's token count and intervened "
                         "positions (%d tokens, %d positions from %d); prompt %d has %d tokens, "
                         "%d positions from %d",
                         p->method_names[k], p->lengths[0], n0, p->position_list[0], i,
                         p->lengths[i], ni, p->position_list[p->position_offsets[i]]);
    }
    for (int i = 0; i < n_prompts; i++) {
      const int j = patch_source(p, m, i);
      if (j < 0 || j == i)
        continue;
      if (m->source < 0) /* a pair: the prompt's counterfactual is at fault */
        snprintf(field, sizeof(field), "prompts[%d].counterfactual", i);
      const int *pi = p->position_list + p->position_offsets[i];
      const int *pj = p->position_list + p->position_offsets[j];
      const int ni = p->position_offsets[i + 1] - p->position_offsets[i];
      const int nj = p->position_offsets[j + 1] - p->position_offsets[j];
      if (p->lengths[i] != p->lengths[j])
        return plan_fail(err, field,
                         "patching an attention pattern (pattern.L.H) of prompt %d (%d tokens) "
                         "from a source of %d tokens: a pattern row has one probability per "
                         "key, so the source needs the same token count",
                         i, p->lengths[i], p->lengths[j]);
      for (int e = 1; e <= ni && e <= nj; e++)
        if (pi[ni - e] != pj[nj - e])
          return plan_fail(err, field,
                           "patching an attention pattern (pattern.L.H): prompt %d's position "
                           "%d takes its source's position %d (positions pair from the end); a "
                           "pattern row needs the same position",
                           i, pi[ni - e], pj[nj - e]);
    }
  }
  return 0;
}

/* Variants per engine prompt (engine_job_variants / n_prompts). */
static long variants_per_prompt(const job_spec_t *spec, int n_components) {
  long per = 0;
  for (int k = 0; k < spec->n_methods; k++)
    per += spec->methods[k].kind == METHOD_RESAMPLE ? (spec->samples > 0 ? spec->samples : 1) : 1;
  return per * n_components;
}

/* Before anything is tokenized: the variants of a job whose engine prompts
 * are its prompts, token-id prompts against the token limit, a positions
 * list against the context. */
static int check_document(const job_spec_t *spec, const model_t *m, const plan_limits_t *lim,
                          long per_prompt, job_error_t *err) {
  char field[64];
  if (spec->positions == POSITIONS_LIST && spec->n_positions > m->cfg.max_positions)
    return plan_fail(err, "ablations.positions",
                     "%d positions: more than the model's context of %d", spec->n_positions,
                     m->cfg.max_positions);
  if (!lim)
    return 0;
  const long variants = per_prompt * spec->n_prompts;
  if (spec->target != TARGET_NEXT && lim->max_variants > 0 && variants > lim->max_variants) {
    plan_fail(err, "ablations", "%ld variants: more than the limit of %ld", variants,
              lim->max_variants);
    return plan_too_large(err);
  }
  for (int i = 0; lim->max_prompt_tokens > 0 && i < spec->n_prompts; i++)
    if (!spec->prompts[i].text && spec->prompts[i].n_ids > lim->max_prompt_tokens) {
      snprintf(field, sizeof(field), "prompts[%d]", i);
      plan_fail(err, field, "more than %d tokens", lim->max_prompt_tokens);
      return plan_too_large(err);
    }
  return 0;
}

/* Positions prompt i of len tokens will have (an upper bound for a list). */
static long positions_of(const job_spec_t *spec, int len) {
  switch (spec->positions) {
  case POSITIONS_ALL:
    return len;
  case POSITIONS_LIST:
    return spec->n_positions < len ? spec->n_positions : len;
  default:
    return 1;
  }
}

/* From the token counts, before positions and readouts are made: the
 * plan's variants and bytes ("target": "next" makes a readout per token,
 * each with its own prefix and positions). */
static int check_sizes(const job_spec_t *spec, const plan_limits_t *lim, const plan_t *p,
                       long per_prompt, job_error_t *err) {
  if (!lim)
    return 0;
  const int next = spec->target == TARGET_NEXT;
  double readouts = 0, ids = 0, positions = 0;
  for (int i = 0; i < p->n_prompts; i++) {
    const double len = p->lengths[i], npos = (double)positions_of(spec, p->lengths[i]);
    ids += len;
    positions += npos;
    if (next) { /* readout t: t + 1 ids, its positions up to t */
      readouts += len - 1;
      ids += len * (len - 1) / 2;
      positions += spec->positions == POSITIONS_LAST ? len - 1
                   : npos >= len                     ? len * (len - 1) / 2
                                                     : npos * (len - 1);
    }
  }
  const double prompts = next ? readouts : p->n_prompts;
  /* a grid runs each prompt once per position */
  const double variants = (spec->positions_each ? positions : prompts) * (double)per_prompt;
  const double bytes = sizeof(int) * (ids + positions + 6 * (prompts + p->n_prompts));
  const char *field = next ? "target" : "ablations.positions";
  if (lim->max_variants > 0 && variants > (double)lim->max_variants) {
    if (next)
      plan_fail(err, field,
                "\"next\" over these prompts makes %.0f readouts, %.0f variants: more than the "
                "limit of %ld",
                readouts, variants, lim->max_variants);
    else
      plan_fail(err, spec->positions_each ? "ablations.positions.each" : "ablations",
                "%.0f variants%s: more than the limit of %ld", variants,
                spec->positions_each ? " (one per position of the grid)" : "", lim->max_variants);
    return plan_too_large(err);
  }
  if (lim->max_bytes > 0 && bytes > (double)lim->max_bytes) {
    plan_fail(err, field,
              "the plan would take %.0f MiB (%.0f token ids, %.0f positions%s): more than the "
              "server's %.0f MiB per job",
              bytes / 1048576, ids, positions, next ? " over the readouts of \"next\"" : "",
              (double)lim->max_bytes / 1048576);
    return plan_too_large(err);
  }
  return 0;
}

int plan_build(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok, plan_t *p,
               job_error_t *err) {
  return plan_build_limited(spec, m, tok, NULL, p, err);
}

int plan_build_limited(const job_spec_t *spec, const model_t *m, const tokenizer_t *tok,
                       const plan_limits_t *lim, plan_t *p, job_error_t *err) {
  job_error_t scratch;
  if (!err)
    err = &scratch;
  memset(p, 0, sizeof(*p));
  int P = spec->n_prompts;
  tokenizer_encoding_t *enc = calloc(P, sizeof(*enc));
  p->n_prompts = P;
  p->n_job_prompts = P;
  p->lengths = malloc(sizeof(int) * P);
  p->targets = malloc(sizeof(int) * P);
  p->position_offsets = malloc(sizeof(int) * (P + 1));
  int rc = -1;
  if (!enc || !p->lengths || !p->targets || !p->position_offsets) {
    plan_fail(err, "", "out of memory");
    goto done;
  }
  if (expand_units(spec, &m->cfg, p, err))
    goto done;
  const long per_prompt = variants_per_prompt(spec, p->n_components);
  if (check_document(spec, m, lim, per_prompt, err) ||
      tokenize_prompts(spec, m, tok, lim, p, enc, err) ||
      check_sizes(spec, lim, p, per_prompt, err) || resolve_positions(spec, p, enc, err) ||
      resolve_targets(spec, m, tok, p, err))
    goto done;
  if (spec->target == TARGET_NEXT) {
    for (int k = 0; k < spec->n_methods; k++)
      if (spec->methods[k].kind == METHOD_PATCH) {
        char field[64];
        snprintf(field, sizeof(field), "ablations.methods[%d]", k);
        plan_fail(err, field,
                  "patch names a source prompt; with \"target\": \"next\" use resample, mean, "
                  "zero, scale or noise");
        goto done;
      }
    if (expand_next(spec, p, err))
      goto done;
  }
  if (trace_positions(spec, m, p, enc, err) || plan_pairs(spec, m, tok, lim, p, err) ||
      grid_positions(spec, m, p, err))
    goto done;
  const int EP = p->n_prompts; /* engine prompts */
  p->component_names = calloc(p->n_components ? p->n_components : 1, sizeof(char *));
  p->n_methods = spec->n_methods;
  p->methods = malloc(sizeof(method_t) * (p->n_methods ? p->n_methods : 1));
  p->method_names = calloc(p->n_methods ? p->n_methods : 1, sizeof(char *));
  if (!p->component_names || !p->methods || !p->method_names) {
    plan_fail(err, "", "out of memory");
    goto done;
  }
  for (int c = 0; c < p->n_components; c++) {
    char name[64];
    const int g = c - (p->n_components - spec->n_groups); /* >= 0: a group */
    if (g >= 0)
      snprintf(name, sizeof(name), "%s", spec->groups[g].name);
    else
      component_name(&p->atoms[p->unit_first[c]], name, sizeof(name));
    if (!(p->component_names[c] = strdup(name))) {
      plan_fail(err, "", "out of memory");
      goto done;
    }
  }
  for (int k = 0; k < p->n_methods; k++) {
    char name[64];
    p->methods[k] = spec->methods[k];
    method_label(&p->methods[k], name, sizeof(name));
    if (!(p->method_names[k] = strdup(name))) {
      plan_fail(err, "", "out of memory");
      goto done;
    }
    char field[64];
    snprintf(field, sizeof(field), "ablations.methods[%d]", k);
    if (p->methods[k].kind == METHOD_RESAMPLE && EP < 2) {
      plan_fail(err, field, "resample draws from the job's other prompts: give at least 2 prompts");
      goto done;
    }
    if (p->methods[k].kind == METHOD_PATCH && p->methods[k].source >= P) {
      plan_fail(err, field, "patch source %d is not a prompt of the job", p->methods[k].source);
      goto done;
    }
  }
  if (check_patterns(p, EP, err))
    goto done;
  engine_job_t *j = &p->job;
  j->n_prompts = EP;
  j->lengths = p->lengths;
  j->ids = p->ids;
  j->targets = p->targets;
  j->foils = p->foils;
  j->components = p->atoms;
  j->n_components = p->n_atoms;
  j->unit_first = spec->n_groups ? p->unit_first : NULL;
  j->n_units = p->n_components;
  j->methods = p->methods;
  j->n_methods = p->n_methods;
  j->samples = spec->samples > 0 ? spec->samples : 1;
  j->each_draw = spec->each_draw;
  j->seed = spec->seed;
  j->n_sources = p->n_sources;
  j->each_position = spec->positions_each;
  j->cell_offsets = p->cell_offsets;
  j->cell_start = p->cell_start;
  j->cell_key = p->cell_key;
  j->trace_std = p->trace_std;
  j->trace_seed = spec->trace_seed;
  j->trace_offsets = p->trace_offsets;
  j->trace_list = p->trace_list;
  j->pair = p->pair;
  j->position_offsets = p->position_offsets;
  j->position_list = p->position_list;
  j->metrics = spec->metrics;
  j->norm_scale_ablated = spec->norm_scale_ablated;
  j->tf32 = spec->tf32;
  j->reuse = spec->reuse;
  p->n_variants = engine_job_variants(j);
  rc = 0;
done:
  for (int i = 0; enc && i < P; i++)
    tokenizer_encoding_free(&enc[i]);
  free(enc);
  if (rc != 0)
    plan_free(p);
  return rc;
}

void plan_free(plan_t *p) {
  if (!p)
    return;
  for (int c = 0; p->component_names && c < p->n_components; c++)
    free(p->component_names[c]);
  for (int k = 0; p->method_names && k < p->n_methods; k++)
    free(p->method_names[k]);
  free(p->component_names);
  free(p->method_names);
  free(p->lengths);
  free(p->ids);
  free(p->targets);
  free(p->foils);
  free(p->position_offsets);
  free(p->position_list);
  free(p->prompt_of);
  free(p->pair);
  free(p->grid);
  for (int k = 0; k < p->n_spans; k++)
    free(p->span_names[k]);
  free(p->span_names);
  free(p->cell_offsets);
  free(p->cell_start);
  free(p->cell_key);
  free(p->trace_offsets);
  free(p->trace_list);
  free(p->position_of);
  free(p->atoms);
  free(p->unit_first);
  free(p->methods);
  memset(p, 0, sizeof(*p));
}
