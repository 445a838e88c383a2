/* auth.h - bearer tokens mapped to users and roles, from a tokens file:
 * one "TOKEN USER ROLE" per line (ROLE is user or admin), '#' comments.
 * Tokens are compared in constant time; they never reach a log. */
#ifndef HYDRA_AUTH_H
#define HYDRA_AUTH_H

typedef struct auth auth_t;

typedef enum { ROLE_NONE, ROLE_USER, ROLE_ADMIN } role_t;

/* Loads the file; NULL with err naming the file and line on a bad line. */
auth_t *auth_load(const char *path, char *err);
void auth_free(auth_t *a);

/* The user of a token (NULL: unknown), and its role. */
const char *auth_lookup(const auth_t *a, const char *token, role_t *role);

#endif
