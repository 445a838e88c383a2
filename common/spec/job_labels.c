/* job_labels.c - a job's "name" and "labels": short strings a user finds
 * the job by again (job.h gives the bounds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_internal.h"
#include "json_field.h"

/* The byte offset of the first control character (U+0000..U+001F, U+007F)
 * in s, or -1. UTF-8 continuation bytes are >= 0x80: never one of them. */
static long control_at(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return (long)i;
  return -1;
}

static int label_key_ok(const char *k) {
  size_t n = strlen(k);
  if (n == 0 || n > JOB_LABEL_KEY_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-", k[i]))
      return 0;
  return 1;
}

int job_parse_name(const json_t *v, job_spec_t *spec, job_error_t *err) {
  const char *s;
  if (job_want_string(v, "name", &s, err))
    return -1;
  const size_t n = json_string_length(v);
  if (n > JOB_NAME_MAX)
    return job_fail(err, "name", "%zu bytes long; a name is at most %d bytes", n, JOB_NAME_MAX);
  const long at = control_at(s, n);
  if (at >= 0)
    return job_fail(err, "name", "a control character (0x%02x) at byte %ld", (unsigned char)s[at],
                    at);
  if (!(spec->name = strdup(s)))
    return job_fail(err, "name", "out of memory");
  return 0;
}

int job_parse_labels(const json_t *v, job_spec_t *spec, job_error_t *err) {
  if (!json_is_object(v))
    return job_fail(err, "labels",
                    "expected an object of strings (e.g. {\"sweep\": \"a\"}), got %s",
                    json_field_kind(v));
  if (json_object_size(v) > JOB_MAX_LABELS)
    return job_fail(err, "labels", "%zu labels; at most %d", json_object_size(v), JOB_MAX_LABELS);
  const char *key;
  const json_t *value;
  json_object_foreach((json_t *)v, key, value) {
    path_t field;
    snprintf(field, sizeof field, "labels.%.40s", key);
    if (!label_key_ok(key))
      return job_fail(err, field, "a label's key is 1 to %d bytes of letters, digits and . _ / -",
                      JOB_LABEL_KEY_MAX);
    if (!json_is_string(value))
      return job_fail(err, field, "expected a string, got %s", json_field_kind(value));
    const char *s = json_string_value(value);
    const size_t n = json_string_length(value);
    if (n > JOB_LABEL_VALUE_MAX)
      return job_fail(err, field, "%zu bytes long; a label's value is at most %d bytes", n,
                      JOB_LABEL_VALUE_MAX);
    const long at = control_at(s, n);
    if (at >= 0)
      return job_fail(err, field, "a control character (0x%02x) at byte %ld", (unsigned char)s[at],
                      at);
  }
  spec->labels = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
  if (!spec->labels)
    return job_fail(err, "labels", "out of memory");
  if (strlen(spec->labels) > JOB_LABELS_JSON_MAX) /* cannot happen within the bounds above */
    return job_fail(err, "labels", "longer than %d bytes as JSON", JOB_LABELS_JSON_MAX);
  return 0;
}
