#include "bpe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "error.h"
#include "utf8.h"

#define NO_PIECE SIZE_MAX
#define EMPTY_KEY UINT64_MAX

/* The word cache: words up to CACHE_MAX_WORD bytes, until CACHE_MAX_ENTRIES
 * are held (then no more are added, as Hugging Face's cache does). */
#define CACHE_SLOTS (1u << 17)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_WORD 64

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

typedef struct {
  int32_t id;
  int32_t prev, next; /* -1: none */
  uint32_t start, len;
} symbol_t;

typedef struct {
  uint32_t rank;
  uint32_t pos;
  int32_t merged;
} heap_item_t;

struct bpe_scratch {
  symbol_t *sym;
  size_t sym_cap;
  heap_item_t *heap;
  size_t heap_len, heap_cap;
  int32_t *ids;
  uint32_t *starts, *ends;
  size_t out_len, out_cap;
  int32_t *word_ids; /* a cut word's tokens, gathered */
  uint32_t *word_starts, *word_ends;
  size_t word_len, word_cap;
  char *spelled;
  size_t spelled_cap;
};

/* ---- hashing ---- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

static uint64_t hash_bytes(const char *s, size_t n) {
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

static const merge_slot_t *merge_find(const bpe_t *b, int32_t left, int32_t right) {
  if (b->n_merge_slots == 0)
    return NULL;
  uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  size_t mask = b->n_merge_slots - 1;
  for (size_t i = (size_t)mix64(key) & mask;; i = (i + 1) & mask) {
    if (b->merges[i].key == key)
      return &b->merges[i];
    if (b->merges[i].key == EMPTY_KEY)
      return NULL;
  }
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

#define META "\xE2\x96\x81" /* U+2581, sentencepiece's space */
#define META_LEN 3

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

/* ---- scratch ---- */

bpe_scratch_t *bpe_scratch_new(void) {
  return calloc(1, sizeof(bpe_scratch_t));
}

void bpe_scratch_free(bpe_scratch_t *s) {
  if (!s)
    return;
  free(s->sym);
  free(s->heap);
  free(s->ids);
  free(s->starts);
  free(s->ends);
  free(s->word_ids);
  free(s->word_starts);
  free(s->word_ends);
  free(s->spelled);
  free(s);
}

static int out_reserve(bpe_scratch_t *s, size_t need) {
  if (need <= s->out_cap)
    return 0;
  size_t cap = s->out_cap;
  if (buffer_grow((void **)&s->ids, &cap, need, sizeof(int32_t)))
    return -1;
  cap = s->out_cap;
  if (buffer_grow((void **)&s->starts, &cap, need, sizeof(uint32_t)))
    return -1;
  cap = s->out_cap;
  if (buffer_grow((void **)&s->ends, &cap, need, sizeof(uint32_t)))
    return -1;
  s->out_cap = cap;
  return 0;
}

/* ---- the merge loop ---- */

static int heap_less(const heap_item_t *a, const heap_item_t *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(bpe_scratch_t *s, heap_item_t item) {
  if (buffer_grow((void **)&s->heap, &s->heap_cap, s->heap_len + 1, sizeof(heap_item_t)))
    return -1;
  size_t i = s->heap_len++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(&item, &s->heap[parent]))
      break;
    s->heap[i] = s->heap[parent];
    i = parent;
  }
  s->heap[i] = item;
  return 0;
}

static heap_item_t heap_pop(bpe_scratch_t *s) {
  heap_item_t top = s->heap[0], last = s->heap[--s->heap_len];
  size_t i = 0, n = s->heap_len;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && heap_less(&s->heap[c + 1], &s->heap[c]))
      c++;
    if (!heap_less(&s->heap[c], &last))
      break;
    s->heap[i] = s->heap[c];
    i = c;
  }
  if (n > 0)
    s->heap[i] = last;
  return top;
}

static int push_pair(const bpe_t *b, bpe_scratch_t *s, int32_t pos) {
  const symbol_t *x = &s->sym[pos];
  if (x->next < 0)
    return 0;
  const merge_slot_t *m = merge_find(b, x->id, s->sym[x->next].id);
  if (!m)
    return 0;
  return heap_push(s, (heap_item_t){m->rank, (uint32_t)pos, m->merged});
}

