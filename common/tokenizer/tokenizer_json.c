/* tokenizer_json.c - a tokenizer from Hugging Face's tokenizer.json (the
 * serialization of tokenizers' Tokenizer: added_tokens, normalizer,
 * pre_tokenizer, model, post_processor, decoder), plus the named special
 * tokens of tokenizer_config.json next to it, which transformers adds on top.
 * Every error names the file and the JSON path of the field. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "json_field.h"
#include "tokenizer_internal.h"
#include "utf8.h"

#define FIELD_LEN 256

typedef struct {
  tokenizer_t *t;
  const char *path;
  int byte_level; /* a ByteLevel pre-tokenizer was seen */
  char *err;
} json_loader_t;

static int fail(json_loader_t *L, const char *field, const char *what) {
  return err_set(L->err, "%s: %s: %s", L->path, field, what);
}

/* Optional boolean; absent or null gives dflt. */
static int get_bool(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
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
    return fail(L, f, "must be true or false");
  }
  *out = json_is_true(v);
  return 0;
}

/* Required string (optional when out_len is given and dflt non-NULL). */
static int get_string(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
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
    return fail(L, f, v ? "must be a string" : "is missing (a string)");
  *out = json_string_value(v);
  if (out_len)
    *out_len = json_string_length(v);
  return 0;
}

static int get_int(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
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
    return fail(L, f, what);
  }
  *out = (long)json_integer_value(v);
  return 0;
}

