/* json_field.h - naming the field of a JSON document that a message is
 * about, as one path from the document's root: "ablations.methods[1]",
 * "pre_tokenizer.pretokenizers[0].pattern". jansson's own errors do not name
 * the key (CONVENTIONS.md), so every reader of a document (job documents,
 * tokenizer.json, the server's and the CLI's error messages) builds its paths
 * and its "field: message" lines here.
 *
 * Paths are cut to the caller's buffer (len bytes, NUL included, len > 0);
 * nothing is allocated. All functions are pure and thread-safe. */
#ifndef HYDRA_JSON_FIELD_H
#define HYDRA_JSON_FIELD_H

#include <jansson.h>
#include <stddef.h>

/* "parent.key", or "key" when parent is "" (a field of the root); a NULL
 * key is written "?". Returns out. */
const char *json_field_key(char *out, size_t len, const char *parent, const char *key);

/* "parent[index]". Returns out. */
const char *json_field_index(char *out, size_t len, const char *parent, size_t index);

/* What a value (non-NULL) is, for "expected X, got Y": "an object", "an
 * array", "a string", "an integer", "a number", "true", "false", "null". */
const char *json_field_kind(const json_t *v);

/* "field: message", or the message alone when field is NULL or "" (an
 * error about the whole document). Returns out. */
const char *json_field_message(char *out, size_t len, const char *field, const char *message);

#endif
