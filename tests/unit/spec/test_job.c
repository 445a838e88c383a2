/* test_job - the job document parser and the component expansion: valid
 * documents of every shape (values read back), the hydra preset with
 * overrides, invalid documents each failing at the expected field path,
 * expansion against a hand-filled config (30 layers, 9 heads, d_mlp 1536),
 * and truncated and randomly mutated documents that must fail cleanly.
 * usage: test_job [seed]
 * Documents are written with ' for " (none of them needs an apostrophe). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "job.h"

static uint64_t seed = 20240607, rng_state;

static uint64_t rnd_bits(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* The document with ' turned into ". Caller frees. */
static char *q(const char *doc) {
  size_t n = strlen(doc);
  char *s = malloc(n + 1);
  for (size_t i = 0; i <= n; i++)
    s[i] = doc[i] == '\'' ? '"' : doc[i];
  return s;
}

/* Valid UTF-8 without control characters (what job_error_t promises). */
static int clean_text(const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  while (*s) {
    int n = *s < 0x80                  ? 1
            : *s >= 0xc2 && *s <= 0xdf ? 2
            : *s >= 0xe0 && *s <= 0xef ? 3
            : *s >= 0xf0 && *s <= 0xf4 ? 4
                                       : 0;
    if (!n || (n == 1 && (*s < 0x20 || *s == 0x7f)))
      return 0;
    for (int i = 1; i < n; i++)
      if ((s[i] & 0xc0) != 0x80)
        return 0;
    s += n;
  }
  return 1;
}

static job_spec_t *parse_ok_at(int line, const char *doc) {
  char *s = q(doc);
  job_error_t err;
  job_spec_t *spec = job_parse(s, strlen(s), &err);
  CHECK_AT(line, spec, "valid document rejected: %s: %s\n  %s", err.field, err.message, s);
  free(s);
  return spec;
}
#define PARSE_OK(doc) parse_ok_at(__LINE__, doc)

static void bad_at(int line, const char *doc, size_t len, const char *field, const char *substr) {
  job_error_t err;
  job_spec_t *spec = job_parse(doc, len, &err);
  CHECK_AT(line, !spec, "invalid document accepted (want %s: ...%s...)", field, substr);
  if (spec) {
    job_free(spec);
    return;
  }
  CHECK_AT(line, !strcmp(err.field, field) && strstr(err.message, substr),
           "got \"%s: %s\", want field \"%s\" and message with \"%s\"", err.field, err.message,
           field, substr);
  CHECK_AT(line, clean_text(err.field) && clean_text(err.message), "error text is not clean UTF-8");
}

static void bad_q_at(int line, const char *doc, const char *field, const char *substr) {
  char *s = q(doc);
  bad_at(line, s, strlen(s), field, substr);
  free(s);
}
#define BAD(doc, field, substr) bad_q_at(__LINE__, doc, field, substr)

static int str_is(const char *got, const char *want) {
  return got && want ? !strcmp(got, want) : got == want;
}

/* ---- valid documents ---- */

static void test_minimal(void) {
  job_spec_t *s = PARSE_OK("{'prompts': ['a b', 'c d'], 'ablations': {'components': ['attn.*']}}");
  if (!s)
    return;
  CHECK(s->model == NULL && s->preset_hydra == 0, "model/preset");
  CHECK(s->n_prompts == 2 && str_is(s->prompts[1].text, "c d") && !s->prompts[1].ids, "prompts");
  CHECK(s->prompts[0].target.id == -1 && !s->prompts[0].target.text && !s->prompts[0].subject,
        "prompt defaults");
  CHECK(s->target == TARGET_ARGMAX && s->target_token.id == -1 && !s->target_token.text,
        "target default");
  CHECK(s->n_components == 1 && str_is(s->components[0], "attn.*"), "components");
  CHECK(s->n_methods == 1 && s->methods[0].kind == METHOD_RESAMPLE && s->methods[0].source == -1,
        "default method");
  CHECK(s->samples == 1 && s->seed == 0, "samples %d seed %llu", s->samples,
        (unsigned long long)s->seed);
  CHECK(s->positions == POSITIONS_LAST && !s->position_list && !s->position_substring, "positions");
  CHECK(s->metrics == METRIC_LOGIT, "metrics %#x", s->metrics);
  CHECK(!s->norm_scale_ablated && s->direct_effects && s->effect_table && !s->tf32 && s->reuse &&
            s->deadline_s == 0 && s->weights_dtype == -1,
        "flags");
  job_free(s);
}

static void test_full(void) {
  job_spec_t *s = PARSE_OK(
      "{'model': 'smollm2-135m',"
      " 'prompts': ['The capital of France is',"
      "             {'text': 'The Eiffel Tower is in', 'subject': 'Eiffel Tower', 'target': ' "
      "Paris'},"
      "             {'text': 'Z\\u00fcrich \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8e\x89', 'target': "
      "7042},"
      "             {'ids': [1, 2, 0, 49151]}],"
      " 'target': {'token': ' Paris', 'foil': ' Rome'},"
      " 'ablations': {'components': ['attn.*', 'mlp.3', 'head.5.*', 'head.5.2', 'neuron.3.17',"
      "                              'neuron.3.*', 'embed', '*', 'head.*', 'mlp.0'],"
      "               'methods': ['resample', 'zero', 'mean', 'scale:0.5', 'noise:0.1',"
      "                           {'patch': {'source': 3}}, 'scale:-2', 'scale:1e-3', 'noise:0'],"
      "               'samples': 7, 'seed': 9007199254740992, 'positions': [3, -1]},"
      " 'metrics': ['logit', 'logprob', 'prob', 'logit_diff', 'kl', 'rank'],"
      " 'norm_scale': 'ablated', 'direct_effects': true, 'effect_table': true,"
      " 'precision': 'tf32', 'weights_dtype': 'bf16', 'reuse': false, 'deadline_s': 1.5}");
  if (!s)
    return;
  CHECK(str_is(s->model, "smollm2-135m"), "model");
  CHECK(s->n_prompts == 4, "n_prompts %d", s->n_prompts);
  if (s->n_prompts == 4) {
    CHECK(str_is(s->prompts[0].text, "The capital of France is"), "prompt 0");
    CHECK(str_is(s->prompts[1].subject, "Eiffel Tower") &&
              str_is(s->prompts[1].target.text, " Paris") && s->prompts[1].target.id == -1,
          "prompt 1");
    CHECK(str_is(s->prompts[2].text, "Z\xc3\xbcrich \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8e\x89") &&
              s->prompts[2].target.id == 7042 && !s->prompts[2].target.text,
          "prompt 2 text (unicode) and target id");
    CHECK(!s->prompts[3].text && s->prompts[3].n_ids == 4 && s->prompts[3].ids[0] == 1 &&
              s->prompts[3].ids[2] == 0 && s->prompts[3].ids[3] == 49151,
          "prompt 3 ids");
  }
  CHECK(s->target == TARGET_FOIL && str_is(s->target_token.text, " Paris") &&
            str_is(s->foil_token.text, " Rome") && s->target_token.id == -1 &&
            s->foil_token.id == -1,
        "target with foil");
  CHECK(s->n_components == 10 && str_is(s->components[3], "head.5.2") &&
            str_is(s->components[9], "mlp.0"),
        "components as written");
  CHECK(s->n_methods == 9, "n_methods %d", s->n_methods);
  if (s->n_methods == 9) {
    const method_t *m = s->methods;
    CHECK(m[0].kind == METHOD_RESAMPLE && m[1].kind == METHOD_ZERO && m[2].kind == METHOD_MEAN,
          "methods 0-2");
    CHECK(m[3].kind == METHOD_SCALE && m[3].value == 0.5f, "scale:0.5 -> %g", m[3].value);
    CHECK(m[4].kind == METHOD_NOISE && m[4].value == 0.1f, "noise:0.1 -> %g", m[4].value);
    CHECK(m[5].kind == METHOD_PATCH && m[5].source == 3, "patch source %d", m[5].source);
    CHECK(m[6].kind == METHOD_SCALE && m[6].value == -2.0f, "scale:-2");
    CHECK(m[7].kind == METHOD_SCALE && m[7].value == 1e-3f, "scale:1e-3");
    CHECK(m[8].kind == METHOD_NOISE && m[8].value == 0.0f, "noise:0");
    CHECK(m[0].source == -1 && m[3].source == -1, "source -1 except patch");
  }
  CHECK(s->samples == 7 && s->seed == 9007199254740992ull, "samples/seed");
  CHECK(s->positions == POSITIONS_LIST && s->n_positions == 2 && s->position_list[0] == 3 &&
            s->position_list[1] == -1,
        "position list");
  CHECK(s->metrics == (METRIC_LOGIT | METRIC_LOGPROB | METRIC_PROB | METRIC_LOGIT_DIFF | METRIC_KL |
                       METRIC_RANK),
        "metrics %#x", s->metrics);
  CHECK(s->norm_scale_ablated && s->direct_effects && s->effect_table && s->tf32 && !s->reuse,
        "flags");
  CHECK(s->deadline_s == 1.5, "deadline %g", s->deadline_s);
  CHECK(s->weights_dtype == WEIGHTS_BF16, "weights_dtype bf16: %d", s->weights_dtype);
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'weights_dtype': 'native', 'ablations': {'components': "
               "['*']}}");
  CHECK(s && s->weights_dtype == WEIGHTS_NATIVE, "weights_dtype native: %d",
        s ? s->weights_dtype : -2);
  CHECK(s && !s->each_draw, "each_draw off by default");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'each_draw': true}}");
  CHECK(s && s->each_draw, "each_draw true");
  job_free(s);
}

