/* loader_hf_config_internal.h - loader_hf_config.c (config.json) as the rest
 * of the Hugging Face loader (loader_hf.c: the safetensors weights,
 * model_load_hf) sees it; nothing outside model/ includes it. */
#ifndef HYDRA_LOADER_HF_CONFIG_INTERNAL_H
#define HYDRA_LOADER_HF_CONFIG_INTERNAL_H

#include <jansson.h>
#include <sys/stat.h>

#include "model.h"

/* Whether stat finds path (both files look for the model's files first). */
static inline int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Reads config.json at path into cfg (zeroed first) for its model_type (a family
 * of loader_hf_config.c's hf_families[]) and checks it with model_config_check. *root gets the
 * parsed document, which the caller frees (json_decref) whether or not this fails. Returns 0, or -1
 * with err naming the file and the key. */
int hf_config_load(const char *path, json_t **root, model_config_t *cfg, char *err);

/* A multimodal model's language model (model_type gemma3: Gemma 3 4B and
 * up): *text gets a new reference to its config.json keys, text_config's
 * over Gemma3TextConfig's defaults; NULL for any other model_type. Returns
 * 0, or -1 with err naming the file and the key. */
int hf_config_language_model(const char *path, const json_t *root, json_t **text, char *err);

#endif
