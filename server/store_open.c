/* store_open.c - the stores' front door: store_open picks the store a URL
 * names and opens it. It sits above the stores (store_sqlite.c,
 * store_postgres.c), which never call it. */
#include <string.h>

#include "store_impl.h"

store_t *store_open(const char *url, int flags, char *err) {
  if (!url || !*url)
    return err_set(err, "store: no path given"), NULL;
  if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
    return store_postgres_open(url, flags, err);
  const char *path = url;
  if (strncmp(url, "sqlite://", 9) == 0)
    path = url + 9;
  else if (strncmp(url, "sqlite:", 7) == 0)
    path = url + 7;
  else if (strstr(url, "://"))
    return err_set(err, "store %.*s: unknown store kind (a path, sqlite:PATH or postgres://...)",
                   (int)(strstr(url, "://") - url + 3), url),
           NULL;
  if (!*path || strcmp(path, ":memory:") == 0)
    return err_set(err, "store %s: the store needs a file path", url), NULL;
  return store_sqlite_open(path, flags, err);
}
