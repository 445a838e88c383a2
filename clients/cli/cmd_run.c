/* hydra run - run a job locally (no daemon): load the model and its
 * tokenizer, run the engine, write the result rows as NDJSON, CSV, or a
 * readable per-layer table. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "buffer.h"
#include "checkpoint.h"
#include "cli.h"
#include "clock.h"
#include "engine.h"
#include "job.h"
#include "json_field.h"
#include "model.h"
#include "plan.h"
#include "results.h"
#include "row_csv.h"
#include "tokenizer.h"

typedef enum { FORMAT_NDJSON, FORMAT_TABLE, FORMAT_CSV } format_t;

#define TABLE_PROMPTS 12 /* prompts the table lists with their target tokens */

typedef struct {
  format_t format;
  FILE *out;
  json_t *summary; /* table: summary rows kept for the end */
  json_t *clean;   /* table: the first clean rows (prompts and their targets) */
  json_t *header;
  int n_slots;
  double start;
  int tty;
  long last_print;
  double last_print_s; /* when the last plain progress line was printed */
} run_out_t;

const char *cli_eta(double eta, char *buf) {
  if (eta < 0)
    snprintf(buf, 32, "ETA ?");
  else
    snprintf(buf, 32, "ETA %.0fs", eta);
  return buf;
}

const char *cli_rate(double rate, char *buf) {
  if (rate > 0 && isfinite(rate))
    snprintf(buf, 32, "%.1f/s", rate);
  else
    snprintf(buf, 32, "-/s");
  return buf;
}

void cli_progress_bar(const char *label, long done, long total, double rate, double eta, int end) {
  const int width = 30, fill = total > 0 ? (int)(width * (double)done / total) : 0;
  char e[32], r[32];
  fprintf(stderr, "\r%s%s[%.*s%*s] %ld/%ld variants  %s  %s ", label, label[0] ? " " : "", fill,
          "##############################", width - fill, "", done, total, cli_rate(rate, r),
          cli_eta(end ? 0 : eta, e));
  if (end)
    fprintf(stderr, "\n");
}

static int emit_row(void *ctx, json_t *row) {
  run_out_t *o = ctx;
  const char *type = json_string_value(json_object_get(row, "type"));
  if (!type)
    return -1;
  if (o->format == FORMAT_NDJSON) {
    char *s = json_dumps(row, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!s)
      return -1;
    fprintf(o->out, "%s\n", s);
    free(s);
    return ferror(o->out) ? -1 : 0;
  }
  if (strcmp(type, "header") == 0) {
    o->header = json_incref(row);
    o->n_slots = (int)json_array_size(json_object_get(row, "slots"));
  }
  if (o->format == FORMAT_CSV) {
    buffer_t line = {0};
    const int rc = row_csv(row, &line);
    if (rc == 0 && line.len)
      fwrite(line.data, 1, line.len, o->out);
    buffer_free(&line);
    if (rc)
      return -1;
  } else if (strcmp(type, "summary") == 0 && o->format == FORMAT_TABLE)
    json_array_append(o->summary, row);
  else if (strcmp(type, "clean") == 0 && o->format == FORMAT_TABLE && o->clean &&
           json_array_size(o->clean) < TABLE_PROMPTS)
    json_array_append(o->clean, row);
  return ferror(o->out) ? -1 : 0;
}

static int progress(void *ctx, long done, long total) {
  run_out_t *o = ctx;
  const double el = clock_monotonic() - o->start, rate = el > 0 ? done / el : 0;
  const double eta = done == total ? 0 : rate > 0 ? (total - done) / rate : -1;
  if (o->tty)
    cli_progress_bar("", done, total, rate, eta, done == total);
  else if (done == total || done - o->last_print >= total / 10 || el - o->last_print_s >= 30) {
    /* a line each tenth of the job, and at least every 30 s of a long one */
    char e[32], r[32];
    fprintf(stderr, "hydra: %ld/%ld variants, %s, %s\n", done, total, cli_rate(rate, r),
            cli_eta(eta, e));
    o->last_print = done;
    o->last_print_s = el;
  }
  return 0;
}

