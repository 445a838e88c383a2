/* effects.c - the paper's equations; see effects.h. */
#include "effects.h"

#include <math.h>
#include <stdlib.h>

void effects_mean_unembed(effects_row_t row, const void *ctx, int vocab, int d, float *ubar) {
  double *acc = calloc((size_t)d, sizeof(double));
  float *buf = malloc(sizeof(float) * (size_t)d);
  for (int t = 0; acc && buf && t < vocab; t++) {
    const float *u = row(ctx, t, buf);
    for (int i = 0; i < d; i++)
      acc[i] += u[i];
  }
  for (int i = 0; i < d; i++)
    ubar[i] = acc && buf ? (float)(acc[i] / vocab) : NAN;
  free(buf);
  free(acc);
}

double effects_direction(const float *u_target, const float *ubar, const float *gamma,
                         const float *beta, float s, int layernorm, int d, float *dir,
                         float *udir) {
  double mean = 0.0, bias = 0.0;
  for (int i = 0; i < d; i++) {
    udir[i] = u_target[i] - ubar[i];
    dir[i] = gamma[i] * udir[i] * s;
    mean += dir[i];
    if (beta)
      bias += (double)beta[i] * udir[i];
  }
  if (layernorm)
    for (int i = 0; i < d; i++)
      dir[i] -= (float)(mean / d);
  return bias;
}

double effects_direct(const float *y, const float *dir, int d) {
  double de = 0.0;
  for (int i = 0; i < d; i++)
    de += (double)y[i] * dir[i];
  return de;
}

double effects_total(double clean_logit, double ablated_logit) {
  return clean_logit - ablated_logit;
}

double effects_norm_rescale(float ablated_inv_scale, float clean_inv_scale) {
  return (double)ablated_inv_scale / clean_inv_scale;
}

int effects_fit(double n, double sx, double sy, double sxx, double syy, double sxy, double x_scale,
                double *slope, double *r2) {
  *slope = *r2 = NAN;
  if (!(n >= EFFECTS_FIT_MIN_PROMPTS))
    return EFFECTS_FIT_FEW_PROMPTS;
  const double vx = sxx - sx * sx / n, vy = syy - sy * sy / n, cxy = sxy - sx * sy / n;
  const double spread = EFFECTS_FIT_MIN_SPREAD * x_scale;
  if (!(vx > 0) || !(sqrt(vx / (n - 1)) > spread))
    return EFFECTS_FIT_NO_SPREAD;
  *slope = cxy / vx;
  if (vy > 0)
    *r2 = cxy * cxy / (vx * vy);
  return EFFECTS_FIT_OK;
}

/* The continued fraction of I_x(a, b) (DLMF 8.17.22), evaluated by the
 * modified Lentz method: returns the fraction 1 / (1 + d1 / (1 + d2 / ...)). */
static double beta_fraction(double a, double b, double x) {
  const double tiny = 1e-300;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  d = 1.0 / (fabs(d) < tiny ? tiny : d);
  double f = d;
  for (int m = 1; m <= 1000; m++) {
    const double even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
    const double odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
    for (int half = 0; half < 2; half++) {
      const double coef = half ? odd : even;
      d = 1.0 + coef * d;
      d = 1.0 / (fabs(d) < tiny ? tiny : d);
      c = 1.0 + coef / c;
      c = fabs(c) < tiny ? tiny : c;
      f *= c * d;
    }
    if (fabs(c * d - 1.0) < 1e-16)
      break;
  }
  return f;
}

/* The regularised incomplete beta function I_x(a, b), 0 <= x <= 1. */
static double incomplete_beta(double a, double b, double x) {
  if (x <= 0)
    return 0;
  if (x >= 1)
    return 1;
  const double front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
  /* the fraction converges fast below the mean; above it use I_x(a,b) = 1 - I_1-x(b,a) */
  if (x < (a + 1.0) / (a + b + 2.0))
    return front * beta_fraction(a, b, x) / a;
  return 1.0 - front * beta_fraction(b, a, 1.0 - x) / b;
}

/* P(T > t) for t >= 0: I_{df/(df+t^2)}(df/2, 1/2) / 2 (DLMF 8.17.2 with the t distribution). */
static double t_upper_tail(double t, double df) {
  return 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
}

double effects_t_quantile(double p, double df) {
  if (!(p > 0.5 && p < 1.0) || !(df > 0))
    return NAN;
  const double tail = 1.0 - p;
  double lo = 0.0, hi = 1.0;
  while (t_upper_tail(hi, df) > tail && hi < 1e300)
    hi *= 2.0;
  for (int i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
    const double mid = 0.5 * (lo + hi);
    if (t_upper_tail(mid, df) > tail)
      lo = mid;
    else
      hi = mid;
  }
  return 0.5 * (lo + hi);
}

double effects_ci95(double sd, long n) {
  return n > 1 ? effects_t_quantile(0.975, (double)(n - 1)) * sd / sqrt((double)n) : NAN;
}
