/* utf8.h - UTF-8: checking, decoding and encoding code points, and the
 * "lossy" repair Rust's String::from_utf8_lossy and Python's
 * bytes.decode(errors="replace") do (each maximal invalid subpart becomes one
 * U+FFFD, Unicode 15 section 3.9, "substitution of maximal subparts").
 *
 * Valid UTF-8 here is RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF. All functions are pure and thread-safe. */
#ifndef HYDRA_UTF8_H
#define HYDRA_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_REPLACEMENT 0xFFFDu

/* Length of the valid UTF-8 sequence at s[0 .. n) (1 to 4), or 0 when s does
 * not start with one (or n == 0). On success *cp (if non-NULL) gets the code
 * point. */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Whether s[0 .. n) is valid UTF-8. When it is not, *bad (if non-NULL) gets
 * the offset of the first byte that does not start a valid sequence. */
int utf8_valid(const char *s, size_t n, size_t *bad);

/* Writes the encoding of cp (<= 0x10FFFF, not a surrogate) into out and
 * returns its length (1 to 4); returns 0 for an invalid cp. */
size_t utf8_encode(uint32_t cp, char out[4]);

/* Where s may be cut at or before byte n without splitting a character: n,
 * or n moved back over the continuation bytes s[n] starts (s[n] must be
 * readable: n < the length of s). */
size_t utf8_cut(const char *s, size_t n);

/* Bytes the lossy repair of s[0 .. n) needs (at most 3 * n). */
size_t utf8_lossy_size(const char *s, size_t n);

/* Writes the lossy repair of s[0 .. n) into out (which holds
 * utf8_lossy_size(s, n) bytes) and returns its length. */
size_t utf8_lossy(const char *s, size_t n, char *out);

#endif
