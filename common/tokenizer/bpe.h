/* bpe.h - a byte-pair-encoding model: a vocabulary of pieces, ranked merges,
 * and the encoding of one pre-tokenized word into token ids, exactly as
 * Hugging Face tokenizers' `models::bpe::BPE` does it (dropout aside):
 *
 *   1. the word becomes one symbol per character (per byte for a byte-level
 *      model, whose pieces spell bytes through GPT-2's byte-to-unicode map);
 *      a character missing from the vocabulary becomes its <0xNN> byte tokens
 *      (byte_fallback), else the unknown token (fused with a neighbouring
 *      unknown when fuse_unk), else it is dropped;
 *   2. repeatedly, the adjacent pair with the lowest merge rank (leftmost on
 *      ties) is merged, until no pair has a merge.
 *
 * A model is built once (bpe_new, bpe_add_piece, bpe_add_merge, bpe_finish)
 * and is then read-only, except for a cache of words already encoded, which a
 * mutex guards: bpe_encode may be called from several threads at once, each
 * with its own scratch. Errors follow error.h. */
#ifndef HYDRA_BPE_H
#define HYDRA_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct bpe bpe_t;
typedef struct bpe_scratch bpe_scratch_t;

typedef struct {
  int byte_level;    /* symbols are bytes spelled by the GPT-2 byte-to-unicode map */
  int byte_fallback; /* unknown characters become <0xNN> tokens */
  int fuse_unk;      /* consecutive unknown characters become one unknown token */
  int ignore_merges; /* a word that is itself a piece is that one token */
  int32_t unk_id;    /* the unknown token, or -1 (unknown characters are dropped) */
} bpe_options_t;

bpe_t *bpe_new(const bpe_options_t *options, char *err);
void bpe_free(bpe_t *b);

/* Adds piece `s` (len bytes, as the vocabulary spells it) with id `id`
 * (0 <= id < 2^31 - 1). A piece given twice keeps the later id, as a JSON
 * object or Python dict does. */
int bpe_add_piece(bpe_t *b, const char *s, size_t len, int32_t id, char *err);

/* Appends the merge of pieces `left` and `right` into the piece spelled
 * left+right; its rank is the number of merges added before it (a pair given
 * twice keeps its later rank). Fails when any of the three is not a piece. */
int bpe_add_merge(bpe_t *b, const char *left, size_t left_len, const char *right, size_t right_len,
                  char *err);

/* Ends the building: checks the options against the vocabulary (a byte-level
 * model needs a piece for each of the 256 bytes; unk_id must be a piece). */
int bpe_finish(bpe_t *b, char *err);

/* The id of piece s, or -1. */
int32_t bpe_piece_id(const bpe_t *b, const char *s, size_t len);
/* Spelling of id (NUL-terminated, owned by b) or NULL when no piece has it. */
const char *bpe_piece(const bpe_t *b, int32_t id, size_t *len);
/* One more than the largest id. */
int32_t bpe_n_ids(const bpe_t *b);
size_t bpe_n_merges(const bpe_t *b);
const bpe_options_t *bpe_options(const bpe_t *b);

bpe_scratch_t *bpe_scratch_new(void);
void bpe_scratch_free(bpe_scratch_t *s);

/* Encodes word[0 .. len) (valid UTF-8 unless the model is byte-level): on
 * success *ids hold *n tokens, token i covering bytes [starts[i], ends[i]) of
 * the word, in order; valid until the next call with the same scratch. Fails
 * only when out of memory. */
int bpe_encode(const bpe_t *b, const char *word, size_t len, bpe_scratch_t *s, const int32_t **ids,
               const uint32_t **starts, const uint32_t **ends, size_t *n, char *err);

/* GPT-2's byte-to-unicode map: the code point that spells byte b, and the
 * byte a code point spells (-1 when none). */
uint32_t bpe_byte_char(unsigned char b);
int bpe_char_byte(uint32_t cp);

#endif
