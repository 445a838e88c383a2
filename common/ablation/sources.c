/* sources.c - the store of clean sources: each (site, layer) some
 * component needs as a resample, patch or mean source holds the clean
 * outputs of every prompt of the job at its intervened positions (in
 * backend memory; on the host too for means), and the stores kept between
 * the runs (work units) of one job. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine_parts.h"

/* Stores the clean outputs of a site at every intervened position of the
 * chunk's prompts, when some component needs them as a source. */
int capture_sources(run_t *R, hook_site_t site, int layer, const float *buf) {
  const int idx = store_index(R->cfg, site, layer);
  float *dst = R->src.dstore[idx], *host = R->src.store[idx];
  if (!dst)
    return 0;
  backend_t *b = R->e->b;
  const int width = store_width(R, site);
  const int first = R->job->position_offsets[R->c0], n = R->job->position_offsets[R->c1] - first;
  int *rows = malloc(sizeof(int) * (n ? n : 1));
  if (!rows)
    return err_set(R->err, "out of memory");
  for (int cp = 0; cp < R->c1 - R->c0; cp++) {
    const int p = R->c0 + cp, off = R->job->position_offsets[p];
    for (int k = 0; k < n_positions(R, p); k++)
      rows[off - first + k] = R->clean_start[cp] + R->job->position_list[off + k];
  }
  /* gathered in backend memory, in pieces of the index buffer's size; to the
   * host only for the means */
  int rc = 0;
  for (int i = 0; i < n && !rc; i += R->e->cap_rows) {
    const int m = n - i < R->e->cap_rows ? n - i : R->e->cap_rows;
    float *at = dst + (size_t)(first + i) * width;
    if (b->ops->upload(b, R->e->row_list, rows + i, (size_t)m * sizeof(int)) ||
        b->ops->gather_rows(b, at, buf, R->e->row_list, m, width) ||
        (host && b->ops->download(b, host + (size_t)(first + i) * width, at,
                                  (size_t)m * width * sizeof(float))))
      rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  }
  free(rows);
  return rc;
}

/* The store row holding the source of one entry of a resample or patch:
 * the clean output of `source` at the position aligned from the end; -1 if
 * the source lacks it. */
long source_row(const run_t *R, const variant_t *v, int k) {
  const int n_i = n_positions(R, v->prompt), from_end = n_i - 1 - k;
  const int j = v->source, kk = n_positions(R, j) - 1 - from_end;
  return kk < 0 ? -1 : (long)R->job->position_offsets[j] + kk;
}

/* Fills the mean values of one entry (aligned from the end); -1 if no
 * prompt has that position. */
int mean_values(run_t *R, const variant_t *v, hook_site_t site, int layer, int k, int c0, int c1,
                float *out) {
  const int width = store_width(R, site), from_end = n_positions(R, v->prompt) - 1 - k;
  if (from_end >= R->max_k)
    return -1;
  const float *row = R->src.mean[store_index(R->cfg, site, layer)] + (size_t)from_end * width;
  memcpy(out, row + c0, sizeof(float) * (c1 - c0));
  return 0;
}

/* Bytes of backend memory the store of clean outputs takes (see alloc_store). */
/* A (site, layer) of component c has a store: some method needs sources,
 * or a shortcut needs its clean values. */
static int needs_store(const run_t *R, int any_source, const component_t *c) {
  return any_source || shortcut_needs_store(R->job, R->cfg, c);
}

size_t store_bytes(const run_t *R) {
  const engine_job_t *job = R->job;
  int needs = 0;
  for (int m = 0; m < job->n_methods; m++)
    needs |= method_needs_source(job->methods[m].kind);
  const long n_pos = job->position_offsets[n_all_prompts(job)];
  size_t total = 0;
  unsigned char *seen = calloc((size_t)HOOK_N * R->cfg->n_layers, 1);
  if (!seen)
    return SIZE_MAX / 2; /* cannot be planned: fails the budget */
  for (int i = 0; i < job->n_components; i++) {
    int layer;
    const hook_site_t s = component_site(R->cfg, &job->components[i], &layer);
    if (needs_store(R, needs, &job->components[i]) && !seen[store_index(R->cfg, s, layer)]++)
      total += sizeof(float) * (size_t)n_pos * store_width(R, s);
  }
  free(seen);
  return total;
}

void free_store(engine_t *e, source_store_t *s) {
  if (s->dstore)
    for (int i = 0; i < HOOK_N * e->host->cfg.n_layers; i++) {
      if (s->dstore[i])
        e->b->ops->free(e->b, s->dstore[i]);
      if (s->store)
        free(s->store[i]);
      if (s->mean)
        free(s->mean[i]);
    }
  free(s->dstore);
  free(s->store);
  free(s->mean);
  s->dstore = s->store = s->mean = NULL;
}

static void drop_kept(engine_t *e, int i) {
  free_store(e, &e->kept[i].s);
  memset(&e->kept[i], 0, sizeof(e->kept[i]));
}

size_t kept_bytes(const engine_t *e) {
  size_t n = 0;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    n += e->kept[i].bytes;
  return n;
}

/* The slot holding the store kept for a key; -1 if none. */
int find_kept(const engine_t *e, uint64_t key) {
  for (int i = 0; key && i < ENGINE_KEPT_MAX; i++)
    if (e->kept[i].s.dstore && e->kept[i].key == key)
      return i;
  return -1;
}

/* Drops every kept store; 0 when there was none. */
int drop_all_kept(engine_t *e) {
  int n = 0;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    if (e->kept[i].s.dstore) {
      drop_kept(e, i);
      n++;
    }
  return n > 0;
}