static void test_preset(void) {
  job_spec_t *s = PARSE_OK("{'preset': 'hydra', 'prompts': ['a', 'b', 'c']}");
  if (s) {
    CHECK(s->preset_hydra == 1, "preset flag");
    CHECK(s->n_components == 1 && str_is(s->components[0], "*"), "preset components");
    CHECK(s->n_methods == 1 && s->methods[0].kind == METHOD_RESAMPLE, "preset methods");
    CHECK(s->samples == 15 && s->positions == POSITIONS_LAST && s->target == TARGET_ARGMAX,
          "preset samples %d", s->samples);
    CHECK(s->direct_effects && s->effect_table, "preset tables on");
    job_free(s);
  }
  /* Explicit fields override the preset; the rest of it stays. */
  s = PARSE_OK("{'preset': 'hydra', 'prompts': ['a'], 'norm_scale': 'ablated',"
               " 'ablations': {'methods': ['zero', 'scale:0'], 'samples': 3, 'positions': 'all'}}");
  if (s) {
    CHECK(s->n_components == 1 && str_is(s->components[0], "*"), "components from preset");
    CHECK(s->n_methods == 2 && s->methods[0].kind == METHOD_ZERO &&
              s->methods[1].kind == METHOD_SCALE && s->methods[1].value == 0.0f,
          "methods overridden");
    CHECK(s->samples == 3 && s->positions == POSITIONS_ALL, "samples/positions overridden");
    CHECK(s->norm_scale_ablated && s->effect_table && s->direct_effects,
          "norm_scale overridden only");
    job_free(s);
  }
  s = PARSE_OK("{'preset': 'hydra', 'prompts': ['a', 'b'], 'ablations': {'components': "
               "['head.*']}, 'target': 'next'}");
  if (s) {
    CHECK(s->n_components == 1 && str_is(s->components[0], "head.*"), "components overridden");
    CHECK(s->samples == 15 && s->target == TARGET_NEXT, "samples kept, target overridden");
    job_free(s);
  }
}

static void test_targets_and_positions(void) {
  job_spec_t *s;
  s = PARSE_OK("{'prompts': ['a', 'b'], 'target': 'next', 'ablations': {'components': ['*']}}");
  CHECK(s && s->target == TARGET_NEXT, "target next");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'target': 'argmax', 'ablations': {'components': ['*']}}");
  CHECK(s && s->target == TARGET_ARGMAX, "target argmax");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'target': {'id': 7042}, 'ablations': {'components': "
               "['*']}}");
  CHECK(s && s->target == TARGET_TOKEN && s->target_token.id == 7042 && !s->target_token.text,
        "target id");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'target': {'token': ' Paris'}, 'ablations': "
               "{'components': ['*']}}");
  CHECK(s && s->target == TARGET_TOKEN && str_is(s->target_token.text, " Paris") &&
            s->foil_token.id == -1 && !s->foil_token.text,
        "target token");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'target': {'id': 7042, 'foil_id': 7268}, 'metrics': "
               "['logit_diff'], 'ablations': {'components': ['*']}}");
  CHECK(s && s->target == TARGET_FOIL && s->target_token.id == 7042 && s->foil_token.id == 7268 &&
            (s->metrics & METRIC_LOGIT_DIFF) && (s->metrics & METRIC_LOGIT),
        "target ids with foil");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'target': {'token': ' Paris', 'foil_id': 0}, "
               "'ablations': {'components': ['*']}}");
  CHECK(s && s->target == TARGET_FOIL && s->foil_token.id == 0, "mixed token and foil id");
  job_free(s);
  /* Per-prompt targets with no job target: every prompt names one. */
  s = PARSE_OK("{'prompts': [{'text': 'a', 'target': ' x'}, {'ids': [5], 'target': 3}], "
               "'ablations': {'components': ['*']}}");
  CHECK(s && s->target == TARGET_TOKEN && s->target_token.id == -1 && !s->target_token.text &&
            str_is(s->prompts[0].target.text, " x") && s->prompts[1].target.id == 3,
        "per-prompt targets");
  job_free(s);
  /* ... written as the job's target is: {"token": ...} or {"id": ...} */
  s = PARSE_OK("{'prompts': [{'text': 'a', 'target': {'token': ' x'}, 'foil': {'id': 4}},"
               " {'ids': [5], 'target': {'id': 3}, 'foil': {'token': ' y'}}], "
               "'ablations': {'components': ['*']}}");
  CHECK(s && str_is(s->prompts[0].target.text, " x") && s->prompts[0].foil.id == 4 &&
            s->prompts[1].target.id == 3,
        "per-prompt targets as objects");
  job_free(s);
  BAD("{'prompts': [{'text': 'a', 'target': {'token': ' x', 'id': 3}}], 'ablations': "
      "{'components': ['*']}}",
      "prompts[0].target", "expected {\"token\": text} or {\"id\": N}");
  BAD("{'prompts': [{'text': 'a', 'target': {'token': 3}}], 'ablations': {'components': ['*']}}",
      "prompts[0].target.token", "expected a string, got an integer");
  /* ... and overriding a job target for some prompts. */
  s = PARSE_OK("{'prompts': [{'text': 'a', 'target': ' x'}, 'b'], 'target': {'token': ' y', "
               "'foil': ' z'}, 'ablations': {'components': ['*']}}");
  CHECK(s && s->target == TARGET_FOIL && str_is(s->target_token.text, " y"), "override target");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': 'all'}}");
  CHECK(s && s->positions == POSITIONS_ALL, "positions all");
  job_free(s);
  s = PARSE_OK("{'prompts': [{'text': 'The Eiffel Tower is in', 'subject': 'Eiffel Tower'},"
               " {'text': 'The Colosseum is in', 'subject': 'Colosseum'}],"
               " 'ablations': {'components': ['*'], 'positions': 'subject'}}");
  CHECK(s && s->positions == POSITIONS_SUBSTRING && !s->position_substring, "positions subject");
  job_free(s);
  s = PARSE_OK("{'prompts': ['The Eiffel Tower', 'Eiffel again'],"
               " 'ablations': {'components': ['*'], 'positions': {'substring': 'Eiffel'}}}");
  CHECK(s && s->positions == POSITIONS_SUBSTRING && str_is(s->position_substring, "Eiffel"),
        "positions substring");
  job_free(s);
  s = PARSE_OK("{'prompts': ['a'], 'ablations': {'components': ['*'], 'methods': ['zero'], "
               "'seed': 0}, 'deadline_s': 600, 'metrics': []}");
  CHECK(s && s->deadline_s == 600.0 && s->metrics == METRIC_LOGIT && s->n_prompts == 1,
        "one prompt with zero, integer deadline, empty metrics");
  job_free(s);
}

static void test_many_prompts(void) {
  size_t n = JOB_MAX_PROMPTS;
  char *doc = malloc(n * 4 + 200), *p = doc;
  job_error_t err;
  job_spec_t *s;
  p += sprintf(p, "{\"ablations\": {\"components\": [\"*\"]}, \"prompts\": [");
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "%s\"a\"", i ? "," : "");
  strcpy(p, "]}");
  s = job_parse(doc, strlen(doc), &err);
  CHECK(s && s->n_prompts == JOB_MAX_PROMPTS, "%d prompts: %s", JOB_MAX_PROMPTS, err.message);
  job_free(s);
  strcpy(p, ",\"a\"]}");
  bad_at(__LINE__, doc, strlen(doc), "prompts", "limit is 100000");
  free(doc);
}

/* ---- invalid documents ---- */

