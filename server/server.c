/* server.c - small helpers every hydrad module uses: locks, log, model
 * lookup. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server.h"

void server_log(const server_t *s, int level, const char *fmt, ...) {
  if (level > s->cfg.log_level)
    return;
  char when[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s hydrad %s %s\n", when,
          level == 0   ? "error"
          : level == 1 ? "info"
                       : "debug",
          line);
}

int server_find_model(const server_t *s, const char *name) {
  for (int i = 0; name && i < s->n_models; i++)
    if (strcmp(s->models[i].name, name) == 0)
      return i;
  return -1;
}

const char *server_model_names(const server_t *s, char *buf, size_t n) {
  size_t w = 0;
  buf[0] = '\0';
  for (int i = 0; i < s->n_models && w < n; i++) {
    const int k = snprintf(buf + w, n - w, "%s%s", i ? ", " : "", s->models[i].name);
    if (k < 0 || (size_t)k >= n - w) {
      if (n >= 4)
        memcpy(buf + n - 4, "...", 4);
      break;
    }
    w += (size_t)k;
  }
  return buf;
}

int server_init_locks(server_t *s) {
  pthread_condattr_t attr;
  /* The worker's timed waits count monotonic seconds: a clock jump neither
   * stalls nor hurries it. */
  if (pthread_condattr_init(&attr) || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) ||
      pthread_cond_init(&s->wake, &attr) || pthread_mutex_init(&s->lock, NULL) ||
      notify_init(&s->notify))
    return -1;
  pthread_condattr_destroy(&attr);
  return 0;
}
