#include "host_memory.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

/* The value of `key:` in a /proc file of "Key:   N kB" lines, in bytes;
 * -1 when the file or the key is absent. */
static int proc_kb(const char *path, const char *key, uint64_t *bytes) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char line[256];
  size_t n = strlen(key);
  int rc = -1;
  while (rc && fgets(line, sizeof(line), f)) {
    unsigned long long kb;
    if (strncmp(line, key, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%llu", &kb) == 1) {
      *bytes = (uint64_t)kb * 1024;
      rc = 0;
    }
  }
  fclose(f);
  return rc;
}

static int read_u64(const char *path, uint64_t *v) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  unsigned long long x;
  int rc = fscanf(f, "%llu", &x) == 1 ? 0 : -1; /* "max" reads as no number: no limit */
  fclose(f);
  *v = x;
  return rc;
}

static void bind(host_memory_t *out, uint64_t bytes, const char *what) {
  if (bytes < out->bytes) {
    out->bytes = bytes;
    snprintf(out->what, sizeof(out->what), "%s", what);
  }
}

/* A limit on the process's mappings (RLIMIT_AS, RLIMIT_DATA) less the part
 * of them /proc/self/status says is taken. */
static void rlimit_left(host_memory_t *out, int resource, const char *used_key, const char *what) {
  struct rlimit r;
  uint64_t used = 0;
  if (getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY)
    return;
  proc_kb("/proc/self/status", used_key, &used);
  bind(out, (uint64_t)r.rlim_cur > used ? (uint64_t)r.rlim_cur - used : 0, what);
}

/* One cgroup's limit less its usage, from DIR/GROUP/LIMIT and DIR/GROUP/USAGE;
 * -1 when the limit cannot be read. */
static int group_left(host_memory_t *out, const char *dir, const char *group, const char *limit,
                      const char *usage, const char *what) {
  char path[1200];
  uint64_t max, current;
  const char *sub = strcmp(group, "/") ? group : "";
  snprintf(path, sizeof(path), "%s%s/%s", dir, sub, limit);
  if (read_u64(path, &max) != 0)
    return -1;
  snprintf(path, sizeof(path), "%s%s/%s", dir, sub, usage);
  if (read_u64(path, &current) != 0)
    current = 0;
  bind(out, max > current ? max - current : 0, what);
  return 0;
}

/* The cgroup's limit less its usage: cgroup v2 (the line "0::/PATH" of
 * /proc/self/cgroup; memory.max, "max" when unlimited) or else v1 (the line
 * "N:memory:/PATH"; memory.limit_in_bytes, about 2^63 when unlimited). */
static void cgroup_left(host_memory_t *out) {
  FILE *f = fopen("/proc/self/cgroup", "r");
  if (!f)
    return;
  char line[1024], v1[1024] = "", v2[1024] = "";
  while (fgets(line, sizeof(line), f)) {
    const char *memory = strstr(line, ":memory:");
    if (strncmp(line, "0::", 3) == 0)
      sscanf(line + 3, "%1023s", v2);
    else if (memory)
      sscanf(memory + 8, "%1023s", v1);
  }
  fclose(f);
  if (v2[0] && group_left(out, "/sys/fs/cgroup", v2, "memory.max", "memory.current",
                          "the cgroup's memory.max") == 0)
    return;
  if (v1[0])
    group_left(out, "/sys/fs/cgroup/memory", v1, "memory.limit_in_bytes", "memory.usage_in_bytes",
               "the cgroup's memory.limit_in_bytes");
}

void host_memory_available(host_memory_t *out) {
  out->bytes = UINT64_MAX;
  out->what[0] = '\0';
  uint64_t avail, swap = 0;
  if (proc_kb("/proc/meminfo", "MemAvailable", &avail) == 0) {
    proc_kb("/proc/meminfo", "SwapFree", &swap);
    bind(out, avail + swap, swap ? "MemAvailable + SwapFree" : "MemAvailable");
  }
  rlimit_left(out, RLIMIT_AS, "VmSize", "ulimit -v");
  rlimit_left(out, RLIMIT_DATA, "VmData", "ulimit -d");
  cgroup_left(out);
}
