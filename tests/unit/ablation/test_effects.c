/* test_effects.c - the paper's equations (common/ablation/effects.c)
 * against tests/golden/effects.json, a float64 numpy computation written
 * from the paper (tests/golden/make_effects_golden.py) on seeded random
 * inputs. Bounds: fp32 arithmetic on O(1) values, 1e-5 relative to each
 * quantity's scale; sums kept in double (compensation) 1e-12, the fit 1e-9;
 * Student's t quantiles 1e-10 against mpmath. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "effects.h"

#define FP32_BOUND 1e-5
#define DOUBLE_BOUND 1e-12

static double *doubles(const json_t *a, size_t *n) {
  *n = json_array_size(a);
  double *out = calloc(*n ? *n : 1, sizeof(double));
  for (size_t i = 0; out && i < *n; i++)
    out[i] = json_number_value(json_array_get(a, i));
  return out;
}

static float *floats(const json_t *a, size_t *n) {
  *n = json_array_size(a);
  float *out = calloc(*n ? *n : 1, sizeof(float));
  for (size_t i = 0; out && i < *n; i++)
    out[i] = (float)json_number_value(json_array_get(a, i));
  return out;
}

static double max_abs(const double *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    m = fmax(m, fabs(x[i]));
  return m > 0 ? m : 1;
}

typedef struct {
  const float *rows;
  int d;
} row_table_t;

static const float *table_row(const void *ctx, int t, float *buf) {
  const row_table_t *table = ctx;
  (void)buf;
  return table->rows + (size_t)t * table->d;
}

/* Eq. 9 and Eq. 10: ubar, the frozen-norm direction, the bias term and
 * every slot's direct effect. */
static void check_directions(const json_t *g, int d, int vocab) {
  size_t n;
  float *unembed = floats(json_object_get(g, "unembed"), &n);
  double *ubar_want = doubles(json_object_get(g, "ubar"), &n);
  float *ubar = malloc(sizeof(float) * d), *dir = malloc(sizeof(float) * d),
        *udir = malloc(sizeof(float) * d);
  effects_mean_unembed(table_row, &(row_table_t){unembed, d}, vocab, d, ubar);
  for (int i = 0; i < d; i++)
    CHECK_CLOSE("ubar", ubar[i], ubar_want[i], FP32_BOUND, max_abs(ubar_want, d));
  size_t k;
  const json_t *c;
  json_array_foreach(json_object_get(g, "directions"), k, c) {
    size_t m;
    float *gamma = floats(json_object_get(c, "gamma"), &m);
    const json_t *jb = json_object_get(c, "beta");
    float *beta = json_is_array(jb) ? floats(jb, &m) : NULL;
    float *ys = floats(json_object_get(c, "outputs"), &m);
    double *dir_want = doubles(json_object_get(c, "dir"), &m);
    double *udir_want = doubles(json_object_get(c, "udir"), &m);
    double *direct_want = doubles(json_object_get(c, "direct"), &m);
    const int target = (int)json_integer_value(json_object_get(c, "target"));
    const int ln = (int)json_integer_value(json_object_get(c, "layernorm"));
    const float s = (float)json_number_value(json_object_get(c, "inv_scale"));
    const double bias =
        effects_direction(unembed + (size_t)target * d, ubar, gamma, beta, s, ln, d, dir, udir);
    const double want_bias = json_number_value(json_object_get(c, "bias_term"));
    CHECK_CLOSE("bias term", bias, want_bias, FP32_BOUND, fmax(1, fabs(want_bias)));
    for (int i = 0; i < d; i++) {
      CHECK_CLOSE("direction", dir[i], dir_want[i], FP32_BOUND, max_abs(dir_want, d));
      CHECK_CLOSE("centred unembedding", udir[i], udir_want[i], FP32_BOUND, max_abs(udir_want, d));
    }
    for (size_t slot = 0; slot < m; slot++)
      CHECK_CLOSE("direct effect", effects_direct(ys + slot * d, dir, d), direct_want[slot],
                  FP32_BOUND, max_abs(direct_want, m));
    free(gamma);
    free(beta);
    free(ys);
    free(dir_want);
    free(udir_want);
    free(direct_want);
  }
  free(unembed);
  free(ubar_want);
  free(ubar);
  free(dir);
  free(udir);
}

/* Eq. 33 and the effect-table row, sequential and parallel residual. */
static void check_compensation(const json_t *g, int n_slots) {
  double *delta = malloc(sizeof(double) * n_slots);
  size_t k;
  const json_t *c;
  json_array_foreach(json_object_get(g, "compensation"), k, c) {
    size_t n;
    float *clean = floats(json_object_get(c, "clean"), &n); /* fp32 values (the engine's) */
    double *ablated = doubles(json_object_get(c, "ablated"), &n);
    double *delta_want = doubles(json_object_get(c, "delta"), &n);
    const int of = (int)json_integer_value(json_object_get(c, "of"));
    const int parallel = (int)json_integer_value(json_object_get(c, "parallel"));
    effects_change_t ch = {0};
    for (int s = 0; s < n_slots; s++) { /* as the engine walks the slots */
      delta[s] = ablated[s] - clean[s];
      effects_add_change(&ch, s, of, parallel, delta[s]);
    }
    const double scale = max_abs(delta_want, n);
    for (int s = 0; s < n_slots; s++)
      CHECK_CLOSE("effect-table row", delta[s], delta_want[s], DOUBLE_BOUND, scale);
    CHECK_CLOSE("direct", ch.direct, json_number_value(json_object_get(c, "direct")), DOUBLE_BOUND,
                scale);
    CHECK_CLOSE("compensation", ch.compensation,
                json_number_value(json_object_get(c, "compensation")), DOUBLE_BOUND, scale);
    CHECK_CLOSE("compensation (attention)", ch.compensation_attn,
                json_number_value(json_object_get(c, "compensation_attn")), DOUBLE_BOUND, scale);
    CHECK_CLOSE("compensation (MLP)", ch.compensation_mlp,
                json_number_value(json_object_get(c, "compensation_mlp")), DOUBLE_BOUND, scale);
    CHECK(effects_total(clean[0], ablated[0]) == clean[0] - ablated[0], "Eq. 12's sign");
    free(clean);
    free(ablated);
    free(delta_want);
  }
  free(delta);
}

