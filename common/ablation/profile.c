/* profile.c - HYDRA_ENGINE_PROFILE=1: the host wall time of each phase of
 * engine_run, printed when the engine is destroyed. On an asynchronous
 * backend (CUDA) the queue drains at each pass's readout download, so the GPU
 * idles through what the host does between that download and the next pass's
 * first op. */
#include <stdio.h>

#include "clock.h"
#include "engine_parts.h"

static const char *const phase_names[PH_N] = {
    "clean passes",       "variant order", "pass tables + uploads", "layers (queued)",
    "readout + download", "accumulate",    "emit rows, progress"};

double engine_now(void) {
  return clock_monotonic();
}

/* Adds the time since *t0 to a phase and restarts the clock. */
void engine_phase(engine_t *e, int ph, double *t0) {
  if (!e->profile)
    return;
  double t = engine_now();
  e->phase_s[ph] += t - *t0;
  *t0 = t;
}

void engine_print_profile(const engine_t *e) {
  if (!e->profile || e->runs == 0)
    return;
  fprintf(stderr, "hydra engine profile (%s backend): %ld runs, %ld variant passes, %.3f s\n",
          e->b->ops->name, e->runs, e->passes, e->run_s);
  double sum = 0;
  for (int i = 0; i < PH_N; i++) {
    sum += e->phase_s[i];
    fprintf(stderr, "  %-24s %9.3f s %5.1f%%\n", phase_names[i], e->phase_s[i],
            e->run_s > 0 ? 100.0 * e->phase_s[i] / e->run_s : 0.0);
  }
  fprintf(stderr, "  %-24s %9.3f s %5.1f%%\n", "other", e->run_s - sum,
          e->run_s > 0 ? 100.0 * (e->run_s - sum) / e->run_s : 0.0);
}
