/* tokenizer_segment.c - one segment of text (between two added tokens) as
 * tokenizers' NormalizedString and PreTokenizedString hold it: rewritten by the
 * normalizers, prefix spaces and Metaspace with every byte's span in the
 * original text kept, and split into pieces by the pre-tokenizers' patterns
 * (SplitDelimiterBehavior). */
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "encoder_internal.h"
#include "unicode_nfc.h"
#include "utf8.h"

/* ---- rewriting the segment (normalizers, prefix spaces, Metaspace) ---- */

static aligned_t *rewrite_begin(encoder_t *e) {
  aligned_t *a = &e->owned[e->which == 0 ? 1 : 0];
  a->len = 0;
  return a;
}

static int rewrite_reserve(aligned_t *a, size_t extra) {
  if (a->len + extra <= a->cap)
    return 0;
  size_t cap = a->cap ? a->cap : 256;
  while (cap < a->len + extra + 1)
    cap *= 2;
  char *buf = realloc(a->buf, cap);
  if (buf)
    a->buf = buf;
  size_t *os = realloc(a->os, cap * sizeof(size_t));
  if (os)
    a->os = os;
  size_t *oe = realloc(a->oe, cap * sizeof(size_t));
  if (oe)
    a->oe = oe;
  if (!buf || !os || !oe)
    return -1;
  a->cap = cap;
  return 0;
}

/* Appends new bytes that stand for original bytes [os, oe). */
static int emit(aligned_t *a, const char *s, size_t n, size_t os, size_t oe) {
  if (n == 0)
    return 0;
  if (rewrite_reserve(a, n))
    return -1;
  memcpy(a->buf + a->len, s, n);
  for (size_t i = 0; i < n; i++) {
    a->os[a->len + i] = os;
    a->oe[a->len + i] = oe;
  }
  a->len += n;
  return 0;
}

/* Appends cur[from .. to) with its alignment. */
static int emit_copy(encoder_t *e, aligned_t *a, size_t from, size_t to) {
  if (rewrite_reserve(a, to - from))
    return -1;
  if (to > from)
    memcpy(a->buf + a->len, e->cur + from, to - from);
  for (size_t i = from; i < to; i++) {
    a->os[a->len + i - from] = orig_start(e, i);
    a->oe[a->len + i - from] = orig_end(e, i);
  }
  a->len += to - from;
  return 0;
}

/* Prepends s before cur[at ..]: as in tokenizers' NormalizedString::prepend,
 * the new bytes stand for the character they are put before. */
static int emit_prepend(encoder_t *e, aligned_t *a, const char *s, size_t n, size_t at,
                        size_t end) {
  size_t clen = utf8_decode((const unsigned char *)e->cur + at, end - at, NULL);
  size_t last = at + (clen ? clen : 1) - 1;
  return emit(a, s, n, orig_start(e, at), orig_end(e, last));
}

static void rewrite_end(encoder_t *e, aligned_t *a) {
  e->which = (int)(a - e->owned);
  e->cur = a->buf;
  e->cur_len = a->len;
  e->os = a->os;
  e->oe = a->oe;
}

/* ---- patterns ---- */

/* First match of p in s[from .. n): 1 and [*ms, *me), 0 when none, -1 when
 * the matcher fails (e.g. its resource limits). */
static int pattern_find(const tokenizer_pattern_t *p, pcre2_match_data *md, const char *s, size_t n,
                        size_t from, size_t *ms, size_t *me) {
  if (p->literal) {
    if (p->literal_len == 0 || from >= n)
      return 0;
    const char *hit = tokenizer_find_bytes(s + from, n - from, p->literal, p->literal_len);
    if (!hit)
      return 0;
    *ms = (size_t)(hit - s);
    *me = *ms + p->literal_len;
    return 1;
  }
  if (from > n)
    return 0;
  int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
  if (rc == PCRE2_ERROR_NOMATCH)
    return 0;
  if (rc < 0)
    return -1;
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
  *ms = ov[0];
  *me = ov[1];
  return 1;
}

static int push_item(encoder_t *e, size_t start, size_t end, int is_match) {
  if (buffer_grow((void **)&e->items, &e->cap_items, e->n_items + 1, sizeof(split_item_t)))
    return -1;
  e->items[e->n_items++] = (split_item_t){start, end, is_match};
  return 0;
}

