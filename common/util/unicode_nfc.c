/* unicode_nfc.c - NFC as UAX #15 defines it (section 3 for the forms, the
 * Unicode Standard section 3.11 for decomposition, ordering and composition,
 * section 3.12 for Hangul). */
#include "unicode_nfc.h"

#include <stdlib.h>

#include "unicode_nfc_tables.h"
#include "utf8.h"

/* Hangul syllables (Unicode section 3.12). */
#define S_BASE 0xAC00u
#define L_BASE 0x1100u
#define V_BASE 0x1161u
#define T_BASE 0x11A7u
#define L_COUNT 19u
#define V_COUNT 21u
#define T_COUNT 28u
#define N_COUNT (V_COUNT * T_COUNT)
#define S_COUNT (L_COUNT * N_COUNT)

static const unicode_nfc_record_t *record(uint32_t cp) {
  if (cp > 0x10FFFF)
    return &unicode_nfc_records[0];
  uint16_t block = unicode_nfc_stage1[cp >> UNICODE_NFC_BLOCK_SHIFT];
  return &unicode_nfc_records[unicode_nfc_stage2[block]
                                                [cp & ((1u << UNICODE_NFC_BLOCK_SHIFT) - 1)]];
}

int unicode_nfc_boundary(uint32_t cp) {
  const unicode_nfc_record_t *r = record(cp);
  return r->ccc == 0 && r->quick_check == UNICODE_NFC_QC_YES;
}

int unicode_nfc_is_quick(const char *s, size_t n) {
  unsigned last_ccc = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)s + i, n - i, &cp);
    if (!len)
      return 0;
    i += len;
    if (cp < 0x300) {
      last_ccc = 0;
      continue;
    }
    const unicode_nfc_record_t *r = record(cp);
    if (r->quick_check != UNICODE_NFC_QC_YES || (r->ccc && last_ccc > r->ccc))
      return 0;
    last_ccc = r->ccc;
  }
  return 1;
}

/* Writes the full canonical decomposition of c into out; returns its length. */
static size_t decompose(const unicode_char_t *c, unicode_char_t *out) {
  uint32_t cp = c->cp;
  if (cp - S_BASE < S_COUNT) {
    uint32_t s = cp - S_BASE, t = s % T_COUNT;
    out[0] = (unicode_char_t){L_BASE + s / N_COUNT, c->start, c->end};
    out[1] = (unicode_char_t){V_BASE + s % N_COUNT / T_COUNT, c->start, c->end};
    if (t)
      out[2] = (unicode_char_t){T_BASE + t, c->start, c->end};
    return t ? 3 : 2;
  }
  const unicode_nfc_record_t *r = record(cp);
  if (!r->len) {
    out[0] = *c;
    return 1;
  }
  for (size_t i = 0; i < r->len; i++)
    out[i] = (unicode_char_t){unicode_nfc_decompositions[r->offset + i], c->start, c->end};
  return r->len;
}

/* The primary composite of a and b, or 0 when there is none. */
static uint32_t compose(uint32_t a, uint32_t b) {
  if (a - L_BASE < L_COUNT && b - V_BASE < V_COUNT)
    return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
  if (a - S_BASE < S_COUNT && (a - S_BASE) % T_COUNT == 0 && b - T_BASE - 1 < T_COUNT - 1)
    return a + (b - T_BASE);
  size_t lo = 0, hi = unicode_nfc_n_pairs;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const unicode_nfc_pair_t *p = &unicode_nfc_pairs[mid];
    if (p->first < a || (p->first == a && p->second < b))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < unicode_nfc_n_pairs && unicode_nfc_pairs[lo].first == a &&
      unicode_nfc_pairs[lo].second == b)
    return unicode_nfc_pairs[lo].composite;
  return 0;
}

/* Canonical ordering: each run of non-starters sorted, stably, by class. */
static void reorder(unicode_char_t *c, size_t n) {
  for (size_t i = 1; i < n; i++) {
    unsigned cc = record(c[i].cp)->ccc;
    if (!cc)
      continue;
    unicode_char_t moving = c[i];
    size_t j = i;
    while (j > 0) {
      unsigned prev = record(c[j - 1].cp)->ccc;
      if (prev <= cc)
        break;
      c[j] = c[j - 1];
      j--;
    }
    c[j] = moving;
  }
}

/* Canonical composition: each character joins the last starter unless a
 * character between them has class 0 or at least its own (it is blocked). */
static size_t recompose(unicode_char_t *c, size_t n) {
  size_t out = 0, starter = SIZE_MAX;
  unsigned last_cc = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned cc = record(c[i].cp)->ccc;
    if (starter != SIZE_MAX && (out == starter + 1 || (last_cc && last_cc < cc))) {
      uint32_t composite = compose(c[starter].cp, c[i].cp);
      if (composite) {
        c[starter].cp = composite;
        continue;
      }
    }
    if (cc == 0)
      starter = out;
    last_cc = cc;
    c[out++] = c[i];
  }
  return out;
}

size_t unicode_nfc_chars(unicode_char_t *chars, size_t n) {
  /* Decompose from the back, so each decomposition lands past what is still
   * to be read. */
  size_t total = 0;
  unicode_char_t parts[4];
  for (size_t i = 0; i < n; i++)
    total += decompose(&chars[i], parts);
  size_t w = total;
  for (size_t i = n; i-- > 0;) {
    size_t k = decompose(&chars[i], parts);
    w -= k;
    for (size_t j = 0; j < k; j++)
      chars[w + j] = parts[j];
  }
  reorder(chars, total);
  return recompose(chars, total);
}

char *unicode_nfc_utf8(const char *s, size_t n, size_t *out_len) {
  unicode_char_t *chars = malloc((4 * n + 4) * sizeof(*chars));
  char *out = malloc(4 * (4 * n + 4) + 1);
  size_t count = 0, o = 0;
  if (!chars || !out)
    goto fail;
  for (size_t i = 0; i < n;) {
    size_t len = utf8_decode((const unsigned char *)s + i, n - i, &chars[count].cp);
    if (!len)
      goto fail;
    chars[count].start = i;
    chars[count++].end = i + len;
    i += len;
  }
  count = unicode_nfc_chars(chars, count);
  for (size_t i = 0; i < count; i++)
    o += utf8_encode(chars[i].cp, out + o);
  out[o] = '\0';
  free(chars);
  *out_len = o;
  return out;
fail:
  free(chars);
  free(out);
  return NULL;
}
