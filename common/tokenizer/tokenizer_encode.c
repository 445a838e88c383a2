/* tokenizer_encode.c - text to an encoding (tokenizer.h), following Hugging
 * Face tokenizers step by step: AddedVocabulary::extract_and_normalize, then
 * each segment between added tokens through the normalizer and
 * PreTokenizedString::split with each pre-tokenizer (tokenizer_segment.c) and
 * the model, then the post-processor; and the tokens of an encoding that cover
 * a substring of its text. */
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "encoder_internal.h"
#include "utf8.h"

static int too_many(encoder_t *e) {
  e->too_many = 1;
  return err_set(e->err, "more than %zu tokens", e->max_tokens);
}

static int push_token(encoder_t *e, int32_t id, size_t start, size_t end) {
  tokenizer_encoding_t *o = e->out;
  if (e->max_tokens && o->n >= e->max_tokens)
    return too_many(e);
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 64;
    int32_t *ids = realloc(o->ids, cap * sizeof(int32_t));
    if (ids)
      o->ids = ids;
    size_t *starts = realloc(o->starts, cap * sizeof(size_t));
    if (starts)
      o->starts = starts;
    size_t *ends = realloc(o->ends, cap * sizeof(size_t));
    if (ends)
      o->ends = ends;
    if (!ids || !starts || !ends)
      return oom(e);
    o->cap = cap;
  }
  o->ids[o->n] = id;
  o->starts[o->n] = start;
  o->ends[o->n] = end;
  o->n++;
  return 0;
}

/* ---- one segment: the text between two added tokens ---- */

static int encode_pieces(encoder_t *e) {
  const bpe_t *bpe = e->t->bpe;
  for (size_t i = 0; i < e->n_pieces; i++) {
    span_t p = e->pieces[i];
    const int32_t *ids;
    const uint32_t *starts, *ends;
    size_t n;
    /* A token covers at most 3 x longest bytes here (a space as Metaspace's
     * 3-byte mark): a piece that needs more tokens than are left is refused
     * before its merges are done. */
    const size_t left = e->max_tokens > e->out->n ? e->max_tokens - e->out->n : 0;
    if (e->max_tokens && (p.end - p.start) / 3 > left * (e->t->longest ? e->t->longest : 1))
      return too_many(e);
    if (bpe_encode(bpe, e->cur + p.start, p.end - p.start, e->scratch, &ids, &starts, &ends, &n,
                   e->err))
      return -1;
    for (size_t k = 0; k < n; k++) {
      size_t s = p.start + starts[k], t = p.start + ends[k];
      if (push_token(e, ids[k], orig_start(e, s), t > s ? orig_end(e, t - 1) : orig_start(e, s)))
        return -1;
    }
  }
  return 0;
}

static int encode_segment(encoder_t *e, const char *text, size_t start, size_t end) {
  if (start == end)
    return 0;
  const tokenizer_t *t = e->t;
  e->cur = text + start;
  e->cur_len = end - start;
  e->os = e->oe = NULL;
  e->base = start;
  e->which = -1;
  for (size_t i = 0; i < t->n_normalize; i++)
    if (segment_normalize(e, &t->normalize[i]))
      return -1;
  e->n_pieces = 0;
  if (e->cur_len == 0)
    return 0;
  if (buffer_grow((void **)&e->pieces, &e->cap_pieces, 1, sizeof(span_t)))
    return oom(e);
  e->pieces[0] = (span_t){0, e->cur_len};
  e->n_pieces = 1;
  for (size_t i = 0; i < t->n_pretokenize; i++) {
    const pretokenize_step_t *s = &t->pretokenize[i];
    int rc = s->kind == PRETOKENIZE_SPLIT
                 ? segment_split(e, &s->pattern, s->behavior, s->invert, s->on_bytes)
             : s->kind == PRETOKENIZE_PREFIX_SPACE ? segment_prefix_space(e)
                                                   : segment_metaspace(e, s);
    if (rc)
      return -1;
  }
  return encode_pieces(e);
}

/* ---- added tokens ---- */

/* Unicode White_Space (Rust's char::is_whitespace). */
static int is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

static int is_word_char(uint32_t c) {
  if (c < 0x80)
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return !is_white_space(c); /* approximation: any other non-space character */
}

/* The code point that ends at text[end) (the last one before it). */
static uint32_t char_before(const char *text, size_t end) {
  if (end == 0)
    return 0;
  size_t i = end - 1, lowest = end >= 4 ? end - 4 : 0;
  while (i > lowest && ((unsigned char)text[i] & 0xC0) == 0x80)
    i--;
  uint32_t cp = 0;
  if (!utf8_decode((const unsigned char *)text + i, end - i, &cp))
    cp = 0;
  return cp;
}

/* The next added-token match at or after `from`, leftmost and then longest:
 * 1 with the match (lstrip/rstrip whitespace included) in [*ms, *me) and its
 * token, 0 when none. `floor` is where lstrip may reach back to. */
