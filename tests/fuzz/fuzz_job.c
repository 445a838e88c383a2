/* fuzz_job - the job document parser on arbitrary bytes: it must accept or
 * reject with a field path and a message, never crash or leak; an accepted
 * document must expand its components and groups against a model shape. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  job_error_t err;
  job_spec_t *spec = job_parse((const char *)data, size, &err);
  if (!spec) {
    if (!err.message[0])
      abort(); /* a rejection must say why */
    return 0;
  }
  model_config_t cfg = {.n_layers = 4,
                        .n_heads = 4,
                        .n_kv_heads = 2,
                        .head_dim = 8,
                        .d_model = 32,
                        .d_mlp = 64,
                        .vocab_size = 100};
  component_t *comps = NULL;
  int n = 0;
  if (job_expand_components(spec, &cfg, &comps, &n, &err) == 0)
    free(comps);
  for (int g = 0; g < spec->n_groups; g++) { /* each group's components, as a plan expands them */
    comps = NULL;
    if (job_expand_group(spec, g, &cfg, &comps, &n, &err) == 0)
      free(comps);
  }
  job_free(spec);
  return 0;
}
