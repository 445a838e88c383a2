/* engine.c - the batched ablation engine's run: chunks of prompts, each a
 * clean pass then its variants in passes sorted by the sub-stage they join
 * at, rows out through the sink; see engine.h for what it computes and
 * engine_parts.h for where each part lives. */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effects.h"
#include "engine_parts.h"
#include "rng.h"

const char *engine_precision(const engine_t *e, int tf32) {
  return e->b->ops->set_precision(e->b, tf32) ? "tf32" : "fp32";
}

/* effects_row_t over the host model's unembedding (fp32, or decoded from
 * its blocks) */
static const float *unembed_row(const void *m, int t, float *buf) {
  return model_unembed_row(m, t, buf);
}

engine_t *engine_create(const model_t *m, backend_t *b, char *err) {
  engine_t *e = calloc(1, sizeof(*e));
  if (!e) {
    err_set(err, "out of memory");
    return NULL;
  }
  e->host = m;
  e->b = b;
  const char *prof = getenv("HYDRA_ENGINE_PROFILE");
  e->profile = prof && atoi(prof) > 0;
  const model_config_t *c = &m->cfg;
  /* The paper's direct effect reads a component's output through the final
   * norm alone; with the stream re-normed after every sublayer (OPT-350m) it
   * passes every later norm too, which the engine does not freeze. */
  const char *why = c->post_residual_norms
                        ? "norms after the residual adds (do_layer_norm_before false): a "
                          "component's direct effect would pass every later norm, not the final "
                          "one alone"
                    : c->no_final_norm ? "a model without a final norm"
                    : c->embed_proj_dim
                        ? "a projected unembedding (word_embed_proj_dim): the direct effects' "
                          "directions are d_model wide"
                        : NULL;
  if (why) {
    err_set(err,
            "model %s (%s): the ablation engine does not support %s (hydra forward and hydra "
            "info read the model)",
            m->path, c->family, why);
    engine_destroy(e);
    return NULL;
  }
  e->width_max = c->d_model;
  if (c->n_heads * c->head_dim > e->width_max)
    e->width_max = c->n_heads * c->head_dim;
  if (c->d_mlp > e->width_max)
    e->width_max = c->d_mlp;
  if (!(e->tf = transformer_create(m, b, err)))
    goto fail;
  e->dev = transformer_weights(e->tf);
  if (!(e->u_mean = calloc((size_t)c->d_model, sizeof(float)))) {
    err_set(err, "out of memory");
    goto fail;
  }
  effects_mean_unembed(unembed_row, m, c->vocab_size, c->d_model, e->u_mean);
  for (int t = 0; m->unembed_b && t < c->vocab_size; t++)
    e->b_mean += m->unembed_b[t] / (double)c->vocab_size;
  return e;
fail:
  engine_destroy(e);
  return NULL;
}

void engine_destroy(engine_t *e) {
  if (!e)
    return;
  engine_print_profile(e);
  drop_all_kept(e);
  free_pass_buffers(e);
  free_clean_buffers(e);
  ensure_lp_buffer(e, 0, NULL);
  transformer_destroy(e->tf);
  free(e->u_mean);
  free(e);
}

