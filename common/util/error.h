/* error.h - errors are values: a caller-owned message buffer.
 *
 * Every function that can fail takes `char *err` pointing at a buffer of
 * HYDRA_ERR_LEN bytes (may be NULL when the caller does not want the text),
 * returns non-zero (or NULL) on failure, and writes one line saying what went
 * wrong, naming the file or field where there is one. */
#ifndef HYDRA_ERROR_H
#define HYDRA_ERROR_H

#define HYDRA_ERR_LEN 512

/* Formats the message into err (if non-NULL). Always returns -1, so that
 * `return err_set(err, "...")` reads as a failure return. */
int err_set(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* TRY(call): a call that returns non-zero on failure jumps to the
 * function's `fail:` cleanup block (one cleanup block per function). */
#define TRY(call)                                                                                  \
  do {                                                                                             \
    if ((call) != 0)                                                                               \
      goto fail;                                                                                   \
  } while (0)

#endif
