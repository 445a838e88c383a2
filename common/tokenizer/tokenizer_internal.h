/* tokenizer_internal.h - the parts of a tokenizer, shared by tokenizer.c
 * (building, token texts, queries), the encoder (tokenizer_encode.c,
 * tokenizer_segment.c), the decoder (tokenizer_decode.c) and the two loaders
 * (tokenizer_json.c, tokenizer_gguf.c); nothing outside tokenizer/ includes
 * it. Each part mirrors the Hugging Face `tokenizers` component of the same
 * name. */
#ifndef HYDRA_TOKENIZER_INTERNAL_H
#define HYDRA_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "tokenizer.h"

/* GPT-2's pre-tokenizer expression (tokenizers' ByteLevel, use_regex). */
#define TOKENIZER_GPT2_PATTERN                                                                     \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* tokenizers' Punctuation pre-tokenizer: Rust's char::is_ascii_punctuation
 * or the general categories P*. */
#define TOKENIZER_PUNCTUATION_CLASS "[\\p{P}!-/:-@\\[-`{-~]"

/* A pattern: a literal string or a regular expression (PCRE2, UTF + UCP). */
typedef struct {
  char *literal; /* NULL for a regular expression */
  size_t literal_len;
  pcre2_code *re;
  char *source; /* the expression as written, for messages */
} tokenizer_pattern_t;

/* SplitDelimiterBehavior. */
typedef enum {
  SPLIT_REMOVED,
  SPLIT_ISOLATED,
  SPLIT_MERGED_WITH_PREVIOUS,
  SPLIT_MERGED_WITH_NEXT,
  SPLIT_CONTIGUOUS,
} split_behavior_t;

/* Metaspace prepend_scheme. */
typedef enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS } prepend_scheme_t;

typedef enum {
  NORMALIZE_PREPEND, /* content before a non-empty text */
  NORMALIZE_REPLACE, /* every match of pattern by content */
  NORMALIZE_UNICODE, /* NFC; NFD/NFKC/NFKD accepted only where they are the identity */
} normalize_kind_t;

typedef struct {
  normalize_kind_t kind;
  tokenizer_pattern_t pattern;
  char *content;
  size_t content_len;
  char form[8];            /* NORMALIZE_UNICODE: "NFC", ... */
  uint32_t identity_below; /* NORMALIZE_UNICODE: code points below this are unchanged */
} normalize_step_t;

typedef enum {
  PRETOKENIZE_SPLIT,        /* Split, Digits, ByteLevel's expression, Whitespace */
  PRETOKENIZE_PREFIX_SPACE, /* ByteLevel add_prefix_space */
  PRETOKENIZE_METASPACE,
} pretokenize_kind_t;

typedef struct {
  pretokenize_kind_t kind;
  tokenizer_pattern_t pattern; /* SPLIT */
  split_behavior_t behavior;   /* SPLIT */
  int invert;                  /* SPLIT */
  int on_bytes;                /* SPLIT: after ByteLevel, on the bytes' ByteLevel spelling */
  char replacement[8];         /* METASPACE: the character, UTF-8 */
  size_t replacement_len;
  prepend_scheme_t prepend; /* METASPACE */
  int split;                /* METASPACE: split before each replacement character */
} pretokenize_step_t;

typedef enum {
  DECODE_BYTE_LEVEL,
  DECODE_REPLACE,
  DECODE_BYTE_FALLBACK,
  DECODE_FUSE,
  DECODE_STRIP,
  DECODE_METASPACE,
} decode_kind_t;

typedef struct {
  decode_kind_t kind;
  char *pattern; /* REPLACE: a literal; METASPACE: the replacement character */
  size_t pattern_len;
  char *content; /* REPLACE: the replacement; STRIP: the character */
  size_t content_len;
  int start, stop;          /* STRIP: how many characters at most */
  prepend_scheme_t prepend; /* METASPACE: != NEVER drops the character in token 0 */
} decode_step_t;

typedef struct {
  char *content;
  size_t len;
  int32_t id;
  int special, lstrip, rstrip, single_word, normalized;
} added_token_t;

struct tokenizer {
  char path[1024];
  char kind[32];
  bpe_t *bpe;

  added_token_t *added; /* sorted by first byte, then longest first */
  size_t n_added, cap_added;
  size_t added_start[257]; /* added[added_start[c] .. added_start[c + 1]) begin with byte c */
  int32_t *added_of_id;    /* [n_vocab]: index into added, or -1 */

  normalize_step_t *normalize;
  size_t n_normalize;
  pretokenize_step_t *pretokenize;
  size_t n_pretokenize;
  decode_step_t *decode;
  size_t n_decode;
  int has_decoder; /* without one, decode joins the tokens with spaces */

  int32_t *prefix, *suffix; /* the post-processor's tokens around the text */
  size_t n_prefix, n_suffix;
  int32_t bos_id, eos_id;

  int32_t n_vocab;
  char *text_arena; /* tokenizer_token_text of each id */
  size_t *text_off; /* [n_vocab], SIZE_MAX: no token */
  size_t *text_len;
  size_t longest; /* the longest token, spelled or as text (bytes): bounds the
                     tokens a text needs from below (tokenizer_encode_max) */
};

/* Allocates an empty tokenizer that names `path` in messages. */
tokenizer_t *tokenizer_new(const char *path, char *err);

/* Builders for the loaders; each returns 0 or -1 with err. */
int tokenizer_pattern_literal(tokenizer_pattern_t *p, const char *s, size_t len, char *err);
int tokenizer_pattern_regex(tokenizer_pattern_t *p, const char *expr, size_t len, char *err);
void tokenizer_pattern_free(tokenizer_pattern_t *p);

normalize_step_t *tokenizer_add_normalize(tokenizer_t *t, normalize_kind_t kind, char *err);
pretokenize_step_t *tokenizer_add_pretokenize(tokenizer_t *t, pretokenize_kind_t kind, char *err);
decode_step_t *tokenizer_add_decode(tokenizer_t *t, decode_kind_t kind, char *err);
int tokenizer_add_added(tokenizer_t *t, const char *content, size_t len, int32_t id, int special,
                        char *err);
/* The most recently added added token, to set its flags. */
added_token_t *tokenizer_last_added(tokenizer_t *t);
/* Appends id to the post-processor's prefix or suffix. */
int tokenizer_add_prefix(tokenizer_t *t, int32_t id, char *err);
int tokenizer_add_suffix(tokenizer_t *t, int32_t id, char *err);
/* The id of an added token's content, or of a vocabulary piece; -1 if none. */
int32_t tokenizer_lookup(const tokenizer_t *t, const char *s, size_t len);

/* Ends loading: sorts the added tokens and computes each token's text.
 * Requires t->bpe. */
int tokenizer_finish(tokenizer_t *t, char *err);

/* tokenizer.c's byte helpers, which the encoder and decoder share. */
/* The first occurrence of pat[0 .. m) in s[0 .. n), or NULL (memmem). */
const char *tokenizer_find_bytes(const char *s, size_t n, const char *pat, size_t m);
/* The byte a <0xNN> piece names, or -1. */
int tokenizer_fallback_byte(const char *s, size_t n);
/* A byte-level spelling as the bytes it spells (tokenizers' ByteLevel
 * decoder); writes at most n bytes to out, which may be s. */
size_t tokenizer_byte_level_bytes(const char *s, size_t n, char *out);
/* The added token that has id, or NULL. */
const added_token_t *tokenizer_added_by_id(const tokenizer_t *t, int32_t id);

#endif
