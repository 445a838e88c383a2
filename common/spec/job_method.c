/* job_method.c - ablation methods: the string forms ("zero", "scale:0.5",
 * "noise:0.1", ...) that method_parse reads, the patch object
 * ({"patch": {"source": P}}), and the document's list of them
 * (ablations.methods: no two alike). */
#include <ctype.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "job_internal.h"
#include "json_field.h"

static const char *const method_names[] = {"resample", "zero",  "mean",    "scale",
                                           "noise",    "patch", "restore", NULL};

/* A decimal number (sign, digits, fraction, exponent; no hex, inf or nan)
 * that spans all of s and is finite as a float. */
static int parse_value(const char *s, float *out) {
  const char *c = s;
  int digits = 0;
  double x;
  char *end = NULL;
  if (*c == '+' || *c == '-')
    c++;
  for (; isdigit((unsigned char)*c); c++)
    digits++;
  if (*c == '.')
    for (c++; isdigit((unsigned char)*c); c++)
      digits++;
  if (!digits)
    return -1;
  if (*c == 'e' || *c == 'E') {
    c++;
    if (*c == '+' || *c == '-')
      c++;
    if (!isdigit((unsigned char)*c))
      return -1;
    while (isdigit((unsigned char)*c))
      c++;
  }
  if (*c)
    return -1;
  x = strtod(s, &end);
  if (end != c || !isfinite(x) || fabs(x) > FLT_MAX)
    return -1;
  *out = (float)x;
  return 0;
}

/* method_parse with a reason. */
static int method_parse_why(const char *s, method_t *m, char *msg, size_t msg_len) {
  const char *colon = strchr(s, ':');
  size_t name_len = colon ? (size_t)(colon - s) : strlen(s);
  char name[48], why[400];
  int kind;
  if (name_len >= sizeof name)
    name_len = sizeof name - 1;
  memcpy(name, s, name_len);
  name[name_len] = '\0';
  kind = job_in_list(name, method_names);
  m->value = 0;
  m->source = -1;
  switch (kind) {
  case METHOD_RESAMPLE:
  case METHOD_ZERO:
  case METHOD_MEAN:
    m->kind = (method_kind_t)kind;
    if (colon)
      return job_say(msg, msg_len, "%s takes no value", name);
    return 0;
  case METHOD_SCALE:
  case METHOD_NOISE:
    m->kind = (method_kind_t)kind;
    if (!colon)
      return job_say(msg, msg_len, "%s needs a value, e.g. \"%s:%s\"", name, name,
                     kind == METHOD_SCALE ? "0.5" : "0.1");
    if (parse_value(colon + 1, &m->value))
      return job_say(msg, msg_len, "%s needs a finite decimal number after ':'", name);
    if (kind == METHOD_NOISE && m->value < 0)
      return job_say(msg, msg_len, "the noise's standard deviation must be >= 0");
    /* Beyond this the ablated run overflows fp32 and its rows are NaN. */
    if (fabsf(m->value) > METHOD_VALUE_MAX)
      return job_say(msg, msg_len, "%s must be at most %g in magnitude",
                     kind == METHOD_SCALE ? "the scale" : "the noise's standard deviation",
                     METHOD_VALUE_MAX);
    return 0;
  case METHOD_PATCH:
    return job_say(msg, msg_len, "patch is given as an object: {\"patch\": {\"source\": 3}}");
  case METHOD_PATCH + 1: /* "restore": causal tracing's restore of the clean state */
    m->kind = METHOD_PATCH;
    m->source = METHOD_SOURCE_CLEAN;
    if (colon)
      return job_say(msg, msg_len, "restore takes no value");
    return 0;
  default:
    return job_say(msg, msg_len, "unknown method%s", job_hint(why, sizeof why, name, method_names));
  }
}

int method_parse(const char *s, method_t *m) {
  char msg[256];
  method_t tmp;
  if (!s || method_parse_why(s, &tmp, msg, sizeof msg))
    return -1;
  if (m)
    *m = tmp;
  return 0;
}

static int parse_patch(const json_t *v, const char *field, int n_prompts, method_t *m,
                       job_error_t *err) {
  static const char *const keys[] = {"patch", NULL};
  static const char *const patch_keys[] = {"source", NULL};
  const json_t *patch, *source;
  path_t f, fs;
  long long src = 0;
  if (job_check_keys(v, field, keys, err))
    return -1;
  patch = json_object_get(v, "patch");
  if (!patch)
    return job_fail(err, field, "expected a method string or {\"patch\": {\"source\": P}}");
  json_field_key(f, JOB_FIELD_LEN, field, "patch");
  if (!json_is_object(patch))
    return job_fail(err, f, "expected an object {\"source\": P}, got %s", json_field_kind(patch));
  if (job_check_keys(patch, f, patch_keys, err))
    return -1;
  source = json_object_get(patch, "source");
  json_field_key(fs, JOB_FIELD_LEN, f, "source");
  if (!source)
    return job_fail(err, fs,
                    "required: the index of the prompt to patch from, or \"counterfactual\" "
                    "(each prompt's own)");
  if (json_is_string(source)) {
    if (strcmp(json_string_value(source), "counterfactual") != 0)
      return job_fail(err, fs,
                      "expected a prompt index or \"counterfactual\" (each prompt's own "
                      "counterfactual), got \"%s\"",
                      json_string_value(source));
    m->kind = METHOD_PATCH;
    m->value = 0;
    m->source = METHOD_SOURCE_COUNTERFACTUAL;
    return 0;
  }
  if (job_want_int(source, fs, 0, LLONG_MAX, "a prompt index (a non-negative integer)", &src, err))
    return -1;
  if (src >= n_prompts)
    return job_fail(err, fs, "prompt %lld does not exist (the job has %d prompt%s)", src, n_prompts,
                    n_prompts == 1 ? "" : "s");
  m->kind = METHOD_PATCH;
  m->value = 0;
  m->source = (int)src;
  return 0;
}

int job_parse_methods(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (job_want_array(v, "ablations.methods", "methods", 1000, &n, err))
    return -1;
  spec->methods = calloc(n, sizeof *spec->methods);
  if (!spec->methods)
    return job_fail(err, "ablations.methods", "out of memory");
  spec->n_methods = (int)n;
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(v, i);
    method_t *m = &spec->methods[i];
    path_t f;
    json_field_index(f, JOB_FIELD_LEN, "ablations.methods", i);
    if (json_is_object(e)) {
      if (parse_patch(e, f, spec->n_prompts, m, err))
        return -1;
    } else {
      const char *s = NULL;
      char msg[256], short_s[48];
      if (job_want_string(e, f, &s, err))
        return -1;
      if (method_parse_why(s, m, msg, sizeof msg))
        return job_fail(err, f, "\"%s\": %s", job_shorten(short_s, s), msg);
    }
    for (size_t j = 0; j < i; j++)
      if (spec->methods[j].kind == m->kind && spec->methods[j].value == m->value &&
          spec->methods[j].source == m->source)
        return job_fail(err, f, "the same method as ablations.methods[%zu]", j);
  }
  return 0;
}
