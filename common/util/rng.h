/* rng.h - the one random number generator: counter-based and deterministic.
 * A draw is a pure function of its key (no state), so the same seed and the
 * same counters give the same draws, bit for bit, on every machine and in
 * any order: resample draws and noise are reproducible from a job's seed.
 * Not for secrets (job ids come from getrandom). All functions are pure and
 * thread-safe. */
#ifndef HYDRA_RNG_H
#define HYDRA_RNG_H

#include <stdint.h>

/* SplitMix64's output function of x + the golden-ratio increment (Steele,
 * Lea, Flood 2014; Vigna's splitmix64.c): a well-mixed 64-bit value. */
uint64_t rng_splitmix(uint64_t x);

/* The key of draw (a, b, c) under a seed: rng_splitmix chained over them,
 * so neighbouring counters give unrelated keys. */
uint64_t rng_mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

/* A standard normal draw for a key (Box-Muller on two SplitMix64 values). */
float rng_gaussian(uint64_t key);

#endif
