/* interventions.c - the intervention table of one site and layer for the
 * rows of a pass: one backend op for the entries whose values the host
 * makes (zero, scale, noise, mean), one for those read from the store of
 * clean sources (resample, patch), each in pieces of the pass's entry
 * buffer (a group can have several components at one site). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine_parts.h"
#include "rng.h"

/* The entries made so far: uploaded and applied, host values first. */
typedef struct {
  intervention_t *host; /* [cap] */
  float *values;        /* [cap][width] when the host makes values */
  int n, n_src, cap;
} table_t;

/* Room for one more entry (and its values), growing up to `most` entries;
 * a full table is applied first. */
static int room(run_t *R, table_t *t, int most, int width, int with_values, float *buf,
                const float *src);

static int flush(run_t *R, table_t *t, int width, float *buf, const float *src);

static int room(run_t *R, table_t *t, int most, int width, int with_values, float *buf,
                const float *src) {
  if (t->n == most)
    return flush(R, t, width, buf, src);
  if (t->n < t->cap)
    return 0;
  const int cap = t->cap ? (2 * t->cap < most ? 2 * t->cap : most) : (64 < most ? 64 : most);
  intervention_t *h = realloc(t->host, sizeof(*h) * cap);
  if (h)
    t->host = h;
  float *v = with_values ? realloc(t->values, sizeof(float) * (size_t)cap * width) : NULL;
  if (v)
    t->values = v;
  if (!h || (with_values && !v))
    return err_set(R->err, "out of memory");
  t->cap = cap;
  return 0;
}

static int flush(run_t *R, table_t *t, int width, float *buf, const float *src) {
  backend_t *b = R->e->b;
  if (t->n && (b->ops->upload(b, R->e->entries, t->host, sizeof(*t->host) * t->n) ||
               (t->n_src && b->ops->upload(b, R->e->values, t->values, sizeof(float) * t->n_src)) ||
               b->ops->intervene(b, buf, width, R->e->entries, t->n, src ? src : R->e->values)))
    return err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  t->n = t->n_src = 0;
  return 0;
}

/* Builds and applies the intervention table of one site of one layer for the
 * first n_joined rows of the pass: entries whose values come from the host
 * (noise, mean) in one table, those read from the backend's store of clean
 * outputs (resample, patch) in another, each applied when full (the pass's
 * entry buffer holds cap_rows) and at the end. */
int apply_site(run_t *R, const variant_t *vs, int nv, int n_joined, hook_site_t site, int layer,
               float *buf, const int *row_map) {
  const engine_job_t *job = R->job;
  const int width = site_width(R->cfg, site), cap = R->e->cap_rows;
  const float *store = R->src.dstore ? R->src.dstore[store_index(R->cfg, site, layer)] : NULL;
  table_t own = {0}, stored = {0};
  int rc = -1;
  for (int i = 0; i < n_joined && i < nv; i++) {
    const variant_t *v = &vs[i];
    const method_t *m = &job->methods[v->method];
    const int from_store = m->kind == METHOD_RESAMPLE || m->kind == METHOD_PATCH;
    if (v->base >= n_joined) /* joins later (variants are in stage order) */
      break;
    for (int a = unit_first(job, v->component); a < unit_end(job, v->component); a++) {
      const component_t *c = &job->components[a];
      int at;
      if (component_site(R->cfg, c, &at) != site || at != layer)
        continue;
      int c0, c1;
      component_cols(R->cfg, c, &c0, &c1);
      const int off = job->position_offsets[v->prompt];
      int k0, k1;
      run_positions(R, v->prompt, v->k, &k0, &k1);
      for (int k = k0; k < k1; k++) {
        const int t = job->position_list[off + k];
        const int row = v->base + (t - v->p0);
        if (row_map && row_map[row] < 0)
          continue;
        intervention_t e = {.row = row_map ? row_map[row] : row, .col0 = c0, .col1 = c1};
        if (from_store) {
          const long row = source_row(R, v, k);
          if (row < 0)
            continue; /* the source has no such position: leave it */
          if ((size_t)row * width + c0 > (size_t)INT_MAX) {
            err_set(R->err, "the store of clean outputs is too large for one intervention table");
            goto done;
          }
          if (room(R, &stored, cap, width, 0, buf, store) != 0)
            goto done;
          e.kind = INTERVENE_SET;
          e.src_offset = (int)((size_t)row * width + c0);
          stored.host[stored.n++] = e;
          continue;
        }
        if (room(R, &own, cap, width, 1, buf, NULL) != 0)
          goto done;
        e.src_offset = own.n_src;
        float *values = own.values + own.n_src;
        switch (m->kind) {
        case METHOD_ZERO:
          e.kind = INTERVENE_SCALE;
          break;
        case METHOD_SCALE:
          e.kind = INTERVENE_SCALE;
          e.alpha = m->value;
          break;
        case METHOD_NOISE:
          e.kind = INTERVENE_ADD;
          for (int col = c0; col < c1; col++)
            values[col - c0] =
                m->value *
                rng_gaussian(rng_mix(job->seed, (uint64_t)v->prompt << 20 | (uint64_t)t,
                                     (uint64_t)a << 8 | (uint64_t)v->method, (uint64_t)col));
          own.n_src += c1 - c0;
          break;
        default: /* mean */
          e.kind = INTERVENE_SET;
          if (mean_values(R, v, site, layer, k, c0, c1, values) != 0)
            continue; /* no prompt has that position: leave it */
          own.n_src += c1 - c0;
          break;
        }
        own.host[own.n++] = e;
      }
    }
  }
  rc = flush(R, &own, width, buf, NULL) || flush(R, &stored, width, buf, store) ? -1 : 0;
done:
  free(own.host);
  free(own.values);
  free(stored.host);
  return rc;
}

