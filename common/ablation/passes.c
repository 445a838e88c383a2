/* passes.c - the engine's two passes over the one transformer:
 *   the clean pass of a chunk: every row from the embeddings, its hooks
 *     capture the residuals and keys/values the variants start from, the
 *     sources, and each slot's output at the final position; then the
 *     clean logits, targets and frozen-norm directions;
 *   a variant pass: each variant joins at its first intervened sub-stage
 *     from the clean residual, recomputing only positions from its first
 *     intervened one; its hooks intervene and read out direct effects. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "effects.h"
#include "engine_parts.h"

/* What a pass's hooks see. */
typedef struct {
  run_t *R;
  const variant_t *vs; /* NULL: the clean pass */
  int nv;
  int n_read;
  const int *join_read; /* [2 n_layers]: readouts active at each sub-stage */
  int keep_slots;       /* clean: keep each slot's final-row outputs (an emitting pass) */
  /* variants: [HOOK_N * n_layers], 1 where a variant of the pass intervenes
   * (store_index), 2 where also a residual-stream unit reads out */
  unsigned char *touch;
  const int *read_row, *read_prompt; /* host copies of the pass's readouts */
} pass_t;

/* Gathers rows of a backend buffer and brings them to the host. */
int download_rows(run_t *R, float *host, const float *buf, int width, const int *rows, int n) {
  backend_t *b = R->e->b;
  if (n == 0)
    return 0;
  if (b->ops->upload(b, R->e->row_list, rows, (size_t)n * sizeof(int)) ||
      b->ops->gather_rows(b, R->e->gathered, buf, R->e->row_list, n, width) ||
      b->ops->download(b, host, R->e->gathered, (size_t)n * width * sizeof(float)))
    return err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  return 0;
}

/* Keeps each chunk prompt's final-row output of a slot's component, straight
 * into the slot's block of clean_out. */
static int capture_slot(run_t *R, int keep, int slot, const float *buf) {
  const int np = R->c1 - R->c0;
  if (!keep)
    return 0;
  int *rows = malloc(sizeof(int) * (np ? np : 1));
  if (!rows)
    return err_set(R->err, "out of memory");
  for (int cp = 0; cp < np; cp++)
    rows[cp] = final_row(R, cp);
  const int rc = download_rows(R, R->clean_out + (size_t)slot * np * R->d, buf, R->d, rows, np);
  free(rows);
  return rc;
}

/* The slot whose direct effect a site's output is (-1: none). */
static int site_slot(hook_site_t site, int layer) {
  switch (site) {
  case HOOK_EMBED:
    return 0;
  case HOOK_ATTN_OUT:
    return 1 + 2 * layer;
  case HOOK_MLP_OUT:
    return 2 + 2 * layer;
  default:
    return -1;
  }
}

/* ---- clean pass hooks: capture ---- */

static int clean_at(void *ctx, hook_site_t site, int layer, float *buf, int n, int width) {
  pass_t *P = ctx;
  run_t *R = P->R;
  engine_t *e = R->e;
  if (site == HOOK_EMBED && apply_trace(R, n, buf) != 0) /* the corrupted run */
    return -1;
  const size_t at_layer = (size_t)layer * e->cap_clean * R->d, bytes = sizeof(float) * n * width;
  if (site == HOOK_RESID_PRE || site == HOOK_RESID_MID) { /* where variants will start from */
    float *cache = (site == HOOK_RESID_PRE ? e->resid_pre : e->resid_mid) + at_layer;
    if (e->b->ops->copy(e->b, cache, buf, bytes))
      return err_set(R->err, "backend %s: %s", e->b->ops->name, e->b->err);
  }
  if (capture_sources(R, site, layer, buf) != 0)
    return -1;
  const int slot = site_slot(site, layer);
  return slot >= 0 ? capture_slot(R, P->keep_slots, slot, buf) : 0;
}

