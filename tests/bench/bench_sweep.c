/* bench_sweep - issue 4's ablation sweep: the paper's "hydra" preset (every
 * attention and MLP layer, resample, 15 draws, the final position, the clean
 * argmax as target) over a file of prompts, timed through engine_run, with
 * the FLOPs of the work the engine did counted from the job's shape and the
 * machine's own sgemm rate on the model's shapes measured in the same run.
 *
 * usage: bench_sweep MODEL PROMPTS.json [--reuse 0|1] [--runs N] [--warmup 0|1]
 *                    [--threads N] [--max-rows N] [--components-subset K]
 *                    [--samples S] [--seed S] [--sgemm-rows R] [--rows-out FILE]
 *                    [--backend cpu|cuda|auto] [--peak N] [--gemm 0|1]
 *                    [--precision fp32|tf32] [--weights-dtype fp32|bf16] [--null-ops 1]
 *                    [--unit-prompts N] [--keep-sources 0|1] [--interleave J]
 *                    [--metrics logit|all] [--each-draw 0|1] [--whole-stages 0|1]
 *                    [--components layers|heads+neurons] [--method resample|zero|mean]
 *
 * --unit-prompts N: each run is the job in work units of N prompts, one
 * engine_run each, as hydrad runs it (one source_key per run of the job,
 * so its units share the store of sources, unless --keep-sources 0; 0: one
 * run over every prompt).
 * --interleave J: each run is J copies of the job, as J users' jobs in
 * hydrad: their units alternate (unit 1 of every job, then unit 2, ...),
 * each job with its own source_key; median_s is the time of all J.
 * --metrics all: every metric of the full distribution too (log-prob, prob,
 * KL, rank), as a job asking for them runs (default logit: the preset's).
 *
 * --each-draw 1: every resample draw computed, as if no two draws of a
 * (prompt, component) were the same (default 0: the engine runs each
 * distinct draw once and counts it as often as it was drawn).
 *
 * --whole-stages 1: every variant recomputes its first ablated sub-stage
 * (default 0: the engine's shortcuts skip it where its output is known,
 * engine_job_t.whole_stages; the FLOPs counted are the work either way).
 * --components heads+neurons: every head of every layer and 8 neurons of
 * each MLP instead of attn.L and mlp.L; --method: resample (the preset's),
 * zero or mean.
 *
 * --null-ops 1: the CPU backend with every compute op and every copy within
 * backend memory a no-op (uploads and downloads still copy, as through a GPU
 * backend's staging): the run's time is then the engine's own host work,
 * what an asynchronous GPU backend must hide behind its kernels (the numbers
 * it produces are meaningless).
 *
 * Components: attn.0, mlp.0, attn.1, ..., mlp.{L-1}; --components-subset K
 * keeps every K-th of them (index % K == 0), for timing a slow configuration
 * on a subset and extrapolating (extrapolated_s = median_s * all / run).
 * Prints one line of key=value results for tests/bench/sweep.sh:
 *   median_s          median wall time of one engine_run (after the warm-up)
 *   variants          ablated runs of this run (components x samples x prompts)
 *   runs_distinct     of them, the distinct ones the engine computes (all of
 *                     them with --each-draw 1); runs_distinct_all: the whole sweep
 *   flops             counted FLOPs of this run's work (below)
 *   flops_all         the same for every component (the whole sweep)
 *   flops_full        a full-recompute sweep (every variant a whole forward
 *                     over all its positions, reuse off), every component
 *   sgemm_gflops      OpenBLAS sgemm (on the CPU; cuBLAS sgemm, the backend's matmul,
 *                     on the GPU) on one layer's matrix shapes (q, k, v, o, gate,
 *                     up, down) at --sgemm-rows rows (default: the engine's rows per
 *                     pass) (--gemm 0: not measured, e.g. for a profile of the runs alone)
 *   matmul_gflops     the same shapes through the backend's own matmul op (the CPU's
 *                     product.c: one order of sums per element)
 *   peak_gflops       the same op on one square N x N x N product (--peak N, default
 *                     0: not measured), the library's own best case
 *   gemm_share        gflops / peak_gflops: the engine's counted FLOP rate over the
 *                     library's peak (when --peak is given)
 *   floor_s           flops_all / sgemm rate
 *   cpu_per_wall      the timed runs' CPU time (all threads) over their wall time:
 *                     about the thread count on an idle machine, less when other
 *                     work took the cores
 * FLOPs counted: matrix products (2 per multiply-add) and attention (scores
 * and weighted sum over each row's keys) of every recomputed row from the
 * sub-stage its variant joins at (each distinct run once, as computed);
 * the clean pass over every token, with the unembedding at each prompt's
 * final row; per run the final norm, the target logit and the direct effect
 * of every recomputed slot. Elementwise ops inside layers (norms, RoPE,
 * SwiGLU, adds) are not counted.
 *
 * --rows-out writes the clean logits and the per-row total effects (with
 * --metrics all, the KL and log-prob too) for tests/bench/sweep_torch.py to
 * compare. */