static int push_next(encoder_t *e, size_t start, size_t end) {
  if (start == end)
    return 0; /* tokenizers drops empty splits */
  if (buffer_grow((void **)&e->pieces_next, &e->cap_next, e->n_next + 1, sizeof(span_t)))
    return -1;
  e->pieces_next[e->n_next++] = (span_t){start, end};
  return 0;
}

/* piece's bytes spelled as ByteLevel spells them (one character per byte),
 * in e->spelled, with e->spelled_byte[k] the byte of the piece that the
 * character at spelled offset k stands for (at character starts, and at the
 * end: the piece's length). */
static int spell_bytes(encoder_t *e, span_t piece) {
  size_t n = piece.end - piece.start;
  if (buffer_grow((void **)&e->spelled, &e->cap_spelled, 2 * n + 1, 1) ||
      buffer_grow((void **)&e->spelled_byte, &e->cap_spelled_byte, 2 * n + 1, sizeof(size_t)))
    return oom(e);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    e->spelled_byte[o] = i;
    o += utf8_encode(bpe_byte_char((unsigned char)e->cur[piece.start + i]), e->spelled + o);
  }
  e->spelled_byte[o] = n;
  e->n_spelled = o;
  return 0;
}

/* tokenizers' Pattern::find_matches: matches and the gaps between them; with
 * on_bytes, matched on the piece's ByteLevel spelling (a pre-tokenizer after
 * ByteLevel sees that text), the matches mapped back onto its bytes. */
static int find_matches(encoder_t *e, const tokenizer_pattern_t *p, span_t piece, int invert,
                        int on_bytes) {
  e->n_items = 0;
  if (on_bytes && spell_bytes(e, piece))
    return -1;
  /* The piece is matched as a string of its own (no look-behind past it). */
  const char *subject = on_bytes ? e->spelled : e->cur + piece.start;
  size_t n = on_bytes ? e->n_spelled : piece.end - piece.start;
  size_t prev = 0, from = 0;
  for (;;) {
    size_t ms, me;
    int found = pattern_find(p, e->md, subject, n, from, &ms, &me);
    if (found < 0)
      return err_set(e->err, "%s: the pattern \"%s\" failed to match (resource limit)", e->t->path,
                     p->source);
    if (!found)
      break;
    size_t raw_ms = on_bytes ? e->spelled_byte[ms] : ms,
           raw_me = on_bytes ? e->spelled_byte[me] : me;
    size_t raw_prev = on_bytes ? e->spelled_byte[prev] : prev;
    if (ms > prev && push_item(e, piece.start + raw_prev, piece.start + raw_ms, invert))
      return oom(e);
    if (push_item(e, piece.start + raw_ms, piece.start + raw_me, !invert))
      return oom(e);
    prev = me;
    from = me;
    if (ms == me) { /* an empty match: step over one character */
      if (me >= n)
        break;
      size_t len = utf8_decode((const unsigned char *)subject + me, n - me, NULL);
      from = me + (len ? len : 1);
    }
  }
  size_t raw_prev = on_bytes ? e->spelled_byte[prev] : prev;
  if (prev < n && push_item(e, piece.start + raw_prev, piece.end, invert))
    return oom(e);
  return 0;
}

