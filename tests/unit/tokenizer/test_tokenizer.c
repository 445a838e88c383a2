/* test_tokenizer - the tokenizers (common/tokenizer/, common/util/utf8.c)
 * against Hugging Face tokenizers.
 *
 * usage: test_tokenizer ROOT tiny      (a) to (d) below
 *        test_tokenizer ROOT smollm2   (e); exits 77 when the model is absent
 *
 *   (a) goldens (tests/golden/make_tokenizer_golden.py, made by `tokenizers`
 *       and transformers): for every line of tokenizer_<name>.jsonl, encode
 *       (with the post-processor's BOS/EOS) gives exactly the golden ids;
 *       decode of the golden ids gives exactly the golden text; where the
 *       golden says the tokenizer is lossless, decode(encode(text)) == text;
 *       each token's byte span equals the golden's (Hugging Face's offsets)
 *       on ASCII text and lies inside it elsewhere (Hugging Face gives a token
 *       holding part of a character the whole character). Tokenizers:
 *       tiny-gpt2 (tokenizer.json, byte-level), tiny-llama (tokenizer.json,
 *       sentencepiece BPE with byte fallback), tiny-llama-gguf (the same
 *       vocabulary as GGUF metadata, merges derived from scores).
 *       The same vocabulary with unset special ids (0xFFFFFFFF or past
 *       the vocabulary, tests/golden/make_unset_ids_gguf.py) loads and
 *       encodes as that golden less its BOS.
 *       tiny-gpt2 with an NFC normalizer: the golden as above on the
 *       corpus and its NFD (tests/golden/make_nfc_tokenizer_golden.py).
 *   (b) errors: invalid UTF-8 (naming the byte), an unknown token, ids out of
 *       range, malformed tokenizer.json files written to a temporary folder,
 *       a GGUF without a tokenizer, paths that hold no tokenizer: each fails
 *       with a message naming the file and the fault, and nothing crashes
 *       (run under ASan + UBSan).
 *   (c) special tokens as text (TOKENIZER_SPECIAL_AS_TEXT) and skipped on
 *       decode (TOKENIZER_SKIP_SPECIAL); tokenizer_token_text and _piece.
 *   (d) substrings: the tokens covering a substring, on the tiny tokenizers.
 *   (e) SmolLM2-135M's GGUF from $HYDRA_SMOLLM2 or
 *       ROOT/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf: the golden
 *       as in (a); "The Eiffel Tower is located in the city of" with subject
 *       "Eiffel Tower" covers tokens 1 .. 3 (" E", "iffel", " Tower", ids 414,
 *       46682, 18669, as transformers tokenizes it). Absent: exit 77, unless
 *       HYDRA_REQUIRE_MODELS=1 (then a failure). The same golden also runs on
 *       SmolLM2's tokenizer.json when $HYDRA_SMOLLM2_TOKENIZER_JSON or
 *       ROOT/models/smollm2-135m-tokenizer/tokenizer.json exists (written by
 *       the golden script; not committed). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "checkpoint.h"
#include "error.h"
#include "tokenizer.h"

#define SKIP 77

static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Prints ids as "[1, 2, 3]" into buf. */
static const char *ids_str(const int32_t *ids, size_t n, char *buf, size_t len) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, len - o, "[");
  for (size_t i = 0; i < n && o + 16 < len; i++)
    o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? ", " : "", (int)ids[i]);
  snprintf(buf + o, len - o, "]");
  return buf;
}

static int is_ascii(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] >= 0x80)
      return 0;
  return 1;
}

/* ---- (a) goldens ---- */

