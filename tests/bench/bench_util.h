/* bench_util.h - timing helpers the C benchmarks share. */
#ifndef HYDRA_BENCH_UTIL_H
#define HYDRA_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) { /* monotonic wall seconds */
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (every thread): on a machine shared
 * with other work, what a run cost, not how long it waited for a core. */
static inline double bench_cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of v[0 .. n) (sorts v). */
static inline double bench_median(double *v, int n) {
  qsort(v, n, sizeof(double), bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
