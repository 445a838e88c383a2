/* bpe_internal.h - the BPE model's tables, shared by bpe.c (building them,
 * the queries) and bpe_encode.c (encoding words through them); nothing else
 * includes it. */
#ifndef HYDRA_BPE_INTERNAL_H
#define HYDRA_BPE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "bpe.h"

#define NO_PIECE SIZE_MAX
#define EMPTY_KEY UINT64_MAX
#define META "\xE2\x96\x81" /* U+2581, sentencepiece's space */
#define META_LEN 3

typedef struct {
  uint64_t key; /* left id << 32 | right id */
  uint32_t rank;
  int32_t merged;
} merge_slot_t;

typedef struct {
  uint64_t hash;
  uint32_t key_off, val_off; /* into cache_keys, cache_ids/cache_lens */
  uint16_t key_len, n;       /* n == 0: empty slot */
} cache_slot_t;

struct bpe {
  bpe_options_t opt;

  char *arena; /* the pieces' spellings, each NUL-terminated */
  size_t arena_len, arena_cap;
  size_t *piece_off; /* [cap_ids], NO_PIECE where no piece has the id */
  uint32_t *piece_len;
  int32_t n_ids, cap_ids;

  int32_t *piece_slots; /* open addressing: spelling -> id, -1 empty */
  uint64_t *piece_hash;
  size_t n_piece_slots, n_pieces;

  merge_slot_t *merges;
  size_t n_merge_slots, n_merges;

  int32_t byte_id[256];     /* byte-level: the piece of each single byte */
  int32_t fallback_id[256]; /* <0xNN> pieces */
  int32_t ascii_id[128];    /* pieces of single ASCII characters */
  int meta_split;           /* words may be cut before each "X▁" (see bpe_finish) */
  int finished;

  pthread_mutex_t cache_lock;
  cache_slot_t *cache;
  size_t cache_entries;
  char *cache_keys;
  size_t cache_keys_len, cache_keys_cap;
  int32_t *cache_ids;
  uint32_t *cache_starts, *cache_ends;
  size_t cache_vals_len, cache_vals_cap;
};

/* ---- hashing ---- */

static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

static inline uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001B3ull);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ mix64(w)) * 0x100000001B3ull;
    s += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  return mix64(h ^ w);
}

#endif