static void check_line(const char *name, const tokenizer_t *t, const json_t *row, size_t line) {
  char err[HYDRA_ERR_LEN], a[4096], b[4096];
  const json_t *jtext = json_object_get(row, "text"), *jids = json_object_get(row, "ids");
  const json_t *jdec = json_object_get(row, "decoded"), *joff = json_object_get(row, "offsets");
  if (!json_is_string(jtext) || !json_is_array(jids) || !json_is_string(jdec) ||
      !json_is_array(joff) || json_array_size(joff) != json_array_size(jids)) {
    FAIL("%s: golden line %zu is malformed", name, line);
    return;
  }
  const char *text = json_string_value(jtext);
  size_t len = json_string_length(jtext), n = json_array_size(jids);
  int32_t *want = malloc((n ? n : 1) * sizeof(int32_t));
  if (!want) {
    FAIL("out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++)
    want[i] = (int32_t)json_integer_value(json_array_get(jids, i));

  tokenizer_encoding_t enc = {0};
  if (tokenizer_encode(t, text, len, TOKENIZER_ADD_SPECIAL, &enc, err)) {
    FAIL("%s: line %zu: encode failed: %s", name, line, err);
    goto done;
  }
  int same = enc.n == n && (n == 0 || memcmp(enc.ids, want, n * sizeof(int32_t)) == 0);
  CHECK(same, "%s: line %zu: ids %s, Hugging Face %s", name, line,
        ids_str(enc.ids, enc.n, a, sizeof(a)), ids_str(want, n, b, sizeof(b)));
  if (!same)
    printf("  text: %.*s\n", (int)len, text);

  /* Offsets against Hugging Face's. */
  int ascii = is_ascii(text, len);
  for (size_t i = 0; same && i < n; i++) {
    const json_t *o = json_array_get(joff, i);
    size_t hs = (size_t)json_integer_value(json_array_get(o, 0));
    size_t he = (size_t)json_integer_value(json_array_get(o, 1));
    int ok = ascii ? enc.starts[i] == hs && enc.ends[i] == he
                   : enc.starts[i] >= hs && enc.ends[i] <= he && enc.starts[i] <= enc.ends[i];
    CHECK(ok, "%s: line %zu token %zu (id %d): span [%zu, %zu), Hugging Face [%zu, %zu)", name,
          line, i, (int)want[i], enc.starts[i], enc.ends[i], hs, he);
  }

  /* Decoding the golden ids. */
  size_t dlen;
  char *dec = tokenizer_decode(t, want, n, 0, &dlen, err);
  if (!dec) {
    FAIL("%s: line %zu: decode failed: %s", name, line, err);
  } else {
    const char *hf = json_string_value(jdec);
    size_t hf_len = json_string_length(jdec);
    CHECK(dlen == hf_len && memcmp(dec, hf, dlen) == 0,
          "%s: line %zu: decode gives \"%.*s\", Hugging Face \"%.*s\"", name, line, (int)dlen, dec,
          (int)hf_len, hf);
    free(dec);
  }

  /* Round trip without special tokens, where Hugging Face's is lossless. */
  if (json_is_true(json_object_get(row, "lossless"))) {
    if (tokenizer_encode(t, text, len, 0, &enc, err)) {
      FAIL("%s: line %zu: encode failed: %s", name, line, err);
      goto done;
    }
    dec = tokenizer_decode(t, enc.ids, enc.n, 0, &dlen, err);
    CHECK(dec && dlen == len && memcmp(dec, text, len) == 0,
          "%s: line %zu: decode(encode(text)) is \"%.*s\", not the text \"%.*s\"", name, line,
          dec ? (int)dlen : 0, dec ? dec : "", (int)len, text);
    free(dec);
  }
done:
  tokenizer_encoding_free(&enc);
  free(want);
}

static void run_golden(const char *name, const char *tokenizer_path, const char *golden_path) {
  char err[HYDRA_ERR_LEN];
  tokenizer_t *t = tokenizer_load(tokenizer_path, err);
  if (!t) {
    FAIL("%s: cannot load %s: %s", name, tokenizer_path, err);
    return;
  }
  FILE *f = fopen(golden_path, "r");
  if (!f) {
    FAIL("%s: cannot open %s", name, golden_path);
    tokenizer_free(t);
    return;
  }
  char *line = NULL;
  size_t cap = 0, n_lines = 0;
  int failed_before = check_failures();
  ssize_t got;
  while ((got = getline(&line, &cap, f)) > 0) {
    json_error_t je;
    json_t *row = json_loadb(line, (size_t)got, JSON_ALLOW_NUL, &je);
    n_lines++;
    if (!row) {
      FAIL("%s: %s line %zu: %s", name, golden_path, n_lines, je.text);
      continue;
    }
    check_line(name, t, row, n_lines);
    json_decref(row);
  }
  free(line);
  fclose(f);
  CHECK(n_lines >= 40, "%s: %s has only %zu lines", name, golden_path, n_lines);
  printf("golden %-16s %-14s vocab %6d: %zu lines, %s\n", name, tokenizer_kind(t),
         (int)tokenizer_n_vocab(t), n_lines, check_failures() == failed_before ? "ok" : "FAILED");
  tokenizer_free(t);
}

/* tiny_llama_tokenizer_unset_ids.gguf (tests/golden/make_unset_ids_gguf.py):
 * tiny-llama-gguf's vocabulary with BOS, unknown, padding and separator ids
 * 0xFFFFFFFF and EOS past the vocabulary, add_bos_token still true.
 * Transformers refuses that file, so each case is transformers' encoding of
 * the original file less its BOS (unset, so not prepended); cases holding
 * "<unk>" are left out (unset, it is text, not the special token). */
static void run_unset_ids(const char *root) {
  char path[1024], gold[1024], err[HYDRA_ERR_LEN], a[4096], b[4096];
  snprintf(path, sizeof(path), "%s/tests/data/gguf/tiny_llama_tokenizer_unset_ids.gguf", root);
  snprintf(gold, sizeof(gold), "%s/tests/golden/tokenizer_tiny-llama-gguf.jsonl", root);
  tokenizer_t *t = tokenizer_load(path, err);
  FILE *f = t ? fopen(gold, "r") : NULL;
  if (!f) {
    FAIL("unset ids: cannot load %s or open %s: %s", path, gold, t ? "" : err);
    tokenizer_free(t);
    return;
  }
  CHECK(tokenizer_bos_id(t) == -1 && tokenizer_eos_id(t) == -1, "unset ids: bos %d eos %d",
        (int)tokenizer_bos_id(t), (int)tokenizer_eos_id(t));
  char *line = NULL;
  size_t cap = 0, n_lines = 0, n_checked = 0;
  ssize_t got;
  while ((got = getline(&line, &cap, f)) > 0) {
    json_t *row = json_loadb(line, (size_t)got, JSON_ALLOW_NUL, NULL);
    const json_t *jtext = json_object_get(row, "text"), *jids = json_object_get(row, "ids");
    n_lines++;
    const char *text = json_string_value(jtext);
    size_t len = json_string_length(jtext), n = json_array_size(jids);
    if (!text || n == 0 || json_integer_value(json_array_get(jids, 0)) != 1) {
      FAIL("unset ids: golden line %zu is not a BOS-first encoding", n_lines);
    } else if (!strstr(text, "<unk>")) {
      int32_t want[1024];
      size_t n_want = 0;
      for (size_t i = 1; i < n && n_want < 1024; i++)
        want[n_want++] = (int32_t)json_integer_value(json_array_get(jids, i));
      tokenizer_encoding_t enc = {0};
      int rc = tokenizer_encode(t, text, len, TOKENIZER_ADD_SPECIAL, &enc, err);
      CHECK(rc == 0 && enc.n == n_want &&
                (n_want == 0 || memcmp(enc.ids, want, n_want * sizeof(int32_t)) == 0),
            "unset ids: line %zu: ids %s, want %s (%s)", n_lines,
            ids_str(enc.ids, enc.n, a, sizeof(a)), ids_str(want, n_want, b, sizeof(b)),
            rc ? err : "");
      tokenizer_encoding_free(&enc);
      n_checked++;
    }
    json_decref(row);
  }
  free(line);
  fclose(f);
  CHECK(n_checked >= 40, "unset ids: only %zu cases checked", n_checked);
  printf("unset ids: %zu of %zu cases encode as transformers' less BOS\n", n_checked, n_lines);
  tokenizer_free(t);
}

/* tiny-gpt2's tokenizer.json with an NFC normalizer, written to a temporary
 * folder, against tokenizers' encoding of the corpus and its NFD
 * (tests/golden/make_nfc_tokenizer_golden.py). */
static void run_nfc(const char *root) {
  char src[1024], dir[] = "/tmp/hydra_nfc_XXXXXX", path[1100], gold[1024];
  snprintf(src, sizeof(src), "%s/tests/data/tiny-gpt2/tokenizer.json", root);
  snprintf(gold, sizeof(gold), "%s/tests/golden/tokenizer_tiny-gpt2-nfc.jsonl", root);
  json_t *doc = json_load_file(src, 0, NULL);
  if (!doc || !mkdtemp(dir)) {
    FAIL("nfc: cannot read %s or make a temporary folder", src);
    json_decref(doc);
    return;
  }
  snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
  json_object_set_new(doc, "normalizer", json_pack("{s:s}", "type", "NFC"));
  if (json_dump_file(doc, path, 0) == 0)
    run_golden("tiny-gpt2-nfc", path, gold);
  else
    FAIL("nfc: cannot write %s", path);
  json_decref(doc);
  unlink(path);
  rmdir(dir);
}

/* ---- (b) errors ---- */

static void expect_encode_error(const tokenizer_t *t, const char *text, size_t len,
                                const char *needle) {
  char err[HYDRA_ERR_LEN] = "";
  tokenizer_encoding_t enc = {0};
  int rc = tokenizer_encode(t, text, len, 0, &enc, err);
  CHECK(rc != 0 && strstr(err, needle), "encoding invalid UTF-8: want an error with \"%s\", got %s",
        needle, rc ? err : "success");
  tokenizer_encoding_free(&enc);
}

static void write_file(const char *path, const char *content) {
  FILE *f = fopen(path, "w");
  if (!f || fputs(content, f) < 0)
    FAIL("cannot write %s", path);
  if (f)
    fclose(f);
}

/* A tokenizer.json body around the given parts. */
static void write_tokenizer(const char *path, const char *pre, const char *model) {
  char buf[4096];
  snprintf(buf, sizeof(buf),
           "{\"version\": \"1.0\", \"added_tokens\": [], \"normalizer\": null,\n"
           " \"pre_tokenizer\": %s, \"post_processor\": null, \"decoder\": null,\n"
           " \"model\": %s}\n",
           pre, model);
  write_file(path, buf);
}

static void expect_load_error(const char *path, const char *needle1, const char *needle2) {
  char err[HYDRA_ERR_LEN] = "";
  tokenizer_t *t = tokenizer_load(path, err);
  CHECK(!t && strstr(err, needle1) && strstr(err, needle2),
        "loading %s: want an error naming \"%s\" and \"%s\", got %s", path, needle1, needle2,
        t ? "success" : err);
  if (!t)
    printf("  error as expected: %s\n", err);
  tokenizer_free(t);
}

/* A GGUF whose tokenizer.ggml.pre names a pre-tokenizer hydra lacks is
 * refused naming it: tokenizer_pre_gpt-2.gguf with the name respelled. */
static void gguf_pre_unknown(const char *root, const char *dir) {
  char src[1024], dst[1024];
  snprintf(src, sizeof(src), "%s/tests/data/gguf/tokenizer_pre_gpt-2.gguf", root);
  snprintf(dst, sizeof(dst), "%s/pre_unknown.gguf", dir);
  FILE *f = fopen(src, "rb");
  char *buf = f ? malloc(1 << 20) : NULL;
  size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
  if (f)
    fclose(f);
  static const char key[] = "tokenizer.ggml.pre";
  char *at = NULL;
  for (size_t i = 0; buf && i + sizeof(key) + 12 + 5 <= n; i++)
    if (memcmp(buf + i, key, sizeof(key) - 1) == 0) {
      at = buf + i + sizeof(key) - 1 + 4 + 8; /* value type, string length */
      break;
    }
  if (!at || memcmp(at, "gpt-2", 5) != 0) {
    FAIL("%s: tokenizer.ggml.pre \"gpt-2\" not found", src);
    free(buf);
    return;
  }
  memcpy(at, "zzz-9", 5);
  FILE *o = fopen(dst, "wb");
  CHECK(o && fwrite(buf, 1, n, o) == n, "writing %s", dst);
  if (o)
    fclose(o);
  free(buf);
  expect_load_error(dst, "tokenizer.ggml.pre", "\"zzz-9\" is not supported");
}

/* Llama 3's names and tekken add BOS when tokenizer.ggml.add_bos_token is
 * absent (their tokenizer.json's template, llama.cpp's default): the
 * file's key respelled, "Hello world" is BOS and the ids the file gives. */
static void gguf_default_bos(const char *root, const char *dir, const char *pre) {
  char src[1024], dst[1024], err[HYDRA_ERR_LEN];
  snprintf(src, sizeof(src), "%s/tests/data/gguf/tokenizer_pre_%s.gguf", root, pre);
  snprintf(dst, sizeof(dst), "%s/default_bos_%s.gguf", dir, pre);
  FILE *f = fopen(src, "rb");
  char *buf = f ? malloc(1 << 20) : NULL;
  size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
  if (f)
    fclose(f);
  static const char key[] = "tokenizer.ggml.add_bos_token";
  char *at = NULL;
  for (size_t i = 0; buf && i + sizeof(key) <= n; i++)
    if (memcmp(buf + i, key, sizeof(key) - 1) == 0)
      at = buf + i;
  if (!at) {
    FAIL("%s: no %s", src, key);
    free(buf);
    return;
  }
  at[sizeof(key) - 2] = 'Z'; /* tokenizer.ggml.add_bos_tokeZ: an unknown key */
  FILE *o = fopen(dst, "wb");
  CHECK(o && fwrite(buf, 1, n, o) == n, "writing %s", dst);
  if (o)
    fclose(o);
  free(buf);
  tokenizer_t *with = tokenizer_load(src, err), *without = with ? tokenizer_load(dst, err) : NULL;
  tokenizer_encoding_t a = {0}, b = {0};
  const char *text = "Hello world";
  if (!with || !without ||
      tokenizer_encode(with, text, strlen(text), TOKENIZER_ADD_SPECIAL, &a, err) ||
      tokenizer_encode(without, text, strlen(text), TOKENIZER_ADD_SPECIAL, &b, err)) {
    FAIL("pre %s without add_bos_token: %s", pre, err);
  } else {
    CHECK(b.n == a.n + 1 && b.ids[0] == tokenizer_bos_id(without) && b.ids[0] >= 0 &&
              memcmp(b.ids + 1, a.ids, a.n * sizeof(int32_t)) == 0,
          "pre %s without add_bos_token: want BOS then the %zu ids, got %zu ids", pre, a.n, b.n);
  }
  tokenizer_encoding_free(&a);
  tokenizer_encoding_free(&b);
  tokenizer_free(with);
  tokenizer_free(without);
}

static void test_errors(const char *root, const tokenizer_t *gpt2, const tokenizer_t *llama) {
  char err[HYDRA_ERR_LEN];
  /* Invalid UTF-8, each naming the offending byte. */
  expect_encode_error(gpt2,
                      "ab\xff"
                      "cd",
                      5, "byte 2 (0xFF)");
  expect_encode_error(gpt2, "abc\xe2\x82", 5, "byte 3");       /* truncated */
  expect_encode_error(gpt2, "\xc0\xaf", 2, "byte 0");          /* overlong */
  expect_encode_error(llama, "x \xed\xa0\x80 y", 7, "byte 2"); /* surrogate */
  expect_encode_error(llama, "\xf4\x90\x80\x80", 4, "byte 0"); /* above U+10FFFF */
  expect_encode_error(llama, "ok\x80", 3, "byte 2");           /* stray continuation */

  /* Unknown tokens and ids. */
  err[0] = '\0';
  CHECK(tokenizer_token_id(gpt2, "<|nonexistent|>", err) < 0 && strstr(err, "unknown token") &&
            strstr(err, "<|nonexistent|>"),
        "unknown token: got \"%s\"", err);
  CHECK(tokenizer_token_id(gpt2, "<|endoftext|>", err) == 0, "<|endoftext|> should be id 0");
  int32_t bad[] = {5, 1000};
  char *s = tokenizer_decode(gpt2, bad, 2, 0, NULL, err);
  CHECK(!s && strstr(err, "1000") && strstr(err, "out of range"), "decode of id 1000: %s",
        s ? "success" : err);
  free(s);
  int32_t neg[] = {-1};
  s = tokenizer_decode(llama, neg, 1, 0, NULL, err);
  CHECK(!s, "decode of id -1 should fail");
  free(s);
  CHECK(tokenizer_token_text(gpt2, 1000, NULL) == NULL &&
            tokenizer_token_text(gpt2, -1, NULL) == NULL,
        "token_text out of range should be NULL");

  /* Malformed files. */
  char dir[] = "/tmp/hydra_tokenizer_XXXXXX";
  if (!mkdtemp(dir)) {
    FAIL("mkdtemp failed");
    return;
  }
  char path[512];
  const char *bpe_ok = "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
                       "\"merges\": [\"a b\"]}";
  snprintf(path, sizeof(path), "%s/notjson.json", dir);
  write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}}");
  expect_load_error(path, "notjson.json", "not a valid tokenizer.json");
  snprintf(path, sizeof(path), "%s/nomodel.json", dir);
  write_file(path, "{\"version\": \"1.0\", \"added_tokens\": []}");
  expect_load_error(path, "nomodel.json", "model");
  snprintf(path, sizeof(path), "%s/wordpiece.json", dir);
  write_tokenizer(path, "null", "{\"type\": \"WordPiece\", \"vocab\": {}}");
  expect_load_error(path, "wordpiece.json", "\"WordPiece\" is not supported");
  snprintf(path, sizeof(path), "%s/badmerge.json", dir);
  write_tokenizer(path, "null",
                  "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}");
  expect_load_error(path, "badmerge.json", "model.merges[0]");
  snprintf(path, sizeof(path), "%s/badmerge2.json", dir);
  write_tokenizer(path, "null",
                  "{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"ab\": 1}, \"merges\": [\"a c\"]}");
  expect_load_error(path, "badmerge2.json", "\"c\" is not in the vocabulary");
  snprintf(path, sizeof(path), "%s/badregex.json", dir);
  write_tokenizer(path,
                  "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\\\\p{L}+\"}, "
                  "\"behavior\": \"Isolated\", \"invert\": false}",
                  bpe_ok);
  expect_load_error(path, "badregex.json", "pre_tokenizer.pattern");
  /* Oniguruma's class inside a negated class is a union (BLOOM's); a negated
   * inner class or an intersection has no one-class spelling: refused. */
  snprintf(path, sizeof(path), "%s/nestedclass.json", dir);
  write_tokenizer(path,
                  "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a[^b]]+\"}, "
                  "\"behavior\": \"Isolated\", \"invert\": false}",
                  bpe_ok);
  expect_load_error(path, "pre_tokenizer.pattern", "a negated class inside a class");
  snprintf(path, sizeof(path), "%s/intersection.json", dir);
  write_tokenizer(path,
                  "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a-z&&[^aeiou]]+\"}, "
                  "\"behavior\": \"Isolated\", \"invert\": false}",
                  bpe_ok);
  expect_load_error(path, "pre_tokenizer.pattern", "intersection");
  snprintf(path, sizeof(path), "%s/afterbytes.json", dir);
  write_tokenizer(path,
                  "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\", "
                  "\"add_prefix_space\": false, \"use_regex\": true}, {\"type\": \"Metaspace\", "
                  "\"replacement\": \"_\", \"prepend_scheme\": \"never\", \"split\": true}]}",
                  bpe_ok);
  expect_load_error(path, "pre_tokenizer.pretokenizers[1]", "after ByteLevel");
  gguf_pre_unknown(root, dir);
  gguf_default_bos(root, dir, "llama-bpe");
  gguf_default_bos(root, dir, "tekken");
  snprintf(path, sizeof(path), "%s/badbehavior.json", dir);
  write_tokenizer(path,
                  "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                  "\"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"}]}",
                  bpe_ok);
  expect_load_error(path, "badbehavior.json", "pre_tokenizer.pretokenizers[0].behavior");
  snprintf(path, sizeof(path), "%s/badid.json", dir);
  write_tokenizer(path, "null", "{\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}");
  expect_load_error(path, "badid.json", "model.vocab[\"a\"]");
  snprintf(path, sizeof(path), "%s/dropout.json", dir);
  write_tokenizer(path, "null",
                  "{\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}, \"merges\": []}");
  expect_load_error(path, "dropout.json", "dropout");
  snprintf(path, sizeof(path), "%s/added.json", dir);
  write_file(path, "{\"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}], \"model\": {}}");
  expect_load_error(path, "added.json", "added_tokens[0].id");
  snprintf(path, sizeof(path), "%s/empty.json", dir);
  write_file(path, "");
  expect_load_error(path, "empty.json", "not a valid tokenizer.json");
  snprintf(path, sizeof(path), "%s/missing.json", dir);
  expect_load_error(path, "missing.json", "no such file");
  expect_load_error(dir, dir, "no tokenizer.json");
  snprintf(path, sizeof(path), "%s/tests/data/gguf/quant_types.gguf", root);
  expect_load_error(path, "quant_types.gguf", "tokenizer.ggml.model");
  snprintf(path, sizeof(path), "%s/truncated.gguf", dir);
  write_file(path, "GGUF\x03");
  expect_load_error(path, "truncated.gguf", "truncated");

  /* A minimal valid file loads and works: "ab" is one token. */
  snprintf(path, sizeof(path), "%s/ok.json", dir);
  write_tokenizer(path, "null", bpe_ok);
  tokenizer_t *t = tokenizer_load(path, err);
  CHECK(t != NULL, "minimal tokenizer.json: %s", err);
  if (t) {
    tokenizer_encoding_t enc = {0};
    CHECK(tokenizer_encode(t, "abab", 4, 0, &enc, err) == 0 && enc.n == 2 && enc.ids[0] == 2 &&
              enc.ids[1] == 2,
          "minimal tokenizer: \"abab\" should be [2, 2]");
    tokenizer_encoding_free(&enc);
    tokenizer_free(t);
  }

  static const char *const files[] = {
      "notjson.json",  "nomodel.json",     "wordpiece.json", "badmerge.json", "badmerge2.json",
      "badregex.json", "badbehavior.json", "badid.json",     "dropout.json",  "added.json",
      "empty.json",    "truncated.gguf",   "ok.json"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
}