static const char *type_of(const json_t *obj) {
  const json_t *v = json_object_get(obj, "type");
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* {"String": s} or {"Regex": r}. */
static int get_pattern(json_loader_t *L, const json_t *obj, const char *parent,
                       tokenizer_pattern_t *p, int allow_regex) {
  char f[FIELD_LEN], msg[HYDRA_ERR_LEN];
  json_field_key(f, FIELD_LEN, parent, "pattern");
  const json_t *v = json_object_get(obj, "pattern");
  const json_t *s = json_object_get(v, "String"), *r = json_object_get(v, "Regex");
  if (json_is_string(s))
    return tokenizer_pattern_literal(p, json_string_value(s), json_string_length(s), L->err);
  if (json_is_string(r) && allow_regex) {
    if (tokenizer_pattern_regex(p, json_string_value(r), json_string_length(r), msg))
      return fail(L, f, msg);
    return 0;
  }
  return fail(L, f,
              allow_regex
                  ? "must be {\"String\": ...} or {\"Regex\": ...}"
                  : "must be {\"String\": ...} (a regular expression is not supported here)");
}

/* A single character given as a string (Metaspace's replacement, Strip's content). */
static int get_char(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                    const char *dflt, char out[8], size_t *out_len) {
  const char *s = NULL;
  size_t n = 0;
  if (get_string(L, obj, parent, key, dflt, &s, &n))
    return -1;
  if (n == 0 || n > 4 || utf8_decode((const unsigned char *)s, n, NULL) != n) {
    char f[FIELD_LEN];
    json_field_key(f, FIELD_LEN, parent, key);
    return fail(L, f, "must be a single character");
  }
  memcpy(out, s, n);
  out[n] = '\0';
  *out_len = n;
  return 0;
}

static char *copy_string(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* ---- normalizer ---- */

static int parse_normalizer(json_loader_t *L, const json_t *n, const char *field) {
  if (!n || json_is_null(n))
    return 0;
  const char *type = type_of(n);
  if (!type)
    return fail(L, field, "has no \"type\"");
  char f[FIELD_LEN];
  if (strcmp(type, "Sequence") == 0) {
    const json_t *list = json_object_get(n, "normalizers");
    json_field_key(f, FIELD_LEN, field, "normalizers");
    if (!json_is_array(list))
      return fail(L, f, "must be an array");
    for (size_t i = 0; i < json_array_size(list); i++) {
      char g[FIELD_LEN];
      json_field_index(g, FIELD_LEN, f, i);
      if (parse_normalizer(L, json_array_get(list, i), g))
        return -1;
    }
    return 0;
  }
  if (strcmp(type, "Prepend") == 0 || strcmp(type, "Replace") == 0) {
    int prepend = type[0] == 'P';
    const char *content;
    size_t len;
    if (get_string(L, n, field, prepend ? "prepend" : "content", NULL, &content, &len))
      return -1;
    normalize_step_t *s =
        tokenizer_add_normalize(L->t, prepend ? NORMALIZE_PREPEND : NORMALIZE_REPLACE, L->err);
    if (!s || !(s->content = copy_string(content, len)))
      return s ? fail(L, field, "out of memory") : -1;
    s->content_len = len;
    return prepend ? 0 : get_pattern(L, n, field, &s->pattern, 1);
  }
  /* Unicode normalization forms: the code points below which each is the
   * identity (NFC: nothing below U+0300 composes or decomposes; NFD: U+00C0
   * decomposes; the K forms change U+00A0). */
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
  return fail(L, field, what);
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
  if (tokenizer_pattern_regex(&s->pattern, regex, strlen(regex), msg))
    return fail(L, field, msg);
  return 0;
}

static int parse_behavior(json_loader_t *L, const json_t *obj, const char *field,
                          split_behavior_t *out) {
  static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
  const char *b = "";
  if (get_string(L, obj, field, "behavior", NULL, &b, NULL))
    return -1;
  for (int i = 0; i < 5; i++) {
    if (strcmp(b, names[i]) == 0) {
      *out = (split_behavior_t)i;
      return 0;
    }
  }
  char f[FIELD_LEN];
  json_field_key(f, FIELD_LEN, field, "behavior");
  return fail(L, f, "must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

/* prepend_scheme, or the older add_prefix_space (true: always). */
static int parse_prepend_scheme(json_loader_t *L, const json_t *obj, const char *field,
                                prepend_scheme_t *out) {
  const json_t *v = json_object_get(obj, "prepend_scheme");
  if (!v || json_is_null(v)) {
    int add;
    if (get_bool(L, obj, field, "add_prefix_space", 1, &add))
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
    return fail(L, f, "must be \"first\", \"always\" or \"never\"");
  }
  return 0;
}

static int parse_pre_tokenizer(json_loader_t *L, const json_t *p, const char *field) {
  if (!p || json_is_null(p))
    return 0;
  const char *type = type_of(p);
  if (!type)
    return fail(L, field, "has no \"type\"");
  char f[FIELD_LEN];
  if (strcmp(type, "Sequence") == 0) {
    const json_t *list = json_object_get(p, "pretokenizers");
    json_field_key(f, FIELD_LEN, field, "pretokenizers");
    if (!json_is_array(list))
      return fail(L, f, "must be an array");
    for (size_t i = 0; i < json_array_size(list); i++) {
      char g[FIELD_LEN];
      json_field_index(g, FIELD_LEN, f, i);
      if (parse_pre_tokenizer(L, json_array_get(list, i), g))
        return -1;
    }
    return 0;
  }
  if (strcmp(type, "ByteLevel") == 0) {
    int add_prefix_space = 0, use_regex = 0;
    if (get_bool(L, p, field, "add_prefix_space", 1, &add_prefix_space) ||
        get_bool(L, p, field, "use_regex", 1, &use_regex))
      return -1;
    L->byte_level = 1;
    if (add_prefix_space && !tokenizer_add_pretokenize(L->t, PRETOKENIZE_PREFIX_SPACE, L->err))
      return -1;
    return use_regex ? add_split(L, field, TOKENIZER_GPT2_PATTERN, SPLIT_ISOLATED, 0) : 0;
  }
  if (L->byte_level)
    return fail(L, field, "a pre-tokenizer after ByteLevel is not supported");
  if (strcmp(type, "Digits") == 0) {
    int individual = 0;
    if (get_bool(L, p, field, "individual_digits", 0, &individual))
      return -1;
    /* Rust's char::is_numeric is the general categories Nd, Nl and No. */
    return add_split(L, field, "\\p{N}", individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0);
  }
  if (strcmp(type, "Split") == 0) {
    split_behavior_t behavior = SPLIT_ISOLATED;
    int invert = 0;
    if (parse_behavior(L, p, field, &behavior) || get_bool(L, p, field, "invert", 0, &invert))
      return -1;
    pretokenize_step_t *s = tokenizer_add_pretokenize(L->t, PRETOKENIZE_SPLIT, L->err);
    if (!s)
      return -1;
    s->behavior = behavior;
    s->invert = invert;
    return get_pattern(L, p, field, &s->pattern, 1);
  }
  if (strcmp(type, "Whitespace") == 0)
    return add_split(L, field, "\\w+|[^\\w\\s]+", SPLIT_REMOVED, 1);
  if (strcmp(type, "WhitespaceSplit") == 0)
    return add_split(L, field, "\\s", SPLIT_REMOVED, 0);
  if (strcmp(type, "Metaspace") == 0) {
    pretokenize_step_t *s = tokenizer_add_pretokenize(L->t, PRETOKENIZE_METASPACE, L->err);
    if (!s)
      return -1;
    if (get_char(L, p, field, "replacement", "\xE2\x96\x81", s->replacement, &s->replacement_len) ||
        parse_prepend_scheme(L, p, field, &s->prepend) ||
        get_bool(L, p, field, "split", 1, &s->split))
      return -1;
    return 0;
  }
  char what[128];
  snprintf(what, sizeof(what), "pre-tokenizer type \"%.64s\" is not supported", type);
  return fail(L, field, what);
}

/* ---- model ---- */

static int parse_merge(json_loader_t *L, bpe_t *b, const json_t *m, size_t i) {
  char f[FIELD_LEN], msg[HYDRA_ERR_LEN];
  json_field_index(f, sizeof(f), "model.merges", i);
  const char *left, *right;
  size_t left_len, right_len;
  if (json_is_string(m)) {
    /* "left right": exactly one space (tokenizers' BadMerges otherwise). */
    const char *s = json_string_value(m);
    size_t n = json_string_length(m);
    const char *sp = memchr(s, ' ', n);
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp - s) - 1))
      return fail(L, f, "must be two pieces separated by one space");
    left = s;
    left_len = (size_t)(sp - s);
    right = sp + 1;
    right_len = n - left_len - 1;
  } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
             json_is_string(json_array_get(m, 1))) {
    left = json_string_value(json_array_get(m, 0));
    left_len = json_string_length(json_array_get(m, 0));
    right = json_string_value(json_array_get(m, 1));
    right_len = json_string_length(json_array_get(m, 1));
  } else {
    return fail(L, f, "must be \"left right\" or [\"left\", \"right\"]");
  }
  if (bpe_add_merge(b, left, left_len, right, right_len, msg))
    return fail(L, f, msg);
  return 0;
}

