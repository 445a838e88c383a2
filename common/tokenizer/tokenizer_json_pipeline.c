/* tokenizer_json_pipeline.c - the pipeline sections of a tokenizer.json
 * (normalizer, pre_tokenizer, post_processor, decoder), each with its
 * Sequence, read into the tokenizer's steps (tokenizer_internal.h); a type
 * hydra does not implement is refused, naming the field. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "error.h"
#include "json_field.h"
#include "tokenizer_json_internal.h"

/* ---- normalizer ---- */

/* A "Sequence" step: each entry of its array `key` through `parse`. */
static int parse_sequence(json_loader_t *L, const json_t *step, const char *field, const char *key,
                          int (*parse)(json_loader_t *, const json_t *, const char *)) {
  char f[FIELD_LEN];
  const json_t *list = json_object_get(step, key);
  json_field_key(f, FIELD_LEN, field, key);
  if (!json_is_array(list))
    return json_loader_fail(L, f, "must be an array");
  for (size_t i = 0; i < json_array_size(list); i++) {
    char g[FIELD_LEN];
    json_field_index(g, FIELD_LEN, f, i);
    if (parse(L, json_array_get(list, i), g))
      return -1;
  }
  return 0;
}

int json_loader_parse_normalizer(json_loader_t *L, const json_t *n, const char *field) {
  if (!n || json_is_null(n))
    return 0;
  const char *type = json_loader_type_of(n);
  if (!type)
    return json_loader_fail(L, field, "has no \"type\"");
  if (strcmp(type, "Sequence") == 0)
    return parse_sequence(L, n, field, "normalizers", json_loader_parse_normalizer);
  if (strcmp(type, "Prepend") == 0 || strcmp(type, "Replace") == 0) {
    int prepend = type[0] == 'P';
    const char *content;
    size_t len;
    if (json_loader_get_string(L, n, field, prepend ? "prepend" : "content", NULL, &content, &len))
      return -1;
    normalize_step_t *s =
        tokenizer_add_normalize(L->t, prepend ? NORMALIZE_PREPEND : NORMALIZE_REPLACE, L->err);
    if (!s || !(s->content = bytes_dup(content, len)))
      return s ? json_loader_fail(L, field, "out of memory") : -1;
    s->content_len = len;
    return prepend ? 0 : json_loader_get_pattern(L, n, field, &s->pattern, 1);
  }
  /* Unicode normalization forms: NFC is implemented (unicode_nfc.c); the
   * others are accepted on text below the code point where each stops being
   * the identity (NFD: U+00C0 decomposes; the K forms change U+00A0). */
  static const struct {
    const char *form;
    uint32_t below;
  } forms[] = {{"NFC", 0x300}, {"NFD", 0xC0}, {"NFKC", 0xA0}, {"NFKD", 0xA0}};
  for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
    if (strcmp(type, forms[i].form) == 0) {
      normalize_step_t *s = tokenizer_add_normalize(L->t, NORMALIZE_UNICODE, L->err);
      if (!s)
        return -1;
      snprintf(s->form, sizeof(s->form), "%s", forms[i].form);
      s->identity_below = forms[i].below;
      return 0;
    }
  }
  char what[128];
  snprintf(what, sizeof(what), "normalizer type \"%.64s\" is not supported", type);
  return json_loader_fail(L, field, what);
}

/* ---- pre-tokenizer ---- */

static int add_split(json_loader_t *L, const char *field, const char *regex,
                     split_behavior_t behavior, int invert) {
  char msg[HYDRA_ERR_LEN];
  pretokenize_step_t *s = tokenizer_add_pretokenize(L->t, PRETOKENIZE_SPLIT, L->err);
  if (!s)
    return -1;
  s->behavior = behavior;
  s->invert = invert;
  s->on_bytes = L->after_byte_level;
  if (tokenizer_pattern_regex(&s->pattern, regex, strlen(regex), msg))
    return json_loader_fail(L, field, msg);
  return 0;
}