static void test_invalid(void) {
  /* The document as a whole. */
  BAD("{'prompts': [", "", "not valid JSON");
  BAD("{'prompts': ['a'],\n 'x' 1}", "", "line 2");
  BAD("{'prompts': ['a']} x", "", "not valid JSON");
  BAD("", "", "not valid JSON");
  BAD("['a']", "", "expected a JSON object, got an array");
  BAD("{'prompts': ['a'], 'prompts': ['b']}", "", "duplicate");
  BAD("{'prompts': ['a\\u0000b']}", "", "not valid JSON");
  BAD("{'prompts': ['\\ud800']}", "", "not valid JSON");
  BAD("{'prompts': ['ok',\n 'bad \xff byte']}", "", "byte offset 25 (line 2, column 7): byte 0xff");
  BAD("{'prompts': ['\xc0\x80']}", "", "invalid UTF-8 at byte offset 14");
  BAD("{'prompts': ['\xed\xa0\x80']}", "", "invalid UTF-8");
  BAD("{'prompts': ['\xf4\x90\x80\x80']}", "", "invalid UTF-8");
  BAD("{'prompts': ['\xe6\x9d']}", "", "invalid UTF-8");
  /* Unknown fields, with suggestions. */
  BAD("{'modle': 'x', 'prompts': ['a']}", "modle", "did you mean model?");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'component': ['attn.*']}}", "ablations.component",
      "unknown field (did you mean components?)");
  BAD("{'prompts': ['a'], 'zzzzzz': 1}", "zzzzzz", "known: model, preset");
  BAD("{'prompts': [{'txt': 'a'}]}", "prompts[0].txt", "did you mean text?");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'postions': 'all'}}",
      "ablations.postions", "did you mean positions?");
  BAD("{'prompts': ['a', 'b'], 'metric': ['kl'], 'ablations': {'components': ['*']}}", "metric",
      "did you mean metrics?");
  /* two neighbouring letters swapped: one edit, not two (not an abbreviation of another name) */
  BAD("{'nmae': 'x', 'prompts': ['a']}", "nmae", "did you mean name?");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['zreo']}}",
      "ablations.methods[0]", "unknown method (did you mean zero?)");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'componetns': ['*']}}", "ablations.componetns",
      "did you mean components?");
  /* Prompts. */
  BAD("{'ablations': {'components': ['*']}}", "prompts", "required");
  BAD("{'prompts': []}", "prompts", "at least one");
  BAD("{'prompts': 'abc'}", "prompts", "expected an array of prompts, got a string");
  BAD("{'prompts': ['a', '']}", "prompts[1]", "must not be empty");
  BAD("{'prompts': [5]}", "prompts[0]", "expected a string or an object");
  BAD("{'prompts': [null]}", "prompts[0]", "got null");
  BAD("{'prompts': ['a', 'b', {'ids': [1, 2, 3, 4, 5, 'x']}]}", "prompts[2].ids[5]",
      "expected a non-negative integer");
  BAD("{'prompts': [{'ids': [1, -2]}]}", "prompts[0].ids[1]", "expected a non-negative integer");
  BAD("{'prompts': [{'ids': [3000000000]}]}", "prompts[0].ids[0]", "too large");
  BAD("{'prompts': [{'ids': [1.5]}]}", "prompts[0].ids[0]", "got a number");
  BAD("{'prompts': [{'ids': []}]}", "prompts[0].ids", "at least one");
  BAD("{'prompts': [{'ids': 5}]}", "prompts[0].ids", "expected an array");
  BAD("{'prompts': [{'text': 'a', 'ids': [1]}]}", "prompts[0].ids", "only one of text and ids");
  BAD("{'prompts': [{'subject': 'a'}]}", "prompts[0]", "needs text or ids");
  BAD("{'prompts': [{'text': 7}]}", "prompts[0].text", "expected a string, got an integer");
  BAD("{'prompts': [{'text': 'The Eiffel Tower', 'subject': 'Louvre'}]}", "prompts[0].subject",
      "does not occur");
  BAD("{'prompts': [{'ids': [1], 'subject': 'a'}]}", "prompts[0].subject",
      "needs the prompt as text");
  BAD("{'prompts': [{'text': 'a', 'target': -1}]}", "prompts[0].target", "non-negative");
  BAD("{'prompts': [{'text': 'a', 'target': []}]}", "prompts[0].target", "expected a token");
  BAD("{'prompts': [{'text': 'a', 'target': ''}]}", "prompts[0].target", "must not be empty");
  /* Target. */
  BAD("{'prompts': ['a'], 'target': 'max'}", "target", "unknown target \"max\"");
  BAD("{'prompts': ['a'], 'target': 3}", "target", "expected \"argmax\"");
  BAD("{'prompts': ['a'], 'target': {}}", "target", "needs a token or an id");
  BAD("{'prompts': ['a'], 'target': {'foil': ' b'}}", "target", "needs a token or an id");
  BAD("{'prompts': ['a'], 'target': {'token': 'a', 'id': 3}}", "target.id", "only one");
  BAD("{'prompts': ['a'], 'target': {'id': -3}}", "target.id", "non-negative");
  BAD("{'prompts': ['a'], 'target': {'id': ' Paris'}}", "target.id", "got a string");
  BAD("{'prompts': ['a'], 'target': {'token': 5}}", "target.token", "expected a string");
  BAD("{'prompts': ['a'], 'target': {'token': 'a', 'foil': 'a'}}", "target.foil", "same token");
  BAD("{'prompts': ['a'], 'target': {'id': 4, 'foil_id': 4}}", "target.foil_id", "same token");
  BAD("{'prompts': ['a'], 'target': {'id': 4, 'foil': 'x', 'foil_id': 5}}", "target.foil_id",
      "only one of foil and foil_id");
  BAD("{'prompts': ['a'], 'target': {'token': 'a', 'fol': 'b'}}", "target.fol",
      "did you mean foil?");
  /* Per-prompt targets against the job's. */
  BAD("{'prompts': ['a', {'text': 'b', 'target': ' c'}], 'target': 'argmax',"
      " 'ablations': {'components': ['*']}}",
      "prompts[1].target", "conflicts");
  BAD("{'prompts': [{'text': 'a', 'target': 1}, {'text': 'b', 'target': 2}, 'c'],"
      " 'ablations': {'components': ['*']}}",
      "prompts[2].target", "required");
  BAD("{'prompts': [{'text': 'a', 'target': ' r'}, 'b'], 'target': {'token': ' p', 'foil': ' r'},"
      " 'ablations': {'components': ['*']}}",
      "prompts[0].target", "same token as the foil");
  /* Components. */
  BAD("{'prompts': ['a', 'b']}", "ablations.components", "required");
  BAD("{'prompts': ['a', 'b'], 'ablations': {}}", "ablations.components", "required");
  BAD("{'prompts': ['a', 'b'], 'ablations': []}", "ablations", "expected an object");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': []}}", "ablations.components",
      "at least one");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': 'attn.*'}}", "ablations.components",
      "expected an array");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['atn.3']}}", "ablations.components[0]",
      "did you mean attn?");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*', 'attn.x']}}",
      "ablations.components[1]", "non-negative integer");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['attn.-1']}}",
      "ablations.components[0]", "non-negative integer");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['attn']}}", "ablations.components[0]",
      "expected attn.LAYER");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['attn.3.1']}}",
      "ablations.components[0]", "expected attn.LAYER");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['mlp.']}}", "ablations.components[0]",
      "missing layer");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['mlp.03']}}", "ablations.components[0]",
      "leading zero");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['mlp.99999999999']}}",
      "ablations.components[0]", "too large");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['head.5']}}", "ablations.components[0]",
      "expected head.LAYER.HEAD");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['head.*.2']}}",
      "ablations.components[0]", "'*' is not allowed as the layer");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['mlp.1', 'neuron.*']}}",
      "ablations.components[1]", "expected neuron.LAYER.NEURON");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['neuron.3.17.2']}}",
      "ablations.components[0]", "too many parts");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*.3']}}", "ablations.components[0]",
      "stands alone");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['embed.0']}}",
      "ablations.components[0]", "embed takes no layer");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['ATTN.3']}}", "ablations.components[0]",
      "unknown component kind");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': [5]}}", "ablations.components[0]",
      "expected a string");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': [' attn.1']}}",
      "ablations.components[0]", "unknown component kind");
  /* Methods. */
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['resampl']}}",
      "ablations.methods[0]", "did you mean resample?");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': []}}",
      "ablations.methods", "at least one");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': 'zero'}}",
      "ablations.methods", "expected an array");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['zero', "
      "'scale:inf']}}",
      "ablations.methods[1]", "finite");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['scale:nan']}}",
      "ablations.methods[0]", "finite");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['scale:1e39']}}",
      "ablations.methods[0]", "finite");
  /* Absurd values (their runs overflow fp32 into NaN rows) are refused, naming the field. */
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['scale:3e38']}}",
      "ablations.methods[0]", "at most 1e+06");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['zero', "
      "'scale:-1000001']}}",
      "ablations.methods[1]", "the scale must be at most 1e+06");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['noise:2e6']}}",
      "ablations.methods[0]", "standard deviation must be at most 1e+06");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['noise:nan']}}",
      "ablations.methods[0]", "finite");
  {
    method_t m;
    CHECK(method_parse("scale:1e6", &m) == 0 && m.value == 1e6f, "scale:1e6 is the limit");
    CHECK(method_parse("scale:-1e6", &m) == 0, "scale:-1e6 is the limit");
    CHECK(method_parse("noise:1e6", &m) == 0 && m.value == 1e6f, "noise:1e6 is the limit");
    CHECK(method_parse("scale:1.000001e6", &m) != 0, "scale:1.000001e6 is past it");
    CHECK(method_parse("noise:inf", &m) != 0, "noise:inf");
  }
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['scale:0x1p3']}}",
      "ablations.methods[0]", "decimal");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['scale:']}}",
      "ablations.methods[0]", "decimal");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['scale']}}",
      "ablations.methods[0]", "needs a value");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['noise:-0.1']}}",
      "ablations.methods[0]", ">= 0");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['zero:1']}}",
      "ablations.methods[0]", "takes no value");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['patch']}}",
      "ablations.methods[0]", "patch is given as an object");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': [3]}}",
      "ablations.methods[0]", "expected a string");
  BAD("{'prompts': ['a', 'b', 'c'], 'ablations': {'components': ['*'],"
      " 'methods': ['zero', {'patch': {'source': 3}}]}}",
      "ablations.methods[1].patch.source", "prompt 3 does not exist (the job has 3 prompts)");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': [{'patch': {'src': "
      "1}}]}}",
      "ablations.methods[0].patch.src", "did you mean source?");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': [{'patch': 1}]}}",
      "ablations.methods[0].patch", "expected an object");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': [{'patch': {}}]}}",
      "ablations.methods[0].patch.source", "required");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': [{'patch': "
      "{'source': -1}}]}}",
      "ablations.methods[0].patch.source", "non-negative");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': [{'scale': 1}]}}",
      "ablations.methods[0].scale", "unknown field");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['zero', 'mean', "
      "'zero']}}",
      "ablations.methods[2]", "same method as ablations.methods[0]");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'methods': ['scale:0.5', "
      "'scale:0.50']}}",
      "ablations.methods[1]", "same method");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['*'], 'methods': ['zero', 'resample']}}",
      "ablations.methods[1]", "at least 2 prompts");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['*']}}", "ablations.methods",
      "default method, resample, needs at least 2 prompts");
  BAD("{'preset': 'hydra', 'prompts': ['a']}", "ablations.methods", "at least 2 prompts");
  /* Samples, seed, positions. */
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'samples': 0}}",
      "ablations.samples", "positive");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'samples': 1001}}",
      "ablations.samples", "too large (at most 1000)");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'samples': '15'}}",
      "ablations.samples", "got a string");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'samples': 15.0}}",
      "ablations.samples", "got a number");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'seed': -1}}", "ablations.seed",
      "non-negative");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'seed': 9007199254740993}}",
      "ablations.seed", "too large");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': 'first'}}",
      "ablations.positions", "unknown positions \"first\"");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': []}}",
      "ablations.positions", "at least one");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': [0, 1.5]}}",
      "ablations.positions[1]", "expected a position");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': [-2147483648]}}",
      "ablations.positions[0]", "expected a position");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': 3}}",
      "ablations.positions", "expected \"last\"");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': {'substr': "
      "'a'}}}",
      "ablations.positions.substr", "did you mean substring?");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'positions': {}}}",
      "ablations.positions", "substring");
  BAD("{'prompts': ['Eiffel', 'Louvre'], 'ablations': {'components': ['*'], 'positions': "
      "{'substring': 'Eiffel'}}}",
      "ablations.positions.substring", "does not occur in prompts[1]");
  BAD("{'prompts': ['a', {'ids': [1]}], 'ablations': {'components': ['*'], 'positions': "
      "{'substring': 'a'}}}",
      "prompts[1].ids", "need the prompt as text");
  BAD("{'prompts': [{'text': 'a b', 'subject': 'a'}, 'b'], 'ablations': {'components': ['*'], "
      "'positions': 'subject'}}",
      "prompts[1].subject", "required");
  /* Metrics and the flags. */
  BAD("{'prompts': ['a', 'b'], 'metrics': ['logits'], 'ablations': {'components': ['*']}}",
      "metrics[0]", "did you mean logit?");
  BAD("{'prompts': ['a', 'b'], 'metrics': 'kl', 'ablations': {'components': ['*']}}", "metrics",
      "expected an array");
  BAD("{'prompts': ['a', 'b'], 'metrics': ['kl', 'logit_diff'], 'ablations': {'components': "
      "['*']}}",
      "metrics[1]", "needs a target with a foil");
  BAD("{'prompts': ['a', 'b'], 'norm_scale': 'both', 'ablations': {'components': ['*']}}",
      "norm_scale", "unknown norm_scale");
  BAD("{'prompts': ['a', 'b'], 'precision': 'fp16', 'ablations': {'components': ['*']}}",
      "precision", "unknown precision \"fp16\"");
  BAD("{'prompts': ['a', 'b'], 'weights_dtype': 'fp16', 'ablations': {'components': ['*']}}",
      "weights_dtype", "unknown weights_dtype \"fp16\"");
  BAD("{'prompts': ['a', 'b'], 'direct_effects': 1, 'ablations': {'components': ['*']}}",
      "direct_effects", "expected true or false");
  BAD("{'prompts': ['a', 'b'], 'effect_table': null, 'ablations': {'components': ['*']}}",
      "effect_table", "got null");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*'], 'each_draw': 1}}",
      "ablations.each_draw", "expected true or false");
  BAD("{'prompts': ['a', 'b'], 'effect_table': false, 'ablations': {'components': ['*']}}",
      "effect_table", "false is not supported");
  BAD("{'prompts': ['a', 'b'], 'direct_effects': false, 'ablations': {'components': ['*']}}",
      "direct_effects", "false is not supported");
  BAD("{'prompts': ['a', 'b'], 'reuse': 'yes', 'ablations': {'components': ['*']}}", "reuse",
      "expected true or false");
  BAD("{'prompts': ['a', 'b'], 'deadline_s': 0, 'ablations': {'components': ['*']}}", "deadline_s",
      "expected seconds");
  BAD("{'prompts': ['a', 'b'], 'deadline_s': -5.5, 'ablations': {'components': ['*']}}",
      "deadline_s", "expected seconds");
  BAD("{'prompts': ['a', 'b'], 'deadline_s': 1e10, 'ablations': {'components': ['*']}}",
      "deadline_s", "expected seconds");
  BAD("{'prompts': ['a', 'b'], 'deadline_s': '600', 'ablations': {'components': ['*']}}",
      "deadline_s", "expected a number");
  BAD("{'prompts': ['a', 'b'], 'model': '', 'ablations': {'components': ['*']}}", "model",
      "must not be empty");
  BAD("{'prompts': ['a', 'b'], 'model': null, 'ablations': {'components': ['*']}}", "model",
      "expected a string, got null");
  BAD("{'prompts': ['a', 'b'], 'preset': 'paper'}", "preset", "unknown preset \"paper\"");
  BAD("{'prompts': ['a', 'b'], 'preset': true}", "preset", "expected a string");
  {
    char doc[600];
    memset(doc, 0, sizeof doc);
    strcpy(doc, "{'prompts': ['a'], 'model': '");
    memset(doc + strlen(doc), 'm', 300);
    strcat(doc, "'}");
    BAD(doc, "model", "longer than 255");
  }
}

