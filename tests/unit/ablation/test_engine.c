/* test_engine - the ablation engine against goldens computed with Hugging
 * Face transformers and torch forward hooks (tests/golden/make_ablation_golden.py),
 * plus the engine's own invariants.
 *
 * usage: test_engine ROOT GOLDEN.json [--backend NAME] [--copy-weights]
 * (--copy-weights: a host-memory backend gets the weights copied as a GPU
 * backend does, bf16 projections held as bf16: the CUDA path's storage,
 * checked on the CPU)
 *
 * Bounds (fp32; "scale" = the largest |clean centred target logit| of the
 * golden's prompts):
 *   clean logit, direct effects, total effects, ablated logits, direct
 *   effects of ablated runs, log-probs: |ours - theirs| <= 1e-4 * scale;
 *   final-norm 1/scale: relative 1e-4; KL: |ours - theirs| <= 1e-4 * max(1, KL);
 *   rank: equal, or off by one where the two logits involved are within 1e-4 * scale.
 * Invariants: the direct effects plus the norm's bias term sum to the clean
 * logit (1e-5 * scale); reuse on and off agree, and so do one run and the same
 * prompts split into work units, with many small passes (5e-5 * scale, see
 * BATCH_BOUND; work units bit for bit on a backend whose products are
 * batch-invariant, the CPU's); scale:1 changes nothing (1e-5 * scale);
 * with the ablated norm scale, total effect == -(sum of direct-effect changes);
 * resample's repeated draws computed once give the rows of computing every
 * draw (within DRAW_BOUND: the same arithmetic in other batches). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "checkpoint.h"
#include "engine.h"
#include "model.h"

#define MAX_ROWS 20000
/* Reuse on/off and work units run the same arithmetic in batches of other
 * sizes; BLAS picks its blocking by size, so sums round differently: measured
 * up to 1.3e-5 of the logit scale on SmolLM2 under noise at every position
 * (30 fp32 layers). */
#define BATCH_BOUND 5e-5
/* Repeated resample draws computed once against every draw computed: the
 * same runs, their passes cut into other batches, so BLAS may round
 * differently (BATCH_BOUND's cause); the sums over draws are exact in double. */
#define DRAW_BOUND BATCH_BOUND
/* Every golden value: 1e-4 of the logit scale (scale_ref). */
#define GOLDEN_BOUND 1e-4

static double scale_ref = 1.0;

typedef struct {
  int prompt, component, method;
  engine_variant_t row;
  float *delta;
} vrow_t;

typedef struct {
  int n_slots;
  engine_clean_t clean[64];
  float clean_de[64][256];
  vrow_t *rows;
  int n_rows, cap;
  int n_clean, clean_first; /* clean rows seen; of them, before the first variant row */
} collect_t;

static int on_clean(void *ctx, const engine_clean_t *r) {
  collect_t *c = ctx;
  c->clean[r->prompt] = *r;
  memcpy(c->clean_de[r->prompt], r->de, sizeof(float) * c->n_slots);
  c->clean[r->prompt].de = c->clean_de[r->prompt];
  c->n_clean++;
  if (c->n_rows == 0)
    c->clean_first = c->n_clean;
  return 0;
}

static int on_variant(void *ctx, const engine_variant_t *r) {
  collect_t *c = ctx;
  if (c->n_rows == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 256;
    c->rows = realloc(c->rows, sizeof(vrow_t) * c->cap);
  }
  vrow_t *v = &c->rows[c->n_rows++];
  v->prompt = r->prompt, v->component = r->component, v->method = r->method;
  v->row = *r;
  v->delta = malloc(sizeof(float) * c->n_slots);
  memcpy(v->delta, r->delta_de, sizeof(float) * c->n_slots);
  v->row.delta_de = v->delta;
  return 0;
}

static void collect_free(collect_t *c) {
  for (int i = 0; i < c->n_rows; i++)
    free(c->rows[i].delta);
  free(c->rows);
  c->rows = NULL;
  c->n_rows = c->cap = 0;
  c->n_clean = c->clean_first = 0;
}

static int parse_component(const char *s, component_t *c) {
  c->layer = c->index = -1;
  if (strcmp(s, "embed") == 0) {
    c->kind = COMPONENT_EMBED;
    return 0;
  }
  if (sscanf(s, "attn.%d", &c->layer) == 1 && !strchr(s + 5, '.')) {
    c->kind = COMPONENT_ATTN;
    return 0;
  }
  if (sscanf(s, "mlp.%d", &c->layer) == 1 && !strchr(s + 4, '.')) {
    c->kind = COMPONENT_MLP;
    return 0;
  }
  if (sscanf(s, "head.%d.%d", &c->layer, &c->index) == 2) {
    c->kind = COMPONENT_HEAD;
    return 0;
  }
  if (sscanf(s, "neuron.%d.%d", &c->layer, &c->index) == 2) {
    c->kind = COMPONENT_NEURON;
    return 0;
  }
  return -1;
}

/* The golden's prompts as an engine job over the given components and one method. */
typedef struct {
  int n_prompts, lengths[64], ids[4096], targets[64], offsets[65], positions[64];
  component_t comps[256];
  char names[256][32];
  int n_comps;
} setup_t;

static engine_job_t make_job(setup_t *S, const method_t *method, int n_methods, unsigned metrics) {
  engine_job_t j = {.n_prompts = S->n_prompts,
                    .lengths = S->lengths,
                    .ids = S->ids,
                    .targets = S->targets,
                    .components = S->comps,
                    .n_components = S->n_comps,
                    .methods = method,
                    .n_methods = n_methods,
                    .samples = 1,
                    .position_offsets = S->offsets,
                    .position_list = S->positions,
                    .metrics = metrics,
                    .reuse = 1};
  return j;
}

static int run(engine_t *e, engine_job_t *job, collect_t *out, int n_slots) {
  char err[HYDRA_ERR_LEN];
  collect_free(out);
  out->n_slots = n_slots;
  engine_sink_t sink = {.ctx = out, .clean = on_clean, .variant = on_variant};
  if (engine_run(e, job, &sink, err) != 0) {
    FAIL("engine_run: %s", err);
    return -1;
  }
  return 0;
}

