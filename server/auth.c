#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "error.h"

typedef struct {
  char *token, *user;
  int line; /* in the tokens file */
  role_t role;
} entry_t;

struct auth {
  entry_t *e;
  int n;
};

/* What is wrong with a tokens-file line of n fields, naming the part (never
 * the token itself: it is a secret); NULL when nothing is. */
static const char *auth_line_problem(int n, const char *token, const char *role) {
  if (n == 1)
    return "one field: the user and the role are missing";
  if (n == 2)
    return "two fields: the role (third field) is missing";
  if (n > 3)
    return "a fourth field: a line holds exactly three (a token has no spaces)";
  if (strlen(token) < 8)
    return "the token (first field) is shorter than 8 characters";
  if (strcmp(role, "user") != 0 && strcmp(role, "admin") != 0)
    return "the role (third field) is neither user nor admin";
  return NULL;
}

auth_t *auth_load(const char *path, char *err) {
  FILE *f = fopen(path, "r");
  if (!f) {
    err_set(err, "%s: %s", path, strerror(errno));
    return NULL;
  }
  auth_t *a = calloc(1, sizeof(*a));
  char line[1024];
  int lineno = 0;
  size_t cap = 0;
  while (a && fgets(line, sizeof(line), f)) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash)
      *hash = '\0';
    char token[512], user[256], role[32], extra[8];
    int n = sscanf(line, "%511s %255s %31s %7s", token, user, role, extra);
    if (n <= 0)
      continue;
    const char *why = auth_line_problem(n, token, role);
    if (why) {
      err_set(err,
              "%s:%d: %s (expected \"TOKEN USER ROLE\": a token of 8+ characters, ROLE user or "
              "admin)",
              path, lineno, why);
      auth_free(a);
      a = NULL;
      break;
    }
    int first = 0; /* a token given twice would name whichever line wins: refused */
    for (int i = 0; i < a->n && !first; i++)
      if (strcmp(a->e[i].token, token) == 0)
        first = a->e[i].line;
    if (first) {
      err_set(err,
              "%s:%d: the token (first field) is the token of line %d: each token names one "
              "user",
              path, lineno, first);
      auth_free(a);
      a = NULL;
      break;
    }
    if (buffer_grow((void **)&a->e, &cap, (size_t)a->n + 1, sizeof(entry_t)) != 0) {
      auth_free(a);
      a = NULL;
      break;
    }
    entry_t *e = &a->e[a->n++];
    e->line = lineno;
    e->token = strdup(token);
    e->user = strdup(user);
    e->role = strcmp(role, "admin") == 0 ? ROLE_ADMIN : ROLE_USER;
  }
  fclose(f);
  if (a && a->n == 0) {
    err_set(err, "%s: no tokens", path);
    auth_free(a);
    return NULL;
  }
  return a;
}

void auth_free(auth_t *a) {
  if (!a)
    return;
  for (int i = 0; i < a->n; i++) {
    free(a->e[i].token);
    free(a->e[i].user);
  }
  free(a->e);
  free(a);
}

/* Constant time in the token's content (not its length). */
static int same(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = (unsigned char)(la != lb);
  for (size_t i = 0; i < la; i++)
    d |= (unsigned char)(a[i] ^ b[i < lb ? i : 0]);
  return d == 0;
}

const char *auth_lookup(const auth_t *a, const char *token, role_t *role) {
  const char *user = NULL;
  *role = ROLE_NONE;
  for (int i = 0; a && token && i < a->n; i++)
    if (same(token, a->e[i].token)) {
      user = a->e[i].user;
      *role = a->e[i].role;
    }
  return user;
}
