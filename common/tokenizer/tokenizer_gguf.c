/* tokenizer_gguf.c - a tokenizer from a GGUF file's tokenizer.ggml.* metadata,
 * built as transformers' GGUF loader builds it
 * (integrations/gguf/gguf_tokenizer_mapping.py), with two deliberate
 * differences where that loader departs from the model's real tokenizer:
 *
 *   - tokenizer.ggml.pre picks the pre-tokenizer for every name llama.cpp
 *     and the model's own tokenizer.json agree on; transformers ignores
 *     "smollm" (and "starcoder", "refact") and splits digits in runs, where
 *     the real tokenizer (and llama.cpp) splits every digit on its own;
 *   - tokenizer.ggml.add_space_prefix = false turns off the leading `▁` of a
 *     sentencepiece vocabulary, as in llama.cpp (transformers always adds it).
 *
 * Vocabularies: "gpt2" (byte-level BPE: tokens + merges) and "llama"
 * (sentencepiece BPE: tokens + scores, merges derived from the scores as
 * transformers' generate_merges does when the file has none). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "error.h"
#include "gguf.h"
#include "tokenizer_internal.h"
#include "utf8.h"

/* llama.cpp token types (tokenizer.ggml.token_type). */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4 };

#define LLAMA3_SPLIT                                                                               \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"                         \
  "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_SPLIT                                                                                \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"                              \
  "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Mistral's tekken (Mistral NeMo, Pixtral): words split by case runs. */
#define TEKKEN_SPLIT                                                                               \
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"      \
  "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"     \
  "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* DeepSeek's tokenizer.json (deepseek-llm: DeepSeek LLM, DeepSeek-V2): cased
 * letters of many scripts, ASCII and full-width punctuation, CJK ideographs
 * and Hangul, as its Split expressions spell them. */
#define DEEPSEEK_LETTERS                                                                           \
  "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"                   \
  "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"           \
  "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"                    \
  "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"                         \
  "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"                   \
  "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"                   \
  "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}"          \
  "\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"           \
  "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"                   \
  "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"                    \
  "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"                     \
  "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"          \
  "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"           \
  "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"                    \
  "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"                   \
  "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"                 \
  "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"           \
  "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
#define DEEPSEEK_PUNCT                                                                             \
  "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+"
#define DEEPSEEK_CJK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

/* BLOOM's: a class holding a class, whose members
 * join it (Oniguruma); the delimiters … 。 ， 、 । ۔ ، written as code points. */
#define BLOOM_SPLIT " ?[^(\\s|[.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C}])]+"

/* The byte-level pre-tokenizers, by the names llama.cpp's converter writes,
 * each as the model's own tokenizer.json splits: Split steps run in order on
 * every piece the one before left (tokenizers' Sequence), then ByteLevel with
 * no expression of its own. Digits(individual_digits) is the Isolated
 * expression \p{N}; GPT-2's expression is ByteLevel's own (use_regex).
 * DeepSeek's digits step: its tokenizer.json has Digits(individual_digits),
 * where llama.cpp's deepseek-llm list has \p{N}+ (the same ids on DeepSeek's
 * vocabulary, which holds no run of digits). Falcon's tokenizer.json splits
 * after ByteLevel too (on_bytes: Digits and three digits, on the bytes'
 * ByteLevel spelling), where llama.cpp approximates. */
typedef struct {
  const char *expr; /* NULL ends a list */
  split_behavior_t behavior;
  int on_bytes;
} pre_split_t;

#define ISOLATED(expr)                                                                             \
  { expr, SPLIT_ISOLATED, 0 }
static const pre_split_t PRE_GPT2[] = {ISOLATED(TOKENIZER_GPT2_PATTERN), {0}};
static const pre_split_t PRE_DIGITS_GPT2[] = {
    ISOLATED("\\p{N}"), ISOLATED(TOKENIZER_GPT2_PATTERN), {0}};
