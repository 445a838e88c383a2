/* job.c - an ablation job: the JSON document checked field by field into a
 * job_spec_t, and component patterns expanded against a model's shape.
 *
 * Only known shapes are walked (no recursion over the document); every error
 * names the field path and stops the parse. */
#include "job.h"

#include <ctype.h>
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_field.h"
#include "utf8.h"

typedef char path_t[JOB_FIELD_LEN];

/* In place: control characters and bytes of broken sequences (such as a
 * character cut by snprintf) become '?', so the text is safe in JSON. */
static void sanitize(char *str) {
  unsigned char *s = (unsigned char *)str;
  size_t len = strlen(str), i = 0;
  while (i < len) {
    size_t n = utf8_decode(s + i, len - i, NULL);
    if (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))
      s[i] = '?';
    if (!n) {
      s[i] = '?';
      n = 1;
    }
    i += n;
  }
}

/* ---- errors and field paths ---- */

static int fail(job_error_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(job_error_t *err, const char *field, const char *fmt, ...) {
  va_list ap;
  snprintf(err->field, sizeof err->field, "%s", field);
  err->too_large = 0;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  sanitize(err->field);
  sanitize(err->message);
  return -1;
}

/* A user's string shortened for a message: at most 40 bytes, cut at a
 * character boundary, "..." when cut. */
static const char *shorten(char buf[48], const char *s) {
  size_t n = strlen(s);
  if (n <= 40) {
    memcpy(buf, s, n + 1);
    return buf;
  }
  n = utf8_cut(s, 40);
  memcpy(buf, s, n);
  memcpy(buf + n, "...", 4);
  return buf;
}

/* Case-insensitive Levenshtein distance; large for words over 64 bytes. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  int row[65];
  if (la > 64 || lb > 64)
    return INT_MAX;
  for (size_t j = 0; j <= lb; j++)
    row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* Whether word's letters appear in order in name ("src" in "source"). */
static int abbreviates(const char *word, const char *name) {
  if (strlen(word) < 3)
    return 0;
  for (; *word; word++) {
    name = strchr(name, *word);
    if (!name)
      return 0;
    name++;
  }
  return 1;
}

/* " (did you mean X?)" for a near miss or an abbreviation of one name only,
 * else " (known: a, b, c)". */
static const char *hint(char *buf, size_t n, const char *word, const char *const *known) {
  const char *best = NULL, *abbreviated = NULL;
  int best_d = INT_MAX, n_abbreviated = 0;
  size_t used;
  for (const char *const *k = known; *k; k++) {
    int d = edit_distance(word, *k), limit = strlen(*k) <= 4 ? 1 : 2;
    if (d <= limit && d < best_d) {
      best = *k;
      best_d = d;
    }
    if (abbreviates(word, *k)) {
      abbreviated = *k;
      n_abbreviated++;
    }
  }
  if (!best && n_abbreviated == 1)
    best = abbreviated;
  if (best) {
    snprintf(buf, n, " (did you mean %s?)", best);
    return buf;
  }
  used = (size_t)snprintf(buf, n, " (known:");
  for (const char *const *k = known; *k && used < n; k++)
    used += (size_t)snprintf(buf + used, n - used, "%s %s", k == known ? "" : ",", *k);
  if (used < n)
    snprintf(buf + used, n - used, ")");
  return buf;
}

static int in_list(const char *s, const char *const *list) {
  for (int i = 0; list[i]; i++)
    if (!strcmp(s, list[i]))
      return i;
  return -1;
}

/* Writes a reason into msg; returns -1. */
static int say(char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int say(char *msg, size_t msg_len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, msg_len, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- typed getters: each checks one value and names its field ---- */

static int check_keys(const json_t *obj, const char *base, const char *const *known,
                      job_error_t *err) {
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)obj, key, value) {
    char short_key[48], why[160];
    path_t p;
    (void)value;
    if (in_list(key, known) >= 0)
      continue;
    return fail(err, json_field_key(p, JOB_FIELD_LEN, base, shorten(short_key, key)),
                "unknown field%s", hint(why, sizeof why, key, known));
  }
  return 0;
}

/* Borrows a non-empty, NUL-free, valid UTF-8 string. */
static int want_string(const json_t *v, const char *field, const char **out, job_error_t *err) {
  const char *s;
  size_t n, bad;
  if (!json_is_string(v))
    return fail(err, field, "expected a string, got %s", json_field_kind(v));
  s = json_string_value(v);
  n = json_string_length(v);
  if (n == 0)
    return fail(err, field, "must not be empty");
  if (memchr(s, '\0', n))
    return fail(err, field, "contains a NUL character");
  if (!utf8_valid(s, n, &bad))
    return fail(err, field, "invalid UTF-8 at byte offset %zu of the string", bad);
  *out = s;
  return 0;
}

static int copy_string(const json_t *v, const char *field, char **out, job_error_t *err) {
  const char *s = NULL;
  if (want_string(v, field, &s, err))
    return -1;
  *out = strdup(s);
  if (!*out)
    return fail(err, field, "out of memory");
  return 0;
}

static int want_int(const json_t *v, const char *field, long long lo, long long hi,
                    const char *what, long long *out, job_error_t *err) {
  long long x;
  if (!json_is_integer(v))
    return fail(err, field, "expected %s, got %s", what, json_field_kind(v));
  x = (long long)json_integer_value(v);
  if (x < lo)
    return fail(err, field, "expected %s, got %lld", what, x);
  if (x > hi)
    return fail(err, field, "%lld is too large (at most %lld)", x, hi);
  *out = x;
  return 0;
}

static int want_bool(const json_t *v, const char *field, int *out, job_error_t *err) {
  if (!json_is_boolean(v))
    return fail(err, field, "expected true or false, got %s", json_field_kind(v));
  *out = json_is_true(v);
  return 0;
}

/* One of names (NULL-terminated): its index. */
static int want_enum(const json_t *v, const char *field, const char *what, const char *const *names,
                     int *out, job_error_t *err) {
  const char *s = NULL;
  char short_s[48], why[160];
  int i;
  if (want_string(v, field, &s, err))
    return -1;
  i = in_list(s, names);
  if (i < 0)
    return fail(err, field, "unknown %s \"%s\"%s", what, shorten(short_s, s),
                hint(why, sizeof why, s, names));
  *out = i;
  return 0;
}

/* An array of 1..max elements. */
static int want_array(const json_t *v, const char *field, const char *what, size_t max, size_t *n,
                      job_error_t *err) {
  if (!json_is_array(v))
    return fail(err, field, "expected an array of %s, got %s", what, json_field_kind(v));
  *n = json_array_size(v);
  if (*n == 0)
    return fail(err, field, "needs at least one of %s", what);
  if (*n > max)
    return fail(err, field, "%zu entries; the limit is %zu", *n, max);
  return 0;
}

/* A token given as text (non-empty string) or as an id. */
static int want_token(const json_t *v, const char *field, int allow_text, int allow_id,
                      job_token_t *t, job_error_t *err) {
  long long id = 0;
  if (allow_id && (json_is_integer(v) || !allow_text)) {
    if (want_int(v, field, 0, INT_MAX, "a token id (a non-negative integer)", &id, err))
      return -1;
    t->id = (int)id;
    return 0;
  }
  if (allow_text && (json_is_string(v) || !allow_id))
    return copy_string(v, field, &t->text, err);
  return fail(err, field,
              "expected a token (a string) or a token id (a non-negative integer), got %s",
              json_field_kind(v));
}

static int token_equal(const job_token_t *a, const job_token_t *b) {
  if (a->text && b->text)
    return !strcmp(a->text, b->text);
  return !a->text && !b->text && a->id == b->id && a->id >= 0;
}

static int token_given(const job_token_t *t) {
  return t->text || t->id >= 0;
}

/* ---- component patterns ---- */

typedef enum {
  PATTERN_ALL, /* "*": attention and MLP of every layer */
  PATTERN_EMBED,
  PATTERN_ATTN,
  PATTERN_MLP,
  PATTERN_HEAD,
  PATTERN_NEURON,
} pattern_kind_t;

#define WILDCARD (-1) /* layer or index "*" */
#define NOT_USED (-2) /* the kind has no such part */

typedef struct {
  int kind; /* pattern_kind_t, or component_kind_t in a component */
  int layer, index;
} triple_t;

static const char *const pattern_kinds[] = {"*", "embed", "attn", "mlp", "head", "neuron", NULL};

/* A part: "*" (when star_ok) or a non-negative decimal without leading zero. */
static int parse_part(const char *s, size_t n, int star_ok, const char *what, int *out, char *msg,
                      size_t msg_len) {
  long long x = 0;
  if (n == 1 && s[0] == '*') {
    if (!star_ok)
      return say(msg, msg_len, "'*' is not allowed as the %s here", what);
    *out = WILDCARD;
    return 0;
  }
  if (n == 0)
    return say(msg, msg_len, "missing %s", what);
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return say(msg, msg_len, "the %s must be a non-negative integer%s", what,
                 star_ok ? " or *" : "");
    x = x * 10 + (s[i] - '0');
    if (x > INT_MAX)
      return say(msg, msg_len, "the %s is too large", what);
  }
  if (n > 1 && s[0] == '0')
    return say(msg, msg_len, "the %s has a leading zero", what);
  *out = (int)x;
  return 0;
}

