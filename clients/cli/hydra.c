/* hydra - the command-line client: jobs on a hydrad server (models,
 * tokenize, submit, status, results, cancel, jobs, check), local runs (run,
 * table, info, forward). */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "buffer.h"
#include "checkpoint.h"
#include "cli.h"
#include "clock.h"
#include "forward.h"
#include "model.h"
#include "tokenizer.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage:\n"
          "  on a hydrad server (--url URL --token TOKEN, or $HYDRA_URL, $HYDRA_TOKEN):\n"
          "  hydra models [NAME]\n"
          "  hydra tokenize MODEL TEXT\n"
          "  hydra submit JOB.json [--follow [--format table|csv|ndjson]]\n"
          "  hydra status ID           (an ID, or a unique prefix of 6 or more of its digits)\n"
          "  hydra results ID [--format table|csv|ndjson] [--after N]\n"
          "  hydra cancel ID\n"
          "  hydra retry ID            (a failed job, from its first pending unit)\n"
          "  hydra jobs [--name NAME] [--label KEY[=VALUE]] [--state STATE]\n"
          "  hydra check --baseline BASE.json JOB.json [--rtol R] [--atol A] [--junit OUT.xml]\n"
          "  hydra check --write-baseline --baseline BASE.json JOB.json\n"
          "  locally:\n"
          "  hydra run --model PATH JOB.json [--format ndjson|table|csv]\n"
          "            [--backend auto|cpu|cuda] [--threads N] [--max-rows N]\n"
          "            [--memory-budget MIB] [--weights-dtype fp32|bf16|native]\n"
          "  hydra table ROWS.ndjson   (the per-layer table of saved result rows)\n"
          "  hydra info [--model] PATH\n"
          "  hydra forward --model PATH --ids ID,ID,... [--top N] [--backend auto|cpu|cuda]\n"
          "                [--threads N] [--weights-dtype fp32|bf16|native]\n"
          "PATH is a GGUF file or a directory with config.json and model.safetensors.\n"
          "every command takes --help.\n"
          "exit codes: 0 ok, 1 failure or drift (check), 2 usage, a bad job or an unknown job\n"
          "id or model, 3 server or connection, 130 Ctrl-C while following (the job runs on)\n");
}

static int parse_ids(const char *s, int **ids, int *n) {
  size_t cap = 0;
  *n = 0;
  *ids = NULL;
  while (*s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno || v < 0 || v > 1 << 30)
      return -1;
    if (buffer_grow((void **)ids, &cap, (size_t)*n + 1, sizeof(int)) != 0)
      return -1;
    (*ids)[(*n)++] = (int)v;
    s = end;
    if (*s == ',')
      s++;
    else if (*s)
      return -1;
  }
  return *n > 0 ? 0 : -1;
}

static const char *activation_name(activation_t a) {
  return a == ACT_GELU_TANH  ? "GELU (tanh)"
         : a == ACT_GELU_ERF ? "GELU (erf)"
         : a == ACT_RELU     ? "ReLU"
                             : "SiLU";
}

static void print_rope(const model_config_t *c) {
  static const char *scaling[] = {"no scaling", "linear scaling", "llama3 scaling", "yarn scaling",
                                  "longrope (short factors)"};
  printf("positions    RoPE theta %g, %d of %d dims (%s), %s", (double)c->rope_theta, c->rotary_dim,
         c->head_dim, c->rope_pairs == ROPE_HALVES ? "halves" : "adjacent pairs",
         scaling[c->rope_scaling]);
  if (c->rope_scaling != ROPE_SCALING_NONE)
    printf(" factor %g", (double)c->rope_factor);
  if (c->rope_scaling == ROPE_SCALING_LLAMA3)
    printf(", low/high freq factors %g/%g", (double)c->rope_low_freq_factor,
           (double)c->rope_high_freq_factor);
  if (c->rope_scaling == ROPE_SCALING_YARN)
    printf(", beta fast/slow %g/%g", (double)c->rope_beta_fast, (double)c->rope_beta_slow);
  if (c->rope_scaling == ROPE_SCALING_YARN || c->rope_scaling == ROPE_SCALING_LONGROPE)
    printf(", attention factor %g", (double)c->rope_attn_factor);
  if (c->rope_scaling != ROPE_SCALING_NONE && c->rope_scaling != ROPE_SCALING_LINEAR)
    printf(", original context %d", c->rope_original_max_positions);
  if (c->rope_n_freq_factors) { /* a GGUF's rope_freqs.weight */
    printf(", frequencies divided by");
    for (int i = 0; i < c->rope_n_freq_factors && i < 8; i++)
      printf(" %g", (double)c->rope_freq_factors[i]);
    printf("%s", c->rope_n_freq_factors > 8 ? " ..." : "");
  }
  printf("\n");
}

