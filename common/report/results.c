#include "results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effects.h"
#include "utf8.h"

/* Running sums of one (component, method[, grid position]) over prompts. */
typedef struct {
  long n;
  long nonfinite;         /* rows with a non-finite value (their sums are NaN) */
  double sum[5], sum2[5]; /* direct, total, compensation, attn, mlp */
  double sum_dc;          /* direct x compensation */
  long n_logit;           /* rows with a finite clean centred target logit */
  double sum_logit2;      /* its square: the logit scale of the fit's spread */
  double *delta;          /* [n_slots] */
} stat_t;

struct results {
  const plan_t *plan;
  const model_t *m;
  const tokenizer_t *tok;
  results_info_t info;
  results_emit_fn emit;
  void *ctx;
  int n_slots;
  stat_t *stats;
  double *deltas;
  long rows;
  long nonfinite_rows; /* rows added or emitted with a non-finite value */
  char **slot_names;
};

/* Summaries: one per component x method, and per grid position. */
static size_t n_stats_of(const plan_t *p) {
  return (size_t)p->n_components * p->n_methods * (p->grid ? (size_t)p->n_grid : 1);
}

/* A grid key as rows carry it: the position, or over spans ("span") the
 * span's name. */
static json_t *grid_key(const plan_t *p, int key) {
  return p->span_names ? json_string(p->span_names[key]) : json_integer(key);
}