typedef struct {
  results_t *r;
  run_out_t *o;
  engine_sink_t inner;
} sink_ctx_t;

static int sink_clean(void *ctx, const engine_clean_t *row) {
  sink_ctx_t *s = ctx;
  return s->inner.clean(s->inner.ctx, row);
}
static int sink_variant(void *ctx, const engine_variant_t *row) {
  sink_ctx_t *s = ctx;
  return s->inner.variant(s->inner.ctx, row);
}
static int sink_progress(void *ctx, long done, long total) {
  sink_ctx_t *s = ctx;
  return progress(s->o, done, total);
}

static double field_mean(json_t *row, const char *key) {
  json_t *v = json_object_get(json_object_get(row, key), "mean");
  return json_is_number(v) ? json_number_value(v) : NAN;
}
static double field_ci(json_t *row, const char *key) {
  json_t *v = json_object_get(json_object_get(row, key), "ci95");
  return json_is_number(v) ? json_number_value(v) : NAN;
}

/* A number of the fit right-aligned in width, with prec decimals, or "-"
 * where the summary gives none (null: the fit means nothing there). */
static void print_fit_number(FILE *f, const json_t *v, int width, int prec) {
  if (json_is_number(v))
    fprintf(f, " %*.*f", width, prec, json_number_value(v));
  else
    fprintf(f, " %*s", width, "-");
}

/* A per-position grid: for each method, the mean total effect of every
 * component (rows) at every grid position or span (columns): the layer x
 * position heatmap as text. */
static void print_grid(run_out_t *o) {
  FILE *f = o->out;
  json_t *grid = json_object_get(o->header, "grid"),
         *methods = json_object_get(o->header, "methods");
  json_t *units = json_object_get(o->header, "components");
  const size_t ng = json_array_size(grid), nu = json_array_size(units);
  size_t im, iu, ig, i;
  const int spans = json_is_string(json_array_get(grid, 0)); /* a grid of named spans */
  const char *key = spans ? "span" : "position";
  int w = 7; /* a column: a position, or a span's name up to 16 characters */
  for (ig = 0; spans && ig < ng; ig++) {
    const size_t len = strlen(json_string_value(json_array_get(grid, ig)));
    w = len > 16 ? 16 : (int)len > w ? (int)len : w;
  }
  json_t *method, *unit, *row;
  json_array_foreach(methods, im, method) {
    fprintf(f, "total effect by %s, method %s (mean over the prompts with the %s)\n", key,
            json_string_value(method), key);
    fprintf(f, "%-16s", "component");
    for (ig = 0; ig < ng; ig++)
      if (spans)
        fprintf(f, " %*.*s", w, w, json_string_value(json_array_get(grid, ig)));
      else
        fprintf(f, " %7lld", json_integer_value(json_array_get(grid, ig)));
    fputc('\n', f);
    for (iu = 0; iu < nu; iu++) {
      unit = json_array_get(units, iu);
      fprintf(f, "%-16.16s", json_string_value(unit));
      for (ig = 0; ig < ng; ig++) {
        double v = NAN;
        json_array_foreach(o->summary, i, row) {
          if (!strcmp(json_string_value(json_object_get(row, "component")),
                      json_string_value(unit)) &&
              !strcmp(json_string_value(json_object_get(row, "method")),
                      json_string_value(method)) &&
              json_equal(json_object_get(row, key), json_array_get(grid, ig))) {
            v = field_mean(row, "total_effect");
            break;
          }
        }
        fprintf(f, " %*.3f", w, v);
      }
      fputc('\n', f);
    }
  }
}