static const pre_split_t PRE_LLAMA3[] = {ISOLATED(LLAMA3_SPLIT), {0}};
static const pre_split_t PRE_QWEN2[] = {ISOLATED(QWEN2_SPLIT), {0}};
static const pre_split_t PRE_TEKKEN[] = {ISOLATED(TEKKEN_SPLIT), {0}};
static const pre_split_t PRE_BLOOM[] = {ISOLATED(BLOOM_SPLIT), {0}};
static const pre_split_t PRE_DEEPSEEK_LLM[] = {ISOLATED("[\\r\\n]"),
                                               ISOLATED("\\s?[" DEEPSEEK_LETTERS "]+"),
                                               ISOLATED(DEEPSEEK_PUNCT),
                                               ISOLATED("\\s+$"),
                                               ISOLATED(DEEPSEEK_CJK),
                                               ISOLATED("\\p{N}"),
                                               {0}};
static const pre_split_t PRE_DEEPSEEK_CODER[] = {ISOLATED("[\\r\\n]"),    ISOLATED("\\s?\\p{L}+"),
                                                 ISOLATED("\\s?\\p{P}+"), ISOLATED(DEEPSEEK_CJK),
                                                 ISOLATED("\\p{N}"),      {0}};
static const pre_split_t PRE_FALCON[] = {{TOKENIZER_PUNCTUATION_CLASS, SPLIT_CONTIGUOUS, 0},
                                         ISOLATED(TOKENIZER_GPT2_PATTERN),
                                         {"\\p{N}", SPLIT_CONTIGUOUS, 1},
                                         {"[0-9][0-9][0-9]", SPLIT_ISOLATED, 1},
                                         {0}};
#undef ISOLATED

/* ignore_merges_add_bos: as Llama 3's and tekken's tokenizer.json (and llama.cpp for
 * these names), a word that is a token is that token (BPE ignore_merges),
 * and BOS is added unless tokenizer.ggml.add_bos_token says otherwise. */
typedef struct {
  const char *name;
  const pre_split_t *splits;
  int ignore_merges_add_bos;
} byte_level_pre_t;

static const byte_level_pre_t BYTE_LEVEL_PRES[] = {
    {"default", PRE_GPT2, 0},
    {"gpt2", PRE_GPT2, 0},
    {"gpt-2", PRE_GPT2, 0},
    {"phi-2", PRE_GPT2, 0},
    {"olmo", PRE_GPT2, 0},
    {"mpt", PRE_GPT2, 0},
    {"smollm", PRE_DIGITS_GPT2, 0},
    {"command-r", PRE_DIGITS_GPT2, 0},
    {"starcoder", PRE_DIGITS_GPT2, 0},
    {"refact", PRE_DIGITS_GPT2, 0},
    {"llama3", PRE_LLAMA3, 1},
    {"llama-v3", PRE_LLAMA3, 1},
    {"llama-bpe", PRE_LLAMA3, 1},
    {"falcon3", PRE_LLAMA3, 1},
    {"dbrx", PRE_LLAMA3, 0},
    {"smaug-bpe", PRE_LLAMA3, 0},
    {"qwen2", PRE_QWEN2, 0},
    {"stablelm2", PRE_QWEN2, 0},
    {"deepseek-r1-qwen", PRE_QWEN2, 0},
    {"tekken", PRE_TEKKEN, 1},
    {"deepseek-llm", PRE_DEEPSEEK_LLM, 0},
    {"deepseek-coder", PRE_DEEPSEEK_CODER, 0},
    {"falcon", PRE_FALCON, 0},
    {"bloom", PRE_BLOOM, 0},
};

typedef struct {
  const char *path;
  const gguf_t *g;
  tokenizer_t *t;
  gguf_array_t tokens;
  gguf_array_t types; /* n == 0 when absent */
  int byte_level;
  const byte_level_pre_t *pre; /* byte-level vocabularies */
  char *err;
} gguf_loader_t;

static int fail(gguf_loader_t *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(gguf_loader_t *L, const char *fmt, ...) {
  char what[HYDRA_ERR_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  return err_set(L->err, "%s: %s", L->path, what);
}

static int token_type(const gguf_loader_t *L, uint64_t i) {
  if (i >= L->types.n)
    return TOKEN_NORMAL;
  const uint8_t *p = (const uint8_t *)L->types.data + 4 * i;
  return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24);
}

static float score_at(const gguf_array_t *a, uint64_t i) {
  float f;
  memcpy(&f, (const uint8_t *)a->data + 4 * i, 4);
  return f;
}

/* Whether every character of s spells a byte in GPT-2's map. */
static int in_byte_alphabet(const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
    if (!len || bpe_char_byte(cp) < 0)
      return 0;
    i += len;
  }
  return 1;
}

