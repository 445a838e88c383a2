/* job_component.c - component names: the pattern syntax a job writes them in
 * ("*", "embed", "attn.3", "mlp.*", "head.5.*", "neuron.3.17"), checked when
 * the document is parsed (ablations.components); the patterns expanded against
 * a model's shape into components, each once, in order of first appearance;
 * and a component's canonical name. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_internal.h"
#include "json_field.h"

/* ---- component patterns ---- */

typedef enum {
  PATTERN_ALL, /* "*": attention and MLP of every layer */
  PATTERN_EMBED,
  PATTERN_ATTN,
  PATTERN_MLP,
  PATTERN_HEAD,
  PATTERN_NEURON,
  PATTERN_RESID_PRE,
  PATTERN_RESID_MID,
  PATTERN_RESID_POST,
  PATTERN_Q,
  PATTERN_K,
  PATTERN_V,
  PATTERN_PATTERN,
} pattern_kind_t;

#define WILDCARD (-1) /* layer or index "*" */
#define NOT_USED (-2) /* the kind has no such part */

typedef struct {
  int kind; /* pattern_kind_t, or component_kind_t in a component */
  int layer, index;
} triple_t;

static const char *const pattern_kinds[] = {
    "*", "embed", "attn", "mlp", "head", "neuron", "resid_pre", "resid_mid", "resid_post", NULL};

/* A part: "*" (when star_ok) or a non-negative decimal without leading zero. */
static int parse_part(const char *s, size_t n, int star_ok, const char *what, int *out, char *msg,
                      size_t msg_len) {
  long long x = 0;
  if (n == 1 && s[0] == '*') {
    if (!star_ok)
      return job_say(msg, msg_len, "'*' is not allowed as the %s here", what);
    *out = WILDCARD;
    return 0;
  }
  if (n == 0)
    return job_say(msg, msg_len, "missing %s", what);
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return job_say(msg, msg_len, "the %s must be a non-negative integer%s", what,
                     star_ok ? " or *" : "");
    x = x * 10 + (s[i] - '0');
    if (x > INT_MAX)
      return job_say(msg, msg_len, "the %s is too large", what);
  }
  if (n > 1 && s[0] == '0')
    return job_say(msg, msg_len, "the %s has a leading zero", what);
  *out = (int)x;
  return 0;
}

/* Other libraries' names for a layer's parts (TransformerLens hook points
 * and modules, Hugging Face modules), after the layer's number: hydra's
 * component for each, with L for the layer. Refused naming hydra's
 * spelling, not translated: their hooks sit at other points of the block
 * (hook_z is before the output projection, a module's output before a post
 * norm), so a silent translation could ablate something else. */
static const struct {
  const char *suffix, *hydra;
} foreign_parts[] = {
    {"", "resid_post.L (a layer's output)"},
    {"attn", "attn.L"},
    {"attn.hook_z", "attn.L (one head: head.L.H)"},
    {"attn.hook_result", "head.L.*"},
    {"attn.hook_q", "q.L.*"},
    {"attn.hook_k", "k.L.*"},
    {"attn.hook_v", "v.L.*"},
    {"attn.hook_pattern", "pattern.L.*"},
    {"hook_attn_out", "attn.L"},
    {"hook_mlp_out", "mlp.L"},
    {"mlp", "mlp.L"},
    {"mlp.hook_post", "neuron.L.*"},
    {"hook_resid_pre", "resid_pre.L"},
    {"hook_resid_mid", "resid_mid.L"},
    {"hook_resid_post", "resid_post.L"},
    {"self_attn", "attn.L"},
    {"self_attn.o_proj", "attn.L"},
    {"attn.c_proj", "attn.L"},
    {"attention", "attn.L"},
    {"mlp.down_proj", "mlp.L"},
    {"mlp.c_proj", "mlp.L"},
    {"mlp.dense_4h_to_h", "mlp.L"},
};
static const char *const foreign_layers[] = {"blocks.",
                                             "model.layers.",
                                             "transformer.h.",
                                             "gpt_neox.layers.",
                                             "model.decoder.layers.",
                                             "layers.",
                                             NULL};