/* Parses a component pattern's syntax (not its ranges). On error writes
 * the reason into msg and returns -1. */
static int pattern_parse(const char *s, triple_t *p, char *msg, size_t msg_len) {
  const char *part[4];
  size_t len[4];
  int n = 0;
  char why[160];
  const char *c = s;
  for (;;) {
    const char *dot = strchr(c, '.');
    if (n == 3)
      return say(msg, msg_len, "too many parts");
    part[n] = c;
    len[n] = dot ? (size_t)(dot - c) : strlen(c);
    n++;
    if (!dot)
      break;
    c = dot + 1;
  }
  p->layer = p->index = NOT_USED;
  if (len[0] == 1 && part[0][0] == '*') {
    p->kind = PATTERN_ALL;
    if (n != 1)
      return say(msg, msg_len, "'*' stands alone (every attention and MLP layer)");
    return 0;
  }
  if (len[0] == 5 && !strncmp(part[0], "embed", 5)) {
    p->kind = PATTERN_EMBED;
    if (n != 1)
      return say(msg, msg_len, "embed takes no layer");
    return 0;
  }
  if ((len[0] == 4 && !strncmp(part[0], "attn", 4)) ||
      (len[0] == 3 && !strncmp(part[0], "mlp", 3))) {
    p->kind = part[0][0] == 'a' ? PATTERN_ATTN : PATTERN_MLP;
    if (n != 2)
      return say(msg, msg_len, "expected %.*s.LAYER or %.*s.*", (int)len[0], part[0], (int)len[0],
                 part[0]);
    return parse_part(part[1], len[1], 1, "layer", &p->layer, msg, msg_len);
  }
  if (len[0] == 4 && !strncmp(part[0], "head", 4)) {
    p->kind = PATTERN_HEAD;
    if (n == 2 && len[1] == 1 && part[1][0] == '*') {
      p->layer = p->index = WILDCARD;
      return 0;
    }
    if (n != 3)
      return say(msg, msg_len, "expected head.LAYER.HEAD, head.LAYER.* or head.*");
    if (parse_part(part[1], len[1], 0, "layer", &p->layer, msg, msg_len))
      return -1;
    return parse_part(part[2], len[2], 1, "head", &p->index, msg, msg_len);
  }
  if (len[0] == 6 && !strncmp(part[0], "neuron", 6)) {
    p->kind = PATTERN_NEURON;
    if (n != 3)
      return say(msg, msg_len, "expected neuron.LAYER.NEURON or neuron.LAYER.*");
    if (parse_part(part[1], len[1], 0, "layer", &p->layer, msg, msg_len))
      return -1;
    return parse_part(part[2], len[2], 1, "neuron", &p->index, msg, msg_len);
  }
  {
    char kind[48];
    size_t k = len[0] < sizeof kind - 1 ? len[0] : sizeof kind - 1;
    memcpy(kind, part[0], k);
    kind[k] = '\0';
    return say(msg, msg_len, "unknown component kind%s",
               hint(why, sizeof why, kind, pattern_kinds));
  }
}