static int clean_pattern(void *ctx, int layer, int n) {
  (void)n;
  return capture_patterns(((pass_t *)ctx)->R, layer);
}

/* ---- variant pass hooks: join, intervene, read out ---- */

static int variant_join(void *ctx, int stage, float *x, int first, int n) {
  pass_t *P = ctx;
  engine_t *e = P->R->e;
  const int d = P->R->d, L = stage / 2;
  const float *cache = (stage % 2 ? e->resid_mid : e->resid_pre) + (size_t)L * e->cap_clean * d;
  if (e->b->ops->gather_rows(e->b, x + (size_t)first * d, cache, e->clean_row + first, n - first,
                             d))
    return err_set(P->R->err, "backend %s: %s", e->b->ops->name, e->b->err);
  const int i0 = stage > 0 ? P->join_read[stage - 1] : 0; /* the variants joining here */
  return shortcut_join(P->R, P->vs, i0, P->join_read[stage], stage, x, n, P->n_read);
}

/* Direct effects of a slot for the readouts active at its sub-stage:
 * de_out[slot][i] (Eq. 10, as one batched projection). */
static int readout(pass_t *P, int slot, const float *buf) {
  run_t *R = P->R;
  engine_t *e = R->e;
  const int stage = slot == 0 ? 0 : slot - 1, n = P->join_read[stage];
  if (n == 0)
    return 0;
  if (e->b->ops->row_dots(e->b, e->de_out + (size_t)slot * P->n_read, e->ident, buf, e->read_row,
                          e->dirs, e->read_prompt, n, R->d))
    return err_set(R->err, "backend %s: %s", e->b->ops->name, e->b->err);
  return 0;
}

/* The residual's own direct effect at the final row of each variant of a
 * residual-stream unit intervened at this site: de_out[n_slots][i]. */
static int resid_readout(pass_t *P, hook_site_t site, int layer, const float *buf, int n) {
  run_t *R = P->R;
  engine_t *e = R->e;
  const engine_job_t *job = R->job;
  int *idx = malloc(sizeof(int) * 3 * (size_t)P->nv), m = 0;
  if (!idx)
    return err_set(R->err, "out of memory");
  for (int i = 0; i < P->nv; i++) {
    const variant_t *v = &P->vs[i];
    const component_t *c = &job->components[unit_first(job, v->component)];
    int at;
    if (R->unit_resid[v->component] < 0 || component_site(R->cfg, c, &at) != site || at != layer ||
        P->read_row[i] >= n)
      continue;
    idx[m] = R->n_slots * P->n_read + i;
    idx[P->nv + m] = P->read_row[i];
    idx[2 * P->nv + m] = P->read_prompt[i];
    m++;
  }
  backend_t *b = e->b;
  int rc = 0;
  /* three index lists in the readout index buffers (each holds nv) */
  if (m && (b->ops->upload(b, e->row_list, idx, sizeof(int) * m) ||
            b->ops->upload(b, e->resid_read, idx + P->nv, sizeof(int) * m) ||
            b->ops->upload(b, e->resid_read + e->cap_read, idx + 2 * P->nv, sizeof(int) * m) ||
            b->ops->row_dots(b, e->de_out, e->row_list, buf, e->resid_read, e->dirs,
                             e->resid_read + e->cap_read, m, R->d)))
    rc = err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  free(idx);
  return rc;
}

static int variant_pattern(void *ctx, int layer, int n) {
  pass_t *P = ctx;
  if (!P->touch[store_index(P->R->cfg, HOOK_PATTERN, layer)])
    return 0;
  return apply_patterns(P->R, P->vs, P->nv, n, layer);
}

