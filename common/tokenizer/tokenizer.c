/* tokenizer.c - a tokenizer as its loaders build it (tokenizer_internal.h):
 * patterns, the pipeline's steps, added tokens and the post-processor's ids;
 * the end of loading, which gives every token the bytes it stands for; and
 * the queries of tokenizer.h on a loaded tokenizer. Encoding is
 * tokenizer_encode.c's, decoding tokenizer_decode.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "error.h"
#include "tokenizer_internal.h"
#include "utf8.h"

#define NO_TEXT SIZE_MAX

/* The first occurrence of pat[0 .. m) in s[0 .. n) (memmem, which C11 and
 * POSIX lack). */
const char *tokenizer_find_bytes(const char *s, size_t n, const char *pat, size_t m) {
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
  p->literal = bytes_dup(s, len);
  p->source = bytes_dup(s, len);
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
 * inside a bracket class are left to PCRE2), and a class inside a class
 * (Oniguruma's union: BLOOM's [^(\s|[.,!?])]) written as one class. A
 * malloc'd string, or NULL with *why set (NULL: out of memory). */
static char *onig_to_pcre2(const char *expr, size_t len, size_t *out_len, const char **why) {
  size_t cap = len * 4 + sizeof(ONIG_SPACE) * 8 + 16, o = 0;
  int in_class = 0, nested = 0;
  *why = NULL;
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
    if (in_class && c == '[' && i + 1 < len && expr[i + 1] == ':') {
      const char *end = tokenizer_find_bytes(expr + i, len - i, ":]", 2);
      size_t n = end ? (size_t)(end - (expr + i)) + 2 : 1; /* a POSIX class, whole */
      memcpy(out + o, expr + i, n);
      o += n;
      i += n - 1;
      continue;
    }
    if (in_class && c == '[') {
      if (i + 1 < len && expr[i + 1] == '^') {
        free(out);
        *why = "a negated class inside a class is not supported";
        return NULL;
      }
      nested++; /* its members join the outer class */
      continue;
    }
    if (in_class && c == '&' && i + 1 < len && expr[i + 1] == '&') {
      free(out);
      *why = "a class intersection (&&) is not supported";
      return NULL;
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
    if (in_class && c == ']' && nested) {
      nested--;
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
  const char *why;
  char *pcre = onig_to_pcre2(expr, len, &pcre_len, &why);
  if (!pcre && why)
    return err_set(err, "regular expression \"%.*s\": %s", (int)len, expr, why);
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
  p->source = bytes_dup(expr, len);
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
  a->content = bytes_dup(content, len);
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
int tokenizer_fallback_byte(const char *s, size_t n) {
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
size_t tokenizer_byte_level_bytes(const char *s, size_t n, char *out) {
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
    const char *hit = pat_len ? tokenizer_find_bytes(s + i, n - i, pat, pat_len) : NULL;
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
  char *cur = bytes_dup(piece, n);
  if (!cur)
    return -1;
  for (size_t k = 0; k < t->n_decode; k++) {
    const decode_step_t *d = &t->decode[k];
    if (d->kind == DECODE_BYTE_LEVEL) {
      len = tokenizer_byte_level_bytes(cur, len, cur);
    } else if (d->kind == DECODE_BYTE_FALLBACK) {
      int b = tokenizer_fallback_byte(cur, len);
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
      cur = rc ? NULL : next ? next : bytes_dup("", 0);
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
      text = bytes_dup(piece, plen);
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

const added_token_t *tokenizer_added_by_id(const tokenizer_t *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab || t->added_of_id[id] < 0)
    return NULL;
  return &t->added[t->added_of_id[id]];
}

const char *tokenizer_token_piece(const tokenizer_t *t, int32_t id, size_t *len) {
  const added_token_t *a = tokenizer_added_by_id(t, id);
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