/* ---- the document's parts ---- */

static const char *const top_keys[] = {
    "model",        "preset",    "prompts",       "target",
    "ablations",    "metrics",   "norm_scale",    "direct_effects",
    "effect_table", "precision", "weights_dtype", "reuse",
    "deadline_s",   NULL};
static const char *const prompt_keys[] = {"text", "ids", "subject", "target", NULL};
static const char *const target_keys[] = {"token", "id", "foil", "foil_id", NULL};
static const char *const ablation_keys[] = {"components", "methods",   "samples",
                                            "seed",       "positions", NULL};
static const char *const method_names[] = {"resample", "zero",  "mean", "scale",
                                           "noise",    "patch", NULL};
static const char *const metric_names[] = {"logit", "logprob", "prob", "logit_diff",
                                           "kl",    "rank",    NULL};

static int parse_prompt(const json_t *v, const char *field, job_prompt_t *p, job_error_t *err) {
  const json_t *text, *ids, *subject, *target;
  path_t f;
  if (json_is_string(v))
    return copy_string(v, field, &p->text, err);
  if (!json_is_object(v))
    return fail(err, field, "expected a string or an object with text or ids, got %s",
                json_field_kind(v));
  if (check_keys(v, field, prompt_keys, err))
    return -1;
  text = json_object_get(v, "text");
  ids = json_object_get(v, "ids");
  subject = json_object_get(v, "subject");
  target = json_object_get(v, "target");
  if (text && ids)
    return fail(err, json_field_key(f, JOB_FIELD_LEN, field, "ids"),
                "give only one of text and ids");
  if (!text && !ids)
    return fail(err, field, "needs text or ids");
  if (text && copy_string(text, json_field_key(f, JOB_FIELD_LEN, field, "text"), &p->text, err))
    return -1;
  if (ids) {
    size_t n = 0;
    json_field_key(f, JOB_FIELD_LEN, field, "ids");
    if (want_array(ids, f, "token ids", INT_MAX, &n, err))
      return -1;
    p->ids = malloc(n * sizeof *p->ids);
    if (!p->ids)
      return fail(err, f, "out of memory");
    p->n_ids = (int)n;
    for (size_t i = 0; i < n; i++) {
      long long id = 0;
      path_t fi;
      if (want_int(json_array_get(ids, i), json_field_index(fi, JOB_FIELD_LEN, f, i), 0, INT_MAX,
                   "a non-negative integer", &id, err))
        return -1;
      p->ids[i] = (int)id;
    }
  }
  if (subject) {
    json_field_key(f, JOB_FIELD_LEN, field, "subject");
    if (!p->text)
      return fail(err, f, "a subject needs the prompt as text, not ids");
    if (copy_string(subject, f, &p->subject, err))
      return -1;
    if (!strstr(p->text, p->subject)) {
      char s[48];
      return fail(err, f, "\"%s\" does not occur in the prompt's text", shorten(s, p->subject));
    }
  }
  if (target &&
      want_token(target, json_field_key(f, JOB_FIELD_LEN, field, "target"), 1, 1, &p->target, err))
    return -1;
  return 0;
}

static int parse_prompts(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (!v)
    return fail(err, "prompts", "required: a list of prompts");
  if (want_array(v, "prompts", "prompts", JOB_MAX_PROMPTS, &n, err))
    return -1;
  spec->prompts = calloc(n, sizeof *spec->prompts);
  if (!spec->prompts)
    return fail(err, "prompts", "out of memory");
  spec->n_prompts = (int)n;
  for (size_t i = 0; i < n; i++) {
    path_t f;
    spec->prompts[i].target.id = -1;
    if (parse_prompt(json_array_get(v, i), json_field_index(f, JOB_FIELD_LEN, "prompts", i),
                     &spec->prompts[i], err))
      return -1;
  }
  return 0;
}

