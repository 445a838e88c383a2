/* tokenizer.c - encoding and decoding (see tokenizer.h), and the pieces the
 * loaders build a tokenizer from (tokenizer_internal.h). The pipeline follows
 * Hugging Face tokenizers step by step: AddedVocabulary::extract_and_normalize,
 * the normalizer, PreTokenizedString::split with each pre-tokenizer, the model,
 * the post-processor; decode runs the decoder chain (decode_chain). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buffer.h"
#include "error.h"
#include "tokenizer_internal.h"
#include "utf8.h"

#define NO_TEXT SIZE_MAX

static char *dup_bytes(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* The first occurrence of pat[0 .. m) in s[0 .. n) (memmem, which C11 and
 * POSIX lack). */
static const char *find_bytes(const char *s, size_t n, const char *pat, size_t m) {
  if (m == 0 || m > n)
    return NULL;
  const char *end = s + n - m + 1;
  for (const char *p = s; p < end;) {
    p = memchr(p, pat[0], (size_t)(end - p));
    if (!p)
      return NULL;
    if (memcmp(p, pat, m) == 0)
      return p;
    p++;
  }
  return NULL;
}

/* Unicode White_Space (Rust's char::is_whitespace). */
static int is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/* ---- building ---- */

tokenizer_t *tokenizer_new(const char *path, char *err) {
  tokenizer_t *t = calloc(1, sizeof(*t));
  if (!t) {
    err_set(err, "%s: out of memory", path);
    return NULL;
  }
  snprintf(t->path, sizeof(t->path), "%s", path);
  t->bos_id = t->eos_id = -1;
  return t;
}

void tokenizer_pattern_free(tokenizer_pattern_t *p) {
  free(p->literal);
  free(p->source);
  if (p->re)
    pcre2_code_free(p->re);
  memset(p, 0, sizeof(*p));
}

int tokenizer_pattern_literal(tokenizer_pattern_t *p, const char *s, size_t len, char *err) {
  memset(p, 0, sizeof(*p));
  p->literal = dup_bytes(s, len);
  p->source = dup_bytes(s, len);
  if (!p->literal || !p->source) {
    tokenizer_pattern_free(p);
    return err_set(err, "out of memory");
  }
  p->literal_len = len;
  return 0;
}

/* Oniguruma's (Hugging Face's regex engine) \s and \w with Unicode, as
 * PCRE2 class contents: \s is White_Space (PCRE2's also holds U+180E); \w is
 * UTS #18's word class, Alphabetic + marks + decimal digits + connector
 * punctuation + Join_Control (PCRE2's: letters, all numbers and "_"). */
#define ONIG_SPACE                                                                                 \
  "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}"                                              \
  "\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define ONIG_WORD "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"

/* expr with \s \S \w \W spelled out as Oniguruma reads them (\S and \W
 * inside a bracket class are left to PCRE2). A malloc'd string, or NULL. */
