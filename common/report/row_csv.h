/* row_csv.h - result rows (results.h) as CSV: the one CSV formatter of
 * hydrad's ?format=csv streams and `hydra run --format csv`.
 *
 * Columns: prompt, position (a "target": "next" readout's; empty
 * otherwise), component, method, samples, the variant's numbers
 * (total_effect ... logit_diff; empty where a row has none or null), then
 * one effect_SLOT column per slot of the header, then type ("variant" or
 * "clean"), and a clean row's target_token, logit (its centred target
 * logit) and text (the prompt as the job gave it; empty for token ids).
 * The header row gives the header line, each variant and clean row one line
 * (a clean row's component, method, samples and effect columns empty);
 * summary and end rows give none. Text fields are quoted as RFC 4180 says
 * where they hold a comma, a quote or a line break. Numbers as %.9g. */
#ifndef HYDRA_ROW_CSV_H
#define HYDRA_ROW_CSV_H

#include <jansson.h>

#include "buffer.h"

/* Appends row's CSV line (if it has one) to out. 0, or -1 out of memory. */
int row_csv(const json_t *row, buffer_t *out);

#endif