static int variant_at(void *ctx, hook_site_t site, int layer, float *buf, int n, int width) {
  pass_t *P = ctx;
  (void)width;
  const unsigned char touch = P->touch[store_index(P->R->cfg, site, layer)];
  if (touch && apply_site(P->R, P->vs, P->nv, n, site, layer, buf, NULL) != 0)
    return -1;
  if (touch == 2 && resid_readout(P, site, layer, buf, n) != 0)
    return -1;
  const int slot = site_slot(site, layer);
  return slot >= 0 ? readout(P, slot, buf) : 0;
}

/* ---- the clean pass of a chunk ---- */

/* Final norm and clean logits at each prompt's final row: targets, centred
 * target logits, foils' logits and, for a full-distribution job, the clean
 * log-probs (kept in e->clean_lp) and the target's log-prob, all reduced
 * where the logits are (logit_stats, logit_metrics). */
static int clean_logits(run_t *R) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  const engine_job_t *job = R->job;
  const int np = R->c1 - R->c0, d = R->d, V = R->cfg->vocab_size;
  const int *foils = job->foils ? job->foils + R->c0 : NULL;
  int *fin = malloc(sizeof(int) * np), *best = malloc(sizeof(int) * np);
  float *inv = malloc(sizeof(float) * np), *stats = malloc(sizeof(float) * 3 * (size_t)np);
  float *mout = R->full_logits ? malloc(sizeof(float) * 5 * (size_t)np) : NULL;
  int rc = -1;
  if (!fin || !best || !inv || !stats || (R->full_logits && !mout)) {
    err_set(R->err, "out of memory");
    goto done;
  }
  for (int cp = 0; cp < np; cp++) {
    const int p = R->c0 + cp;
    fin[cp] = final_row(R, cp);
    if (job->targets[p] >= V || (foils && foils[cp] >= V)) {
      err_set(R->err, "prompt %d: target or foil id outside the vocabulary of %d", p, V);
      goto done;
    }
  }
  TRY(op->upload(b, e->read_row, fin, sizeof(int) * np));
  TRY(op->gather_rows(b, e->gathered, transformer_residual(e->tf), e->read_row, np, d));
  TRY(transformer_final_norm(e->tf, e->final_normed, e->final_inv, e->gathered, np));
  TRY(op->download(b, inv, e->final_inv, sizeof(float) * np));
  TRY(op->upload(b, e->job_targets, job->targets + R->c0, sizeof(int) * np));
  if (foils)
    TRY(op->upload(b, e->job_foils, foils, sizeof(int) * np));
  for (int c0 = 0; c0 < np; c0 += LOGIT_ROWS) {
    const int n = np - c0 < LOGIT_ROWS ? np - c0 : LOGIT_ROWS;
    TRY(transformer_unembed(e->tf, e->logits, e->final_normed + (size_t)c0 * d, n));
    TRY(op->logit_stats(b, e->argmax + c0, e->clean_stats + (size_t)3 * c0, e->logits, n, V,
                        e->job_targets + c0, foils ? e->job_foils + c0 : NULL));
    if (R->full_logits)
      TRY(op->logit_metrics(b, e->metric_out + (size_t)5 * c0, e->clean_lp + (size_t)c0 * V,
                            e->logits, n, V, e->ident + c0, e->job_targets,
                            foils ? e->job_foils : NULL, NULL, R->cfg->final_softcap));
  }
  TRY(op->download(b, best, e->argmax, sizeof(int) * np));
  TRY(op->download(b, stats, e->clean_stats, sizeof(float) * 3 * (size_t)np));
  if (mout)
    TRY(op->download(b, mout, e->metric_out, sizeof(float) * 5 * (size_t)np));
  for (int cp = 0; cp < np; cp++) {
    const int p = R->c0 + cp;
    const float *st = stats + (size_t)3 * cp;
    R->target[p] = job->targets[p] >= 0 ? job->targets[p] : best[cp];
    R->foil[p] = foils ? foils[cp] : -1;
    R->clean_logit[p] = st[0];
    R->clean_inv[p] = inv[cp];
    R->clean_diff[p] = R->foil[p] >= 0 ? st[1] - st[2] : 0.0f;
    if (R->full_logits)
      R->clean_target_logprob[cp] = mout[5 * (size_t)cp];
  }
  /* the resolved targets and the foils, for the ablated runs' metrics */
  if (R->full_logits) {
    TRY(op->upload(b, e->ptarget, R->target + R->c0, sizeof(int) * np));
    TRY(op->upload(b, e->pfoil, R->foil + R->c0, sizeof(int) * np));
  }
  rc = 0;
  goto done;