/* Applies n pattern entries (uploaded into the pass's entry buffer, whose
 * cap_rows intervention_t hold as many smaller pattern_entry_t). */
static int flush_patterns(run_t *R, float *store, const pattern_entry_t *host, int n) {
  backend_t *b = R->e->b;
  pattern_entry_t *entries = (pattern_entry_t *)R->e->entries;
  if (n && b->ops->upload(b, entries, host, sizeof(*host) * n))
    return err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  return n ? transformer_attention_rows(R->e->tf, store, entries, n, R->err) : 0;
}

/* A head's stored pattern row: store row `row` (a prompt's intervened
 * position), head h; -1 past an int offset. */
static long pattern_offset(const run_t *R, long row, int h) {
  const size_t off = ((size_t)row * R->cfg->n_heads + h) * R->pattern_stride;
  return off + R->pattern_stride > (size_t)INT_MAX ? -1 : (long)off;
}

int capture_patterns(run_t *R, int layer) {
  const engine_job_t *job = R->job;
  float *store = R->src.dstore ? R->src.dstore[store_index(R->cfg, HOOK_PATTERN, layer)] : NULL;
  const int cap = R->e->cap_rows, H = R->cfg->n_heads;
  if (!store)
    return 0;
  pattern_entry_t *host = malloc(sizeof(*host) * cap);
  int n = 0, rc = -1;
  if (!host)
    return err_set(R->err, "out of memory");
  for (int cp = 0; cp < R->c1 - R->c0; cp++) {
    const int p = R->c0 + cp, off = job->position_offsets[p];
    for (int k = 0; k < n_positions(R, p); k++)
      for (int h = 0; h < H; h++) {
        const long at = pattern_offset(R, off + k, h);
        if (at < 0) {
          err_set(R->err, "the store of attention patterns is too large for one table");
          goto done;
        }
        if (n == cap && flush_patterns(R, store, host, n) != 0)
          goto done;
        n = n == cap ? 0 : n;
        host[n++] = (pattern_entry_t){.row = R->clean_start[cp] + job->position_list[off + k],
                                      .head = h,
                                      .kind = PATTERN_READ,
                                      .offset = (int)at};
      }
  }
  rc = flush_patterns(R, store, host, n);
  float *host_store = R->src.store[store_index(R->cfg, HOOK_PATTERN, layer)];
  if (rc == 0 && host_store) { /* the chunk's rows to the host, for the means */
    const size_t width = (size_t)store_width(R, HOOK_PATTERN);
    const size_t first = (size_t)job->position_offsets[R->c0] * width,
                 n_floats = (size_t)job->position_offsets[R->c1] * width - first;
    backend_t *b = R->e->b;
    if (n_floats &&
        b->ops->download(b, host_store + first, store + first, sizeof(float) * n_floats))
      rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  }
done:
  free(host);
  return rc;
}

/* A table of pattern entries being made, applied when full: those whose
 * rows are in the store of clean patterns (patch, resample) or need none
 * (zero, scale), and those whose rows the host makes (mean) in values. */
typedef struct {
  pattern_entry_t *stored, *own;
  float *values; /* [cap_values] */
  int n_stored, n_own, n_values, cap, cap_values;
} pattern_table_t;

static int flush_own(run_t *R, pattern_table_t *t) {
  backend_t *b = R->e->b;
  if (t->n_own && b->ops->upload(b, R->e->values, t->values, sizeof(float) * t->n_values))
    return err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  const int rc = flush_patterns(R, R->e->values, t->own, t->n_own);
  t->n_own = t->n_values = 0;
  return rc;
}

/* Adds a mean entry: the prompts' mean row of head h at position k of
 * variant v (aligned from the end); none when no prompt has it. */
static int add_mean(run_t *R, pattern_table_t *t, const variant_t *v, int layer, int k,
                    pattern_entry_t e) {
  const int stride = R->pattern_stride;
  if (stride > t->cap_values)
    return err_set(R->err, "a pattern row of %d keys is over the pass's value buffer", stride);
  if ((t->n_own == t->cap || t->n_values + stride > t->cap_values) && flush_own(R, t) != 0)
    return -1;
  const int c0 = e.head * stride;
  if (mean_values(R, v, HOOK_PATTERN, layer, k, c0, c0 + stride, t->values + t->n_values) != 0)
    return 0; /* no prompt has that position: leave it */
  e.kind = PATTERN_SET;
  e.offset = t->n_values;
  t->n_values += stride;
  t->own[t->n_own++] = e;
  return 0;
}

