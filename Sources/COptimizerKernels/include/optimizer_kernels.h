#ifndef EMBEDPS_OPTIMIZER_KERNELS_H
#define EMBEDPS_OPTIMIZER_KERNELS_H

/// The per-row arithmetic of the server-side optimizers (`SparseOptimizer` in the Engine module documents
/// the formulas and the row layout). Each pointer covers `dim` floats and no two of them overlap (a row's
/// weights and state slots are consecutive, disjoint ranges; the gradient is the request's). Compiled
/// with vectorisation and without FP contraction or errno: each column gets exactly the IEEE operations of
/// the formula, in its order, so results do not depend on how many columns a vector holds.

void embedps_sgd(float *restrict w, const float *restrict g, long dim, float lr);
void embedps_adagrad(float *restrict w, float *restrict a, const float *restrict g, long dim, float lr, float eps);
void embedps_adam(float *restrict w, float *restrict m, float *restrict v, const float *restrict g, long dim,
                  float lr, float b1, float b2, float eps, float c1, float c2);
void embedps_ftrl(float *restrict w, float *restrict z, float *restrict n, const float *restrict g, long dim,
                  float lr, float l1, float l2, float beta);

#endif