static const char *const foreign_embeds[] = {
    "hook_embed",   "embed.W_E", "model.embed_tokens", "transformer.wte", "gpt_neox.embed_in",
    "embed_tokens", NULL};

#define HYDRA_SCHEME                                                                               \
  "hydra names components embed, attn.L, mlp.L, head.L.H, q/k/v.L.H, neuron.L.N, "                 \
  "resid_pre/resid_mid/resid_post.L, pattern.L.H"

/* 1 (with msg: hydra's name for it) when s is another library's name for
 * a component; 0 otherwise. */
static int foreign_name(const char *s, char *msg, size_t msg_len) {
  for (int i = 0; foreign_embeds[i]; i++)
    if (!strcmp(s, foreign_embeds[i])) {
      job_say(msg, msg_len, "not hydra's spelling (%s): did you mean embed?", HYDRA_SCHEME);
      return 1;
    }
  for (int i = 0; foreign_layers[i]; i++) {
    const size_t n = strlen(foreign_layers[i]);
    if (strncmp(s, foreign_layers[i], n) != 0 || s[n] < '0' || s[n] > '9')
      continue;
    char *end;
    const long layer = strtol(s + n, &end, 10);
    const char *rest = *end == '.' ? end + 1 : end;
    if (*end && *end != '.')
      continue;
    for (size_t k = 0; k < sizeof(foreign_parts) / sizeof(foreign_parts[0]); k++)
      if (!strcmp(rest, foreign_parts[k].suffix)) {
        char name[96];
        size_t w = 0;
        for (const char *h = foreign_parts[k].hydra; *h && w + 24 < sizeof(name); h++)
          w += *h == 'L' ? (size_t)snprintf(name + w, sizeof(name) - w, "%ld", layer)
                         : (size_t)snprintf(name + w, sizeof(name) - w, "%c", *h);
        job_say(msg, msg_len, "not hydra's spelling (%s): did you mean %s?", HYDRA_SCHEME, name);
        return 1;
      }
    job_say(msg, msg_len, "another library's name, not hydra's: %s", HYDRA_SCHEME);
    return 1;
  }
  return 0;
}

/* Parses a component pattern's syntax (not its ranges). On error writes
 * the reason into msg and returns -1. */
