/* unicode_nfc.h - Unicode Normalization Form C (UAX #15): canonical
 * decomposition, canonical ordering, canonical composition (less the
 * composition exclusions), Hangul algorithmically, with the NFC_Quick_Check
 * shortcut. Tables: the Unicode version UNICODE_NFC_VERSION names (generated
 * by tools/make_unicode_nfc_tables.py). All functions are pure and
 * thread-safe. */
#ifndef HYDRA_UNICODE_NFC_H
#define HYDRA_UNICODE_NFC_H

#include <stddef.h>
#include <stdint.h>

extern const char UNICODE_NFC_VERSION[];

/* A code point and the span [start, end) of the source text it stands for;
 * a composite keeps its starter's span, as tokenizers' NormalizedString::nfc
 * aligns it (the marks it absorbs stand for nothing). */
typedef struct {
  uint32_t cp;
  size_t start, end;
} unicode_char_t;

/* Whether NFC can change nothing about text across a cut just before cp:
 * cp's combining class is 0 and its NFC_Quick_Check is Yes. Text cut there
 * normalizes piece by piece. */
int unicode_nfc_boundary(uint32_t cp);

/* Whether s[0 .. n) (valid UTF-8) is surely in NFC by the quick check (every
 * NFC_Quick_Check Yes, combining classes in order): such text is its own NFC.
 * 0 means it may not be. */
int unicode_nfc_is_quick(const char *s, size_t n);

/* The NFC of chars[0 .. n), in place; returns the new count. The array must
 * hold 4 * n + 4 entries (the longest canonical decomposition is 4). */
size_t unicode_nfc_chars(unicode_char_t *chars, size_t n);

/* The NFC of s[0 .. n) (valid UTF-8) as a new NUL-terminated string of
 * *out_len bytes (the caller frees it), or NULL when out of memory or s is
 * not valid UTF-8. */
char *unicode_nfc_utf8(const char *s, size_t n, size_t *out_len);

#endif