/* Error text stays clean: keys with control characters, long keys cut
 * inside a multi-byte character, long component strings. */
static void test_error_text(void) {
  char doc[1024], *p;
  job_error_t err;
  job_spec_t *s;
  BAD("{'\\u0001\\n\\u007fab': 1}", "???ab", "unknown field");
  p = doc + sprintf(doc, "{\"");
  for (int i = 0; i < 60; i++)
    p += sprintf(p, "\xe6\x9d\xb1"); /* 3 bytes: a cut at 40 lands inside one */
  sprintf(p, "\": 1, \"prompts\": [\"a\"]}");
  s = job_parse(doc, strlen(doc), &err);
  CHECK(!s && clean_text(err.field) && strstr(err.field, "...") && strlen(err.field) <= 43,
        "long unicode key: field \"%s\"", err.field);
  job_free(s);
  p = doc + sprintf(doc, "{\"prompts\": [\"a\", \"b\"], \"ablations\": {\"components\": [\"");
  for (int i = 0; i < 200; i++)
    p += sprintf(p, "\xf0\x9f\x8e\x89");
  sprintf(p, "\"]}}");
  s = job_parse(doc, strlen(doc), &err);
  CHECK(!s && !strcmp(err.field, "ablations.components[0]") && clean_text(err.message) &&
            strlen(err.message) < 300,
        "long component: \"%s\"", err.message);
  job_free(s);
  s = job_parse(NULL, 0, &err);
  CHECK(!s && err.message[0], "NULL document");
  s = job_parse("{", 1, NULL);
  CHECK(!s, "NULL err");
}