fail:
  err_set(R->err, "backend %s: %s", op->name, b->err);
done:
  free(fin);
  free(best);
  free(inv);
  free(stats);
  free(mout);
  return rc;
}

/* Frozen-norm target directions and the clean direct effects (Eq. 10). */
static int clean_directions(run_t *R) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const int np = R->c1 - R->c0, d = R->d;
  const int layernorm = R->cfg->norm == NORM_LAYERNORM;
  const float *gamma = e->host->final_norm_w, *beta = e->host->final_norm_b;
#pragma omp parallel for schedule(static) if (np > 1)
  for (int cp = 0; cp < np; cp++) {
    const int p = R->c0 + cp;
    float *dir = R->dirs_host + (size_t)cp * d, *ud = R->udirs_host + (size_t)cp * d;
    /* a row held in blocks is decoded into ud, which effects_direction then
     * overwrites element by element with u - ubar */
    const float *u = model_unembed_row(e->host, R->target[p], ud);
    R->norm_bias_term[cp] =
        (float)effects_direction(u, e->u_mean, gamma, beta, R->clean_inv[p], layernorm, d, dir, ud);
    if (e->host->unembed_b) /* a constant of the centred logit that no component carries */
      R->unembed_bias_term[cp] = (float)(e->host->unembed_b[R->target[p]] - e->b_mean);
    for (int s = 0; s < R->n_slots; s++)
      R->clean_de[(size_t)cp * R->n_slots + s] =
          (float)effects_direct(R->clean_out + ((size_t)s * np + cp) * d, dir, d);
  }
  if (b->ops->upload(b, e->dirs, R->dirs_host, sizeof(float) * (size_t)np * d) ||
      b->ops->upload(b, e->udirs, R->udirs_host, sizeof(float) * (size_t)np * d))
    return err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  return 0;
}

static int emit_clean_rows(run_t *R) {
  const int np = R->c1 - R->c0;
  if (!R->sink || !R->sink->clean)
    return 0;
  for (int cp = 0; cp < np; cp++) {
    const int p = R->c0 + cp;
    engine_clean_t row = {.prompt = p,
                          .target = R->target[p],
                          .foil = R->foil[p],
                          .logit = R->clean_logit[p],
                          .logit_diff = R->clean_diff[p],
                          .inv_scale = R->clean_inv[p],
                          .norm_bias_term = R->norm_bias_term[cp],
                          .unembed_bias_term = R->unembed_bias_term[cp],
                          .de = R->clean_de + (size_t)cp * R->n_slots};
    row.logprob = R->full_logits ? R->clean_target_logprob[cp] : NAN;
    row.prob = R->full_logits ? expf(row.logprob) : NAN;
    if (R->sink->clean(R->sink->ctx, &row) != 0)
      return err_set(R->err, "cancelled");
  }
  return 0;
}

/* The chunk's prompts from the embeddings, every row, keeping what the
 * variants start from. With emit, also the clean rows (targets, logits,
 * directions, direct effects); without, only the sources are stored. */
