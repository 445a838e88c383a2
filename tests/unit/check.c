/* check.c - the unit tests' check harness (check.h). */
#include "check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int n_checks, n_failures, quiet_after, have_seed;
static uint64_t seed;

void check_seed(uint64_t s) {
  seed = s;
  have_seed = 1;
}

void check_quiet_after(int n) {
  quiet_after = n;
}

int check_failures(void) {
  return n_failures;
}

void check_pass(void) {
  n_checks++;
}

void check_fail(const char *file, int line, const char *fmt, ...) {
  n_checks++;
  n_failures++;
  if (quiet_after > 0 && n_failures > quiet_after)
    return;
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL %s:%d: ", file, line);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
}

int check_close(const char *file, int line, const char *what, double got, double want, double bound,
                double scale) {
  if (fabs(got - want) <= bound * scale) {
    check_pass();
    return 1;
  }
  check_fail(file, line, "%s: got %.7g, want %.7g (bound %.3g x scale %.4g)", what, got, want,
             bound, scale);
  return 0;
}

/* The largest error and the reference's scale, folded one value at a time. */
static void fold(double got, double want, double *diff, double *scale) {
  const double d = fabs(got - want);
  if (d != d)
    *diff = INFINITY;
  else if (d > *diff)
    *diff = d;
  if (fabs(want) > *scale)
    *scale = fabs(want);
}

double check_rel_error_f32(const float *got, const float *want, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; i++)
    fold(got[i], want[i], &diff, &scale);
  return scale > 0 ? diff / scale : diff;
}

double check_rel_error_f64(const float *got, const double *want, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; i++)
    fold(got[i], want[i], &diff, &scale);
  return scale > 0 ? diff / scale : diff;
}

int check_exit(const char *name) {
  if (n_failures == 0) {
    printf("%s: all %d checks passed\n", name, n_checks);
    return 0;
  }
  if (quiet_after > 0 && n_failures > quiet_after)
    printf("%s: (the first %d failures shown)\n", name, quiet_after);
  if (have_seed)
    printf("%s: %d of %d checks failed (seed %llu)\n", name, n_failures, n_checks,
           (unsigned long long)seed);
  else
    printf("%s: %d of %d checks failed\n", name, n_failures, n_checks);
  return 1;
}

int check_golden_model_path(const char *test, const char *root, const char *model_name, char *path,
                            size_t cap) {
  if (!model_name || strcmp(model_name, "$SMOLLM2") != 0) {
    snprintf(path, cap, "%s/%s", root, model_name ? model_name : "");
    return 0;
  }
  const char *env = getenv("HYDRA_SMOLLM2");
  if (env)
    snprintf(path, cap, "%s", env);
  else
    snprintf(path, cap, "%s/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", root);
  if (access(path, R_OK) == 0)
    return 0;
  const char *req = getenv("HYDRA_REQUIRE_MODELS");
  fprintf(stderr, "%s: %s is not here (deploy/get-model.sh)\n", test, path);
  return req && strcmp(req, "1") == 0 ? 1 : 77;
}