/* ---- vocabulary ---- */

static int add_pieces(gguf_loader_t *L, bpe_t *b) {
  char msg[HYDRA_ERR_LEN];
  char *spelled = NULL;
  size_t cap = 0;
  for (uint64_t i = 0; i < L->tokens.n; i++) {
    uint64_t len;
    const char *s = gguf_array_string(&L->tokens, i, &len);
    if (!utf8_valid(s, (size_t)len, NULL)) {
      free(spelled);
      snprintf(msg, sizeof(msg), "%llu", (unsigned long long)i);
      return fail(L, "tokenizer.ggml.tokens[%s] is not valid UTF-8", msg);
    }
    size_t n = (size_t)len;
    /* transformers respells a byte-level token outside the alphabet byte by byte. */
    if (L->byte_level && !in_byte_alphabet(s, n)) {
      if (cap < 2 * n + 1) {
        cap = 2 * n + 1;
        char *p = realloc(spelled, cap);
        if (!p) {
          free(spelled);
          return fail(L, "out of memory");
        }
        spelled = p;
      }
      size_t o = 0;
      for (size_t k = 0; k < n; k++)
        o += utf8_encode(bpe_byte_char((unsigned char)s[k]), spelled + o);
      s = spelled;
      n = o;
    }
    if (bpe_add_piece(b, s, n, (int32_t)i, msg)) {
      free(spelled);
      return fail(L, "tokenizer.ggml.tokens: %s", msg);
    }
  }
  free(spelled);
  return 0;
}

static int add_file_merges(gguf_loader_t *L, bpe_t *b, const gguf_array_t *merges) {
  char msg[HYDRA_ERR_LEN], where[64];
  for (uint64_t i = 0; i < merges->n; i++) {
    uint64_t len;
    const char *s = gguf_array_string(merges, i, &len);
    const char *sp = memchr(s, ' ', (size_t)len);
    snprintf(where, sizeof(where), "%llu", (unsigned long long)i);
    if (!sp || memchr(sp + 1, ' ', (size_t)len - (size_t)(sp - s) - 1))
      return fail(L, "tokenizer.ggml.merges[%s] is not two pieces separated by one space", where);
    if (bpe_add_merge(b, s, (size_t)(sp - s), sp + 1, (size_t)len - (size_t)(sp - s) - 1, msg))
      return fail(L, "tokenizer.ggml.merges[%s]: %s", where, msg);
  }
  return 0;
}

/* ---- merges from scores: transformers' generate_merges(vocab, scores) ---- */

typedef struct {
  int32_t left, right; /* token indices (first occurrence of the spelling) */
  float score;
  uint32_t left_chars, right_chars;
  size_t order; /* position before sorting: Python's sort is stable */
} scored_merge_t;