/* Hugging Face's Word::merge_all: pop the lowest (rank, position); skip
 * entries made stale by earlier merges. */
static int merge_all(const bpe_t *b, bpe_scratch_t *s, size_t n_sym) {
  s->heap_len = 0;
  for (size_t i = 0; i + 1 < n_sym; i++)
    if (push_pair(b, s, (int32_t)i))
      return -1;
  while (s->heap_len > 0) {
    heap_item_t top = heap_pop(s);
    symbol_t *x = &s->sym[top.pos];
    if (x->len == 0 || x->next < 0)
      continue;
    symbol_t *y = &s->sym[x->next];
    const merge_slot_t *m = merge_find(b, x->id, y->id);
    if (!m || m->merged != top.merged)
      continue;
    x->id = top.merged;
    x->len = y->start + y->len - x->start; /* across characters that were dropped */
    x->next = y->next;
    y->len = 0;
    if (x->next >= 0)
      s->sym[x->next].prev = (int32_t)top.pos;
    if (x->prev >= 0 && push_pair(b, s, x->prev))
      return -1;
    if (push_pair(b, s, (int32_t)top.pos))
      return -1;
  }
  return 0;
}

/* Appends a symbol (merging into the previous one is never needed here). */
static void add_symbol(bpe_scratch_t *s, size_t *n, int32_t id, uint32_t start, uint32_t len) {
  symbol_t *x = &s->sym[*n];
  x->id = id;
  x->start = start;
  x->len = len;
  x->prev = *n ? (int32_t)*n - 1 : -1;
  x->next = -1;
  if (*n)
    s->sym[*n - 1].next = (int32_t)*n;
  (*n)++;
}

/* The word as symbols, one per character (Hugging Face's BPE::merge_word
 * before merging, including its order of a pending unknown token and byte
 * fallback tokens). */
static size_t initial_symbols(const bpe_t *b, const char *word, size_t len, bpe_scratch_t *s) {
  const unsigned char *w = (const unsigned char *)word;
  size_t n = 0;
  int32_t unk_len = -1; /* bytes of a pending unknown token, -1: none */
  uint32_t unk_start = 0;
  for (size_t i = 0; i < len;) {
    size_t clen = 1;
    int32_t id;
    if (b->opt.byte_level) {
      id = b->byte_id[w[i]];
    } else {
      if (w[i] < 0x80) {
        id = b->ascii_id[w[i]];
      } else {
        clen = utf8_decode(w + i, len - i, NULL);
        if (clen == 0)
          clen = 1;
        id = bpe_piece_id(b, word + i, clen);
      }
    }
    if (id >= 0) {
      if (unk_len >= 0) {
        add_symbol(s, &n, b->opt.unk_id, unk_start, (uint32_t)unk_len);
        unk_len = -1;
      }
      add_symbol(s, &n, id, (uint32_t)i, (uint32_t)clen);
      i += clen;
      continue;
    }
    int fell_back = 0;
    if (b->opt.byte_fallback) {
      fell_back = 1;
      for (size_t k = 0; k < clen; k++)
        fell_back &= b->fallback_id[w[i + k]] >= 0;
      if (fell_back)
        for (size_t k = 0; k < clen; k++)
          add_symbol(s, &n, b->fallback_id[w[i + k]], (uint32_t)(i + k), 1);
    }
    if (!fell_back && b->opt.unk_id >= 0) {
      if (unk_len >= 0 && b->opt.fuse_unk) {
        unk_len += (int32_t)clen;
      } else {
        if (unk_len >= 0)
          add_symbol(s, &n, b->opt.unk_id, unk_start, (uint32_t)unk_len);
        unk_start = (uint32_t)i;
        unk_len = (int32_t)clen;
      }
    }
    i += clen;
  }
  if (unk_len >= 0)
    add_symbol(s, &n, b->opt.unk_id, unk_start, (uint32_t)unk_len);
  return n;
}

/* ignore_merges: the word's own piece, spelled as the vocabulary spells it. */
static int32_t whole_word_id(const bpe_t *b, const char *word, size_t len, bpe_scratch_t *s) {
  if (!b->opt.byte_level)
    return bpe_piece_id(b, word, len);
  if (buffer_grow((void **)&s->spelled, &s->spelled_cap, 2 * len + 1, 1))
    return -1;
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    n += utf8_encode(bpe_byte_char((unsigned char)word[i]), s->spelled + n);
  return bpe_piece_id(b, s->spelled, n);
}

