/* tokenizer_json_internal.h - what the three files of the tokenizer.json
 * loader share; nothing outside tokenizer/ includes it:
 *   tokenizer_json.c           the document: the model, the added tokens, the
 *                              configs beside it, tokenizer_load_json
 *   tokenizer_json_pipeline.c  the normalizer, pre-tokenizer, post-processor
 *                              and decoder sections
 *   tokenizer_json_field.c     typed getters that name the file and field */
#ifndef HYDRA_TOKENIZER_JSON_INTERNAL_H
#define HYDRA_TOKENIZER_JSON_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "tokenizer_internal.h"

#define FIELD_LEN 256

typedef struct {
  tokenizer_t *t;
  const char *path;
  int byte_level;       /* a ByteLevel pre-tokenizer was seen */
  int after_byte_level; /* the pre-tokenizers read now come after it */
  char *err;
} json_loader_t;

/* ---- tokenizer_json_field.c: each returns 0, or -1 with L->err naming
 * L->path and the field ---- */

int json_loader_fail(json_loader_t *L, const char *field, const char *what);
/* Optional boolean; absent or null gives dflt. */
int json_loader_get_bool(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                         int dflt, int *out);
/* Required string (optional when out_len is given and dflt non-NULL). */
int json_loader_get_string(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                           const char *dflt, const char **out, size_t *out_len);
/* An integer in lo .. hi; absent or null gives dflt when dflt >= lo. */
int json_loader_get_int(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                        long dflt, long lo, long hi, long *out);
/* obj's "type", or NULL when it has no string there. */
const char *json_loader_type_of(const json_t *obj);
/* {"String": s} or {"Regex": r} (r only when allow_regex). */
int json_loader_get_pattern(json_loader_t *L, const json_t *obj, const char *parent,
                            tokenizer_pattern_t *p, int allow_regex);
/* A single character given as a string. */
int json_loader_get_char(json_loader_t *L, const json_t *obj, const char *parent, const char *key,
                         const char *dflt, char out[8], size_t *out_len);

/* ---- tokenizer_json_pipeline.c: each section (absent or null: none) added
 * to L->t as its steps ---- */

int json_loader_parse_normalizer(json_loader_t *L, const json_t *n, const char *field);
int json_loader_parse_pre_tokenizer(json_loader_t *L, const json_t *p, const char *field);
int json_loader_parse_post_processor(json_loader_t *L, const json_t *p, const char *field);
int json_loader_parse_decoder(json_loader_t *L, const json_t *d, const char *field);

#endif