static int find_added(const tokenizer_t *t, const char *text, size_t len, size_t from, size_t floor,
                      int flags, size_t *ms, size_t *me, const added_token_t **token) {
  for (size_t i = from; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    for (size_t k = t->added_start[c]; k < t->added_start[c + 1]; k++) {
      const added_token_t *a = &t->added[k];
      if (a->special && (flags & TOKENIZER_SPECIAL_AS_TEXT))
        continue;
      if (a->len > len - i || memcmp(text + i, a->content, a->len) != 0)
        continue;
      size_t s = i, e = i + a->len;
      if (a->single_word) {
        uint32_t after = 0;
        if (e < len && !utf8_decode((const unsigned char *)text + e, len - e, &after))
          after = 0;
        if ((s > 0 && is_word_char(char_before(text, s))) || (e < len && is_word_char(after)))
          continue;
      }
      if (a->lstrip)
        while (s > floor) {
          uint32_t cp = char_before(text, s);
          if (!is_white_space(cp))
            break;
          s -= cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        }
      if (a->rstrip)
        while (e < len) {
          uint32_t cp;
          size_t l = utf8_decode((const unsigned char *)text + e, len - e, &cp);
          if (!l || !is_white_space(cp))
            break;
          e += l;
        }
      *ms = s;
      *me = e;
      *token = a;
      return 1;
    }
  }
  return 0;
}

void tokenizer_encoding_free(tokenizer_encoding_t *e) {
  if (!e)
    return;
  free(e->ids);
  free(e->starts);
  free(e->ends);
  memset(e, 0, sizeof(*e));
}

static void encoder_free(encoder_t *e) {
  for (int i = 0; i < 2; i++) {
    free(e->owned[i].buf);
    free(e->owned[i].os);
    free(e->owned[i].oe);
  }
  free(e->pieces);
  free(e->pieces_next);
  free(e->items);
  free(e->spelled);
  free(e->spelled_byte);
  if (e->md)
    pcre2_match_data_free(e->md);
  bpe_scratch_free(e->scratch);
}

int tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, int flags,
                     tokenizer_encoding_t *out, char *err) {
  return tokenizer_encode_max(t, text, len, flags, 0, out, err);
}

int tokenizer_encode_max(const tokenizer_t *t, const char *text, size_t len, int flags,
                         size_t max_tokens, tokenizer_encoding_t *out, char *err) {
  size_t bad;
  out->n = 0;
  if (!utf8_valid(text, len, &bad))
    return err_set(err,
                   "the text is not valid UTF-8: byte %zu (0x%02X) does not start a valid "
                   "sequence",
                   bad, (unsigned)(unsigned char)text[bad]);
  encoder_t e = {.t = t, .out = out, .err = err, .which = -1, .max_tokens = max_tokens};
  e.md = pcre2_match_data_create(1, NULL);
  e.scratch = bpe_scratch_new();
  int rc = -1;
  if (!e.md || !e.scratch) {
    oom(&e);
    goto done;
  }
  if (flags & TOKENIZER_ADD_SPECIAL)
    for (size_t i = 0; i < t->n_prefix; i++)
      if (push_token(&e, t->prefix[i], 0, 0))
        goto done;
  size_t pos = 0, from = 0, ms, me;
  const added_token_t *a;
  while (t->n_added && find_added(t, text, len, from, pos, flags, &ms, &me, &a)) {
    if (encode_segment(&e, text, pos, ms) || push_token(&e, a->id, ms, me))
      goto done;
    pos = from = me;
  }
  if (encode_segment(&e, text, pos, len))
    goto done;
  if (flags & TOKENIZER_ADD_SPECIAL)
    for (size_t i = 0; i < t->n_suffix; i++)
      if (push_token(&e, t->suffix[i], len, len))
        goto done;
  rc = 0;
done:
  encoder_free(&e);
  if (rc)
    out->n = 0;
  return rc && e.too_many ? TOKENIZER_TOO_MANY : rc;
}

/* ---- positions by substring ---- */

int tokenizer_find_substring(const tokenizer_encoding_t *enc, const char *text, size_t text_len,
                             const char *sub, size_t sub_len, size_t *first, size_t *last,
                             char *err) {
  if (sub_len == 0)
    return err_set(err, "the substring to find is empty");
  const char *hit = tokenizer_find_bytes(text, text_len, sub, sub_len);
  if (!hit)
    return err_set(err, "\"%.*s\" does not occur in the text", (int)(sub_len > 200 ? 200 : sub_len),
                   sub);
  size_t a = (size_t)(hit - text), b = a + sub_len;
  int found = 0;
  for (size_t i = 0; i < enc->n; i++) {
    if (enc->starts[i] < b && enc->ends[i] > a) {
      if (!found)
        *first = i;
      *last = i;
      found = 1;
    }
  }
  if (!found)
    return err_set(err, "no token covers \"%.*s\" (bytes %zu .. %zu of the text)",
                   (int)(sub_len > 200 ? 200 : sub_len), sub, a, b);
  return 0;
}