/* ---- (c) special tokens, token texts ---- */

static void test_special(const tokenizer_t *gpt2, const tokenizer_t *llama) {
  char err[HYDRA_ERR_LEN];
  const char *text = "a<|endoftext|>b";
  tokenizer_encoding_t enc = {0};
  CHECK(tokenizer_encode(gpt2, text, strlen(text), 0, &enc, err) == 0, "%s", err);
  int has = 0;
  for (size_t i = 0; i < enc.n; i++)
    has |= enc.ids[i] == 0;
  CHECK(has && enc.n == 3 && enc.starts[1] == 1 && enc.ends[1] == 14,
        "<|endoftext|> should be matched as one token spanning bytes 1 .. 14");
  CHECK(tokenizer_encode(gpt2, text, strlen(text), TOKENIZER_SPECIAL_AS_TEXT, &enc, err) == 0, "%s",
        err);
  has = 0;
  for (size_t i = 0; i < enc.n; i++)
    has |= enc.ids[i] == 0;
  CHECK(!has && enc.n > 3, "TOKENIZER_SPECIAL_AS_TEXT should tokenize <|endoftext|> as text");
  size_t len;
  char *dec = tokenizer_decode(gpt2, enc.ids, enc.n, 0, &len, err);
  CHECK(dec && len == strlen(text) && memcmp(dec, text, len) == 0, "decode of special-as-text");
  free(dec);

  /* BOS and skipping it. */
  CHECK(tokenizer_encode(llama, "hi", 2, TOKENIZER_ADD_SPECIAL, &enc, err) == 0, "%s", err);
  CHECK(enc.n >= 2 && enc.ids[0] == 1 && enc.starts[0] == 0 && enc.ends[0] == 0,
        "tiny-llama should start with BOS (id 1) spanning nothing");
  CHECK(tokenizer_bos_id(llama) == 1 && tokenizer_eos_id(llama) == 2, "tiny-llama BOS/EOS ids");
  dec = tokenizer_decode(llama, enc.ids, enc.n, TOKENIZER_SKIP_SPECIAL, &len, err);
  CHECK(dec && len == 2 && memcmp(dec, "hi", 2) == 0, "decode skipping BOS should give \"hi\"");
  free(dec);
  tokenizer_encoding_free(&enc);

  /* Token texts and pieces. */
  size_t n;
  int32_t nl = tokenizer_token_id(gpt2, "\xC4\x8A", err); /* "Ċ" spells "\n" */
  const char *s = tokenizer_token_text(gpt2, nl, &n);
  CHECK(nl >= 0 && s && n == 1 && s[0] == '\n', "gpt2: the text of \"\xC4\x8A\" should be \\n");
  s = tokenizer_token_text(gpt2, 0, &n);
  CHECK(s && n == 13 && memcmp(s, "<|endoftext|>", 13) == 0, "gpt2: text of id 0");
  int32_t byte = tokenizer_token_id(llama, "<0x0A>", err);
  s = tokenizer_token_text(llama, byte, &n);
  CHECK(byte >= 0 && s && n == 1 && s[0] == '\n', "llama: the text of <0x0A> should be \\n");
  int32_t sp = tokenizer_token_id(llama,
                                  "\xE2\x96\x81"
                                  "the",
                                  err);
  s = tokenizer_token_text(llama, sp, &n);
  CHECK(sp >= 0 && s && n == 4 && memcmp(s, " the", 4) == 0, "llama: text of \"\xE2\x96\x81the\"");
  s = tokenizer_token_piece(llama, sp, &n);
  CHECK(s && n == 6 && memcmp(s, "\xE2\x96\x81the", 6) == 0, "llama: piece of \"\xE2\x96\x81the\"");
}