static int parse_target(const json_t *v, job_spec_t *spec, job_error_t *err) {
  const json_t *token, *id, *foil, *foil_id;
  if (json_is_string(v)) {
    static const char *const names[] = {"argmax", "next", NULL};
    int i = 0;
    if (want_enum(v, "target", "target", names, &i, err))
      return -1;
    spec->target = i == 0 ? TARGET_ARGMAX : TARGET_NEXT;
    return 0;
  }
  if (!json_is_object(v))
    return fail(err, "target",
                "expected \"argmax\", \"next\" or an object such as {\"token\": \" "
                "Paris\"}, got %s",
                json_field_kind(v));
  if (check_keys(v, "target", target_keys, err))
    return -1;
  token = json_object_get(v, "token");
  id = json_object_get(v, "id");
  foil = json_object_get(v, "foil");
  foil_id = json_object_get(v, "foil_id");
  if (token && id)
    return fail(err, "target.id", "give only one of token and id");
  if (!token && !id)
    return fail(err, "target", "needs a token or an id: {\"token\": \" Paris\"} or {\"id\": 7042}");
  if (token ? want_token(token, "target.token", 1, 0, &spec->target_token, err)
            : want_token(id, "target.id", 0, 1, &spec->target_token, err))
    return -1;
  spec->target = TARGET_TOKEN;
  if (foil && foil_id)
    return fail(err, "target.foil_id", "give only one of foil and foil_id");
  if (!foil && !foil_id)
    return 0;
  if (foil ? want_token(foil, "target.foil", 1, 0, &spec->foil_token, err)
           : want_token(foil_id, "target.foil_id", 0, 1, &spec->foil_token, err))
    return -1;
  if (token_equal(&spec->target_token, &spec->foil_token))
    return fail(err, foil ? "target.foil" : "target.foil_id",
                "the foil is the same token as the target");
  spec->target = TARGET_FOIL;
  return 0;
}

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
  char name[48], why[160];
  int kind;
  if (name_len >= sizeof name)
    name_len = sizeof name - 1;
  memcpy(name, s, name_len);
  name[name_len] = '\0';
  kind = in_list(name, method_names);
  m->value = 0;
  m->source = -1;
  switch (kind) {
  case METHOD_RESAMPLE:
  case METHOD_ZERO:
  case METHOD_MEAN:
    m->kind = (method_kind_t)kind;
    if (colon)
      return say(msg, msg_len, "%s takes no value", name);
    return 0;
  case METHOD_SCALE:
  case METHOD_NOISE:
    m->kind = (method_kind_t)kind;
    if (!colon)
      return say(msg, msg_len, "%s needs a value, e.g. \"%s:%s\"", name, name,
                 kind == METHOD_SCALE ? "0.5" : "0.1");
    if (parse_value(colon + 1, &m->value))
      return say(msg, msg_len, "%s needs a finite decimal number after ':'", name);
    if (kind == METHOD_NOISE && m->value < 0)
      return say(msg, msg_len, "the noise's standard deviation must be >= 0");
    return 0;
  case METHOD_PATCH:
    return say(msg, msg_len, "patch is given as an object: {\"patch\": {\"source\": 3}}");
  default:
    return say(msg, msg_len, "unknown method%s", hint(why, sizeof why, name, method_names));
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
  if (check_keys(v, field, keys, err))
    return -1;
  patch = json_object_get(v, "patch");
  if (!patch)
    return fail(err, field, "expected a method string or {\"patch\": {\"source\": P}}");
  json_field_key(f, JOB_FIELD_LEN, field, "patch");
  if (!json_is_object(patch))
    return fail(err, f, "expected an object {\"source\": P}, got %s", json_field_kind(patch));
  if (check_keys(patch, f, patch_keys, err))
    return -1;
  source = json_object_get(patch, "source");
  json_field_key(fs, JOB_FIELD_LEN, f, "source");
  if (!source)
    return fail(err, fs, "required: the index of the prompt to patch from");
  if (want_int(source, fs, 0, LLONG_MAX, "a prompt index (a non-negative integer)", &src, err))
    return -1;
  if (src >= n_prompts)
    return fail(err, fs, "prompt %lld does not exist (the job has %d prompt%s)", src, n_prompts,
                n_prompts == 1 ? "" : "s");
  m->kind = METHOD_PATCH;
  m->value = 0;
  m->source = (int)src;
  return 0;
}

static int parse_methods(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (want_array(v, "ablations.methods", "methods", 1000, &n, err))
    return -1;
  spec->methods = calloc(n, sizeof *spec->methods);
  if (!spec->methods)
    return fail(err, "ablations.methods", "out of memory");
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
      if (want_string(e, f, &s, err))
        return -1;
      if (method_parse_why(s, m, msg, sizeof msg))
        return fail(err, f, "\"%s\": %s", shorten(short_s, s), msg);
    }
    for (size_t j = 0; j < i; j++)
      if (spec->methods[j].kind == m->kind && spec->methods[j].value == m->value &&
          spec->methods[j].source == m->source)
        return fail(err, f, "the same method as ablations.methods[%zu]", j);
  }
  return 0;
}

