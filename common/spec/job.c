/* job.c - an ablation job: the JSON document checked field by field into a
 * job_spec_t (prompts, target, ablations, metrics and the options), the checks
 * between its fields, and job_free. Its fields are read through job_field.c;
 * component patterns are job_component.c's, methods job_method.c's.
 *
 * Only known shapes are walked (no recursion over the document); every error
 * names the field path and stops the parse. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "job_internal.h"
#include "json_field.h"
#include "utf8.h"

static int token_equal(const job_token_t *a, const job_token_t *b) {
  if (a->text && b->text)
    return !strcmp(a->text, b->text);
  return !a->text && !b->text && a->id == b->id && a->id >= 0;
}

static int token_given(const job_token_t *t) {
  return t->text || t->id >= 0;
}

/* ---- the document's parts ---- */

static const char *const top_keys[] = {
    "model",         "preset",     "prompts",        "target",       "ablations",
    "metrics",       "norm_scale", "direct_effects", "effect_table", "precision",
    "weights_dtype", "reuse",      "deadline_s",     "trace",        "name",
    "labels",        NULL};
static const char *const prompt_keys[] = {"text",           "ids",   "subject", "target", "foil",
                                          "counterfactual", "spans", NULL};
static const char *const cf_keys[] = {"text", "ids", "prompt", NULL};
static const char *const target_keys[] = {"token", "id", "foil", "foil_id", NULL};
static const char *const ablation_keys[] = {"components", "groups",    "methods",
                                            "samples",    "seed",      "positions",
                                            "patching",   "each_draw", NULL};
static const char *const metric_names[] = {"logit", "logprob", "prob", "logit_diff",
                                           "kl",    "rank",    NULL};

/* A list of token ids into *out (n of them). */
static int parse_ids(const json_t *ids, const char *f, int **out, int *n_out, job_error_t *err) {
  size_t n = 0;
  if (job_want_array(ids, f, "token ids", INT_MAX, &n, err))
    return -1;
  *out = malloc(n * sizeof **out);
  if (!*out)
    return job_fail(err, f, "out of memory");
  *n_out = (int)n;
  for (size_t i = 0; i < n; i++) {
    long long id = 0;
    path_t fi;
    if (job_want_int(json_array_get(ids, i), json_field_index(fi, JOB_FIELD_LEN, f, i), 0, INT_MAX,
                     "a non-negative integer", &id, err))
      return -1;
    (*out)[i] = (int)id;
  }
  return 0;
}

/* prompts[i].counterfactual: "text", {"text": ...}, {"ids": [...]} or
 * {"prompt": j}. */
static int parse_counterfactual(const json_t *v, const char *field, int i, int n_prompts,
                                job_prompt_t *p, job_error_t *err) {
  path_t f;
  p->has_cf = 1;
  p->cf_prompt = -1;
  if (json_is_string(v))
    return job_copy_string(v, field, &p->cf_text, err);
  if (!json_is_object(v))
    return job_fail(err, field,
                    "expected the corrupted prompt: a string, {\"text\": ...}, {\"ids\": "
                    "[...]} or {\"prompt\": INDEX} (another prompt of the job), got %s",
                    json_field_kind(v));
  if (job_check_keys(v, field, cf_keys, err))
    return -1;
  const json_t *text = json_object_get(v, "text"), *ids = json_object_get(v, "ids"),
               *other = json_object_get(v, "prompt");
  if (!!text + !!ids + !!other != 1)
    return job_fail(err, field, "give exactly one of text, ids and prompt");
  if (text)
    return job_copy_string(text, json_field_key(f, JOB_FIELD_LEN, field, "text"), &p->cf_text, err);
  if (ids)
    return parse_ids(ids, json_field_key(f, JOB_FIELD_LEN, field, "ids"), &p->cf_ids, &p->cf_n_ids,
                     err);
  long long j = 0;
  json_field_key(f, JOB_FIELD_LEN, field, "prompt");
  if (job_want_int(other, f, 0, INT_MAX, "a prompt index (a non-negative integer)", &j, err))
    return -1;
  if (j >= n_prompts)
    return job_fail(err, f, "prompt %lld does not exist (the job has %d prompt%s)", j, n_prompts,
                    n_prompts == 1 ? "" : "s");
  if (j == i)
    return job_fail(err, f, "a prompt is not its own counterfactual");
  p->cf_prompt = (int)j;
  return 0;
}