static int parse_model(json_loader_t *L, const json_t *m) {
  if (!json_is_object(m))
    return fail(L, "model", "is missing (an object)");
  const char *type = type_of(m);
  if (type && strcmp(type, "BPE") != 0) {
    char what[128];
    snprintf(what, sizeof(what), "model type \"%.64s\" is not supported (only BPE)", type);
    return fail(L, "model.type", what);
  }
  const json_t *v = json_object_get(m, "dropout");
  if (v && !json_is_null(v))
    return fail(L, "model.dropout", "BPE dropout is not supported (must be null)");
  static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    v = json_object_get(m, affixes[i]);
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0)) {
      char f[FIELD_LEN];
      json_field_key(f, sizeof(f), "model", affixes[i]);
      return fail(L, f, "is not supported (must be null or empty)");
    }
  }
  bpe_options_t opt = {.byte_level = L->byte_level, .unk_id = -1};
  if (get_bool(L, m, "model", "fuse_unk", 0, &opt.fuse_unk) ||
      get_bool(L, m, "model", "byte_fallback", 0, &opt.byte_fallback) ||
      get_bool(L, m, "model", "ignore_merges", 0, &opt.ignore_merges))
    return -1;
  const json_t *vocab = json_object_get(m, "vocab");
  if (!json_is_object(vocab))
    return fail(L, "model.vocab", "is missing (an object of piece: id)");
  const json_t *unk = json_object_get(m, "unk_token");
  if (unk && !json_is_null(unk)) {
    const json_t *id = json_is_string(unk) ? json_object_get(vocab, json_string_value(unk)) : NULL;
    if (!json_is_integer(id))
      return fail(L, "model.unk_token", "must be null or a piece of the vocabulary");
    opt.unk_id = (int32_t)json_integer_value(id);
  }
  bpe_t *b = bpe_new(&opt, L->err);
  if (!b)
    return -1;
  L->t->bpe = b;
  const char *key;
  const json_t *id;
  char msg[HYDRA_ERR_LEN];
  json_object_foreach((json_t *)vocab, key, id) {
    json_int_t n = json_is_integer(id) ? json_integer_value(id) : -1;
    if (n < 0 || n >= INT32_MAX) {
      char f[FIELD_LEN];
      snprintf(f, sizeof(f), "model.vocab[\"%.64s\"]", key);
      return fail(L, f, "must be an id in 0 .. 2^31 - 2");
    }
    if (bpe_add_piece(b, key, strlen(key), (int32_t)n, msg))
      return fail(L, "model.vocab", msg);
  }
  const json_t *merges = json_object_get(m, "merges");
  if (merges && !json_is_null(merges)) {
    if (!json_is_array(merges))
      return fail(L, "model.merges", "must be an array");
    for (size_t i = 0; i < json_array_size(merges); i++)
      if (parse_merge(L, b, json_array_get(merges, i), i))
        return -1;
  }
  if (bpe_finish(b, msg))
    return fail(L, "model", msg);
  return 0;
}

