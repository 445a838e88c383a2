/* check.h - the one check harness of the C unit tests (tests/unit/).
 *
 * A test counts its checks here and returns check_exit()'s value from main:
 * 0 when every check passed, 1 when any failed (a test that printed a failure
 * never exits 0). Skips (77) and usage errors (2) stay the test's own return
 * values. A failure is printed on stdout as "FAIL file:line: message" and
 * flushed at once (a forked child never prints it again). The counters are
 * the process's own, not shared between threads: check from one thread. */
#ifndef HYDRA_TEST_CHECK_H
#define HYDRA_TEST_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* One check: when cond is false, prints file:line and the printf-style
 * message and counts a failure. The message's arguments are evaluated only
 * when cond is false. */
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (cond)                                                                                      \
      check_pass();                                                                                \
    else                                                                                           \
      check_fail(__FILE__, __LINE__, __VA_ARGS__);                                                 \
  } while (0)

/* CHECK at another line of this file: for a helper that checks on behalf of
 * its caller (the caller passes __LINE__). */
#define CHECK_AT(line, cond, ...)                                                                  \
  do {                                                                                             \
    if (cond)                                                                                      \
      check_pass();                                                                                \
    else                                                                                           \
      check_fail(__FILE__, line, __VA_ARGS__);                                                     \
  } while (0)

/* A failed check where the test met the fault itself (an error returned, a
 * file missing): prints file:line and the message, counts a failure. */
#define FAIL(...) check_fail(__FILE__, __LINE__, __VA_ARGS__)

/* One check of a float against its reference by relative error with a
 * stated bound: passes when |got - want| <= bound * scale, where scale is
 * what the error is relative to (|want|; a golden's largest logit for an
 * end-to-end value; 1 for an absolute bound). NaN fails. On failure prints
 * what, got, want, the bound and the scale. Evaluates to 1 when it passed. */
#define CHECK_CLOSE(what, got, want, bound, scale)                                                 \
  check_close(__FILE__, __LINE__, what, got, want, bound, scale)

/* max |got[i] - want[i]| / max |want[i]| over n values: the largest error
 * relative to the reference's scale. Infinite when any difference is NaN;
 * when want is all zeros, the largest |got[i]| itself (0 when both are all
 * zeros). want may be float or double. Counts nothing: CHECK the result. */
#define check_rel_error(got, want, n)                                                              \
  _Generic((want),                                                                                 \
      float *: check_rel_error_f32,                                                                \
      const float *: check_rel_error_f32,                                                          \
      double *: check_rel_error_f64,                                                               \
      const double *: check_rel_error_f64)(got, want, n)

/* The seed the test's random inputs were drawn from: check_exit prints it
 * with a failure (and every failure can be replayed from it). */
void check_seed(uint64_t seed);

/* Prints only the first n failures (0: all, the default); later ones are
 * still counted. */
void check_quiet_after(int n);

/* Failures counted so far (to tell whether a part of a test failed). */
int check_failures(void);

/* Prints "NAME: all N checks passed", or "NAME: F of N checks failed" with
 * the seed when one was given; returns the exit code for main (0 or 1). */
int check_exit(const char *name);

/* The model file a golden names (its "model" field) into path: a path
 * under root, or "$SMOLLM2" for the real SmolLM2-135M GGUF (HYDRA_SMOLLM2,
 * else root/models/smollm2-135m/), which is fetched separately. Returns 0
 * when path is set and readable or relative to root, else 77 (skip: the real
 * model is not here) or 1 (it is not here and HYDRA_REQUIRE_MODELS=1), with
 * the reason on stderr under the test's name. */
int check_golden_model_path(const char *test, const char *root, const char *model_name, char *path,
                            size_t cap);

/* The parts of the macros above. */
void check_pass(void);
void check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int check_close(const char *file, int line, const char *what, double got, double want, double bound,
                double scale);
double check_rel_error_f32(const float *got, const float *want, size_t n);
double check_rel_error_f64(const float *got, const double *want, size_t n);

#endif