/* ---- (d) substrings ---- */

/* The tokens covering `subject` in `text` must be exactly those whose texts
 * overlap it and must decode (without BOS) to a string containing it. */
static void check_subject(const char *name, const tokenizer_t *t, const char *text,
                          const char *subject, size_t want_first, size_t want_last) {
  char err[HYDRA_ERR_LEN];
  tokenizer_encoding_t enc = {0};
  size_t first = 0, last = 0;
  if (tokenizer_encode(t, text, strlen(text), TOKENIZER_ADD_SPECIAL, &enc, err) ||
      tokenizer_find_substring(&enc, text, strlen(text), subject, strlen(subject), &first, &last,
                               err)) {
    FAIL("%s: substring \"%s\": %s", name, subject, err);
  } else {
    CHECK(first == want_first && last == want_last,
          "%s: \"%s\" covers tokens %zu .. %zu, expected %zu .. %zu", name, subject, first, last,
          want_first, want_last);
    size_t len;
    char *dec = tokenizer_decode(t, enc.ids + first, last - first + 1, 0, &len, err);
    CHECK(dec && strstr(dec, subject),
          "%s: tokens %zu .. %zu decode to \"%s\", not containing "
          "\"%s\"",
          name, first, last, dec ? dec : err, subject);
    free(dec);
  }
  err[0] = '\0';
  CHECK(tokenizer_find_substring(&enc, text, strlen(text), "Louvre", 6, &first, &last, err) != 0 &&
            strstr(err, "Louvre"),
        "%s: a missing substring should fail naming it", name);
  CHECK(tokenizer_find_substring(&enc, text, strlen(text), "", 0, &first, &last, err) != 0,
        "%s: an empty substring should fail", name);
  tokenizer_encoding_free(&enc);
}

