/* bpe_encode.c - one pre-tokenized word into token ids (bpe_encode), as
 * Hugging Face's BPE::merge_word does it: the word's initial symbols, the merge
 * loop over a heap of ranked pairs, the per-thread scratch it works in, and the
 * cache of words already encoded (guarded by the model's mutex). */
#include <stdlib.h>
#include <string.h>

#include "bpe_internal.h"
#include "buffer.h"
#include "error.h"
#include "utf8.h"

/* The word cache: words up to CACHE_MAX_WORD bytes, until CACHE_MAX_ENTRIES
 * are held (then no more are added, as Hugging Face's cache does). */
#define CACHE_SLOTS (1u << 17)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_WORD 64

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
