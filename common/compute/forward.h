/* forward.h - the forward pass of a model on a backend.
 *
 * A forward_t holds a model's weights in the backend's memory (uploaded once;
 * fp32 weights used in place on a host-memory backend) and work buffers that grow to the
 * largest batch seen and are reused. One thread at a time. */
#ifndef HYDRA_FORWARD_H
#define HYDRA_FORWARD_H

#include "backend.h"
#include "model.h"

typedef struct forward forward_t;

/* A batch of sequences of different lengths, concatenated: row r of the batch
 * is one token of one sequence. */
typedef struct {
  int n_seqs;
  const int *lengths; /* [n_seqs], each >= 1 */
  const int *ids;     /* [sum of lengths] */
} forward_batch_t;

/* What to bring back to the host; every pointer is optional (NULL: not
 * wanted) and caller-owned. */
typedef struct {
  const int *logit_rows; /* rows whose logits are wanted; NULL: every row */
  int n_logit_rows;
  float *logits;          /* [n_logit_rows (or every row), vocab_size] */
  float *residuals;       /* [n_layers + 1, rows, d_model]: each layer's input, then the
                             residual that enters the final norm */
  float *final_inv_scale; /* [rows]: 1 / scale of the final norm (frozen for direct effects) */
} forward_out_t;

/* The model must outlive the forward_t (a host-memory backend reads its
 * weights in place). */
forward_t *forward_create(const model_t *m, backend_t *b, char *err);
void forward_destroy(forward_t *f);

/* Runs the batch. Fails (err names the sequence and token) on an id outside
 * the vocabulary or a sequence longer than the model's context. */
int forward_run(forward_t *f, const forward_batch_t *batch, forward_out_t *out, char *err);

/* The model as the backend holds it: the same description, every array in
 * backend memory. Valid until forward_destroy. For a bf16 model
 * (model_t.weights_dtype) the projection matrices (wq wk wv wo w_up w_gate
 * w_down, unembed) point at bf16 data: pass them only to forward_matmul. */
const model_t *forward_weights(const forward_t *f);

/* y[rows, out] = x[rows, in] . w[out, in]^T (+ bias) for w one of
 * forward_weights(f)'s projection matrices, in the dtype they are held in
 * (backend ops matmul or matmul_bf16). */
int forward_matmul(forward_t *f, float *y, const float *x, const float *w, const float *bias,
                   int rows, int out, int in, int accumulate);

/* Total rows of a batch, or -1 when a length is < 1. */
long forward_batch_rows(const forward_batch_t *batch);

#endif