static int parse_behavior(json_loader_t *L, const json_t *obj, const char *field,
                          split_behavior_t *out) {
  static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
  const char *b = "";
  if (json_loader_get_string(L, obj, field, "behavior", NULL, &b, NULL))
    return -1;
  for (int i = 0; i < 5; i++) {
    if (strcmp(b, names[i]) == 0) {
      *out = (split_behavior_t)i;
      return 0;
    }
  }
  char f[FIELD_LEN];
  json_field_key(f, FIELD_LEN, field, "behavior");
  return json_loader_fail(
      L, f, "must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

/* prepend_scheme, or the older add_prefix_space (true: always). */
static int parse_prepend_scheme(json_loader_t *L, const json_t *obj, const char *field,
                                prepend_scheme_t *out) {
  const json_t *v = json_object_get(obj, "prepend_scheme");
  if (!v || json_is_null(v)) {
    int add;
    if (json_loader_get_bool(L, obj, field, "add_prefix_space", 1, &add))
      return -1;
    *out = add ? PREPEND_ALWAYS : PREPEND_NEVER;
    return 0;
  }
  const char *s = json_string_value(v);
  if (s && strcmp(s, "first") == 0)
    *out = PREPEND_FIRST;
  else if (s && strcmp(s, "always") == 0)
    *out = PREPEND_ALWAYS;
  else if (s && strcmp(s, "never") == 0)
    *out = PREPEND_NEVER;
  else {
    char f[FIELD_LEN];
    json_field_key(f, FIELD_LEN, field, "prepend_scheme");
    return json_loader_fail(L, f, "must be \"first\", \"always\" or \"never\"");
  }
  return 0;
}

int json_loader_parse_pre_tokenizer(json_loader_t *L, const json_t *p, const char *field) {
  if (!p || json_is_null(p))
    return 0;
  const char *type = json_loader_type_of(p);
  if (!type)
    return json_loader_fail(L, field, "has no \"type\"");
  if (strcmp(type, "Sequence") == 0)
    return parse_sequence(L, p, field, "pretokenizers", json_loader_parse_pre_tokenizer);
  if (strcmp(type, "ByteLevel") == 0) {
    int add_prefix_space = 0, use_regex = 0;
    if (json_loader_get_bool(L, p, field, "add_prefix_space", 1, &add_prefix_space) ||
        json_loader_get_bool(L, p, field, "use_regex", 1, &use_regex))
      return -1;
    if (L->after_byte_level)
      return json_loader_fail(L, field, "a second ByteLevel pre-tokenizer is not supported");
    L->byte_level = 1;
    if (add_prefix_space && !tokenizer_add_pretokenize(L->t, PRETOKENIZE_PREFIX_SPACE, L->err))
      return -1;
    if (use_regex && add_split(L, field, TOKENIZER_GPT2_PATTERN, SPLIT_ISOLATED, 0))
      return -1;
    L->after_byte_level = 1;
    return 0;
  }
  /* After ByteLevel a pre-tokenizer sees each byte as the character
   * ByteLevel spells it (Falcon: Digits, then a Split on three digits);
   * the splits do so, others are refused. */
  if (L->after_byte_level && strcmp(type, "Digits") != 0 && strcmp(type, "Split") != 0 &&
      strcmp(type, "Punctuation") != 0)
    return json_loader_fail(L, field,
                            "a pre-tokenizer after ByteLevel other than Split, Digits or "
                            "Punctuation is not supported");
  if (strcmp(type, "Punctuation") == 0) {
    split_behavior_t behavior = SPLIT_ISOLATED;
    if (json_object_get(p, "behavior") && parse_behavior(L, p, field, &behavior))
      return -1;
    return add_split(L, field, TOKENIZER_PUNCTUATION_CLASS, behavior, 0);
  }
  if (strcmp(type, "Digits") == 0) {
    int individual = 0;
    if (json_loader_get_bool(L, p, field, "individual_digits", 0, &individual))
      return -1;
    /* Rust's char::is_numeric is the general categories Nd, Nl and No. */
    return add_split(L, field, "\\p{N}", individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0);
  }
  if (strcmp(type, "Split") == 0) {
    split_behavior_t behavior = SPLIT_ISOLATED;
    int invert = 0;
    if (parse_behavior(L, p, field, &behavior) ||
        json_loader_get_bool(L, p, field, "invert", 0, &invert))
      return -1;
    pretokenize_step_t *s = tokenizer_add_pretokenize(L->t, PRETOKENIZE_SPLIT, L->err);
    if (!s)
      return -1;
    s->behavior = behavior;
    s->invert = invert;
    s->on_bytes = L->after_byte_level;
    return json_loader_get_pattern(L, p, field, &s->pattern, 1);
  }
  if (strcmp(type, "Whitespace") == 0)
    return add_split(L, field, "\\w+|[^\\w\\s]+", SPLIT_REMOVED, 1);
  if (strcmp(type, "WhitespaceSplit") == 0)
    return add_split(L, field, "\\s", SPLIT_REMOVED, 0);
  if (strcmp(type, "Metaspace") == 0) {
    pretokenize_step_t *s = tokenizer_add_pretokenize(L->t, PRETOKENIZE_METASPACE, L->err);
    if (!s)
      return -1;
    if (json_loader_get_char(L, p, field, "replacement", "\xE2\x96\x81", s->replacement,
                             &s->replacement_len) ||
        parse_prepend_scheme(L, p, field, &s->prepend) ||
        json_loader_get_bool(L, p, field, "split", 1, &s->split))
      return -1;
    return 0;
  }
  char what[128];
  snprintf(what, sizeof(what), "pre-tokenizer type \"%.64s\" is not supported", type);
  return json_loader_fail(L, field, what);
}

/* ---- post-processor ---- */

/* The ids a TemplateProcessing special token name stands for. */
static int template_ids(json_loader_t *L, const json_t *specials, const char *name,
                        const char *field, int suffix) {
  const json_t *s = json_object_get(specials, name);
  const json_t *ids = json_object_get(s, "ids");
  if (!json_is_array(ids))
    return json_loader_fail(L, field, "names a special token missing from special_tokens");
  for (size_t i = 0; i < json_array_size(ids); i++) {
    const json_t *id = json_array_get(ids, i);
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX)
      return json_loader_fail(L, field, "special_tokens ids must be token ids");
    int32_t v = (int32_t)json_integer_value(id);
    if ((suffix ? tokenizer_add_suffix : tokenizer_add_prefix)(L->t, v, L->err))
      return -1;
  }
  return 0;
}

int json_loader_parse_post_processor(json_loader_t *L, const json_t *p, const char *field) {
  if (!p || json_is_null(p))
    return 0;
  const char *type = json_loader_type_of(p);
  if (!type)
    return json_loader_fail(L, field, "has no \"type\"");
  char f[FIELD_LEN];
  if (strcmp(type, "Sequence") == 0)
    return parse_sequence(L, p, field, "processors", json_loader_parse_post_processor);
  if (strcmp(type, "ByteLevel") == 0)
    return 0; /* only trims offsets */
  if (strcmp(type, "TemplateProcessing") == 0) {
    const json_t *single = json_object_get(p, "single");
    const json_t *specials = json_object_get(p, "special_tokens");
    json_field_key(f, FIELD_LEN, field, "single");
    if (!json_is_array(single))
      return json_loader_fail(L, f, "must be an array");
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
      const json_t *item = json_array_get(single, i);
      char g[FIELD_LEN];
      json_field_index(g, FIELD_LEN, f, i);
      const json_t *st = json_object_get(item, "SpecialToken");
      const json_t *seq = json_object_get(item, "Sequence");
      if (json_is_object(seq)) {
        if (seen_a)
          return json_loader_fail(L, g, "a second sequence in a single-sequence template");
        seen_a = 1;
      } else if (json_is_object(st) && json_is_string(json_object_get(st, "id"))) {
        if (template_ids(L, specials, json_string_value(json_object_get(st, "id")), g, seen_a))
          return -1;
      } else {
        return json_loader_fail(L, g, "must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      }
    }
    return 0;
  }
  if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
    const json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
    const json_t *cls_id = json_array_get(cls, 1), *sep_id = json_array_get(sep, 1);
    if (!json_is_integer(cls_id) || !json_is_integer(sep_id))
      return json_loader_fail(L, field, "cls and sep must be [token, id]");
    return tokenizer_add_prefix(L->t, (int32_t)json_integer_value(cls_id), L->err) ||
                   tokenizer_add_suffix(L->t, (int32_t)json_integer_value(sep_id), L->err)
               ? -1
               : 0;
  }
  char what[128];
  snprintf(what, sizeof(what), "post-processor type \"%.64s\" is not supported", type);
  return json_loader_fail(L, field, what);
}

/* ---- decoder ---- */

int json_loader_parse_decoder(json_loader_t *L, const json_t *d, const char *field) {
  if (!d || json_is_null(d))
    return 0;
  L->t->has_decoder = 1;
  const char *type = json_loader_type_of(d);
  if (!type)
    return json_loader_fail(L, field, "has no \"type\"");
  if (strcmp(type, "Sequence") == 0)
    return parse_sequence(L, d, field, "decoders", json_loader_parse_decoder);
  static const struct {
    const char *name;
    decode_kind_t kind;
  } simple[] = {{"ByteLevel", DECODE_BYTE_LEVEL},
                {"ByteFallback", DECODE_BYTE_FALLBACK},
                {"Fuse", DECODE_FUSE}};
  for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
    if (strcmp(type, simple[i].name) == 0)
      return tokenizer_add_decode(L->t, simple[i].kind, L->err) ? 0 : -1;
  if (strcmp(type, "Replace") == 0) {
    tokenizer_pattern_t pat;
    const char *content;
    size_t len;
    if (json_loader_get_pattern(L, d, field, &pat, 0))
      return -1;
    decode_step_t *s = NULL;
    if (json_loader_get_string(L, d, field, "content", NULL, &content, &len) ||
        !(s = tokenizer_add_decode(L->t, DECODE_REPLACE, L->err))) {
      tokenizer_pattern_free(&pat);
      return -1;
    }
    s->pattern = pat.literal;
    s->pattern_len = pat.literal_len;
    pat.literal = NULL;
    tokenizer_pattern_free(&pat);
    s->content = bytes_dup(content, len);
    s->content_len = len;
    return s->content ? 0 : json_loader_fail(L, field, "out of memory");
  }
  if (strcmp(type, "Strip") == 0) {
    char c[8];
    size_t n;
    long start, stop;
    if (json_loader_get_char(L, d, field, "content", NULL, c, &n) ||
        json_loader_get_int(L, d, field, "start", 0, 0, INT_MAX, &start) ||
        json_loader_get_int(L, d, field, "stop", 0, 0, INT_MAX, &stop))
      return -1;
    decode_step_t *s = tokenizer_add_decode(L->t, DECODE_STRIP, L->err);
    if (!s || !(s->content = bytes_dup(c, n)))
      return s ? json_loader_fail(L, field, "out of memory") : -1;
    s->content_len = n;
    s->start = (int)start;
    s->stop = (int)stop;
    return 0;
  }
  if (strcmp(type, "Metaspace") == 0) {
    char c[8];
    size_t n;
    prepend_scheme_t prepend;
    if (json_loader_get_char(L, d, field, "replacement", "\xE2\x96\x81", c, &n) ||
        parse_prepend_scheme(L, d, field, &prepend))
      return -1;
    decode_step_t *s = tokenizer_add_decode(L->t, DECODE_METASPACE, L->err);
    if (!s || !(s->pattern = bytes_dup(c, n)))
      return s ? json_loader_fail(L, field, "out of memory") : -1;
    s->pattern_len = n;
    s->prepend = prepend;
    return 0;
  }
  char what[128];
  snprintf(what, sizeof(what), "decoder type \"%.64s\" is not supported", type);
  return json_loader_fail(L, field, what);
}
