/* bpe.c - a BPE model (bpe.h) as it is built and then read: GPT-2's
 * byte-to-unicode map, the vocabulary of pieces and the ranked merges (open
 * addressing tables, bpe_internal.h), the checks that end the building, and
 * the queries. Encoding words is bpe_encode.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"
#include "buffer.h"
#include "error.h"
#include "utf8.h"

/* ---- GPT-2 byte-to-unicode map ---- */

/* Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF spell themselves; the other 68
 * take U+0100 onwards, in byte order. */
static int byte_is_printable(unsigned b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

/* The 68 others in byte order: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD. */
uint32_t bpe_byte_char(unsigned char b) {
  if (byte_is_printable(b))
    return b;
  if (b <= 0x20)
    return 0x100u + b;
  if (b <= 0xA0)
    return 0x100u + 33 + (b - 0x7Fu);
  return 0x100u + 67; /* 0xAD */
}

int bpe_char_byte(uint32_t cp) {
  if (cp < 0x100)
    return byte_is_printable(cp) ? (int)cp : -1;
  uint32_t n = cp - 0x100;
  if (n < 33)
    return (int)n;
  if (n < 67)
    return (int)(0x7F + n - 33);
  return n == 67 ? 0xAD : -1;
}

/* ---- building ---- */

bpe_t *bpe_new(const bpe_options_t *options, char *err) {
  bpe_t *b = calloc(1, sizeof(*b));
  if (!b) {
    err_set(err, "out of memory creating a BPE model");
    return NULL;
  }
  b->opt = *options;
  for (int i = 0; i < 256; i++)
    b->byte_id[i] = b->fallback_id[i] = -1;
  pthread_mutex_init(&b->cache_lock, NULL);
  return b;
}

void bpe_free(bpe_t *b) {
  if (!b)
    return;
  pthread_mutex_destroy(&b->cache_lock);
  free(b->arena);
  free(b->piece_off);
  free(b->piece_len);
  free(b->piece_slots);
  free(b->piece_hash);
  free(b->merges);
  free(b->cache);
  free(b->cache_keys);
  free(b->cache_ids);
  free(b->cache_starts);
  free(b->cache_ends);
  free(b);
}

static const char *piece_at(const bpe_t *b, int32_t id) {
  return b->arena + b->piece_off[id];
}

int32_t bpe_piece_id(const bpe_t *b, const char *s, size_t len) {
  if (b->n_piece_slots == 0)
    return -1;
  uint64_t h = hash_bytes(s, len);
  size_t mask = b->n_piece_slots - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    int32_t id = b->piece_slots[i];
    if (id < 0)
      return -1;
    if (b->piece_hash[i] == h && b->piece_len[id] == len && memcmp(piece_at(b, id), s, len) == 0)
      return id;
  }
}

/* Inserts or replaces the slot for spelling s. */
static void piece_slot_put(bpe_t *b, const char *s, size_t len, uint64_t h, int32_t id) {
  size_t mask = b->n_piece_slots - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    int32_t old = b->piece_slots[i];
    if (old < 0) {
      b->piece_slots[i] = id;
      b->piece_hash[i] = h;
      b->n_pieces++;
      return;
    }
    if (b->piece_hash[i] == h && b->piece_len[old] == len &&
        memcmp(piece_at(b, old), s, len) == 0) {
      b->piece_slots[i] = id;
      return;
    }
  }
}