/* ---- added tokens ---- */

static int parse_added_tokens(json_loader_t *L, const json_t *list) {
  if (!list || json_is_null(list))
    return 0;
  if (!json_is_array(list))
    return fail(L, "added_tokens", "must be an array");
  for (size_t i = 0; i < json_array_size(list); i++) {
    char f[FIELD_LEN];
    json_field_index(f, sizeof(f), "added_tokens", i);
    const json_t *a = json_array_get(list, i);
    const char *content;
    size_t len;
    long id;
    int special, lstrip, rstrip, single_word, normalized;
    if (!json_is_object(a))
      return fail(L, f, "must be an object");
    if (get_int(L, a, f, "id", -1, 0, INT32_MAX - 1, &id) ||
        get_string(L, a, f, "content", NULL, &content, &len) ||
        get_bool(L, a, f, "special", 0, &special) || get_bool(L, a, f, "lstrip", 0, &lstrip) ||
        get_bool(L, a, f, "rstrip", 0, &rstrip) ||
        get_bool(L, a, f, "single_word", 0, &single_word) ||
        get_bool(L, a, f, "normalized", !special, &normalized))
      return -1;
    if (len == 0)
      return fail(L, f, "content is empty");
    if (tokenizer_add_added(L->t, content, len, (int32_t)id, special, L->err))
      return -1;
    added_token_t *t = tokenizer_last_added(L->t);
    t->lstrip = lstrip;
    t->rstrip = rstrip;
    t->single_word = single_word;
    t->normalized = normalized;
  }
  return 0;
}

/* tokenizers' AddedVocabulary gives an added token whose content is a piece
 * of the model that piece's id, whatever id the file says. */
static int resolve_added_ids(json_loader_t *L) {
  for (size_t i = 0; i < L->t->n_added; i++) {
    added_token_t *a = &L->t->added[i];
    int32_t id = bpe_piece_id(L->t->bpe, a->content, a->len);
    if (id >= 0)
      a->id = id;
  }
  return 0;
}

/* ---- post-processor ---- */

/* The ids a TemplateProcessing special token name stands for. */
static int template_ids(json_loader_t *L, const json_t *specials, const char *name,
                        const char *field, int suffix) {
  const json_t *s = json_object_get(specials, name);
  const json_t *ids = json_object_get(s, "ids");
  if (!json_is_array(ids))
    return fail(L, field, "names a special token missing from special_tokens");
  for (size_t i = 0; i < json_array_size(ids); i++) {
    const json_t *id = json_array_get(ids, i);
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX)
      return fail(L, field, "special_tokens ids must be token ids");
    int32_t v = (int32_t)json_integer_value(id);
    if ((suffix ? tokenizer_add_suffix : tokenizer_add_prefix)(L->t, v, L->err))
      return -1;
  }
  return 0;
}

