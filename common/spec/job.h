/* job.h - an ablation job as the user wrote it: parsed from JSON, checked
 * field by field, then expanded against a model.
 *
 * job_parse validates everything that does not depend on a model; errors
 * name the field path ("ablations.components[3]", "prompts[2].subject").
 * job_expand_components resolves component names and patterns against a
 * model's shape (a layer out of range is an error naming the field).
 * A job_spec_t owns all its memory; job_free releases it. */
#ifndef HYDRA_JOB_H
#define HYDRA_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define JOB_FIELD_LEN 128

/* Limits job_parse and job_expand_components enforce. A server that wants
 * HTTP 413 for an oversized body compares its length with
 * JOB_MAX_DOCUMENT_BYTES before calling job_parse. */
#define JOB_MAX_DOCUMENT_BYTES (64u << 20) /* 64 MiB */
#define JOB_MAX_PROMPTS 100000
#define JOB_MAX_SAMPLES 1000
#define JOB_MAX_SEED (1ULL << 53)
#define JOB_MAX_DEADLINE_S 1e9
/* Variants per prompt: expanded components x methods, resample counted once
 * per sample (engine_job_variants / n_prompts). Also caps the pattern list. */
#define JOB_MAX_VARIANTS 1000000
/* Entries of an explicit positions list (a model's context caps it further,
 * plan_build). */
#define JOB_MAX_POSITIONS (1 << 17)

/* An error while parsing or expanding a job: the field path and a message.
 * Both are NUL-terminated, valid UTF-8 without control characters (user text
 * in them is shortened and cleaned), so they can go into a JSON reply as is. */
typedef struct {
  char field[JOB_FIELD_LEN]; /* e.g. "ablations.methods[1]"; "" for the whole document */
  char message[512];
  int too_large; /* 1 when a size limit was passed (HTTP 413), 0 otherwise */
} job_error_t;

typedef enum {
  COMPONENT_EMBED,  /* the embeddings (token + learned positions): "embed" */
  COMPONENT_ATTN,   /* attention layer output: "attn.L" */
  COMPONENT_MLP,    /* MLP layer output: "mlp.L" */
  COMPONENT_HEAD,   /* one attention head, before the output projection: "head.L.H" */
  COMPONENT_NEURON, /* one MLP hidden unit, after the activation: "neuron.L.N" */
  /* The residual stream (not a slot of the direct-effect decomposition):
   * what enters layer L ("resid_pre.L"), what is between its attention and
   * MLP in a sequential block ("resid_mid.L"), what leaves it
   * ("resid_post.L"). */
  COMPONENT_RESID_PRE,
  COMPONENT_RESID_MID,
  COMPONENT_RESID_POST,
  /* One head's query, key or value ("q.L.H", "k.L.H", "v.L.H"; H of k and
   * v counts the key/value heads): the projection's columns of that head,
   * after a q/k norm and before the rotary (TransformerLens' hook_q, hook_k,
   * hook_v). Its effects count in its layer's attention slot. */
  COMPONENT_Q,
  COMPONENT_K,
  COMPONENT_V,
  /* One head's attention pattern row at the intervened positions
   * ("pattern.L.H"): the softmaxed probabilities over the row's keys
   * (TransformerLens' hook_pattern). Zero, scale and patch (from a prompt
   * of the same token count) only. Its effects count in its layer's
   * attention slot. */
  COMPONENT_PATTERN,
} component_kind_t;

typedef struct {
  component_kind_t kind;
  int layer; /* -1 for embed */
  int index; /* head or neuron; -1 otherwise */
} component_t;

typedef enum {
  METHOD_RESAMPLE, /* output replaced by its clean output on another prompt of the job */
  METHOD_ZERO,
  METHOD_MEAN,  /* mean of the clean output over the job's prompts */
  METHOD_SCALE, /* output times value ("scale:0.5") */
  METHOD_NOISE, /* output plus Gaussian noise of std value ("noise:0.1"), seeded */
  METHOD_PATCH, /* output replaced by its clean output on prompt `source` */
} method_kind_t;

/* The largest |scale| and noise standard deviation a job may ask for. */
#define METHOD_VALUE_MAX 1e6

typedef struct {
  method_kind_t kind;
  float value; /* scale factor or noise std */
  int source;  /* patch: index of the source prompt, or METHOD_SOURCE_COUNTERFACTUAL */
} method_t;

/* patch's source: each prompt's own counterfactual (job_prompt_t), or in
 * "denoising" each prompt's clean text (the run is its counterfactual). */
#define METHOD_SOURCE_COUNTERFACTUAL (-2)
/* "restore" (causal tracing): patch from the prompt's own clean run, into
 * the run the job's "trace" corrupts. */
#define METHOD_SOURCE_CLEAN (-3)

