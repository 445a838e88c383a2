#include "clock.h"

#include <math.h>

double clock_monotonic(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double clock_wall(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

struct timespec clock_monotonic_after(double seconds) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  const double s = (double)t.tv_nsec * 1e-9 + seconds;
  t.tv_sec += (time_t)s;
  t.tv_nsec = (long)((s - floor(s)) * 1e9);
  return t;
}
