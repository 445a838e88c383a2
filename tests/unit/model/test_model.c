/* test_model - the block description's check: a valid description passes,
 * and every choice the transformer does not compute (or no reference has
 * checked yet) is refused by model_config_check naming its field, so no
 * loader can produce a model that loads and computes something else. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "model.h"

static model_config_t valid(void) {
  model_config_t c = {.n_layers = 2,
                      .d_model = 16,
                      .n_heads = 4,
                      .n_kv_heads = 2,
                      .head_dim = 4,
                      .d_mlp = 32,
                      .vocab_size = 50,
                      .max_positions = 64,
                      .norm = NORM_RMSNORM,
                      .norm_eps = 1e-5f,
                      .positions = POSITIONS_ROPE,
                      .rope_theta = 10000.0f,
                      .rotary_dim = 4,
                      .mlp = MLP_SWIGLU,
                      .activation = ACT_SILU};
  return c;
}

static void refused(model_config_t c, const char *field) {
  char err[HYDRA_ERR_LEN] = "";
  CHECK(model_config_check(&c, err) != 0 && strstr(err, field) != NULL,
        "a description with %s is refused naming it (got \"%s\")", field, err);
}

int main(void) {
  char err[HYDRA_ERR_LEN] = "";
  model_config_t c = valid();
  CHECK(model_config_check(&c, err) == 0, "a valid description passes (got \"%s\")", err);
  c.embed_scale = 1.0f;
  CHECK(model_config_check(&c, err) == 0, "embed_scale 1 is no scale (got \"%s\")", err);

  c = valid();
  c.rope_pairs = ROPE_ADJACENT;
  refused(c, "rope_pairs");
  c = valid(); /* Gemma's choices, computed and checked by their goldens */
  c.mlp = MLP_GEGLU;
  c.activation = ACT_GELU_TANH;
  c.embed_scale = 4.0f;
  c.attn_scale = 0.25f;
  c.attn_softcap = 50.0f;
  c.final_softcap = 30.0f;
  c.sliding_window = 16;
  c.sliding_period = 2;
  c.rope_local_theta = 10000.0f;
  CHECK(model_config_check(&c, err) == 0, "Gemma's choices pass (got \"%s\")", err);
  CHECK(model_layer_slides(&c, 0) && !model_layer_slides(&c, 1) && model_layer_slides(&c, 2),
        "sliding_period 2: layers 0 and 2 slide, 1 does not");
  c.activation = ACT_SILU;
  refused(c, "mlp");
  c = valid();
  c.sliding_window = -1;
  refused(c, "sliding_window");
  c = valid();
  c.final_softcap = -30.0f;
  refused(c, "final_softcap");
  c = valid();
  c.attn_softcap = NAN;
  refused(c, "attn_softcap");
  c = valid();
  c.post_norms = 1; /* with pre norms: Gemma 2/3's block */
  CHECK(model_config_check(&c, err) == 0, "pre and post norms pass (got \"%s\")", err);
  c.no_pre_norms = 1; /* OLMo-2's block */
  c.qk_norm = QK_NORM_WHOLE;
  CHECK(model_config_check(&c, err) == 0, "post norms without pre norms pass (got \"%s\")", err);
  c.norm = NORM_LAYERNORM;
  refused(c, "qk_norm");
  c = valid();
  c.no_pre_norms = 1;
  c.parallel_residual = 1;
  refused(c, "no_pre_norms");
  return check_exit("test_model");
}
