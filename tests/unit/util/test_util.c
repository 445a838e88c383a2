/* test_util - common/util's helpers: the growable buffer (random appends
 * against a plain copy, printf-appends, growth of arrays and its overflow
 * check), UTF-8 cuts, JSON field paths and "field: message" lines, the
 * clocks, and the RNG (SplitMix64 against the published outputs of Vigna's
 * splitmix64.c seeded 0; Gaussian draws' mean and variance), and SHA-256
 * against FIPS 180-2's examples (appendix B), fed whole and in random pieces.
 * usage: test_util [seed] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "check.h"
#include "clock.h"
#include "json_field.h"
#include "rng.h"
#include "sha256.h"
#include "utf8.h"

static uint64_t seed = 20250101, rng_state;

static uint64_t rnd_bits(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Random appends of random bytes (NULs too) against a plain array. */
static void test_buffer_append(void) {
  enum { TOTAL = 1 << 20 };
  unsigned char *want = malloc(TOTAL);
  buffer_t b = {0};
  CHECK(b.len == 0 && !b.data, "a zeroed buffer is empty");
  size_t n = 0;
  while (want && n < TOTAL - 5000) {
    const size_t k = rnd_bits() % 4000;
    unsigned char chunk[4000];
    for (size_t i = 0; i < k; i++)
      chunk[i] = (unsigned char)rnd_bits();
    CHECK(buffer_append(&b, chunk, k) == 0, "append of %zu bytes failed", k);
    memcpy(want + n, chunk, k);
    n += k;
  }
  CHECK(b.len == n && b.cap > n, "len %zu (want %zu), cap %zu", b.len, n, b.cap);
  CHECK(b.data && memcmp(b.data, want, n) == 0 && b.data[n] == '\0',
        "bytes differ or no NUL after them");
  CHECK(buffer_append(&b, NULL, 0) == 0 && b.len == n, "an empty append changes nothing");
  const size_t cap = b.cap;
  buffer_clear(&b);
  CHECK(b.len == 0 && b.cap == cap && b.data[0] == '\0', "clear keeps the memory, empty");
  buffer_free(&b);
  CHECK(!b.data && b.len == 0 && b.cap == 0, "free leaves an empty buffer");
  free(want);
}

