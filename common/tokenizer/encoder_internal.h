/* encoder_internal.h - an encoding in progress, shared by the two files that
 * make it and by nothing else: tokenizer_encode.c (added tokens, the model,
 * the post-processor) and tokenizer_segment.c (the normalizers and
 * pre-tokenizers that rewrite and split the text between added tokens). */
#ifndef HYDRA_ENCODER_INTERNAL_H
#define HYDRA_ENCODER_INTERNAL_H

#include <stddef.h>

#include "error.h"
#include "tokenizer_internal.h"

typedef struct {
  size_t start, end;
} span_t;

typedef struct {
  size_t start, end;
  int is_match;
} split_item_t;

/* Text with, for each byte, the bytes of the original text it stands for. */
typedef struct {
  char *buf;
  size_t *os, *oe;
  size_t len, cap;
} aligned_t;

typedef struct {
  const tokenizer_t *t;
  tokenizer_encoding_t *out;
  /* the segment being encoded: cur[0 .. cur_len); original offset of byte i
   * is os[i] .. oe[i], or base + i .. base + i + 1 when os is NULL */
  const char *cur;
  size_t cur_len;
  const size_t *os, *oe;
  size_t base;
  aligned_t owned[2];
  int which; /* owned buffer cur lives in, -1: none */
  span_t *pieces, *pieces_next;
  size_t n_pieces, cap_pieces, n_next, cap_next;
  split_item_t *items;
  size_t n_items, cap_items;
  char *spelled; /* a piece as ByteLevel spells it (find_matches with on_bytes) */
  size_t n_spelled, cap_spelled;
  size_t *spelled_byte, cap_spelled_byte;
  pcre2_match_data *md;
  bpe_scratch_t *scratch;
  size_t max_tokens; /* 0: no limit */
  int too_many;      /* stopped at max_tokens */
  char *err;
} encoder_t;

/* The bytes of the original text that byte i of the segment stands for:
 * [orig_start, orig_end). */
static inline size_t orig_start(const encoder_t *e, size_t i) {
  return e->os ? e->os[i] : e->base + i;
}

static inline size_t orig_end(const encoder_t *e, size_t i) {
  return e->oe ? e->oe[i] : e->base + i + 1;
}

static inline int oom(encoder_t *e) {
  return err_set(e->err, "%s: out of memory encoding", e->t->path);
}

/* ---- tokenizer_segment.c: the steps that rewrite or split the segment ---- */

/* Each returns 0, or -1 with e->err. */
int segment_normalize(encoder_t *e, const normalize_step_t *s);
/* on_bytes: p is matched on each piece's ByteLevel spelling (a pre-tokenizer
 * after ByteLevel). */
int segment_split(encoder_t *e, const tokenizer_pattern_t *p, split_behavior_t behavior, int invert,
                  int on_bytes);
int segment_prefix_space(encoder_t *e);
int segment_metaspace(encoder_t *e, const pretokenize_step_t *s);

#endif