static int scored_merge_cmp(const void *a, const void *b) {
  const scored_merge_t *x = a, *y = b;
  /* sorted(..., key=(score, len(left), len(right)), reverse=True) */
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  if (x->left_chars != y->left_chars)
    return x->left_chars > y->left_chars ? -1 : 1;
  if (x->right_chars != y->right_chars)
    return x->right_chars > y->right_chars ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int local_cmp(const void *a, const void *b) {
  /* sorted(local, key=(vocab[left], vocab[right])): vocab holds the last id of
   * a spelling, which bpe_piece_id gives; left/right hold those ids here. */
  const scored_merge_t *x = a, *y = b;
  if (x->left != y->left)
    return x->left < y->left ? -1 : 1;
  return x->right < y->right ? -1 : x->right > y->right;
}

static uint32_t count_chars(const char *s, size_t n) {
  uint32_t c = 0;
  for (size_t i = 0; i < n; i++)
    c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

static int add_score_merges(gguf_loader_t *L, bpe_t *b, const gguf_array_t *scores) {
  scored_merge_t *m = NULL;
  size_t n = 0, cap = 0;
  int rc = -1;
  char msg[HYDRA_ERR_LEN];
  uint8_t *seen = calloc((size_t)L->tokens.n, 1);
  if (!seen)
    return fail(L, "out of memory deriving merges");
  for (uint64_t i = 0; i < L->tokens.n; i++) {
    uint64_t len64;
    const char *s = gguf_array_string(&L->tokens, i, &len64);
    size_t len = (size_t)len64;
    /* dict(zip(tokens, scores)): a spelling at its first position, with the
     * score (and id) of its last. */
    int32_t last = bpe_piece_id(b, s, len);
    if (seen[last])
      continue;
    seen[last] = 1;
    float score = score_at(scores, (uint64_t)last);
    size_t local_start = n;
    for (size_t at = 1; at < len; at++) {
      if (((unsigned char)s[at] & 0xC0) == 0x80)
        continue; /* split only between characters */
      int32_t l = bpe_piece_id(b, s, at), r = bpe_piece_id(b, s + at, len - at);
      if (l < 0 || r < 0)
        continue;
      if (buffer_grow((void **)&m, &cap, n + 1, sizeof(*m)) != 0) {
        fail(L, "out of memory deriving merges");
        goto done;
      }
      m[n++] = (scored_merge_t){l, r, score, count_chars(s, at), count_chars(s + at, len - at), 0};
    }
    if (n > local_start)
      qsort(m + local_start, n - local_start, sizeof(*m), local_cmp);
  }
  for (size_t i = 0; i < n; i++)
    m[i].order = i;
  if (n)
    qsort(m, n, sizeof(*m), scored_merge_cmp);
  for (size_t i = 0; i < n; i++) {
    size_t ll, rl;
    const char *ls = bpe_piece(b, m[i].left, &ll), *rs = bpe_piece(b, m[i].right, &rl);
    if (bpe_add_merge(b, ls, ll, rs, rl, msg)) {
      fail(L, "deriving merges from the scores: %s", msg);
      goto done;
    }
  }
  rc = 0;
done:
  free(seen);
  free(m);
  return rc;
}

/* ---- the pipeline ---- */

static int find_byte_level_pre(gguf_loader_t *L, const char *pre) {
  size_t n = sizeof(BYTE_LEVEL_PRES) / sizeof(BYTE_LEVEL_PRES[0]);
  for (size_t k = 0; k < n; k++) {
    if (strcmp(BYTE_LEVEL_PRES[k].name, pre) == 0) {
      L->pre = &BYTE_LEVEL_PRES[k];
      return 0;
    }
  }
  return fail(L, "tokenizer.ggml.pre \"%s\" is not supported", pre);
}

static int byte_level_pipeline(gguf_loader_t *L) {
  tokenizer_t *t = L->t;
  char msg[HYDRA_ERR_LEN];
  for (const pre_split_t *e = L->pre->splits; e->expr; e++) {
    pretokenize_step_t *s = tokenizer_add_pretokenize(t, PRETOKENIZE_SPLIT, L->err);
    if (!s)
      return -1;
    s->behavior = e->behavior;
    s->on_bytes = e->on_bytes;
    if (tokenizer_pattern_regex(&s->pattern, e->expr, strlen(e->expr), msg))
      return fail(L, "%s", msg);
  }
  t->has_decoder = 1;
  return tokenizer_add_decode(t, DECODE_BYTE_LEVEL, L->err) ? 0 : -1;
}

static int sentencepiece_pipeline(gguf_loader_t *L) {
  tokenizer_t *t = L->t;
  int add_space_prefix = 1;
  if (gguf_find_key(L->g, "tokenizer.ggml.add_space_prefix") >= 0 &&
      gguf_get_bool(L->g, "tokenizer.ggml.add_space_prefix", &add_space_prefix, L->err))
    return -1;
  pretokenize_step_t *s = tokenizer_add_pretokenize(t, PRETOKENIZE_METASPACE, L->err);
  if (!s)
    return -1;
  memcpy(s->replacement, "\xE2\x96\x81", 4);
  s->replacement_len = 3;
  s->prepend = add_space_prefix ? PREPEND_FIRST : PREPEND_NEVER;
  s->split = 0;
  t->has_decoder = 1;
  decode_step_t *d = tokenizer_add_decode(t, DECODE_REPLACE, L->err);
  if (!d || !(d->pattern = strdup("\xE2\x96\x81")) || !(d->content = strdup(" ")))
    return d ? fail(L, "out of memory") : -1;
  d->pattern_len = 3;
  d->content_len = 1;
  if (!tokenizer_add_decode(t, DECODE_BYTE_FALLBACK, L->err) ||
      !tokenizer_add_decode(t, DECODE_FUSE, L->err))
    return -1;
  if (!add_space_prefix)
    return 0;
  d = tokenizer_add_decode(t, DECODE_STRIP, L->err);
  if (!d || !(d->content = strdup(" ")))
    return d ? fail(L, "out of memory") : -1;
  d->content_len = 1;
  d->start = 1;
  return 0;
}

/* An optional special-token id key; -1 (unset) when absent or outside the
 * vocabulary. llama.cpp's converters write 0xFFFFFFFF for a token the model
 * lacks; llama.cpp warns "bad special token" and keeps its per-vocabulary
 * default instead (BOS 1 for "llama", 11 for "gpt2": guesses for old files,
 * wrong for any other vocabulary), and transformers' GGUF loader fails on
 * the index. Unset is the one reading that never invents a token. */
static int get_token_id(gguf_loader_t *L, const char *key, int32_t *out) {
  int64_t v;
  *out = -1;
  if (gguf_find_key(L->g, key) < 0)
    return 0;
  if (gguf_get_int(L->g, key, &v, L->err))
    return -1;
  if (v >= 0 && (uint64_t)v < L->tokens.n)
    *out = (int32_t)v;
  return 0;
}

static int is_added(const tokenizer_t *t, const char *s, size_t n) {
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].len == n && memcmp(t->added[i].content, s, n) == 0)
      return 1;
  return 0;
}