/* tokenizers' NormalizedString::split: the behaviours of SplitDelimiterBehavior. */
static int apply_behavior(encoder_t *e, split_behavior_t behavior) {
  split_item_t *it = e->items;
  size_t n = e->n_items;
  switch (behavior) {
  case SPLIT_REMOVED:
    for (size_t i = 0; i < n; i++)
      if (!it[i].is_match && push_next(e, it[i].start, it[i].end))
        return -1;
    return 0;
  case SPLIT_ISOLATED:
    for (size_t i = 0; i < n; i++)
      if (push_next(e, it[i].start, it[i].end))
        return -1;
    return 0;
  case SPLIT_MERGED_WITH_PREVIOUS:
  case SPLIT_CONTIGUOUS: {
    size_t n_out = 0;
    int previous_match = 0;
    for (size_t i = 0; i < n; i++) {
      int merge = behavior == SPLIT_CONTIGUOUS ? it[i].is_match == previous_match
                                               : it[i].is_match && !previous_match;
      if (merge && n_out > 0)
        it[n_out - 1].end = it[i].end;
      else
        it[n_out++] = it[i];
      previous_match = it[i].is_match;
    }
    for (size_t i = 0; i < n_out; i++)
      if (push_next(e, it[i].start, it[i].end))
        return -1;
    return 0;
  }
  case SPLIT_MERGED_WITH_NEXT: {
    /* Walk backwards, folding a delimiter into the piece after it. */
    size_t n_out = 0; /* built in it[n - n_out .. n), right to left */
    int previous_match = 0;
    for (size_t k = n; k-- > 0;) {
      split_item_t cur = it[k];
      if (cur.is_match && !previous_match && n_out > 0)
        it[n - n_out].start = cur.start;
      else
        it[n - ++n_out] = cur;
      previous_match = cur.is_match;
    }
    for (size_t i = n - n_out; i < n; i++)
      if (push_next(e, it[i].start, it[i].end))
        return -1;
    return 0;
  }
  }
  return 0;
}

static void swap_pieces(encoder_t *e) {
  span_t *p = e->pieces;
  size_t cap = e->cap_pieces;
  e->pieces = e->pieces_next;
  e->cap_pieces = e->cap_next;
  e->n_pieces = e->n_next;
  e->pieces_next = p;
  e->cap_next = cap;
  e->n_next = 0;
}

int segment_split(encoder_t *e, const tokenizer_pattern_t *p, split_behavior_t behavior, int invert,
                  int on_bytes) {
  e->n_next = 0;
  for (size_t i = 0; i < e->n_pieces; i++) {
    if (find_matches(e, p, e->pieces[i], invert, on_bytes))
      return -1;
    if (apply_behavior(e, behavior))
      return oom(e);
  }
  swap_pieces(e);
  return 0;
}

/* ---- normalizers ---- */

/* Where the chunk starting at cur[from] ends: at the next NFC boundary (or a
 * byte that is not UTF-8, which is a chunk of its own). */
static size_t nfc_chunk_end(const encoder_t *e, size_t from) {
  size_t at = from;
  do {
    size_t len = utf8_decode((const unsigned char *)e->cur + at, e->cur_len - at, NULL);
    if (!len)
      return at == from ? at + 1 : at;
    at += len;
    uint32_t cp;
    len = utf8_decode((const unsigned char *)e->cur + at, e->cur_len - at, &cp);
    if (!len || unicode_nfc_boundary(cp))
      return at;
  } while (at < e->cur_len);
  return at;
}

/* NFC, chunk by chunk between boundaries: a chunk the quick check passes is
 * copied with its alignment; another is normalized, each new character
 * standing for the character it came from (a composite for its starter), as
 * tokenizers' NormalizedString::nfc aligns them. */
static int normalize_nfc(encoder_t *e) {
  if (unicode_nfc_is_quick(e->cur, e->cur_len))
    return 0;
  aligned_t *a = rewrite_begin(e);
  unicode_char_t *chars = NULL;
  size_t cap = 0;
  for (size_t from = 0, to; from < e->cur_len; from = to) {
    to = nfc_chunk_end(e, from);
    if (unicode_nfc_is_quick(e->cur + from, to - from)) {
      if (emit_copy(e, a, from, to))
        goto oom;
      continue;
    }
    if (buffer_grow((void **)&chars, &cap, 4 * (to - from) + 4, sizeof(*chars)))
      goto oom;
    size_t n = 0;
    for (size_t at = from; at < to;) {
      size_t len = utf8_decode((const unsigned char *)e->cur + at, to - at, &chars[n].cp);
      chars[n].start = orig_start(e, at);
      chars[n++].end = orig_end(e, at + len - 1);
      at += len;
    }
    n = unicode_nfc_chars(chars, n);
    for (size_t i = 0; i < n; i++) {
      char utf8[4];
      if (emit(a, utf8, utf8_encode(chars[i].cp, utf8), chars[i].start, chars[i].end))
        goto oom;
    }
  }
  free(chars);
  rewrite_end(e, a);
  return 0;
oom:
  free(chars);
  return oom(e);
}

