/* sha256.h - SHA-256 (FIPS 180-4), for content hashes (a model file's
 * fingerprint). Incremental: init, update any number of times, final. */
#ifndef HYDRA_SHA256_H
#define HYDRA_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t h[8];
  uint64_t bytes; /* hashed so far */
  unsigned char block[64];
  size_t fill; /* bytes waiting in block */
} sha256_t;

void sha256_init(sha256_t *c);
void sha256_update(sha256_t *c, const void *data, size_t len);
/* The digest, 32 bytes; c must be initialised again before another use. */
void sha256_final(sha256_t *c, unsigned char digest[32]);
/* The digest as 64 lowercase hex digits and a NUL. */
void sha256_hex(const unsigned char digest[32], char hex[65]);

#endif