static const vrow_t *find(const collect_t *c, int prompt, int component) {
  for (int i = 0; i < c->n_rows; i++)
    if (c->rows[i].prompt == prompt && c->rows[i].component == component)
      return &c->rows[i];
  return NULL;
}

/* A CPU backend whose memory runs out at a cap (bytes in use). */
static size_t capped_used, capped_cap;
static const backend_ops_t *cpu_ops;
static void *capped_alloc(backend_t *b, size_t bytes) {
  if (capped_cap && capped_used + bytes > capped_cap) {
    snprintf(b->err, sizeof(b->err), "out of memory (test cap)");
    return NULL;
  }
  size_t *p = malloc(bytes + 16); /* the size in front of the buffer */
  if (!p)
    return NULL;
  *p = bytes;
  capped_used += bytes;
  return (char *)p + 16;
}
static void capped_free(backend_t *b, void *q) {
  (void)b;
  if (!q)
    return;
  size_t *p = (size_t *)((char *)q - 16);
  capped_used -= *p;
  free(p);
}

/* Other jobs' kept stores go back when a run's allocation fails, and the
 * run is retried: jobs 1 and 2 keep their stores, memory is capped below
 * what job 3 needs beside them, and job 3 still runs, alone kept after. */
static void test_oom_retry(const model_t *m, const engine_job_t *job, int n_slots) {
  char err[HYDRA_ERR_LEN];
  backend_t *b = backend_create("cpu", 0, err);
  if (!b)
    return;
  static backend_ops_t capped;
  cpu_ops = b->ops;
  capped = *b->ops;
  capped.alloc = capped_alloc;
  capped.free = capped_free;
  b->ops = &capped;
  capped_used = capped_cap = 0;
  engine_t *e = engine_create(m, b, err);
  collect_t out = {0};
  size_t two = 0; /* the bytes of jobs 1 and 2's stores */
  for (int k = 1; e && k <= 3; k++) {
    engine_job_t jk = *job;
    jk.source_key = (uint64_t)k;
    if (k == 3) { /* room for job 3's store only once the other two are gone */
      engine_kept_sources(e, &two);
      capped_cap = capped_used + two / 4;
    }
    run(e, &jk, &out, n_slots);
  }
  CHECK(e && engine_kept_sources(e, NULL) == 1 && out.n_rows > 0,
        "out of memory: other jobs' stores given back, the run retried: %d kept, want 1",
        e ? engine_kept_sources(e, NULL) : -1);
  collect_free(&out);
  engine_destroy(e);
  b->ops = cpu_ops;
  backend_destroy(b);
}

/* Resample with more draws than other prompts (repeats are certain): the
 * distinct draws run once and weighted give every row of computing each
 * draw, the samples counted included. Up to 8 components of S. */
static void test_repeated_draws(engine_t *e, const setup_t *S, int n_slots, unsigned metrics) {
  static setup_t S8;
  S8 = *S;
  S8.n_comps = 0;
  for (int c = 0; c < S->n_comps && S8.n_comps < 8; c += (S->n_comps + 7) / 8) {
    S8.comps[S8.n_comps] = S->comps[c];
    memcpy(S8.names[S8.n_comps++], S->names[c], sizeof(S->names[0]));
  }
  const method_t resample = {.kind = METHOD_RESAMPLE, .source = -1};
  engine_job_t once = make_job(&S8, &resample, 1, metrics);
  once.samples = 2 * S->n_prompts + 1;
  once.seed = 11;
  once.max_rows = 48; /* several passes */
  engine_job_t each = once;
  each.each_draw = 1;
  long repeats = 0;
  for (int p = 0; p < S->n_prompts; p++)
    for (int u = 0; u < S8.n_comps; u++)
      for (int s = 0; s < once.samples; s++)
        for (int r = 0; r < s; r++)
          if (engine_resample_source(&once, p, u, r) == engine_resample_source(&once, p, u, s)) {
            repeats++;
            break;
          }
  CHECK(repeats > 0, "repeated draws: the job repeats none (%d prompts, %d draws)", S->n_prompts,
        once.samples);
  collect_t a = {0}, b = {0};
  char what[160];
  if (run(e, &once, &a, n_slots) == 0 && run(e, &each, &b, n_slots) == 0) {
    CHECK(a.n_rows == b.n_rows, "repeated draws: row count: got %d, want %d", a.n_rows, b.n_rows);
    int same = 0;
    for (int i = 0; i < a.n_rows && i < b.n_rows; i++) {
      const engine_variant_t *x = &a.rows[i].row, *y = &b.rows[i].row;
      snprintf(what, sizeof(what), "repeated draws: prompt %d comp %s", x->prompt,
               S8.names[x->component]);
      CHECK(x->prompt == y->prompt && x->component == y->component && x->samples == y->samples &&
                x->samples == once.samples,
            "%s: row of prompt %d comp %d with %d samples, want %d", what, y->prompt, y->component,
            x->samples, once.samples);
      CHECK_CLOSE(what, x->total_effect, y->total_effect, DRAW_BOUND, scale_ref);
      CHECK_CLOSE(what, x->direct_effect, y->direct_effect, DRAW_BOUND, scale_ref);
      CHECK_CLOSE(what, x->compensation, y->compensation, DRAW_BOUND, scale_ref);
      CHECK_CLOSE(what, x->ablated_logit, y->ablated_logit, DRAW_BOUND, scale_ref);
      CHECK_CLOSE(what, x->inv_scale, y->inv_scale, DRAW_BOUND, fabs(y->inv_scale));
      if (metrics & METRIC_KL)
        CHECK_CLOSE(what, x->kl, y->kl, DRAW_BOUND, fmax(1.0, y->kl));
      int bitwise = x->total_effect == y->total_effect && x->compensation == y->compensation;
      for (int s = 0; s < n_slots; s++) {
        CHECK_CLOSE(what, x->delta_de[s], y->delta_de[s], DRAW_BOUND, scale_ref);
        bitwise &= x->delta_de[s] == y->delta_de[s];
      }
      same += bitwise;
    }
    printf("repeated draws: %ld of %ld draws repeat an earlier one; %d of %d rows bitwise equal\n",
           repeats, (long)S->n_prompts * S8.n_comps * once.samples, same, a.n_rows);
  }
  collect_free(&a);
  collect_free(&b);
}