/* A prompt's named spans: {"name": "substring of the text", ...}. */
static int parse_spans(const json_t *v, const char *field, job_prompt_t *p, job_error_t *err) {
  path_t f;
  char s[48];
  if (!json_is_object(v))
    return job_fail(err, field, "expected an object of span names and substrings, got %s",
                    json_field_kind(v));
  if (!p->text)
    return job_fail(err, field, "spans need the prompt as text, not ids");
  const size_t n = json_object_size(v);
  if (n == 0 || n > JOB_MAX_SPANS)
    return job_fail(err, field, "give 1 to %d spans, not %zu", JOB_MAX_SPANS, n);
  p->span_names = calloc(n, sizeof(char *));
  p->span_texts = calloc(n, sizeof(char *));
  if (!p->span_names || !p->span_texts)
    return job_fail(err, field, "out of memory");
  const char *name;
  const json_t *sub;
  json_object_foreach((json_t *)v, name, sub) {
    json_field_key(f, JOB_FIELD_LEN, field, name);
    const size_t len = strlen(name);
    if (len == 0 || len > JOB_SPAN_NAME_MAX)
      return job_fail(err, f, "a span's name is 1 to %d bytes", JOB_SPAN_NAME_MAX);
    if (!(p->span_names[p->n_spans] = strdup(name)))
      return job_fail(err, f, "out of memory");
    if (job_copy_string(sub, f, &p->span_texts[p->n_spans++], err))
      return -1;
    if (!strstr(p->text, p->span_texts[p->n_spans - 1]))
      return job_fail(err, f, "\"%s\" does not occur in the prompt's text",
                      job_shorten(s, p->span_texts[p->n_spans - 1]));
  }
  return 0;
}

static int parse_prompt(const json_t *v, const char *field, int index, int n_prompts,
                        job_prompt_t *p, job_error_t *err) {
  const json_t *text, *ids, *subject, *target, *foil, *cf;
  path_t f;
  if (json_is_string(v))
    return job_copy_string(v, field, &p->text, err);
  if (!json_is_object(v))
    return job_fail(err, field, "expected a string or an object with text or ids, got %s",
                    json_field_kind(v));
  if (job_check_keys(v, field, prompt_keys, err))
    return -1;
  text = json_object_get(v, "text");
  ids = json_object_get(v, "ids");
  subject = json_object_get(v, "subject");
  target = json_object_get(v, "target");
  foil = json_object_get(v, "foil");
  cf = json_object_get(v, "counterfactual");
  if (text && ids)
    return job_fail(err, json_field_key(f, JOB_FIELD_LEN, field, "ids"),
                    "give only one of text and ids");
  if (!text && !ids)
    return job_fail(err, field, "needs text or ids");
  if (text && job_copy_string(text, json_field_key(f, JOB_FIELD_LEN, field, "text"), &p->text, err))
    return -1;
  if (ids &&
      parse_ids(ids, json_field_key(f, JOB_FIELD_LEN, field, "ids"), &p->ids, &p->n_ids, err))
    return -1;
  if (subject) {
    json_field_key(f, JOB_FIELD_LEN, field, "subject");
    if (!p->text)
      return job_fail(err, f, "a subject needs the prompt as text, not ids");
    if (job_copy_string(subject, f, &p->subject, err))
      return -1;
    if (!strstr(p->text, p->subject)) {
      char s[48];
      return job_fail(err, f, "\"%s\" does not occur in the prompt's text",
                      job_shorten(s, p->subject));
    }
  }
  const json_t *spans = json_object_get(v, "spans");
  if (spans && parse_spans(spans, json_field_key(f, JOB_FIELD_LEN, field, "spans"), p, err))
    return -1;
  if (target && job_want_token(target, json_field_key(f, JOB_FIELD_LEN, field, "target"), 1, 1,
                               &p->target, err))
    return -1;
  if (foil &&
      job_want_token(foil, json_field_key(f, JOB_FIELD_LEN, field, "foil"), 1, 1, &p->foil, err))
    return -1;
  if (foil && token_given(&p->target) && token_equal(&p->target, &p->foil))
    return job_fail(err, f, "the foil is the same token as the prompt's target");
  if (cf && parse_counterfactual(cf, json_field_key(f, JOB_FIELD_LEN, field, "counterfactual"),
                                 index, n_prompts, p, err))
    return -1;
  return 0;
}

static int parse_prompts(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (!v)
    return job_fail(err, "prompts", "required: a list of prompts");
  if (job_want_array(v, "prompts", "prompts", JOB_MAX_PROMPTS, &n, err))
    return -1;
  spec->prompts = calloc(n, sizeof *spec->prompts);
  if (!spec->prompts)
    return job_fail(err, "prompts", "out of memory");
  spec->n_prompts = (int)n;
  for (size_t i = 0; i < n; i++) {
    path_t f;
    spec->prompts[i].target.id = spec->prompts[i].foil.id = -1;
    spec->prompts[i].cf_prompt = -1;
    if (parse_prompt(json_array_get(v, i), json_field_index(f, JOB_FIELD_LEN, "prompts", i), (int)i,
                     (int)n, &spec->prompts[i], err))
      return -1;
  }
  return 0;
}