static char *onig_to_pcre2(const char *expr, size_t len, size_t *out_len) {
  size_t cap = len * 4 + sizeof(ONIG_SPACE) * 8 + 16, o = 0;
  int in_class = 0;
  char *out = malloc(cap);
  if (!out)
    return NULL;
  for (size_t i = 0; i < len; i++) {
    char c = expr[i];
    if (c == '\\' && i + 1 < len) {
      char n = expr[i + 1];
      const char *set = n == 's' || n == 'S' ? ONIG_SPACE : n == 'w' || n == 'W' ? ONIG_WORD : NULL;
      int negated = n == 'S' || n == 'W';
      if (set && !(in_class && negated)) {
        size_t need = strlen(set) + 4;
        if (o + need + (len - i) * 4 >= cap) {
          cap = (o + need + len * 4) * 2;
          char *q = realloc(out, cap);
          if (!q) {
            free(out);
            return NULL;
          }
          out = q;
        }
        o += (size_t)sprintf(out + o, in_class ? "%s" : negated ? "[^%s]" : "[%s]", set);
      } else {
        out[o++] = c;
        out[o++] = n;
      }
      i++;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = 1;
      out[o++] = c;
      if (i + 1 < len && expr[i + 1] == '^')
        out[o++] = expr[++i];
      if (i + 1 < len && expr[i + 1] == ']') /* a literal ']' first in the class */
        out[o++] = expr[++i];
      continue;
    }
    if (in_class && c == ']')
      in_class = 0;
    out[o++] = c;
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

int tokenizer_pattern_regex(tokenizer_pattern_t *p, const char *expr, size_t len, char *err) {
  memset(p, 0, sizeof(*p));
  int code;
  PCRE2_SIZE at;
  size_t pcre_len;
  char *pcre = onig_to_pcre2(expr, len, &pcre_len);
  if (!pcre)
    return err_set(err, "out of memory");
  /* Oniguruma's Ruby syntax, which tokenizers uses, reads ^ and $ at line
   * breaks, as PCRE2_MULTILINE does. */
  p->re = pcre2_compile((PCRE2_SPTR)pcre, pcre_len, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &code,
                        &at, NULL);
  free(pcre);
  if (!p->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(code, msg, sizeof(msg));
    if (pcre_len == len)
      return err_set(err, "regular expression \"%.*s\" does not compile at offset %zu: %s",
                     (int)len, expr, (size_t)at, (const char *)msg);
    return err_set(err, "regular expression \"%.*s\" does not compile: %s", (int)len, expr,
                   (const char *)msg);
  }

  pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* without JIT, matching is only slower */
  p->source = dup_bytes(expr, len);
  if (!p->source) {
    tokenizer_pattern_free(p);
    return err_set(err, "out of memory");
  }
  return 0;
}

#define DEFINE_ADD_STEP(fn, type, array, count, kind_type)                                         \
  type *fn(tokenizer_t *t, kind_type kind, char *err) {                                            \
    type *p = realloc(t->array, (t->count + 1) * sizeof(type));                                    \
    if (!p) {                                                                                      \
      err_set(err, "%s: out of memory", t->path);                                                  \
      return NULL;                                                                                 \
    }                                                                                              \
    t->array = p;                                                                                  \
    memset(&p[t->count], 0, sizeof(type));                                                         \
    p[t->count].kind = kind;                                                                       \
    return &p[t->count++];                                                                         \
  }

DEFINE_ADD_STEP(tokenizer_add_normalize, normalize_step_t, normalize, n_normalize, normalize_kind_t)
DEFINE_ADD_STEP(tokenizer_add_pretokenize, pretokenize_step_t, pretokenize, n_pretokenize,
                pretokenize_kind_t)
DEFINE_ADD_STEP(tokenizer_add_decode, decode_step_t, decode, n_decode, decode_kind_t)

int tokenizer_add_added(tokenizer_t *t, const char *content, size_t len, int32_t id, int special,
                        char *err) {
  if (len == 0)
    return err_set(err, "%s: added token %d has empty content", t->path, (int)id);
  if (id < 0 || id == INT32_MAX)
    return err_set(err, "%s: added token \"%.*s\" has id %ld out of range", t->path, (int)len,
                   content, (long)id);
  if (buffer_grow((void **)&t->added, &t->cap_added, t->n_added + 1, sizeof(added_token_t)))
    return err_set(err, "%s: out of memory", t->path);
  added_token_t *a = &t->added[t->n_added];
  memset(a, 0, sizeof(*a));
  a->content = dup_bytes(content, len);
  if (!a->content)
    return err_set(err, "%s: out of memory", t->path);
  a->len = len;
  a->id = id;
  a->special = special;
  t->n_added++;
  return 0;
}

added_token_t *tokenizer_last_added(tokenizer_t *t) {
  return t->n_added ? &t->added[t->n_added - 1] : NULL;
}

static int add_id(tokenizer_t *t, int32_t **ids, size_t *n, int32_t id, char *err) {
  int32_t *p = realloc(*ids, (*n + 1) * sizeof(int32_t));
  if (!p)
    return err_set(err, "%s: out of memory", t->path);
  p[(*n)++] = id;
  *ids = p;
  return 0;
}

int tokenizer_add_prefix(tokenizer_t *t, int32_t id, char *err) {
  return add_id(t, &t->prefix, &t->n_prefix, id, err);
}

int tokenizer_add_suffix(tokenizer_t *t, int32_t id, char *err) {
  return add_id(t, &t->suffix, &t->n_suffix, id, err);
}

int32_t tokenizer_lookup(const tokenizer_t *t, const char *s, size_t len) {
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].len == len && memcmp(t->added[i].content, s, len) == 0)
      return t->added[i].id;
  return t->bpe ? bpe_piece_id(t->bpe, s, len) : -1;
}