/* What --weights-dtype native does with each type of a GGUF file's
 * matrices (layer projections, token embedding, unembedding): one of a type
 * the backends multiply in blocks stays in them, any other is dequantised
 * to fp32 at load; norms and biases are fp32 either way. */
static void print_native_types(const model_t *m) {
  char kept[128] = "", loaded[128] = "", list[128];
  snprintf(list, sizeof(list), "%s", m->matrix_types);
  for (char *save = NULL, *name = strtok_r(list, ",", &save); name;
       name = strtok_r(NULL, ",", &save)) {
    uint32_t t = 0;
    while (t < 64 && !(gguf_tensor_type_name(t) && strcmp(gguf_tensor_type_name(t), name) == 0))
      t++;
    char *into = model_native_type(t) ? kept : loaded;
    size_t at = strlen(into);
    snprintf(into + at, 128 - at, "%s%s", at ? "," : "", name);
  }
  printf("native       --weights-dtype native: matrices in %s kept in their blocks%s%s%s\n",
         kept[0] ? kept : "(none)", loaded[0] ? "; in " : "", loaded,
         loaded[0] ? " dequantised to fp32 at load" : "");
  const char *how[] = {"dequantised to fp32 at load", "kept in its blocks"};
  printf("native       token embedding (%s) %s; unembedding (%s%s) %s\n",
         gguf_tensor_type_name(m->embed_type), how[model_native_type(m->embed_type)],
         m->cfg.tied_unembed ? "tied, " : "", gguf_tensor_type_name(m->unembed_type),
         how[model_native_type(m->unembed_type)]);
}

/* The block description as the loader read it: every choice of the family. */
static void print_info(const model_t *m) {
  const model_config_t *c = &m->cfg;
  static const char *mlp_names[] = {"plain", "SwiGLU", "GeGLU"};
  printf("model        %s\n", m->path);
  printf("format       %s (tensor types %s)\n", m->weights_format, m->tensor_types);
  if (strcmp(m->weights_format, "gguf") == 0)
    print_native_types(m);
  printf("weights      %s (as info loads it; runs choose with --weights-dtype)\n",
         weights_dtype_name(m->weights_dtype));
  printf("family       %s\n", c->family);
  printf("layers       %d\n", c->n_layers);
  printf("d_model      %d\n", c->d_model);
  printf("heads        %d (kv %d, head_dim %d)\n", c->n_heads, c->n_kv_heads, c->head_dim);
  printf("d_mlp        %d (%s MLP, %s%s)\n", c->d_mlp, mlp_names[c->mlp],
         activation_name(c->activation), c->mlp_bias ? ", biases" : "");
  printf("vocab        %d\n", c->vocab_size);
  printf("context      %d\n", c->max_positions);
  printf("norm         %s eps %g%s%s%s%s%s\n", c->norm == NORM_RMSNORM ? "RMSNorm" : "LayerNorm",
         (double)c->norm_eps, c->no_pre_norms ? ", no pre norms" : "",
         c->post_norms ? ", post norms" : "",
         c->post_residual_norms ? ", after each residual add (none before the sublayers)" : "",
         c->no_final_norm ? ", no final norm" : "",
         c->qk_norm == QK_NORM_PER_HEAD ? ", q/k norms per head"
         : c->qk_norm == QK_NORM_WHOLE  ? ", q/k norms over the whole projections"
         : c->qk_norm == QK_NORM_LAYERNORM_HEADS
             ? (c->qk_norm_bias ? ", q/k LayerNorms over each head, with biases"
                                : ", q/k LayerNorms over each head, without biases")
             : "");
  if (c->residual_scale != 0.0f && c->residual_scale != 1.0f)
    printf("sublayers    outputs scaled by %g before the residual add\n",
           (double)c->residual_scale);
  printf("residual     %s\n", c->parallel_residual ? "parallel (attention and MLP read the "
                                                     "layer input)"
                                                   : "sequential");
  printf("attention    biases %s%s%s\n", c->qkv_bias ? "q, k, v" : "",
         c->qkv_bias && c->o_bias ? ", " : "",
         c->o_bias     ? "o"
         : c->qkv_bias ? ""
                       : "none");
  if (c->attn_scale > 0.0f)
    printf("scores       q.k * %g\n", (double)c->attn_scale);
  if (c->attn_softcap > 0.0f)
    printf("soft-cap     attention scores at %g\n", (double)c->attn_softcap);
  if (c->sliding_window > 0) {
    printf("window       %d keys on ", c->sliding_window);
    if (c->sliding_period > 1)
      printf("layers L with L + 1 not a multiple of %d", c->sliding_period);
    else
      printf(c->sliding_first_layer > 0 ? "every layer" : "every layer\n");
    if (c->sliding_first_layer == 1)
      printf(" from layer 1 on (layer 0 attends over every key)\n");
    else if (c->sliding_first_layer > 1)
      printf(" from layer %d on (layers 0 to %d attend over every key)\n", c->sliding_first_layer,
             c->sliding_first_layer - 1);
    else if (c->sliding_period > 1)
      printf("\n");
  }
  if (c->positions == POSITIONS_ROPE) {
    print_rope(c);
    if (c->rope_local_theta > 0.0f)
      printf("local rotary theta %g on sliding layers (unscaled)\n", (double)c->rope_local_theta);
  } else if (c->positions == POSITIONS_LEARNED)
    printf("positions    learned\n");
  else
    printf("positions    none\n");
  if (c->embed_proj_dim)
    printf("embeddings   %d wide: projected up to d_model after the lookup, the last residual "
           "projected down before the unembedding (no biases)\n",
           c->embed_proj_dim);
  if (c->embed_scale != 0.0f && c->embed_scale != 1.0f)
    printf("embeddings   scaled by %g\n", (double)c->embed_scale);
  printf("unembedding  %s%s\n", c->tied_unembed ? "tied" : "untied",
         c->unembed_bias ? ", with a bias" : "");
  if (c->final_softcap > 0.0f)
    printf("soft-cap     final logits at %g (effects on the pre-cap logits)\n",
           (double)c->final_softcap);
  printf("parameters   %zu\n", model_n_params(m));
  uint64_t held, mapped;
  model_memory(m, &held, &mapped);
  const double mib = 1024.0 * 1024.0;
  if (m->weights_dtype == WEIGHTS_NATIVE)
    printf("memory       %.1f MiB held, %.1f MiB of blocks used in place from the mapped file "
           "(fp32 weights: %.1f MiB)\n",
           (double)held / mib, (double)mapped / mib,
           (double)model_n_params(m) * sizeof(float) / mib);
  else
    printf("memory       %.1f MiB held\n", (double)held / mib);
}

