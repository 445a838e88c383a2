/* row_csv.c - result rows as CSV (row_csv.h). */
#include "row_csv.h"

#include <stdio.h>
#include <string.h>

static const char *const NUMBERS[] = {"total_effect",
                                      "direct_effect",
                                      "compensation",
                                      "compensation_attn",
                                      "compensation_mlp",
                                      "norm_share",
                                      "ablated_logit",
                                      "inv_scale",
                                      "logprob",
                                      "prob",
                                      "kl",
                                      "rank",
                                      "logit_diff",
                                      NULL};

static int number(buffer_t *out, const json_t *v) {
  return json_is_number(v) ? buffer_appendf(out, ",%.9g", json_number_value(v))
                           : buffer_append(out, ",", 1);
}

/* The columns after the effects: the row's type, then a clean row's target
 * token, centred logit and prompt text. */
static const char *const CLEAN_COLUMNS = ",type,target_token,logit,text";

/* ",TEXT" as an RFC 4180 field: quoted (quotes doubled) when it holds a
 * comma, a quote or a line break; an empty field for a non-string. */
static int text_field(buffer_t *out, const json_t *v) {
  const char *s = json_string_value(v);
  if (!s)
    return buffer_append(out, ",", 1);
  const size_t len = json_string_length(v);
  if (!memchr(s, ',', len) && !memchr(s, '"', len) && !memchr(s, '\n', len) &&
      !memchr(s, '\r', len))
    return buffer_append(out, ",", 1) | buffer_append(out, s, len);
  int rc = buffer_append(out, ",\"", 2);
  for (size_t i = 0; i < len; i++)
    rc |= s[i] == '"' ? buffer_append(out, "\"\"", 2) : buffer_append(out, s + i, 1);
  return rc | buffer_append(out, "\"", 1);
}

static int header_line(const json_t *row, buffer_t *out) {
  int rc = buffer_appendf(out, "prompt,position,component,method,samples");
  for (int i = 0; NUMBERS[i]; i++)
    rc |= buffer_appendf(out, ",%s", NUMBERS[i]);
  const json_t *slots = json_object_get(row, "slots");
  for (size_t i = 0; i < json_array_size(slots); i++)
    rc |= buffer_appendf(out, ",effect_%s", json_string_value(json_array_get(slots, i)));
  rc |= buffer_appendf(out, "%s", CLEAN_COLUMNS);
  return rc | buffer_append(out, "\n", 1);
}

/* A variant row; its position column holds a readout's or grid's position,
 * or a span grid's span name. */
static int variant_line(const json_t *row, buffer_t *out) {
  const json_t *pos = json_object_get(row, "position"), *span = json_object_get(row, "span");
  int rc = buffer_appendf(out, "%lld", json_integer_value(json_object_get(row, "prompt")));
  if (span)
    rc |= text_field(out, span);
  else if (json_is_integer(pos))
    rc |= buffer_appendf(out, ",%lld", json_integer_value(pos));
  else
    rc |= buffer_append(out, ",", 1);
  rc |= buffer_appendf(out, ",%s,%s,%lld", json_string_value(json_object_get(row, "component")),
                       json_string_value(json_object_get(row, "method")),
                       json_integer_value(json_object_get(row, "samples")));
  for (int i = 0; NUMBERS[i]; i++)
    rc |= number(out, json_object_get(row, NUMBERS[i]));
  const json_t *eff = json_object_get(row, "effects");
  for (size_t i = 0; i < json_array_size(eff); i++)
    rc |= number(out, json_array_get(eff, i));
  return rc | buffer_appendf(out, ",variant,,,\n");
}

/* A clean row: its prompt (and readout position), the numbers it shares
 * with variant rows, empty effect columns (a clean row has no change), then
 * "clean", the target token, the centred logit and the prompt text. */
static int clean_line(const json_t *row, buffer_t *out, size_t n_slots) {
  const json_t *pos = json_object_get(row, "position");
  char at[24] = "";
  if (json_is_integer(pos))
    snprintf(at, sizeof(at), "%lld", json_integer_value(pos));
  int rc =
      buffer_appendf(out, "%lld,%s,,,", json_integer_value(json_object_get(row, "prompt")), at);
  for (int i = 0; NUMBERS[i]; i++)
    rc |= number(out, json_object_get(row, NUMBERS[i]));
  for (size_t i = 0; i < n_slots; i++)
    rc |= buffer_append(out, ",", 1);
  rc |= buffer_append(out, ",clean", 6);
  rc |= text_field(out, json_object_get(row, "target_token"));
  rc |= number(out, json_object_get(row, "logit"));
  rc |= text_field(out, json_object_get(row, "text"));
  return rc | buffer_append(out, "\n", 1);
}

int row_csv(const json_t *row, buffer_t *out) {
  const char *type = json_string_value(json_object_get(row, "type"));
  if (type && strcmp(type, "clean") == 0)
    return clean_line(row, out, json_array_size(json_object_get(row, "direct_effects"))) ? -1 : 0;
  if (type && strcmp(type, "header") == 0)
    return header_line(row, out) ? -1 : 0;
  if (type && strcmp(type, "variant") == 0)
    return variant_line(row, out) ? -1 : 0;
  return 0;
}
