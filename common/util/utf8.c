#include "utf8.h"

#include <string.h>

/* Sequence length a lead byte announces (0: not a lead byte), and the range
 * of the byte after it (RFC 3629's table: it excludes overlong forms,
 * surrogates and code points above U+10FFFF). */
static size_t lead_length(unsigned char c, unsigned char *lo, unsigned char *hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    return 2;
  if (c >= 0xE0 && c <= 0xEF) {
    if (c == 0xE0)
      *lo = 0xA0;
    if (c == 0xED)
      *hi = 0x9F;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (c == 0xF0)
      *lo = 0x90;
    if (c == 0xF4)
      *hi = 0x8F;
    return 4;
  }
  return 0;
}

/* How many bytes at s form the start of a well-formed sequence: the whole
 * sequence when it is valid (*complete = 1), else its longest valid prefix
 * (0 when s[0] is no lead byte). */
static size_t valid_prefix(const unsigned char *s, size_t n, int *complete) {
  unsigned char lo, hi;
  *complete = 0;
  if (n == 0)
    return 0;
  size_t len = lead_length(s[0], &lo, &hi);
  if (len == 0)
    return 0;
  size_t i = 1;
  for (; i < len && i < n; i++) {
    if (s[i] < lo || s[i] > hi)
      return i;
    lo = 0x80;
    hi = 0xBF;
  }
  *complete = i == len;
  return i;
}

size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  int complete;
  size_t len = valid_prefix(s, n, &complete);
  if (!complete)
    return 0;
  if (cp) {
    static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t c = s[0] & lead_mask[len];
    for (size_t i = 1; i < len; i++)
      c = c << 6 | (s[i] & 0x3F);
    *cp = c;
  }
  return len;
}

int utf8_valid(const char *s, size_t n, size_t *bad) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    /* ASCII runs, eight bytes at a time. */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull)
        break;
      i += 8;
    }
    if (i >= n)
      break;
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    size_t len = utf8_decode(p + i, n - i, NULL);
    if (len == 0) {
      if (bad)
        *bad = i;
      return 0;
    }
    i += len;
  }
  return 1;
}

size_t utf8_encode(uint32_t cp, char out[4]) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp >= 0xD800 && cp <= 0xDFFF)
    return 0;
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  if (cp > 0x10FFFF)
    return 0;
  o[0] = (unsigned char)(0xF0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

size_t utf8_cut(const char *s, size_t n) {
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  return n;
}

/* Walks s, calling out to either copy a valid sequence or write U+FFFD for a
 * maximal invalid subpart; with out == NULL it only counts. */
static size_t lossy_walk(const char *s, size_t n, char *out) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, o = 0;
  while (i < n) {
    int complete;
    size_t len = valid_prefix(p + i, n - i, &complete);
    if (complete) {
      if (out)
        memcpy(out + o, p + i, len);
      o += len;
      i += len;
      continue;
    }
    if (out)
      memcpy(out + o, "\xEF\xBF\xBD", 3);
    o += 3;
    i += len ? len : 1;
  }
  return o;
}

size_t utf8_lossy_size(const char *s, size_t n) {
  return lossy_walk(s, n, NULL);
}

size_t utf8_lossy(const char *s, size_t n, char *out) {
  return lossy_walk(s, n, out);
}