static int parse_post_processor(json_loader_t *L, const json_t *p, const char *field) {
  if (!p || json_is_null(p))
    return 0;
  const char *type = type_of(p);
  if (!type)
    return fail(L, field, "has no \"type\"");
  char f[FIELD_LEN];
  if (strcmp(type, "Sequence") == 0) {
    const json_t *list = json_object_get(p, "processors");
    json_field_key(f, FIELD_LEN, field, "processors");
    if (!json_is_array(list))
      return fail(L, f, "must be an array");
    for (size_t i = 0; i < json_array_size(list); i++) {
      char g[FIELD_LEN];
      json_field_index(g, FIELD_LEN, f, i);
      if (parse_post_processor(L, json_array_get(list, i), g))
        return -1;
    }
    return 0;
  }
  if (strcmp(type, "ByteLevel") == 0)
    return 0; /* only trims offsets */
  if (strcmp(type, "TemplateProcessing") == 0) {
    const json_t *single = json_object_get(p, "single");
    const json_t *specials = json_object_get(p, "special_tokens");
    json_field_key(f, FIELD_LEN, field, "single");
    if (!json_is_array(single))
      return fail(L, f, "must be an array");
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
      const json_t *item = json_array_get(single, i);
      char g[FIELD_LEN];
      json_field_index(g, FIELD_LEN, f, i);
      const json_t *st = json_object_get(item, "SpecialToken");
      const json_t *seq = json_object_get(item, "Sequence");
      if (json_is_object(seq)) {
        if (seen_a)
          return fail(L, g, "a second sequence in a single-sequence template");
        seen_a = 1;
      } else if (json_is_object(st) && json_is_string(json_object_get(st, "id"))) {
        if (template_ids(L, specials, json_string_value(json_object_get(st, "id")), g, seen_a))
          return -1;
      } else {
        return fail(L, g, "must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      }
    }
    return 0;
  }
  if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
    const json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
    const json_t *cls_id = json_array_get(cls, 1), *sep_id = json_array_get(sep, 1);
    if (!json_is_integer(cls_id) || !json_is_integer(sep_id))
      return fail(L, field, "cls and sep must be [token, id]");
    return tokenizer_add_prefix(L->t, (int32_t)json_integer_value(cls_id), L->err) ||
                   tokenizer_add_suffix(L->t, (int32_t)json_integer_value(sep_id), L->err)
               ? -1
               : 0;
  }
  char what[128];
  snprintf(what, sizeof(what), "post-processor type \"%.64s\" is not supported", type);
  return fail(L, field, what);
}

/* ---- decoder ---- */

static int parse_decoder(json_loader_t *L, const json_t *d, const char *field) {
  if (!d || json_is_null(d))
    return 0;
  L->t->has_decoder = 1;
  const char *type = type_of(d);
  if (!type)
    return fail(L, field, "has no \"type\"");
  char f[FIELD_LEN];
  if (strcmp(type, "Sequence") == 0) {
    const json_t *list = json_object_get(d, "decoders");
    json_field_key(f, FIELD_LEN, field, "decoders");
    if (!json_is_array(list))
      return fail(L, f, "must be an array");
    for (size_t i = 0; i < json_array_size(list); i++) {
      char g[FIELD_LEN];
      json_field_index(g, FIELD_LEN, f, i);
      if (parse_decoder(L, json_array_get(list, i), g))
        return -1;
    }
    return 0;
  }
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
    if (get_pattern(L, d, field, &pat, 0))
      return -1;
    decode_step_t *s = NULL;
    if (get_string(L, d, field, "content", NULL, &content, &len) ||
        !(s = tokenizer_add_decode(L->t, DECODE_REPLACE, L->err))) {
      tokenizer_pattern_free(&pat);
      return -1;
    }
    s->pattern = pat.literal;
    s->pattern_len = pat.literal_len;
    pat.literal = NULL;
    tokenizer_pattern_free(&pat);
    s->content = copy_string(content, len);
    s->content_len = len;
    return s->content ? 0 : fail(L, field, "out of memory");
  }
  if (strcmp(type, "Strip") == 0) {
    char c[8];
    size_t n;
    long start, stop;
    if (get_char(L, d, field, "content", NULL, c, &n) ||
        get_int(L, d, field, "start", 0, 0, INT_MAX, &start) ||
        get_int(L, d, field, "stop", 0, 0, INT_MAX, &stop))
      return -1;
    decode_step_t *s = tokenizer_add_decode(L->t, DECODE_STRIP, L->err);
    if (!s || !(s->content = copy_string(c, n)))
      return s ? fail(L, field, "out of memory") : -1;
    s->content_len = n;
    s->start = (int)start;
    s->stop = (int)stop;
    return 0;
  }
  if (strcmp(type, "Metaspace") == 0) {
    char c[8];
    size_t n;
    prepend_scheme_t prepend;
    if (get_char(L, d, field, "replacement", "\xE2\x96\x81", c, &n) ||
        parse_prepend_scheme(L, d, field, &prepend))
      return -1;
    decode_step_t *s = tokenizer_add_decode(L->t, DECODE_METASPACE, L->err);
    if (!s || !(s->pattern = copy_string(c, n)))
      return s ? fail(L, field, "out of memory") : -1;
    s->pattern_len = n;
    s->prepend = prepend;
    return 0;
  }
  char what[128];
  snprintf(what, sizeof(what), "decoder type \"%.64s\" is not supported", type);
  return fail(L, field, what);
}

/* ---- tokenizer_config.json and config.json ---- */