void tokenizer_free(tokenizer_t *t) {
  if (!t)
    return;
  bpe_free(t->bpe);
  for (size_t i = 0; i < t->n_added; i++)
    free(t->added[i].content);
  free(t->added);
  for (size_t i = 0; i < t->n_normalize; i++) {
    tokenizer_pattern_free(&t->normalize[i].pattern);
    free(t->normalize[i].content);
  }
  free(t->normalize);
  for (size_t i = 0; i < t->n_pretokenize; i++)
    tokenizer_pattern_free(&t->pretokenize[i].pattern);
  free(t->pretokenize);
  for (size_t i = 0; i < t->n_decode; i++) {
    free(t->decode[i].pattern);
    free(t->decode[i].content);
  }
  free(t->decode);
  free(t->prefix);
  free(t->suffix);
  free(t->added_of_id);
  free(t->text_arena);
  free(t->text_off);
  free(t->text_len);
  free(t);
}

/* ---- token texts ---- */

/* The <0xNN> byte a piece names, or -1 (tokenizers' ByteFallback test:
 * exactly six bytes "<0x" two hex digits ">"). */
static int fallback_byte(const char *s, size_t n) {
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
    return -1;
  int v = 0;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0)
      return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Byte-level spelling to bytes: every character must spell a byte, else the
 * token's own UTF-8 is kept (tokenizers' ByteLevel decoder). Writes at most n
 * bytes to out, which may be s itself. */
static size_t byte_level_bytes(const char *s, size_t n, char *out) {
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
    if (!len || bpe_char_byte(cp) < 0) {
      if (out != s)
        memcpy(out, s, n);
      return n;
    }
    i += len;
  }
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += utf8_decode((const unsigned char *)s + i, n - i, &cp);
    out[o++] = (char)bpe_char_byte(cp);
  }
  return o;
}

/* Replaces every occurrence of pat by rep in s[0 .. n), appending to *out. */
static int replace_all(const char *s, size_t n, const char *pat, size_t pat_len, const char *rep,
                       size_t rep_len, char **out, size_t *out_len, size_t *out_cap) {
  size_t i = 0;
  while (i < n) {
    const char *hit = pat_len ? find_bytes(s + i, n - i, pat, pat_len) : NULL;
    size_t copy = hit ? (size_t)(hit - (s + i)) : n - i;
    if (buffer_grow((void **)out, out_cap, *out_len + copy + rep_len + 1, 1))
      return -1;
    memcpy(*out + *out_len, s + i, copy);
    *out_len += copy;
    i += copy;
    if (!hit)
      break;
    memcpy(*out + *out_len, rep, rep_len);
    *out_len += rep_len;
    i += pat_len;
  }
  return 0;
}

/* One token through the decoder chain, without what joins or trims tokens
 * (Fuse, Strip, Metaspace's first-token rule): the bytes it stands for. */
static int token_text_of(const tokenizer_t *t, const char *piece, size_t n, char **out,
                         size_t *out_len) {
  size_t len = n;
  char *cur = dup_bytes(piece, n);
  if (!cur)
    return -1;
  for (size_t k = 0; k < t->n_decode; k++) {
    const decode_step_t *d = &t->decode[k];
    if (d->kind == DECODE_BYTE_LEVEL) {
      len = byte_level_bytes(cur, len, cur);
    } else if (d->kind == DECODE_BYTE_FALLBACK) {
      int b = fallback_byte(cur, len);
      if (b >= 0) {
        cur[0] = (char)b;
        len = 1;
      }
    } else if (d->kind == DECODE_REPLACE || d->kind == DECODE_METASPACE) {
      int meta = d->kind == DECODE_METASPACE;
      char *next = NULL;
      size_t next_len = 0, next_cap = 0;
      int rc = replace_all(cur, len, d->pattern, d->pattern_len, meta ? " " : d->content,
                           meta ? 1 : d->content_len, &next, &next_len, &next_cap);
      free(cur);
      cur = rc ? NULL : next ? next : dup_bytes("", 0);
      if (!cur) {
        free(rc ? next : NULL);
        return -1;
      }
      len = next_len;
    } /* Fuse and Strip join or trim whole sequences: nothing for one token */
  }
  cur[len] = '\0';
  *out = cur;
  *out_len = len;
  return 0;
}

