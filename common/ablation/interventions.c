/* interventions.c - the intervention table of one site and layer for the
 * rows of a pass: one backend op for the entries whose values the host
 * makes (zero, scale, noise, mean), one for those read from the store of
 * clean sources (resample, patch). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine_parts.h"
#include "rng.h"

/* Builds and applies the intervention table of one site of one layer for
 * the first n_joined rows of the pass: entries whose values come from the
 * host (noise, mean) first, then those read from the backend's store of
 * clean outputs (resample, patch), each group one op. */
int apply_site(run_t *R, const variant_t *vs, int nv, int n_joined, hook_site_t site, int layer,
               float *buf) {
  const engine_job_t *job = R->job;
  const int width = site_width(R->cfg, site);
  intervention_t *entries = NULL, *stored = NULL;
  float *values = NULL;
  int n = 0, n_stored = 0, n_src = 0, cap = 0, cap_stored = 0, rc = -1;
  for (int i = 0; i < n_joined && i < nv; i++) {
    const variant_t *v = &vs[i];
    const component_t *c = &job->components[v->component];
    if (component_site(c) != site || (site != HOOK_EMBED && c->layer != layer))
      continue;
    const method_t *m = &job->methods[v->method];
    const int from_store = m->kind == METHOD_RESAMPLE || m->kind == METHOD_PATCH;
    int c0, c1;
    component_cols(R->cfg, c, &c0, &c1);
    const int off = job->position_offsets[v->prompt];
    for (int k = 0; k < n_positions(R, v->prompt); k++) {
      const int t = job->position_list[off + k];
      intervention_t e = {.row = v->base + (t - v->p0), .col0 = c0, .col1 = c1};
      if (from_store) {
        const long row = source_row(R, v, k);
        if (row < 0)
          continue; /* the source has no such position: leave it */
        if ((size_t)row * width + c0 > (size_t)INT_MAX) {
          err_set(R->err, "the store of clean outputs is too large for one intervention table");
          goto done;
        }
        if (n_stored == cap_stored) {
          cap_stored = cap_stored ? 2 * cap_stored : 64;
          intervention_t *ne = realloc(stored, sizeof(*ne) * cap_stored);
          if (!ne) {
            err_set(R->err, "out of memory");
            goto done;
          }
          stored = ne;
        }
        e.kind = INTERVENE_SET;
        e.src_offset = (int)((size_t)row * width + c0);
        stored[n_stored++] = e;
        continue;
      }
      if (n == cap) {
        cap = cap ? 2 * cap : 64;
        intervention_t *ne = realloc(entries, sizeof(*ne) * cap);
        float *ns = realloc(values, sizeof(float) * (size_t)cap * width);
        if (ne)
          entries = ne;
        if (ns)
          values = ns;
        if (!ne || !ns) {
          err_set(R->err, "out of memory");
          goto done;
        }
      }
      e.src_offset = n_src;
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
          values[n_src + col - c0] =
              m->value * rng_gaussian(rng_mix(job->seed, (uint64_t)v->prompt << 20 | (uint64_t)t,
                                              (uint64_t)v->component << 8 | (uint64_t)v->method,
                                              (uint64_t)col));
        n_src += c1 - c0;
        break;
      default: /* mean */
        e.kind = INTERVENE_SET;
        if (mean_values(R, v, site, layer, k, c0, c1, values + n_src) != 0)
          continue; /* no prompt has that position: leave it */
        n_src += c1 - c0;
        break;
      }
      entries[n++] = e;
    }
  }
  rc = 0;
  backend_t *b = R->e->b;
  intervention_t *dev = R->e->entries;
  if (n && (b->ops->upload(b, dev, entries, sizeof(*entries) * n) ||
            (n_src && b->ops->upload(b, R->e->values, values, sizeof(float) * n_src)) ||
            b->ops->intervene(b, buf, width, dev, n, R->e->values)))
    rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  if (!rc && n_stored &&
      (b->ops->upload(b, dev + n, stored, sizeof(*stored) * n_stored) ||
       b->ops->intervene(b, buf, width, dev + n, n_stored,
                         R->src.dstore[store_index(R->cfg, site, layer)])))
    rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
done:
  free(entries);
  free(stored);
  free(values);
  return rc;
}