/* Control tokens as special added tokens (byte-level: only those spelled in
 * the byte alphabet), user-defined ones as plain added tokens, then the named
 * special tokens (BOS, EOS, UNK, PAD) not added yet; and BOS/EOS handling. */
static int added_tokens(gguf_loader_t *L) {
  tokenizer_t *t = L->t;
  for (int pass = 0; pass < 2; pass++) {
    for (uint64_t i = 0; i < L->tokens.n; i++) {
      uint64_t len;
      const char *s = gguf_array_string(&L->tokens, i, &len);
      int type = token_type(L, i), special = pass == 0;
      if (special && (type != TOKEN_CONTROL || (L->byte_level && !in_byte_alphabet(s, len))))
        continue;
      if (!special && (type != TOKEN_USER_DEFINED || bpe_piece_id(t->bpe, s, len) < 0))
        continue;
      if (len == 0 || is_added(t, s, len))
        continue;
      if (tokenizer_add_added(t, s, len, (int32_t)i, special, L->err))
        return -1;
    }
  }
  int32_t ids[4];
  static const char *const keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.unknown_token_id",
                                      "tokenizer.ggml.padding_token_id"};
  for (int k = 0; k < 4; k++) {
    if (get_token_id(L, keys[k], &ids[k]))
      return -1;
    if (ids[k] < 0)
      continue;
    uint64_t len;
    const char *s = gguf_array_string(&L->tokens, (uint64_t)ids[k], &len);
    int32_t id = bpe_piece_id(t->bpe, s, len);
    if (len > 0 && id >= 0 && !is_added(t, s, len) && tokenizer_add_added(t, s, len, id, 1, L->err))
      return -1;
  }
  t->bos_id = ids[0];
  t->eos_id = ids[1];
  int add_bos = !L->byte_level || L->pre->ignore_merges_add_bos, add_eos = 0;
  if (gguf_find_key(L->g, "tokenizer.ggml.add_bos_token") >= 0 &&
      gguf_get_bool(L->g, "tokenizer.ggml.add_bos_token", &add_bos, L->err))
    return -1;
  if (gguf_find_key(L->g, "tokenizer.ggml.add_eos_token") >= 0 &&
      gguf_get_bool(L->g, "tokenizer.ggml.add_eos_token", &add_eos, L->err))
    return -1;
  /* add_bos_token with BOS unset prepends nothing. llama.cpp prepends its
   * default BOS (see get_token_id), or asserts BOS is set where the default
   * is none (llama-vocab.cpp's tokenize), and transformers refuses the file,
   * so there is no reference to follow; the text is encoded as when the flag
   * is false. EOS likewise. */
  if (add_bos && t->bos_id >= 0 && tokenizer_add_prefix(t, t->bos_id, L->err))
    return -1;
  if (add_eos && t->eos_id >= 0 && tokenizer_add_suffix(t, t->eos_id, L->err))
    return -1;
  return 0;
}