static int added_cmp(const void *a, const void *b) {
  const added_token_t *x = a, *y = b;
  unsigned char fx = (unsigned char)x->content[0], fy = (unsigned char)y->content[0];
  if (fx != fy)
    return fx < fy ? -1 : 1;
  if (x->len != y->len)
    return x->len > y->len ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

int tokenizer_finish(tokenizer_t *t, char *err) {
  if (!t->bpe)
    return err_set(err, "%s: no model", t->path);
  if (t->n_added)
    qsort(t->added, t->n_added, sizeof(added_token_t), added_cmp);
  int32_t n = bpe_n_ids(t->bpe);
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].id >= n)
      n = t->added[i].id + 1;
  t->n_vocab = n;
  for (int c = 0, i = 0; c <= 256; c++) {
    while ((size_t)i < t->n_added && (unsigned char)t->added[i].content[0] < c)
      i++;
    t->added_start[c] = (size_t)i;
  }
  t->added_start[256] = t->n_added;
  t->added_of_id = malloc((size_t)n * sizeof(int32_t));
  if (!t->added_of_id)
    return err_set(err, "%s: out of memory", t->path);
  for (int32_t id = 0; id < n; id++)
    t->added_of_id[id] = -1;
  for (size_t i = t->n_added; i-- > 0;) /* the first of two with one id wins */
    t->added_of_id[t->added[i].id] = (int32_t)i;
  for (size_t i = 0; i < t->n_prefix + t->n_suffix; i++) {
    int32_t id = i < t->n_prefix ? t->prefix[i] : t->suffix[i - t->n_prefix];
    if (id < 0 || id >= n)
      return err_set(err, "%s: the post-processor adds token id %d, which is out of range", t->path,
                     (int)id);
  }
  t->text_off = malloc((size_t)n * sizeof(size_t));
  t->text_len = calloc((size_t)n, sizeof(size_t));
  if (!t->text_off || !t->text_len)
    return err_set(err, "%s: out of memory", t->path);
  size_t arena_len = 0, arena_cap = 0;
  for (int32_t id = 0; id < n; id++) {
    t->text_off[id] = NO_TEXT;
    size_t plen;
    const char *piece = tokenizer_token_piece(t, id, &plen);
    if (!piece)
      continue;
    char *text = NULL;
    size_t text_len = 0;
    if (t->added_of_id[id] >= 0) {
      text = dup_bytes(piece, plen);
      text_len = plen;
    } else if (token_text_of(t, piece, plen, &text, &text_len)) {
      text = NULL;
    }
    if (!text || buffer_grow((void **)&t->text_arena, &arena_cap, arena_len + text_len + 1, 1)) {
      free(text);
      return err_set(err, "%s: out of memory", t->path);
    }
    memcpy(t->text_arena + arena_len, text, text_len + 1);
    t->text_off[id] = arena_len;
    t->text_len[id] = text_len;
    if (plen > t->longest || text_len > t->longest)
      t->longest = plen > text_len ? plen : text_len;
    arena_len += text_len + 1;
    free(text);
  }
  return 0;
}

/* ---- queries ---- */

int32_t tokenizer_n_vocab(const tokenizer_t *t) {
  return t->n_vocab;
}

const char *tokenizer_kind(const tokenizer_t *t) {
  return t->kind;
}

int32_t tokenizer_bos_id(const tokenizer_t *t) {
  return t->bos_id;
}

int32_t tokenizer_eos_id(const tokenizer_t *t) {
  return t->eos_id;
}

static const added_token_t *added_by_id(const tokenizer_t *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab || t->added_of_id[id] < 0)
    return NULL;
  return &t->added[t->added_of_id[id]];
}

const char *tokenizer_token_piece(const tokenizer_t *t, int32_t id, size_t *len) {
  const added_token_t *a = added_by_id(t, id);
  if (a) {
    if (len)
      *len = a->len;
    return a->content;
  }
  return bpe_piece(t->bpe, id, len);
}

const char *tokenizer_token_text(const tokenizer_t *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->n_vocab || t->text_off[id] == NO_TEXT)
    return NULL;
  if (len)
    *len = t->text_len[id];
  return t->text_arena + t->text_off[id];
}

int32_t tokenizer_token_id(const tokenizer_t *t, const char *piece, char *err) {
  int32_t id = tokenizer_lookup(t, piece, strlen(piece));
  if (id < 0)
    err_set(err,
            "%s: unknown token \"%s\": neither an added (special) token nor a vocabulary piece",
            t->path, piece);
  return id;
}