static int normalize_unicode(encoder_t *e, const normalize_step_t *s) {
  if (strcmp(s->form, "NFC") == 0)
    return normalize_nfc(e);
  for (size_t i = 0; i < e->cur_len;) {
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)e->cur + i, e->cur_len - i, &cp);
    if (len == 0)
      len = 1;
    else if (cp >= s->identity_below)
      return err_set(e->err,
                     "%s: the text needs Unicode %s normalization at byte %zu (U+%04X), which "
                     "hydra's tokenizer does not implement",
                     e->t->path, s->form, orig_start(e, i), (unsigned)cp);
    i += len;
  }
  return 0;
}

int segment_normalize(encoder_t *e, const normalize_step_t *s) {
  if (s->kind == NORMALIZE_UNICODE)
    return normalize_unicode(e, s);
  if (e->cur_len == 0)
    return 0;
  aligned_t *a = rewrite_begin(e);
  if (s->kind == NORMALIZE_PREPEND) {
    if (emit_prepend(e, a, s->content, s->content_len, 0, e->cur_len) ||
        emit_copy(e, a, 0, e->cur_len))
      return oom(e);
    rewrite_end(e, a);
    return 0;
  }
  size_t from = 0, copied = 0;
  for (;;) {
    size_t ms, me;
    int found = pattern_find(&s->pattern, e->md, e->cur, e->cur_len, from, &ms, &me);
    if (found < 0)
      return err_set(e->err, "%s: the pattern \"%s\" failed to match (resource limit)", e->t->path,
                     s->pattern.source);
    if (!found)
      break;
    if (ms == me) {
      if (me >= e->cur_len)
        break;
      from = me + 1;
      continue;
    }
    if (emit_copy(e, a, copied, ms) ||
        emit(a, s->content, s->content_len, orig_start(e, ms), orig_end(e, me - 1)))
      return oom(e);
    copied = from = me;
  }
  if (emit_copy(e, a, copied, e->cur_len))
    return oom(e);
  rewrite_end(e, a);
  return 0;
}

/* ---- pre-tokenizers that rewrite ---- */

int segment_prefix_space(encoder_t *e) {
  aligned_t *a = rewrite_begin(e);
  e->n_next = 0;
  for (size_t i = 0; i < e->n_pieces; i++) {
    span_t p = e->pieces[i];
    size_t start = a->len;
    if (e->cur[p.start] != ' ' && emit_prepend(e, a, " ", 1, p.start, p.end))
      return oom(e);
    if (emit_copy(e, a, p.start, p.end) || push_next(e, start, a->len))
      return oom(e);
  }
  rewrite_end(e, a);
  swap_pieces(e);
  return 0;
}

int segment_metaspace(encoder_t *e, const pretokenize_step_t *s) {
  aligned_t *a = rewrite_begin(e);
  e->n_next = 0;
  const char *rep = s->replacement;
  size_t rep_len = s->replacement_len;
  for (size_t i = 0; i < e->n_pieces; i++) {
    span_t p = e->pieces[i];
    size_t start = a->len;
    int starts_with = e->cur[p.start] == ' ' ||
                      (p.end - p.start >= rep_len && memcmp(e->cur + p.start, rep, rep_len) == 0);
    int prepend = !starts_with && (s->prepend == PREPEND_ALWAYS ||
                                   (s->prepend == PREPEND_FIRST && orig_start(e, p.start) == 0));
    if (prepend && emit_prepend(e, a, rep, rep_len, p.start, p.end))
      return oom(e);
    for (size_t k = p.start; k < p.end;) {
      const char *sp = memchr(e->cur + k, ' ', p.end - k);
      size_t stop = sp ? (size_t)(sp - e->cur) : p.end;
      if (emit_copy(e, a, k, stop))
        return oom(e);
      if (!sp)
        break;
      if (emit(a, rep, rep_len, orig_start(e, stop), orig_end(e, stop)))
        return oom(e);
      k = stop + 1;
    }
    if (push_next(e, start, a->len))
      return oom(e);
  }
  rewrite_end(e, a);
  swap_pieces(e);
  if (!s->split)
    return 0;
  tokenizer_pattern_t lit = {0};
  lit.literal = (char *)rep;
  lit.literal_len = rep_len;
  lit.source = (char *)rep;
  return segment_split(e, &lit, SPLIT_MERGED_WITH_NEXT, 0, 0);
}
