/* job_field.c - a job document's fields: an error that names one (field
 * path and message, cleaned so they can go into a JSON reply as is), the
 * "did you mean" hint for a near miss, and the typed getters that each check
 * one value and name its field on failure. */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "job_internal.h"
#include "json_field.h"
#include "utf8.h"

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

int job_fail(job_error_t *err, const char *field, const char *fmt, ...) {
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
const char *job_shorten(char buf[48], const char *s) {
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

/* Case-insensitive edit distance counting a swap of two neighbouring letters
 * as one edit ("zreo" is 1 from "zero"; optimal string alignment); large for
 * words over 64 bytes. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  int prev2[65], prev[65], row[65];
  if (la > 64 || lb > 64)
    return INT_MAX;
  for (size_t j = 0; j <= lb; j++)
    prev[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    row[0] = (int)i;
    const int ca = tolower((unsigned char)a[i - 1]);
    for (size_t j = 1; j <= lb; j++) {
      const int cb = tolower((unsigned char)b[j - 1]);
      int best = prev[j - 1] + (ca != cb);
      if (prev[j] + 1 < best)
        best = prev[j] + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
          tolower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < best)
        best = prev2[j - 2] + 1;
      row[j] = best;
    }
    memcpy(prev2, prev, sizeof prev);
    memcpy(prev, row, sizeof row);
  }
  return prev[lb];
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
const char *job_hint(char *buf, size_t n, const char *word, const char *const *known) {
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

int job_in_list(const char *s, const char *const *list) {
  for (int i = 0; list[i]; i++)
    if (!strcmp(s, list[i]))
      return i;
  return -1;
}

/* Writes a reason into msg; returns -1. */
int job_say(char *msg, size_t msg_len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, msg_len, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- typed getters: each checks one value and names its field ---- */

int job_check_keys(const json_t *obj, const char *base, const char *const *known,
                   job_error_t *err) {
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)obj, key, value) {
    char short_key[48], why[400];
    path_t p;
    (void)value;
    if (job_in_list(key, known) >= 0)
      continue;
    return job_fail(err, json_field_key(p, JOB_FIELD_LEN, base, job_shorten(short_key, key)),
                    "unknown field%s", job_hint(why, sizeof why, key, known));
  }
  return 0;
}

/* Borrows a non-empty, NUL-free, valid UTF-8 string. */
int job_want_string(const json_t *v, const char *field, const char **out, job_error_t *err) {
  const char *s;
  size_t n, bad;
  if (!json_is_string(v))
    return job_fail(err, field, "expected a string, got %s", json_field_kind(v));
  s = json_string_value(v);
  n = json_string_length(v);
  if (n == 0)
    return job_fail(err, field, "must not be empty");
  if (memchr(s, '\0', n))
    return job_fail(err, field, "contains a NUL character");
  if (!utf8_valid(s, n, &bad))
    return job_fail(err, field, "invalid UTF-8 at byte offset %zu of the string", bad);
  *out = s;
  return 0;
}

int job_copy_string(const json_t *v, const char *field, char **out, job_error_t *err) {
  const char *s = NULL;
  if (job_want_string(v, field, &s, err))
    return -1;
  *out = strdup(s);
  if (!*out)
    return job_fail(err, field, "out of memory");
  return 0;
}

int job_want_int(const json_t *v, const char *field, long long lo, long long hi, const char *what,
                 long long *out, job_error_t *err) {
  long long x;
  if (!json_is_integer(v))
    return job_fail(err, field, "expected %s, got %s", what, json_field_kind(v));
  x = (long long)json_integer_value(v);
  if (x < lo)
    return job_fail(err, field, "expected %s, got %lld", what, x);
  if (x > hi)
    return job_fail(err, field, "%lld is too large (at most %lld)", x, hi);
  *out = x;
  return 0;
}

int job_want_bool(const json_t *v, const char *field, int *out, job_error_t *err) {
  if (!json_is_boolean(v))
    return job_fail(err, field, "expected true or false, got %s", json_field_kind(v));
  *out = json_is_true(v);
  return 0;
}

/* One of names (NULL-terminated): its index. */
int job_want_enum(const json_t *v, const char *field, const char *what, const char *const *names,
                  int *out, job_error_t *err) {
  const char *s = NULL;
  char short_s[48], why[400];
  int i;
  if (job_want_string(v, field, &s, err))
    return -1;
  i = job_in_list(s, names);
  if (i < 0)
    return job_fail(err, field, "unknown %s \"%s\"%s", what, job_shorten(short_s, s),
                    job_hint(why, sizeof why, s, names));
  *out = i;
  return 0;
}

/* An array of 1..max elements. */
int job_want_array(const json_t *v, const char *field, const char *what, size_t max, size_t *n,
                   job_error_t *err) {
  if (!json_is_array(v))
    return job_fail(err, field, "expected an array of %s, got %s", what, json_field_kind(v));
  *n = json_array_size(v);
  if (*n == 0)
    return job_fail(err, field, "needs at least one of %s", what);
  if (*n > max)
    return job_fail(err, field, "%zu entries; the limit is %zu", *n, max);
  return 0;
}

/* A token given as text (non-empty string) or as an id. */
int job_want_token(const json_t *v, const char *field, int allow_text, int allow_id, job_token_t *t,
                   job_error_t *err) {
  long long id = 0;
  if (json_is_object(v)) { /* {"token": " Paris"} or {"id": 7042}, as the job's target is written */
    const json_t *text = json_object_get(v, "token"), *num = json_object_get(v, "id");
    char inner[JOB_FIELD_LEN];
    if (json_object_size(v) != 1 || (!text && !num) || (text && !allow_text) || (num && !allow_id))
      return job_fail(err, field, "expected %s",
                      allow_text && allow_id ? "{\"token\": text} or {\"id\": N}"
                      : allow_text           ? "{\"token\": text}"
                                             : "{\"id\": N}");
    snprintf(inner, sizeof inner, "%s.%s", field, text ? "token" : "id");
    return job_want_token(text ? text : num, inner, text != NULL, num != NULL, t, err);
  }
  if (allow_id && (json_is_integer(v) || !allow_text)) {
    if (job_want_int(v, field, 0, INT_MAX, "a token id (a non-negative integer)", &id, err))
      return -1;
    t->id = (int)id;
    return 0;
  }
  if (allow_text && (json_is_string(v) || !allow_id))
    return job_copy_string(v, field, &t->text, err);
  return job_fail(err, field,
                  "expected a token (a string) or a token id (a non-negative integer), got %s",
                  json_field_kind(v));
}