/* ---- encoding ---- */

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
  pcre2_match_data *md;
  bpe_scratch_t *scratch;
  size_t max_tokens; /* 0: no limit */
  int too_many;      /* stopped at max_tokens */
  char *err;
} encoder_t;

static size_t orig_start(const encoder_t *e, size_t i) {
  return e->os ? e->os[i] : e->base + i;
}

static size_t orig_end(const encoder_t *e, size_t i) {
  return e->oe ? e->oe[i] : e->base + i + 1;
}

static int oom(encoder_t *e) {
  return err_set(e->err, "%s: out of memory encoding", e->t->path);
}

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
    const char *hit = find_bytes(s + from, n - from, p->literal, p->literal_len);
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

/* tokenizers' Pattern::find_matches: matches and the gaps between them. */
static int find_matches(encoder_t *e, const tokenizer_pattern_t *p, span_t piece, int invert) {
  e->n_items = 0;
  size_t prev = piece.start, from = piece.start;
  for (;;) {
    /* The piece is matched as a string of its own (no look-behind past it). */
    size_t ms, me;
    int found = pattern_find(p, e->md, e->cur + piece.start, piece.end - piece.start,
                             from - piece.start, &ms, &me);
    ms += piece.start;
    me += piece.start;
    if (found < 0)
      return err_set(e->err, "%s: the pattern \"%s\" failed to match (resource limit)", e->t->path,
                     p->source);
    if (!found)
      break;
    if (ms > prev && push_item(e, prev, ms, invert))
      return oom(e);
    if (push_item(e, ms, me, !invert))
      return oom(e);
    prev = me;
    from = me;
    if (ms == me) { /* an empty match: step over one character */
      if (me >= piece.end)
        break;
      size_t len = utf8_decode((const unsigned char *)e->cur + me, piece.end - me, NULL);
      from = me + (len ? len : 1);
    }
  }
  if (prev < piece.end && push_item(e, prev, piece.end, invert))
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

static int split_pieces(encoder_t *e, const tokenizer_pattern_t *p, split_behavior_t behavior,
                        int invert) {
  e->n_next = 0;
  for (size_t i = 0; i < e->n_pieces; i++) {
    if (find_matches(e, p, e->pieces[i], invert))
      return -1;
    if (apply_behavior(e, behavior))
      return oom(e);
  }
  swap_pieces(e);
  return 0;
}

/* ---- normalizers ---- */

static int normalize_unicode(encoder_t *e, const normalize_step_t *s) {
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

static int normalize(encoder_t *e, const normalize_step_t *s) {
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

static int prefix_space(encoder_t *e) {
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

static int metaspace(encoder_t *e, const pretokenize_step_t *s) {
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
  return split_pieces(e, &lit, SPLIT_MERGED_WITH_NEXT, 0);
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
    if (normalize(e, &t->normalize[i]))
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
    int rc = s->kind == PRETOKENIZE_SPLIT ? split_pieces(e, &s->pattern, s->behavior, s->invert)
             : s->kind == PRETOKENIZE_PREFIX_SPACE ? prefix_space(e)
                                                   : metaspace(e, s);
    if (rc)
      return -1;
  }
  return encode_pieces(e);
}

/* ---- added tokens ---- */

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
      n += byte_level_bytes(string_at(in, i), in->n[i], raw + n);
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
      int b = fallback_byte(string_at(in, i), in->n[i]);
      if (b < 0) {
        if (strings_new(out) || strings_append(out, string_at(in, i), in->n[i]))
          return -1;
        i++;
        continue;
      }
      char bytes[256];
      size_t nb = 0, k = i;
      while (k < in->count && nb < sizeof(bytes) &&
             (b = fallback_byte(string_at(in, k), in->n[k])) >= 0) {
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
            d->pattern_len ? find_bytes(s + k, n - k, d->pattern, d->pattern_len) : NULL;
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
    const added_token_t *a = added_by_id(t, ids[i]);
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

/* ---- positions by substring ---- */

int tokenizer_find_substring(const tokenizer_encoding_t *enc, const char *text, size_t text_len,
                             const char *sub, size_t sub_len, size_t *first, size_t *last,
                             char *err) {
  if (sub_len == 0)
    return err_set(err, "the substring to find is empty");
  const char *hit = find_bytes(text, text_len, sub, sub_len);
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
