#include "rng.h"

#include <math.h>

float rng_gaussian(uint64_t key) {
  uint64_t r1 = rng_splitmix(key), r2 = rng_splitmix(key ^ 0xD1B54A32D192ED03ULL);
  double u1 = ((r1 >> 11) + 1.0) / 9007199254740993.0, u2 = (r2 >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
