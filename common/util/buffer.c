#include "buffer.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int buffer_grow(void **items, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 16;
  while (n < need) {
    if (n > SIZE_MAX / 2 / elem)
      return -1;
    n *= 2;
  }
  void *grown = realloc(*items, n * elem);
  if (!grown)
    return -1;
  *items = grown;
  *cap = n;
  return 0;
}

int buffer_append(buffer_t *b, const void *bytes, size_t n) {
  if (n >= SIZE_MAX - b->len || buffer_grow((void **)&b->data, &b->cap, b->len + n + 1, 1))
    return -1;
  if (n)
    memcpy(b->data + b->len, bytes, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int buffer_appendf(buffer_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= SIZE_MAX - b->len ||
      buffer_grow((void **)&b->data, &b->cap, b->len + (size_t)n + 1, 1))
    return -1;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void buffer_clear(buffer_t *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

void buffer_free(buffer_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *bytes_dup(const char *s, size_t n) {
  char *d = n < SIZE_MAX ? malloc(n + 1) : NULL;
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}