/* A token's text as a JSON string (quotes, escapes: a space or a newline
 * shows), or its vocabulary piece where the text is not valid UTF-8 on its
 * own; "?" without a tokenizer. buf of 64 bytes. */
static const char *token_shown(const tokenizer_t *tok, int id, char *buf) {
  size_t len = 0;
  const char *text = tok ? tokenizer_token_text(tok, id, &len) : NULL;
  json_t *s = text ? json_stringn(text, len) : NULL; /* NULL: not valid UTF-8 */
  if (!s && tok && (text = tokenizer_token_piece(tok, id, &len)))
    s = json_stringn(text, len);
  char *shown = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
  snprintf(buf, 64, "%s", shown ? shown : "?");
  free(shown);
  json_decref(s);
  return buf;
}

static int cmd_forward(const char *model_path, const char *ids_arg, int top, const char *backend,
                       int threads, int dtype) {
  char err[HYDRA_ERR_LEN] = "";
  int *ids = NULL, n = 0, rc = EXIT_FAIL;
  model_t *m = NULL;
  tokenizer_t *tok = NULL;
  backend_t *b = NULL;
  forward_t *f = NULL;
  float *logits = NULL;
  char shown[64], tok_err[HYDRA_ERR_LEN];
  if (parse_ids(ids_arg, &ids, &n) != 0) {
    fprintf(stderr, "hydra: --ids: expected comma-separated non-negative token ids\n");
    free(ids);
    return EXIT_USAGE;
  }
  if (!(m = model_load_dtype(model_path, dtype, err)) ||
      !(b = backend_create(backend, threads, err)) || !(f = forward_create(m, b, err)))
    goto fail;
  tok = tokenizer_load(model_path, tok_err); /* optional: ids print without strings */
  const int vocab = m->cfg.vocab_size, last = n - 1;
  logits = malloc((size_t)vocab * sizeof(float));
  if (!logits) {
    snprintf(err, sizeof(err), "out of memory");
    goto fail;
  }
  forward_batch_t batch = {.n_seqs = 1, .lengths = &n, .ids = ids};
  forward_out_t out = {.logit_rows = &last, .n_logit_rows = 1, .logits = logits};
  const double t0 = clock_monotonic();
  if (forward_run(f, &batch, &out, err) != 0)
    goto fail;
  const double ms = (clock_monotonic() - t0) * 1e3;
  printf("model %s (%s, %d layers), backend %s, %d tokens, %.1f ms\n", model_path, m->cfg.family,
         m->cfg.n_layers, b->ops->name, n, ms);
  printf("input:");
  for (int i = 0; i < n; i++)
    printf(" %d %s", ids[i], token_shown(tok, ids[i], shown));
  printf("\n");
  if (!tok)
    printf("(no tokenizer: %s)\n", tok_err);
  printf("top %d next tokens after the last position:\n  rank  token_id     logit  token\n", top);
  for (int k = 0; k < top && k < vocab; k++) {
    int best = -1;
    for (int i = 0; i < vocab; i++)
      if (logits[i] == logits[i] && (best < 0 || logits[i] > logits[best]))
        best = i;
    if (best < 0)
      break;
    printf("  %4d  %8d  %8.4f  %s\n", k + 1, best, (double)logits[best],
           token_shown(tok, best, shown));
    logits[best] = -__builtin_inff();
  }
  rc = EXIT_OK;
fail:
  if (rc != EXIT_OK)
    fprintf(stderr, "hydra: %s\n", err);
  free(logits);
  forward_destroy(f);
  backend_destroy(b);
  tokenizer_free(tok);
  model_free(m);
  free(ids);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "run") == 0)
    return cmd_run(argc - 2, argv + 2);
  if (strcmp(argv[1], "table") == 0)
    return cmd_table(argc - 2, argv + 2);
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } remote[] = {{"models", cmd_models}, {"tokenize", cmd_tokenize}, {"submit", cmd_submit},
                {"status", cmd_status}, {"results", cmd_results},   {"cancel", cmd_cancel},
                {"retry", cmd_retry},   {"jobs", cmd_jobs},         {"check", cmd_check}};
  for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++)
    if (strcmp(argv[1], remote[i].name) == 0) {
      curl_global_init(CURL_GLOBAL_DEFAULT);
      const int rc = remote[i].fn(argc - 2, argv + 2);
      curl_global_cleanup();
      return rc;
    }
  const char *cmd = argv[1], *model = NULL, *ids = NULL, *backend = "auto";
  int top = 10, threads = 0, dtype = -1;
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return EXIT_OK;
  }
  if (strcmp(cmd, "info") != 0 && strcmp(cmd, "forward") != 0) { /* before its options */
    fprintf(stderr, "hydra: unknown command %s\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return EXIT_OK;
    }
    if (a[0] != '-' && !model) { /* `hydra info PATH`, as `hydra info --model PATH` */
      model = a;
      continue;
    }
    if (a[0] != '-') {
      fprintf(stderr, "hydra: unexpected argument %s (the model is %s)\n", a, model);
      return EXIT_USAGE;
    }
    if (!val) {
      fprintf(stderr, "hydra: %s needs a value\n", a);
      return EXIT_USAGE;
    }
    if (strcmp(a, "--model") == 0)
      model = val;
    else if (strcmp(a, "--ids") == 0)
      ids = val;
    else if (strcmp(a, "--backend") == 0)
      backend = val;
    else if (strcmp(a, "--top") == 0)
      top = atoi(val);
    else if (strcmp(a, "--threads") == 0)
      threads = atoi(val);
    else if (strcmp(a, "--weights-dtype") == 0 && (dtype = weights_dtype_parse(val)) < 0) {
      fprintf(stderr, "hydra: --weights-dtype: expected fp32, bf16 or native\n");
      return EXIT_USAGE;
    } else if (strcmp(a, "--weights-dtype") != 0) {
      fprintf(stderr, "hydra: unknown option %s\n", a);
      usage(stderr);
      return EXIT_USAGE;
    }
    i++;
  }
  if (!model) {
    fprintf(stderr, "hydra: --model is required\n");
    return EXIT_USAGE;
  }
  if (strcmp(cmd, "info") == 0 && dtype >= 0) {
    fprintf(stderr, "hydra info: --weights-dtype: info reads a GGUF file's blocks as they are "
                    "(it says what each dtype would do)\n");
    return EXIT_USAGE;
  }
  if (strcmp(cmd, "info") == 0) {
    /* a GGUF file's blocks as they are (the file mapped, nothing dequantised
     * but what native cannot keep): an 8B file's description needs no 32 GB */
    char err[HYDRA_ERR_LEN];
    model_t *m = model_load_dtype(model, WEIGHTS_NATIVE, err);
    if (!m)
      m = model_load(model, err);
    if (!m) {
      fprintf(stderr, "hydra: %s\n", err);
      return EXIT_FAIL;
    }
    print_info(m);
    model_free(m);
    return EXIT_OK;
  }
  if (strcmp(cmd, "forward") == 0) {
    if (!ids) {
      fprintf(stderr, "hydra: forward needs --ids\n");
      return EXIT_USAGE;
    }
    if (top < 1)
      top = 1;
    return cmd_forward(model, ids, top, backend, threads, dtype < 0 ? WEIGHTS_FP32 : dtype);
  }
  fprintf(stderr, "hydra: unknown command %s\n", cmd);
  usage(stderr);
  return EXIT_USAGE;
}
