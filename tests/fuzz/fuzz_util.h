/* fuzz_util.h - what the libFuzzer targets share: inputs that the code
 * under test reads from a file go through one scratch file per process. */
#ifndef HYDRA_FUZZ_UTIL_H
#define HYDRA_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes data to this process's scratch file (under dir, or $TMPDIR, or /tmp)
 * with the given name and returns its path (static storage). */
static const char *fuzz_scratch(const char *name, const uint8_t *data, size_t size) {
  static char path[512];
  const char *dir = getenv("TMPDIR");
  snprintf(path, sizeof(path), "%s/hydra-fuzz-%d-%s", dir && *dir ? dir : "/tmp", (int)getpid(),
           name);
  FILE *f = fopen(path, "wb");
  if (!f)
    abort();
  if (size && fwrite(data, 1, size, f) != size)
    abort();
  fclose(f);
  return path;
}

#endif
