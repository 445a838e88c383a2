/* test_row_csv - the one CSV formatter of result rows (row_csv.h) against
 * lines written by hand from README's "Result rows": the header line from a
 * header row's slots, a variant line with a null, a missing metric and a
 * "next" readout's position, clean lines with their prompt text (quoted as
 * RFC 4180 says), nothing for summary and end rows. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "row_csv.h"

static void expect(const char *json, const char *want) {
  json_error_t je;
  json_t *row = json_loads(json, 0, &je);
  buffer_t out = {0};
  CHECK(row, "row %s: %s", json, je.text);
  const int rc = row ? row_csv(row, &out) : -1;
  const char *got = out.len ? out.data : "";
  CHECK(rc == 0 && out.len == strlen(want) && memcmp(got, want, out.len) == 0,
        "row %s:\n got  '%.*s'\n want '%s'", json, (int)out.len, got, want);
  buffer_free(&out);
  json_decref(row);
}

int main(void) {
  expect("{\"type\":\"header\",\"slots\":[\"embed\",\"attn.0\",\"mlp.0\"]}",
         "prompt,position,component,method,samples,total_effect,direct_effect,compensation,"
         "compensation_attn,compensation_mlp,norm_share,ablated_logit,inv_scale,logprob,prob,kl,"
         "rank,logit_diff,effect_embed,effect_attn.0,effect_mlp.0,type,target_token,logit,text\n");
  expect("{\"type\":\"variant\",\"prompt\":2,\"component\":\"mlp.0\",\"method\":\"resample\","
         "\"samples\":15,\"total_effect\":0.125,\"direct_effect\":-1.5e-07,\"compensation\":null,"
         "\"compensation_attn\":1,\"compensation_mlp\":2.5,\"norm_share\":0,\"ablated_logit\":"
         "12.345678901234,\"inv_scale\":0.5,\"rank\":3,\"effects\":[0.1,null,-2]}",
         "2,,mlp.0,resample,15,0.125,-1.5e-07,,1,2.5,0,12.3456789,0.5,,,,3,,0.1,,-2,variant,,,\n");
  expect("{\"type\":\"variant\",\"prompt\":0,\"position\":7,\"component\":\"attn.1\",\"method\":"
         "\"zero\",\"samples\":1,\"kl\":0.001,\"effects\":[]}",
         "0,7,attn.1,zero,1,,,,,,,,,,,0.001,,,variant,,,\n");
  /* a clean row: the prompt text quoted where it holds a comma, a quote or a line break */
  expect("{\"type\":\"clean\",\"prompt\":1,\"target\":5,\"target_token\":\" Paris\",\"logit\":"
         "7.25,\"inv_scale\":0.5,\"prob\":0.25,\"text\":\"He said \\\"hi\\\", then\\nleft\","
         "\"direct_effects\":[1,2,3]}",
         "1,,,,,,,,,,,,0.5,,0.25,,,,,,,clean, Paris,7.25,\"He said \"\"hi\"\", then\nleft\"\n");
  expect("{\"type\":\"clean\",\"prompt\":0,\"position\":3,\"target_token\":\"a,b\",\"logit\":"
         "null,\"text\":null,\"direct_effects\":[]}",
         "0,3,,,,,,,,,,,,,,,,,clean,\"a,b\",,\n");
  expect("{\"type\":\"summary\",\"component\":\"attn.0\"}", "");
  expect("{\"type\":\"end\",\"rows\":9}", "");
  return check_exit("test_row_csv");
}