/* The per-layer table: one line per ablated component and method. */
static void print_table(run_out_t *o, double elapsed) {
  FILE *f = o->out;
  char took[32] = ""; /* no end row with a time: a job that did not finish */
  if (!isnan(elapsed))
    snprintf(took, sizeof(took), ", %.1f s", elapsed);
  fprintf(f, "model %s (%s, %lld layers), %lld prompts, %lld variants, backend %s%s\n",
          json_string_value(json_object_get(o->header, "model")),
          json_string_value(json_object_get(o->header, "family")),
          json_integer_value(json_object_get(o->header, "n_layers")),
          json_integer_value(json_object_get(o->header, "n_prompts")),
          json_integer_value(json_object_get(o->header, "variants")),
          json_string_value(json_object_get(o->header, "backend")), took);
  size_t k;
  json_t *cl;
  json_array_foreach(o->clean, k, cl) { /* the prompt's tokens and its target, as strings */
    fprintf(f, "  prompt %lld", json_integer_value(json_object_get(cl, "prompt")));
    if (json_is_integer(json_object_get(cl, "position")))
      fprintf(f, " @%lld", json_integer_value(json_object_get(cl, "position")));
    fprintf(f, ": \"");
    size_t t;
    json_t *tok;
    json_array_foreach(json_object_get(cl, "tokens"), t, tok) {
      const char *s = json_string_value(tok);
      for (; s && *s; s++)
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fprintf(f, "\" -> \"%s\" (centred logit %.3f)\n",
            json_string_value(json_object_get(cl, "target_token"))
                ? json_string_value(json_object_get(cl, "target_token"))
                : "?",
            json_is_number(json_object_get(cl, "logit"))
                ? json_number_value(json_object_get(cl, "logit"))
                : NAN);
  }
  const long long n_prompts = json_integer_value(json_object_get(o->header, "n_prompts"));
  if ((long long)json_array_size(o->clean) < n_prompts)
    fprintf(f, "  ... %lld more prompts\n", n_prompts - (long long)json_array_size(o->clean));
  if (json_object_get(o->header, "grid")) {
    print_grid(o);
    return;
  }
  fprintf(f, "effects on the centred target logit, mean over prompts (+- 95%% interval, "
             "Student's t); slope and R2 '-' below 3 prompts or with no spread of the direct "
             "effect\n");
  fprintf(f, "%-14s %-10s %16s %16s %16s %9s %9s %7s %6s\n", "component", "method", "direct",
          "total", "compensation", "comp.attn", "comp.mlp", "slope", "R2");
  size_t i;
  json_t *row;
  json_array_foreach(o->summary, i, row) {
    json_t *fit = json_object_get(row, "fit");
    json_t *slope = json_object_get(fit, "slope"), *r2 = json_object_get(fit, "r2");
    fprintf(f, "%-14s %-10s %8.3f +-%6.3f %8.3f +-%6.3f %8.3f +-%6.3f %9.3f %9.3f",
            json_string_value(json_object_get(row, "component")),
            json_string_value(json_object_get(row, "method")), field_mean(row, "direct_effect"),
            field_ci(row, "direct_effect"), field_mean(row, "total_effect"),
            field_ci(row, "total_effect"), field_mean(row, "compensation"),
            field_ci(row, "compensation"), field_mean(row, "compensation_attn"),
            field_mean(row, "compensation_mlp"));
    print_fit_number(f, slope, 7, 3);
    print_fit_number(f, r2, 6, 3);
    fputc('\n', f);
  }
}

char *read_file(const char *path, size_t *len, char *err) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) {
    err_set(err, "%s: %s", path, strerror(errno));
    return NULL;
  }
  /* Up to twice the job limit is read, so that job_parse can say how large
   * a document over it is. */
  buffer_t doc = {0};
  char chunk[1 << 16];
  size_t got;
  int failed = 0;
  while (!failed && (got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    if (doc.len >= 2 * (size_t)JOB_MAX_DOCUMENT_BYTES)
      failed = err_set(err, "%s: larger than %u bytes", path, JOB_MAX_DOCUMENT_BYTES);
    else if (buffer_append(&doc, chunk, got) != 0)
      failed = err_set(err, "%s: out of memory", path);
  }
  if (f != stdin)
    fclose(f);
  if (failed) {
    buffer_free(&doc);
    return NULL;
  }
  if (!doc.data && buffer_append(&doc, "", 0) != 0) { /* an empty file: "" */
    err_set(err, "%s: out of memory", path);
    return NULL;
  }
  *len = doc.len;
  return doc.data;
}