static int build(gguf_loader_t *L) {
  const char *model, *pre = "default";
  char msg[HYDRA_ERR_LEN];
  if (gguf_get_string(L->g, "tokenizer.ggml.model", &model, NULL, L->err) ||
      gguf_get_array(L->g, "tokenizer.ggml.tokens", &L->tokens, L->err))
    return -1;
  if (L->tokens.type != GGUF_TYPE_STRING || L->tokens.n == 0 || L->tokens.n >= INT32_MAX)
    return fail(L, "tokenizer.ggml.tokens must be a non-empty array of strings");
  /* llama.cpp requires the vocabulary and the embedding to match; more
   * tokens than rows would give ids the model has no row for */
  const gguf_tensor_t *embed = gguf_tensor_find(L->g, "token_embd.weight");
  if (embed && embed->n_dims == 2 && L->tokens.n > embed->ne[1])
    return fail(L,
                "tokenizer.ggml.tokens has %llu tokens but token_embd.weight has %llu rows: ids "
                "past them would have no embedding",
                (unsigned long long)L->tokens.n, (unsigned long long)embed->ne[1]);
  if (gguf_find_key(L->g, "tokenizer.ggml.token_type") >= 0) {
    if (gguf_get_array(L->g, "tokenizer.ggml.token_type", &L->types, L->err))
      return -1;
    if ((L->types.type != GGUF_TYPE_INT32 && L->types.type != GGUF_TYPE_UINT32) ||
        L->types.n != L->tokens.n)
      return fail(L, "tokenizer.ggml.token_type must be INT32, one per token");
  }
  if (gguf_find_key(L->g, "tokenizer.ggml.pre") >= 0 &&
      gguf_get_string(L->g, "tokenizer.ggml.pre", &pre, NULL, L->err))
    return -1;
  gguf_array_t merges = {0}, scores = {0};
  int has_merges = gguf_find_key(L->g, "tokenizer.ggml.merges") >= 0;
  if (has_merges && gguf_get_array(L->g, "tokenizer.ggml.merges", &merges, L->err))
    return -1;
  if (has_merges && merges.type != GGUF_TYPE_STRING)
    return fail(L, "tokenizer.ggml.merges must be an array of strings");
  if (strcmp(model, "gpt2") == 0) {
    L->byte_level = 1;
    if (!has_merges)
      return fail(L, "tokenizer.ggml.merges is missing (a \"gpt2\" vocabulary needs them)");
  } else if (strcmp(model, "llama") == 0) {
    if (!has_merges) {
      if (gguf_get_array(L->g, "tokenizer.ggml.scores", &scores, L->err))
        return -1;
      if (scores.type != GGUF_TYPE_FLOAT32 || scores.n != L->tokens.n)
        return fail(L, "tokenizer.ggml.scores must be FLOAT32, one per token");
    }
  } else {
    return fail(L, "tokenizer.ggml.model \"%s\" is not supported (gpt2, llama)", model);
  }
  if (L->byte_level && find_byte_level_pre(L, pre))
    return -1;
  bpe_options_t opt = {.byte_level = L->byte_level, .unk_id = -1};
  opt.ignore_merges = L->byte_level && L->pre->ignore_merges_add_bos;
  opt.byte_fallback = opt.fuse_unk = !L->byte_level;
  L->t->bpe = bpe_new(&opt, L->err);
  if (!L->t->bpe || add_pieces(L, L->t->bpe))
    return -1;
  if (has_merges ? add_file_merges(L, L->t->bpe, &merges) : add_score_merges(L, L->t->bpe, &scores))
    return -1;
  if (bpe_finish(L->t->bpe, msg))
    return fail(L, "%s", msg);
  if (L->byte_level ? byte_level_pipeline(L) : sentencepiece_pipeline(L))
    return -1;
  snprintf(L->t->kind, sizeof(L->t->kind), "%s", L->byte_level ? "byte-level BPE" : "BPE");
  return added_tokens(L);
}

tokenizer_t *tokenizer_from_gguf(const gguf_t *g, char *err) {
  gguf_loader_t L = {.path = gguf_path(g), .err = err, .g = g};
  L.t = tokenizer_new(L.path, err);
  if (!L.t || build(&L) || tokenizer_finish(L.t, err)) {
    tokenizer_free(L.t);
    return NULL;
  }
  return L.t;
}
