#include "optimizer_kernels.h"
#include <math.h>

void embedps_sgd(float *restrict w, const float *restrict g, long dim, float lr) {
    for (long j = 0; j < dim; j++) w[j] -= lr * g[j];
}

void embedps_adagrad(float *restrict w, float *restrict a, const float *restrict g, long dim, float lr, float eps) {
    for (long j = 0; j < dim; j++) {
        float an = a[j] + g[j] * g[j];
        a[j] = an;
        w[j] -= lr * g[j] / (sqrtf(an) + eps);
    }
}

void embedps_adam(float *restrict w, float *restrict m, float *restrict v, const float *restrict g, long dim,
                  float lr, float b1, float b2, float eps, float c1, float c2) {
    for (long j = 0; j < dim; j++) {
        float mn = b1 * m[j] + (1 - b1) * g[j];
        float vn = b2 * v[j] + (1 - b2) * g[j] * g[j];
        m[j] = mn;
        v[j] = vn;
        w[j] -= lr * (mn / c1) / (sqrtf(vn / c2) + eps);
    }
}

void embedps_ftrl(float *restrict w, float *restrict z, float *restrict n, const float *restrict g, long dim,
                  float lr, float l1, float l2, float beta) {
    for (long j = 0; j < dim; j++) {
        float nNew = n[j] + g[j] * g[j];
        float sigma = (sqrtf(nNew) - sqrtf(n[j])) / lr;
        float zj = z[j] + (g[j] - sigma * w[j]);
        z[j] = zj;
        n[j] = nNew;
        float sign = zj < 0 ? -1.0f : 1.0f;
        float shrunk = -(zj - sign * l1) / ((beta + sqrtf(nNew)) / lr + l2);
        w[j] = fabsf(zj) <= l1 ? 0.0f : shrunk;
    }
}
