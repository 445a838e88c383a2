#include "rng.h"

#include <math.h>

uint64_t rng_splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t rng_mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  return rng_splitmix(rng_splitmix(rng_splitmix(seed ^ 0x68796472ULL) ^ a) ^
                      (b * 0x100000001B3ULL) ^ c);
}

float rng_gaussian(uint64_t key) {
  uint64_t r1 = rng_splitmix(key), r2 = rng_splitmix(key ^ 0xD1B54A32D192ED03ULL);
  double u1 = ((r1 >> 11) + 1.0) / 9007199254740993.0, u2 = (r2 >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
