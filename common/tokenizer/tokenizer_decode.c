/* tokenizer_decode.c - token ids back to text (tokenizer.h): the tokens'
 * pieces as a list of strings, passed through the decoder chain
 * (tokenizers' decode_chain) and joined. */
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "error.h"
#include "tokenizer_internal.h"
#include "utf8.h"

/* ---- decoding: a list of strings through the decoder chain ---- */

typedef struct {
  char *buf;
  size_t len, cap;
  size_t *off, *n; /* string i is buf[off[i] .. off[i] + n[i]) */
  size_t count, cap_count;
} strings_t;

static void strings_free(strings_t *s) {
  free(s->buf);
  free(s->off);
  free(s->n);
  memset(s, 0, sizeof(*s));
}

/* Starts a new, empty string. */
static int strings_new(strings_t *s) {
  if (s->count == s->cap_count) {
    size_t cap = s->cap_count ? s->cap_count * 2 : 16;
    size_t *off = realloc(s->off, cap * sizeof(size_t));
    if (off)
      s->off = off;
    size_t *n = realloc(s->n, cap * sizeof(size_t));
    if (n)
      s->n = n;
    if (!off || !n)
      return -1;
    s->cap_count = cap;
  }
  s->off[s->count] = s->len;
  s->n[s->count] = 0;
  s->count++;
  return 0;
}

/* Appends bytes to the last string. */
static int strings_append(strings_t *s, const char *p, size_t n) {
  if (buffer_grow((void **)&s->buf, &s->cap, s->len + n + 1, 1))
    return -1;
  if (n)
    memcpy(s->buf + s->len, p, n);
  s->len += n;
  s->n[s->count - 1] += n;
  return 0;
}

static const char *string_at(const strings_t *s, size_t i) {
  return s->buf ? s->buf + s->off[i] : ""; /* no buffer yet: every string is empty */
}

static int decode_step(const decode_step_t *d, const strings_t *in, strings_t *out) {
  switch (d->kind) {
  case DECODE_BYTE_LEVEL: {
    char *raw = malloc(in->len + 1);
    size_t n = 0;
    if (!raw)
      return -1;
    for (size_t i = 0; i < in->count; i++)
      n += tokenizer_byte_level_bytes(string_at(in, i), in->n[i], raw + n);
    char *fixed = malloc(utf8_lossy_size(raw, n) + 1);
    int rc = !fixed || strings_new(out) || strings_append(out, fixed, utf8_lossy(raw, n, fixed));
    free(raw);
    free(fixed);
    return rc ? -1 : 0;
  }
  case DECODE_FUSE:
    if (strings_new(out))
      return -1;
    for (size_t i = 0; i < in->count; i++)
      if (strings_append(out, string_at(in, i), in->n[i]))
        return -1;
    return 0;
  case DECODE_BYTE_FALLBACK:
    for (size_t i = 0; i < in->count;) {
      int b = tokenizer_fallback_byte(string_at(in, i), in->n[i]);
      if (b < 0) {
        if (strings_new(out) || strings_append(out, string_at(in, i), in->n[i]))
          return -1;
        i++;
        continue;
      }
      char bytes[256];
      size_t nb = 0, k = i;
      while (k < in->count && nb < sizeof(bytes) &&
             (b = tokenizer_fallback_byte(string_at(in, k), in->n[k])) >= 0) {
        bytes[nb++] = (char)b;
        k++;
      }
      /* A run that is valid UTF-8 becomes one string, else one U+FFFD per byte. */
      if (utf8_valid(bytes, nb, NULL)) {
        if (strings_new(out) || strings_append(out, bytes, nb))
          return -1;
      } else {
        for (size_t j = 0; j < nb; j++)
          if (strings_new(out) || strings_append(out, "\xEF\xBF\xBD", 3))
            return -1;
      }
      i = k;
    }
    return 0;
  case DECODE_REPLACE:
  case DECODE_METASPACE:
    for (size_t i = 0; i < in->count; i++) {
      const char *s = string_at(in, i);
      size_t n = in->n[i];
      const char *rep = d->kind == DECODE_REPLACE ? d->content : " ";
      size_t rep_len = d->kind == DECODE_REPLACE ? d->content_len : 1;
      if (d->kind == DECODE_METASPACE && i == 0 && d->prepend != PREPEND_NEVER)
        rep_len = 0;
      if (strings_new(out))
        return -1;
      for (size_t k = 0; k < n;) {
        const char *hit =
            d->pattern_len ? tokenizer_find_bytes(s + k, n - k, d->pattern, d->pattern_len) : NULL;
        size_t stop = hit ? (size_t)(hit - s) : n;
        if (strings_append(out, s + k, stop - k))
          return -1;
        if (!hit)
          break;
        if (strings_append(out, rep, rep_len))
          return -1;
        k = stop + d->pattern_len;
      }
    }
    return 0;
  case DECODE_STRIP:
    for (size_t i = 0; i < in->count; i++) {
      const char *s = string_at(in, i);
      size_t a = 0, b = in->n[i], c = d->content_len;
      for (int k = 0; k < d->start && b - a >= c && memcmp(s + a, d->content, c) == 0; k++)
        a += c;
      for (int k = 0; k < d->stop && b - a >= c && memcmp(s + b - c, d->content, c) == 0; k++)
        b -= c;
      if (strings_new(out) || strings_append(out, s + a, b - a))
        return -1;
    }
    return 0;
  }
  return 0;
}

char *tokenizer_decode(const tokenizer_t *t, const int32_t *ids, size_t n, int flags, size_t *len,
                       char *err) {
  strings_t cur = {0}, next = {0};
  char *result = NULL;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->n_vocab) {
      err_set(err, "%s: token id %ld (at %zu) is out of range 0 .. %d", t->path, (long)ids[i], i,
              (int)t->n_vocab - 1);
      goto done;
    }
    const added_token_t *a = tokenizer_added_by_id(t, ids[i]);
    if (a && a->special && (flags & TOKENIZER_SKIP_SPECIAL))
      continue;
    size_t plen;
    const char *piece = tokenizer_token_piece(t, ids[i], &plen);
    if (!piece) {
      err_set(err, "%s: token id %ld (at %zu) has no piece in the vocabulary", t->path,
              (long)ids[i], i);
      goto done;
    }
    if (strings_new(&cur) || strings_append(&cur, piece, plen))
      goto oom;
  }
  if (!t->has_decoder) {
    /* tokenizers without a decoder: the tokens joined by spaces. */
    if (strings_new(&next))
      goto oom;
    for (size_t i = 0; i < cur.count; i++)
      if ((i && strings_append(&next, " ", 1)) ||
          strings_append(&next, string_at(&cur, i), cur.n[i]))
        goto oom;
    strings_free(&cur);
    cur = next;
    memset(&next, 0, sizeof(next));
  }
  for (size_t k = 0; k < t->n_decode; k++) {
    if (decode_step(&t->decode[k], &cur, &next))
      goto oom;
    strings_free(&cur);
    cur = next;
    memset(&next, 0, sizeof(next));
  }
  size_t total = 0;
  for (size_t i = 0; i < cur.count; i++)
    total += cur.n[i];
  result = malloc(total + 1);
  if (!result)
    goto oom;
  total = 0;
  for (size_t i = 0; i < cur.count; i++) {
    memcpy(result + total, string_at(&cur, i), cur.n[i]);
    total += cur.n[i];
  }
  result[total] = '\0';
  if (len)
    *len = total;
  goto done;
oom:
  err_set(err, "%s: out of memory decoding %zu tokens", t->path, n);
done:
  strings_free(&cur);
  strings_free(&next);
  return result;
}
