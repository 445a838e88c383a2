/* test_unicode_nfc - NFC (common/util/unicode_nfc.c) against Python's
 * unicodedata.normalize("NFC", ...).
 *
 * usage: test_unicode_nfc ROOT
 *   ROOT/tests/golden/nfc.txt (tests/golden/make_nfc_golden.py): every code
 *   point with a decomposition alone, each canonical one and its
 *   decomposition followed by combining marks in scrambled order (drawn from
 *   the script's seed), Hangul jamo and syllables, the multilingual corpus
 *   and its NFD. Each case's NFC must equal Python's byte for byte, and the
 *   quick check may pass only text NFC leaves as it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "unicode_nfc.h"

static void hex_of(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (size_t i = 0; i < n && o + 4 < cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%02X", (unsigned char)s[i]);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_unicode_nfc ROOT\n");
    return 2;
  }
  char path[2048];
  snprintf(path, sizeof(path), "%s/tests/golden/nfc.txt", argv[1]);
  FILE *f = fopen(path, "r");
  if (!f) {
    FAIL("cannot open %s", path);
    return check_exit("test_unicode_nfc");
  }
  char *line = NULL;
  size_t cap = 0, n_cases = 0, n_changed = 0, n_line = 0;
  ssize_t got;
  while ((got = getline(&line, &cap, f)) > 0) {
    n_line++;
    if (line[0] == '#')
      continue;
    size_t len = (size_t)got;
    if (line[len - 1] == '\n')
      len--;
    const char *tab = memchr(line, '\t', len);
    if (!tab) {
      FAIL("%s:%zu: no tab", path, n_line);
      continue;
    }
    size_t in_len = (size_t)(tab - line), want_len = len - in_len - 1;
    const char *want = tab + 1;
    int same = want_len == 1 && want[0] == '=';
    if (same) {
      want = line;
      want_len = in_len;
    } else {
      n_changed++;
    }
    size_t out_len = 0;
    char *out = unicode_nfc_utf8(line, in_len, &out_len);
    char a[512], b[512], c[512];
    if (!(out && out_len == want_len && memcmp(out, want, want_len) == 0)) {
      hex_of(line, in_len, a, sizeof(a));
      hex_of(out ? out : "", out ? out_len : 0, b, sizeof(b));
      hex_of(want, want_len, c, sizeof(c));
      FAIL("%s:%zu: NFC(%s) = %s, unicodedata %s", path, n_line, a, b, c);
    }
    CHECK(same || !unicode_nfc_is_quick(line, in_len),
          "%s:%zu: the quick check passes text NFC changes", path, n_line);
    free(out);
    n_cases++;
  }
  free(line);
  fclose(f);
  CHECK(n_cases > 10000 && n_changed > 3000, "%s: only %zu cases, %zu changed", path, n_cases,
        n_changed);
  printf("NFC (Unicode %s tables): %zu cases against unicodedata, %zu changed by NFC\n",
         UNICODE_NFC_VERSION, n_cases, n_changed);
  return check_exit("test_unicode_nfc");
}