int clean_pass(run_t *R, int emit) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const engine_job_t *job = R->job;
  const model_config_t *c = R->cfg;
  const int np = R->c1 - R->c0, rows = R->clean_rows;
  int *host = malloc(sizeof(int) * (size_t)rows * 3);
  if (!host)
    return err_set(R->err, "out of memory");
  int *position = host, *key_start = host + rows, *n_keys = host + 2 * rows;
  for (int cp = 0, r = 0; cp < np; cp++)
    for (int t = 0; t < job->lengths[R->c0 + cp]; t++, r++) {
      position[r] = t;
      key_start[r] = r - t;
      n_keys[r] = t + 1;
    }
  int rc = transformer_set_layout(e->tf, rows, position, key_start, n_keys, NULL, NULL, R->err);
  free(host);
  if (rc != 0)
    return -1;
  if (b->ops->upload(b, e->token_ids, job->ids + R->prompt_row[R->c0], sizeof(int) * rows))
    return err_set(R->err, "backend %s: %s", b->ops->name, b->err);
  pass_t P = {.R = R, .keep_slots = emit};
  const size_t kv_layer = (size_t)e->cap_clean * c->n_kv_heads * c->head_dim;
  transformer_pass_t pass = {
      .rows = rows,
      .ids = e->token_ids,
      .kv = KV_FILL_CACHE,
      .cache_k = e->kcache,
      .cache_v = e->vcache,
      .cache_layer_stride = kv_layer,
      .hooks = {.ctx = &P, .err = R->err, .at = clean_at, .pattern = clean_pattern}};
  if (transformer_run(e->tf, &pass, R->err) != 0)
    return -1;
  if (!emit) /* the sources are stored: targets, logits and directions are the emitting pass's */
    return 0;
  if (clean_logits(R) != 0 || clean_directions(R) != 0)
    return -1;
  return emit_clean_rows(R);
}

/* ---- a pass of variants ---- */

/* Adds a run's effects v->weight times (its repeated draws): a sum of a
 * few fp32 values in double is exact, so the averages are those of adding
 * each draw. */
static void accumulate(run_t *R, const variant_t *v, const float *de_out, int nr, int i,
                       float logit, float inv, const float *metrics) {
  const engine_job_t *job = R->job;
  const int ns = R->n_slots, cp = v->cprompt, p = v->prompt, u = v->component;
  const int run = R->acc_first[cp] + (v->k > 0 ? v->k : 0);
  accum_t *a = &R->acc[((size_t)run * n_units(job) + u) * job->n_methods + v->method];
  const unsigned char *role = R->unit_role + (size_t)u * ns;
  const float *clean_de = R->clean_de + (size_t)cp * ns;
  const double rescale = job->norm_scale_ablated ? effects_norm_rescale(inv, R->clean_inv[p]) : 1.0;
  const double w = v->weight;
  effects_change_t ch = {0};
  double upstream = 0;           /* a residual site: the clean direct effects summed in it */
  for (int s = 0; s < ns; s++) { /* Eq. 33, one slot at a time */
    /* slots below where the variant joined are the clean run's; a
     * shortcut's skipped slot its own readout (shortcuts.c) */
    const int recomputed = s == 0 ? v->stage == 0 : s - 1 >= v->stage;
    const double out = de_out[(size_t)s * nr + i];
    double ablated = recomputed ? out : clean_de[s];
    if (v->shortcut && s == v->stage && v->final_hit)
      ablated = v->shortcut == SHORTCUT_DELTA ? clean_de[s] + out : out;
    ablated *= rescale;
    const double change = ablated - clean_de[s];
    a->delta[s] += w * change;
    effects_add_role(&ch, s, role[s], change);
    if (s < R->unit_resid[u])
      upstream += clean_de[s];
  }
  if (R->unit_resid[u] >= 0) /* the residual's own projection, clean minus ablated */
    ch.direct = upstream - de_out[(size_t)ns * nr + i] * rescale;
  a->count += v->weight;
  a->total += w * effects_total(R->clean_logit[p], logit);
  a->direct += w * ch.direct;
  a->comp += w * ch.compensation;
  a->comp_attn += w * ch.compensation_attn;
  a->comp_mlp += w * ch.compensation_mlp;
  a->logit += w * logit;
  a->inv += w * inv;
  if (metrics) {
    a->logprob += w * metrics[0];
    a->prob += w * metrics[1];
    a->kl += w * metrics[2];
    a->rank += w * metrics[3];
    a->diff += w * metrics[4];
  }
}

