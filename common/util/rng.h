/* rng.h - the one random number generator: counter-based and deterministic.
 * A draw is a pure function of its key (no state), so the same seed and the
 * same counters give the same draws, bit for bit, on every machine and in
 * any order: resample draws and noise are reproducible from a job's seed.
 * Not for secrets (job ids come from getrandom). All functions are pure and
 * thread-safe; the integer ones are inline (one runs per resample draw). */
#ifndef HYDRA_RNG_H
#define HYDRA_RNG_H

#include <stdint.h>

/* SplitMix64's output function of x + the golden-ratio increment (Steele,
 * Lea, Flood 2014; Vigna's splitmix64.c): a well-mixed 64-bit value. */
static inline uint64_t rng_splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* The key of draw (a, b, c) under a seed: rng_splitmix chained over them,
 * so neighbouring counters give unrelated keys. */
static inline uint64_t rng_mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  return rng_splitmix(rng_splitmix(rng_splitmix(seed ^ 0x68796472ULL) ^ a) ^
                      (b * 0x100000001B3ULL) ^ c);
}

/* A standard normal draw for a key (Box-Muller on two SplitMix64 values). */
float rng_gaussian(uint64_t key);

#endif