static int check_job(const engine_t *e, const engine_job_t *job, char *err) {
  const model_config_t *c = &e->host->cfg;
  if (job->n_prompts < 1 || job->n_sources < 0)
    return err_set(err, "no prompts");
  if (job->n_components < 0 || job->n_methods < 0 || job->samples < 1)
    return err_set(err, "bad component, method or sample counts");
  for (int p = 0; p < n_all_prompts(job); p++) {
    const int len = job->lengths[p];
    if (len < 1 || len > c->max_positions)
      return err_set(err, "prompt %d: %d tokens (the model takes 1 to %d)", p, len,
                     c->max_positions);
    const int n = job->position_offsets[p + 1] - job->position_offsets[p];
    if (n < 1 && job->n_components > 0)
      return err_set(err, "prompt %d: no position to intervene at", p);
    for (int k = 0; k < n; k++) {
      const int t = job->position_list[job->position_offsets[p] + k];
      if (t < 0 || t >= len || (k && t <= job->position_list[job->position_offsets[p] + k - 1]))
        return err_set(err, "prompt %d: intervention positions must increase within [0, %d)", p,
                       len);
    }
  }
  for (int p = 0; job->cell_offsets && p < job->n_prompts; p++) { /* spans cover each list */
    const int c0 = job->cell_offsets[p], c1 = job->cell_offsets[p + 1];
    int ok = c1 >= c0 && (c1 == c0 ? job->position_offsets[p + 1] == job->position_offsets[p]
                                   : job->cell_start[c0] == job->position_offsets[p] &&
                                         job->cell_start[c1] == job->position_offsets[p + 1]);
    for (int c = c0; ok && c < c1; c++)
      ok = job->cell_start[c + 1] > job->cell_start[c];
    if (!ok)
      return err_set(err, "prompt %d: grid cells do not cover its positions in order", p);
  }
  long row = 0;
  for (int p = 0; p < n_all_prompts(job); p++)
    for (int t = 0; t < job->lengths[p]; t++, row++)
      if (job->ids[row] < 0 || job->ids[row] >= c->vocab_size)
        return err_set(err, "prompt %d token %d: id %d is outside the vocabulary [0, %d)", p, t,
                       job->ids[row], c->vocab_size);
  for (int i = 0; i < job->n_components; i++) {
    const component_t *k = &job->components[i];
    const int per_head =
        k->kind == COMPONENT_HEAD || k->kind == COMPONENT_Q || k->kind == COMPONENT_PATTERN;
    const int limit = per_head                                           ? c->n_heads
                      : k->kind == COMPONENT_K || k->kind == COMPONENT_V ? c->n_kv_heads
                                                                         : c->d_mlp;
    const int indexed =
        per_head || k->kind == COMPONENT_NEURON || k->kind == COMPONENT_K || k->kind == COMPONENT_V;
    if ((k->kind != COMPONENT_EMBED && (k->layer < 0 || k->layer >= c->n_layers)) ||
        (indexed && (k->index < 0 || k->index >= limit)))
      return err_set(err, "component %d is outside the model", i);
    if (k->kind == COMPONENT_RESID_MID && c->parallel_residual)
      return err_set(err, "component %d: resid_mid of a block with a parallel residual", i);
  }
  if (job->unit_first) {
    if (job->n_units < 0 || job->unit_first[0] != 0 ||
        job->unit_first[job->n_units] != job->n_components)
      return err_set(err, "units do not cover the components");
    for (int u = 0; u < job->n_units; u++) {
      if (job->unit_first[u + 1] <= job->unit_first[u])
        return err_set(err, "unit %d has no component", u);
      for (int a = job->unit_first[u]; a < job->unit_first[u + 1]; a++)
        if (is_resid(&job->components[a]) && job->unit_first[u + 1] - job->unit_first[u] > 1)
          return err_set(err, "unit %d: a residual-stream site is a unit of its own", u);
    }
  }
  for (int m = 0; m < job->n_methods; m++) {
    const method_t *k = &job->methods[m];
    if (k->kind == METHOD_RESAMPLE && job->n_prompts < 2)
      return err_set(err, "resample needs at least 2 prompts to draw from");
    if (k->kind == METHOD_PATCH &&
        (k->source == METHOD_SOURCE_COUNTERFACTUAL || k->source == METHOD_SOURCE_CLEAN)) {
      for (int p = 0; p < job->n_prompts; p++)
        if (!job->pair || job->pair[p] < 0 || job->pair[p] >= n_all_prompts(job))
          return err_set(err, "prompt %d has no counterfactual to patch from", p);
    } else if (k->kind == METHOD_PATCH && (k->source < 0 || k->source >= job->n_prompts))
      return err_set(err, "patch source %d is not a prompt of the job", k->source);
  }
  return 0;
}

/* The chunk of prompts starting at c0: clean rows within the budget, and the
 * accumulator within its own. */