/* Shortcuts (engine_job_t.whole_stages 0): a variant whose first ablated
 * sub-stage is a head, a neuron, or attn.L / mlp.L replaced whole joins
 * after it with its output made from the clean one; every row equals the
 * rows of recomputing that sub-stage (whole_stages 1) within BATCH_BOUND:
 * each method, the last and every position, a per-position grid, units of
 * two components (one sub-stage's, and two layers'), and the norm's own
 * scale. The shortcut must be taken (a count of its runs), except with a
 * parallel residual. */
static void test_shortcuts(engine_t *e, const setup_t *S, int n_slots, unsigned metrics,
                           const model_config_t *cfg) {
  static setup_t SA, S1;
  S1 = *S; /* at most 12 components spread over a large model, and its heads and neurons */
  if (S->n_comps > 12) {
    S1.n_comps = 0;
    for (int c = 0; c < S->n_comps; c++)
      if (c % ((S->n_comps + 11) / 12) == 0 || S->comps[c].kind == COMPONENT_HEAD ||
          S->comps[c].kind == COMPONENT_NEURON)
        S1.comps[S1.n_comps++] = S->comps[c];
  }
  S = &S1;
  SA = *S;
  for (int p = 0, n = 0; p <= S->n_prompts; p++) {
    SA.offsets[p] = n;
    for (int t = 0; p < S->n_prompts && t < S->lengths[p]; t++)
      SA.positions[n++] = t;
  }
  const method_t ms[6] = {{.kind = METHOD_ZERO},
                          {.kind = METHOD_SCALE, .value = 0.5f},
                          {.kind = METHOD_MEAN},
                          {.kind = METHOD_RESAMPLE},
                          {.kind = METHOD_PATCH, .source = 1},
                          {.kind = METHOD_NOISE, .value = 0.3f}};
  /* units of two: neighbours in the list (e.g. a head and a later
   * layer's), and each head with the next head of its layer */
  static component_t pairs[512];
  int n_pairs = 0, pair_first[257], n_pair_units = 0;
  for (int c = 0; c + 1 < S->n_comps; c += 2) {
    pair_first[n_pair_units++] = n_pairs;
    pairs[n_pairs++] = S->comps[c];
    pairs[n_pairs++] = S->comps[c + 1];
  }
  for (int c = 0; c < S->n_comps; c++)
    if (S->comps[c].kind == COMPONENT_HEAD) {
      pair_first[n_pair_units++] = n_pairs;
      pairs[n_pairs] = S->comps[c];
      pairs[n_pairs + 1] = S->comps[c];
      pairs[n_pairs + 1].index = (S->comps[c].index + 1) % cfg->n_heads;
      n_pairs += 2;
    }
  pair_first[n_pair_units] = n_pairs;
  char what[160];
  for (int k = 0; k < 5; k++) {
    const int all = k == 1 || k == 2, grid = k == 2, paired = k == 3, own_scale = k == 4;
    engine_job_t fast = make_job(all ? &SA : (setup_t *)S, ms, 6, metrics);
    fast.samples = 3;
    fast.seed = 5;
    fast.each_position = grid;
    fast.norm_scale_ablated = own_scale;
    fast.max_rows = 96; /* several passes */
    if (paired) {
      fast.components = pairs;
      fast.n_components = n_pairs;
      fast.unit_first = pair_first;
      fast.n_units = n_pair_units;
    }
    engine_job_t whole = fast;
    whole.whole_stages = 1;
    collect_t a = {0}, b = {0};
    const long before = engine_shortcut_runs(e), narrow_before = engine_shortcut_narrow_rows(e);
    if (run(e, &fast, &a, n_slots) == 0) {
      const long taken = engine_shortcut_runs(e) - before;
      const long narrow = engine_shortcut_narrow_rows(e) - narrow_before;
      if (run(e, &whole, &b, n_slots) == 0) {
        CHECK(engine_shortcut_runs(e) - before == taken,
              "shortcuts: whole_stages 1 takes none (%ld more)",
              engine_shortcut_runs(e) - before - taken);
        CHECK(a.n_rows == b.n_rows && a.n_rows > 0, "shortcuts: row count: got %d, want %d",
              a.n_rows, b.n_rows);
        for (int i = 0; i < a.n_rows && i < b.n_rows; i++) {
          const engine_variant_t *x = &a.rows[i].row, *y = &b.rows[i].row;
          snprintf(what, sizeof(what),
                   "shortcuts (case %d): prompt %d position %d unit %d method %d", k, x->prompt,
                   x->position, x->component, x->method);
          CHECK(x->prompt == y->prompt && x->component == y->component && x->method == y->method &&
                    x->position == y->position,
                "%s: the same row", what);
          CHECK_CLOSE(what, x->total_effect, y->total_effect, BATCH_BOUND, scale_ref);
          CHECK_CLOSE(what, x->direct_effect, y->direct_effect, BATCH_BOUND, scale_ref);
          CHECK_CLOSE(what, x->compensation, y->compensation, BATCH_BOUND, scale_ref);
          CHECK_CLOSE(what, x->ablated_logit, y->ablated_logit, BATCH_BOUND, scale_ref);
          CHECK_CLOSE(what, x->inv_scale, y->inv_scale, BATCH_BOUND, fabs(y->inv_scale));
          if (metrics & METRIC_KL)
            CHECK_CLOSE(what, x->kl, y->kl, BATCH_BOUND, fmax(1.0, y->kl));
          for (int s = 0; s < n_slots; s++)
            CHECK_CLOSE(what, x->delta_de[s], y->delta_de[s], BATCH_BOUND, scale_ref);
        }
        printf("shortcuts (case %d): %d rows equal recomputing, %ld runs took a shortcut, %ld "
               "rows the narrow product\n",
               k, a.n_rows, taken, narrow);
        /* none with a parallel residual (attention and MLP read one input) */
        CHECK(cfg->parallel_residual ? taken == 0 : taken > 0,
              "shortcuts (case %d): %ld runs took one (parallel residual: %d)", k, taken,
              cfg->parallel_residual);
        /* heads and neurons took the narrow product (a delta: no post norms) */
        int deltas = 0;
        for (int c = 0; c < S->n_comps; c++)
          deltas |= S->comps[c].kind == COMPONENT_HEAD ||
                    (S->comps[c].kind == COMPONENT_NEURON && S->comps[c].layer < cfg->n_layers - 1);
        deltas = deltas && !cfg->parallel_residual && !cfg->post_norms;
        CHECK(deltas ? narrow > 0 : narrow == 0,
              "shortcuts (case %d): %ld rows took the narrow product (heads or neurons: %d)", k,
              narrow, deltas);
      }
    }
    collect_free(&a);
    collect_free(&b);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: test_engine ROOT GOLDEN.json [--backend NAME] [--copy-weights]\n");
    return 2;
  }
  const char *root = argv[1], *golden = argv[2], *backend = "cpu";
  check_quiet_after(40);
  int copy_weights = 0;
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
      backend = argv[++i];
    else if (strcmp(argv[i], "--copy-weights") == 0)
      copy_weights = 1;
    else {
      fprintf(stderr, "test_engine: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  json_error_t jerr;
  json_t *g = json_load_file(golden, JSON_REJECT_DUPLICATES, &jerr);
  if (!g) {
    fprintf(stderr, "test_engine: %s: %s\n", golden, jerr.text);
    return 1;
  }
  const char *model_name = json_string_value(json_object_get(g, "model"));
  char path[2048];
  const int found = check_golden_model_path("test_engine", root, model_name, path, sizeof(path));
  if (found != 0) {
    json_decref(g);
    return found;
  }
  char err[HYDRA_ERR_LEN];
  model_t *m = model_load(path, err);
  const char *dtype = json_string_value(json_object_get(g, "weights_dtype"));
  if (dtype && strcmp(dtype, "bf16") != 0) {
    fprintf(stderr, "test_engine: %s: unknown weights_dtype \"%s\"\n", golden, dtype);
    return 1;
  }
  if (m && dtype) /* the golden's weights went through torch's bf16 */
    model_round_bf16(m);
  backend_t *b = m ? backend_create(backend, 0, err) : NULL;
  if (b && copy_weights)
    b->host_memory = 0; /* its buffers still are: ops work on either */
  engine_t *e = b ? engine_create(m, b, err) : NULL;
  if (!e) {
    fprintf(stderr, "test_engine: %s\n", err);
    return b || strcmp(backend, "cpu") == 0 ? 1 : 77;
  }
  const int n_slots = engine_n_slots(&m->cfg);

  /* prompts, targets, positions (the last) */
  static setup_t S;
  json_t *prompts = json_object_get(g, "prompts");
  S.n_prompts = (int)json_array_size(prompts);
  int row = 0;
  for (int p = 0; p < S.n_prompts; p++) {
    json_t *P = json_array_get(prompts, p), *ids = json_object_get(P, "ids");
    S.lengths[p] = (int)json_array_size(ids);
    for (int t = 0; t < S.lengths[p]; t++)
      S.ids[row++] = (int)json_integer_value(json_array_get(ids, t));
    S.targets[p] = -1; /* the clean argmax, as the golden */
    S.offsets[p] = p;
    S.positions[p] = S.lengths[p] - 1;
    double cl = fabs(json_number_value(json_object_get(P, "clean_logit")));
    if (cl > scale_ref)
      scale_ref = cl;
  }
  S.offsets[S.n_prompts] = S.n_prompts;
  /* every component the golden ablates */
  json_t *abl = json_object_get(g, "ablations");
  for (size_t i = 0; i < json_array_size(abl); i++) {
    const char *name = json_string_value(json_object_get(json_array_get(abl, i), "component"));
    int known = 0;
    for (int c = 0; c < S.n_comps; c++)
      known |= strcmp(S.names[c], name) == 0;
    if (!known) {
      snprintf(S.names[S.n_comps], sizeof(S.names[0]), "%s", name);
      if (parse_component(name, &S.comps[S.n_comps]) != 0) {
        fprintf(stderr, "test_engine: bad component %s\n", name);
        return 1;
      }
      S.n_comps++;
    }
  }
  printf("test_engine: %s on %s (%s, weights %s%s): %d prompts, %d components, scale %.3f, "
         "bound %.3g\n",
         golden, path, b->ops->name, weights_dtype_name(m->weights_dtype),
         copy_weights ? ", copied" : "", S.n_prompts, S.n_comps, scale_ref,
         GOLDEN_BOUND * scale_ref);

  collect_t out = {0}, ref = {0};
  const unsigned all_metrics = METRIC_LOGPROB | METRIC_KL | METRIC_RANK;
  char what[160];

  /* 1. clean: target, logit, scale, direct effects, and their sum; with
   * only the logit asked for (the clean logits reduced by the backend's
   * logit_stats), then with the full distribution (read on the host) */
  method_t zero = {.kind = METHOD_ZERO};
  engine_job_t job;
  float reduced_logit[64];
  for (int full = 0; full < 2; full++) {
    job = make_job(&S, &zero, 1, full ? all_metrics : 0);
    if (run(e, &job, &out, n_slots) != 0)
      goto done;
    for (int p = 0; p < S.n_prompts; p++) {
      json_t *P = json_array_get(prompts, p), *de = json_object_get(P, "de");
      const engine_clean_t *c = &out.clean[p];
      CHECK(c->target == (int)json_integer_value(json_object_get(P, "target")),
            "prompt %d clean target (%s): got %d, want %d", p,
            full ? "full distribution" : "logit_stats", c->target,
            (int)json_integer_value(json_object_get(P, "target")));
      snprintf(what, sizeof(what), "prompt %d clean logit (%s)", p,
               full ? "full distribution" : "logit_stats");
      CHECK_CLOSE(what, c->logit, json_number_value(json_object_get(P, "clean_logit")),
                  GOLDEN_BOUND, scale_ref);
      double inv = json_number_value(json_object_get(P, "inv_scale"));
      snprintf(what, sizeof(what), "prompt %d inv_scale", p);
      CHECK_CLOSE(what, c->inv_scale, inv, 1e-4, fabs(inv));
      double sum = c->norm_bias_term + c->unembed_bias_term;
      for (int s = 0; s < n_slots; s++) {
        snprintf(what, sizeof(what), "prompt %d clean de[%d]", p, s);
        CHECK_CLOSE(what, c->de[s], json_number_value(json_array_get(de, s)), GOLDEN_BOUND,
                    scale_ref);
        sum += c->de[s];
      }
      snprintf(what, sizeof(what), "prompt %d: sum of direct effects = clean logit", p);
      CHECK_CLOSE(what, sum, c->logit, 1e-5, scale_ref);
      if (!full)
        reduced_logit[p] = c->logit;
      else { /* the same sums, reduced on the backend or read on the host */
        snprintf(what, sizeof(what), "prompt %d: clean logit by logit_stats = on the host", p);
        CHECK_CLOSE(what, reduced_logit[p], c->logit, 1e-6, scale_ref);
      }
    }
  }

  /* 2. every golden ablation */
  /* NK fixed methods, then a patch from each prompt; resample draws as the
   * golden says (its script reproduces the engine's seeded draws). */
  enum { NK = 4 };
  const char *kinds[NK] = {"zero", "scale:0.5", "mean", "resample"};
  const method_t methods[NK] = {{.kind = METHOD_ZERO},
                                {.kind = METHOD_SCALE, .value = 0.5f},
                                {.kind = METHOD_MEAN},
                                {.kind = METHOD_RESAMPLE}};
  int resample_samples = 0;
  uint64_t resample_seed = 0;
  for (size_t i = 0; i < json_array_size(abl); i++) {
    json_t *A = json_array_get(abl, i);
    const char *mname = json_string_value(json_object_get(A, "method"));
    if (mname && strcmp(mname, "resample") == 0) {
      resample_samples = (int)json_integer_value(json_object_get(A, "samples"));
      resample_seed = (uint64_t)json_integer_value(json_object_get(A, "seed"));
    }
  }
  json_t *rc_names = json_object_get(g, "resample_components");
  for (size_t i = 0; i < json_array_size(rc_names); i++) {
    const char *want = json_string_value(json_array_get(rc_names, i));
    CHECK(i < (size_t)S.n_comps && want && strcmp(S.names[i], want) == 0,
          "resample_components: the golden's component order is the test's (component %zu)", i);
  }
  int compared = 0;
  static setup_t SA; /* every position of every prompt */
  SA = S;
  for (int p = 0, n = 0; p <= S.n_prompts; p++) {
    SA.offsets[p] = n;
    for (int t = 0; p < S.n_prompts && t < S.lengths[p]; t++)
      SA.positions[n++] = t;
  }
  int any_all = 0;
  for (size_t i = 0; i < json_array_size(abl); i++)
    any_all |= json_is_string(json_object_get(json_array_get(abl, i), "positions"));
  for (int k = 0; k < 2 * (NK + S.n_prompts); k++) {
    const int all = k >= NK + S.n_prompts, km = k % (NK + S.n_prompts);
    if (km == 3 && (all || resample_samples < 1))
      continue; /* resample goldens: last position only */
    if (all && !any_all)
      break;
    method_t mk = km < NK ? methods[km] : (method_t){.kind = METHOD_PATCH, .source = km - NK};
    job = make_job(all ? &SA : &S, &mk, 1, all_metrics);
    if (km == 3) {
      job.samples = resample_samples;
      job.seed = resample_seed;
    }
    if (run(e, &job, &out, n_slots) != 0)
      goto done;
    for (size_t i = 0; i < json_array_size(abl); i++) {
      json_t *A = json_array_get(abl, i), *meth = json_object_get(A, "method");
      const char *pos = json_string_value(json_object_get(A, "positions"));
      if ((pos && strcmp(pos, "all") == 0) != all)
        continue;
      int match = km < NK ? json_is_string(meth) && strcmp(json_string_value(meth), kinds[km]) == 0
                          : json_is_object(meth) &&
                                json_integer_value(json_object_get(meth, "patch")) == km - NK;
      if (!match)
        continue;
      const int p = (int)json_integer_value(json_object_get(A, "prompt"));
      const char *name = json_string_value(json_object_get(A, "component"));
      int ci = 0;
      while (ci < S.n_comps && strcmp(S.names[ci], name) != 0)
        ci++;
      const vrow_t *v = find(&out, p, ci);
      if (!v) {
        FAIL("no row for prompt %d %s", p, name);
        continue;
      }
      compared++;
      const engine_variant_t *r = &v->row;
      char tag[96];
      snprintf(tag, sizeof(tag), "prompt %d %s %s%s", p, name, km < NK ? kinds[km] : "patch",
               all ? " (all positions)" : "");
      snprintf(what, sizeof(what), "%s total_effect", tag);
      CHECK_CLOSE(what, r->total_effect, json_number_value(json_object_get(A, "total_effect")),
                  GOLDEN_BOUND, scale_ref);
      snprintf(what, sizeof(what), "%s ablated_logit", tag);
      CHECK_CLOSE(what, r->ablated_logit, json_number_value(json_object_get(A, "ablated_logit")),
                  GOLDEN_BOUND, scale_ref);
      double inv = json_number_value(json_object_get(A, "ablated_inv_scale"));
      snprintf(what, sizeof(what), "%s ablated_inv_scale", tag);
      CHECK_CLOSE(what, r->inv_scale, inv, 1e-4, fabs(inv));
      json_t *de = json_object_get(A, "de_clean_scale");
      for (int s = 0; s < n_slots; s++) {
        snprintf(what, sizeof(what), "%s de[%d]", tag, s);
        CHECK_CLOSE(what, out.clean[p].de[s] + r->delta_de[s],
                    json_number_value(json_array_get(de, s)), GOLDEN_BOUND, scale_ref);
      }
      snprintf(what, sizeof(what), "%s logprob", tag);
      CHECK_CLOSE(what, r->logprob, json_number_value(json_object_get(A, "logprob")), GOLDEN_BOUND,
                  scale_ref);
      double kl = json_number_value(json_object_get(A, "kl"));
      snprintf(what, sizeof(what), "%s kl", tag);
      CHECK_CLOSE(what, r->kl, kl, 1e-4, fmax(1.0, kl));
      double rank = json_number_value(json_object_get(A, "rank"));
      snprintf(what, sizeof(what), "%s rank", tag);
      CHECK_CLOSE(what, r->rank, rank, 1.0, 1.0); /* off by one at most */
    }
  }
  printf("compared %d golden ablations\n", compared);
  CHECK(compared == (int)json_array_size(abl), "every golden ablation compared: %d of %zu",
        compared, json_array_size(abl));

  /* 2b. a full-distribution job's chunks hold at most a quarter of the
   * memory budget in clean log-probs (4 x vocab bytes a prompt), and no more
   * than a pass over the longest prompt leaves of it: with a
   * budget for lp < n_prompts of them (and max_rows not limiting), the
   * first chunk's clean rows are exactly lp, and every metric equals the
   * unconstrained run's. The golden's prompts repeated up to 48 times: a
   * pass over the longest prompt must fit in the budget too. 2b and 2c run
   * on the tiny models only (engine bookkeeping; minutes on a real one). */
  const int small_model = m->cfg.n_layers <= 4;
  if (!small_model)
    printf("sections 2b, 2c: not run on a model of %d layers (the tiny models run them)\n",
           m->cfg.n_layers);
  if (small_model) {
    static setup_t SL;
    SL = S;
    int P = 0;
    for (int r = 0, src = 0; P < 48; P++) {
      const int q = P % S.n_prompts, len = S.lengths[q];
      if (q == 0)
        src = 0;
      if (r + len > (int)(sizeof(SL.ids) / sizeof(SL.ids[0])))
        break;
      memcpy(SL.ids + r, S.ids + src, sizeof(int) * len);
      SL.lengths[P] = len, SL.targets[P] = S.targets[q];
      SL.offsets[P] = P, SL.positions[P] = len - 1;
      r += len, src += len;
    }
    SL.offsets[P] = P;
    SL.n_prompts = P;
    const int V = m->cfg.vocab_size;
    int longest = 0;
    for (int p = 0; p < P; p++)
      longest = SL.lengths[p] > longest ? SL.lengths[p] : longest;
    size_t bytes = 0;
    const int rows = engine_pass_rows(e, longest, &bytes);
    const size_t per_row = bytes / (size_t)rows, lp_row = 4 * (size_t)V;
    /* a quarter of the budget, or what a pass over the longest prompt leaves */
    const size_t budget = 2 * (size_t)longest * per_row + lp_row,
                 room = budget - (size_t)longest * per_row,
                 cap = budget / 4 < room ? budget / 4 : room;
    const int lp = (int)(cap / lp_row) < P ? (int)(cap / lp_row) : P;
    job = make_job(&SL, &zero, 1, all_metrics);
    job.max_rows = 4096;
    job.whole_stages = 1; /* no store at all, as the budget above reckons (shortcuts keep the
                           * clean values of heads and neurons in one) */
    collect_t capped_out = {0};
    if (run(e, &job, &ref, n_slots) == 0) {
      engine_set_memory_budget(e, budget);
      if (run(e, &job, &capped_out, n_slots) == 0) {
        printf("clean log-probs within a budget of %zu bytes: %d of %d prompts a chunk\n", budget,
               lp, P);
        CHECK(lp < P, "the budget test's chunks hold fewer prompts than the job: %d of %d", lp, P);
        CHECK(capped_out.clean_first == lp,
              "clean rows of the first chunk (clean log-probs cap): got %d, want %d",
              capped_out.clean_first, lp);
        CHECK(capped_out.n_rows == ref.n_rows, "capped chunks: every variant row: got %d, want %d",
              capped_out.n_rows, ref.n_rows);
        for (int i = 0; i < ref.n_rows; i++) {
          const vrow_t *a = find(&capped_out, ref.rows[i].prompt, ref.rows[i].component);
          const engine_variant_t *r = &ref.rows[i].row;
          if (!a)
            continue;
          snprintf(what, sizeof(what), "capped chunks: prompt %d component %d kl",
                   ref.rows[i].prompt, ref.rows[i].component);
          CHECK_CLOSE(what, a->row.kl, r->kl, BATCH_BOUND, fmax(1.0, r->kl));
          snprintf(what, sizeof(what), "capped chunks: prompt %d component %d logprob",
                   ref.rows[i].prompt, ref.rows[i].component);
          CHECK_CLOSE(what, a->row.logprob, r->logprob, BATCH_BOUND, scale_ref);
          snprintf(what, sizeof(what), "capped chunks: prompt %d component %d total effect",
                   ref.rows[i].prompt, ref.rows[i].component);
          CHECK_CLOSE(what, a->row.total_effect, r->total_effect, BATCH_BOUND, scale_ref);
        }
      }
      engine_set_memory_budget(e, 0);
    }
    collect_free(&capped_out);
  }

  /* 2c. a prompt range whose chunks hold more prompts than those counted from
   * prompt 0 (lengths 6 4 1 1 4 6, 10 rows a pass: [0,2) [2,5) [5,6) from 0,
   * [1,5) from 1): its rows equal the whole job's (ASan: no buffer overrun) */
  if (small_model) {
    static setup_t SR;
    SR = S;
    const int lens[6] = {6, 4, 1, 1, 4, 6};
    SR.n_prompts = 6;
    for (int p = 0, r = 0; p < 6; p++) {
      SR.lengths[p] = lens[p];
      SR.targets[p] = -1;
      SR.offsets[p] = p;
      SR.positions[p] = lens[p] - 1;
      for (int t = 0; t < lens[p]; t++, r++)
        SR.ids[r] = (7 * r + 3 * p) % m->cfg.vocab_size;
    }
    SR.offsets[6] = 6;
    job = make_job(&SR, &zero, 1, all_metrics);
    job.max_rows = 10;
    collect_t part = {0};
    if (run(e, &job, &ref, n_slots) == 0) {
      job.prompt_first = 1;
      job.prompt_end = 5;
      if (run(e, &job, &part, n_slots) == 0) {
        CHECK(part.n_rows == 4 * SR.n_comps,
              "prompt range [1,5): its variant rows: got %d, want %d", part.n_rows, 4 * SR.n_comps);
        for (int i = 0; i < part.n_rows; i++) {
          const vrow_t *a = &part.rows[i], *r = find(&ref, a->prompt, a->component);
          snprintf(what, sizeof(what), "prompt range: prompt %d component %d total effect / kl",
                   a->prompt, a->component);
          CHECK(r != NULL && a->prompt >= 1 && a->prompt < 5, "%s: a row of prompt %d", what,
                a->prompt);
          if (r) {
            CHECK_CLOSE(what, a->row.total_effect, r->row.total_effect, BATCH_BOUND, scale_ref);
            CHECK_CLOSE(what, a->row.kl, r->row.kl, BATCH_BOUND, fmax(1.0, r->row.kl));
          }
        }
      }
    }
    collect_free(&part);
  }

  /* 3. reuse on and off agree (positions: last, and every position) */
  for (int all = 0; all < 2; all++) {
    static setup_t S2;
    S2 = S;
    /* at most 12 components, spread over the model (full recomputes are slow) */
    if (S.n_comps > 12) {
      S2.n_comps = 0;
      for (int c = 0; c < S.n_comps; c++)
        if (c % ((S.n_comps + 11) / 12) == 0 || S.comps[c].kind == COMPONENT_HEAD ||
            S.comps[c].kind == COMPONENT_NEURON) {
          S2.comps[S2.n_comps] = S.comps[c];
          memcpy(S2.names[S2.n_comps++], S.names[c], sizeof(S.names[0]));
        }
    }
    int n = 0;
    for (int p = 0; p < S.n_prompts; p++) {
      S2.offsets[p] = n;
      if (all)
        for (int t = 0; t < S.lengths[p]; t++)
          S2.positions[n++] = t;
      else
        S2.positions[n++] = S.lengths[p] - 1;
    }
    S2.offsets[S.n_prompts] = n;
    method_t ms[3] = {{.kind = METHOD_RESAMPLE},
                      {.kind = METHOD_NOISE, .value = 0.3f},
                      {.kind = METHOD_SCALE, .value = 0.25f}};
    engine_job_t j1 = make_job(&S2, ms, 3, all_metrics);
    int *pos = malloc(sizeof(int) * n);
    memcpy(pos, S2.positions, sizeof(int) * n);
    j1.position_list = pos;
    j1.samples = 3;
    j1.seed = 7;
    j1.max_rows = S.n_comps > 12 ? 512 : 64; /* several passes and chunks */
    engine_job_t j2 = j1;
    j2.reuse = 0;
    if (run(e, &j1, &out, n_slots) || run(e, &j2, &ref, n_slots)) {
      free(pos);
      goto done;
    }
    CHECK(out.n_rows == ref.n_rows, "reuse: row count: got %d, want %d", out.n_rows, ref.n_rows);
    /* work units: the prompts in two ranges give the same rows as one run;
     * keyed (as hydrad runs them), the second unit takes the store of
     * sources the first kept. Then the kept stores: a unit of another job
     * keeps its own beside it; the first range again takes the kept one, and
     * after engine_retain_sources dropped it, recomputes it; a memory budget
     * with no room for another job's store drops it, least recent first. */
    for (int keyed = 0; keyed < 2; keyed++) {
      collect_t units = {0}, part = {0};
      units.n_slots = n_slots;
      for (int u = 0; u < 2; u++) {
        engine_job_t ju = j1;
        ju.prompt_first = u ? S.n_prompts / 2 : 0;
        ju.prompt_end = u ? S.n_prompts : S.n_prompts / 2;
        ju.source_key = keyed ? 42 : 0;
        if (run(e, &ju, &part, n_slots) == 0)
          for (int i = 0; i < part.n_rows; i++)
            on_variant(&units, &part.rows[i].row);
      }
      if (keyed) {
        size_t one = 0, two = 0, bytes = 0;
        CHECK(engine_kept_sources(e, &one) == 1 && one > 0,
              "kept stores after job 42's units: %d, want 1", engine_kept_sources(e, NULL));
        engine_job_t other = j1, ju = j1;
        other.source_key = 43;
        other.prompt_end = 1;
        ju.source_key = 42;
        ju.prompt_end = S.n_prompts / 2;
        for (int pass = 0; pass < 2; pass++) { /* kept, then recomputed */
          collect_t again = {0};
          again.n_slots = n_slots;
          if (pass == 0 && run(e, &other, &part, n_slots) == 0) {
            CHECK(engine_kept_sources(e, &two) == 2 && two == 2 * one,
                  "kept stores beside another job's: %d, want 2", engine_kept_sources(e, NULL));
          }
          if (pass == 1) {
            const uint64_t live = 43;
            engine_retain_sources(e, &live, 1);
            CHECK(engine_kept_sources(e, &bytes) == 1 && bytes == one,
                  "kept stores after retaining job 43's: %d, want 1", engine_kept_sources(e, NULL));
          }
          if (run(e, &ju, &again, n_slots) == 0)
            for (int i = 0; i < again.n_rows && i < units.n_rows; i++) {
              snprintf(what, sizeof(what), "keyed unit rerun (%s), row %d",
                       pass ? "store recomputed" : "store kept", i);
              CHECK_CLOSE(what, again.rows[i].row.total_effect, units.rows[i].row.total_effect,
                          BATCH_BOUND, scale_ref);
            }
          CHECK(again.n_rows > 0, "keyed unit rerun: %d rows", again.n_rows);
          collect_free(&again);
        }
        /* 43, 42 and 44 kept (least recent first); job 43 again with a
         * budget for its run, its store and one more: 42 goes, 44 stays */
        engine_job_t j44 = other;
        j44.source_key = 44;
        run(e, &j44, &part, n_slots);
        size_t pass_bytes = 0;
        const int rows = engine_pass_rows(e, 1, &pass_bytes);
        const size_t per_row = pass_bytes / (size_t)rows;
        engine_set_memory_budget(e, 2 * one + (size_t)ju.max_rows * per_row + one / 2);
        engine_job_t logit_only = other; /* no clean log-probs reserved beside the stores */
        logit_only.metrics = 0;
        if (run(e, &logit_only, &part, n_slots) == 0)
          CHECK(engine_kept_sources(e, &bytes) == 2 && bytes == 2 * one,
                "kept stores within a memory budget: %d, want 2", engine_kept_sources(e, NULL));
        engine_set_memory_budget(e, 0);
        const uint64_t k44 = 44;
        engine_retain_sources(e, &k44, 1);
        CHECK(engine_kept_sources(e, NULL) == 1,
              "the budget dropped the least recent store: %d kept, want 1",
              engine_kept_sources(e, NULL));
        /* a job that needs no sources keeps nothing */
        method_t zero_m = {.kind = METHOD_ZERO};
        engine_job_t jz = other;
        jz.methods = &zero_m;
        jz.n_methods = 1;
        jz.source_key = 45;
        run(e, &jz, &part, n_slots);
        CHECK(engine_kept_sources(e, NULL) == 1,
              "a job without sources keeps no store: %d kept, want 1",
              engine_kept_sources(e, NULL));
        if (strcmp(backend, "cpu") == 0)
          test_oom_retry(m, &other, n_slots);
        /* at most ENGINE_KEPT_MAX: the least recently used goes (100) */
        engine_retain_sources(e, NULL, 0);
        for (int k = 0; k <= ENGINE_KEPT_MAX; k++) {
          engine_job_t jk = other;
          jk.source_key = 100 + (uint64_t)k;
          run(e, &jk, &part, n_slots);
        }
        CHECK(engine_kept_sources(e, NULL) == ENGINE_KEPT_MAX, "kept stores at most: %d, want %d",
              engine_kept_sources(e, NULL), ENGINE_KEPT_MAX);
        const uint64_t first = 100;
        engine_retain_sources(e, &first, 1);
        CHECK(engine_kept_sources(e, NULL) == 0,
              "a full table dropped the least recent store: %d kept, want 0",
              engine_kept_sources(e, NULL));
        engine_retain_sources(e, NULL, 0);
        CHECK(engine_kept_sources(e, &bytes) == 0 && bytes == 0,
              "kept stores after retain none: %d, want 0", engine_kept_sources(e, NULL));
      }
      CHECK(units.n_rows == out.n_rows, "%sunits: row count: got %d, want %d",
            keyed ? "keyed " : "", units.n_rows, out.n_rows);
      double units_max = 0; /* reported: how far below BATCH_BOUND units stay */
      for (int i = 0; i < out.n_rows && i < units.n_rows; i++) {
        const engine_variant_t *a = &out.rows[i].row, *u = &units.rows[i].row;
        snprintf(what, sizeof(what), "%sunits prompt %d comp %s: total", keyed ? "keyed " : "",
                 a->prompt, S2.names[a->component]);
        CHECK(a->prompt == u->prompt && a->component == u->component,
              "%s: unit row of prompt %d component %d", what, u->prompt, u->component);
        CHECK_CLOSE(what, u->total_effect, a->total_effect, BATCH_BOUND, scale_ref);
        CHECK_CLOSE(what, u->compensation, a->compensation, BATCH_BOUND, scale_ref);
        units_max = fmax(units_max, fmax(fabs(u->total_effect - a->total_effect),
                                         fabs(u->compensation - a->compensation)));
        for (int s = 0; s < n_slots; s++) {
          CHECK_CLOSE(what, u->delta_de[s], a->delta_de[s], BATCH_BOUND, scale_ref);
          units_max = fmax(units_max, fabs(u->delta_de[s] - a->delta_de[s]));
        }
      }
      printf("  %swork units (positions: %s) against one run: max |diff| %.3g of the logit "
             "scale (bound %.0e)\n",
             keyed ? "keyed " : "", all ? "all" : "last", units_max / scale_ref, BATCH_BOUND);
      /* a backend whose products give a row the same bits in any batch (the
       * CPU's, cpu/product.c) gives one run's rows bit for bit */
      CHECK(!b->ops->batch_invariant || units_max == 0,
            "%swork units (positions: %s): on backend %s (batch-invariant products) not bit for "
            "bit one run's rows (max |diff| %.3g)",
            keyed ? "keyed " : "", all ? "all" : "last", b->ops->name, units_max);
      collect_free(&units);
      collect_free(&part);
    }
    for (int i = 0; i < out.n_rows && i < ref.n_rows; i++) {
      const engine_variant_t *a = &out.rows[i].row, *r = &ref.rows[i].row;
      snprintf(what, sizeof(what), "reuse(%s) prompt %d comp %s method %d total",
               all ? "all" : "last", a->prompt, S2.names[a->component], a->method);
      CHECK_CLOSE(what, a->total_effect, r->total_effect, BATCH_BOUND, scale_ref);
      CHECK_CLOSE(what, a->compensation, r->compensation, BATCH_BOUND, scale_ref);
      CHECK_CLOSE(what, a->kl, r->kl, BATCH_BOUND, fmax(1.0, r->kl));
      for (int s = 0; s < n_slots; s++)
        CHECK_CLOSE(what, a->delta_de[s], r->delta_de[s], BATCH_BOUND, scale_ref);
    }
    free(pos);
  }

  /* 3b. repeated resample draws computed once */
  test_repeated_draws(e, &S, n_slots, all_metrics);
  test_shortcuts(e, &S, n_slots, all_metrics, &m->cfg);

  /* 4. scale:1 is a no-op */
  method_t one = {.kind = METHOD_SCALE, .value = 1.0f};
  job = make_job(&S, &one, 1, 0);
  if (run(e, &job, &out, n_slots) != 0)
    goto done;
  for (int i = 0; i < out.n_rows; i++) {
    snprintf(what, sizeof(what), "scale:1 %s total", S.names[out.rows[i].component]);
    CHECK_CLOSE(what, out.rows[i].row.total_effect, 0.0, 1e-5, scale_ref);
    for (int s = 0; s < n_slots; s++)
      CHECK_CLOSE(what, out.rows[i].row.delta_de[s], 0.0, 1e-5, scale_ref);
  }

  /* 5. with the ablated run's own norm scale, direct effects add up again */
  job = make_job(&S, &zero, 1, 0);
  job.norm_scale_ablated = 1;
  if (run(e, &job, &out, n_slots) != 0)
    goto done;
  for (int i = 0; i < out.n_rows; i++) {
    const engine_variant_t *r = &out.rows[i].row;
    double sum = 0;
    for (int s = 0; s < n_slots; s++)
      sum += r->delta_de[s];
    snprintf(what, sizeof(what), "ablated scale %s: total = -sum of changes",
             S.names[r->component]);
    CHECK_CLOSE(what, r->total_effect, -sum, GOLDEN_BOUND, scale_ref);
  }

done:
  collect_free(&out);
  collect_free(&ref);
  engine_destroy(e);
  backend_destroy(b);
  model_free(m);
  json_decref(g);
  return check_exit("test_engine");
}
