/* tokenizer_json_field.c - the typed getters of the tokenizer.json loader:
 * each reads one field (boolean, string, integer, pattern, single character)
 * with its default, and fails naming the file and the field's JSON path. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "json_field.h"
#include "tokenizer_json_internal.h"
#include "utf8.h"

int json_loader_fail(json_loader_t *L, const char *field, const char *what) {
  return err_set(L->err, "%s: %s: %s", L->path, field, what);
}

/* Optional boolean; absent or null gives dflt. */
int json_loader_get_bool(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                         int dflt, int *out) {
  const json_t *v = json_object_get(obj, key);
  *out = dflt;
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_boolean(v)) {
    char f[FIELD_LEN];
    json_field_key(f, FIELD_LEN, parent, key);
    return json_loader_fail(L, f, "must be true or false");
  }
  *out = json_is_true(v);
  return 0;
}

/* Required string (optional when out_len is given and dflt non-NULL). */
int json_loader_get_string(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                           const char *dflt, const char **out, size_t *out_len) {
  const json_t *v = json_object_get(obj, key);
  *out = dflt ? dflt : "";
  if (out_len)
    *out_len = 0;
  char f[FIELD_LEN];
  json_field_key(f, FIELD_LEN, parent, key);
  if ((!v || json_is_null(v)) && dflt) {
    *out = dflt;
    if (out_len)
      *out_len = strlen(dflt);
    return 0;
  }
  if (!v || !json_is_string(v))
    return json_loader_fail(L, f, v ? "must be a string" : "is missing (a string)");
  *out = json_string_value(v);
  if (out_len)
    *out_len = json_string_length(v);
  return 0;
}

int json_loader_get_int(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                        long dflt, long lo, long hi, long *out) {
  const json_t *v = json_object_get(obj, key);
  *out = dflt;
  char f[FIELD_LEN];
  json_field_key(f, FIELD_LEN, parent, key);
  if ((!v || json_is_null(v)) && dflt >= lo) {
    *out = dflt;
    return 0;
  }
  if (!v || !json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
    char what[96];
    snprintf(what, sizeof(what), "must be an integer in %ld .. %ld", lo, hi);
    return json_loader_fail(L, f, what);
  }
  *out = (long)json_integer_value(v);
  return 0;
}

const char *json_loader_type_of(const json_t *obj) {
  const json_t *v = json_object_get(obj, "type");
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* {"String": s} or {"Regex": r}. */
int json_loader_get_pattern(json_loader_t *L, const json_t *obj, const char *parent,
                            tokenizer_pattern_t *p, int allow_regex) {
  char f[FIELD_LEN], msg[HYDRA_ERR_LEN];
  json_field_key(f, FIELD_LEN, parent, "pattern");
  const json_t *v = json_object_get(obj, "pattern");
  const json_t *s = json_object_get(v, "String"), *r = json_object_get(v, "Regex");
  if (json_is_string(s))
    return tokenizer_pattern_literal(p, json_string_value(s), json_string_length(s), L->err);
  if (json_is_string(r) && allow_regex) {
    if (tokenizer_pattern_regex(p, json_string_value(r), json_string_length(r), msg))
      return json_loader_fail(L, f, msg);
    return 0;
  }
  return json_loader_fail(
      L, f,
      allow_regex ? "must be {\"String\": ...} or {\"Regex\": ...}"
                  : "must be {\"String\": ...} (a regular expression is not supported here)");
}

/* A single character given as a string (Metaspace's replacement, Strip's content). */
int json_loader_get_char(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                         const char *dflt, char out[8], size_t *out_len) {
  const char *s = NULL;
  size_t n = 0;
  if (json_loader_get_string(L, obj, parent, key, dflt, &s, &n))
    return -1;
  if (n == 0 || n > 4 || utf8_decode((const unsigned char *)s, n, NULL) != n) {
    char f[FIELD_LEN];
    json_field_key(f, FIELD_LEN, parent, key);
    return json_loader_fail(L, f, "must be a single character");
  }
  memcpy(out, s, n);
  out[n] = '\0';
  *out_len = n;
  return 0;
}