/* The grid index of a row's key (-1: not in the grid). */
static int row_grid_index(const plan_t *p, const json_t *row) {
  if (p->span_names) {
    const char *name = json_string_value(json_object_get(row, "span"));
    for (int k = 0; name && k < p->n_spans; k++)
      if (strcmp(p->span_names[k], name) == 0)
        return k;
    return -1;
  }
  const json_t *at = json_object_get(row, "position");
  if (!json_is_integer(at))
    return -1;
  const long position = (long)json_integer_value(at);
  int lo = 0, hi = p->n_grid - 1;
  while (lo <= hi) {
    const int mid = (lo + hi) / 2;
    if (p->grid[mid] == position)
      return mid;
    if (p->grid[mid] < position)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

results_t *results_create(const plan_t *plan, const model_t *m, const tokenizer_t *tok,
                          const results_info_t *info, results_emit_fn emit, void *ctx, char *err) {
  results_t *r = calloc(1, sizeof(*r));
  if (!r) {
    err_set(err, "out of memory");
    return NULL;
  }
  r->plan = plan;
  r->m = m;
  r->tok = tok;
  r->info = *info;
  r->emit = emit;
  r->ctx = ctx;
  r->n_slots = engine_n_slots(&m->cfg);
  const size_t n_stats = n_stats_of(plan);
  r->stats = calloc(n_stats ? n_stats : 1, sizeof(stat_t));
  r->deltas = calloc((n_stats ? n_stats : 1) * r->n_slots, sizeof(double));
  r->slot_names = calloc(r->n_slots, sizeof(char *));
  if (!r->stats || !r->deltas || !r->slot_names) {
    results_free(r);
    err_set(err, "out of memory for the summary of %zu components x methods", n_stats);
    return NULL;
  }
  for (size_t i = 0; i < n_stats; i++)
    r->stats[i].delta = r->deltas + i * r->n_slots;
  for (int s = 0; s < r->n_slots; s++) {
    char name[32];
    engine_slot_name(s, name, sizeof(name));
    if (!(r->slot_names[s] = strdup(name))) {
      results_free(r);
      err_set(err, "out of memory");
      return NULL;
    }
  }
  return r;
}

void results_free(results_t *r) {
  if (!r)
    return;
  for (int s = 0; r->slot_names && s < r->n_slots; s++)
    free(r->slot_names[s]);
  free(r->slot_names);
  free(r->stats);
  free(r->deltas);
  free(r);
}

long results_rows(const results_t *r) {
  return r->rows;
}

void results_set_rows(results_t *r, long rows) {
  r->rows = rows;
}

static int emit(results_t *r, json_t *row) {
  if (!row)
    return -1;
  int rc = r->emit(r->ctx, row);
  json_decref(row);
  r->rows++;
  return rc;
}

/* A number, or null for NaN/inf (JSON has neither). */
static json_t *num(double x) {
  return isfinite(x) ? json_real(x) : json_null();
}

/* A stored number, NaN where the row holds null (a non-finite value): never 0. */
static double stored_num(const json_t *v) {
  return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Sets row[key] to x (null when non-finite), and lists key in nonfinite. */
static void put(json_t *row, json_t *nonfinite, const char *key, double x) {
  if (!isfinite(x))
    json_array_append_new(nonfinite, json_string(key));
  json_object_set_new(row, key, num(x));
}

/* The row's "nonfinite" list, when it names any field; counts the row. */
static void mark_nonfinite(results_t *r, json_t *row, json_t *nonfinite) {
  if (json_array_size(nonfinite)) {
    json_object_set(row, "nonfinite", nonfinite);
    r->nonfinite_rows++;
  }
  json_decref(nonfinite);
}

/* Metrics beyond the centred logit are in a row exactly when the job asks
 * for one of them (null and marked when non-finite, never left out). */
static int full_metrics(const plan_t *p) {
  return (p->job.metrics &
          (METRIC_LOGPROB | METRIC_PROB | METRIC_KL | METRIC_RANK | METRIC_LOGIT_DIFF)) != 0;
}

/* A token's text when it is valid UTF-8 on its own, else its vocabulary piece. */
static json_t *token_string(const results_t *r, int id) {
  if (!r->tok || id < 0)
    return json_null();
  size_t len = 0;
  const char *text = tokenizer_token_text(r->tok, id, &len);
  if (text && utf8_valid(text, len, NULL))
    return json_stringn(text, len);
  const char *piece = tokenizer_token_piece(r->tok, id, &len);
  return piece ? json_stringn(piece, len) : json_null();
}

static json_t *string_array(char **s, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++)
    json_array_append_new(a, json_string(s[i]));
  return a;
}

/* x as an array (null for non-finite entries, then key is listed in nonfinite). */
static json_t *float_array(const float *x, int n, json_t *nonfinite, const char *key) {
  json_t *a = json_array();
  int bad = 0;
  for (int i = 0; i < n; i++) {
    bad |= !isfinite(x[i]);
    json_array_append_new(a, num(x[i]));
  }
  if (bad)
    json_array_append_new(nonfinite, json_string(key));
  return a;
}

/* A job token as written: its text, or {"id": N}. */
static json_t *job_token_json(const job_token_t *t) {
  return t->text ? json_string(t->text) : json_pack("{s:i}", "id", t->id);
}

/* The job's positions rule, as a job document writes it. */
static json_t *positions_rule(const job_spec_t *j) {
  json_t *rule;
  switch (j->positions) {
  case POSITIONS_ALL:
    rule = json_string("all");
    break;
  case POSITIONS_LIST:
    rule = json_array();
    for (int i = 0; i < j->n_positions; i++)
      json_array_append_new(rule, json_integer(j->position_list[i]));
    break;
  case POSITIONS_SUBSTRING:
    rule = j->position_substring ? json_pack("{s:s}", "substring", j->position_substring)
                                 : json_string("subject");
    break;
  case POSITIONS_SPANS:
    rule = json_string("spans");
    break;
  default:
    rule = json_string("last");
  }
  return j->positions_each ? json_pack("{s:o}", "each", rule) : rule;
}

/* The job's target rule: "argmax", "next", {"token": T}, {"token": T,
 * "foil": F}, or "per prompt" (each prompt's own, in its clean row). */
static json_t *target_rule(const job_spec_t *j) {
  if (j->target == TARGET_ARGMAX)
    return json_string("argmax");
  if (j->target == TARGET_NEXT)
    return json_string("next");
  json_t *rule = json_object();
  if (j->target_token.text || j->target_token.id >= 0)
    json_object_set_new(rule, "token", job_token_json(&j->target_token));
  else
    json_object_set_new(rule, "token", json_string("per prompt"));
  if (j->target == TARGET_FOIL && (j->foil_token.text || j->foil_token.id >= 0))
    json_object_set_new(rule, "foil", job_token_json(&j->foil_token));
  return rule;
}

/* A prompt as the job gave it: its text, or null for token ids. */
static json_t *prompt_text(const job_prompt_t *p) {
  return p->text ? json_string(p->text) : json_null();
}

int results_header(results_t *r) {
  const model_config_t *c = &r->m->cfg;
  json_t *h = json_object();
  json_object_set_new(h, "type", json_string("header"));
  json_object_set_new(h, "model", json_string(r->info.model_name ? r->info.model_name : ""));
  json_object_set_new(h, "family", json_string(c->family));
  json_object_set_new(h, "n_layers", json_integer(c->n_layers));
  json_object_set_new(h, "d_model", json_integer(c->d_model));
  json_object_set_new(h, "n_prompts", json_integer(r->plan->n_job_prompts));
  if (r->plan->prompt_of) /* "target": "next": one readout per (prompt, position) */
    json_object_set_new(h, "n_readouts", json_integer(r->plan->n_prompts));
  json_object_set_new(h, "components",
                      string_array(r->plan->component_names, r->plan->n_components));
  const plan_t *p = r->plan;
  if (p->n_groups > 0) { /* each group's components, by their canonical names */
    json_t *groups = json_object();
    for (int u = p->n_components - p->n_groups; u < p->n_components; u++) {
      json_t *members = json_array();
      for (int a = p->unit_first[u]; a < p->unit_first[u + 1]; a++) {
        char name[64];
        component_name(&p->atoms[a], name, sizeof(name));
        json_array_append_new(members, json_string(name));
      }
      json_object_set_new(groups, p->component_names[u], members);
    }
    json_object_set_new(h, "groups", groups);
  }
  if (p->grid) { /* a per-position grid: rows and summaries carry "position" (over spans:
                    "span", the grid the span names) */
    json_t *grid = json_array();
    for (int g = 0; g < p->n_grid; g++)
      json_array_append_new(grid, grid_key(p, p->grid[g]));
    json_object_set_new(h, "grid", grid);
    if (p->span_names)
      json_object_set_new(h, "grid_of", json_string("span"));
  }
  int resid = 0;
  for (int a = 0; a < p->n_atoms; a++)
    resid |= p->atoms[a].kind == COMPONENT_RESID_PRE || p->atoms[a].kind == COMPONENT_RESID_MID ||
             p->atoms[a].kind == COMPONENT_RESID_POST;
  if (resid)
    json_object_set_new(
        h, "residual_sites",
        json_string("a residual-stream site is not a slot of the direct effects: its "
                    "direct_effect is the drop of the site's own projection on the frozen-norm "
                    "target direction at the final position (the clean direct effects of every "
                    "slot upstream of it, as the site holds them); compensation sums the changes "
                    "of every slot downstream of it; its effects row is every slot's change"));
  json_object_set_new(h, "methods", string_array(r->plan->method_names, r->plan->n_methods));
  json_object_set_new(h, "samples", json_integer(r->plan->job.samples));
  const job_spec_t *j = r->info.spec;
  if (j) {
    json_object_set_new(h, "seed", json_integer((json_int_t)j->seed));
    json_object_set_new(h, "positions", positions_rule(j));
    json_object_set_new(h, "target", target_rule(j));
    json_t *texts = json_array();
    for (int i = 0; i < j->n_prompts; i++)
      json_array_append_new(texts, prompt_text(&j->prompts[i]));
    json_object_set_new(h, "prompts", texts);
  }
  json_object_set_new(h, "slots", string_array(r->slot_names, r->n_slots));
  json_object_set_new(h, "variants", json_integer(r->plan->n_variants));
  json_object_set_new(h, "backend", json_string(r->info.backend ? r->info.backend : ""));
  json_object_set_new(h, "precision", json_string(r->info.precision ? r->info.precision : "fp32"));
  json_object_set_new(h, "weights_dtype", json_string(weights_dtype_name(r->m->weights_dtype)));
  json_object_set_new(h, "norm_scale",
                      json_string(r->info.norm_scale_ablated ? "ablated" : "clean"));
  json_object_set_new(h, "reuse", json_boolean(r->plan->job.reuse));
  return emit(r, h);
}

/* "prompt" (the job's prompt index) and, for "target": "next" readouts,
 * "position" (the readout's position in that prompt). */
static void set_prompt(json_t *row, const plan_t *p, int engine_prompt) {
  if (p->prompt_of) {
    json_object_set_new(row, "prompt", json_integer(p->prompt_of[engine_prompt]));
    json_object_set_new(row, "position", json_integer(p->position_of[engine_prompt]));
  } else
    json_object_set_new(row, "prompt", json_integer(engine_prompt));
}

static int on_clean(void *ctx, const engine_clean_t *c) {
  results_t *r = ctx;
  const plan_t *p = r->plan;
  json_t *row = json_object(), *tokens = json_array(), *nonfinite = json_array();
  long start = 0;
  for (int i = 0; i < c->prompt; i++)
    start += p->lengths[i];
  for (int t = 0; t < p->lengths[c->prompt]; t++)
    json_array_append_new(tokens, token_string(r, p->ids[start + t]));
  json_object_set_new(row, "type", json_string("clean"));
  set_prompt(row, p, c->prompt);
  const job_spec_t *j = r->info.spec;
  const int job_prompt = p->prompt_of ? p->prompt_of[c->prompt] : c->prompt;
  if (j && job_prompt >= 0 && job_prompt < j->n_prompts)
    json_object_set_new(row, "text", prompt_text(&j->prompts[job_prompt]));
  json_object_set_new(row, "tokens", tokens);
  json_object_set_new(row, "target", json_integer(c->target));
  json_object_set_new(row, "target_token", token_string(r, c->target));
  put(row, nonfinite, "logit", c->logit);
  if (c->foil >= 0) {
    json_object_set_new(row, "foil", json_integer(c->foil));
    put(row, nonfinite, "logit_diff", c->logit_diff);
  }
  if (full_metrics(p)) {
    put(row, nonfinite, "logprob", c->logprob);
    put(row, nonfinite, "prob", c->prob);
  }
  put(row, nonfinite, "inv_scale", c->inv_scale);
  put(row, nonfinite, "norm_bias", c->norm_bias_term);
  put(row, nonfinite, "unembed_bias", c->unembed_bias_term);
  json_object_set_new(row, "direct_effects",
                      float_array(c->de, r->n_slots, nonfinite, "direct_effects"));
  mark_nonfinite(r, row, nonfinite);
  return emit(r, row);
}

static void add_stats(results_t *r, int component, int method, int g, const double q[5],
                      const double *delta, int nonfinite, double clean_logit) {
  const plan_t *p = r->plan;
  stat_t *s =
      &r->stats[((size_t)component * p->n_methods + method) * (p->grid ? p->n_grid : 1) + g];
  s->n++;
  s->nonfinite += nonfinite != 0;
  for (int i = 0; i < 5; i++) {
    s->sum[i] += q[i];
    s->sum2[i] += q[i] * q[i];
  }
  s->sum_dc += q[0] * q[2];
  if (isfinite(clean_logit)) {
    s->n_logit++;
    s->sum_logit2 += clean_logit * clean_logit;
  }
  for (int k = 0; k < r->n_slots; k++)
    s->delta[k] += delta[k];
}

void results_reset_summary(results_t *r) {
  const size_t n = n_stats_of(r->plan);
  for (size_t i = 0; i < n; i++) {
    double *delta = r->stats[i].delta;
    memset(&r->stats[i], 0, sizeof(stat_t));
    r->stats[i].delta = delta;
    memset(delta, 0, sizeof(double) * r->n_slots);
  }
  r->nonfinite_rows = 0;
}

long results_nonfinite(const results_t *r) {
  return r->nonfinite_rows;
}

static int name_index(char **names, int n, const char *name) {
  for (int i = 0; name && i < n; i++)
    if (strcmp(names[i], name) == 0)
      return i;
  return -1;
}

int results_add_row(results_t *r, const json_t *row) {
  const char *type = json_string_value(json_object_get(row, "type"));
  if (!type || strcmp(type, "variant") != 0) {
    if (type && strcmp(type, "clean") == 0 && json_array_size(json_object_get(row, "nonfinite")))
      r->nonfinite_rows++;
    return 0;
  }
  const plan_t *p = r->plan;
  const int c = name_index(p->component_names, p->n_components,
                           json_string_value(json_object_get(row, "component")));
  const int m =
      name_index(p->method_names, p->n_methods, json_string_value(json_object_get(row, "method")));
  json_t *eff = json_object_get(row, "effects");
  const int g = p->grid ? row_grid_index(p, row) : 0;
  if (c < 0 || m < 0 || g < 0 || json_array_size(eff) != (size_t)r->n_slots)
    return -1;
  const char *keys[5] = {"direct_effect", "total_effect", "compensation", "compensation_attn",
                         "compensation_mlp"};
  double q[5];
  int nonfinite = json_array_size(json_object_get(row, "nonfinite")) != 0;
  for (int i = 0; i < 5; i++)
    nonfinite |= !isfinite(q[i] = stored_num(json_object_get(row, keys[i])));
  double *delta = malloc(sizeof(double) * r->n_slots);
  if (!delta)
    return -1;
  for (int k = 0; k < r->n_slots; k++)
    nonfinite |= !isfinite(delta[k] = stored_num(json_array_get(eff, k)));
  /* total = clean - ablated (Eq. 12): the clean centred target logit */
  const double clean_logit = q[1] + stored_num(json_object_get(row, "ablated_logit"));
  add_stats(r, c, m, g, q, delta, nonfinite, clean_logit);
  r->nonfinite_rows += nonfinite != 0;
  free(delta);
  return 0;
}

/* The row is summed as stored (results_add_row): the summary of a local run
 * and the daemon's, rebuilt from stored rows, are the same numbers. */
static int on_variant(void *ctx, const engine_variant_t *v) {
  results_t *r = ctx;
  const plan_t *p = r->plan;
  json_t *row = json_object(), *nonfinite = json_array();
  json_object_set_new(row, "type", json_string("variant"));
  set_prompt(row, p, v->prompt);
  json_object_set_new(row, "component", json_string(p->component_names[v->component]));
  json_object_set_new(row, "method", json_string(p->method_names[v->method]));
  if (p->grid) /* a grid's intervened position, or span */
    json_object_set_new(row, p->span_names ? "span" : "position", grid_key(p, v->position));
  json_object_set_new(row, "samples", json_integer(v->samples));
  put(row, nonfinite, "total_effect", v->total_effect);
  put(row, nonfinite, "direct_effect", v->direct_effect);
  put(row, nonfinite, "compensation", v->compensation);
  put(row, nonfinite, "compensation_attn", v->compensation_attn);
  put(row, nonfinite, "compensation_mlp", v->compensation_mlp);
  /* total = direct - compensation + the part carried by the final norm's scale */
  put(row, nonfinite, "norm_share", v->total_effect - v->direct_effect + v->compensation);
  put(row, nonfinite, "ablated_logit", v->ablated_logit);
  put(row, nonfinite, "inv_scale", v->inv_scale);
  if (full_metrics(p)) {
    put(row, nonfinite, "logprob", v->logprob);
    put(row, nonfinite, "prob", v->prob);
    put(row, nonfinite, "kl", v->kl);
    put(row, nonfinite, "rank", v->rank);
    if (p->foils)
      put(row, nonfinite, "logit_diff", v->logit_diff);
  }
  json_object_set_new(row, "effects", float_array(v->delta_de, r->n_slots, nonfinite, "effects"));
  if (json_array_size(nonfinite))
    json_object_set(row, "nonfinite", nonfinite);
  json_decref(nonfinite);
  if (results_add_row(r, row) != 0) {
    json_decref(row);
    return -1;
  }
  return emit(r, row);
}

engine_sink_t results_sink(results_t *r) {
  engine_sink_t s = {.ctx = r, .clean = on_clean, .variant = on_variant};
  return s;
}

/* mean and the half-width of its 95% interval, Student's t with n - 1
 * degrees of freedom */
static json_t *mean_ci(double sum, double sum2, long n) {
  json_t *o = json_object();
  const double mean = n ? sum / n : NAN;
  const double var = n > 1 ? (sum2 - sum * sum / n) / (n - 1) : NAN;
  json_object_set_new(o, "mean", num(mean));
  json_object_set_new(o, "ci95", num(effects_ci95(sqrt(fmax(var, 0.0)), n)));
  return o;
}

/* compensation = slope * direct + intercept, least squares over prompts
 * (Fig. 7d); slope and r2 null, with the reason, where the fit means
 * nothing (effects_fit). */
static json_t *fit_of(const stat_t *s) {
  const double logit_rms = s->n_logit ? sqrt(s->sum_logit2 / s->n_logit) : 0.0;
  double slope, r2;
  const int why = effects_fit((double)s->n, s->sum[0], s->sum[2], s->sum2[0], s->sum2[2], s->sum_dc,
                              fmax(1.0, logit_rms), &slope, &r2);
  json_t *fit = json_object();
  json_object_set_new(fit, "slope", num(slope));
  json_object_set_new(fit, "r2", num(r2));
  if (why == EFFECTS_FIT_FEW_PROMPTS)
    json_object_set_new(fit, "undefined", json_string("fewer than 3 prompts"));
  else if (why == EFFECTS_FIT_NO_SPREAD)
    json_object_set_new(fit, "undefined",
                        json_string("the direct effect's spread over prompts is at rounding "
                                    "level (sd <= 1e-5 x the logit scale)"));
  return fit;
}

int results_finish(results_t *r, double elapsed_s) {
  const plan_t *p = r->plan;
  const char *names[5] = {"direct_effect", "total_effect", "compensation", "compensation_attn",
                          "compensation_mlp"};
  const int n_g = p->grid ? p->n_grid : 1;
  for (int c = 0; c < p->n_components; c++)
    for (int k = 0; k < p->n_methods; k++)
      for (int g = 0; g < n_g; g++) {
        const stat_t *s = &r->stats[((size_t)c * p->n_methods + k) * n_g + g];
        json_t *row = json_object();
        json_object_set_new(row, "type", json_string("summary"));
        json_object_set_new(row, "component", json_string(p->component_names[c]));
        json_object_set_new(row, "method", json_string(p->method_names[k]));
        if (p->grid)
          json_object_set_new(row, p->span_names ? "span" : "position", grid_key(p, p->grid[g]));
        json_object_set_new(row, "n", json_integer(s->n));
        /* NaN in the sums: those means are null, never 0 */
        json_object_set_new(row, "nonfinite", json_integer(s->nonfinite));
        for (int i = 0; i < 5; i++)
          json_object_set_new(row, names[i], mean_ci(s->sum[i], s->sum2[i], s->n));
        json_object_set_new(row, "fit", fit_of(s));
        json_t *eff = json_array();
        for (int t = 0; t < r->n_slots; t++)
          json_array_append_new(eff, num(s->n ? s->delta[t] / s->n : NAN));
        json_object_set_new(row, "effects", eff);
        if (emit(r, row) != 0)
          return -1;
      }
  json_t *end = json_object();
  json_object_set_new(end, "type", json_string("end"));
  json_object_set_new(end, "rows", json_integer(r->rows + 1));
  json_object_set_new(end, "variants", json_integer(p->n_variants));
  json_object_set_new(end, "nonfinite", json_integer(r->nonfinite_rows));
  json_object_set_new(end, "elapsed_s", num(elapsed_s));
  return emit(r, end);
}