static int pattern_parse(const char *s, triple_t *p, char *msg, size_t msg_len) {
  if (foreign_name(s, msg, msg_len))
    return -1;
  const char *part[4];
  size_t len[4];
  int n = 0;
  char why[400];
  const char *c = s;
  for (;;) {
    const char *dot = strchr(c, '.');
    if (n == 3)
      return job_say(msg, msg_len, "too many parts");
    part[n] = c;
    len[n] = dot ? (size_t)(dot - c) : strlen(c);
    n++;
    if (!dot)
      break;
    c = dot + 1;
  }
  p->layer = p->index = NOT_USED;
  if (len[0] == 1 && part[0][0] == '*') {
    p->kind = PATTERN_ALL;
    if (n != 1)
      return job_say(msg, msg_len, "'*' stands alone (every attention and MLP layer)");
    return 0;
  }
  if (len[0] == 5 && !strncmp(part[0], "embed", 5)) {
    p->kind = PATTERN_EMBED;
    if (n != 1)
      return job_say(msg, msg_len, "embed takes no layer");
    return 0;
  }
  if ((len[0] == 4 && !strncmp(part[0], "attn", 4)) ||
      (len[0] == 3 && !strncmp(part[0], "mlp", 3))) {
    p->kind = part[0][0] == 'a' ? PATTERN_ATTN : PATTERN_MLP;
    if (n != 2)
      return job_say(msg, msg_len, "expected %.*s.LAYER or %.*s.*", (int)len[0], part[0],
                     (int)len[0], part[0]);
    return parse_part(part[1], len[1], 1, "layer", &p->layer, msg, msg_len);
  }
  for (int k = PATTERN_RESID_PRE; k <= PATTERN_RESID_POST; k++)
    if (len[0] == strlen(pattern_kinds[k]) && !strncmp(part[0], pattern_kinds[k], len[0])) {
      p->kind = k;
      if (n != 2)
        return job_say(msg, msg_len, "expected %s.LAYER or %s.*", pattern_kinds[k],
                       pattern_kinds[k]);
      return parse_part(part[1], len[1], 1, "layer", &p->layer, msg, msg_len);
    }
  const int qkv = len[0] == 1 && (part[0][0] == 'q' || part[0][0] == 'k' || part[0][0] == 'v');
  const int attn_pattern = len[0] == 7 && !strncmp(part[0], "pattern", 7);
  if ((len[0] == 4 && !strncmp(part[0], "head", 4)) || qkv || attn_pattern) {
    p->kind = attn_pattern        ? PATTERN_PATTERN
              : !qkv              ? PATTERN_HEAD
              : part[0][0] == 'q' ? PATTERN_Q
              : part[0][0] == 'k' ? PATTERN_K
                                  : PATTERN_V;
    if (n == 2 && len[1] == 1 && part[1][0] == '*') {
      p->layer = p->index = WILDCARD;
      return 0;
    }
    if (n != 3)
      return job_say(msg, msg_len, "expected %.*s.LAYER.HEAD, %.*s.LAYER.* or %.*s.*", (int)len[0],
                     part[0], (int)len[0], part[0], (int)len[0], part[0]);
    if (parse_part(part[1], len[1], 0, "layer", &p->layer, msg, msg_len))
      return -1;
    return parse_part(part[2], len[2], 1, "head", &p->index, msg, msg_len);
  }
  if (len[0] == 6 && !strncmp(part[0], "neuron", 6)) {
    p->kind = PATTERN_NEURON;
    if (n != 3)
      return job_say(msg, msg_len, "expected neuron.LAYER.NEURON or neuron.LAYER.*");
    if (parse_part(part[1], len[1], 0, "layer", &p->layer, msg, msg_len))
      return -1;
    return parse_part(part[2], len[2], 1, "neuron", &p->index, msg, msg_len);
  }
  {
    char kind[48];
    size_t k = len[0] < sizeof kind - 1 ? len[0] : sizeof kind - 1;
    memcpy(kind, part[0], k);
    kind[k] = '\0';
    return job_say(msg, msg_len, "unknown component kind%s",
                   job_hint(why, sizeof why, kind, pattern_kinds));
  }
}

int job_parse_components(const json_t *v, job_spec_t *spec, job_error_t *err) {
  size_t n = 0;
  if (job_want_array(v, "ablations.components", "components", JOB_MAX_VARIANTS, &n, err))
    return -1;
  spec->components = calloc(n, sizeof *spec->components);
  if (!spec->components)
    return job_fail(err, "ablations.components", "out of memory");
  spec->n_components = (int)n;
  for (size_t i = 0; i < n; i++) {
    char msg[256], short_s[48];
    triple_t p;
    path_t f;
    json_field_index(f, JOB_FIELD_LEN, "ablations.components", i);
    if (job_copy_string(json_array_get(v, i), f, &spec->components[i], err))
      return -1;
    if (pattern_parse(spec->components[i], &p, msg, sizeof msg))
      return job_fail(err, f, "\"%s\": %s", job_shorten(short_s, spec->components[i]), msg);
  }
  return 0;
}

/* ---- expansion ---- */

/* An ordered set of triples: items in order of insertion, an open-addressing
 * table of item index + 1 (0: empty) for lookups. */
typedef struct {
  triple_t *items;
  size_t n, cap;
  uint32_t *slots;
  size_t n_slots; /* a power of two, > 2 n */
} triple_set_t;