static int parse_target(const json_t *v, job_spec_t *spec, job_error_t *err) {
  const json_t *token, *id, *foil, *foil_id;
  if (json_is_string(v)) {
    static const char *const names[] = {"argmax", "next", NULL};
    int i = 0;
    if (job_want_enum(v, "target", "target", names, &i, err)) {
      /* most likely a token's text: say how a token is written */
      char *quoted = json_dumps(v, JSON_ENCODE_ANY);
      const size_t used = strlen(err->message);
      if (quoted && strlen(quoted) <= 80 && !strstr(err->message, "did you mean"))
        snprintf(err->message + used, sizeof err->message - used,
                 "; a token is written {\"token\": %s}", quoted);
      free(quoted);
      return -1;
    }
    spec->target = i == 0 ? TARGET_ARGMAX : TARGET_NEXT;
    return 0;
  }
  if (!json_is_object(v))
    return job_fail(err, "target",
                    "expected \"argmax\", \"next\" or an object such as {\"token\": \" "
                    "Paris\"}, got %s",
                    json_field_kind(v));
  if (job_check_keys(v, "target", target_keys, err))
    return -1;
  token = json_object_get(v, "token");
  id = json_object_get(v, "id");
  foil = json_object_get(v, "foil");
  foil_id = json_object_get(v, "foil_id");
  if (token && id)
    return job_fail(err, "target.id", "give only one of token and id");
  if (!token && !id)
    return job_fail(err, "target",
                    "needs a token or an id: {\"token\": \" Paris\"} or {\"id\": 7042}");
  if (token ? job_want_token(token, "target.token", 1, 0, &spec->target_token, err)
            : job_want_token(id, "target.id", 0, 1, &spec->target_token, err))
    return -1;
  spec->target = TARGET_TOKEN;
  if (foil && foil_id)
    return job_fail(err, "target.foil_id", "give only one of foil and foil_id");
  if (!foil && !foil_id)
    return 0;
  if (foil ? job_want_token(foil, "target.foil", 1, 0, &spec->foil_token, err)
           : job_want_token(foil_id, "target.foil_id", 0, 1, &spec->foil_token, err))
    return -1;
  if (token_equal(&spec->target_token, &spec->foil_token))
    return job_fail(err, foil ? "target.foil" : "target.foil_id",
                    "the foil is the same token as the target");
  spec->target = TARGET_FOIL;
  return 0;
}