static void test_limits(void) {
  size_t depth = 100000, big = (size_t)JOB_MAX_DOCUMENT_BYTES + 1;
  char *doc = malloc(big);
  /* Nesting deeper than jansson's limit: an error, not a stack overflow. */
  memcpy(doc, "{\"prompts\": ", 12);
  memset(doc + 12, '[', depth);
  memset(doc + 12 + depth, ']', depth);
  doc[12 + 2 * depth] = '}';
  bad_at(__LINE__, doc, 13 + 2 * depth, "", "depth");
  memset(doc, ' ', big);
  memcpy(doc, "{\"prompts\": [\"a\"]}", 18);
  bad_at(__LINE__, doc, big, "", "the limit is 67108864");
  free(doc);
}

/* ---- expansion ---- */

static model_config_t test_config(void) {
  model_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  strcpy(cfg.family, "llama");
  cfg.n_layers = 30;
  cfg.d_model = 576;
  cfg.n_heads = 9;
  cfg.n_kv_heads = 3;
  cfg.head_dim = 64;
  cfg.d_mlp = 1536;
  cfg.vocab_size = 49152;
  return cfg;
}

/* Expands `doc`'s components; returns the count or -1 with err filled. */
static int expand(const char *doc, const model_config_t *cfg, component_t **out, job_error_t *err) {
  job_spec_t *s = PARSE_OK(doc);
  int n = -1;
  *out = NULL;
  if (!s)
    return -1;
  if (job_expand_components(s, cfg, out, &n, err))
    n = -1;
  job_free(s);
  return n;
}

static int name_is(const component_t *c, const char *want) {
  char buf[64];
  component_name(c, buf, sizeof buf);
  return !strcmp(buf, want);
}

static void expand_bad_at(int line, const char *doc, const model_config_t *cfg, const char *field,
                          const char *message) {
  component_t *c = NULL;
  job_error_t err;
  int n = expand(doc, cfg, &c, &err);
  CHECK_AT(line, n < 0 && !c && !strcmp(err.field, field) && strstr(err.message, message),
           "expansion gave %d, \"%s: %s\"; want \"%s: ...%s...\"", n, n < 0 ? err.field : "",
           n < 0 ? err.message : "", field, message);
  free(c);
}
#define EXPAND_BAD(doc, cfg, field, message) expand_bad_at(__LINE__, doc, cfg, field, message)

static void test_expand(void) {
  model_config_t cfg = test_config();
  component_t *c = NULL;
  job_error_t err;
  char want[64];
  int n;

  n = expand("{'prompts': ['a', 'b'], 'ablations': {'components': ['*']}}", &cfg, &c, &err);
  CHECK(n == 60, "'*' gives %d", n);
  for (int i = 0; i < n && i < 60; i++) {
    snprintf(want, sizeof want, "%s.%d", i % 2 ? "mlp" : "attn", i / 2);
    CHECK(name_is(&c[i], want), "'*'[%d] is not %s", i, want);
    CHECK(c[i].index == -1 && c[i].layer == i / 2, "'*'[%d] fields", i);
  }
  free(c);

  n = expand("{'prompts': ['a', 'b'], 'ablations': {'components': ['attn.*', 'attn.3', '*',"
             " 'head.5.*', 'head.5.2', 'head.*', 'embed', 'neuron.3.17', 'neuron.3.*', 'mlp.7',"
             " 'head.*', 'embed']}}",
             &cfg, &c, &err);
  CHECK(n == 30 + 30 + 270 + 1 + 1536, "mixed patterns give %d", n);
  if (n == 30 + 30 + 270 + 1 + 1536) {
    int k = 0, ok = 1;
    for (int l = 0; l < 30; l++, k++)
      snprintf(want, sizeof want, "attn.%d", l), ok &= name_is(&c[k], want);
    for (int l = 0; l < 30; l++, k++)
      snprintf(want, sizeof want, "mlp.%d", l), ok &= name_is(&c[k], want);
    for (int h = 0; h < 9; h++, k++)
      snprintf(want, sizeof want, "head.5.%d", h), ok &= name_is(&c[k], want);
    for (int l = 0; l < 30; l++)
      for (int h = 0; h < 9 && l != 5; h++, k++)
        snprintf(want, sizeof want, "head.%d.%d", l, h), ok &= name_is(&c[k], want);
    ok &= name_is(&c[k], "embed") && c[k].kind == COMPONENT_EMBED && c[k].layer == -1 &&
          c[k].index == -1;
    k++;
    ok &= name_is(&c[k++], "neuron.3.17");
    for (int i = 0; i < 1536; i++)
      if (i != 17)
        snprintf(want, sizeof want, "neuron.3.%d", i), ok &= name_is(&c[k++], want);
    CHECK(ok && k == n, "order of first appearance (k %d)", k);
    CHECK(c[60].kind == COMPONENT_HEAD && c[60].layer == 5 && c[60].index == 0, "head fields");
    CHECK(c[n - 1].kind == COMPONENT_NEURON && c[n - 1].layer == 3 && c[n - 1].index == 1535,
          "neuron fields");
  }
  free(c);

  n = expand("{'prompts': ['a', 'b'], 'ablations': {'components': ['mlp.29', 'head.29.8', "
             "'neuron.29.1535', 'attn.0', 'neuron.0.*']}}",
             &cfg, &c, &err);
  CHECK(n == 4 + 1536 && name_is(&c[0], "mlp.29") && name_is(&c[1], "head.29.8") &&
            name_is(&c[2], "neuron.29.1535") && name_is(&c[3], "attn.0") &&
            name_is(&c[4], "neuron.0.0"),
        "the last of each range is in (%d)", n);
  free(c);

  EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['attn.1', 'mlp.2', 'embed', "
             "'mlp.40']}}",
             &cfg, "ablations.components[3]", "unknown component \"mlp.40\" (model has 30 layers)");
  EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['attn.30']}}", &cfg,
             "ablations.components[0]", "(model has 30 layers)");
  EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['head.30.*']}}", &cfg,
             "ablations.components[0]", "\"head.30.*\" (model has 30 layers)");
  EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['*', 'head.5.9']}}", &cfg,
             "ablations.components[1]", "\"head.5.9\" (model has 9 heads per layer)");
  EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['neuron.3.1536']}}", &cfg,
             "ablations.components[0]", "(model has 1536 MLP neurons per layer)");
  EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['neuron.31.0']}}", &cfg,
             "ablations.components[0]", "(model has 30 layers)");

  /* The variant cap: 30 x 1536 neurons with 22 methods passes 10^6 in the 30th pattern. */
  {
    char doc[4096], *p = doc;
    p += sprintf(p, "{'prompts': ['a', 'b'], 'ablations': {'components': [");
    for (int l = 0; l < 30; l++)
      p += sprintf(p, "%s'neuron.%d.*'", l ? ", " : "", l);
    p += sprintf(p, "], 'methods': ['zero'");
    for (int m = 1; m < 22; m++)
      p += sprintf(p, ", 'scale:%d'", m);
    strcpy(p, "]}}");
    EXPAND_BAD(doc, &cfg, "ablations.components[29]", "past 1000000 variants per prompt");
    strcpy(strstr(doc, ", 'scale:21'"), "]}}"); /* 21 methods: 967680 variants */
    n = expand(doc, &cfg, &c, &err);
    CHECK(n == 30 * 1536, "21 methods x 46080 components fit (%d: %s)", n, err.message);
    free(c);
    /* Resample counts once per sample: 22 samples is 22 variants per component. */
    strcpy(strstr(doc, "'methods'"), "'methods': ['resample'], 'samples': 22}}");
    EXPAND_BAD(doc, &cfg, "ablations.components[29]", "past 1000000 variants per prompt");
    strcpy(strstr(doc, "'methods'"), "'methods': ['resample', 'zero'], 'samples': 20}}");
    n = expand(doc, &cfg, &c, &err);
    CHECK(n == 30 * 1536, "resample x 20 + zero fit (%d: %s)", n, err.message);
    free(c);
  }
  {
    model_config_t wide = cfg;
    wide.d_mlp = 2000000;
    EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['mlp.1', 'neuron.0.*']}}",
               &wide, "ablations.components[1]", "1000000");
    wide = cfg;
    wide.n_layers = 0;
    EXPAND_BAD("{'prompts': ['a', 'b'], 'ablations': {'components': ['mlp.1']}}", &wide, "",
               "no layers");
  }

  /* Repeating a wildcard many times costs nothing (and adds nothing). */
  {
    size_t reps = 100000;
    char *doc = malloc(reps * 16 + 200), *p = doc;
    job_spec_t *s;
    p += sprintf(p, "{\"prompts\": [\"a\", \"b\"], \"ablations\": {\"components\": [");
    for (size_t i = 0; i < reps; i++)
      p += sprintf(p, "%s\"neuron.7.*\"", i ? "," : "");
    strcpy(p, "]}}");
    s = job_parse(doc, strlen(doc), &err);
    CHECK(s != NULL, "repeated wildcard: %s", err.message);
    if (s) {
      CHECK(job_expand_components(s, &cfg, &c, &n, &err) == 0 && n == 1536, "repeats give %d", n);
      free(c);
      job_free(s);
    }
    free(doc);
  }

  /* A spec written by hand: a bad pattern is caught here too; no patterns, no components. */
  {
    char *names[] = {"attn.2", "mlp.x"};
    job_spec_t s;
    memset(&s, 0, sizeof s);
    s.components = names;
    s.n_components = 2;
    c = (component_t *)&s; /* must be reset */
    n = 5;
    CHECK(job_expand_components(&s, &cfg, &c, &n, &err) == -1 && c == NULL && n == 0 &&
              !strcmp(err.field, "ablations.components[1]"),
          "hand-made spec with a bad pattern: %s: %s", err.field, err.message);
    s.n_components = 0;
    CHECK(job_expand_components(&s, &cfg, &c, &n, &err) == 0 && c == NULL && n == 0,
          "no components");
  }
}

