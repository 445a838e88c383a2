/* test_openapi - every route hydrad answers (http_routes[], the table its
 * dispatcher reads) has a handler and is in the OpenAPI document it serves,
 * with its method, and the document has no route that hydrad does not
 * answer. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "http.h"
#include "server.h"

int main(void) {
  json_error_t je;
  json_t *doc = json_loads(openapi_document, JSON_REJECT_DUPLICATES, &je);
  CHECK(doc, "the document is not JSON: %s (line %d)", je.text, je.line);
  if (!doc)
    return check_exit("test_openapi");
  CHECK(strncmp(json_string_value(json_object_get(doc, "openapi")) ?: "", "3.", 2) == 0,
        "not an OpenAPI 3 document");
  json_t *paths = json_object_get(doc, "paths");
  int n_routes = 0;
  for (const http_route_t *r = http_routes; r->method; r++, n_routes++) {
    char lower[16];
    size_t i = 0;
    for (; r->method[i] && i < sizeof(lower) - 1; i++)
      lower[i] = (char)tolower((unsigned char)r->method[i]);
    lower[i] = '\0';
    CHECK(json_object_get(json_object_get(paths, r->path), lower),
          "%s %s is not in the OpenAPI document", r->method, r->path);
    CHECK(r->handler, "%s %s has no handler", r->method, r->path);
  }
  const char *path;
  json_t *item;
  json_object_foreach(paths, path, item) {
    const char *method;
    json_t *op;
    json_object_foreach(item, method, op) {
      int found = 0;
      for (const http_route_t *r = http_routes; r->method; r++)
        found |= strcmp(r->path, path) == 0 && strcasecmp(r->method, method) == 0;
      CHECK(found, "the document lists %s %s, which hydrad does not answer", method, path);
    }
  }
  json_decref(doc);
  printf("test_openapi: %d routes\n", n_routes);
  return check_exit("test_openapi");
}