static int by_value(const void *a, const void *b) {
  const int *x = a, *y = b;
  return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

/* A position given twice is the user's mistake (it would be read once):
 * refused, naming its second entry. */
static int check_unique_positions(const job_spec_t *spec, const char *f, job_error_t *err) {
  const int n = spec->n_positions;
  int *pairs = malloc(sizeof(int) * 2 * (size_t)n); /* value, index */
  if (!pairs)
    return job_fail(err, f, "out of memory");
  for (int i = 0; i < n; i++) {
    pairs[2 * i] = spec->position_list[i];
    pairs[2 * i + 1] = i;
  }
  qsort(pairs, (size_t)n, 2 * sizeof(int), by_value);
  int dup = -1, first = -1;
  for (int i = 1; i < n; i++)
    if (pairs[2 * i] == pairs[2 * i - 2] && (dup < 0 || pairs[2 * i + 1] < dup)) {
      dup = pairs[2 * i + 1];
      first = pairs[2 * i - 1];
    }
  const int value = dup >= 0 ? spec->position_list[dup] : 0;
  free(pairs);
  if (dup < 0)
    return 0;
  path_t fi;
  return job_fail(err, json_field_index(fi, JOB_FIELD_LEN, f, (size_t)dup),
                  "position %d is given twice (also at %s[%d])", value, f, first);
}

/* A position rule at field f; {"each": RULE} (a per-position grid) where
 * each_ok. */
static int parse_position_rule(const json_t *v, const char *f, int each_ok, job_spec_t *spec,
                               job_error_t *err) {
  if (json_is_string(v)) {
    static const char *const names[] = {"last", "all", "subject", "spans", NULL};
    static const position_mode_t modes[] = {POSITIONS_LAST, POSITIONS_ALL, POSITIONS_SUBSTRING,
                                            POSITIONS_SPANS};
    int i = 0;
    if (job_want_enum(v, f, "positions", names, &i, err))
      return -1;
    if (modes[i] == POSITIONS_SPANS && each_ok)
      return job_fail(err, f,
                      "\"spans\" is a grid, one variant per named span: write {\"each\": "
                      "\"spans\"}");
    spec->positions = modes[i];
    return 0;
  }
  if (json_is_array(v)) {
    size_t n = 0;
    if (job_want_array(v, f, "positions", JOB_MAX_POSITIONS, &n, err)) {
      err->too_large = json_is_array(v) && n > JOB_MAX_POSITIONS;
      return -1;
    }
    spec->position_list = malloc(n * sizeof *spec->position_list);
    if (!spec->position_list)
      return job_fail(err, f, "out of memory");
    spec->n_positions = (int)n;
    for (size_t i = 0; i < n; i++) {
      long long x = 0;
      path_t fi;
      if (job_want_int(json_array_get(v, i), json_field_index(fi, JOB_FIELD_LEN, f, i), -INT_MAX,
                       INT_MAX, "a position (an integer; negative counts from the end)", &x, err))
        return -1;
      spec->position_list[i] = (int)x;
    }
    spec->positions = POSITIONS_LIST;
    return check_unique_positions(spec, f, err);
  }
  if (json_is_object(v)) {
    static const char *const keys[] = {"substring", "each", NULL};
    const json_t *sub = json_object_get(v, "substring"), *each = json_object_get(v, "each");
    path_t fs;
    if (job_check_keys(v, f, keys, err))
      return -1;
    if (each && each_ok) {
      if (sub)
        return job_fail(err, f, "give only one of substring and each");
      spec->positions_each = 1;
      return parse_position_rule(each, json_field_key(fs, JOB_FIELD_LEN, f, "each"), 0, spec, err);
    }
    if (each)
      return job_fail(err, json_field_key(fs, JOB_FIELD_LEN, f, "each"), "\"each\" does not nest");
    if (!sub)
      return job_fail(err, f,
                      "expected {\"substring\": \"...\"} or {\"each\": RULE} (a per-position "
                      "grid)");
    if (job_copy_string(sub, json_field_key(fs, JOB_FIELD_LEN, f, "substring"),
                        &spec->position_substring, err))
      return -1;
    spec->positions = POSITIONS_SUBSTRING;
    return 0;
  }
  return job_fail(err, f,
                  "expected \"last\", \"all\", \"subject\", a list of positions, {\"substring\": "
                  "...} or {\"each\": RULE}, got %s",
                  json_field_kind(v));
}

static int parse_positions(const json_t *v, job_spec_t *spec, job_error_t *err) {
  return parse_position_rule(v, "ablations.positions", 1, spec, err);
}

static int parse_metrics(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (!json_is_array(v))
    return job_fail(err, "metrics", "expected an array of metric names, got %s",
                    json_field_kind(v));
  n = json_array_size(v);
  for (size_t i = 0; i < n; i++) {
    int k = 0;
    path_t f;
    if (job_want_enum(json_array_get(v, i), json_field_index(f, JOB_FIELD_LEN, "metrics", i),
                      "metric", metric_names, &k, err))
      return -1;
    int prompt_foil = 0;
    for (int i = 0; i < spec->n_prompts && !prompt_foil; i++)
      prompt_foil = token_given(&spec->prompts[i].foil);
    if (1u << k == METRIC_LOGIT_DIFF && spec->target != TARGET_FOIL && !prompt_foil)
      return job_fail(err, f,
                      "logit_diff needs a target with a foil: \"target\": {\"token\": \" "
                      "Paris\", \"foil\": \" Rome\"} (or each prompt's \"foil\")");
    spec->metrics |= 1u << k;
  }
  return 0;
}

/* The paper's components (what the document did not give; the rest of the
 * preset is the defaults plus samples 15). */
static int preset_hydra_components(job_spec_t *spec, job_error_t *err) {
  static const char *const names[] = {"*"}; /* attn.0, mlp.0, attn.1, ... */
  size_t n = sizeof names / sizeof *names;
  spec->components = calloc(n, sizeof *spec->components);
  if (!spec->components)
    return job_fail(err, "preset", "out of memory");
  spec->n_components = (int)n;
  for (size_t i = 0; i < n; i++)
    if (!(spec->components[i] = strdup(names[i])))
      return job_fail(err, "preset", "out of memory");
  return 0;
}

static int parse_ablations(const json_t *v, job_spec_t *spec, int *samples_given,
                           job_error_t *err) {
  const json_t *e;
  long long x = 0;
  if (!json_is_object(v))
    return job_fail(err, "ablations", "expected an object, got %s", json_field_kind(v));
  if (job_check_keys(v, "ablations", ablation_keys, err))
    return -1;
  if ((e = json_object_get(v, "components")) && job_parse_components(e, spec, err))
    return -1;
  if ((e = json_object_get(v, "groups")) && job_parse_groups(e, spec, err))
    return -1;
  if ((e = json_object_get(v, "methods")) && job_parse_methods(e, spec, err))
    return -1;
  if ((e = json_object_get(v, "samples"))) {
    if (job_want_int(e, "ablations.samples", 1, JOB_MAX_SAMPLES, "a positive integer", &x, err))
      return -1;
    spec->samples = (int)x;
    *samples_given = 1;
  }
  if ((e = json_object_get(v, "each_draw")) &&
      job_want_bool(e, "ablations.each_draw", &spec->each_draw, err))
    return -1;
  if ((e = json_object_get(v, "seed"))) {
    if (job_want_int(e, "ablations.seed", 0, (long long)JOB_MAX_SEED, "a non-negative integer", &x,
                     err))
      return -1;
    spec->seed = (uint64_t)x;
  }
  if ((e = json_object_get(v, "positions")) && parse_positions(e, spec, err))
    return -1;
  if ((e = json_object_get(v, "patching"))) {
    static const char *const names[] = {"noising", "denoising", NULL};
    if (job_want_enum(e, "ablations.patching", "patching", names, &spec->denoising, err))
      return -1;
  }
  return 0;
}

/* "trace": {"std": X} or {"scale": K} (K times the embedding table's
 * standard deviation; default 3, ROME's), "seed". */
static int parse_trace(const json_t *v, job_spec_t *spec, job_error_t *err) {
  static const char *const keys[] = {"std", "scale", "seed", NULL};
  if (!json_is_object(v))
    return job_fail(err, "trace",
                    "expected an object: {\"scale\": 3} (3 times the embeddings' standard "
                    "deviation, ROME's) or {\"std\": 0.1}, and optionally \"seed\", got %s",
                    json_field_kind(v));
  if (job_check_keys(v, "trace", keys, err))
    return -1;
  const json_t *sd = json_object_get(v, "std"), *sc = json_object_get(v, "scale"),
               *seed = json_object_get(v, "seed");
  if (sd && sc)
    return job_fail(err, "trace.scale", "give only one of std and scale");
  spec->trace = 1;
  spec->trace_std = -1;
  spec->trace_scale = 3.0;
  const json_t *x = sd ? sd : sc;
  if (x) {
    const char *f = sd ? "trace.std" : "trace.scale";
    if (!json_is_number(x))
      return job_fail(err, f, "expected a number, got %s", json_field_kind(x));
    const double d = json_number_value(x);
    if (!(d >= 0) || d > METHOD_VALUE_MAX)
      return job_fail(err, f, "expected a number in [0, %g], got %g", METHOD_VALUE_MAX, d);
    if (sd)
      spec->trace_std = d;
    else
      spec->trace_scale = d;
  }
  if (seed) {
    long long s = 0;
    if (job_want_int(seed, "trace.seed", 0, (long long)JOB_MAX_SEED, "a non-negative integer", &s,
                     err))
      return -1;
    spec->trace_seed = (uint64_t)s;
  }
  return 0;
}

/* Causal tracing against the job: every prompt names its subject (the
 * tokens corrupted) as text, the target is named (the clean answer: the
 * corrupted run's argmax is not it), no pairs; "restore" only with a trace. */
static int check_trace(job_spec_t *spec, job_error_t *err) {
  path_t f, fp;
  int restore = -1, cf = -1;
  for (int k = 0; k < spec->n_methods; k++) {
    if (spec->methods[k].kind == METHOD_PATCH && spec->methods[k].source == METHOD_SOURCE_CLEAN)
      restore = k;
    if (spec->methods[k].kind == METHOD_PATCH &&
        spec->methods[k].source == METHOD_SOURCE_COUNTERFACTUAL)
      cf = k;
  }
  if (!spec->trace) {
    if (restore >= 0)
      return job_fail(err, json_field_index(f, JOB_FIELD_LEN, "ablations.methods", restore),
                      "restore puts a clean state back into a corrupted run: give \"trace\" "
                      "(e.g. {\"scale\": 3}) to corrupt the subject");
    return 0;
  }
  for (int i = 0; i < spec->n_prompts; i++)
    if (!spec->prompts[i].subject) {
      json_field_index(fp, JOB_FIELD_LEN, "prompts", i);
      return job_fail(err, json_field_key(f, JOB_FIELD_LEN, fp, "subject"),
                      "required: \"trace\" corrupts each prompt's subject (give the prompt as "
                      "{\"text\": ..., \"subject\": ...})");
    }
  if (spec->target == TARGET_ARGMAX || spec->target == TARGET_NEXT)
    return job_fail(err, "target",
                    "\"trace\" runs each prompt corrupted: name the clean answer as the target "
                    "(\"target\": {\"token\": ...} or each prompt's \"target\"), not \"%s\"",
                    spec->target == TARGET_NEXT ? "next" : "argmax");
  if (spec->denoising)
    return job_fail(err, "ablations.patching",
                    "\"trace\" already defines the run (the corrupted prompt) and its source (the "
                    "clean one): no denoising");
  if (cf >= 0)
    return job_fail(err, json_field_index(f, JOB_FIELD_LEN, "ablations.methods", cf),
                    "with \"trace\" use \"restore\" (the prompt's clean state), not a "
                    "counterfactual patch");
  return 0;
}

/* Per-prompt foils and counterfactuals against the job: a foil makes the
 * job's target a logit difference and then every prompt needs one (its own
 * or the job's); patch from counterfactuals and denoising need every
 * prompt's counterfactual; denoising needs a named target (the clean
 * answer, which the corrupted run need not give). */
static int check_pairs(job_spec_t *spec, int target_given, job_error_t *err) {
  path_t f, fp;
  int first_foil = -1, missing_cf = -1, cf_method = -1;
  for (int i = 0; i < spec->n_prompts; i++) {
    if (token_given(&spec->prompts[i].foil) && first_foil < 0)
      first_foil = i;
    if (!spec->prompts[i].has_cf && missing_cf < 0)
      missing_cf = i;
  }
  for (int k = 0; k < spec->n_methods; k++)
    if (spec->methods[k].kind == METHOD_PATCH &&
        spec->methods[k].source == METHOD_SOURCE_COUNTERFACTUAL)
      cf_method = k;
  if (first_foil >= 0) {
    json_field_key(f, JOB_FIELD_LEN, json_field_index(fp, JOB_FIELD_LEN, "prompts", first_foil),
                   "foil");
    if (spec->target == TARGET_ARGMAX || spec->target == TARGET_NEXT)
      return job_fail(err, f,
                      "a foil needs a named target (the job's \"target\" or each prompt's): "
                      "the logit difference is target minus foil");
    for (int i = 0; spec->target != TARGET_FOIL && i < spec->n_prompts; i++)
      if (!token_given(&spec->prompts[i].foil)) {
        json_field_key(f, JOB_FIELD_LEN, json_field_index(fp, JOB_FIELD_LEN, "prompts", i), "foil");
        return job_fail(err, f, "required: prompts[%d] names a foil and the job names none",
                        first_foil);
      }
    spec->target = TARGET_FOIL;
    for (int i = 0; i < spec->n_prompts; i++) {
      const job_prompt_t *p = &spec->prompts[i];
      const job_token_t *t = token_given(&p->target) ? &p->target : &spec->target_token;
      const job_token_t *fo = token_given(&p->foil) ? &p->foil : &spec->foil_token;
      if (token_given(t) && token_equal(t, fo)) {
        json_field_key(f, JOB_FIELD_LEN, json_field_index(fp, JOB_FIELD_LEN, "prompts", i), "foil");
        return job_fail(err, f, "the same token as the prompt's target");
      }
    }
  }
  if ((cf_method >= 0 || spec->denoising) && missing_cf >= 0) {
    json_field_index(fp, JOB_FIELD_LEN, "prompts", missing_cf);
    return job_fail(err, json_field_key(f, JOB_FIELD_LEN, fp, "counterfactual"),
                    "required: %s needs every prompt's counterfactual (its corrupted version: "
                    "text, ids, or {\"prompt\": INDEX})",
                    cf_method >= 0 ? "patch from \"counterfactual\""
                                   : "\"patching\": \"denoising\"");
  }
  if (spec->denoising && (spec->target == TARGET_ARGMAX || spec->target == TARGET_NEXT))
    return job_fail(err, "ablations.patching",
                    "denoising runs each prompt's counterfactual: name the clean answer as the "
                    "target (\"target\": {\"token\": ...} or each prompt's \"target\"), "
                    "not \"%s\"",
                    spec->target == TARGET_NEXT ? "next" : "argmax");
  (void)target_given;
  return 0;
}

/* Checks between fields: per-prompt targets, subjects, resample. */
static int check_prompts_against_job(job_spec_t *spec, int target_given, int methods_given,
                                     job_error_t *err) {
  int first = -1;
  path_t f, fp;
  for (int i = 0; i < spec->n_prompts && first < 0; i++)
    if (token_given(&spec->prompts[i].target))
      first = i;
  if (first >= 0) {
    json_field_key(f, JOB_FIELD_LEN, json_field_index(fp, JOB_FIELD_LEN, "prompts", (size_t)first),
                   "target");
    if (target_given && (spec->target == TARGET_ARGMAX || spec->target == TARGET_NEXT))
      return job_fail(err, f, "a prompt's target conflicts with \"target\": \"%s\"",
                      spec->target == TARGET_ARGMAX ? "argmax" : "next");
    if (!target_given)
      spec->target = TARGET_TOKEN;
    for (int i = 0; i < spec->n_prompts; i++) {
      const job_token_t *t = &spec->prompts[i].target;
      path_t fi;
      json_field_key(fi, JOB_FIELD_LEN, json_field_index(fp, JOB_FIELD_LEN, "prompts", (size_t)i),
                     "target");
      if (!token_given(t) && !target_given)
        return job_fail(err, fi, "required: prompts[%d] names a target and the job names none",
                        first);
      if (spec->target == TARGET_FOIL && token_given(t) && token_equal(t, &spec->foil_token))
        return job_fail(err, fi, "the same token as the foil");
    }
  }
  if (check_pairs(spec, target_given, err))
    return -1;
  if (check_trace(spec, err))
    return -1;
  if (spec->positions_each && spec->target == TARGET_NEXT)
    return job_fail(err, "ablations.positions.each",
                    "a per-position grid reads the final position; with \"target\": \"next\" "
                    "every position is already its own readout");
  if (spec->positions == POSITIONS_SPANS)
    for (int i = 0; i < spec->n_prompts; i++) {
      const job_prompt_t *p = &spec->prompts[i];
      json_field_index(fp, JOB_FIELD_LEN, "prompts", (size_t)i);
      if (!p->n_spans && !p->subject)
        return job_fail(err, json_field_key(f, JOB_FIELD_LEN, fp, "spans"),
                        "required: ablations.positions is {\"each\": \"spans\"} (give the "
                        "prompt as {\"text\": ..., \"spans\": {\"name\": \"substring\"}} "
                        "or with a \"subject\")");
    }
  if (spec->positions == POSITIONS_SUBSTRING)
    for (int i = 0; i < spec->n_prompts; i++) {
      const job_prompt_t *p = &spec->prompts[i];
      char s[48];
      json_field_index(fp, JOB_FIELD_LEN, "prompts", (size_t)i);
      if (!p->text)
        return job_fail(err, json_field_key(f, JOB_FIELD_LEN, fp, "ids"),
                        "positions by substring (ablations.positions) need the prompt as text");
      if (!spec->position_substring && !p->subject)
        return job_fail(
            err, json_field_key(f, JOB_FIELD_LEN, fp, "subject"),
            "required: ablations.positions is \"subject\" (give the prompt as {\"text\": "
            "..., \"subject\": ...})");
      if (spec->position_substring && !strstr(p->text, spec->position_substring))
        return job_fail(err, "ablations.positions.substring",
                        "\"%s\" does not occur in prompts[%d]",
                        job_shorten(s, spec->position_substring), i);
    }
  if (spec->n_prompts < 2)
    for (int i = 0; i < spec->n_methods; i++)
      if (spec->methods[i].kind == METHOD_RESAMPLE) {
        if (!methods_given)
          return job_fail(
              err, "ablations.methods",
              "the default method, resample, needs at least 2 prompts; give more prompts "
              "or another method (e.g. [\"zero\"])");
        return job_fail(
            err, json_field_index(f, JOB_FIELD_LEN, "ablations.methods", (size_t)i),
            "resample needs at least 2 prompts (it draws another prompt's activations)");
      }
  return 0;
}

static int parse_document(const json_t *root, job_spec_t *spec, job_error_t *err) {
  static const char *const presets[] = {"hydra", NULL};
  static const char *const norm_scales[] = {"clean", "ablated", NULL};
  static const char *const precisions[] = {"fp32", "tf32", NULL};
  static const char *const dtypes[] = {"fp32", "bf16", "native", NULL}; /* weights_dtype_t */
  const json_t *e;
  int target_given = 0, samples_given = 0, methods_given = 0, i = 0;
  if (!json_is_object(root))
    return job_fail(err, "", "expected a JSON object, got %s", json_field_kind(root));
  if (job_check_keys(root, "", top_keys, err))
    return -1;
  if ((e = json_object_get(root, "model")) && job_copy_string(e, "model", &spec->model, err))
    return -1;
  if (spec->model && strlen(spec->model) > 255)
    return job_fail(err, "model", "longer than 255 bytes");
  if ((e = json_object_get(root, "name")) && job_parse_name(e, spec, err))
    return -1;
  if ((e = json_object_get(root, "labels")) && job_parse_labels(e, spec, err))
    return -1;
  if ((e = json_object_get(root, "preset"))) {
    if (job_want_enum(e, "preset", "preset", presets, &i, err))
      return -1;
    spec->preset_hydra = 1;
  }
  if (parse_prompts(json_object_get(root, "prompts"), spec, err))
    return -1;
  if ((e = json_object_get(root, "target"))) {
    if (parse_target(e, spec, err))
      return -1;
    target_given = 1;
  }
  if ((e = json_object_get(root, "ablations")) && parse_ablations(e, spec, &samples_given, err))
    return -1;
  if (!spec->components && !spec->n_groups) {
    if (!spec->preset_hydra)
      return job_fail(err, "ablations.components",
                      "required: what to ablate, e.g. [\"attn.*\", \"mlp.*\"] (or give \"preset\": "
                      "\"hydra\")");
    if (preset_hydra_components(spec, err))
      return -1;
  }
  if (spec->preset_hydra && !samples_given)
    spec->samples = 15;
  if (!spec->methods) {
    spec->methods = calloc(1, sizeof *spec->methods);
    if (!spec->methods)
      return job_fail(err, "ablations.methods", "out of memory");
    spec->methods[0] = (method_t){.kind = METHOD_RESAMPLE, .value = 0, .source = -1};
    spec->n_methods = 1;
  } else
    methods_given = 1;
  if ((e = json_object_get(root, "trace")) && parse_trace(e, spec, err))
    return -1;
  if ((e = json_object_get(root, "metrics")) && parse_metrics(e, spec, err))
    return -1;
  spec->metrics |= METRIC_LOGIT;
  if ((e = json_object_get(root, "norm_scale"))) {
    if (job_want_enum(e, "norm_scale", "norm_scale", norm_scales, &i, err))
      return -1;
    spec->norm_scale_ablated = i == 1;
  }
  if ((e = json_object_get(root, "direct_effects")) &&
      job_want_bool(e, "direct_effects", &spec->direct_effects, err))
    return -1;
  if ((e = json_object_get(root, "effect_table")) &&
      job_want_bool(e, "effect_table", &spec->effect_table, err))
    return -1;
  /* Every clean row carries its direct effects and every variant row its
   * effects row (the summaries and the stored rows' resume read them): a
   * job cannot turn them off, and false is refused rather than ignored. */
  if (!spec->direct_effects)
    return job_fail(err, "direct_effects",
                    "false is not supported: every clean row carries its direct effects "
                    "(leave the field out, or drop them from the rows you read)");
  if (!spec->effect_table)
    return job_fail(err, "effect_table",
                    "false is not supported: every variant row carries its effects row "
                    "(leave the field out, or drop them from the rows you read)");
  if ((e = json_object_get(root, "precision"))) {
    if (job_want_enum(e, "precision", "precision", precisions, &i, err))
      return -1;
    spec->tf32 = i == 1;
  }
  if ((e = json_object_get(root, "weights_dtype"))) {
    if (job_want_enum(e, "weights_dtype", "weights_dtype", dtypes, &i, err))
      return -1;
    spec->weights_dtype = i;
  }
  if ((e = json_object_get(root, "reuse")) && job_want_bool(e, "reuse", &spec->reuse, err))
    return -1;
  if ((e = json_object_get(root, "deadline_s"))) {
    double d;
    if (!json_is_number(e))
      return job_fail(err, "deadline_s", "expected a number of seconds, got %s",
                      json_field_kind(e));
    d = json_number_value(e);
    if (!(d > 0) || d > JOB_MAX_DEADLINE_S)
      return job_fail(err, "deadline_s", "expected seconds in (0, %g], got %g", JOB_MAX_DEADLINE_S,
                      d);
    spec->deadline_s = d;
  }
  return check_prompts_against_job(spec, target_given, methods_given, err);
}

job_spec_t *job_parse(const char *json, size_t len, job_error_t *err) {
  job_error_t scratch;
  json_error_t jerr;
  json_t *root = NULL;
  job_spec_t *spec = NULL;
  size_t bad;
  if (!err)
    err = &scratch;
  memset(err, 0, sizeof *err);
  if (!json) {
    job_fail(err, "", "no document");
    return NULL;
  }
  if (len > JOB_MAX_DOCUMENT_BYTES) {
    job_fail(err, "", "the document is %zu bytes; the limit is %u (64 MiB)", len,
             JOB_MAX_DOCUMENT_BYTES);
    return NULL;
  }
  if (len >= 3 && !memcmp(json, "\xef\xbb\xbf", 3)) { /* a UTF-8 byte order mark: skipped */
    json += 3;
    len -= 3;
  }
  if (!utf8_valid(json, len, &bad)) {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < bad; i++) {
      if (json[i] == '\n') {
        line++;
        column = 1;
      } else if (((unsigned char)json[i] & 0xc0) != 0x80)
        column++;
    }
    job_fail(err, "", "invalid UTF-8 at byte offset %zu (line %zu, column %zu): byte 0x%02x", bad,
             line, column, (unsigned char)json[bad]);
    return NULL;
  }
  root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    job_fail(err, "", "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    return NULL;
  }
  spec = calloc(1, sizeof *spec);
  if (!spec) {
    job_fail(err, "", "out of memory");
    goto fail;
  }
  spec->target = TARGET_ARGMAX;
  spec->target_token.id = spec->foil_token.id = -1;
  spec->samples = 1;
  spec->positions = POSITIONS_LAST;
  spec->metrics = METRIC_LOGIT;
  spec->direct_effects = spec->effect_table = spec->reuse = 1;
  spec->weights_dtype = -1;
  if (parse_document(root, spec, err))
    goto fail;
  json_decref(root);
  return spec;
fail:
  job_free(spec);
  json_decref(root);
  return NULL;
}