#include <cblas.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "checkpoint.h"
#include "engine.h"
#include "model.h"

#include "bench_util.h"

/* ---- --null-ops: compute ops that do nothing ---- */
static int null_matmul(backend_t *b, float *y, const float *x, const float *w, const float *bias,
                       int rows, int out, int in, int acc) {
  (void)b, (void)y, (void)x, (void)w, (void)bias, (void)rows, (void)out, (void)in, (void)acc;
  return 0;
}
static int null_matmul_bf16(backend_t *b, float *y, const float *x, const uint16_t *w,
                            const float *bias, int rows, int out, int in, int acc, float *s,
                            size_t sn) {
  (void)b, (void)y, (void)x, (void)w, (void)bias, (void)rows, (void)out, (void)in, (void)acc;
  (void)s, (void)sn;
  return 0;
}
static int null_layernorm(backend_t *b, float *y, float *inv, const float *x, const float *g,
                          const float *be, int rows, int d, float eps) {
  (void)b, (void)y, (void)inv, (void)x, (void)g, (void)be, (void)rows, (void)d, (void)eps;
  return 0;
}
static int null_rmsnorm(backend_t *b, float *y, float *inv, const float *x, const float *g,
                        int rows, int d, float eps) {
  (void)b, (void)y, (void)inv, (void)x, (void)g, (void)rows, (void)d, (void)eps;
  return 0;
}
static int null_rope(backend_t *b, float *x, const int *pos, const float *freq, int rows, int h,
                     int hd, int rot, float scale) {
  (void)b, (void)x, (void)pos, (void)freq, (void)rows, (void)h, (void)hd, (void)rot, (void)scale;
  return 0;
}
#ifdef HYDRA_BENCH_ATTENTION_UNCAPPED /* engines before the scale, soft-cap and window */
static int null_attention(backend_t *b, float *out, const float *q, const float *k, const float *v,
                          const int *ks, const int *nk, const float *k2, const float *v2,
                          const int *ks2, const int *nk2, int rows, int h, int kvh, int hd) {
#else
static int null_attention(backend_t *b, float *out, const float *q, const float *k, const float *v,
                          const int *ks, const int *nk, const float *k2, const float *v2,
                          const int *ks2, const int *nk2, int rows, int h, int kvh, int hd,
                          float scale, float softcap, int window) {
  (void)scale, (void)softcap, (void)window;
#endif
  (void)b, (void)out, (void)q, (void)k, (void)v, (void)ks, (void)nk, (void)k2, (void)v2;
  (void)ks2, (void)nk2, (void)rows, (void)h, (void)kvh, (void)hd;
  return 0;
}
static int null_activation(backend_t *b, float *x, size_t n, activation_t act) {
  (void)b, (void)x, (void)n, (void)act;
  return 0;
}
static int null_swiglu(backend_t *b, float *g, const float *u, size_t n) {
  (void)b, (void)g, (void)u, (void)n;
  return 0;
}
static int null_add(backend_t *b, float *y, const float *x, size_t n) {
  (void)b, (void)y, (void)x, (void)n;
  return 0;
}
static int null_rows(backend_t *b, float *dst, const float *src, const int *index, int rows,
                     int d) {
  (void)b, (void)dst, (void)src, (void)index, (void)rows, (void)d;
  return 0;
}
static int null_embed(backend_t *b, float *x, const float *te, const int *ids, const float *pe,
                      const int *pos, int rows, int d) {
  (void)b, (void)x, (void)te, (void)ids, (void)pe, (void)pos, (void)rows, (void)d;
  return 0;
}
static int null_intervene(backend_t *b, float *x, int width, const intervention_t *e, int n,
                          const float *src) {
  (void)b, (void)x, (void)width, (void)e, (void)n, (void)src;
  return 0;
}
static int null_row_dots(backend_t *b, float *out, const int *oi, const float *x, const int *xr,
                         const float *dirs, const int *dr, int n, int d) {
  (void)b, (void)out, (void)oi, (void)x, (void)xr, (void)dirs, (void)dr, (void)n, (void)d;
  return 0;
}

#ifndef HYDRA_BENCH_NO_LOGIT_STATS /* host_work.sh builds it on engines without */
static int null_logit_stats(backend_t *b, int *best, float *stats, const float *logits, int rows,
                            int vocab, const int *targets, const int *foils) {
  (void)b, (void)logits, (void)vocab, (void)targets, (void)foils;
  memset(best, 0, sizeof(int) * (size_t)rows);
  memset(stats, 0, sizeof(float) * 3 * (size_t)rows);
  return 0;
}
#endif
#ifndef HYDRA_BENCH_NO_LOGIT_METRICS /* likewise, on engines before logit_metrics */
static int null_logit_metrics(backend_t *b, float *out, float *lp_out, const float *logits,
                              int rows, int vocab, const int *prompt, const int *targets,
                              const int *foils, const float *ref_lp, float softcap) {
  (void)b, (void)lp_out, (void)logits, (void)vocab, (void)prompt, (void)targets, (void)foils,
      (void)ref_lp, (void)softcap;
  memset(out, 0, sizeof(float) * 5 * (size_t)rows);
  return 0;
}
#endif
#ifndef HYDRA_BENCH_NO_FAMILY_OPS /* host_work.sh builds it on engines before these ops */
static int null_matmul_blocks(backend_t *b, float *y, const float *x, const void *w, uint32_t type,
                              const float *bias, int rows, int out, int in, int acc, float *s,
                              size_t sn) {
  (void)b, (void)y, (void)x, (void)w, (void)type, (void)bias, (void)rows, (void)out, (void)in;
  (void)acc, (void)s, (void)sn;
  return 0;
}
static int null_head_layernorm(backend_t *b, float *x, const float *g, const float *be, int rows,
                               int h, int hd, float eps) {
  (void)b, (void)x, (void)g, (void)be, (void)rows, (void)h, (void)hd, (void)eps;
  return 0;
}
static int null_attention_rows(backend_t *b, float *out, float *patterns, const pattern_entry_t *e,
                               int ne, const float *q, const float *k, const float *v,
                               const int *ks, const int *nk, const float *k2, const float *v2,
                               const int *ks2, const int *nk2, int h, int kvh, int hd, float scale,
                               float softcap, int window) {
  (void)b, (void)out, (void)patterns, (void)e, (void)ne, (void)q, (void)k, (void)v, (void)ks;
  (void)nk, (void)k2, (void)v2, (void)ks2, (void)nk2, (void)h, (void)kvh, (void)hd, (void)scale;
  (void)softcap, (void)window;
  return 0;
}
static int null_glu(backend_t *b, float *g, const float *u, size_t n, activation_t act) {
  (void)b, (void)g, (void)u, (void)n, (void)act;
  return 0;
}
static int null_scale(backend_t *b, float *x, size_t n, float alpha) {
  (void)b, (void)x, (void)n, (void)alpha;
  return 0;
}
static int null_softcap(backend_t *b, float *x, size_t n, float cap) {
  (void)b, (void)x, (void)n, (void)cap;
  return 0;
}
static int null_embed_blocks(backend_t *b, float *x, const void *tok, uint32_t type,
                             size_t row_bytes, const int *ids, const float *pe, const int *pos,
                             int rows, int d) {
  (void)b, (void)x, (void)tok, (void)type, (void)row_bytes, (void)ids, (void)pe, (void)pos;
  (void)rows, (void)d;
  return 0;
}
#endif
static int null_copy(backend_t *b, void *dst, const void *src, size_t bytes) {
  (void)b, (void)dst, (void)src, (void)bytes;
  return 0;
}
static int null_memset0(backend_t *b, void *dst, size_t bytes) {
  (void)b, (void)dst, (void)bytes;
  return 0;
}

static backend_ops_t null_ops;
static void use_null_ops(backend_t *b) {
  null_ops = *b->ops;
  null_ops.name = "null-ops";
  null_ops.copy = null_copy; /* within backend memory: the device's work */
  null_ops.memset0 = null_memset0;
  null_ops.matmul = null_matmul;
#ifndef HYDRA_BENCH_NO_LOGIT_STATS
  null_ops.logit_stats = null_logit_stats;
#endif
#ifndef HYDRA_BENCH_NO_LOGIT_METRICS
  null_ops.logit_metrics = null_logit_metrics;
#endif
  null_ops.matmul_bf16 = null_matmul_bf16;
  null_ops.layernorm = null_layernorm;
  null_ops.rmsnorm = null_rmsnorm;
  null_ops.rope = null_rope;
  null_ops.attention = null_attention;
  null_ops.activation = null_activation;
  null_ops.swiglu = null_swiglu;
  null_ops.add = null_add;
  null_ops.gather_rows = null_rows;
  null_ops.scatter_rows = null_rows;
  null_ops.embed = null_embed;
  null_ops.intervene = null_intervene;
  null_ops.row_dots = null_row_dots;
#ifndef HYDRA_BENCH_NO_FAMILY_OPS
  null_ops.matmul_blocks = null_matmul_blocks;
  null_ops.head_layernorm = null_head_layernorm;
  null_ops.attention_rows = null_attention_rows;
  null_ops.glu = null_glu;
  null_ops.scale = null_scale;
  null_ops.softcap = null_softcap;
  null_ops.embed_blocks = null_embed_blocks;
#endif
#ifndef HYDRA_BENCH_NO_MATMUL_GLU
  null_ops.matmul_glu = NULL; /* the transformer then takes the null matmul and swiglu */
#endif
  b->ops = &null_ops;
}

static double cpu_now(void) { /* CPU time of every thread of the process */
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- FLOPs of the engine's work, from the job's shape ---- */

typedef struct {
  double attn_mm, mlp_mm, att_per_key, unembed_row, d;
} layer_cost_t;

static layer_cost_t layer_cost(const model_config_t *c) {
  const double d = c->d_model, q = (double)c->n_heads * c->head_dim,
               kv = (double)c->n_kv_heads * c->head_dim, f = c->d_mlp;
  layer_cost_t k = {.attn_mm = 2 * (d * q + 2 * d * kv + q * d),
                    .mlp_mm = 2 * (c->mlp == MLP_SWIGLU ? 3 : 2) * d * f,
                    .att_per_key = 2.0 * 2.0 * q, /* q.k and p.v over every head */
                    .unembed_row = 2.0 * c->vocab_size * d,
                    .d = d};
  return k;
}

/* Sub-stages (2L attention, 2L+1 MLP) from `stage` on, for rows at positions
 * p0..len-1 (row t attends to t + 1 keys), plus the readout of one variant. */
static double variant_flops(const model_config_t *c, const layer_cost_t *k, int stage, int p0,
                            int len) {
  double f = 0;
  for (int s = stage; s < 2 * c->n_layers; s++)
    for (int t = p0; t < len; t++)
      f += s % 2 ? k->mlp_mm : k->attn_mm + k->att_per_key * (t + 1);
  const int slots = (2 * c->n_layers - stage) + (stage == 0); /* recomputed direct effects */
  return f + 2.0 * k->d * slots + 3.0 * k->d + 2.0 * k->d;    /* + final norm, target logit */
}

/* The sub-stage a component's variant joins at with reuse, and the FLOPs of
 * a shortcut's own product per run (engine_job_t.whole_stages 0: a head's
 * or neuron's change through its projection; attn.L and mlp.L replaced by
 * resample, zero or mean need none; no shortcut into the last MLP's
 * successor). */
static int join_stage(const model_config_t *c, const component_t *comp, int whole_stages,
                      double *extra) {
  const int attn = comp->kind == COMPONENT_ATTN || comp->kind == COMPONENT_HEAD;
  const int stage = attn ? 2 * comp->layer : 2 * comp->layer + 1;
  *extra = 0;
  if (whole_stages || c->parallel_residual || stage + 1 >= 2 * c->n_layers ||
      ((comp->kind == COMPONENT_HEAD || comp->kind == COMPONENT_NEURON) && c->post_norms))
    return stage;
  if (comp->kind == COMPONENT_HEAD)
    *extra = 2.0 * c->d_model * c->n_heads * c->head_dim;
  else if (comp->kind == COMPONENT_NEURON)
    *extra = 2.0 * c->d_model * c->d_mlp;
  return stage + 1;
}

/* The whole run: the clean pass, then every variant of the chosen
 * components (stage = the sub-stage it joins at with reuse, else 0). */
static double sweep_flops(const model_config_t *c, const int *lengths, int n_prompts,
                          const component_t *comps, int n_comps, const int *runs, int reuse,
                          int whole_stages, int full_logits) {
  const layer_cost_t k = layer_cost(c);
  double f = 0;
  for (int p = 0; p < n_prompts; p++) /* every layer and slot, full logits at the final row */
    f += variant_flops(c, &k, 0, 0, lengths[p]) + k.unembed_row;
  for (int i = 0; i < n_comps; i++) {
    double extra;
    const int stage = join_stage(c, &comps[i], whole_stages || !reuse, &extra);
    for (int p = 0; p < n_prompts; p++)
      f += (double)runs[(size_t)p * n_comps + i] *
           (variant_flops(c, &k, reuse ? stage : 0, reuse ? lengths[p] - 1 : 0, lengths[p]) +
            extra + (full_logits ? k.unembed_row : 0)); /* --metrics all: every run's logits */
  }
  return f;
}

/* runs[p][i]: the runs the engine computes for prompt p and component i of
 * n_comps (the distinct resample draws, or every one with each_draw). */
static int *count_runs(const engine_job_t *job, int n_comps, int each_draw) {
  const int P = job->n_prompts;
  int *runs = malloc(sizeof(int) * (size_t)P * n_comps), *seen = malloc(sizeof(int) * P);
  for (int p = 0; p < P; p++)
    for (int i = 0; i < n_comps; i++) {
      int n = 0;
      for (int q = 0; q < P; q++)
        seen[q] = 0;
      for (int s = 0; s < job->samples; s++) {
        const int src = engine_resample_source(job, p, i, s);
        if (job->methods[0].kind != METHOD_RESAMPLE) { /* one run */
          n = 1;
          break;
        }
        n += each_draw || !seen[src];
        seen[src] = 1;
      }
      runs[(size_t)p * n_comps + i] = n;
    }
  free(seen);
  return runs;
}

static long sum_runs(const int *runs, size_t n) {
  long total = 0;
  for (size_t i = 0; i < n; i++)
    total += runs[i];
  return total;
}

/* ---- the matrix-product rates ----
 * blas 0: through the backend's own matmul op (the CPU's product.c, cuBLAS
 * sgemm on the GPU); blas 1: OpenBLAS sgemm on the same host operands where
 * the backend's memory is the host's (the floor: a product hydra did not
 * write), else the backend's op. On random operands in backend memory. Each
 * shape's best of `runs` timings (of 5 calls each, synchronized): the floor
 * is a lower bound, and on a shared machine the best run is the one least
 * disturbed by others. Returns seconds, or -1 when the backend fails. */

static int gemm_call(backend_t *b, float *y, const float *x, const float *w, int rows, int out,
                     int in, int blas) {
  if (blas && b->host_memory) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, w, in, 0.0f, y,
                out);
    return 0;
  }
  return b->ops->matmul(b, y, x, w, NULL, rows, out, in, 0);
}