/* ---- the cache ---- */

static int cache_get(bpe_t *b, const char *word, size_t len, uint64_t h, bpe_scratch_t *s) {
  int found = 0;
  pthread_mutex_lock(&b->cache_lock);
  if (b->cache) {
    size_t mask = CACHE_SLOTS - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
      const cache_slot_t *c = &b->cache[i];
      if (c->n == 0)
        break;
      if (c->hash == h && c->key_len == len && memcmp(b->cache_keys + c->key_off, word, len) == 0) {
        if (out_reserve(s, c->n) == 0) {
          memcpy(s->ids, b->cache_ids + c->val_off, c->n * sizeof(int32_t));
          memcpy(s->starts, b->cache_starts + c->val_off, c->n * sizeof(uint32_t));
          memcpy(s->ends, b->cache_ends + c->val_off, c->n * sizeof(uint32_t));
          s->out_len = c->n;
          found = 1;
        }
        break;
      }
    }
  }
  pthread_mutex_unlock(&b->cache_lock);
  return found;
}

/* Best effort: a full cache or a failed allocation only skips the insert. */
static void cache_put(bpe_t *b, const char *word, size_t len, uint64_t h, const bpe_scratch_t *s) {
  if (s->out_len == 0 || s->out_len > UINT16_MAX)
    return;
  pthread_mutex_lock(&b->cache_lock);
  if (!b->cache)
    b->cache = calloc(CACHE_SLOTS, sizeof(cache_slot_t));
  if (!b->cache || b->cache_entries >= CACHE_MAX_ENTRIES)
    goto done;
  size_t keys_cap = b->cache_keys_cap, vals_cap = b->cache_vals_cap;
  if (buffer_grow((void **)&b->cache_keys, &keys_cap, b->cache_keys_len + len, 1))
    goto done;
  b->cache_keys_cap = keys_cap;
  size_t need = b->cache_vals_len + s->out_len;
  vals_cap = b->cache_vals_cap;
  if (buffer_grow((void **)&b->cache_ids, &vals_cap, need, sizeof(int32_t)))
    goto done;
  vals_cap = b->cache_vals_cap;
  if (buffer_grow((void **)&b->cache_starts, &vals_cap, need, sizeof(uint32_t)))
    goto done;
  vals_cap = b->cache_vals_cap;
  if (buffer_grow((void **)&b->cache_ends, &vals_cap, need, sizeof(uint32_t)))
    goto done;
  b->cache_vals_cap = vals_cap;
  size_t mask = CACHE_SLOTS - 1, i = (size_t)h & mask;
  for (;; i = (i + 1) & mask) {
    cache_slot_t *c = &b->cache[i];
    if (c->n == 0)
      break;
    if (c->hash == h && c->key_len == len && memcmp(b->cache_keys + c->key_off, word, len) == 0)
      goto done; /* another thread added it */
  }
  cache_slot_t *c = &b->cache[i];
  c->hash = h;
  c->key_off = (uint32_t)b->cache_keys_len;
  c->key_len = (uint16_t)len;
  c->val_off = (uint32_t)b->cache_vals_len;
  c->n = (uint16_t)s->out_len;
  memcpy(b->cache_keys + b->cache_keys_len, word, len);
  memcpy(b->cache_ids + b->cache_vals_len, s->ids, s->out_len * sizeof(int32_t));
  memcpy(b->cache_starts + b->cache_vals_len, s->starts, s->out_len * sizeof(uint32_t));
  memcpy(b->cache_ends + b->cache_vals_len, s->ends, s->out_len * sizeof(uint32_t));
  b->cache_keys_len += len;
  b->cache_vals_len += s->out_len;
  b->cache_entries++;
done:
  pthread_mutex_unlock(&b->cache_lock);
}

/* ---- encoding ---- */