/* The layout of a pass of variants (host arrays): each variant's rows are
 * its positions p0 .. len - 1, reading the clean keys/values of positions
 * < p0 and its own from p0 on; it joins at its stage from the clean row. */
typedef struct {
  int *position, *key_start, *n_keys, *key2_start, *n_keys2, *clean_row;
  int *read_row, *read_prompt, *stage_rows, *join_read;
} variant_layout_t;

static void layout_variants(const run_t *R, variant_t *vs, int nv, int rows, variant_layout_t *l) {
  const engine_job_t *job = R->job;
  const int n_stage = 2 * R->cfg->n_layers;
  for (int i = 0; i < nv; i++) {
    const variant_t *v = &vs[i];
    const int len = job->lengths[v->prompt], start = R->clean_start[v->cprompt];
    for (int t = v->p0; t < len; t++) {
      const int r = v->base + t - v->p0;
      l->position[r] = t;
      l->key_start[r] = start; /* clean keys/values of positions < p0 */
      l->n_keys[r] = v->p0;
      l->key2_start[r] = v->base; /* its own recomputed positions p0..t */
      l->n_keys2[r] = t - v->p0 + 1;
      l->clean_row[r] = start + t;
    }
    l->read_row[i] = v->base + len - 1 - v->p0;
    l->read_prompt[i] = v->cprompt;
  }
  for (int k = 0, i = 0; k < n_stage; k++) {
    while (i < nv && vs[i].stage <= k)
      i++;
    l->join_read[k] = i;
    l->stage_rows[k] = i < nv ? vs[i].base : rows;
  }
}

/* Runs nv variants (sorted by stage) as one pass and accumulates their
 * effects. */
