#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int err_set(char *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, HYDRA_ERR_LEN, fmt, ap);
    va_end(ap);
  }
  return -1;
}