static int encode_uncached(const bpe_t *b, const char *word, size_t len, bpe_scratch_t *s) {
  s->out_len = 0;
  if (b->opt.ignore_merges) {
    int32_t id = whole_word_id(b, word, len, s);
    if (id >= 0) {
      if (out_reserve(s, 1))
        return -1;
      s->ids[0] = id;
      s->starts[0] = 0;
      s->ends[0] = (uint32_t)len;
      s->out_len = 1;
      return 0;
    }
  }
  /* Byte fallback turns a character into up to 4 symbols: at most len. */
  if (buffer_grow((void **)&s->sym, &s->sym_cap, len + 1, sizeof(symbol_t)))
    return -1;
  size_t n_sym = initial_symbols(b, word, len, s);
  if (merge_all(b, s, n_sym))
    return -1;
  if (out_reserve(s, n_sym + 1))
    return -1;
  for (int32_t i = n_sym ? 0 : -1; i >= 0; i = s->sym[i].next) {
    s->ids[s->out_len] = s->sym[i].id;
    s->starts[s->out_len] = s->sym[i].start;
    s->ends[s->out_len] = s->sym[i].start + s->sym[i].len;
    s->out_len++;
  }
  return 0;
}

/* One word (or part of a cut word) into s->ids, through the cache. */
static int encode_part(const bpe_t *b, const char *word, size_t len, bpe_scratch_t *s) {
  bpe_t *mutable_b = (bpe_t *)b; /* only the mutex-guarded cache changes */
  int cacheable = len <= CACHE_MAX_WORD;
  uint64_t h = cacheable ? hash_bytes(word, len) : 0;
  if (cacheable && cache_get(mutable_b, word, len, h, s))
    return 0;
  if (encode_uncached(b, word, len, s))
    return -1;
  if (cacheable)
    cache_put(mutable_b, word, len, h, s);
  return 0;
}

/* Where the part of word starting at `from` ends: before the next `▁` that
 * follows a character other than `▁`, or at len. */
static size_t part_end(const char *word, size_t len, size_t from) {
  for (size_t i = from + 1; i + META_LEN <= len; i++) {
    if (word[i] != META[0] || memcmp(word + i, META, META_LEN) != 0)
      continue;
    if (i < META_LEN || memcmp(word + i - META_LEN, META, META_LEN) != 0)
      return i;
    i += META_LEN - 1;
  }
  return len;
}

static int encode_cut(const bpe_t *b, const char *word, size_t len, bpe_scratch_t *s) {
  s->word_len = 0;
  for (size_t from = 0; from < len;) {
    size_t to = part_end(word, len, from);
    if (encode_part(b, word + from, to - from, s))
      return -1;
    size_t need = s->word_len + s->out_len, cap = s->word_cap;
    if (need > s->word_cap) {
      if (buffer_grow((void **)&s->word_ids, &cap, need, sizeof(int32_t)))
        return -1;
      cap = s->word_cap;
      if (buffer_grow((void **)&s->word_starts, &cap, need, sizeof(uint32_t)))
        return -1;
      cap = s->word_cap;
      if (buffer_grow((void **)&s->word_ends, &cap, need, sizeof(uint32_t)))
        return -1;
      s->word_cap = cap;
    }
    for (size_t k = 0; k < s->out_len; k++) {
      s->word_ids[s->word_len] = s->ids[k];
      s->word_starts[s->word_len] = s->starts[k] + (uint32_t)from;
      s->word_ends[s->word_len] = s->ends[k] + (uint32_t)from;
      s->word_len++;
    }
    from = to;
  }
  return 0;
}

int bpe_encode(const bpe_t *b, const char *word, size_t len, bpe_scratch_t *s, const int32_t **ids,
               const uint32_t **starts, const uint32_t **ends, size_t *n, char *err) {
  if (len > UINT32_MAX / 2)
    return err_set(err, "a word of %zu bytes is too long to encode", len);
  if (b->meta_split && part_end(word, len, 0) < len) {
    if (encode_cut(b, word, len, s))
      return err_set(err, "out of memory encoding a word of %zu bytes", len);
    *ids = s->word_ids;
    *starts = s->word_starts;
    *ends = s->word_ends;
    *n = s->word_len;
    return 0;
  }
  if (encode_part(b, word, len, s))
    return err_set(err, "out of memory encoding a word of %zu bytes", len);
  *ids = s->ids;
  *starts = s->starts;
  *ends = s->ends;
  *n = s->out_len;
  return 0;
}