static int chunk_end(const run_t *R, int c0, int budget) {
  const engine_job_t *job = R->job;
  const long per_run = (long)n_units(job) * job->n_methods * (R->n_slots + 16);
  int c1 = c0, rows = 0;
  long runs = 0;
  while (c1 < n_all_prompts(job)) {
    const long more = c1 < job->n_prompts ? prompt_runs(R, c1) : 0;
    if (c1 > c0 &&
        (rows + job->lengths[c1] > budget || (runs + more) * per_run > ACCUMULATOR_FLOATS ||
         (R->lp_prompts > 0 && c1 - c0 + 1 > R->lp_prompts)))
      break;
    runs += more;
    rows += job->lengths[c1++];
  }
  return c1;
}

/* The chunks of prompts [c0, c1) (as the run walks them, the last cut at c1):
 * widens *max_np, *max_rows and *max_runs to the largest one's prompts,
 * rows and accumulator runs (a grid's positions);
 * returns how many there are. */
static int chunk_sizes(const run_t *R, int c0, int c1, int budget, int *max_np, int *max_rows,
                       long *max_runs) {
  int n = 0;
  for (int a = c0; a < c1; n++) {
    int b = chunk_end(R, a, budget);
    if (b > c1)
      b = c1;
    if (b - a > *max_np)
      *max_np = b - a;
    long runs = 0;
    for (int p = a; p < b && p < R->job->n_prompts; p++)
      runs += prompt_runs(R, p);
    if (runs > *max_runs)
      *max_runs = runs;
    if (R->prompt_row[b] - R->prompt_row[a] > *max_rows)
      *max_rows = (int)(R->prompt_row[b] - R->prompt_row[a]);
    a = b;
  }
  return n;
}

int engine_resample_source(const engine_job_t *job, int p, int u, int s) {
  const int r = (int)(rng_mix(job->seed, (uint64_t)p, (uint64_t)u, (uint64_t)s) %
                      (uint64_t)(job->n_prompts - 1));
  return r < p ? r : r + 1;
}

/* Every distinct variant of the chunk's prompts, sorted by the sub-stage
 * they join at (stably: a counting sort over the 2 n_layers stages). Resample
 * draws with replacement: a draw of a source prompt an earlier draw of the
 * same (prompt, position, unit, method) made is the same run, so it only adds
 * to that variant's weight (unless job->each_draw). */
static variant_t *chunk_variants(run_t *R, long *n_out) {
  const engine_job_t *job = R->job;
  const int n_stage = 2 * R->cfg->n_layers, P = job->n_prompts;
  const long n = engine_range_variants(job, R->c0, R->c1);
  variant_t *vs = malloc(sizeof(variant_t) * (n ? n : 1)),
            *sorted = malloc(sizeof(variant_t) * (n ? n : 1));
  long *at = calloc((size_t)n_stage + 1, sizeof(long));
  /* per source prompt: the group (a run of draws) that last drew it, and its
   * variant there */
  long *drawn_in = malloc(sizeof(long) * P), *drawn_as = malloc(sizeof(long) * P);
  if (!vs || !sorted || !at || !drawn_in || !drawn_as) {
    free(vs);
    free(sorted);
    free(at);
    free(drawn_in);
    free(drawn_as);
    return NULL;
  }
  for (int p = 0; p < P; p++)
    drawn_in[p] = -1;
  long i = 0, group = 0;
  for (int p = R->c0; p < R->c1; p++)
    for (int k = job->each_position ? 0 : -1; k < (job->each_position ? prompt_runs(R, p) : 0); k++)
      for (int c = 0; c < n_units(job); c++)
        for (int m = 0; m < job->n_methods; m++) {
          const method_t *method = &job->methods[m];
          const int samples = method->kind == METHOD_RESAMPLE ? job->samples : 1;
          group++;
          for (int s = 0; s < samples; s++) {
            if (method->kind == METHOD_RESAMPLE && !job->each_draw) {
              const int src = engine_resample_source(job, p, c, s);
              if (drawn_in[src] == group) { /* the same run as an earlier draw */
                vs[drawn_as[src]].weight++;
                continue;
              }
              drawn_in[src] = group;
              drawn_as[src] = i;
            }
            variant_t *v = &vs[i];
            v->weight = 1;
            v->prompt = p;
            v->cprompt = p - R->c0;
            v->component = c;
            v->method = m;
            v->sample = s;
            v->source = -1;
            if (method->kind == METHOD_PATCH)
              v->source = method->source == METHOD_SOURCE_COUNTERFACTUAL ||
                                  method->source == METHOD_SOURCE_CLEAN
                              ? job->pair[p]
                              : method->source;
            else if (method->kind == METHOD_RESAMPLE)
              v->source = engine_resample_source(job, p, c, s);
            int k0, k1;
            run_positions(R, p, k, &k0, &k1);
            const int first = job->position_list[job->position_offsets[p] + k0];
            v->k = k;
            v->stage = job->reuse ? unit_stage(job, R->cfg, c) : 0;
            v->shortcut = shortcut_kind(R, c, m, &v->stage);
            v->final_hit =
                job->position_list[job->position_offsets[p] + k1 - 1] == job->lengths[p] - 1;
            v->p0 = job->reuse ? first : 0;
            v->rows = job->lengths[p] - v->p0;
            v->order = i;
            at[v->stage + 1]++;
            i++;
          }
        }
  for (int k = 0; k < n_stage; k++)
    at[k + 1] += at[k];
  for (long j = 0; j < i; j++)
    sorted[at[vs[j].stage]++] = vs[j];
  free(vs);
  free(at);
  free(drawn_in);
  free(drawn_as);
  *n_out = i;
  return sorted;
}