static size_t triple_hash(triple_t t) {
  uint64_t h = (uint64_t)(uint32_t)t.kind * 0x9e3779b97f4a7c15ull;
  h ^= (uint64_t)(uint32_t)t.layer * 0xc2b2ae3d27d4eb4full;
  h ^= (uint64_t)(uint32_t)t.index * 0x165667b19e3779f9ull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return (size_t)h;
}

static int triple_equal(triple_t a, triple_t b) {
  return a.kind == b.kind && a.layer == b.layer && a.index == b.index;
}

static int set_grow(triple_set_t *s) {
  size_t n_slots = s->n_slots ? s->n_slots * 2 : 64;
  uint32_t *slots = calloc(n_slots, sizeof *slots);
  triple_t *items = realloc(s->items, n_slots / 2 * sizeof *items);
  if (items)
    s->items = items;
  if (!slots || !items) {
    free(slots);
    return -1;
  }
  s->cap = n_slots / 2;
  for (size_t i = 0; i < s->n; i++) {
    size_t j = triple_hash(s->items[i]) & (n_slots - 1);
    while (slots[j])
      j = (j + 1) & (n_slots - 1);
    slots[j] = (uint32_t)(i + 1);
  }
  free(s->slots);
  s->slots = slots;
  s->n_slots = n_slots;
  return 0;
}

/* Adds t unless present. Returns 1 added, 0 present, -1 out of memory. */
static int set_add(triple_set_t *s, triple_t t) {
  size_t j;
  if (s->n + 1 >= s->cap && set_grow(s))
    return -1;
  j = triple_hash(t) & (s->n_slots - 1);
  for (; s->slots[j]; j = (j + 1) & (s->n_slots - 1))
    if (triple_equal(s->items[s->slots[j] - 1], t))
      return 0;
  s->items[s->n] = t;
  s->slots[j] = (uint32_t)(++s->n);
  return 1;
}

static void set_free(triple_set_t *s) {
  free(s->items);
  free(s->slots);
}

typedef struct {
  triple_set_t components;
  size_t max; /* components allowed: JOB_MAX_VARIANTS / variants per component */
  const char *field, *pattern;
  job_error_t *err;
} expansion_t;

static int add(expansion_t *x, component_kind_t kind, int layer, int index) {
  char s[48];
  int r = set_add(&x->components, (triple_t){(int)kind, layer, index});
  if (r < 0)
    return job_fail(x->err, x->field, "out of memory");
  if (x->components.n > x->max)
    return job_fail(x->err, x->field,
                    "\"%s\" takes the job past %d variants per prompt (components x methods, "
                    "resample once per sample: %zu components allowed)",
                    job_shorten(s, x->pattern), JOB_MAX_VARIANTS, x->max);
  return 0;
}

/* Range errors: "(model has 30 layers)". */
static int out_of_range(expansion_t *x, const char *what, int have) {
  char s[48];
  return job_fail(x->err, x->field, "unknown component \"%s\" (model has %d %s)",
                  job_shorten(s, x->pattern), have, what);
}

