/* effects.c - the paper's equations; see effects.h. */
#include "effects.h"

#include <math.h>
#include <stdlib.h>

void effects_mean_unembed(const float *unembed, int vocab, int d, float *ubar) {
  double *acc = calloc((size_t)d, sizeof(double));
  for (int t = 0; acc && t < vocab; t++)
    for (int i = 0; i < d; i++)
      acc[i] += unembed[(size_t)t * d + i];
  for (int i = 0; i < d; i++)
    ubar[i] = acc ? (float)(acc[i] / vocab) : NAN;
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

void effects_fit(double n, double sx, double sy, double sxx, double syy, double sxy, double *slope,
                 double *r2) {
  const double m = n ? n : 1;
  const double vx = sxx - sx * sx / m, vy = syy - sy * sy / m, cxy = sxy - sx * sy / m;
  *slope = n > 1 && vx > 0 ? cxy / vx : NAN;
  *r2 = n > 1 && vx > 0 && vy > 0 ? cxy * cxy / (vx * vy) : NAN;
}