static int emit_chunk(run_t *R) {
  const engine_job_t *job = R->job;
  const int ns = R->n_slots;
  float *delta = malloc(sizeof(float) * ns);
  if (!delta)
    return err_set(R->err, "out of memory");
  int rc = 0;
  for (int cp = 0; cp < R->c1 - R->c0 && !rc; cp++)
    for (int run = 0; run < prompt_runs(R, R->c0 + cp) && !rc; run++)
      for (int c = 0; c < n_units(job) && !rc; c++)
        for (int m = 0; m < job->n_methods && !rc; m++) {
          const accum_t *a =
              &R->acc[((size_t)(R->acc_first[cp] + run) * n_units(job) + c) * job->n_methods + m];
          const double n = a->count ? a->count : 1;
          for (int s = 0; s < ns; s++)
            delta[s] = (float)(a->delta[s] / n);
          engine_variant_t row = {.prompt = R->c0 + cp,
                                  .position = job->each_position ? run_key(R, R->c0 + cp, run) : -1,
                                  .component = c,
                                  .method = m,
                                  .samples = a->count,
                                  .total_effect = (float)(a->total / n),
                                  .direct_effect = (float)(a->direct / n),
                                  .compensation = (float)(a->comp / n),
                                  .compensation_attn = (float)(a->comp_attn / n),
                                  .compensation_mlp = (float)(a->comp_mlp / n),
                                  .ablated_logit = (float)(a->logit / n),
                                  .inv_scale = (float)(a->inv / n),
                                  .logprob = R->full_logits ? (float)(a->logprob / n) : NAN,
                                  .prob = R->full_logits ? (float)(a->prob / n) : NAN,
                                  .kl = R->full_logits ? (float)(a->kl / n) : NAN,
                                  .rank = R->full_logits ? (float)(a->rank / n) : NAN,
                                  .logit_diff = R->full_logits ? (float)(a->diff / n) : NAN,
                                  .delta_de = delta};
          if (R->sink && R->sink->variant && R->sink->variant(R->sink->ctx, &row) != 0)
            rc = err_set(R->err, "cancelled");
        }
  free(delta);
  return rc;
}

static void free_run(run_t *R) {
  free_store(R->e, &R->src);
  free(R->prompt_row);
  free(R->target);
  free(R->foil);
  free(R->clean_logit);
  free(R->clean_inv);
  free(R->clean_diff);
  free(R->clean_start);
  free(R->clean_out);
  free(R->clean_de);
  free(R->clean_target_logprob);
  free(R->dirs_host);
  free(R->udirs_host);
  free(R->norm_bias_term);
  free(R->unembed_bias_term);
  free(R->acc);
  free(R->acc_first);
  free(R->acc_delta);
  free(R->unit_role);
  free(R->unit_resid);
}