static int grow_piece_slots(bpe_t *b) {
  size_t n = b->n_piece_slots ? b->n_piece_slots * 2 : 1024;
  int32_t *old_slots = b->piece_slots;
  uint64_t *old_hash = b->piece_hash;
  size_t old_n = b->n_piece_slots;
  b->piece_slots = malloc(n * sizeof(int32_t));
  b->piece_hash = malloc(n * sizeof(uint64_t));
  if (!b->piece_slots || !b->piece_hash) {
    free(b->piece_slots);
    free(b->piece_hash);
    b->piece_slots = old_slots;
    b->piece_hash = old_hash;
    return -1;
  }
  memset(b->piece_slots, 0xff, n * sizeof(int32_t));
  b->n_piece_slots = n;
  b->n_pieces = 0;
  for (size_t i = 0; i < old_n; i++) {
    int32_t id = old_slots[i];
    if (id >= 0)
      piece_slot_put(b, piece_at(b, id), b->piece_len[id], old_hash[i], id);
  }
  free(old_slots);
  free(old_hash);
  return 0;
}

int bpe_add_piece(bpe_t *b, const char *s, size_t len, int32_t id, char *err) {
  if (id < 0 || id == INT32_MAX)
    return err_set(err, "piece id %ld is out of range", (long)id);
  if (len > UINT32_MAX / 2)
    return err_set(err, "piece %d is too long", (int)id);
  if (id >= b->cap_ids) {
    int32_t cap = b->cap_ids ? b->cap_ids : 1024;
    while (cap <= id)
      cap = cap > INT32_MAX / 2 ? INT32_MAX : cap * 2;
    size_t *off = realloc(b->piece_off, (size_t)cap * sizeof(size_t));
    if (off)
      b->piece_off = off;
    uint32_t *lens = realloc(b->piece_len, (size_t)cap * sizeof(uint32_t));
    if (lens)
      b->piece_len = lens;
    if (!off || !lens)
      return err_set(err, "out of memory adding piece %d", (int)id);
    for (int32_t i = b->cap_ids; i < cap; i++) {
      b->piece_off[i] = NO_PIECE;
      b->piece_len[i] = 0;
    }
    b->cap_ids = cap;
  }
  if (buffer_grow((void **)&b->arena, &b->arena_cap, b->arena_len + len + 1, 1))
    return err_set(err, "out of memory adding piece %d", (int)id);
  if ((b->n_pieces + 1) * 2 > b->n_piece_slots && grow_piece_slots(b))
    return err_set(err, "out of memory adding piece %d", (int)id);
  memcpy(b->arena + b->arena_len, s, len);
  b->arena[b->arena_len + len] = '\0';
  b->piece_off[id] = b->arena_len;
  b->piece_len[id] = (uint32_t)len;
  b->arena_len += len + 1;
  if (id >= b->n_ids)
    b->n_ids = id + 1;
  piece_slot_put(b, s, len, hash_bytes(s, len), id);
  return 0;
}

static void merge_put(bpe_t *b, uint64_t key, uint32_t rank, int32_t merged) {
  size_t mask = b->n_merge_slots - 1;
  for (size_t i = (size_t)mix64(key) & mask;; i = (i + 1) & mask) {
    if (b->merges[i].key == key || b->merges[i].key == EMPTY_KEY) {
      b->merges[i] = (merge_slot_t){key, rank, merged};
      return;
    }
  }
}