static void test_buffer_appendf(void) {
  buffer_t b = {0};
  CHECK(buffer_appendf(&b, "id: %lld\ndata: ", (long long)42) == 0, "appendf");
  CHECK(buffer_append(&b, "{}", 2) == 0, "append");
  CHECK(buffer_appendf(&b, ",%.9g", 0.1) == 0, "appendf number");
  CHECK(strcmp(b.data, "id: 42\ndata: {},0.1") == 0, "got \"%s\"", b.data);
  char big[3000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  const size_t before = b.len;
  CHECK(buffer_appendf(&b, "%s|%s", big, big) == 0 && b.len == before + 2 * 2999 + 1,
        "a long appendf: len %zu", b.len);
  CHECK(b.data[before + 2999] == '|' && b.data[b.len] == '\0', "long appendf's text");
  buffer_free(&b);
}

static void test_buffer_grow(void) {
  int *items = NULL;
  size_t cap = 0;
  CHECK(buffer_grow((void **)&items, &cap, 1, sizeof(int)) == 0 && cap == 16, "first room: %zu",
        cap);
  for (int i = 0; i < 1000; i++) {
    CHECK(buffer_grow((void **)&items, &cap, (size_t)i + 1, sizeof(int)) == 0, "grow to %d", i + 1);
    items[i] = i * 7;
  }
  int kept = 1;
  for (int i = 0; i < 1000; i++)
    kept &= items[i] == i * 7;
  CHECK(kept && cap == 1024, "elements kept through growth, cap %zu", cap);
  int *before = items;
  CHECK(buffer_grow((void **)&items, &cap, SIZE_MAX / 2, sizeof(int)) == -1 && items == before &&
            cap == 1024,
        "a size past SIZE_MAX fails and changes nothing");
  free(items);
}

static void test_utf8_cut(void) {
  const char *s = "ab\xC3\xA9z\xE2\x82\xAC!"; /* a b é z € ! */
  const size_t want[] = {0, 1, 2, 2, 4, 5, 5, 5, 8};
  for (size_t n = 0; n < sizeof(want) / sizeof(want[0]); n++)
    CHECK(utf8_cut(s, n) == want[n], "cut at %zu: %zu (want %zu)", n, utf8_cut(s, n), want[n]);
}

static void test_json_field(void) {
  char p[64], q[64], m[64];
  CHECK(!strcmp(json_field_key(p, sizeof p, "", "prompts"), "prompts"), "root key: %s", p);
  CHECK(!strcmp(json_field_index(q, sizeof q, p, 2), "prompts[2]"), "index: %s", q);
  CHECK(!strcmp(json_field_key(p, sizeof p, q, "subject"), "prompts[2].subject"), "key: %s", p);
  CHECK(!strcmp(json_field_key(p, sizeof p, "model", NULL), "model.?"), "NULL key: %s", p);
  CHECK(!strcmp(json_field_key(p, 8, "ablations", "methods"), "ablatio"), "cut: %s", p);
  CHECK(!strcmp(json_field_message(m, sizeof m, "text", "must not be empty"),
                "text: must not be empty"),
        "message: %s", m);
  CHECK(!strcmp(json_field_message(m, sizeof m, "", "not valid JSON"), "not valid JSON"),
        "message of the document: %s", m);
  CHECK(!strcmp(json_field_message(m, sizeof m, NULL, "no answer"), "no answer"),
        "message without a field: %s", m);
  json_t *doc = json_loads("[{}, [], \"s\", 1, 1.5, true, false, null]", 0, NULL);
  const char *const want[] = {"an object", "an array", "a string", "an integer",
                              "a number",  "true",     "false",    "null"};
  for (size_t i = 0; doc && i < 8; i++)
    CHECK(!strcmp(json_field_kind(json_array_get(doc, i)), want[i]), "kind %zu: %s", i,
          json_field_kind(json_array_get(doc, i)));
  CHECK(doc, "the kinds document parses");
  json_decref(doc);
}

static void test_clock(void) {
  const double t0 = clock_monotonic(), w = clock_wall();
  double t1 = t0;
  for (int i = 0; i < 1000; i++) {
    const double t = clock_monotonic();
    CHECK(t >= t1, "the monotonic clock went back: %.9f after %.9f", t, t1);
    t1 = t;
  }
  CHECK(w > 1.6e9 && w < 1e10, "wall seconds since 1970: %.0f", w);
  const double want = clock_monotonic() + 0.25;
  struct timespec at = clock_monotonic_after(0.25);
  const double got = (double)at.tv_sec + (double)at.tv_nsec * 1e-9;
  CHECK(at.tv_nsec >= 0 && at.tv_nsec < 1000000000L && fabs(got - want) < 0.05,
        "0.25 s from now: %.6f (want about %.6f)", got, want);
}

static void test_rng(void) {
  /* splitmix64.c seeded 0: its k-th output is rng_splitmix(k * 0x9E3779B97F4A7C15). */
  const uint64_t golden = 0x9E3779B97F4A7C15ULL;
  const uint64_t want[] = {0xE220A8397B1DCDAFULL, 0x6E789E6AA1B965F4ULL, 0x06C45D188009454FULL};
  for (uint64_t k = 0; k < 3; k++)
    CHECK(rng_splitmix(k * golden) == want[k], "splitmix output %llu: %016llx",
          (unsigned long long)k, (unsigned long long)rng_splitmix(k * golden));
  CHECK(rng_mix(seed, 1, 2, 3) == rng_mix(seed, 1, 2, 3), "a key is a function of its inputs");
  CHECK(rng_mix(seed, 1, 2, 3) != rng_mix(seed, 1, 2, 4) &&
            rng_mix(seed, 1, 2, 3) != rng_mix(seed + 1, 1, 2, 3),
        "neighbouring counters and seeds give other keys");
  /* Standard normal: mean 0 and variance 1 within about 5 standard errors
   * (1/sqrt(N) and sqrt(2/N) for N = 200000). */
  enum { N = 200000 };
  double sum = 0, sum2 = 0;
  int finite = 1;
  for (uint64_t i = 0; i < N; i++) {
    const double x = rng_gaussian(rng_mix(seed, i, 0, 0));
    finite &= isfinite(x);
    sum += x;
    sum2 += x * x;
  }
  const double mean = sum / N, var = sum2 / N - mean * mean;
  CHECK(finite, "a Gaussian draw is not finite");
  CHECK(fabs(mean) < 0.011 && fabs(var - 1) < 0.016, "mean %.5f, variance %.5f", mean, var);
}

/* FIPS 180-2 appendix B: "abc", the 448-bit message, a million 'a's; and
 * the empty message (sha256sum of an empty file). Each fed whole and in
 * random pieces. */
static void test_sha256(void) {
  static char million[1000000];
  memset(million, 'a', sizeof million);
  const struct {
    const char *text;
    size_t len;
    const char *want;
  } cases[] = {
      {"abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {million, sizeof million, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int pieces = 0; pieces < 2; pieces++) {
      sha256_t c;
      unsigned char digest[32];
      char hex[65];
      sha256_init(&c);
      size_t at = 0;
      while (at < cases[i].len) {
        size_t n = pieces ? 1 + rnd_bits() % 131 : cases[i].len - at;
        if (n > cases[i].len - at)
          n = cases[i].len - at;
        sha256_update(&c, cases[i].text + at, n);
        at += n;
      }
      sha256_final(&c, digest);
      sha256_hex(digest, hex);
      CHECK(strcmp(hex, cases[i].want) == 0, "sha256 of case %zu (%s): %s, want %s", i,
            pieces ? "in pieces" : "whole", hex, cases[i].want);
    }
  }
}

int main(int argc, char **argv) {
  if (argc > 1)
    seed = strtoull(argv[1], NULL, 10);
  rng_state = seed ? seed : 1;
  check_seed(seed);
  printf("test_util: seed %llu\n", (unsigned long long)seed);
  test_buffer_append();
  test_buffer_appendf();
  test_buffer_grow();
  test_utf8_cut();
  test_json_field();
  test_clock();
  test_rng();
  test_sha256();
  return check_exit("test_util");
}