static double gemm_time(backend_t *b, int rows, int out, int in, int runs, int blas) {
  const size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
  float *h = malloc(sizeof(float) * (nx > nw ? nx : nw));
  float *x = b->ops->alloc(b, nx * 4), *w = b->ops->alloc(b, nw * 4), *y = b->ops->alloc(b, ny * 4);
  double best = -1;
  uint64_t st = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(rows * 31 + out * 7 + in);
  for (size_t i = 0; i < (nx > nw ? nx : nw); i++) { /* random, never zeros */
    st ^= st << 13, st ^= st >> 7, st ^= st << 17;
    h[i] = (float)((double)(st >> 11) / (double)(1ULL << 53) - 0.5);
  }
  if (h && x && w && y && b->ops->upload(b, x, h, nx * 4) == 0 &&
      b->ops->upload(b, w, h, nw * 4) == 0 && gemm_call(b, y, x, w, rows, out, in, blas) == 0 &&
      b->ops->synchronize(b) == 0) {
    best = 1e30;
    for (int r = 0; r < runs && best > 0; r++) {
      const double t0 = bench_now();
      for (int k = 0; k < 5; k++)
        if (gemm_call(b, y, x, w, rows, out, in, blas) != 0)
          best = -1;
      if (b->ops->synchronize(b) != 0)
        best = -1;
      const double t = (bench_now() - t0) / 5;
      if (best > 0 && t < best)
        best = t;
    }
  }
  b->ops->free(b, x), b->ops->free(b, w), b->ops->free(b, y);
  free(h);
  return best;
}

