/* tokenizer.h - text to token ids and back, exactly as Hugging Face
 * `tokenizers` does it for the tokenizers hydra's models bring:
 *
 *   - byte-level BPE (GPT-2, SmolLM2, Pythia, Llama 3): GPT-2's byte-to-unicode
 *     map, the pre-tokenizer's regular expressions (PCRE2, UTF + UCP),
 *     digit splitting;
 *   - SentencePiece-style BPE (Llama 1/2, the llama2.c stories models): `▁` for
 *     spaces, the leading-space rule (Metaspace prepend_scheme, or a Prepend
 *     normalizer), byte fallback to <0xNN> tokens.
 *
 * A tokenizer comes from the model itself: a directory's tokenizer.json (its
 * post-processor decides BOS/EOS; tokenizer_config.json's named special
 * tokens are added, as transformers does) or a GGUF file's tokenizer.ggml.*
 * metadata (add_bos_token, add_eos_token, token types), read
 * the way transformers' GGUF loader reads it, except that tokenizer.ggml.pre
 * picks the pre-tokenizer the model was trained with (e.g. "smollm": every
 * digit on its own, as SmolLM2's own tokenizer.json and llama.cpp do).
 *
 * Encoding: added tokens (e.g. <|endoftext|>) are matched in the text first,
 * leftmost-longest; the text between them is normalized, pre-tokenized and
 * BPE-encoded; the post-processor (BOS/EOS) is applied when asked. Every token
 * knows the bytes of the original text it came from.
 *
 * Not supported (a clear error at load time or, for normalization, at encode
 * time): WordPiece, WordLevel and Unigram models, BPE dropout, subword
 * prefixes/suffixes, and Unicode normalization (NFC, NFKC, ...) of text that
 * the normalization would change (text below U+0300 passes NFC unchanged and
 * is accepted).
 *
 * Thread-safety: a tokenizer is read-only after loading, except for an
 * internal word cache guarded by a mutex; every function may be called from
 * several threads at once. Errors follow error.h: `err` is a HYDRA_ERR_LEN
 * buffer or NULL. */
#ifndef HYDRA_TOKENIZER_H
#define HYDRA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tokenizer tokenizer_t;

/* Token ids and where each token lies in the text it was encoded from. */
typedef struct {
  size_t n;       /* number of tokens */
  int32_t *ids;   /* [n] */
  size_t *starts; /* [n]: token i came from text bytes [starts[i], ends[i]) */
  size_t *ends;   /* [n]: tokens the post-processor adds (BOS, EOS) have empty
                     spans; a prepended `▁` or space stands for the character
                     it was put before (as in Hugging Face's offsets) */
  size_t cap;
} tokenizer_encoding_t;

/* Flags for tokenizer_encode. */
enum {
  TOKENIZER_ADD_SPECIAL = 1,     /* add BOS/EOS as the tokenizer's configuration says
                                    (Hugging Face's add_special_tokens=True) */
  TOKENIZER_SPECIAL_AS_TEXT = 2, /* do not match special added tokens in the text:
                                    "<|endoftext|>" is tokenized as plain text */
};

/* Flags for tokenizer_decode. */
enum {
  TOKENIZER_SKIP_SPECIAL = 1, /* leave special added tokens out */
};

/* The two loaders checkpoint_open (checkpoint/checkpoint.h) dispatches to;
 * tokenizer_load there takes a model's path. `json_path` is a
 * tokenizer.json; tokenizer_config.json and config.json next to it are read
 * when present. tokenizer_from_gguf reads an open GGUF file's metadata. Both
 * return NULL and fill err (naming the file and what is wrong) on failure. */
tokenizer_t *tokenizer_load_json(const char *json_path, char *err);
tokenizer_t *tokenizer_from_gguf(const gguf_t *g, char *err);

void tokenizer_free(tokenizer_t *t);

/* One more than the largest token id (model vocabulary and added tokens). */
int32_t tokenizer_n_vocab(const tokenizer_t *t);
/* "byte-level BPE" or "BPE". */
const char *tokenizer_kind(const tokenizer_t *t);
/* BOS / EOS ids the model's configuration names, or -1. */
int32_t tokenizer_bos_id(const tokenizer_t *t);
int32_t tokenizer_eos_id(const tokenizer_t *t);

/* Encodes text[0 .. len) (UTF-8; may hold NUL bytes) into `out`, replacing
 * what it held (initialize *out to all zeros before first use; free with
 * tokenizer_encoding_free). Fails on invalid UTF-8, naming the byte offset,
 * and on unsupported normalization or out of memory. */
int tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, int flags,
                     tokenizer_encoding_t *out, char *err);
/* As tokenizer_encode, stopping once the text needs more than max_tokens
 * tokens (0: no limit): then TOKENIZER_TOO_MANY, err "more than N tokens",
 * the work done bounded by max_tokens rather than by len (a piece that
 * cannot fit is refused before its merges). */
#define TOKENIZER_TOO_MANY (-2)
int tokenizer_encode_max(const tokenizer_t *t, const char *text, size_t len, int flags,
                         size_t max_tokens, tokenizer_encoding_t *out, char *err);
void tokenizer_encoding_free(tokenizer_encoding_t *e);

/* Decodes ids into text as Hugging Face's decode does (its decoder chain,
 * e.g. byte-level, or `▁` -> space + byte fallback + strip of the leading
 * space). Returns a malloc'd NUL-terminated string (*len, if non-NULL, gets
 * its length; it may hold NUL bytes), or NULL with err naming an id out of
 * range. */
char *tokenizer_decode(const tokenizer_t *t, const int32_t *ids, size_t n, int flags, size_t *len,
                       char *err);

/* The bytes token `id` stands for (" Tower", "\n", one byte of a multi-byte
 * character for a byte-level or <0xNN> token, "<|endoftext|>" for an added
 * token), NUL-terminated, owned by t; *len gets the length. NULL when id is
 * out of range. The bytes need not be valid UTF-8 on their own. */
const char *tokenizer_token_text(const tokenizer_t *t, int32_t id, size_t *len);

/* The token as the vocabulary spells it ("ĠTower", "▁Tower", "<0x0A>"):
 * valid UTF-8, NUL-terminated, owned by t. NULL when id is out of range. */
const char *tokenizer_token_piece(const tokenizer_t *t, int32_t id, size_t *len);

/* The id of a token spelled `piece` (an added token's content or a vocabulary
 * piece), or -1 with err "unknown token". */
int32_t tokenizer_token_id(const tokenizer_t *t, const char *piece, char *err);

/* Finds the first occurrence of sub[0 .. sub_len) in text[0 .. text_len)
 * (the text `enc` was encoded from) and stores in *first and *last the indices
 * of the first and last tokens of `enc` that overlap it (the last one is the
 * position a job names by default, e.g. " Tower" for "Eiffel Tower"). Fails
 * when sub is empty or does not occur, naming it. */
int tokenizer_find_substring(const tokenizer_encoding_t *enc, const char *text, size_t text_len,
                             const char *sub, size_t sub_len, size_t *first, size_t *last,
                             char *err);

#endif