/* bos_token etc.: a string or {"content": string}. */
static const char *config_token(const json_t *cfg, const char *key) {
  const json_t *v = json_object_get(cfg, key);
  if (json_is_object(v))
    v = json_object_get(v, "content");
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *load_sibling(const char *json_path, const char *name, char *path_out,
                            size_t path_len) {
  const char *slash = strrchr(json_path, '/');
  int dir_len = slash ? (int)(slash - json_path) : 1;
  int n = snprintf(path_out, path_len, "%.*s/%s", dir_len, slash ? json_path : ".", name);
  struct stat sb;
  if (n < 0 || (size_t)n >= path_len || stat(path_out, &sb) != 0)
    return NULL;
  return json_load_file(path_out, 0, NULL);
}

/* What transformers layers over tokenizer.json: named special tokens become
 * special added tokens. (Its add_bos_token / add_eos_token are ignored when
 * there is a tokenizer.json, whose post-processor decides; transformers 5
 * does the same.) BOS/EOS ids come from there or else config.json. */
static int apply_configs(json_loader_t *L, const char *json_path) {
  char path[2048];
  tokenizer_t *t = L->t;
  json_t *cfg = load_sibling(json_path, "tokenizer_config.json", path, sizeof(path));
  if (cfg) {
    static const char *const named[] = {"bos_token", "eos_token", "unk_token", "pad_token",
                                        "sep_token", "cls_token", "mask_token"};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
      const char *s = config_token(cfg, named[i]);
      if (!s)
        continue;
      int32_t id = tokenizer_lookup(t, s, strlen(s));
      int added = 0;
      for (size_t k = 0; k < t->n_added && !added; k++)
        added = t->added[k].len == strlen(s) && memcmp(t->added[k].content, s, strlen(s)) == 0;
      if (id >= 0 && !added && tokenizer_add_added(t, s, strlen(s), id, 1, L->err))
        goto fail;
      if (i == 0)
        t->bos_id = id;
      if (i == 1)
        t->eos_id = id;
    }
    json_decref(cfg);
  }
  if (t->bos_id < 0 || t->eos_id < 0) {
    json_t *model_cfg = load_sibling(json_path, "config.json", path, sizeof(path));
    const json_t *bos = json_object_get(model_cfg, "bos_token_id");
    const json_t *eos = json_object_get(model_cfg, "eos_token_id");
    /* Only ids the tokenizer has (a random test model may name others). */
    if (t->bos_id < 0 && json_is_integer(bos) && json_integer_value(bos) >= 0 &&
        json_integer_value(bos) < bpe_n_ids(t->bpe))
      t->bos_id = (int32_t)json_integer_value(bos);
    if (t->eos_id < 0 && json_is_integer(eos) && json_integer_value(eos) >= 0 &&
        json_integer_value(eos) < bpe_n_ids(t->bpe))
      t->eos_id = (int32_t)json_integer_value(eos);
    json_decref(model_cfg);
  }
  return 0;
fail:
  json_decref(cfg);
  return -1;
}

tokenizer_t *tokenizer_load_json(const char *json_path, char *err) {
  json_error_t je;
  json_t *root = json_load_file(json_path, JSON_ALLOW_NUL, &je);
  if (!root) {
    err_set(err, "%s: not a valid tokenizer.json: line %d, column %d: %s", json_path, je.line,
            je.column, je.text);
    return NULL;
  }
  tokenizer_t *t = tokenizer_new(json_path, err);
  json_loader_t L = {.t = t, .path = json_path, .err = err};
  if (!t)
    goto fail;
  if (!json_is_object(root)) {
    fail(&L, "(root)", "must be an object");
    goto fail;
  }
  if (parse_added_tokens(&L, json_object_get(root, "added_tokens")) ||
      parse_normalizer(&L, json_object_get(root, "normalizer"), "normalizer") ||
      parse_pre_tokenizer(&L, json_object_get(root, "pre_tokenizer"), "pre_tokenizer") ||
      parse_model(&L, json_object_get(root, "model")) || resolve_added_ids(&L) ||
      parse_post_processor(&L, json_object_get(root, "post_processor"), "post_processor") ||
      parse_decoder(&L, json_object_get(root, "decoder"), "decoder") ||
      apply_configs(&L, json_path))
    goto fail;
  snprintf(t->kind, sizeof(t->kind), "%s", L.byte_level ? "byte-level BPE" : "BPE");
  if (tokenizer_finish(t, err))
    goto fail;
  json_decref(root);
  return t;
fail:
  json_decref(root);
  tokenizer_free(t);
  return NULL;
}