/* The rate on one layer's shapes (q, k, v, o, up, down, and gate for SwiGLU). */
static double gemm_gflops(backend_t *b, const model_config_t *c, int rows, int runs, int blas) {
  const int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
  const int shapes[7][2] = {{q, c->d_model},       {kv, c->d_model},       {kv, c->d_model},
                            {c->d_model, q},       {c->d_mlp, c->d_model}, {c->d_model, c->d_mlp},
                            {c->d_mlp, c->d_model}};
  const int n_shapes = c->mlp == MLP_SWIGLU ? 7 : 6;
  double flops = 0, total = 0;
  for (int s = 0; s < n_shapes; s++) {
    const double t = gemm_time(b, rows, shapes[s][0], shapes[s][1], runs, blas);
    if (t < 0)
      return -1;
    flops += 2.0 * rows * shapes[s][0] * shapes[s][1];
    total += t;
  }
  return flops / total / 1e9;
}

/* ---- prompts ---- */

static int load_prompts(const char *path, int *n_out, int **lengths_out, int **ids_out) {
  json_error_t je;
  json_t *doc = json_load_file(path, 0, &je), *prompts = json_object_get(doc, "prompts");
  if (!doc || !json_is_array(prompts) || json_array_size(prompts) < 2) {
    fprintf(stderr, "bench_sweep: %s: %s\n", path,
            doc ? "no \"prompts\" array of >= 2 prompts" : je.text);
    json_decref(doc);
    return -1;
  }
  const int n = (int)json_array_size(prompts);
  int total = 0;
  for (int p = 0; p < n; p++)
    total += (int)json_array_size(json_object_get(json_array_get(prompts, p), "ids"));
  int *lengths = malloc(sizeof(int) * n), *ids = malloc(sizeof(int) * (total ? total : 1));
  for (int p = 0, r = 0; p < n; p++) {
    json_t *a = json_object_get(json_array_get(prompts, p), "ids");
    lengths[p] = (int)json_array_size(a);
    for (int t = 0; t < lengths[p]; t++)
      ids[r++] = (int)json_integer_value(json_array_get(a, t));
  }
  json_decref(doc);
  *n_out = n;
  *lengths_out = lengths;
  *ids_out = ids;
  return 0;
}