typedef enum {
  POSITIONS_LAST,      /* the final prompt position (the paper) */
  POSITIONS_ALL,       /* every position */
  POSITIONS_LIST,      /* explicit indices (negative counts from the end) */
  POSITIONS_SUBSTRING, /* the tokens of each prompt's `subject` (or a given string) */
  POSITIONS_SPANS,     /* {"each": "spans"}: each named span of a prompt (its subject and its
                          "spans"), every token of it: a grid with a variant per span */
} position_mode_t;

#define JOB_MAX_SPANS 64     /* named spans per prompt */
#define JOB_SPAN_NAME_MAX 64 /* bytes of a span's name */

typedef enum {
  TARGET_ARGMAX, /* the clean run's maximum-likelihood next token at the final position */
  TARGET_TOKEN,  /* a named token (text or id) */
  TARGET_NEXT,   /* the true next token at every position */
  TARGET_FOIL,   /* target and foil: logit difference */
} target_kind_t;

/* A target token, given as text (tokenised to one token) or as an id. */
typedef struct {
  char *text; /* NULL when given as id */
  int id;     /* -1 when given as text */
} job_token_t;

enum {
  METRIC_LOGIT = 1 << 0,      /* centred target logit (always computed) */
  METRIC_LOGPROB = 1 << 1,    /* target log-probability */
  METRIC_PROB = 1 << 2,       /* target probability */
  METRIC_LOGIT_DIFF = 1 << 3, /* target minus foil logit */
  METRIC_KL = 1 << 4,         /* KL(clean || ablated) over the next-token distribution */
  METRIC_RANK = 1 << 5,       /* rank of the target among all tokens (0 = top) */
};

/* A prompt: text (valid UTF-8, non-empty) or token ids (non-empty, each
 * >= 0; the vocabulary range is checked against the model later). A subject
 * is only allowed with text and occurs in it. A per-prompt target replaces
 * the job's target token for this prompt (see job_spec_t.target). */
typedef struct {
  char *text; /* NULL when given as ids */
  int *ids;   /* NULL when given as text */
  int n_ids;
  char *subject; /* optional: names positions by substring */
  /* Optional named spans ("spans": {"name": "substring"}), each occurring in
   * the text: the cells of {"each": "spans"} (with the subject as span
   * "subject" unless a span has that name). */
  char **span_names, **span_texts;
  int n_spans;
  job_token_t target; /* optional per-prompt target (text NULL and id -1: none) */
  job_token_t foil;   /* optional per-prompt foil (as target) */
  /* Optional counterfactual, the corrupted version of the prompt: text or
   * ids of its own (cf_text or cf_ids), or another prompt of the job
   * (cf_prompt >= 0). has_cf 0: none. */
  int has_cf;
  char *cf_text;
  int *cf_ids;
  int cf_n_ids;
  int cf_prompt;
} job_prompt_t;

/* A group: components ablated together in one variant, named once
 * ("ablations.groups": {"name": [patterns]}). */
typedef struct {
  char *name;      /* 1 to JOB_GROUP_NAME_MAX bytes; not a component name */
  char **patterns; /* as written, syntax checked; no residual-stream site */
  int n_patterns;
} job_group_t;

#define JOB_GROUP_NAME_MAX 64
#define JOB_MAX_GROUPS 10000

/* "name" and "labels": how a user finds a job again. A name is 1..64 bytes
 * without control characters; labels are at most 16, each key 1..40 bytes
 * of [A-Za-z0-9._/-], each value a string of 0..100 bytes without control
 * characters. Their compact JSON (job_spec_t.labels) is then at most
 * JOB_LABELS_JSON_MAX bytes. */
#define JOB_NAME_MAX 64
#define JOB_MAX_LABELS 16
#define JOB_LABEL_KEY_MAX 40
#define JOB_LABEL_VALUE_MAX 100
#define JOB_LABELS_JSON_MAX 4000

