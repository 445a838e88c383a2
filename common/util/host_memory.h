/* host_memory.h - how much more memory this process can take before the
 * kernel refuses it or kills the process: the least of MemAvailable +
 * SwapFree (/proc/meminfo), the address-space and data limits (ulimit -v,
 * ulimit -d) less what the process already maps, and its cgroup v2
 * memory.max less memory.current. Read from /proc and /sys (Linux); a figure
 * that cannot be read imposes no limit. Thread-safe. */
#ifndef HYDRA_HOST_MEMORY_H
#define HYDRA_HOST_MEMORY_H

#include <stdint.h>

typedef struct {
  uint64_t bytes; /* UINT64_MAX: no limit found */
  char what[64];  /* the limit that binds, as a user knows it: "MemAvailable + SwapFree", ... */
} host_memory_t;

/* Fills out; never fails (no figure at all reads as no limit). */
void host_memory_available(host_memory_t *out);

#endif