/* Residual-stream sites and groups: syntax, expansion, refusals naming the
 * field. */
static void test_resid_and_groups(void) {
  model_config_t cfg = test_config();
  component_t *c = NULL;
  job_error_t err;
  int n = expand("{'prompts': ['a'], 'ablations': {'components': ['resid_pre.0', 'resid_mid.*', "
                 "'resid_post.29'], 'methods': ['zero']}}",
                 &cfg, &c, &err);
  CHECK(n == 32 && name_is(&c[0], "resid_pre.0") && name_is(&c[1], "resid_mid.0") &&
            name_is(&c[30], "resid_mid.29") && name_is(&c[31], "resid_post.29") &&
            c[31].kind == COMPONENT_RESID_POST && c[31].layer == 29,
        "residual sites expand (%d)", n);
  free(c);
  n = expand("{'prompts': ['a'], 'ablations': {'components': ['q.2.8', 'k.2.*', 'v.*'], "
             "'methods': ['zero']}}",
             &cfg, &c, &err);
  CHECK(n == 1 + 3 + 30 * 3 && name_is(&c[0], "q.2.8") && c[0].kind == COMPONENT_Q &&
            name_is(&c[1], "k.2.0") && name_is(&c[3], "k.2.2") && name_is(&c[4], "v.0.0") &&
            c[4].kind == COMPONENT_V,
        "queries, keys and values expand (k and v over the key/value heads: %d)", n);
  free(c);
  EXPAND_BAD("{'prompts': ['a'], 'ablations': {'components': ['k.1.3'], 'methods': ['zero']}}",
             &cfg, "ablations.components[0]", "(model has 3 key/value heads per layer)");
  EXPAND_BAD("{'prompts': ['a'], 'ablations': {'components': ['q.1.9'], 'methods': ['zero']}}",
             &cfg, "ablations.components[0]", "(model has 9 heads per layer)");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['q.1']}}", "ablations.components[0]",
      "expected q.LAYER.HEAD");
  EXPAND_BAD("{'prompts': ['a'], 'ablations': {'components': ['resid_post.30'], 'methods': "
             "['zero']}}",
             &cfg, "ablations.components[0]", "(model has 30 layers)");
  cfg.parallel_residual = 1;
  EXPAND_BAD("{'prompts': ['a'], 'ablations': {'components': ['resid_pre.*', 'resid_mid.3'], "
             "'methods': ['zero']}}",
             &cfg, "ablations.components[1]", "there is no resid_mid");
  cfg.parallel_residual = 0;
  BAD("{'prompts': ['a'], 'ablations': {'components': ['resid_pre.1.2']}}",
      "ablations.components[0]", "expected resid_pre.LAYER");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['resid_pre']}}", "ablations.components[0]",
      "expected resid_pre.LAYER or resid_pre.*");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['resid.3']}}", "ablations.components[0]",
      "unknown component kind");

  job_spec_t *s = PARSE_OK("{'prompts': ['a', 'b'], 'ablations': {'groups': {'L1 heads': "
                           "['head.1.*'], 'late': ['attn.28', 'mlp.29', 'attn.28']}}}");
  CHECK(s && !s->components && s->n_groups == 2 && str_is(s->groups[0].name, "L1 heads") &&
            s->groups[1].n_patterns == 3 && str_is(s->groups[1].patterns[1], "mlp.29"),
        "groups parsed, in order, without components");
  if (s) {
    n = -1;
    c = NULL;
    if (job_expand_group(s, 1, &cfg, &c, &n, &err) == 0)
      CHECK(n == 2 && name_is(&c[0], "attn.28") && name_is(&c[1], "mlp.29"),
            "a group's components once each (%d)", n);
    else
      FAIL("group expansion: %s: %s", err.field, err.message);
    free(c);
    CHECK(job_expand_group(s, 0, &cfg, &c, &n, &err) == 0 && n == 9, "head.1.* in a group: %d", n);
    free(c);
  }
  job_free(s);
  s = PARSE_OK("{'prompts': ['a', 'b'], 'ablations': {'groups': {'g': ['head.40.0']}}}");
  if (s) {
    c = NULL;
    n = job_expand_group(s, 0, &cfg, &c, &n, &err);
    CHECK(n < 0 && !strcmp(err.field, "ablations.groups.g[0]") &&
              strstr(err.message, "(model has 30 layers)"),
          "a group's head out of range names the group's field: %s: %s", err.field, err.message);
    free(c);
  }
  job_free(s);
  /* a member inside another: the layer and one of its heads (or neurons) */
  const char *nested[] = {
      "{'prompts': ['a', 'b'], 'ablations': {'groups': {'g': ['attn.1', 'head.1.1']}}}",
      "{'prompts': ['a', 'b'], 'ablations': {'groups': {'g': ['neuron.2.*', 'mlp.2']}}}"};
  for (int k = 0; k < 2; k++) {
    s = PARSE_OK(nested[k]);
    if (s) {
      c = NULL;
      CHECK(
          job_expand_group(s, 0, &cfg, &c, &n, &err) < 0 && !c &&
              !strcmp(err.field, "ablations.groups.g") &&
              strstr(err.message, k ? "neuron.2.0 is part of mlp.2" : "head.1.1 is part of attn.1"),
          "a member inside another refused: %s: %s", err.field, err.message);
      free(c);
    }
    job_free(s);
  }
  s = PARSE_OK("{'prompts': ['a', 'b'], 'ablations': {'groups': {'g': ['attn.1', 'head.2.1']}}}");
  if (s) {
    c = NULL;
    CHECK(job_expand_group(s, 0, &cfg, &c, &n, &err) == 0 && n == 2,
          "a layer and another layer's head in one group (%s)", err.message);
    free(c);
  }
  job_free(s);
  BAD("{'prompts': ['a', 'b'], 'ablations': {'groups': {'g': ['resid_pre.3']}}}",
      "ablations.groups.g[0]", "a residual-stream site cannot be ablated in a group");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'groups': {'mlp.3': ['mlp.3', 'attn.3']}}}",
      "ablations.groups.mlp.3", "is a component's name");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'groups': {'g': []}}}", "ablations.groups.g",
      "needs at least one");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'groups': {'': ['mlp.1']}}}", "ablations.groups.",
      "1 to 64 bytes");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'groups': ['mlp.1']}}", "ablations.groups",
      "expected an object of named lists");
  BAD("{'prompts': ['a', 'b'], 'ablations': {'groups': {'g': ['mlp.x']}}}", "ablations.groups.g[0]",
      "non-negative integer");
}

/* Paired prompts: counterfactuals, per-prompt foils, the patching
 * direction; refusals naming the field. */
