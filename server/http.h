/* http.h - the routes hydrad answers: one table, each route with its
 * handler (http.c's dispatcher reads it, and so does the OpenAPI check). */
#ifndef HYDRA_HTTP_H
#define HYDRA_HTTP_H

#include <microhttpd.h>

struct server;
struct http_request; /* a request being answered: http.c's */

/* Answers the request; id is the path's {id} (unset when it has none). */
typedef enum MHD_Result (*http_handler_fn)(struct server *s, struct MHD_Connection *c,
                                           struct http_request *rq, const char *id);

typedef struct {
  const char *method; /* NULL ends the table */
  const char *path;
  int public_route; /* answered without a token */
  http_handler_fn handler;
} http_route_t;

extern const http_route_t http_routes[];

#endif
