/* buffer.h - the one growable buffer: bytes appended at its end (printf-style
 * too), and the growth rule of every growable array in hydra.
 *
 * A buffer_t starts zeroed (`buffer_t b = {0}`: empty, no memory) and owns
 * its data, which buffer_free releases. After any successful append the data
 * is NUL-terminated (the NUL not counted in len), so text can be read as a C
 * string. An append that fails (out of memory, or a size past SIZE_MAX)
 * returns -1 and leaves the buffer as it was. Not thread-safe: one owner at a
 * time. */
#ifndef HYDRA_BUFFER_H
#define HYDRA_BUFFER_H

#include <stddef.h>

typedef struct {
  char *data; /* NULL until the first append */
  size_t len; /* bytes held, the NUL not counted */
  size_t cap; /* bytes allocated */
} buffer_t;

/* Appends n bytes (n may be 0; bytes may then be NULL). 0 or -1. */
int buffer_append(buffer_t *b, const void *bytes, size_t n);

/* Appends the text printf would write. 0 or -1. */
int buffer_appendf(buffer_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Empties the buffer and keeps its memory for the next appends. */
void buffer_clear(buffer_t *b);

/* Releases the data; b is empty ({0}) again. */
void buffer_free(buffer_t *b);

/* Makes *items, an array of elem-byte elements with room for *cap of them,
 * hold at least need: the room doubles, from 16, until it does. Elements held
 * are kept; new room is uninitialised. Returns 0, or -1 when out of memory or
 * when the size would pass SIZE_MAX (*items and *cap then unchanged). */
int buffer_grow(void **items, size_t *cap, size_t need, size_t elem);

/* A malloc'd copy of n bytes (NULs among them kept) followed by a NUL; NULL
 * when out of memory. The caller frees it. */
char *bytes_dup(const char *s, size_t n);

#endif