/* Adds a stored or store-less entry (patch and resample read their source's
 * row from the store). */
static int add_stored(run_t *R, pattern_table_t *t, float *store, const variant_t *v,
                      const method_t *m, int k, pattern_entry_t e) {
  if (m->kind == METHOD_PATCH || m->kind == METHOD_RESAMPLE) {
    const long row = source_row(R, v, k);
    if (row < 0)
      return 0; /* the source has no such position: leave it */
    const long at = store ? pattern_offset(R, row, e.head) : -1;
    if (at < 0)
      return err_set(R->err, "no stored attention pattern for a %s source",
                     m->kind == METHOD_PATCH ? "patch" : "resample");
    e.kind = PATTERN_SET;
    e.offset = (int)at;
  } else { /* zero and scale: the plan refuses the rest */
    e.kind = PATTERN_SCALE;
    e.alpha = m->kind == METHOD_SCALE ? m->value : 0.0f;
  }
  if (t->n_stored == t->cap) {
    if (flush_patterns(R, store, t->stored, t->n_stored) != 0)
      return -1;
    t->n_stored = 0;
  }
  t->stored[t->n_stored++] = e;
  return 0;
}

int apply_patterns(run_t *R, const variant_t *vs, int nv, int n_joined, int layer) {
  const engine_job_t *job = R->job;
  float *store = R->src.dstore ? R->src.dstore[store_index(R->cfg, HOOK_PATTERN, layer)] : NULL;
  pattern_table_t t = {.cap = R->e->cap_rows,
                       .cap_values = (int)((size_t)R->e->cap_rows * R->e->width_max)};
  t.stored = malloc(sizeof(pattern_entry_t) * t.cap);
  t.own = malloc(sizeof(pattern_entry_t) * t.cap);
  t.values = malloc(sizeof(float) * (size_t)t.cap_values);
  int rc = -1;
  if (!t.stored || !t.own || !t.values) {
    err_set(R->err, "out of memory");
    goto done;
  }
  for (int i = 0; i < n_joined && i < nv; i++) {
    const variant_t *v = &vs[i];
    const method_t *m = &job->methods[v->method];
    for (int a = unit_first(job, v->component); a < unit_end(job, v->component); a++) {
      const component_t *c = &job->components[a];
      if (c->kind != COMPONENT_PATTERN || c->layer != layer)
        continue;
      const int off = job->position_offsets[v->prompt];
      int k0, k1;
      run_positions(R, v->prompt, v->k, &k0, &k1);
      for (int k = k0; k < k1; k++) {
        const int t_pos = job->position_list[off + k];
        const pattern_entry_t e = {.row = v->base + (t_pos - v->p0), .head = c->index};
        if ((m->kind == METHOD_MEAN ? add_mean(R, &t, v, layer, k, e)
                                    : add_stored(R, &t, store, v, m, k, e)) != 0)
          goto done;
      }
    }
  }
  rc = flush_patterns(R, store, t.stored, t.n_stored) || flush_own(R, &t) ? -1 : 0;
done:
  free(t.stored);
  free(t.own);
  free(t.values);
  return rc;
}

/* One prompt's trace noise on its rows at or after position p0 (row of
 * position t: base + t - p0), for the first n rows of the pass. Only the
 * clean pass adds it: every variant joins from that pass's (corrupted)
 * residuals and keys/values. */
static int trace_prompt(run_t *R, table_t *t, int prompt, int p0, int base, int n, float *buf) {
  const engine_job_t *job = R->job;
  const int d = R->d;
  for (int k = job->trace_offsets[prompt]; k < job->trace_offsets[prompt + 1]; k++) {
    const int pos = job->trace_list[k], row = base + pos - p0;
    if (pos < p0 || row >= n)
      continue;
    if (room(R, t, R->e->cap_rows, d, 1, buf, NULL) != 0)
      return -1;
    float *values = t->values + t->n_src;
    for (int col = 0; col < d; col++)
      values[col] = job->trace_std *
                    rng_gaussian(rng_mix(job->trace_seed, (uint64_t)prompt << 20 | (uint64_t)pos,
                                         ENGINE_TRACE_KEY, (uint64_t)col));
    t->host[t->n++] = (intervention_t){
        .row = row, .col0 = 0, .col1 = d, .kind = INTERVENE_ADD, .src_offset = t->n_src};
    t->n_src += d;
  }
  return 0;
}

int apply_trace(run_t *R, int n, float *buf) {
  const engine_job_t *job = R->job;
  if (!(job->trace_std > 0) || !job->trace_offsets)
    return 0;
  table_t t = {0};
  int rc = -1;
  for (int cp = 0; cp < R->c1 - R->c0; cp++) /* every run prompt of the chunk */
    if (R->c0 + cp < job->n_prompts &&
        trace_prompt(R, &t, R->c0 + cp, 0, R->clean_start[cp], n, buf) != 0)
      goto done;
  rc = flush(R, &t, R->d, buf, NULL);
done:
  free(t.host);
  free(t.values);
  return rc;
}