int cmd_run(int argc, char **argv) {
  const char *model_path = NULL, *job_path = NULL, *backend_name = "auto";
  format_t format = FORMAT_NDJSON;
  int threads = 0, max_rows = 0, weights_dtype = -1;
  double memory_mib = 0;
  static const char *const usage =
      "usage: hydra run --model PATH JOB.json [--format ndjson|table|csv] "
      "[--backend auto|cpu|cuda] [--threads N] [--max-rows N] "
      "[--memory-budget MIB] [--weights-dtype fp32|bf16|native]\n";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-' || strcmp(a, "-") == 0) {
      job_path = a;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return EXIT_OK;
    }
    static const char *const with_value[] = {
        "--model",         "--backend",       "--threads", "--max-rows",
        "--memory-budget", "--weights-dtype", "--format",  NULL};
    int known = 0;
    for (int k = 0; with_value[k]; k++)
      known |= strcmp(a, with_value[k]) == 0;
    if (!known) {
      fprintf(stderr, "hydra run: unknown option %s\n", a);
      return EXIT_USAGE;
    }
    if (!v) {
      fprintf(stderr, "hydra run: %s needs a value\n", a);
      return EXIT_USAGE;
    }
    char *end = NULL;
    const int numeric =
        !strcmp(a, "--threads") || !strcmp(a, "--max-rows") || !strcmp(a, "--memory-budget");
    const double num = numeric ? strtod(v, &end) : 0.0;
    if (numeric && (end == v || *end || !(num >= 0.0 && num <= 1e9) ||
                    (strcmp(a, "--memory-budget") != 0 && num != (double)(long)num))) {
      fprintf(stderr, "hydra run: %s: expected a non-negative %s, got \"%s\"\n", a,
              strcmp(a, "--memory-budget") == 0 ? "number (MiB)" : "integer", v);
      return EXIT_USAGE;
    }
    if (strcmp(a, "--model") == 0)
      model_path = v;
    else if (strcmp(a, "--backend") == 0)
      backend_name = v;
    else if (strcmp(a, "--threads") == 0)
      threads = atoi(v);
    else if (strcmp(a, "--max-rows") == 0)
      max_rows = atoi(v);
    else if (strcmp(a, "--memory-budget") == 0)
      memory_mib = atof(v);
    else if (strcmp(a, "--weights-dtype") == 0) {
      if ((weights_dtype = weights_dtype_parse(v)) < 0) {
        fprintf(stderr, "hydra run: --weights-dtype: expected fp32, bf16 or native\n");
        return EXIT_USAGE;
      }
    } else if (strcmp(a, "--format") == 0) {
      if (strcmp(v, "ndjson") == 0)
        format = FORMAT_NDJSON;
      else if (strcmp(v, "table") == 0)
        format = FORMAT_TABLE;
      else if (strcmp(v, "csv") == 0)
        format = FORMAT_CSV;
      else {
        fprintf(stderr, "hydra run: --format: expected ndjson, table or csv\n");
        return EXIT_USAGE;
      }
    } else {
      fprintf(stderr, "hydra run: unknown option %s\n", a);
      return EXIT_USAGE;
    }
    i++;
  }
  if (!model_path || !job_path) {
    fputs(usage, stderr);
    return EXIT_USAGE;
  }
  char err[4 * HYDRA_ERR_LEN] = "";
  size_t len = 0;
  job_error_t jerr = {0};
  job_spec_t *spec = NULL;
  model_t *m = NULL;
  tokenizer_t *tok = NULL;
  backend_t *b = NULL;
  engine_t *e = NULL;
  results_t *r = NULL;
  plan_t plan = {0};
  run_out_t o = {.format = format,
                 .out = stdout,
                 .summary = json_array(),
                 .clean = json_array(),
                 .tty = isatty(2)};
  int rc = EXIT_FAIL;
  char *doc = read_file(job_path, &len, err);
  if (!doc)
    goto fail;
  char why[2 * HYDRA_ERR_LEN];
  if (!(spec = job_parse(doc, len, &jerr))) {
    snprintf(err, sizeof(err), "%s: %s", job_path,
             json_field_message(why, sizeof(why), jerr.field, jerr.message));
    rc = EXIT_USAGE;
    goto fail;
  }
  if (weights_dtype >= 0 && spec->weights_dtype >= 0 && weights_dtype != spec->weights_dtype) {
    snprintf(err, sizeof(err), "%s: weights_dtype: the job asks for %s weights, --weights-dtype %s",
             job_path, weights_dtype_name(spec->weights_dtype), weights_dtype_name(weights_dtype));
    rc = EXIT_USAGE;
    goto fail;
  }
  if (weights_dtype < 0) /* the job document may ask for it */
    weights_dtype = spec->weights_dtype < 0 ? WEIGHTS_FP32 : spec->weights_dtype;
  if (!(m = model_load_dtype(model_path, weights_dtype, err)))
    goto fail;
  char tok_err[HYDRA_ERR_LEN];
  tok = tokenizer_load(model_path, tok_err); /* optional: ids-only jobs need none */
  if (plan_build(spec, m, tok, &plan, &jerr) != 0) {
    snprintf(err, sizeof(err), "%s: %s%s%s", job_path,
             json_field_message(why, sizeof(why), jerr.field, jerr.message),
             tok ? "" : "; tokenizer: ", tok ? "" : tok_err);
    rc = EXIT_USAGE;
    goto fail;
  }
  if (max_rows > 0)
    plan.job.max_rows = max_rows;
  if (!(b = backend_create(backend_name, threads, err)) || !(e = engine_create(m, b, err)))
    goto fail;
  engine_set_memory_budget(e, (size_t)(memory_mib * 1048576.0));
  const char *slash = strrchr(model_path, '/');
  results_info_t info = {.model_name = spec->model ? spec->model
                                       : slash     ? slash + 1
                                                   : model_path,
                         .backend = b->ops->name,
                         .precision = engine_precision(e, spec->tf32),
                         .norm_scale_ablated = spec->norm_scale_ablated,
                         .spec = spec};
  if (!(r = results_create(&plan, m, tok, &info, emit_row, &o, err)))
    goto fail;
  o.start = clock_monotonic();
  if (results_header(r) != 0) {
    snprintf(err, sizeof(err), "writing the results failed");
    goto fail;
  }
  sink_ctx_t sc = {.r = r, .o = &o, .inner = results_sink(r)};
  engine_sink_t sink = {
      .ctx = &sc, .clean = sink_clean, .variant = sink_variant, .progress = sink_progress};
  if (engine_run(e, &plan.job, &sink, err) != 0)
    goto fail;
  const double elapsed = clock_monotonic() - o.start;
  if (results_finish(r, elapsed) != 0) {
    snprintf(err, sizeof(err), "writing the results failed");
    goto fail;
  }
  if (results_nonfinite(r))
    fprintf(stderr,
            "hydra run: warning: %ld rows hold non-finite values (null, named in each "
            "row's \"nonfinite\"; their means are null)\n",
            results_nonfinite(r));
  if (format == FORMAT_TABLE)
    print_table(&o, elapsed);
  rc = EXIT_OK;
