/* store_postgres_none.c - store_postgres_open for a build without libpq. */
#include <string.h>

#include "store_impl.h"

store_t *store_postgres_open(const char *url, int flags, char *err) {
  (void)flags;
  err_set(err,
          "store %.*s...: PostgreSQL support is not built into this hydrad (install "
          "libpq-dev and rebuild, or use a SQLite path)",
          (int)(strstr(url, "://") - url + 3), url);
  return NULL;
}
