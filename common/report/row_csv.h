/* row_csv.h - result rows (results.h) as CSV: the one CSV formatter of
 * hydrad's ?format=csv streams and `hydra run --format csv`.
 *
 * Columns: prompt, position (a "target": "next" readout's; empty
 * otherwise), component, method, samples, the variant's numbers
 * (total_effect ... logit_diff; empty where a row has none or null), then
 * one effect_SLOT column per slot of the header. The header row gives the
 * header line, each variant row one line; other rows give none. Numbers as
 * %.9g. */
#ifndef HYDRA_ROW_CSV_H
#define HYDRA_ROW_CSV_H

#include <jansson.h>

#include "buffer.h"

/* Appends row's CSV line (if it has one) to out. 0, or -1 out of memory. */
int row_csv(const json_t *row, buffer_t *out);

#endif
