/* tokenizer_json.c - a tokenizer from Hugging Face's tokenizer.json (the
 * serialization of tokenizers' Tokenizer: added_tokens, normalizer,
 * pre_tokenizer, model, post_processor, decoder), plus the named special
 * tokens of tokenizer_config.json next to it, which transformers adds on top.
 * This file reads the model and the added tokens and puts the sections
 * together; the pipeline sections are tokenizer_json_pipeline.c's. Every error
 * names the file and the JSON path of the field. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "json_field.h"
#include "tokenizer_json_internal.h"

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
      return json_loader_fail(L, f, "must be two pieces separated by one space");
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
    return json_loader_fail(L, f, "must be \"left right\" or [\"left\", \"right\"]");
  }
  if (bpe_add_merge(b, left, left_len, right, right_len, msg))
    return json_loader_fail(L, f, msg);
  return 0;
}

static int parse_model(json_loader_t *L, const json_t *m) {
  if (!json_is_object(m))
    return json_loader_fail(L, "model", "is missing (an object)");
  const char *type = json_loader_type_of(m);
  if (type && strcmp(type, "BPE") != 0) {
    char what[128];
    snprintf(what, sizeof(what), "model type \"%.64s\" is not supported (only BPE)", type);
    return json_loader_fail(L, "model.type", what);
  }
  const json_t *v = json_object_get(m, "dropout");
  if (v && !json_is_null(v))
    return json_loader_fail(L, "model.dropout", "BPE dropout is not supported (must be null)");
  static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    v = json_object_get(m, affixes[i]);
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0)) {
      char f[FIELD_LEN];
      json_field_key(f, sizeof(f), "model", affixes[i]);
      return json_loader_fail(L, f, "is not supported (must be null or empty)");
    }
  }
  bpe_options_t opt = {.byte_level = L->byte_level, .unk_id = -1};
  if (json_loader_get_bool(L, m, "model", "fuse_unk", 0, &opt.fuse_unk) ||
      json_loader_get_bool(L, m, "model", "byte_fallback", 0, &opt.byte_fallback) ||
      json_loader_get_bool(L, m, "model", "ignore_merges", 0, &opt.ignore_merges))
    return -1;
  const json_t *vocab = json_object_get(m, "vocab");
  if (!json_is_object(vocab))
    return json_loader_fail(L, "model.vocab", "is missing (an object of piece: id)");
  const json_t *unk = json_object_get(m, "unk_token");
  if (unk && !json_is_null(unk)) {
    const json_t *id = json_is_string(unk) ? json_object_get(vocab, json_string_value(unk)) : NULL;
    if (!json_is_integer(id))
      return json_loader_fail(L, "model.unk_token", "must be null or a piece of the vocabulary");
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
      return json_loader_fail(L, f, "must be an id in 0 .. 2^31 - 2");
    }
    if (bpe_add_piece(b, key, strlen(key), (int32_t)n, msg))
      return json_loader_fail(L, "model.vocab", msg);
  }
  const json_t *merges = json_object_get(m, "merges");
  if (merges && !json_is_null(merges)) {
    if (!json_is_array(merges))
      return json_loader_fail(L, "model.merges", "must be an array");
    for (size_t i = 0; i < json_array_size(merges); i++)
      if (parse_merge(L, b, json_array_get(merges, i), i))
        return -1;
  }
  if (bpe_finish(b, msg))
    return json_loader_fail(L, "model", msg);
  return 0;
}

/* ---- added tokens ---- */

static int parse_added_tokens(json_loader_t *L, const json_t *list) {
  if (!list || json_is_null(list))
    return 0;
  if (!json_is_array(list))
    return json_loader_fail(L, "added_tokens", "must be an array");
  for (size_t i = 0; i < json_array_size(list); i++) {
    char f[FIELD_LEN];
    json_field_index(f, sizeof(f), "added_tokens", i);
    const json_t *a = json_array_get(list, i);
    const char *content;
    size_t len;
    long id;
    int special, lstrip, rstrip, single_word, normalized;
    if (!json_is_object(a))
      return json_loader_fail(L, f, "must be an object");
    if (json_loader_get_int(L, a, f, "id", -1, 0, INT32_MAX - 1, &id) ||
        json_loader_get_string(L, a, f, "content", NULL, &content, &len) ||
        json_loader_get_bool(L, a, f, "special", 0, &special) ||
        json_loader_get_bool(L, a, f, "lstrip", 0, &lstrip) ||
        json_loader_get_bool(L, a, f, "rstrip", 0, &rstrip) ||
        json_loader_get_bool(L, a, f, "single_word", 0, &single_word) ||
        json_loader_get_bool(L, a, f, "normalized", !special, &normalized))
      return -1;
    if (len == 0)
      return json_loader_fail(L, f, "content is empty");
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
    json_loader_fail(&L, "(root)", "must be an object");
    goto fail;
  }
  if (parse_added_tokens(&L, json_object_get(root, "added_tokens")) ||
      json_loader_parse_normalizer(&L, json_object_get(root, "normalizer"), "normalizer") ||
      json_loader_parse_pre_tokenizer(&L, json_object_get(root, "pre_tokenizer"),
                                      "pre_tokenizer") ||
      parse_model(&L, json_object_get(root, "model")) || resolve_added_ids(&L) ||
      json_loader_parse_post_processor(&L, json_object_get(root, "post_processor"),
                                       "post_processor") ||
      json_loader_parse_decoder(&L, json_object_get(root, "decoder"), "decoder") ||
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
