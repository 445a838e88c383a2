/* http.h - the routes hydrad answers (method and path template), for the
 * OpenAPI check. */
#ifndef HYDRA_HTTP_H
#define HYDRA_HTTP_H

typedef struct {
  const char *method; /* NULL ends the table */
  const char *path;
  int public_route; /* answered without a token */
} http_route_t;

extern const http_route_t http_routes[];

#endif
