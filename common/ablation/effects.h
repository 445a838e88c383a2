/* effects.h - the equations of McGrath et al., "The Hydra Effect"
 * (arXiv 2307.15771), each tagged with its number; pure functions of host
 * arrays, no backend, no state. The engine and the result rows compute
 * every reported quantity through them.
 *
 * Notation: d the model width, u_t the unembedding row of token t, ubar the
 * mean unembedding row, gamma and beta the final norm's scale and bias, s
 * the final norm's 1/scale of the clean run at the read position. */
#ifndef HYDRA_EFFECTS_H
#define HYDRA_EFFECTS_H

/* Row t of an unembedding: a pointer to its d floats (into a table, or buf
 * of d floats filled with it). */
typedef const float *(*effects_row_t)(const void *ctx, int t, float *buf);

/* Eq. 9 (centred logits): ubar[d] = the mean over the vocabulary of the
 * unembedding rows row(ctx, t, .) (summed in double, in token order). A
 * centred logit is (u_t - ubar) . z. */
void effects_mean_unembed(effects_row_t row, const void *ctx, int vocab, int d, float *ubar);

/* Eq. 10 (the frozen-norm direction): udir = u_t - ubar (the centred
 * unembedding row; the ablated run's centred target logit is udir . its
 * normed final residual) and dir = gamma * udir * s, less its mean for a
 * LayerNorm ((x - mean x) . w == x . (w - mean w)), so that a component's
 * direct effect is its output . dir. Returns the norm's bias term beta .
 * udir (0 when beta is NULL): the direct effects of all components sum with
 * it to the clean centred target logit. u_target may be udir (the row
 * decoded into it). */
double effects_direction(const float *u_target, const float *ubar, const float *gamma,
                         const float *beta, float s, int layernorm, int d, float *dir, float *udir);

/* Eq. 10 (direct effect): y . dir, summed in double. */
double effects_direct(const float *y, const float *dir, int d);

/* Eq. 12, sign turned so that an important component is positive: the
 * clean centred target logit minus the ablated run's. */
double effects_total(double clean_logit, double ablated_logit);

/* The norm's share of self-repair: an ablated run's direct effects read
 * with its own final-norm scale (norm_scale "ablated") are those read with
 * the clean scale times this factor. */
double effects_norm_rescale(float ablated_inv_scale, float clean_inv_scale);

/* Slots are the direct-effect decomposition: 0 the embeddings, 1 + 2L the
 * attention of layer L, 2 + 2L its MLP. 1 when slot `s` is downstream of
 * the ablated slot `of` (reads its output): later slots, except that with a
 * parallel residual layer L's MLP does not read its attention. */
static inline int effects_downstream(int s, int of, int parallel_residual) {
  if (s <= of)
    return 0;
  /* slot of = 1 + 2L is layer L's attention; s = of + 1 its MLP */
  return !(parallel_residual && of > 0 && of % 2 == 1 && s == of + 1);
}

/* What an ablation did to the direct effects (Eq. 33 and the paper's
 * Figs. 1, 3, 8), from the clean run's direct effects clean[s] and the
 * ablated run's ablated[s] over the slots:
 *   delta[s]     = ablated[s] - clean[s] (the effect-table row);
 *   direct       = -delta[of], the ablated component's own direct-effect drop;
 *   compensation = sum of delta[s] over slots downstream of `of` (Eq. 33),
 *                  split into attention slots (the Hydra effect) and MLP
 *                  slots (mostly reduced erasure). */
typedef struct {
  double direct, compensation, compensation_attn, compensation_mlp;
} effects_change_t;
/* One slot s's change delta[s] counted into c by its role: 1 the ablated
 * unit's own slot (a group has several: its direct effect is their summed
 * drop), 2 downstream of it and not its own (compensation), 0 neither. A
 * caller walks the slots once (the engine adds each change to its
 * effect-table row as it goes). */
static inline void effects_add_role(effects_change_t *c, int s, int role, double change) {
  if (role == 1)
    c->direct -= change;
  else if (role == 2) {
    c->compensation += change;
    if (s % 2)
      c->compensation_attn += change;
    else
      c->compensation_mlp += change;
  }
}

/* effects_add_role for one ablated slot `of`. */
static inline void effects_add_change(effects_change_t *c, int s, int of, int parallel_residual,
                                      double change) {
  effects_add_role(c, s,
                   s == of                                        ? 1
                   : effects_downstream(s, of, parallel_residual) ? 2
                                                                  : 0,
                   change);
}

/* Fig. 7d: the least-squares fit compensation = slope * direct + c over n
 * prompts, from the sums of x = direct, y = compensation, x^2, y^2 and x y.
 * The fit is reported only where it can mean something: with at least
 * EFFECTS_FIT_MIN_PROMPTS prompts (two points always fit exactly, R^2 = 1)
 * and with a spread of x over the prompts (its standard deviation) above
 * EFFECTS_FIT_MIN_SPREAD times x_scale, the logit scale of the job (the
 * caller passes the root mean square of the clean centred target logit,
 * at least 1). Direct effects are read in fp32: an effect that is exactly 0
 * comes out as noise of about 1e-8 to 1e-7 of the logit's size, whose fit
 * gives slopes of 1e4 and more; 1e-5 of the logit scale is a hundred times
 * that noise and far below any effect worth a slope. Returns
 * EFFECTS_FIT_OK, or the reason slope and r2 are NaN (r2 is NaN too when y
 * has no spread). */
#define EFFECTS_FIT_MIN_PROMPTS 3
#define EFFECTS_FIT_MIN_SPREAD 1e-5
enum { EFFECTS_FIT_OK = 0, EFFECTS_FIT_FEW_PROMPTS, EFFECTS_FIT_NO_SPREAD };
int effects_fit(double n, double sx, double sy, double sxx, double syy, double sxy, double x_scale,
                double *slope, double *r2);

/* Student's t quantile: the t with P(T <= t) = p for T with df > 0 degrees
 * of freedom, p in (0.5, 1); NaN outside. Exact to about 1e-12 relative (a
 * bisection on the distribution function, written through the regularised
 * incomplete beta function, DLMF 8.17.22 and 8.17.2). */
double effects_t_quantile(double p, double df);

/* Half-width of the 95% interval of a mean over n values with sample
 * standard deviation sd: t(0.975, n - 1) * sd / sqrt(n). NaN for n < 2. */
double effects_ci95(double sd, long n);

#endif