fail:
  if (rc != EXIT_OK)
    fprintf(stderr, "hydra run: %s\n", err);
  json_decref(o.summary);
  json_decref(o.clean);
  json_decref(o.header);
  results_free(r);
  engine_destroy(e);
  backend_destroy(b);
  plan_free(&plan);
  tokenizer_free(tok);
  model_free(m);
  job_free(spec);
  free(doc);
  return rc;
}

/* The per-layer table of result rows read from f (NDJSON); name is for
 * messages. Returns EXIT_OK or EXIT_FAIL. */
int table_from_rows(FILE *f, const char *name, FILE *out) {
  run_out_t o = {
      .format = FORMAT_TABLE, .out = out, .summary = json_array(), .clean = json_array()};
  char *line = NULL;
  size_t cap = 0;
  double elapsed = NAN;
  long lineno = 0;
  int rc = EXIT_OK;
  char ended[300] = ""; /* a failed or cancelled job's end row: how it ended */
  while (getline(&line, &cap, f) > 0) {
    lineno++;
    if (line[0] == '\n')
      continue;
    json_error_t je;
    json_t *row = json_loads(line, 0, &je);
    if (!row) {
      fprintf(stderr, "hydra: %s:%ld: %s\n", name, lineno, je.text);
      rc = EXIT_FAIL;
      break;
    }
    const char *type = json_string_value(json_object_get(row, "type"));
    if (!type) { /* not one of hydra's result rows */
      fprintf(stderr, "hydra: %s:%ld: a result row is a JSON object with a string \"type\"\n", name,
              lineno);
      json_decref(row);
      rc = EXIT_FAIL;
      break;
    }
    if (strcmp(type, "end") == 0) {
      elapsed = json_number_value(json_object_get(row, "elapsed_s"));
      const char *state = json_string_value(json_object_get(row, "state")),
                 *why = json_string_value(json_object_get(row, "error"));
      if (state && strcmp(state, "done") != 0)
        snprintf(ended, sizeof(ended), "%s%s%.200s", state, why && why[0] ? ": " : "",
                 why ? why : "");
      const json_int_t nonfinite = json_integer_value(json_object_get(row, "nonfinite"));
      if (nonfinite > 0)
        fprintf(stderr, "hydra: warning: %s: %lld rows hold non-finite values\n", name,
                (long long)nonfinite);
    }
    emit_row(&o, row);
    json_decref(row);
  }
  free(line);
  if (rc == EXIT_OK && !o.header) {
    fprintf(stderr, "hydra: %s: no header row\n", name);
    rc = EXIT_FAIL;
  }
  if (rc == EXIT_OK) {
    print_table(&o, elapsed);
    if (ended[0]) { /* partial rows: say so, and not as success */
      fprintf(stderr, "hydra: %s: the job %s; its rows stop where it stopped\n", name, ended);
      rc = EXIT_FAIL;
    }
  }
  json_decref(o.summary);
  json_decref(o.clean);
  json_decref(o.header);
  return rc;
}

/* hydra table ROWS.ndjson: the per-layer table of stored result rows (for
 * instance a daemon's results saved with curl). */
int cmd_table(int argc, char **argv) {
  if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
    printf("usage: hydra table ROWS.ndjson (- for standard input)\n");
    return EXIT_OK;
  }
  if (argc != 1) {
    fprintf(stderr, "usage: hydra table ROWS.ndjson (- for standard input)\n");
    return EXIT_USAGE;
  }
  FILE *f = strcmp(argv[0], "-") == 0 ? stdin : fopen(argv[0], "r");
  if (!f) {
    fprintf(stderr, "hydra table: %s: %s\n", argv[0], strerror(errno));
    return EXIT_FAIL;
  }
  const int rc = table_from_rows(f, argv[0], stdout);
  if (f != stdin)
    fclose(f);
  return rc;
}
