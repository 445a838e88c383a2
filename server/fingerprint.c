/* fingerprint.c - a model's identity (fingerprint.h). */
#include "fingerprint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "sha256.h"

#define CACHE_SUFFIX ".hydra-fingerprint"
#define CACHE_VERSION "hydra-fingerprint 1"
#define READ_CHUNK (1 << 20)
#define MAX_FILES 4096

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The cache line of a file as it is now: its key, then its hash. */
static void cache_key(const struct stat *st, char *key, size_t n) {
  snprintf(key, n, CACHE_VERSION " size=%lld mtime=%lld.%09ld ctime=%lld.%09ld ino=%llu",
           (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
           (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, (unsigned long long)st->st_ino);
}

/* The cached hash of the file, when its cache matches the file's key. */
static int cache_read(const char *path, const char *key, char hex[65]) {
  char cache[4096], line[512];
  if ((size_t)snprintf(cache, sizeof cache, "%s" CACHE_SUFFIX, path) >= sizeof cache)
    return -1;
  FILE *f = fopen(cache, "r");
  if (!f)
    return -1;
  const int got = fgets(line, sizeof line, f) != NULL;
  fclose(f);
  const size_t k = strlen(key);
  if (!got || strncmp(line, key, k) != 0 || strncmp(line + k, " sha256=", 8) != 0)
    return -1;
  const char *h = line + k + 8;
  for (int i = 0; i < 64; i++)
    if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
      return -1;
  if (h[64] != '\n')
    return -1;
  memcpy(hex, h, 64);
  hex[64] = 0;
  return 0;
}

/* Writes the cache (a temporary file renamed over it); a directory that
 * cannot be written is no error: the hash is computed again next time. */
static void cache_write(const char *path, const char *key, const char *hex) {
  char cache[4096], tmp[4200];
  if ((size_t)snprintf(cache, sizeof cache, "%s" CACHE_SUFFIX, path) >= sizeof cache ||
      (size_t)snprintf(tmp, sizeof tmp, "%s.%ld.tmp", cache, (long)getpid()) >= sizeof tmp)
    return;
  FILE *f = fopen(tmp, "w");
  if (!f)
    return;
  const int ok = fprintf(f, "%s sha256=%s\n", key, hex) > 0;
  if (fclose(f) != 0 || !ok || rename(tmp, cache) != 0)
    unlink(tmp);
}

/* The SHA-256 of one regular file, from its cache or computed (*n_hashed
 * counts those computed). */
static int file_hash(const char *path, fingerprint_cache_t cache, char hex[65], int *n_hashed,
                     char *err) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return err_set(err, "%s: cannot open for its fingerprint: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return err_set(err, "%s: not a regular file", path);
  }
  char key[256];
  cache_key(&st, key, sizeof key);
  if (cache == FINGERPRINT_CACHE_BESIDE && cache_read(path, key, hex) == 0) {
    close(fd);
    return 0;
  }
  unsigned char *chunk = malloc(READ_CHUNK), digest[32];
  if (!chunk) {
    close(fd);
    return err_set(err, "%s: out of memory for its fingerprint", path);
  }
  sha256_t c;
  sha256_init(&c);
  ssize_t n;
  long long total = 0;
  while ((n = read(fd, chunk, READ_CHUNK)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) {
      sha256_update(&c, chunk, (size_t)n);
      total += n;
    }
  const int read_errno = n < 0 ? errno : 0;
  free(chunk);
  close(fd);
  if (read_errno)
    return err_set(err, "%s: reading it for its fingerprint: %s", path, strerror(read_errno));
  if (total != (long long)st.st_size)
    return err_set(err, "%s: changed while its fingerprint was computed (%lld bytes read of %lld)",
                   path, total, (long long)st.st_size);
  sha256_final(&c, digest);
  sha256_hex(digest, hex);
  if (n_hashed)
    (*n_hashed)++;
  if (cache == FINGERPRINT_CACHE_BESIDE)
    cache_write(path, key, hex);
  return 0;
}

/* A file of a Hugging Face directory that a loader reads. */
static int model_file(const char *name) {
  return strcmp(name, "config.json") == 0 || strcmp(name, "tokenizer.json") == 0 ||
         strcmp(name, "tokenizer_config.json") == 0 || ends_with(name, ".safetensors") ||
         ends_with(name, ".safetensors.index.json");
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directory's hash: SHA-256 of sha256sum's listing of its model files. */
static int dir_hash(const char *dir, fingerprint_cache_t cache, char hex[65], int *n_hashed,
                    char *err) {
  DIR *d = opendir(dir);
  if (!d)
    return err_set(err, "%s: cannot list for its fingerprint: %s", dir, strerror(errno));
  char *names[MAX_FILES];
  int n = 0, rc = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (model_file(e->d_name)) {
      if (n == MAX_FILES || !(names[n] = strdup(e->d_name))) {
        rc = err_set(err, "%s: too many model files for its fingerprint", dir);
        break;
      }
      n++;
    }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], by_name);
  sha256_t c;
  sha256_init(&c);
  for (int i = 0; i < n && rc == 0; i++) {
    char path[4096], file_hex[65];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path)
      rc = err_set(err, "%s/%s: path too long", dir, names[i]);
    else if ((rc = file_hash(path, cache, file_hex, n_hashed, err)) == 0) {
      sha256_update(&c, file_hex, 64);
      sha256_update(&c, "  ", 2);
      sha256_update(&c, names[i], strlen(names[i]));
      sha256_update(&c, "\n", 1);
    }
  }
  for (int i = 0; i < n; i++)
    free(names[i]);
  if (rc)
    return rc;
  if (n == 0)
    return err_set(err, "%s: no model files to fingerprint", dir);
  unsigned char digest[32];
  sha256_final(&c, digest);
  sha256_hex(digest, hex);
  return 0;
}

int fingerprint_model(const char *path, const model_t *m, const tokenizer_t *tok,
                      fingerprint_cache_t cache, char *out, size_t out_len, int *n_hashed,
                      char *err) {
  char hex[65], dir[4096];
  struct stat st;
  if (n_hashed)
    *n_hashed = 0;
  if (stat(path, &st) != 0)
    return err_set(err, "%s: %s", path, strerror(errno));
  int rc;
  if (S_ISDIR(st.st_mode))
    rc = dir_hash(path, cache, hex, n_hashed, err);
  else if (ends_with(path, ".safetensors") || ends_with(path, ".json")) { /* inside a directory */
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    rc = dir_hash(dir, cache, hex, n_hashed, err);
  } else
    rc = file_hash(path, cache, hex, n_hashed, err);
  if (rc)
    return rc;
  const model_config_t *c = &m->cfg;
  char tok_part[64];
  if (tok)
    snprintf(tok_part, sizeof tok_part, "%.24s/%d", tokenizer_kind(tok),
             (int)tokenizer_n_vocab(tok));
  else
    snprintf(tok_part, sizeof tok_part, "none");
  for (char *p = tok_part; *p; p++) /* the parts of a fingerprint are separated by spaces */
    if (*p == ' ')
      *p = '-';
  if ((size_t)snprintf(out, out_len, "sha256:%s %s L%d d%d h%d/%d f%d v%d tok:%s", hex, c->family,
                       c->n_layers, c->d_model, c->n_heads, c->n_kv_heads, c->d_mlp, c->vocab_size,
                       tok_part) >= out_len)
    return err_set(err, "%s: its fingerprint does not fit %zu bytes", path, out_len);
  return 0;
}
