/* job_internal.h - what the files of the job document's parser share;
 * nothing outside spec/ includes it:
 *   job.c            the document: its parts, the checks between them
 *   job_field.c      errors that name a field, hints, typed getters
 *   job_component.c  component patterns, their expansion, component names
 *   job_method.c     methods: strings, patch objects, the list */
#ifndef HYDRA_JOB_INTERNAL_H
#define HYDRA_JOB_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "job.h"

typedef char path_t[JOB_FIELD_LEN];

/* ---- job_field.c ---- */

/* Fills err (field and message, cleaned for JSON); returns -1. */
int job_fail(job_error_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes a reason into msg; returns -1. */
int job_say(char *msg, size_t msg_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A user's string shortened for a message (at most 40 bytes, "..." when cut). */
const char *job_shorten(char buf[48], const char *s);
/* " (did you mean X?)" or " (known: a, b, c)" for word against known (NULL-terminated). */
const char *job_hint(char *buf, size_t n, const char *word, const char *const *known);
/* The index of s in list (NULL-terminated), or -1. */
int job_in_list(const char *s, const char *const *list);

/* The typed getters: each checks one value, or fails naming field (base for
 * check_keys) with job_fail. */
int job_check_keys(const json_t *obj, const char *base, const char *const *known, job_error_t *err);
int job_want_string(const json_t *v, const char *field, const char **out, job_error_t *err);
int job_copy_string(const json_t *v, const char *field, char **out, job_error_t *err);
int job_want_int(const json_t *v, const char *field, long long lo, long long hi, const char *what,
                 long long *out, job_error_t *err);
int job_want_bool(const json_t *v, const char *field, int *out, job_error_t *err);
int job_want_enum(const json_t *v, const char *field, const char *what, const char *const *names,
                  int *out, job_error_t *err);
int job_want_array(const json_t *v, const char *field, const char *what, size_t max, size_t *n,
                   job_error_t *err);
int job_want_token(const json_t *v, const char *field, int allow_text, int allow_id, job_token_t *t,
                   job_error_t *err);

/* ---- the document's parts kept with their nouns ---- */

/* ablations.components: the patterns, syntax checked (job_component.c). */
int job_parse_components(const json_t *v, job_spec_t *spec, job_error_t *err);
/* ablations.groups: named lists of patterns, syntax checked (job_component.c). */
int job_parse_groups(const json_t *v, job_spec_t *spec, job_error_t *err);
/* "name" and "labels" (job_labels.c): checked, copied into spec. */
int job_parse_name(const json_t *v, job_spec_t *spec, job_error_t *err);
int job_parse_labels(const json_t *v, job_spec_t *spec, job_error_t *err);
/* ablations.methods (job_method.c); patch sources are checked against
 * spec->n_prompts. */
int job_parse_methods(const json_t *v, job_spec_t *spec, job_error_t *err);

#endif