static int expand_pattern(expansion_t *x, triple_t p, const model_config_t *cfg) {
  char s[48];
  int l0 = p.layer, l1 = p.layer + 1;
  if (p.kind == PATTERN_EMBED)
    return add(x, COMPONENT_EMBED, -1, -1);
  if (p.kind == PATTERN_ALL || p.layer == WILDCARD) {
    l0 = 0;
    l1 = cfg->n_layers;
  } else if (p.layer >= cfg->n_layers)
    return out_of_range(x, "layers", cfg->n_layers);
  if ((p.kind == PATTERN_HEAD || p.kind == PATTERN_Q || p.kind == PATTERN_PATTERN) &&
      p.index >= cfg->n_heads)
    return out_of_range(x, "heads per layer", cfg->n_heads);
  if ((p.kind == PATTERN_K || p.kind == PATTERN_V) && p.index >= cfg->n_kv_heads)
    return out_of_range(x, "key/value heads per layer", cfg->n_kv_heads);
  if (p.kind == PATTERN_NEURON && p.index >= cfg->d_mlp)
    return out_of_range(x, "MLP neurons per layer", cfg->d_mlp);
  for (int l = l0; l < l1; l++) {
    switch (p.kind) {
    case PATTERN_ALL:
      if (add(x, COMPONENT_ATTN, l, -1) || add(x, COMPONENT_MLP, l, -1))
        return -1;
      break;
    case PATTERN_ATTN:
    case PATTERN_MLP:
      if (add(x, p.kind == PATTERN_ATTN ? COMPONENT_ATTN : COMPONENT_MLP, l, -1))
        return -1;
      break;
    case PATTERN_RESID_PRE:
    case PATTERN_RESID_MID:
    case PATTERN_RESID_POST:
      if (p.kind == PATTERN_RESID_MID && cfg->parallel_residual)
        return job_fail(x->err, x->field,
                        "\"%s\": this model's blocks have a parallel residual (attention and "
                        "MLP both read the layer's input): there is no resid_mid; use "
                        "resid_pre or resid_post",
                        job_shorten(s, x->pattern));
      if (add(x, (component_kind_t)(COMPONENT_RESID_PRE + (p.kind - PATTERN_RESID_PRE)), l, -1))
        return -1;
      break;
    case PATTERN_HEAD:
    case PATTERN_NEURON:
    case PATTERN_Q:
    case PATTERN_K:
    case PATTERN_V:
    case PATTERN_PATTERN: {
      component_kind_t kind = p.kind == PATTERN_HEAD      ? COMPONENT_HEAD
                              : p.kind == PATTERN_NEURON  ? COMPONENT_NEURON
                              : p.kind == PATTERN_Q       ? COMPONENT_Q
                              : p.kind == PATTERN_K       ? COMPONENT_K
                              : p.kind == PATTERN_PATTERN ? COMPONENT_PATTERN
                                                          : COMPONENT_V;
      int n = p.kind == PATTERN_NEURON                     ? cfg->d_mlp
              : p.kind == PATTERN_K || p.kind == PATTERN_V ? cfg->n_kv_heads
                                                           : cfg->n_heads;
      int i0 = p.index == WILDCARD ? 0 : p.index, i1 = p.index == WILDCARD ? n : p.index + 1;
      for (int i = i0; i < i1; i++)
        if (add(x, kind, l, i))
          return -1;
      break;
    }
    default:
      return job_fail(x->err, x->field, "internal error: pattern kind %d", p.kind);
    }
  }
  return 0;
}

/* Expands patterns[0..n) (their fields base[i]) into *out, each component
 * once in order of first appearance. */