static int parse_components(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (want_array(v, "ablations.components", "components", JOB_MAX_VARIANTS, &n, err))
    return -1;
  spec->components = calloc(n, sizeof *spec->components);
  if (!spec->components)
    return fail(err, "ablations.components", "out of memory");
  spec->n_components = (int)n;
  for (size_t i = 0; i < n; i++) {
    char msg[256], short_s[48];
    triple_t p;
    path_t f;
    json_field_index(f, JOB_FIELD_LEN, "ablations.components", i);
    if (copy_string(json_array_get(v, i), f, &spec->components[i], err))
      return -1;
    if (pattern_parse(spec->components[i], &p, msg, sizeof msg))
      return fail(err, f, "\"%s\": %s", shorten(short_s, spec->components[i]), msg);
  }
  return 0;
}

static int by_value(const void *a, const void *b) {
  const int *x = a, *y = b;
  return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

/* A position given twice is the user's mistake (it would be read once):
 * refused, naming its second entry. */
static int check_unique_positions(const job_spec_t *spec, job_error_t *err) {
  const int n = spec->n_positions;
  int *pairs = malloc(sizeof(int) * 2 * (size_t)n); /* value, index */
  if (!pairs)
    return fail(err, "ablations.positions", "out of memory");
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
  return fail(err, json_field_index(fi, JOB_FIELD_LEN, "ablations.positions", (size_t)dup),
              "position %d is given twice (also at ablations.positions[%d])", value, first);
}

static int parse_positions(const json_t *v, job_spec_t *spec, job_error_t *err) {
  const char *f = "ablations.positions";
  if (json_is_string(v)) {
    static const char *const names[] = {"last", "all", "subject", NULL};
    static const position_mode_t modes[] = {POSITIONS_LAST, POSITIONS_ALL, POSITIONS_SUBSTRING};
    int i = 0;
    if (want_enum(v, f, "positions", names, &i, err))
      return -1;
    spec->positions = modes[i];
    return 0;
  }
  if (json_is_array(v)) {
    size_t n = 0;
    if (want_array(v, f, "positions", JOB_MAX_POSITIONS, &n, err)) {
      err->too_large = json_is_array(v) && n > JOB_MAX_POSITIONS;
      return -1;
    }
    spec->position_list = malloc(n * sizeof *spec->position_list);
    if (!spec->position_list)
      return fail(err, f, "out of memory");
    spec->n_positions = (int)n;
    for (size_t i = 0; i < n; i++) {
      long long x = 0;
      path_t fi;
      if (want_int(json_array_get(v, i), json_field_index(fi, JOB_FIELD_LEN, f, i), -INT_MAX,
                   INT_MAX, "a position (an integer; negative counts from the end)", &x, err))
        return -1;
      spec->position_list[i] = (int)x;
    }
    spec->positions = POSITIONS_LIST;
    return check_unique_positions(spec, err);
  }
  if (json_is_object(v)) {
    static const char *const keys[] = {"substring", NULL};
    const json_t *sub;
    if (check_keys(v, f, keys, err))
      return -1;
    sub = json_object_get(v, "substring");
    if (!sub)
      return fail(err, f, "expected {\"substring\": \"...\"}");
    if (copy_string(sub, "ablations.positions.substring", &spec->position_substring, err))
      return -1;
    spec->positions = POSITIONS_SUBSTRING;
    return 0;
  }
  return fail(err, f,
              "expected \"last\", \"all\", \"subject\", a list of positions or {\"substring\": "
              "...}, got %s",
              json_field_kind(v));
}

static int parse_metrics(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (!json_is_array(v))
    return fail(err, "metrics", "expected an array of metric names, got %s", json_field_kind(v));
  n = json_array_size(v);
  for (size_t i = 0; i < n; i++) {
    int k = 0;
    path_t f;
    if (want_enum(json_array_get(v, i), json_field_index(f, JOB_FIELD_LEN, "metrics", i), "metric",
                  metric_names, &k, err))
      return -1;
    if (1u << k == METRIC_LOGIT_DIFF && spec->target != TARGET_FOIL)
      return fail(err, f,
                  "logit_diff needs a target with a foil: \"target\": {\"token\": \" "
                  "Paris\", \"foil\": \" Rome\"}");
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
    return fail(err, "preset", "out of memory");
  spec->n_components = (int)n;
  for (size_t i = 0; i < n; i++)
    if (!(spec->components[i] = strdup(names[i])))
      return fail(err, "preset", "out of memory");
  return 0;
}

static int parse_ablations(const json_t *v, job_spec_t *spec, int *samples_given,
                           job_error_t *err) {
  const json_t *e;
  long long x = 0;
  if (!json_is_object(v))
    return fail(err, "ablations", "expected an object, got %s", json_field_kind(v));
  if (check_keys(v, "ablations", ablation_keys, err))
    return -1;
  if ((e = json_object_get(v, "components")) && parse_components(e, spec, err))
    return -1;
  if ((e = json_object_get(v, "methods")) && parse_methods(e, spec, err))
    return -1;
  if ((e = json_object_get(v, "samples"))) {
    if (want_int(e, "ablations.samples", 1, JOB_MAX_SAMPLES, "a positive integer", &x, err))
      return -1;
    spec->samples = (int)x;
    *samples_given = 1;
  }
  if ((e = json_object_get(v, "seed"))) {
    if (want_int(e, "ablations.seed", 0, (long long)JOB_MAX_SEED, "a non-negative integer", &x,
                 err))
      return -1;
    spec->seed = (uint64_t)x;
  }
  if ((e = json_object_get(v, "positions")) && parse_positions(e, spec, err))
    return -1;
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
      return fail(err, f, "a prompt's target conflicts with \"target\": \"%s\"",
                  spec->target == TARGET_ARGMAX ? "argmax" : "next");
    if (!target_given)
      spec->target = TARGET_TOKEN;
    for (int i = 0; i < spec->n_prompts; i++) {
      const job_token_t *t = &spec->prompts[i].target;
      path_t fi;
      json_field_key(fi, JOB_FIELD_LEN, json_field_index(fp, JOB_FIELD_LEN, "prompts", (size_t)i),
                     "target");
      if (!token_given(t) && !target_given)
        return fail(err, fi, "required: prompts[%d] names a target and the job names none", first);
      if (spec->target == TARGET_FOIL && token_given(t) && token_equal(t, &spec->foil_token))
        return fail(err, fi, "the same token as the foil");
    }
  }
  if (spec->positions == POSITIONS_SUBSTRING)
    for (int i = 0; i < spec->n_prompts; i++) {
      const job_prompt_t *p = &spec->prompts[i];
      char s[48];
      json_field_index(fp, JOB_FIELD_LEN, "prompts", (size_t)i);
      if (!p->text)
        return fail(err, json_field_key(f, JOB_FIELD_LEN, fp, "ids"),
                    "positions by substring (ablations.positions) need the prompt as text");
      if (!spec->position_substring && !p->subject)
        return fail(err, json_field_key(f, JOB_FIELD_LEN, fp, "subject"),
                    "required: ablations.positions is \"subject\" (give the prompt as {\"text\": "
                    "..., \"subject\": ...})");
      if (spec->position_substring && !strstr(p->text, spec->position_substring))
        return fail(err, "ablations.positions.substring", "\"%s\" does not occur in prompts[%d]",
                    shorten(s, spec->position_substring), i);
    }
  if (spec->n_prompts < 2)
    for (int i = 0; i < spec->n_methods; i++)
      if (spec->methods[i].kind == METHOD_RESAMPLE) {
        if (!methods_given)
          return fail(err, "ablations.methods",
                      "the default method, resample, needs at least 2 prompts; give more prompts "
                      "or another method (e.g. [\"zero\"])");
        return fail(err, json_field_index(f, JOB_FIELD_LEN, "ablations.methods", (size_t)i),
                    "resample needs at least 2 prompts (it draws another prompt's activations)");
      }
  return 0;
}

static int parse_document(const json_t *root, job_spec_t *spec, job_error_t *err) {
  static const char *const presets[] = {"hydra", NULL};
  static const char *const norm_scales[] = {"clean", "ablated", NULL};
  static const char *const precisions[] = {"fp32", "tf32", NULL};
  static const char *const dtypes[] = {"fp32", "bf16", NULL};
  const json_t *e;
  int target_given = 0, samples_given = 0, methods_given = 0, i = 0;
  if (!json_is_object(root))
    return fail(err, "", "expected a JSON object, got %s", json_field_kind(root));
  if (check_keys(root, "", top_keys, err))
    return -1;
  if ((e = json_object_get(root, "model")) && copy_string(e, "model", &spec->model, err))
    return -1;
  if (spec->model && strlen(spec->model) > 255)
    return fail(err, "model", "longer than 255 bytes");
  if ((e = json_object_get(root, "preset"))) {
    if (want_enum(e, "preset", "preset", presets, &i, err))
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
  if (!spec->components) {
    if (!spec->preset_hydra)
      return fail(err, "ablations.components",
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
      return fail(err, "ablations.methods", "out of memory");
    spec->methods[0] = (method_t){.kind = METHOD_RESAMPLE, .value = 0, .source = -1};
    spec->n_methods = 1;
  } else
    methods_given = 1;
  if ((e = json_object_get(root, "metrics")) && parse_metrics(e, spec, err))
    return -1;
  spec->metrics |= METRIC_LOGIT;
  if ((e = json_object_get(root, "norm_scale"))) {
    if (want_enum(e, "norm_scale", "norm_scale", norm_scales, &i, err))
      return -1;
    spec->norm_scale_ablated = i == 1;
  }
  if ((e = json_object_get(root, "direct_effects")) &&
      want_bool(e, "direct_effects", &spec->direct_effects, err))
    return -1;
  if ((e = json_object_get(root, "effect_table")) &&
      want_bool(e, "effect_table", &spec->effect_table, err))
    return -1;
  if ((e = json_object_get(root, "precision"))) {
    if (want_enum(e, "precision", "precision", precisions, &i, err))
      return -1;
    spec->tf32 = i == 1;
  }
  if ((e = json_object_get(root, "weights_dtype"))) {
    if (want_enum(e, "weights_dtype", "weights_dtype", dtypes, &i, err))
      return -1;
    spec->weights_bf16 = i;
  }
  if ((e = json_object_get(root, "reuse")) && want_bool(e, "reuse", &spec->reuse, err))
    return -1;
  if ((e = json_object_get(root, "deadline_s"))) {
    double d;
    if (!json_is_number(e))
      return fail(err, "deadline_s", "expected a number of seconds, got %s", json_field_kind(e));
    d = json_number_value(e);
    if (!(d > 0) || d > JOB_MAX_DEADLINE_S)
      return fail(err, "deadline_s", "expected seconds in (0, %g], got %g", JOB_MAX_DEADLINE_S, d);
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
    fail(err, "", "no document");
    return NULL;
  }
  if (len > JOB_MAX_DOCUMENT_BYTES) {
    fail(err, "", "the document is %zu bytes; the limit is %u (64 MiB)", len,
         JOB_MAX_DOCUMENT_BYTES);
    return NULL;
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
    fail(err, "", "invalid UTF-8 at byte offset %zu (line %zu, column %zu): byte 0x%02x", bad, line,
         column, (unsigned char)json[bad]);
    return NULL;
  }
  root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    fail(err, "", "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    return NULL;
  }
  spec = calloc(1, sizeof *spec);
  if (!spec) {
    fail(err, "", "out of memory");
    goto fail;
  }
  spec->target = TARGET_ARGMAX;
  spec->target_token.id = spec->foil_token.id = -1;
  spec->samples = 1;
  spec->positions = POSITIONS_LAST;
  spec->metrics = METRIC_LOGIT;
  spec->direct_effects = spec->effect_table = spec->reuse = 1;
  spec->weights_bf16 = -1;
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
  for (int i = 0; spec->prompts && i < spec->n_prompts; i++) {
    free(spec->prompts[i].text);
    free(spec->prompts[i].ids);
    free(spec->prompts[i].subject);
    free(spec->prompts[i].target.text);
  }
  free(spec->prompts);
  free(spec->target_token.text);
  free(spec->foil_token.text);
  for (int i = 0; spec->components && i < spec->n_components; i++)
    free(spec->components[i]);
  free(spec->components);
  free(spec->methods);
  free(spec->position_list);
  free(spec->position_substring);
  free(spec);
}

/* ---- expansion ---- */

/* An ordered set of triples: items in order of insertion, an open-addressing
 * table of item index + 1 (0: empty) for lookups. */
typedef struct {
  triple_t *items;
  size_t n, cap;
  uint32_t *slots;
  size_t n_slots; /* a power of two, > 2 n */
} triple_set_t;

static size_t triple_hash(triple_t t) {
  uint64_t h = (uint64_t)(uint32_t)t.kind * 0x9e3779b97f4a7c15ull;
  h ^= (uint64_t)(uint32_t)t.layer * 0xc2b2ae3d27d4eb4full;
  h ^= (uint64_t)(uint32_t)t.index * 0x165667b19e3779f9ull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (size_t)h;
}

static int triple_equal(triple_t a, triple_t b) {
  return a.kind == b.kind && a.layer == b.layer && a.index == b.index;
}

static int set_grow(triple_set_t *s) {
  size_t n_slots = s->n_slots ? s->n_slots * 2 : 64;
  uint32_t *slots = calloc(n_slots, sizeof *slots);
  triple_t *items = realloc(s->items, n_slots / 2 * sizeof *items);
  if (items)
    s->items = items;
  if (!slots || !items) {
    free(slots);
    return -1;
  }
  s->cap = n_slots / 2;
  for (size_t i = 0; i < s->n; i++) {
    size_t j = triple_hash(s->items[i]) & (n_slots - 1);
    while (slots[j])
      j = (j + 1) & (n_slots - 1);
    slots[j] = (uint32_t)(i + 1);
  }
  free(s->slots);
  s->slots = slots;
  s->n_slots = n_slots;
  return 0;
}

/* Adds t unless present. Returns 1 added, 0 present, -1 out of memory. */
static int set_add(triple_set_t *s, triple_t t) {
  size_t j;
  if (s->n + 1 >= s->cap && set_grow(s))
    return -1;
  j = triple_hash(t) & (s->n_slots - 1);
  for (; s->slots[j]; j = (j + 1) & (s->n_slots - 1))
    if (triple_equal(s->items[s->slots[j] - 1], t))
      return 0;
  s->items[s->n] = t;
  s->slots[j] = (uint32_t)(++s->n);
  return 1;
}

static void set_free(triple_set_t *s) {
  free(s->items);
  free(s->slots);
}

typedef struct {
  triple_set_t components;
  size_t max; /* components allowed: JOB_MAX_VARIANTS / variants per component */
  const char *field, *pattern;
  job_error_t *err;
} expansion_t;

static int add(expansion_t *x, component_kind_t kind, int layer, int index) {
  char s[48];
  int r = set_add(&x->components, (triple_t){(int)kind, layer, index});
  if (r < 0)
    return fail(x->err, x->field, "out of memory");
  if (x->components.n > x->max)
    return fail(x->err, x->field,
                "\"%s\" takes the job past %d variants per prompt (components x methods, "
                "resample once per sample: %zu components allowed)",
                shorten(s, x->pattern), JOB_MAX_VARIANTS, x->max);
  return 0;
}

/* Range errors: "(model has 30 layers)". */
static int out_of_range(expansion_t *x, const char *what, int have) {
  char s[48];
  return fail(x->err, x->field, "unknown component \"%s\" (model has %d %s)",
              shorten(s, x->pattern), have, what);
}

static int expand_pattern(expansion_t *x, triple_t p, const model_config_t *cfg) {
  int l0 = p.layer, l1 = p.layer + 1;
  if (p.kind == PATTERN_EMBED)
    return add(x, COMPONENT_EMBED, -1, -1);
  if (p.kind == PATTERN_ALL || p.layer == WILDCARD) {
    l0 = 0;
    l1 = cfg->n_layers;
  } else if (p.layer >= cfg->n_layers)
    return out_of_range(x, "layers", cfg->n_layers);
  if (p.kind == PATTERN_HEAD && p.index >= cfg->n_heads)
    return out_of_range(x, "heads per layer", cfg->n_heads);
  if (p.kind == PATTERN_NEURON && p.index >= cfg->d_mlp)
    return out_of_range(x, "MLP neurons per layer", cfg->d_mlp);
  for (int l = l0; l < l1; l++) {
    switch (p.kind) {
    case PATTERN_ALL:
      if (add(x, COMPONENT_ATTN, l, -1) || add(x, COMPONENT_MLP, l, -1))
        return -1;
      break;
    case PATTERN_ATTN:
    case PATTERN_MLP:
      if (add(x, p.kind == PATTERN_ATTN ? COMPONENT_ATTN : COMPONENT_MLP, l, -1))
        return -1;
      break;
    case PATTERN_HEAD:
    case PATTERN_NEURON: {
      component_kind_t kind = p.kind == PATTERN_HEAD ? COMPONENT_HEAD : COMPONENT_NEURON;
      int n = p.kind == PATTERN_HEAD ? cfg->n_heads : cfg->d_mlp;
      int i0 = p.index == WILDCARD ? 0 : p.index, i1 = p.index == WILDCARD ? n : p.index + 1;
      for (int i = i0; i < i1; i++)
        if (add(x, kind, l, i))
          return -1;
      break;
    }
    default:
      return fail(x->err, x->field, "internal error: pattern kind %d", p.kind);
    }
  }
  return 0;
}

int job_expand_components(const job_spec_t *spec, const model_config_t *cfg, component_t **out,
                          int *n_out, job_error_t *err) {
  job_error_t scratch;
  expansion_t x = {{0}, 0, "", "", NULL};
  triple_set_t wildcards = {0};
  long per_component = 0;
  if (!err)
    err = &scratch;
  memset(err, 0, sizeof *err);
  x.err = err;
  if (out)
    *out = NULL;
  if (n_out)
    *n_out = 0;
  if (!spec || !cfg || !out || !n_out)
    return fail(err, "", "job_expand_components: missing argument");
  if (cfg->n_layers <= 0 || cfg->n_heads <= 0 || cfg->d_mlp <= 0)
    return fail(err, "", "the model's config has no layers, heads or MLP neurons");
  for (int m = 0; m < spec->n_methods; m++)
    per_component += spec->methods[m].kind == METHOD_RESAMPLE && spec->samples > 1
                         ? (spec->samples < JOB_MAX_VARIANTS ? spec->samples : JOB_MAX_VARIANTS)
                         : 1;
  x.max = (size_t)(JOB_MAX_VARIANTS / (per_component > 0 ? per_component : 1));
  for (int i = 0; i < spec->n_components; i++) {
    char msg[256], s[48];
    path_t f;
    triple_t p;
    x.field = json_field_index(f, JOB_FIELD_LEN, "ablations.components", (size_t)i);
    x.pattern = spec->components[i] ? spec->components[i] : "";
    if (pattern_parse(x.pattern, &p, msg, sizeof msg)) {
      fail(err, f, "\"%s\": %s", shorten(s, x.pattern), msg);
      goto fail;
    }
    /* A wildcard seen before adds nothing: skip it, so that repeats cost nothing. */
    if (p.kind == PATTERN_ALL || p.layer == WILDCARD || p.index == WILDCARD) {
      int r = set_add(&wildcards, p);
      if (r < 0) {
        fail(err, f, "out of memory");
        goto fail;
      }
      if (r == 0)
        continue;
    }
    if (expand_pattern(&x, p, cfg))
      goto fail;
  }
  if (x.components.n) {
    *out = malloc(x.components.n * sizeof **out);
    if (!*out) {
      fail(err, "ablations.components", "out of memory");
      goto fail;
    }
    for (size_t i = 0; i < x.components.n; i++)
      (*out)[i] = (component_t){(component_kind_t)x.components.items[i].kind,
                                x.components.items[i].layer, x.components.items[i].index};
    *n_out = (int)x.components.n;
  }
  set_free(&x.components);
  set_free(&wildcards);
  return 0;
fail:
  set_free(&x.components);
  set_free(&wildcards);
  return -1;
}

void component_name(const component_t *c, char *buf, size_t len) {
  if (!buf || !len)
    return;
  switch (c->kind) {
  case COMPONENT_EMBED:
    snprintf(buf, len, "embed");
    break;
  case COMPONENT_ATTN:
    snprintf(buf, len, "attn.%d", c->layer);
    break;
  case COMPONENT_MLP:
    snprintf(buf, len, "mlp.%d", c->layer);
    break;
  case COMPONENT_HEAD:
    snprintf(buf, len, "head.%d.%d", c->layer, c->index);
    break;
  case COMPONENT_NEURON:
    snprintf(buf, len, "neuron.%d.%d", c->layer, c->index);
    break;
  default:
    snprintf(buf, len, "unknown");
  }
}
