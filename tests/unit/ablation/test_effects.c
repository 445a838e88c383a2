/* test_effects.c - the paper's equations (common/ablation/effects.c)
 * against tests/golden/effects.json, a float64 numpy computation written
 * from the paper (tests/golden/make_effects_golden.py) on seeded random
 * inputs. Bounds: fp32 arithmetic on O(1) values, 1e-5 relative to each
 * quantity's scale; sums kept in double (compensation, the fit) 1e-12. */
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

/* Eq. 9 and Eq. 10: ubar, the frozen-norm direction, the bias term and
 * every slot's direct effect. */
static void check_directions(const json_t *g, int d, int vocab) {
  size_t n;
  float *unembed = floats(json_object_get(g, "unembed"), &n);
  double *ubar_want = doubles(json_object_get(g, "ubar"), &n);
  float *ubar = malloc(sizeof(float) * d), *dir = malloc(sizeof(float) * d),
        *udir = malloc(sizeof(float) * d);
  effects_mean_unembed(unembed, vocab, d, ubar);
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

/* Fig. 7d from the running sums the summary keeps. */
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
    effects_fit((double)n, sx, sy, sxx, syy, sxy, &slope, &r2);
    const double want_slope = json_number_value(json_object_get(c, "slope"));
    const double want_r2 = json_number_value(json_object_get(c, "r2"));
    /* n = 2 fits exactly (r2 = 1): the sums lose digits there */
    const double bound = n > 2 ? 1e-9 : 1e-6;
    CHECK_CLOSE("fit slope", slope, want_slope, bound, fmax(1, fabs(want_slope)));
    CHECK_CLOSE("fit r2", r2, want_r2, bound, 1);
    free(x);
    free(y);
  }
  double slope, r2;
  effects_fit(1, 1, 1, 1, 1, 1, &slope, &r2);
  CHECK(isnan(slope) && isnan(r2), "a fit over one prompt is undefined (NaN), got %g %g", slope,
        r2);
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
  json_decref(g);
  return check_exit("effects");
}