/* ---- main ---- */

static int run_tiny(const char *root) {
  char tok[3][1024], gold[3][1024], err[HYDRA_ERR_LEN];
  static const char *const names[3] = {"tiny-gpt2", "tiny-llama", "tiny-llama-gguf"};
  snprintf(tok[0], sizeof(tok[0]), "%s/tests/data/tiny-gpt2", root);
  snprintf(tok[1], sizeof(tok[1]), "%s/tests/data/tiny-llama/model.safetensors", root);
  snprintf(tok[2], sizeof(tok[2]), "%s/tests/data/gguf/tiny_llama_tokenizer.gguf", root);
  for (int i = 0; i < 3; i++) {
    snprintf(gold[i], sizeof(gold[i]), "%s/tests/golden/tokenizer_%s.jsonl", root, names[i]);
    run_golden(names[i], tok[i], gold[i]);
  }
  run_unset_ids(root);
  run_nfc(root);
  /* more tokens than token_embd.weight has rows (make_tokens_over_gguf.py) */
  char over[1024];
  snprintf(over, sizeof(over), "%s/tests/data/gguf/tokenizer_tokens_over.gguf", root);
  expect_load_error(over, "tokenizer.ggml.tokens has 1500 tokens",
                    "token_embd.weight has 1496 rows");
  /* the tokenizers transformers builds for families that ship their own
   * (make_tokenizer_golden.py's family_tokenizers, make_family_tokenizers.py) */
  static const char *const families[] = {"gemma",  "qwen2", "llama3", "tekken", "olmo2",   "pythia",
                                         "falcon", "bloom", "opt",    "phi2",   "mistral", "phi3"};
  for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
    char path[1024], golden[1024], name[64];
    snprintf(path, sizeof(path), "%s/tests/data/tokenizers/%s/tokenizer.json", root, families[i]);
    snprintf(golden, sizeof(golden), "%s/tests/golden/tokenizer_family-%s.jsonl", root,
             families[i]);
    snprintf(name, sizeof(name), "family %s", families[i]);
    run_golden(name, path, golden);
  }
  /* Gemma's vocabulary as llama.cpp writes it (sentencepiece, no space
   * prefix) encodes as Gemma's tokenizer.json (make_family_tokenizers.py) */
  char gemma_gguf[1024], gemma_golden[1024];
  snprintf(gemma_gguf, sizeof(gemma_gguf), "%s/tests/data/gguf/tokenizer_gemma.gguf", root);
  snprintf(gemma_golden, sizeof(gemma_golden), "%s/tests/golden/tokenizer_family-gemma.jsonl",
           root);
  run_golden("gguf gemma", gemma_gguf, gemma_golden);
  /* tokenizer.ggml.pre: the pre-tokenizer each name stands for, on one
   * byte-level vocabulary whose merges cross every split
   * (make_tokenizer_golden.py's PRE_TYPES) */
  static const char *const pres[] = {"gpt-2",        "olmo",           "command-r", "smollm",
                                     "stablelm2",    "qwen2",          "llama-bpe", "tekken",
                                     "deepseek-llm", "deepseek-coder", "falcon",    "bloom"};
  for (size_t i = 0; i < sizeof(pres) / sizeof(pres[0]); i++) {
    char path[1024], golden[1024], name[64];
    snprintf(path, sizeof(path), "%s/tests/data/gguf/tokenizer_pre_%s.gguf", root, pres[i]);
    snprintf(golden, sizeof(golden), "%s/tests/golden/tokenizer_pre-%s.jsonl", root, pres[i]);
    snprintf(name, sizeof(name), "pre %s", pres[i]);
    run_golden(name, path, golden);
  }
  tokenizer_t *gpt2 = tokenizer_load(tok[0], err);
  tokenizer_t *llama = gpt2 ? tokenizer_load(tok[1], err) : NULL;
  if (!gpt2 || !llama) {
    FAIL("loading the tiny tokenizers: %s", err);
  } else {
    test_errors(root, gpt2, llama);
    test_special(gpt2, llama);
    const char *eiffel = "The Eiffel Tower is located in the city of";
    /* As Hugging Face splits it (the goldens' offsets): tiny-llama
     * <s> ▁The ▁ E iffel ▁T ower ..., tiny-gpt2 T he Ġ E iffel ĠT ower ... */
    check_subject("tiny-llama", llama, eiffel, "Eiffel Tower", 3, 6);
    check_subject("tiny-gpt2", gpt2, eiffel, "Eiffel Tower", 3, 6);
  }
  tokenizer_free(gpt2);
  tokenizer_free(llama);
  return 0;
}