/* ---- rows ---- */

typedef struct {
  int n_prompts, n_comps;
  int *target;
  float *clean_logit;
  float *total;        /* [prompt][component] */
  float *kl, *logprob; /* likewise, with --metrics all (means over the draws) */
} rows_t;

static int on_clean(void *ctx, const engine_clean_t *row) {
  rows_t *R = ctx;
  R->target[row->prompt] = row->target;
  R->clean_logit[row->prompt] = row->logit;
  return 0;
}

static int on_variant(void *ctx, const engine_variant_t *row) {
  rows_t *R = ctx;
  const size_t i = (size_t)row->prompt * R->n_comps + row->component;
  R->total[i] = row->total_effect;
  R->kl[i] = row->kl;
  R->logprob[i] = row->logprob;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_sweep MODEL PROMPTS.json [--reuse 0|1] [--runs N] "
                    "[--warmup 0|1] [--threads N] [--max-rows N] [--components-subset K] "
                    "[--samples S] [--seed S] [--sgemm-rows R] [--rows-out FILE] "
                    "[--backend NAME] [--peak N] [--gemm 0|1] [--precision fp32|tf32] "
                    "[--weights-dtype fp32|bf16]\n");
    return 2;
  }
  const char *path = argv[1], *prompts_path = argv[2], *rows_out = NULL, *backend = "cpu";
  int reuse = 1, runs = 3, warmup = 1, threads = 0, max_rows = 0, subset = 1, samples = 15;
  int sgemm_rows = 0, peak = 0, gemm = 1, tf32 = 0, weights_bf16 = 0, null = 0, unit = 0, keep = 1,
      interleave = 1, all_metrics = 0, each_draw = 0, whole_stages = 0, heads_neurons = 0;
  method_kind_t method_kind = METHOD_RESAMPLE;
  uint64_t seed = 0;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--reuse"))
      reuse = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--runs"))
      runs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup"))
      warmup = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads"))
      threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--max-rows"))
      max_rows = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--components-subset"))
      subset = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--samples"))
      samples = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed"))
      seed = strtoull(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--sgemm-rows"))
      sgemm_rows = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rows-out"))
      rows_out = argv[i + 1];
    else if (!strcmp(argv[i], "--backend"))
      backend = argv[i + 1];
    else if (!strcmp(argv[i], "--peak"))
      peak = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--gemm"))
      gemm = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--null-ops"))
      null = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--unit-prompts"))
      unit = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--keep-sources"))
      keep = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--interleave"))
      interleave = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--each-draw"))
      each_draw = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--whole-stages"))
      whole_stages = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--components")) {
      if (strcmp(argv[i + 1], "layers") && strcmp(argv[i + 1], "heads+neurons")) {
        fprintf(stderr, "bench_sweep: --components: expected layers or heads+neurons\n");
        return 2;
      }
      heads_neurons = !strcmp(argv[i + 1], "heads+neurons");
    } else if (!strcmp(argv[i], "--method")) {
      if (strcmp(argv[i + 1], "resample") && strcmp(argv[i + 1], "zero") &&
          strcmp(argv[i + 1], "mean")) {
        fprintf(stderr, "bench_sweep: --method: expected resample, zero or mean\n");
        return 2;
      }
      method_kind = !strcmp(argv[i + 1], "zero")   ? METHOD_ZERO
                    : !strcmp(argv[i + 1], "mean") ? METHOD_MEAN
                                                   : METHOD_RESAMPLE;
    } else if (!strcmp(argv[i], "--metrics")) {
      if (strcmp(argv[i + 1], "logit") && strcmp(argv[i + 1], "all")) {
        fprintf(stderr, "bench_sweep: --metrics: expected logit or all\n");
        return 2;
      }
      all_metrics = !strcmp(argv[i + 1], "all");
    } else if (!strcmp(argv[i], "--precision"))
      tf32 = !strcmp(argv[i + 1], "tf32");
    else if (!strcmp(argv[i], "--weights-dtype")) {
      if (strcmp(argv[i + 1], "fp32") && strcmp(argv[i + 1], "bf16")) {
        fprintf(stderr, "bench_sweep: --weights-dtype: expected fp32 or bf16\n");
        return 2;
      }
      weights_bf16 = !strcmp(argv[i + 1], "bf16");
    } else {
      fprintf(stderr, "bench_sweep: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (runs < 1 || subset < 1 || samples < 1 || max_rows < 0 || interleave < 1) {
    fprintf(stderr,
            "bench_sweep: runs, components-subset, samples and interleave must be positive\n");
    return 2;
  }
  int n_prompts, *lengths, *ids;
  if (load_prompts(prompts_path, &n_prompts, &lengths, &ids) != 0)
    return 1;
  char err[HYDRA_ERR_LEN];
  model_t *m = model_load(path, err);
  if (m && weights_bf16)
    model_round_bf16(m);
  backend_t *b = m ? backend_create(null ? "cpu" : backend, threads, err) : NULL;
  if (b && null)
    use_null_ops(b);
  engine_t *e = b ? engine_create(m, b, err) : NULL;
  if (!e) {
    fprintf(stderr, "bench_sweep: %s\n", err);
    return 1;
  }
  const model_config_t *c = &m->cfg;

  /* attn.0, mlp.0, attn.1, ...; or per layer every head and HN_NEURONS
   * neurons spread over the MLP; the subset keeps every K-th */
  enum { HN_NEURONS = 8 };
  const int per_layer = heads_neurons ? c->n_heads + HN_NEURONS : 2;
  const int n_all = per_layer * c->n_layers;
  component_t *all = malloc(sizeof(component_t) * n_all),
              *comps = malloc(sizeof(component_t) * n_all);
  int n_comps = 0;
  for (int i = 0; i < n_all; i++) {
    const int L = i / per_layer, j = i % per_layer;
    if (!heads_neurons)
      all[i] = (component_t){j ? COMPONENT_MLP : COMPONENT_ATTN, L, -1};
    else if (j < c->n_heads)
      all[i] = (component_t){COMPONENT_HEAD, L, j};
    else
      all[i] = (component_t){COMPONENT_NEURON, L,
                             (int)(((long)(j - c->n_heads) * c->d_mlp + L) / HN_NEURONS)};
    if (i % subset == 0)
      comps[n_comps++] = all[i];
  }
  int *targets = malloc(sizeof(int) * n_prompts), *offsets = malloc(sizeof(int) * (n_prompts + 1)),
      *positions = malloc(sizeof(int) * n_prompts);
  for (int p = 0; p < n_prompts; p++) {
    targets[p] = -1;
    offsets[p] = p;
    positions[p] = lengths[p] - 1;
  }
  offsets[n_prompts] = n_prompts;
  const method_t resample = {.kind = method_kind, .value = 0, .source = -1};
  engine_job_t job = {.n_prompts = n_prompts,
                      .lengths = lengths,
                      .ids = ids,
                      .targets = targets,
                      .components = comps,
                      .n_components = n_comps,
                      .methods = &resample,
                      .n_methods = 1,
                      .samples = samples,
                      .seed = seed,
                      .position_offsets = offsets,
                      .position_list = positions,
                      .metrics =
                          all_metrics ? METRIC_LOGPROB | METRIC_PROB | METRIC_KL | METRIC_RANK : 0,
                      .reuse = reuse,
                      .each_draw = each_draw,
                      .max_rows = max_rows,
                      .tf32 = tf32};
#ifndef HYDRA_BENCH_BASELINE /* an engine without shortcuts has no such field */
  job.whole_stages = whole_stages;
#endif
  rows_t rows = {.n_prompts = n_prompts,
                 .n_comps = n_comps,
                 .target = calloc(n_prompts, sizeof(int)),
                 .clean_logit = calloc(n_prompts, sizeof(float)),
                 .total = calloc((size_t)n_prompts * n_comps, sizeof(float)),
                 .kl = calloc((size_t)n_prompts * n_comps, sizeof(float)),
                 .logprob = calloc((size_t)n_prompts * n_comps, sizeof(float))};
  engine_sink_t sink = {.ctx = &rows, .clean = on_clean, .variant = on_variant};

  double *times = malloc(sizeof(double) * runs), wall = 0, cpu = 0;
  for (int r = -warmup; r < runs; r++) {
    const double t0 = bench_now(), c0 = cpu_now();
    const int step = unit > 0 ? unit : n_prompts;
    for (int u0 = 0; u0 < n_prompts; u0 += step)
      for (int k = 0; k < interleave; k++) {
        job.prompt_first = unit > 0 ? u0 : 0;
        job.prompt_end = unit > 0 ? (u0 + step < n_prompts ? u0 + step : n_prompts) : 0;
#ifndef HYDRA_BENCH_BASELINE /* tests/bench/host_work.sh builds it on an engine without */
        /* as hydrad: a job's units share its key, every job has its own */
        job.source_key = unit > 0 && keep ? (uint64_t)(r + 2) * 64 + (uint64_t)k : 0;
#endif
        if (engine_run(e, &job, &sink, err) != 0) {
          fprintf(stderr, "bench_sweep: %s\n", err);
          return 1;
        }
      }
    job.prompt_first = job.prompt_end = 0;
    if (r >= 0) {
      times[r] = bench_now() - t0;
      wall += times[r];
      cpu += cpu_now() - c0;
    }
  }
  const double t = bench_median(times, runs);
  long shortcut_runs = 0;
#ifndef HYDRA_BENCH_BASELINE
  shortcut_runs = engine_shortcut_runs(e);
#endif
  const long variants = engine_job_variants(&job);
  int *runs_run = count_runs(&job, n_comps, each_draw),
      *runs_all = count_runs(&job, n_all, each_draw);
  const long distinct = sum_runs(runs_run, (size_t)n_prompts * n_comps),
             distinct_all = sum_runs(runs_all, (size_t)n_prompts * n_all);
  const double flops = sweep_flops(c, lengths, n_prompts, comps, n_comps, runs_run, reuse,
                                   whole_stages, all_metrics);
  const double flops_all =
      sweep_flops(c, lengths, n_prompts, all, n_all, runs_all, reuse, whole_stages, all_metrics);
  const double flops_full =
      sweep_flops(c, lengths, n_prompts, all, n_all, runs_all, 0, 1, all_metrics);
  free(runs_run), free(runs_all);
  /* the sgemm rate at the rows of a full pass (the engine's row budget) */
  const int sg_rows = sgemm_rows > 0 ? sgemm_rows
                      : max_rows > 0 ? max_rows
                                     : engine_pass_rows(e, 0, NULL);
  b->ops->set_precision(b, tf32); /* the rates in the job's precision */
  const double sg = gemm ? gemm_gflops(b, c, sg_rows, 5, 1) : 0;
  const double mm = gemm ? gemm_gflops(b, c, sg_rows, 5, 0) : 0;
  const double pk =
      peak > 0 ? 2.0 * peak * peak * peak / gemm_time(b, peak, peak, peak, 5, 1) / 1e9 : 0;
  const double extrapolated = t * (double)n_all / n_comps;
  long tokens = 0;
  for (int p = 0; p < n_prompts; p++)
    tokens += lengths[p];
  printf("reuse=%d prompts=%d tokens=%ld components=%d components_all=%d samples=%d runs=%d "
         "median_s=%.4f extrapolated_s=%.4f variants=%ld variants_all=%ld variants_per_s=%.1f "
         "runs_distinct=%ld runs_distinct_all=%ld each_draw=%d "
         "flops=%.4e flops_all=%.4e flops_full=%.4e gflops=%.2f sgemm_gflops=%.2f "
         "matmul_gflops=%.2f sgemm_rows=%d "
         "floor_s=%.4f floor_full_s=%.4f peak_gflops=%.1f peak_n=%d gemm_share=%.3f "
         "cpu_per_wall=%.2f backend=%s precision=%s weights=%s pass_rows=%d unit_prompts=%d "
         "interleave=%d whole_stages=%d shortcut_runs=%ld\n",
         reuse, n_prompts, tokens, n_comps, n_all, samples, runs, t, extrapolated, variants,
         (long)samples * n_all * n_prompts, variants / t, distinct, distinct_all, each_draw, flops,
         flops_all, flops_full, flops / t / 1e9, sg, mm, sg_rows, flops_all / (sg * 1e9),
         flops_full / (sg * 1e9), pk, peak, pk > 0 ? flops / t / 1e9 / pk : 0, cpu / wall,
         b->ops->name, engine_precision(e, tf32), weights_dtype_name(m->weights_dtype),
         max_rows > 0 ? max_rows : engine_pass_rows(e, 0, NULL), unit, interleave, whole_stages,
         shortcut_runs);
  if (rows_out) {
    FILE *f = fopen(rows_out, "w");
    if (!f) {
      fprintf(stderr, "bench_sweep: cannot write %s\n", rows_out);
      return 1;
    }
    fprintf(f, "{\"reuse\": %d, \"each_draw\": %d, \"samples\": %d, \"seed\": %llu, \"clean\": [",
            reuse, each_draw, samples, (unsigned long long)seed);
    for (int p = 0; p < n_prompts; p++)
      fprintf(f, "%s{\"target\": %d, \"logit\": %.6g}", p ? ", " : "", rows.target[p],
              rows.clean_logit[p]);
    fprintf(f, "],\n \"components\": [");
    for (int i = 0; i < n_comps; i++) {
      char name[32];
      component_name(&comps[i], name, sizeof(name));
      fprintf(f, "%s\"%s\"", i ? ", " : "", name);
    }
    const char *names[3] = {"total_effect", "kl", "logprob"};
    const float *arrays[3] = {rows.total, rows.kl, rows.logprob};
    for (int a = 0; a < (all_metrics ? 3 : 1); a++) {
      fprintf(f, "],\n \"%s\": [", names[a]);
      for (int p = 0; p < n_prompts; p++) {
        fprintf(f, "%s[", p ? ",\n  " : "\n  ");
        for (int i = 0; i < n_comps; i++)
          fprintf(f, "%s%.8g", i ? ", " : "", arrays[a][(size_t)p * n_comps + i]);
        fprintf(f, "]");
      }
    }
    fprintf(f, "]}\n");
    fclose(f);
  }
  free(times), free(targets), free(offsets), free(positions), free(all), free(comps);
  free(rows.target), free(rows.clean_logit), free(rows.total), free(rows.kl), free(rows.logprob),
      free(lengths), free(ids);
  engine_destroy(e);
  backend_destroy(b);
  model_free(m);
  return 0;
}