static int expand_list(char *const *patterns, int n, const char *base, const job_spec_t *spec,
                       const model_config_t *cfg, component_t **out, int *n_out, job_error_t *err) {
  job_error_t scratch;
  expansion_t x = {{0}, 0, "", "", NULL};
  triple_set_t wildcards = {0};
  long per_component = 0;
  if (!err)
    err = &scratch;
  memset(err, 0, sizeof *err);
  x.err = err;
  if (out)
    *out = NULL;
  if (n_out)
    *n_out = 0;
  if (!spec || !cfg || !out || !n_out)
    return job_fail(err, "", "job_expand_components: missing argument");
  if (cfg->n_layers <= 0 || cfg->n_heads <= 0 || cfg->d_mlp <= 0)
    return job_fail(err, "", "the model's config has no layers, heads or MLP neurons");
  for (int m = 0; m < spec->n_methods; m++)
    per_component += spec->methods[m].kind == METHOD_RESAMPLE && spec->samples > 1
                         ? (spec->samples < JOB_MAX_VARIANTS ? spec->samples : JOB_MAX_VARIANTS)
                         : 1;
  x.max = (size_t)(JOB_MAX_VARIANTS / (per_component > 0 ? per_component : 1));
  for (int i = 0; i < n; i++) {
    char msg[256], s[48];
    path_t f;
    triple_t p;
    x.field = json_field_index(f, JOB_FIELD_LEN, base, (size_t)i);
    x.pattern = patterns[i] ? patterns[i] : "";
    if (pattern_parse(x.pattern, &p, msg, sizeof msg)) {
      job_fail(err, f, "\"%s\": %s", job_shorten(s, x.pattern), msg);
      goto fail;
    }
    /* A wildcard seen before adds nothing: skip it, so that repeats cost nothing. */
    if (p.kind == PATTERN_ALL || p.layer == WILDCARD || p.index == WILDCARD) {
      int r = set_add(&wildcards, p);
      if (r < 0) {
        job_fail(err, f, "out of memory");
        goto fail;
      }
      if (r == 0)
        continue;
    }
    if (expand_pattern(&x, p, cfg))
      goto fail;
  }
  if (x.components.n) {
    *out = malloc(x.components.n * sizeof **out);
    if (!*out) {
      job_fail(err, base, "out of memory");
      goto fail;
    }
    for (size_t i = 0; i < x.components.n; i++)
      (*out)[i] = (component_t){(component_kind_t)x.components.items[i].kind,
                                x.components.items[i].layer, x.components.items[i].index};
    *n_out = (int)x.components.n;
  }
  set_free(&x.components);
  set_free(&wildcards);
  return 0;
fail:
  set_free(&x.components);
  set_free(&wildcards);
  return -1;
}

int job_expand_components(const job_spec_t *spec, const model_config_t *cfg, component_t **out,
                          int *n_out, job_error_t *err) {
  return expand_list(spec ? spec->components : NULL, spec ? spec->n_components : 0,
                     "ablations.components", spec, cfg, out, n_out, err);
}

int job_expand_group(const job_spec_t *spec, int g, const model_config_t *cfg, component_t **out,
                     int *n_out, job_error_t *err) {
  path_t base;
  if (!spec || g < 0 || g >= spec->n_groups)
    return job_fail(err, "ablations.groups", "job_expand_group: no group %d", g);
  json_field_key(base, JOB_FIELD_LEN, "ablations.groups", spec->groups[g].name);
  if (expand_list(spec->groups[g].patterns, spec->groups[g].n_patterns, base, spec, cfg, out, n_out,
                  err))
    return -1;
  /* A member inside another (a head of a layer the group holds) would be
   * ablated twice over: refused rather than stacked. */
  for (int i = 0; i < *n_out; i++) {
    const component_t *whole = &(*out)[i];
    if (whole->kind != COMPONENT_ATTN && whole->kind != COMPONENT_MLP)
      continue;
    for (int j = 0; j < *n_out; j++) {
      const component_t *part = &(*out)[j];
      const int inside = part->layer == whole->layer &&
                         (whole->kind == COMPONENT_ATTN
                              ? part->kind == COMPONENT_HEAD || part->kind == COMPONENT_Q ||
                                    part->kind == COMPONENT_K || part->kind == COMPONENT_V ||
                                    part->kind == COMPONENT_PATTERN
                              : part->kind == COMPONENT_NEURON);
      if (inside) {
        char a[48], b[48];
        component_name(whole, a, sizeof a);
        component_name(part, b, sizeof b);
        free(*out);
        *out = NULL;
        *n_out = 0;
        return job_fail(err, base,
                        "%s is part of %s, also in the group: a member inside another would be "
                        "ablated twice over",
                        b, a);
      }
    }
  }
  return 0;
}

