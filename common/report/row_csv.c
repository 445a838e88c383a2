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

static int header_line(const json_t *row, buffer_t *out) {
  int rc = buffer_appendf(out, "prompt,position,component,method,samples");
  for (int i = 0; NUMBERS[i]; i++)
    rc |= buffer_appendf(out, ",%s", NUMBERS[i]);
  const json_t *slots = json_object_get(row, "slots");
  for (size_t i = 0; i < json_array_size(slots); i++)
    rc |= buffer_appendf(out, ",effect_%s", json_string_value(json_array_get(slots, i)));
  return rc | buffer_append(out, "\n", 1);
}

static int variant_line(const json_t *row, buffer_t *out) {
  const json_t *pos = json_object_get(row, "position"); /* "target": "next" readouts */
  char at[24] = "";
  if (json_is_integer(pos))
    snprintf(at, sizeof(at), "%lld", json_integer_value(pos));
  int rc =
      buffer_appendf(out, "%lld,%s,%s,%s,%lld", json_integer_value(json_object_get(row, "prompt")),
                     at, json_string_value(json_object_get(row, "component")),
                     json_string_value(json_object_get(row, "method")),
                     json_integer_value(json_object_get(row, "samples")));
  for (int i = 0; NUMBERS[i]; i++)
    rc |= number(out, json_object_get(row, NUMBERS[i]));
  const json_t *eff = json_object_get(row, "effects");
  for (size_t i = 0; i < json_array_size(eff); i++)
    rc |= number(out, json_array_get(eff, i));
  return rc | buffer_append(out, "\n", 1);
}

int row_csv(const json_t *row, buffer_t *out) {
  const char *type = json_string_value(json_object_get(row, "type"));
  if (type && strcmp(type, "header") == 0)
    return header_line(row, out) ? -1 : 0;
  if (type && strcmp(type, "variant") == 0)
    return variant_line(row, out) ? -1 : 0;
  return 0;
}