static int run_smollm2(const char *root) {
  char path[1024], gold[1024], json[1024];
  const char *env = getenv("HYDRA_SMOLLM2");
  if (env && *env)
    snprintf(path, sizeof(path), "%s", env);
  else
    snprintf(path, sizeof(path), "%s/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", root);
  if (!file_exists(path)) {
    const char *req = getenv("HYDRA_REQUIRE_MODELS");
    if (req && strcmp(req, "1") == 0) {
      FAIL("SmolLM2 GGUF %s is missing and HYDRA_REQUIRE_MODELS=1", path);
      return 1;
    }
    printf("skip: SmolLM2 GGUF %s is absent (set HYDRA_SMOLLM2)\n", path);
    return SKIP;
  }
  snprintf(gold, sizeof(gold), "%s/tests/golden/tokenizer_smollm2.jsonl", root);
  run_golden("smollm2-gguf", path, gold);

  char err[HYDRA_ERR_LEN];
  tokenizer_t *t = tokenizer_load(path, err);
  if (!t) {
    FAIL("loading %s: %s", path, err);
    return 1;
  }
  const char *text = "The Eiffel Tower is located in the city of";
  check_subject("smollm2", t, text, "Eiffel Tower", 1, 3);
  tokenizer_encoding_t enc = {0};
  size_t first, last;
  if (tokenizer_encode(t, text, strlen(text), TOKENIZER_ADD_SPECIAL, &enc, err) == 0 &&
      tokenizer_find_substring(&enc, text, strlen(text), "Eiffel Tower", 12, &first, &last, err) ==
          0) {
    static const int32_t want[] = {414, 46682, 18669};
    CHECK(last - first + 1 == 3 && memcmp(enc.ids + first, want, sizeof(want)) == 0,
          "smollm2: \"Eiffel Tower\" should be ids 414 46682 18669");
    size_t n;
    const char *s = tokenizer_token_text(t, enc.ids[last], &n);
    CHECK(s && n == 6 && memcmp(s, " Tower", 6) == 0,
          "smollm2: the last subject token is \" Tower\"");
    printf("smollm2: \"Eiffel Tower\" -> tokens %zu .. %zu:", first, last);
    for (size_t i = first; i <= last; i++)
      printf(" \"%s\"", tokenizer_token_text(t, enc.ids[i], NULL));
    printf("\n");
  }
  tokenizer_encoding_free(&enc);
  tokenizer_free(t);

  env = getenv("HYDRA_SMOLLM2_TOKENIZER_JSON");
  if (env && *env)
    snprintf(json, sizeof(json), "%s", env);
  else
    snprintf(json, sizeof(json), "%s/models/smollm2-135m-tokenizer/tokenizer.json", root);
  if (file_exists(json))
    run_golden("smollm2-json", json, gold);
  else
    printf("note: no SmolLM2 tokenizer.json at %s; its check is left out\n", json);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[2], "tiny") != 0 && strcmp(argv[2], "smollm2") != 0)) {
    fprintf(stderr, "usage: test_tokenizer ROOT tiny|smollm2\n");
    return 2;
  }
  int rc = strcmp(argv[2], "tiny") == 0 ? run_tiny(argv[1]) : run_smollm2(argv[1]);
  if (rc == SKIP)
    return SKIP;
  char name[64];
  snprintf(name, sizeof(name), "test_tokenizer %s", argv[2]);
  return check_exit(name);
}