/* Fig. 7d from the running sums the summary keeps: fitted where the golden
 * fits, null (NaN) where it says the fit means nothing (below 3 prompts, or
 * a direct effect whose spread is at rounding level). */
static void check_fits(const json_t *g) {
  size_t k;
  const json_t *c;
  json_array_foreach(json_object_get(g, "fits"), k, c) {
    size_t n;
    double *x = doubles(json_object_get(c, "x"), &n);
    double *y = doubles(json_object_get(c, "y"), &n);
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, slope, r2;
    for (size_t i = 0; i < n; i++) {
      sx += x[i];
      sy += y[i];
      sxx += x[i] * x[i];
      syy += y[i] * y[i];
      sxy += x[i] * y[i];
    }
    const double x_scale = json_number_value(json_object_get(c, "x_scale"));
    const int why = effects_fit((double)n, sx, sy, sxx, syy, sxy, x_scale, &slope, &r2);
    const json_t *want_slope = json_object_get(c, "slope"), *want_r2 = json_object_get(c, "r2");
    if (json_is_null(want_slope)) {
      CHECK(isnan(slope) && isnan(r2) && why != EFFECTS_FIT_OK,
            "fit %zu (n %zu, x_scale %g): want null, got slope %g r2 %g", k, n, x_scale, slope, r2);
    } else {
      CHECK(why == EFFECTS_FIT_OK, "fit %zu (n %zu): want a fit, got reason %d", k, n, why);
      const double ws = json_number_value(want_slope), wr = json_number_value(want_r2);
      CHECK_CLOSE("fit slope", slope, ws, 1e-9, fmax(1, fabs(ws)));
      CHECK_CLOSE("fit r2", r2, wr, 1e-9, 1);
    }
    free(x);
    free(y);
  }
  double slope, r2;
  CHECK(effects_fit(2, 1, 1, 1, 1, 1, 1, &slope, &r2) == EFFECTS_FIT_FEW_PROMPTS && isnan(slope) &&
            isnan(r2),
        "a fit over two prompts is undefined (NaN), got %g %g", slope, r2);
}

/* Student's t quantiles of the 95% interval: the golden's (mpmath, 30
 * digits) to 1e-10 relative, and the values scipy.stats.t.ppf(0.975, df)
 * prints to its 3 decimals, to 1e-3 relative. */
static void check_t_quantiles(const json_t *g) {
  size_t k;
  const json_t *c;
  json_array_foreach(json_object_get(g, "t_quantiles"), k, c) {
    const double p = json_number_value(json_object_get(c, "p"));
    const double df = json_number_value(json_object_get(c, "df"));
    const double want = json_number_value(json_object_get(c, "t"));
    CHECK_CLOSE("t quantile", effects_t_quantile(p, df), want, 1e-10, fabs(want));
  }
  const struct {
    int df;
    double t;
  } scipy[] = {{1, 12.706}, {2, 4.303}, {4, 2.776}, {14, 2.145}, {100, 1.984}};
  for (size_t i = 0; i < sizeof(scipy) / sizeof(scipy[0]); i++)
    CHECK_CLOSE("t(0.975) against scipy", effects_t_quantile(0.975, scipy[i].df), scipy[i].t, 1e-3,
                scipy[i].t);
  CHECK_CLOSE("ci95 of n = 3", effects_ci95(2.0, 3), 4.302652729749462 * 2.0 / sqrt(3.0), 1e-10,
              1.0);
  CHECK(isnan(effects_ci95(1.0, 1)), "a 95%% interval of one value is undefined");
  CHECK(isnan(effects_t_quantile(0.4, 3)) && isnan(effects_t_quantile(0.975, 0)),
        "t quantile outside p in (0.5, 1) or df <= 0 is NaN");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_effects HYDRA_ROOT\n");
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof(path), "%s/tests/golden/effects.json", argv[1]);
  json_error_t jerr;
  json_t *g = json_load_file(path, 0, &jerr);
  if (!g) {
    fprintf(stderr, "test_effects: %s: %s\n", path, jerr.text);
    return 1;
  }
  const int d = (int)json_integer_value(json_object_get(g, "d"));
  check_seed((uint64_t)json_integer_value(json_object_get(g, "seed")));
  check_directions(g, d, (int)json_integer_value(json_object_get(g, "vocab")));
  check_compensation(g, (int)json_integer_value(json_object_get(g, "n_slots")));
  check_fits(g);
  check_t_quantiles(g);
  json_decref(g);
  return check_exit("effects");
}