/* ablations.groups: {"name": ["pattern", ...], ...}. */
int job_parse_groups(const json_t *v, job_spec_t *spec, job_error_t *err) {
  const char *key;
  const json_t *list;
  if (!json_is_object(v))
    return job_fail(err, "ablations.groups",
                    "expected an object of named lists of components, e.g. {\"layers 10-11\": "
                    "[\"attn.10\", \"attn.11\"]}, got %s",
                    json_field_kind(v));
  const size_t n = json_object_size(v);
  if (n > JOB_MAX_GROUPS)
    return job_fail(err, "ablations.groups", "%zu groups: more than %d", n, JOB_MAX_GROUPS);
  spec->groups = calloc(n ? n : 1, sizeof *spec->groups);
  if (!spec->groups)
    return job_fail(err, "ablations.groups", "out of memory");
  json_object_foreach((json_t *)v, key, list) {
    job_group_t *g = &spec->groups[spec->n_groups++];
    path_t f;
    char msg[256], s[48];
    triple_t p;
    json_field_key(f, JOB_FIELD_LEN, "ablations.groups", key);
    const size_t klen = strlen(key);
    if (klen == 0 || klen > JOB_GROUP_NAME_MAX)
      return job_fail(err, f, "a group's name is 1 to %d bytes", JOB_GROUP_NAME_MAX);
    for (size_t i = 0; i < klen; i++)
      if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
        return job_fail(err, f, "a group's name has no control characters");
    if (pattern_parse(key, &p, msg, sizeof msg) == 0)
      return job_fail(err, f,
                      "\"%s\" is a component's name: name the group otherwise (results are "
                      "keyed by it)",
                      job_shorten(s, key));
    if (!(g->name = strdup(key)))
      return job_fail(err, f, "out of memory");
    size_t m = 0;
    if (job_want_array(list, f, "components", JOB_MAX_VARIANTS, &m, err))
      return -1;
    if (!(g->patterns = calloc(m, sizeof *g->patterns)))
      return job_fail(err, f, "out of memory");
    g->n_patterns = (int)m;
    for (size_t i = 0; i < m; i++) {
      path_t fi;
      json_field_index(fi, JOB_FIELD_LEN, f, i);
      if (job_copy_string(json_array_get(list, i), fi, &g->patterns[i], err))
        return -1;
      if (pattern_parse(g->patterns[i], &p, msg, sizeof msg))
        return job_fail(err, fi, "\"%s\": %s", job_shorten(s, g->patterns[i]), msg);
      if (p.kind >= PATTERN_RESID_PRE && p.kind <= PATTERN_RESID_POST)
        return job_fail(err, fi,
                        "\"%s\": a residual-stream site cannot be ablated in a group (it is "
                        "not a slot of the direct effects); give it in ablations.components",
                        job_shorten(s, g->patterns[i]));
    }
  }
  return 0;
}

void component_name(const component_t *c, char *buf, size_t len) {
  if (!buf || !len)
    return;
  switch (c->kind) {
  case COMPONENT_EMBED:
    snprintf(buf, len, "embed");
    break;
  case COMPONENT_ATTN:
    snprintf(buf, len, "attn.%d", c->layer);
    break;
  case COMPONENT_MLP:
    snprintf(buf, len, "mlp.%d", c->layer);
    break;
  case COMPONENT_HEAD:
    snprintf(buf, len, "head.%d.%d", c->layer, c->index);
    break;
  case COMPONENT_NEURON:
    snprintf(buf, len, "neuron.%d.%d", c->layer, c->index);
    break;
  case COMPONENT_RESID_PRE:
  case COMPONENT_RESID_MID:
  case COMPONENT_RESID_POST:
    snprintf(buf, len, "%s.%d", pattern_kinds[PATTERN_RESID_PRE + (c->kind - COMPONENT_RESID_PRE)],
             c->layer);
    break;
  case COMPONENT_Q:
  case COMPONENT_K:
  case COMPONENT_V:
    snprintf(buf, len, "%c.%d.%d", "qkv"[c->kind - COMPONENT_Q], c -> layer, c -> index);
    break;
  case COMPONENT_PATTERN:
    snprintf(buf, len, "pattern.%d.%d", c->layer, c->index);
    break;
  default:
    snprintf(buf, len, "unknown");
  }
}