void job_free(job_spec_t *spec) {
  if (!spec)
    return;
  free(spec->model);
  free(spec->name);
  free(spec->labels);
  for (int i = 0; spec->prompts && i < spec->n_prompts; i++) {
    free(spec->prompts[i].text);
    free(spec->prompts[i].ids);
    free(spec->prompts[i].subject);
    for (int k = 0; k < spec->prompts[i].n_spans; k++) {
      free(spec->prompts[i].span_names[k]);
      free(spec->prompts[i].span_texts[k]);
    }
    free(spec->prompts[i].span_names);
    free(spec->prompts[i].span_texts);
    free(spec->prompts[i].target.text);
    free(spec->prompts[i].foil.text);
    free(spec->prompts[i].cf_text);
    free(spec->prompts[i].cf_ids);
  }
  free(spec->prompts);
  free(spec->target_token.text);
  free(spec->foil_token.text);
  for (int i = 0; spec->components && i < spec->n_components; i++)
    free(spec->components[i]);
  free(spec->components);
  for (int i = 0; spec->groups && i < spec->n_groups; i++) {
    free(spec->groups[i].name);
    for (int k = 0; spec->groups[i].patterns && k < spec->groups[i].n_patterns; k++)
      free(spec->groups[i].patterns[k]);
    free(spec->groups[i].patterns);
  }
  free(spec->groups);
  free(spec->methods);
  free(spec->position_list);
  free(spec->position_substring);
  free(spec);
}