static void test_pairs(void) {
  job_spec_t *s = PARSE_OK(
      "{'prompts': [{'text': 'a b', 'target': ' x', 'foil': ' y', 'counterfactual': 'a c'}, "
      "{'ids': [1, 2], 'target': 5, 'foil': 6, 'counterfactual': {'prompt': 0}}, "
      "{'text': 'q', 'target': ' x', 'foil': ' z', 'counterfactual': {'ids': [3, 4]}}], "
      "'ablations': {'components': ['attn.*'], 'methods': [{'patch': {'source': "
      "'counterfactual'}}], 'patching': 'denoising'}, 'metrics': ['logit_diff']}");
  CHECK(s && s->target == TARGET_FOIL && s->denoising == 1 &&
            s->methods[0].source == METHOD_SOURCE_COUNTERFACTUAL &&
            str_is(s->prompts[0].cf_text, "a c") && s->prompts[1].cf_prompt == 0 &&
            s->prompts[2].cf_n_ids == 2 && s->prompts[2].cf_ids[1] == 4 &&
            str_is(s->prompts[2].foil.text, " z") && s->prompts[1].foil.id == 6 &&
            (s->metrics & METRIC_LOGIT_DIFF),
        "paired prompts parsed");
  job_free(s);
  BAD("{'prompts': [{'text': 'a', 'counterfactual': {'prompt': 5}}, 'b'], 'ablations': "
      "{'components': ['attn.*']}}",
      "prompts[0].counterfactual.prompt", "prompt 5 does not exist");
  BAD("{'prompts': [{'text': 'a', 'counterfactual': {'prompt': 0}}, 'b'], 'ablations': "
      "{'components': ['attn.*']}}",
      "prompts[0].counterfactual.prompt", "not its own counterfactual");
  BAD("{'prompts': [{'text': 'a', 'counterfactual': {'text': 'b', 'ids': [1]}}], 'ablations': "
      "{'components': ['attn.*']}}",
      "prompts[0].counterfactual", "exactly one of text, ids and prompt");
  BAD("{'prompts': [{'text': 'a', 'counterfactual': 'b'}, 'c'], 'ablations': {'components': "
      "['attn.*'], 'methods': [{'patch': {'source': 'counterfactual'}}]}}",
      "prompts[1].counterfactual", "required: patch from \"counterfactual\"");
  BAD("{'prompts': [{'text': 'a', 'counterfactual': 'b'}], 'ablations': {'components': "
      "['attn.*'], 'methods': ['zero'], 'patching': 'denoising'}}",
      "ablations.patching", "name the clean answer as the target");
  BAD("{'prompts': [{'text': 'a', 'counterfactual': 'b'}], 'ablations': {'components': "
      "['attn.*'], 'methods': [{'patch': {'source': 'pair'}}]}}",
      "ablations.methods[0].patch.source", "expected a prompt index or \"counterfactual\"");
  BAD("{'prompts': [{'text': 'a', 'foil': ' b'}], 'ablations': {'components': ['attn.*'], "
      "'methods': ['zero']}}",
      "prompts[0].foil", "a foil needs a named target");
  BAD("{'prompts': [{'text': 'a', 'target': ' x', 'foil': ' b'}, {'text': 'c', 'target': ' x'}], "
      "'ablations': {'components': ['attn.*'], 'methods': ['zero']}}",
      "prompts[1].foil", "required: prompts[0] names a foil");
  BAD("{'prompts': [{'text': 'a', 'target': ' x', 'foil': ' x'}], 'ablations': {'components': "
      "['attn.*'], 'methods': ['zero']}}",
      "prompts[0].foil", "the foil is the same token as the prompt's target");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['attn.*'], 'methods': ['zero'], "
      "'patching': 'both'}}",
      "ablations.patching", "noising");
}

