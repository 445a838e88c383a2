/* job_view.h - how hydrad shows its jobs to their users: one job's JSON
 * (its status, and an entry of every list), a job named by its id or a
 * unique prefix of it, and a page of a job list with its filters and
 * cursor. Read-only: nothing here writes the store. Thread-safe (the
 * scheduler's lock and the store's read connection). */
#ifndef HYDRA_JOB_VIEW_H
#define HYDRA_JOB_VIEW_H

#include <jansson.h>
#include <stddef.h>

#include "auth.h"
#include "server.h"

/* The shortest id prefix accepted for a job (hex digits). */
#define JOB_VIEW_MIN_PREFIX 6
/* Jobs per page of a list (?limit=, at most this). */
#define JOB_VIEW_PAGE_MAX 1000

/* The job's JSON: id, user, model, name, labels, state, counts (prompts,
 * variants), times, progress with its own rate and ETA, and, while it
 * waits, its place in the queue and why. viewer and role decide whether
 * another user's job that it waits behind is named. A new reference. */
json_t *job_view_json(server_t *s, const store_job_t *j, const char *viewer, role_t role);

/* Resolves given (a full 32-hex id, or a unique prefix of at least
 * JOB_VIEW_MIN_PREFIX lowercase hex digits) among the jobs user may see
 * (every job for an admin) into id. A full id is copied as it is (the
 * caller looks it up). Returns 0; or an HTTP status with a message in msg
 * (len bytes): 400 for a prefix that matches several jobs (naming how
 * many); 404 when it matches none or is no id (too short, too long, not
 * lowercase hex); 503 when the store fails. */
int job_view_resolve(server_t *s, const char *given, const char *user, role_t role,
                     char id[STORE_ID_LEN], char *msg, size_t len);

/* A list's query: every field may be NULL (not given). */
typedef struct {
  const char *limit;  /* jobs per page, 1..JOB_VIEW_PAGE_MAX */
  const char *cursor; /* a page's next_cursor: the page after it */
  const char *after;  /* the older form: the page after this job id */
  const char *name;   /* only jobs of this name */
  const char *label;  /* only jobs with this label: KEY=VALUE, or KEY (any value) */
  const char *state;  /* only jobs in this state */
} job_view_query_t;

/* The page of jobs user may see (every user's for an admin), newest first
 * (by creation time, then id): {"jobs": [...], "next_cursor": C or null,
 * "next": URL or null}. A cursor names the last job shown by its creation
 * time and id, so that a page stays where it was while new jobs arrive.
 * NULL with an HTTP status (400 naming the query field, 503) in *status
 * and a message in msg, *field the query field ("" for none). */
json_t *job_view_list(server_t *s, const char *user, role_t role, const job_view_query_t *q,
                      int *status, const char **field, char *msg, size_t len);

#endif