/* Sets up chunk [c0, c1): row offsets and host buffers. */
static int begin_chunk(run_t *R, int c0, int c1) {
  const int np = c1 - c0, ns = R->n_slots, d = R->d;
  R->c0 = c0;
  R->c1 = c1;
  R->clean_rows = (int)(R->prompt_row[c1] - R->prompt_row[c0]);
  for (int cp = 0; cp < np; cp++)
    R->clean_start[cp] = (int)(R->prompt_row[c0 + cp] - R->prompt_row[c0]);
  int runs = 0;
  for (int cp = 0; cp < np; cp++) {
    R->acc_first[cp] = runs;
    runs += R->c0 + cp < R->job->n_prompts ? prompt_runs(R, R->c0 + cp) : 0;
  }
  const size_t n_acc = (size_t)runs * n_units(R->job) * R->job->n_methods;
  memset(R->acc, 0, sizeof(accum_t) * n_acc);
  memset(R->acc_delta, 0, sizeof(double) * n_acc * ns);
  for (size_t i = 0; i < n_acc; i++)
    R->acc[i].delta = R->acc_delta + i * ns;
  (void)d;
  return 0;
}

int engine_run(engine_t *e, const engine_job_t *job, const engine_sink_t *sink, char *err) {
  char local[HYDRA_ERR_LEN] = "";
  if (!err)
    err = local;
  err[0] = '\0';
  if (check_job(e, job, err) != 0)
    return -1;
  if (job->prompt_end > 0 && (job->prompt_first < 0 || job->prompt_first >= job->prompt_end ||
                              job->prompt_end > job->n_prompts))
    return err_set(err, "prompt range [%d, %d) is not within the job's %d prompts",
                   job->prompt_first, job->prompt_end, job->n_prompts);
  const model_config_t *c = &e->host->cfg;
  run_t R = {.e = e,
             .job = job,
             .sink = sink,
             .cfg = c,
             .n_slots = engine_n_slots(c),
             .d = c->d_model,
             .err = err};
  R.full_logits = (job->metrics & (METRIC_LOGPROB | METRIC_PROB | METRIC_KL | METRIC_RANK |
                                   METRIC_LOGIT_DIFF)) != 0;
  const int P = job->n_prompts, P_all = n_all_prompts(job), ns = R.n_slots, d = R.d;
  int longest = 0;
  for (int p = 0; p < P_all; p++)
    if (job->lengths[p] > longest)
      longest = job->lengths[p];
  R.pattern_stride = longest;
  const int kept = find_kept(e, job->source_key);
  const size_t lp_row = sizeof(float) * (size_t)c->vocab_size, stored = store_bytes(&R),
               least = stored + (R.full_logits ? lp_row : 0) + (size_t)longest * bytes_per_row(e);
  /* Chunks of a full-distribution job hold at most lp_prompts prompts' clean
   * log-probs in backend memory (the reference of the ablated runs' KL):
   * CLEAN_LP_BYTES, a quarter of the memory, and what the store and a pass
   * over the longest prompt leave. */
  if (R.full_logits) {
    const size_t total = memory_total(e);
    size_t cap = CLEAN_LP_BYTES;
    if (total > 0 && total / 4 < cap)
      cap = total / 4;
    if (total > 0 && total > least && total - least + lp_row < cap)
      cap = total - least + lp_row;
    R.lp_prompts = cap / lp_row > (size_t)P ? P : (int)(cap / lp_row);
    if (R.lp_prompts < 1)
      R.lp_prompts = 1;
  }
  const size_t reserved = stored + lp_row * R.lp_prompts;
  /* A memory budget the job cannot fit in fails the job, never the process. */
  if (e->memory_budget > 0 && least > e->memory_budget)
    return err_set(err,
                   "the job needs at least %.1f MiB of backend memory (clean outputs %.1f MiB, "
                   "a pass over its longest prompt of %d tokens %.1f MiB%s), over the memory "
                   "budget of %.1f MiB",
                   least / 1048576.0, stored / 1048576.0, longest,
                   (double)longest * bytes_per_row(e) / 1048576.0,
                   R.full_logits ? ", a prompt's clean log-probs" : "",
                   e->memory_budget / 1048576.0);
  /* Passes are sized as if other jobs' kept stores were free; those stores
   * then stay only as long as they fit beside this run (least recent first
   * out): keeping them never costs a run rows per pass. */
  const int budget = job->max_rows > 0 ? (job->max_rows > longest ? job->max_rows : longest)
                                       : pass_rows(e, longest, reserved, NULL);
  const size_t total = memory_total(e);
  const size_t own = reserved + (size_t)budget * bytes_per_row(e);
  while (total > 0 && own + kept_bytes(e) - (kept >= 0 ? e->kept[kept].bytes : 0) > total &&
         drop_oldest_kept(e, kept))
    ;
  e->b->ops->set_precision(e->b, job->tf32);
  int rc = -1;
  double t_run = 0; /* HYDRA_ENGINE_PROFILE */
  R.prompt_row = malloc(sizeof(long) * (P_all + 1));
  R.target = malloc(sizeof(int) * P);
  R.foil = malloc(sizeof(int) * P);
  R.clean_logit = malloc(sizeof(float) * P);
  R.clean_inv = malloc(sizeof(float) * P);
  R.clean_diff = malloc(sizeof(float) * P);
  if (!R.prompt_row || !R.target || !R.foil || !R.clean_logit || !R.clean_inv || !R.clean_diff) {
    err_set(err, "out of memory");
    goto done;
  }
  if (unit_roles(&R) != 0)
    goto done;
  R.prompt_row[0] = 0;
  for (int p = 0; p < P_all; p++)
    R.prompt_row[p + 1] = R.prompt_row[p] + job->lengths[p];
  if (alloc_store(&R, kept) != 0) {
    free_store(e, &R.src);                             /* the partial one */
    if (!drop_all_kept(e) || alloc_store(&R, -1) != 0) /* other jobs' stores go back: once more */
      goto done;
  }

  /* the largest chunk sizes every buffer once: the chunks from prompt 0 (the
   * sources' passes) and those of the run's range, which can hold more */
  const int first = job->prompt_end > 0 ? job->prompt_first : 0;
  const int end = job->prompt_end > 0 ? job->prompt_end : P;
  int max_np = 0, max_rows = 0;
  long max_runs = 0;
  const int n_chunks = chunk_sizes(&R, 0, P_all, budget, &max_np, &max_rows, &max_runs);
  chunk_sizes(&R, first, end, budget, &max_np, &max_rows, &max_runs);
  const size_t n_acc = (size_t)max_runs * n_units(job) * job->n_methods;
  R.clean_start = malloc(sizeof(int) * max_np);
  R.acc_first = malloc(sizeof(int) * max_np);
  R.clean_out = malloc(sizeof(float) * (size_t)max_np * ns * d);
  R.clean_de = malloc(sizeof(float) * (size_t)max_np * ns);
  if (R.full_logits)
    R.clean_target_logprob = malloc(sizeof(float) * max_np);
  R.dirs_host = malloc(sizeof(float) * (size_t)max_np * d);
  R.udirs_host = malloc(sizeof(float) * (size_t)max_np * d);
  R.norm_bias_term = malloc(sizeof(float) * max_np);
  R.unembed_bias_term = calloc((size_t)max_np, sizeof(float));
  R.acc = malloc(sizeof(accum_t) * (n_acc ? n_acc : 1));
  R.acc_delta = malloc(sizeof(double) * (n_acc ? n_acc : 1) * ns);
  if (!R.clean_start || !R.clean_out || !R.clean_de || (R.full_logits && !R.clean_target_logprob) ||
      !R.dirs_host || !R.udirs_host || !R.norm_bias_term || !R.unembed_bias_term || !R.acc ||
      !R.acc_delta || !R.acc_first) {
    err_set(err, "out of memory for chunks of %d prompts", max_np);
    goto done;
  }
  const int pass_rows = budget > max_rows ? budget : max_rows;
  const int reads = budget > max_np ? budget : max_np, lp = R.full_logits ? max_np : 0;
  if (ensure_lp_buffer(e, lp, err) != 0 ||
      ensure_pass_buffers(e, pass_rows, max_np, reads, err) != 0 ||
      ensure_clean_buffers(e, max_rows, err) != 0) {
    if (!drop_all_kept(e) || /* other jobs' stores go back: once more */
        ensure_lp_buffer(e, lp, err) != 0 ||
        ensure_pass_buffers(e, pass_rows, max_np, reads, err) != 0 ||
        ensure_clean_buffers(e, max_rows, err) != 0)
      goto done;
  }

  /* Sources from other chunks must be there before any variant runs. */
  t_run = e->profile ? engine_now() : 0;
  double t0 = t_run;
  int needs_sources = 0;
  for (int m = 0; m < job->n_methods; m++)
    needs_sources |= method_needs_source(job->methods[m].kind);
  /* a store of shortcuts' clean values only (shortcuts.c) is the chunk's own: not kept */
  const int holds_sources = needs_sources;
  if (kept >= 0) /* filled by an earlier run of this job, means included */
    needs_sources = 0;
  /* (source-only prompts are never in an emitting chunk: their own passes) */
  if (needs_sources && (n_chunks > 1 || P_all > P))
    for (int c0 = 0; c0 < P_all;) {
      int c1 = chunk_end(&R, c0, budget);
      if (begin_chunk(&R, c0, c1) != 0 || clean_pass(&R, 0) != 0)
        goto done;
      c0 = c1;
    }
  engine_phase(e, PH_CLEAN, &t0);

  R.total = engine_range_variants(job, first, end);
  if (needs_sources && n_chunks == 1 && P_all == P) /* the single chunk's clean pass fills it */
    needs_sources = 2;
  if (needs_sources == 2 && (first > 0 || end < P)) {
    if (begin_chunk(&R, 0, chunk_end(&R, 0, budget)) != 0 || clean_pass(&R, 0) != 0)
      goto done;
    compute_means(&R);
  }
  engine_phase(e, PH_CLEAN, &t0);
  for (int c0 = first; c0 < end;) {
    int c1 = chunk_end(&R, c0, budget);
    if (c1 > end)
      c1 = end;
    if (begin_chunk(&R, c0, c1) != 0 || clean_pass(&R, 1) != 0)
      goto done;
    if (needs_sources && c0 == first)
      compute_means(&R);
    engine_phase(e, PH_CLEAN, &t0);
    long nv = 0;
    variant_t *vs = chunk_variants(&R, &nv);
    if (!vs) {
      err_set(err, "out of memory");
      goto done;
    }
    engine_phase(e, PH_SORT, &t0);
    for (long i = 0; i < nv;) {
      long j = i, rows = 0, draws = 0;
      while (j < nv && (j == i || rows + vs[j].rows <= budget)) {
        draws += vs[j].weight;
        rows += vs[j++].rows;
      }
      if (variant_pass(&R, vs + i, (int)(j - i)) != 0) {
        free(vs);
        goto done;
      }
      if (e->profile) /* variant_pass timed its own phases */
        t0 = engine_now();
      R.done += draws; /* progress in the job's draws */
      if (sink && sink->progress && sink->progress(sink->ctx, R.done, R.total) != 0) {
        free(vs);
        err_set(err, "cancelled");
        goto done;
      }
      engine_phase(e, PH_EMIT, &t0);
      i = j;
    }
    free(vs);
    if (emit_chunk(&R) != 0)
      goto done;
    engine_phase(e, PH_EMIT, &t0);
    c0 = c1;
  }
  rc = 0;
  if (job->source_key && holds_sources && stored > 0) /* complete: the job's next run starts here */
    keep_store(&R, stored);
done:
  if (e->profile && t_run > 0) { /* ended runs too: the phases counted them */
    e->run_s += engine_now() - t_run;
    e->runs++;
  }
  free_run(&R);
  return rc;
}