typedef struct {
  char *model; /* model name on the server; NULL for local runs */
  int preset_hydra;
  char *name;   /* "name"; NULL when not given */
  char *labels; /* "labels" as compact JSON, keys sorted; NULL when not given */

  job_prompt_t *prompts;
  int n_prompts;

  /* Per-prompt targets: a prompt's own target replaces target_token for that
   * prompt. They are allowed with TARGET_TOKEN and TARGET_FOIL, not with an
   * explicit "argmax" or "next". When the job names no target and prompts
   * do, every prompt must, and target is TARGET_TOKEN with target_token
   * unset (text NULL, id -1). No prompt's target equals the foil. */
  target_kind_t target;
  job_token_t target_token; /* TARGET_TOKEN and TARGET_FOIL */
  job_token_t foil_token;   /* TARGET_FOIL */

  char **components; /* patterns as written: "attn.*", "head.5.*", "mlp.3" (syntax checked) */
  int n_components;
  job_group_t *groups; /* each one unit of the results, after the components' */
  int n_groups;
  method_t *methods; /* no two alike; resample only with >= 2 prompts */
  int n_methods;
  int samples;   /* resample draws per ablation (default 1; hydra preset 15) */
  int each_draw; /* 1: every resample draw computed, one that repeats an earlier draw's source
                    too (the reference); 0 (default): a repeat runs once, counted as often
                    as it was drawn */
  uint64_t seed; /* resample and noise draws (default 0) */

  /* "ablations.patching": 0 "noising" (the default: each prompt runs as
   * written, counterfactual sources patched in), 1 "denoising" (each
   * prompt's counterfactual runs, the prompt's own clean outputs patched
   * in). Denoising needs every prompt's counterfactual and an explicit
   * target. */
  int denoising;

  /* "trace" (causal tracing, Meng et al. 2022): every run of the job has
   * Gaussian noise added to the embeddings of its prompt's subject tokens
   * (the clean pass and every variant), std trace_std, or trace_scale times
   * the standard deviation of the token embedding table's entries when
   * trace_std < 0; "restore" patches a state of the clean run back in.
   * trace 0: none. */
  int trace;
  double trace_std, trace_scale;
  uint64_t trace_seed;

  position_mode_t positions;
  /* {"each": RULE}: a per-position grid, one variant per position the rule
   * gives (rows keyed by position) instead of one over all of them */
  int positions_each;
  int *position_list; /* POSITIONS_LIST */
  int n_positions;
  char *position_substring; /* POSITIONS_SUBSTRING with an explicit string; NULL: each
                               prompt's subject. Every prompt is then text, has the
                               substring or subject, and it occurs in the text. */

  unsigned metrics;       /* METRIC_* flags */
  int norm_scale_ablated; /* "norm_scale": "ablated"; default clean */
  int direct_effects;     /* default 1 */
  int effect_table;       /* default 1 */
  int tf32;               /* "precision": "tf32"; default fp32 */
  int weights_dtype;      /* "weights_dtype": 0 "fp32", 1 "bf16", 2 "native" (weights_dtype_t),
                             -1 not given (the weights the model is held in; a server pins it) */
  int reuse;              /* default 1; 0: recompute every variant in full (tests, bench) */
  double deadline_s;      /* 0: none; else in (0, JOB_MAX_DEADLINE_S] */
} job_spec_t;

/* Parses and validates a job document of len bytes (need not be
 * NUL-terminated; at most JOB_MAX_DOCUMENT_BYTES; must be valid UTF-8).
 * Returns a spec the caller frees with job_free, or NULL and fills err (when
 * non-NULL) on any problem: not JSON (message with line and column), invalid
 * UTF-8 (byte offset), unknown field (with a suggestion), wrong type,
 * out-of-range value, duplicate key. Errors here are the user's (HTTP 400).
 * Thread-safe; uses no recursion of its own (jansson limits nesting to 2048). */
job_spec_t *job_parse(const char *json, size_t len, job_error_t *err);

void job_free(job_spec_t *spec);

/* Expands the component patterns against a model: "attn.*" is every
 * attention layer, "head.5.*" every head of layer 5, "head.*" every head of
 * every layer, "neuron.3.*" every neuron of MLP 3, "*" every attention and
 * MLP layer (attn.0, mlp.0, attn.1, ...). Duplicates are kept once, in order
 * of first appearance. Returns 0 with *out malloc'd (NULL when *n_out is 0),
 * or -1 with *out NULL, *n_out 0 and err naming "ablations.components[i]"
 * (a layer, head or neuron out of range: HTTP 422), or the expansion passing
 * JOB_MAX_VARIANTS variants per prompt. Needs cfg's n_layers, n_heads and
 * d_mlp positive. */
int job_expand_components(const job_spec_t *spec, const model_config_t *cfg, component_t **out,
                          int *n_out, job_error_t *err);

/* Expands group g's patterns as job_expand_components does (each component
 * once, in order), into the components of that one unit. Errors name
 * "ablations.groups.NAME[i]"; the group's components count against
 * JOB_MAX_VARIANTS too. */
int job_expand_group(const job_spec_t *spec, int g, const model_config_t *cfg, component_t **out,
                     int *n_out, job_error_t *err);

/* Writes the canonical name of a component ("attn.3", "head.5.2", "embed"). */
void component_name(const component_t *c, char *buf, size_t len);

/* Parses one method string ("resample", "zero", "mean", "scale:0.5",
 * "noise:0.1"); patch is given as an object. The value is a decimal number
 * (C locale), finite, at most METHOD_VALUE_MAX in magnitude; noise's is
 * >= 0. Sets value 0 and source -1
 * where they do not apply. Returns 0, or -1 leaving *m unspecified. */
int method_parse(const char *s, method_t *m);

#endif