static int grow_merges(bpe_t *b) {
  size_t n = b->n_merge_slots ? b->n_merge_slots * 2 : 1024;
  merge_slot_t *old = b->merges;
  size_t old_n = b->n_merge_slots;
  b->merges = malloc(n * sizeof(merge_slot_t));
  if (!b->merges) {
    b->merges = old;
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    b->merges[i].key = EMPTY_KEY;
  b->n_merge_slots = n;
  for (size_t i = 0; i < old_n; i++)
    if (old[i].key != EMPTY_KEY)
      merge_put(b, old[i].key, old[i].rank, old[i].merged);
  free(old);
  return 0;
}

int bpe_add_merge(bpe_t *b, const char *left, size_t left_len, const char *right, size_t right_len,
                  char *err) {
  int32_t l = bpe_piece_id(b, left, left_len), r = bpe_piece_id(b, right, right_len);
  if (l < 0 || r < 0)
    return err_set(err, "merge %zu (\"%.*s\" \"%.*s\"): \"%.*s\" is not in the vocabulary",
                   b->n_merges, (int)left_len, left, (int)right_len, right,
                   (int)(l < 0 ? left_len : right_len), l < 0 ? left : right);
  char buf[256];
  char *joined = left_len + right_len <= sizeof(buf) ? buf : malloc(left_len + right_len);
  if (!joined)
    return err_set(err, "out of memory adding merge %zu", b->n_merges);
  memcpy(joined, left, left_len);
  memcpy(joined + left_len, right, right_len);
  int32_t m = bpe_piece_id(b, joined, left_len + right_len);
  if (joined != buf)
    free(joined);
  if (m < 0)
    return err_set(err, "merge %zu (\"%.*s\" \"%.*s\"): the merged piece is not in the vocabulary",
                   b->n_merges, (int)left_len, left, (int)right_len, right);
  if (b->n_merges >= UINT32_MAX - 1)
    return err_set(err, "too many merges");
  if ((b->n_merges + 1) * 2 > b->n_merge_slots && grow_merges(b))
    return err_set(err, "out of memory adding merge %zu", b->n_merges);
  merge_put(b, (uint64_t)(uint32_t)l << 32 | (uint32_t)r, (uint32_t)b->n_merges, m);
  b->n_merges++;
  return 0;
}

/* A sentencepiece vocabulary's pieces hold `▁` only in a leading run ("▁the",
 * "▁▁"), so no merge can join a character to a `▁` after it: a word can be
 * cut before every `▁` that follows another character, and the parts encoded
 * (and cached) on their own, with the same result. Checked on the vocabulary;
 * needs `▁` to be a piece itself (so it is never part of a fused unknown
 * token) and no ignore_merges (whose whole-word rule sees the uncut word). */
static int meta_split_safe(const bpe_t *b) {
  if (b->opt.byte_level || b->opt.ignore_merges || bpe_piece_id(b, META, META_LEN) < 0)
    return 0;
  for (int32_t id = 0; id < b->n_ids; id++) {
    if (b->piece_off[id] == NO_PIECE)
      continue;
    const char *p = piece_at(b, id);
    size_t n = b->piece_len[id], i = 0;
    while (i + META_LEN <= n && memcmp(p + i, META, META_LEN) == 0)
      i += META_LEN;
    for (; i + META_LEN <= n; i++)
      if (memcmp(p + i, META, META_LEN) == 0)
        return 0;
  }
  return 1;
}

int bpe_finish(bpe_t *b, char *err) {
  for (int i = 0; i < 256; i++) {
    char spelled[8];
    size_t n = utf8_encode(bpe_byte_char((unsigned char)i), spelled);
    b->byte_id[i] = bpe_piece_id(b, spelled, n);
    n = (size_t)snprintf(spelled, sizeof(spelled), "<0x%02X>", i);
    b->fallback_id[i] = bpe_piece_id(b, spelled, n);
  }
  for (int i = 0; i < 128; i++) {
    char c = (char)i;
    b->ascii_id[i] = bpe_piece_id(b, &c, 1);
  }
  b->meta_split = meta_split_safe(b);
  if (b->opt.unk_id >= 0 && (b->opt.unk_id >= b->n_ids || b->piece_off[b->opt.unk_id] == NO_PIECE))
    return err_set(err, "the unknown token id %d is not in the vocabulary", (int)b->opt.unk_id);
  b->finished = 1;
  return 0;
}

const char *bpe_piece(const bpe_t *b, int32_t id, size_t *len) {
  if (id < 0 || id >= b->n_ids || b->piece_off[id] == NO_PIECE)
    return NULL;
  if (len)
    *len = b->piece_len[id];
  return piece_at(b, id);
}

int32_t bpe_n_ids(const bpe_t *b) {
  return b->n_ids;
}

size_t bpe_n_merges(const bpe_t *b) {
  return b->n_merges;
}

const bpe_options_t *bpe_options(const bpe_t *b) {
  return &b->opt;
}
