#include "json_field.h"

#include <stdio.h>

const char *json_field_key(char *out, size_t len, const char *parent, const char *key) {
  if (!key)
    key = "?";
  const int n =
      parent[0] ? snprintf(out, len, "%s.%s", parent, key) : snprintf(out, len, "%s", key);
  if (n < 0)
    out[0] = '\0';
  return out;
}

const char *json_field_index(char *out, size_t len, const char *parent, size_t index) {
  if (snprintf(out, len, "%s[%zu]", parent, index) < 0)
    out[0] = '\0';
  return out;
}

const char *json_field_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
    return "true";
  case JSON_FALSE:
    return "false";
  case JSON_NULL:
    return "null";
  }
  return "an unknown value";
}

const char *json_field_message(char *out, size_t len, const char *field, const char *message) {
  const int named = field && field[0];
  if (snprintf(out, len, "%s%s%s", named ? field : "", named ? ": " : "", message) < 0)
    out[0] = '\0';
  return out;
}