int variant_pass(run_t *R, variant_t *vs, int nv) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  const model_config_t *c = R->cfg;
  const int d = R->d, ns = R->n_slots, V = c->vocab_size, n_stage = 2 * c->n_layers;
  double t0 = e->profile ? engine_now() : 0;
  e->passes++;
  int rows = 0;
  for (int i = 0; i < nv; i++) {
    vs[i].base = rows;
    rows += vs[i].rows;
  }
  int *host = malloc(sizeof(int) * ((size_t)rows * 6 + (size_t)nv * 2 + 2 * n_stage));
  float *out = malloc(sizeof(float) * ((size_t)nv * (ns + 3 + (R->full_logits ? 5 : 0))));
  unsigned char *touch = calloc((size_t)HOOK_N * c->n_layers, 1);
  int rc = -1;
  if (!host || !out || !touch) {
    err_set(R->err, "out of memory");
    goto done;
  }
  variant_layout_t l = {.position = host,
                        .key_start = host + rows,
                        .n_keys = host + 2 * rows,
                        .key2_start = host + 3 * rows,
                        .n_keys2 = host + 4 * rows,
                        .clean_row = host + 5 * rows,
                        .read_row = host + 6 * rows,
                        .read_prompt = host + 6 * rows + nv,
                        .stage_rows = host + 6 * rows + 2 * nv,
                        .join_read = host + 6 * rows + 2 * nv + n_stage};
  layout_variants(R, vs, nv, rows, &l);
  if (transformer_set_layout(e->tf, rows, l.position, l.key_start, l.n_keys, l.key2_start,
                             l.n_keys2, R->err) != 0)
    goto done;
  TRY(op->upload(b, e->clean_row, l.clean_row, sizeof(int) * rows));
  TRY(op->upload(b, e->read_row, l.read_row, sizeof(int) * nv));
  TRY(op->upload(b, e->read_prompt, l.read_prompt, sizeof(int) * nv));
  for (int i = 0; i < nv; i++) /* the sites this pass's variants intervene at */
    for (int a = unit_first(R->job, vs[i].component); a < unit_end(R->job, vs[i].component); a++) {
      int layer;
      const component_t *comp = &R->job->components[a];
      const hook_site_t site = component_site(c, comp, &layer);
      const int idx = store_index(c, site, layer);
      touch[idx] = is_resid(comp) ? 2 : touch[idx] ? touch[idx] : 1;
    }
  pass_t P = {.R = R,
              .vs = vs,
              .nv = nv,
              .n_read = nv,
              .join_read = l.join_read,
              .touch = touch,
              .read_row = l.read_row,
              .read_prompt = l.read_prompt};
  const size_t kv_layer = (size_t)e->cap_clean * c->n_kv_heads * c->head_dim;
  transformer_pass_t pass = {.rows = rows,
                             .stage_rows = l.stage_rows,
                             .kv = KV_CACHE_PREFIX,
                             .cache_k = e->kcache,
                             .cache_v = e->vcache,
                             .cache_layer_stride = kv_layer,
                             .hooks = {.ctx = &P,
                                       .err = R->err,
                                       .join = variant_join,
                                       .at = variant_at,
                                       .pattern = variant_pattern}};
  engine_phase(e, PH_TABLES, &t0);
  if (transformer_run(e->tf, &pass, R->err) != 0)
    goto done;
  engine_phase(e, PH_LAYERS, &t0);

  /* the final norm at each variant's final row; centred target logits; with
   * a full-distribution metric, each run's logits and their metrics against
   * its prompt's clean log-probs, where the logits are (logit_metrics) */
  float *de_out = out, *logit = out + (size_t)nv * (ns + 1), *inv = logit + nv, *metrics = inv + nv;
  TRY(op->gather_rows(b, e->gathered, transformer_residual(e->tf), e->read_row, nv, d));
  TRY(transformer_final_norm(e->tf, e->final_normed, e->final_inv, e->gathered, nv));
  TRY(op->row_dots(b, e->logit_out, e->ident, e->final_normed, e->ident, e->udirs, e->read_prompt,
                   nv, d));
  for (int c0 = 0; c0 < nv && R->full_logits; c0 += LOGIT_ROWS) {
    const int n = nv - c0 < LOGIT_ROWS ? nv - c0 : LOGIT_ROWS;
    TRY(transformer_unembed(e->tf, e->logits, e->final_normed + (size_t)c0 * d, n));
    TRY(op->logit_metrics(b, e->metric_out + (size_t)5 * c0, NULL, e->logits, n, V,
                          e->read_prompt + c0, e->ptarget, e->pfoil, e->clean_lp,
                          c->final_softcap));
  }
  TRY(op->download(b, logit, e->logit_out, sizeof(float) * nv));
  TRY(op->download(b, inv, e->final_inv, sizeof(float) * nv));
  TRY(op->download(b, de_out, e->de_out, sizeof(float) * (size_t)nv * (ns + 1)));
  if (R->full_logits)
    TRY(op->download(b, metrics, e->metric_out, sizeof(float) * 5 * (size_t)nv));
  engine_phase(e, PH_READOUT, &t0);
  for (int i = 0; i < nv && e->host->unembed_b; i++) /* the centred logit's bias constant */
    logit[i] += R->unembed_bias_term[vs[i].cprompt];
  for (int i = 0; i < nv; i++)
    accumulate(R, &vs[i], de_out, nv, i, logit[i], inv[i],
               R->full_logits ? metrics + 5 * (size_t)i : NULL);
  engine_phase(e, PH_ACCUMULATE, &t0);
  rc = 0;
  goto done;
fail:
  err_set(R->err, "backend %s: %s", op->name, b->err);
done:
  free(host);
  free(out);
  free(touch);
  return rc;
}