/* Drops the least recently used kept store other than slot `keep`; 0 when
 * there was none to drop. */
int drop_oldest_kept(engine_t *e, int keep) {
  int old = -1;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    if (i != keep && e->kept[i].s.dstore && (old < 0 || e->kept[i].used < e->kept[old].used))
      old = i;
  if (old < 0)
    return 0;
  drop_kept(e, old);
  return 1;
}

int engine_kept_sources(const engine_t *e, size_t *bytes) {
  int n = 0;
  for (int i = 0; i < ENGINE_KEPT_MAX; i++)
    n += e->kept[i].s.dstore != NULL;
  if (bytes)
    *bytes = kept_bytes(e);
  return n;
}

void engine_retain_sources(engine_t *e, const uint64_t *keys, int n_keys) {
  for (int i = 0; i < ENGINE_KEPT_MAX; i++) {
    int live = 0;
    for (int k = 0; k < n_keys && !live; k++)
      live = e->kept[i].s.dstore && keys[k] == e->kept[i].key;
    if (!live)
      drop_kept(e, i);
  }
}

/* Allocates the store of clean outputs for every (site, layer) some
 * component needs as a source (and its host copy and means for mean
 * ablation), or takes the store a run of the same job kept in slot `kept`
 * (filled; -1: none). */
int alloc_store(run_t *R, int kept) {
  const engine_job_t *job = R->job;
  const int n_idx = HOOK_N * R->cfg->n_layers;
  const long n_pos = job->position_offsets[n_all_prompts(job)];
  int needs = 0, needs_mean = 0;
  for (int m = 0; m < job->n_methods; m++) {
    needs |= method_needs_source(job->methods[m].kind);
    needs_mean |= job->methods[m].kind == METHOD_MEAN;
  }
  R->max_k = 0;
  for (int p = 0; p < job->n_prompts; p++)
    if (n_positions(R, p) > R->max_k)
      R->max_k = n_positions(R, p);
  engine_t *e = R->e;
  if (kept >= 0) {
    R->src = e->kept[kept].s;
    memset(&e->kept[kept], 0, sizeof(e->kept[kept])); /* the run holds it now */
    return 0;
  }
  R->src.dstore = calloc(n_idx, sizeof(float *));
  R->src.store = calloc(n_idx, sizeof(float *));
  R->src.mean = calloc(n_idx, sizeof(float *));
  if (!R->src.dstore || !R->src.store || !R->src.mean)
    return err_set(R->err, "out of memory");
  for (int i = 0; i < job->n_components; i++) {
    int layer;
    const hook_site_t s = component_site(R->cfg, &job->components[i], &layer);
    const int idx = store_index(R->cfg, s, layer);
    if (R->src.dstore[idx] || !needs_store(R, needs, &job->components[i]))
      continue;
    const size_t bytes = sizeof(float) * (size_t)n_pos * store_width(R, s);
    backend_t *b = R->e->b;
    if (!(R->src.dstore[idx] = b->ops->alloc(b, bytes)))
      return err_set(R->err, "out of backend memory for the clean outputs of %ld positions: %s",
                     n_pos, b->err);
    if (!needs_mean)
      continue;
    R->src.store[idx] = malloc(bytes);
    R->src.mean[idx] = calloc((size_t)R->max_k * store_width(R, s), sizeof(float));
    if (!R->src.store[idx] || !R->src.mean[idx])
      return err_set(R->err, "out of memory for the clean outputs of %ld positions", n_pos);
  }
  return 0;
}

/* Means over prompts of each stored output, aligned from the end. */
void compute_means(run_t *R) {
  const engine_job_t *job = R->job;
  for (int idx = 0; idx < HOOK_N * R->cfg->n_layers; idx++) {
    if (!R->src.store[idx])
      continue;
    const int width = store_width(R, (hook_site_t)(idx / R->cfg->n_layers));
    double *sum = calloc((size_t)R->max_k * width, sizeof(double));
    int *count = calloc(R->max_k, sizeof(int));
    if (!sum || !count) {
      free(sum);
      free(count);
      continue;
    }
    for (int p = 0; p < job->n_prompts; p++) {
      const int n = n_positions(R, p);
      for (int k = 0; k < n; k++) {
        const float *row = R->src.store[idx] + (size_t)(job->position_offsets[p] + k) * width;
        const int from_end = n - 1 - k;
        count[from_end]++;
        for (int i = 0; i < width; i++)
          sum[(size_t)from_end * width + i] += row[i];
      }
    }
    for (int k = 0; k < R->max_k; k++)
      for (int i = 0; i < width; i++)
        R->src.mean[idx][(size_t)k * width + i] =
            count[k] ? (float)(sum[(size_t)k * width + i] / count[k]) : 0.0f;
    free(sum);
    free(count);
  }
}

/* Keeps the run's complete store for the job's next run (the least
 * recently used kept store goes when every slot is taken). */
void keep_store(run_t *R, size_t bytes) {
  engine_t *e = R->e;
  int slot = 0;
  while (slot < ENGINE_KEPT_MAX && e->kept[slot].s.dstore)
    slot++;
  if (slot == ENGINE_KEPT_MAX) {
    drop_oldest_kept(e, -1);
    slot = 0;
    while (e->kept[slot].s.dstore)
      slot++;
  }
  e->kept[slot] =
      (kept_t){.key = R->job->source_key, .s = R->src, .bytes = bytes, .used = ++e->kept_clock};
  R->src = (source_store_t){0};
}