/* Per-position grids: {"each": RULE}. */
static void test_grid(void) {
  job_spec_t *s = PARSE_OK("{'prompts': ['a'], 'ablations': {'components': ['attn.*'], 'methods': "
                           "['zero'], 'positions': {'each': [0, -1]}}}");
  CHECK(s && s->positions_each && s->positions == POSITIONS_LIST && s->n_positions == 2,
        "a grid over a list");
  job_free(s);
  s = PARSE_OK("{'prompts': [{'text': 'a b', 'subject': 'b'}], 'ablations': {'components': "
               "['attn.*'], 'methods': ['zero'], 'positions': {'each': 'subject'}}}");
  CHECK(s && s->positions_each && s->positions == POSITIONS_SUBSTRING, "a grid over the subject");
  job_free(s);
  BAD("{'prompts': ['a'], 'ablations': {'components': ['attn.*'], 'positions': {'each': "
      "{'each': 'all'}}}}",
      "ablations.positions.each.each", "does not nest");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['attn.*'], 'positions': {'each': [1, "
      "1]}}}",
      "ablations.positions.each[1]", "given twice");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['attn.*'], 'positions': {'each': "
      "'first'}}}",
      "ablations.positions.each", "last");
  BAD("{'prompts': ['a b'], 'target': 'next', 'ablations': {'components': ['attn.*'], "
      "'methods': ['zero'], 'positions': {'each': 'all'}}}",
      "ablations.positions.each", "every position is already its own readout");
}

/* Causal tracing: "trace" and "restore". */
static void test_trace(void) {
  job_spec_t *s = PARSE_OK(
      "{'prompts': [{'text': 'The Space Needle is in', 'subject': 'The Space Needle', 'target': "
      "' Seattle'}], 'trace': {'seed': 4}, 'ablations': {'components': ['resid_pre.*'], "
      "'methods': ['restore'], 'positions': {'each': 'all'}}}");
  CHECK(s && s->trace && s->trace_std < 0 && s->trace_scale == 3.0 && s->trace_seed == 4 &&
            s->methods[0].kind == METHOD_PATCH && s->methods[0].source == METHOD_SOURCE_CLEAN,
        "a trace with ROME's default noise");
  job_free(s);
  s = PARSE_OK("{'prompts': [{'text': 'a b', 'subject': 'a', 'target': ' b'}], 'trace': {'std': "
               "0.25}, 'ablations': {'components': ['attn.*'], 'methods': ['restore', 'zero']}}");
  CHECK(s && s->trace_std == 0.25, "a trace with an absolute std");
  job_free(s);
  BAD("{'prompts': ['a'], 'ablations': {'components': ['attn.*'], 'methods': ['restore']}}",
      "ablations.methods[0]", "give \"trace\"");
  BAD("{'prompts': [{'text': 'a b', 'target': ' b'}], 'trace': {}, 'ablations': {'components': "
      "['attn.*'], 'methods': ['restore']}}",
      "prompts[0].subject", "required: \"trace\" corrupts each prompt's subject");
  BAD("{'prompts': [{'text': 'a b', 'subject': 'a'}], 'trace': {}, 'ablations': {'components': "
      "['attn.*'], 'methods': ['restore']}}",
      "target", "name the clean answer");
  BAD("{'prompts': [{'text': 'a b', 'subject': 'a', 'target': ' b'}], 'trace': {'std': -1}, "
      "'ablations': {'components': ['attn.*'], 'methods': ['restore']}}",
      "trace.std", "expected a number in [0");
  BAD("{'prompts': [{'text': 'a b', 'subject': 'a', 'target': ' b'}], 'trace': {'std': 1, "
      "'scale': 3}, 'ablations': {'components': ['attn.*'], 'methods': ['restore']}}",
      "trace.scale", "only one of std and scale");
  BAD("{'prompts': [{'text': 'a b', 'subject': 'a', 'target': ' b'}], 'trace': {'noise': 3}, "
      "'ablations': {'components': ['attn.*'], 'methods': ['restore']}}",
      "trace.noise", "");
  BAD("{'prompts': [{'text': 'a b', 'subject': 'a', 'target': ' b', 'counterfactual': 'c b'}], "
      "'trace': {}, 'ablations': {'components': ['attn.*'], 'methods': [{'patch': {'source': "
      "'counterfactual'}}]}}",
      "ablations.methods[0]", "use \"restore\"");
  BAD("{'prompts': ['a'], 'ablations': {'components': ['attn.*'], 'methods': ['restore:2']}}",
      "ablations.methods[0]", "restore takes no value");
}

static void test_names_and_methods(void) {
  component_t c[] = {{COMPONENT_EMBED, -1, -1},
                     {COMPONENT_ATTN, 3, -1},
                     {COMPONENT_MLP, 29, -1},
                     {COMPONENT_HEAD, 5, 2},
                     {COMPONENT_NEURON, 3, 17}};
  const char *names[] = {"embed", "attn.3", "mlp.29", "head.5.2", "neuron.3.17"};
  char small[6];
  method_t m;
  for (int i = 0; i < 5; i++)
    CHECK(name_is(&c[i], names[i]), "name of %s", names[i]);
  component_name(&c[4], small, sizeof small);
  CHECK(!strcmp(small, "neuro"), "truncated name \"%s\"", small);
  component_name(&c[4], small, 0);

  CHECK(method_parse("resample", &m) == 0 && m.kind == METHOD_RESAMPLE && m.source == -1,
        "resample");
  CHECK(method_parse("zero", &m) == 0 && m.kind == METHOD_ZERO, "zero");
  CHECK(method_parse("mean", &m) == 0 && m.kind == METHOD_MEAN, "mean");
  CHECK(method_parse("scale:0.5", &m) == 0 && m.kind == METHOD_SCALE && m.value == 0.5f, "scale");
  CHECK(method_parse("scale:-1.25e2", &m) == 0 && m.value == -125.0f, "scale exponent");
  CHECK(method_parse("scale:.5", &m) == 0 && m.value == 0.5f, "scale .5");
  CHECK(method_parse("noise:0.1", &m) == 0 && m.kind == METHOD_NOISE && m.value == 0.1f, "noise");
  CHECK(method_parse("scale:3.4e38", &m) != 0, "near FLT_MAX: refused (over METHOD_VALUE_MAX)");
  {
    const char *bad[] = {"",           "resample:1",  "scale",       "scale:",        "scale:abc",
                         "scale: 0.5", "scale:0.5 ",  "scale:0.5x",  "scale:inf",     "scale:nan",
                         "scale:1e39", "scale:0x10",  "scale:1e",    "scale:-",       "scale:.",
                         "noise:-0.1", "noise:-1e-9", "patch",       "patch:3",       "Zero",
                         "zero ",      "scale:0.5:1", "scale:1e999", "noise:infinity"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
      CHECK(method_parse(bad[i], &m) == -1, "method_parse(\"%s\") accepted", bad[i]);
  }
  CHECK(method_parse(NULL, &m) == -1, "NULL method");
}

/* ---- robustness: truncations and mutations never crash ---- */

static const char *rich_doc =
    "{'model': 'smollm2-135m', 'preset': 'hydra',"
    " 'prompts': ['The capital of France is',"
    "   {'text': 'The Eiffel Tower is in', 'subject': 'Eiffel', 'target': ' Paris'},"
    "   {'text': 'Z\xc3\xbcrich \xe6\x9d\xb1 \xf0\x9f\x8e\x89 Eiffel', 'subject': 'Eiffel', "
    "'target': 7042},"
    "   {'ids': [1, 2, 3], 'target': 5}],"
    " 'target': {'token': ' Paris', 'foil': ' Rome'},"
    " 'ablations': {'components': ['attn.*', 'mlp.3', 'head.5.*', 'head.5.2', 'neuron.3.17',"
    "   'neuron.3.*', 'embed', '*', 'head.*'],"
    "   'methods': ['resample', 'zero', 'mean', 'scale:0.5', 'noise:0.1', {'patch': {'source': "
    "3}}],"
    "   'samples': 15, 'seed': 0, 'positions': [3, -1]},"
    " 'metrics': ['logit', 'logprob', 'prob', 'logit_diff', 'kl', 'rank'],"
    " 'norm_scale': 'clean', 'direct_effects': true, 'effect_table': true,"
    " 'precision': 'fp32', 'reuse': true, 'deadline_s': 600}";

static void fuzz_one(const char *doc, size_t len, const model_config_t *cfg, int *accepted) {
  job_error_t err;
  job_spec_t *s = job_parse(doc, len, &err);
  if (!s) {
    CHECK(err.message[0] && clean_text(err.field) && clean_text(err.message),
          "error text not clean for a mutated document (seed %llu)", (unsigned long long)seed);
    return;
  }
  (*accepted)++;
  {
    component_t *c = NULL;
    int n = 0;
    if (job_expand_components(s, cfg, &c, &n, &err) == 0)
      CHECK(n >= 0 && (n == 0) == (c == NULL), "expansion result");
    free(c);
  }
  job_free(s);
}

static void test_robustness(void) {
  model_config_t cfg = test_config();
  char *doc = q(rich_doc);
  size_t len = strlen(doc);
  char *buf = malloc(len * 2 + 64);
  int accepted = 0;
  job_error_t err;
  job_spec_t *s = job_parse(doc, len, &err);
  CHECK(s != NULL, "the fuzz seed document is valid: %s: %s", err.field, err.message);
  job_free(s);

  for (size_t n = 0; n < len; n++) {
    int before = accepted;
    memcpy(buf, doc, n); /* not NUL-terminated within n: job_parse must respect len */
    buf[n] = 'x';
    fuzz_one(buf, n, &cfg, &accepted);
    CHECK(accepted == before, "prefix of %zu bytes accepted", n);
  }

  rng_state = seed * 2654435761u + 1;
  for (int iter = 0; iter < 30000; iter++) {
    static const char alphabet[] = "{}[]\",:0123456789-.eE *tfnul\\abc\xc3\xbc\xff\x80";
    size_t n = len;
    int edits = 1 + (int)(rnd_bits() % 4);
    memcpy(buf, doc, len);
    for (int e = 0; e < edits && n > 1; e++) {
      size_t at = rnd_bits() % n;
      switch (rnd_bits() % 4) {
      case 0: /* replace a byte */
        buf[at] = (char)(rnd_bits() % 3 ? alphabet[rnd_bits() % (sizeof alphabet - 1)]
                                        : (char)rnd_bits());
        break;
      case 1: /* insert a byte */
        memmove(buf + at + 1, buf + at, n - at);
        buf[at] = alphabet[rnd_bits() % (sizeof alphabet - 1)];
        n++;
        break;
      case 2: /* delete a run */
      {
        size_t k = 1 + rnd_bits() % 8;
        if (at + k > n)
          k = n - at;
        memmove(buf + at, buf + at + k, n - at - k);
        n -= k;
        break;
      }
      default: /* swap two bytes */
      {
        size_t b = rnd_bits() % n;
        char t = buf[at];
        buf[at] = buf[b];
        buf[b] = t;
      }
      }
      if (n > len * 2)
        break;
    }
    fuzz_one(buf, n, &cfg, &accepted);
  }
  printf("robustness: %zu prefixes rejected; 30000 mutations, %d accepted (seed %llu)\n", len,
         accepted, (unsigned long long)seed);
  free(buf);
  free(doc);
}

/* Issue 22's points for newcomers: a UTF-8 byte order mark is skipped; a
 * target written as a token's text says how a token is written; other
 * libraries' component names (TransformerLens, Hugging Face) are refused
 * naming hydra's spelling of the same part. */
static void test_newcomers(void) {
  const char *bom = "\xef\xbb\xbf{\"prompts\": [\"a b\", \"c d\"], "
                    "\"ablations\": {\"components\": [\"mlp.1\"]}}";
  job_error_t err;
  job_spec_t *s = job_parse(bom, strlen(bom), &err);
  CHECK(s && s->n_components == 1, "a document after a UTF-8 BOM: %s", s ? "" : err.message);
  job_free(s);
  BAD("{'prompts': ['a b', 'c d'], 'target': ' Paris', 'ablations': {'components': ['mlp.1']}}",
      "target", "a token is written {\"token\": \" Paris\"}");
  static const struct {
    const char *name, *want;
  } foreign[] = {
      {"blocks.3.attn.hook_z", "did you mean attn.3 (one head: head.3.H)?"},
      {"blocks.12.hook_mlp_out", "did you mean mlp.12?"},
      {"blocks.0.hook_resid_pre", "did you mean resid_pre.0?"},
      {"blocks.2.mlp.hook_post", "did you mean neuron.2.*?"},
      {"model.layers.3.mlp", "did you mean mlp.3?"},
      {"model.layers.7.self_attn", "did you mean attn.7?"},
      {"transformer.h.5.attn", "did you mean attn.5?"},
      {"gpt_neox.layers.1.attention", "did you mean attn.1?"},
      {"hook_embed", "did you mean embed?"},
      {"blocks.4.ln1", "hydra names components embed, attn.L, mlp.L"},
  };
  for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
    char doc[256];
    snprintf(doc, sizeof doc,
             "{'prompts': ['a b', 'c d'], 'ablations': {'components': ['mlp.0', '%s']}}",
             foreign[i].name);
    BAD(doc, "ablations.components[1]", foreign[i].want);
  }
}

int main(int argc, char **argv) {
  if (argc > 1)
    seed = strtoull(argv[1], NULL, 10);
  check_seed(seed);
  printf("test_job: seed %llu\n", (unsigned long long)seed);
  test_minimal();
  test_full();
  test_preset();
  test_targets_and_positions();
  test_many_prompts();
  test_invalid();
  test_error_text();
  test_limits();
  test_expand();
  test_resid_and_groups();
  test_pairs();
  test_grid();
  test_trace();
  test_names_and_methods();
  test_robustness();
  test_newcomers();
  return check_exit("test_job");
}
