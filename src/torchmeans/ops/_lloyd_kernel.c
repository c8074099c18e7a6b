/* The fused CPU step of a Lloyd pass: first-minimum label, label update and weighted sums.
 *
 * Built on first use by torchmeans/ops/_native.py (plain C99 + OpenMP, linked against the
 * OpenMP runtime torch already loaded, so both share one thread pool and threadpoolctl
 * limits apply to both). It runs after torch's GEMM has written a chunk's scores
 * ||c||^2 - 2 x.c and replaces the separate torch ops (minimum, label compare and update,
 * index_add_, bincount) by one pass over the scores and the rows. The torch path in
 * torchmeans/ops/assign.py is the reference: same scores in, same labels out (the first
 * center holding the minimum, as torch's min).
 *
 * scores[i * row_stride + j * center_stride]: score of row i against center j; the layout is
 * (k, rows) (row_stride 1, center_stride rows) or (rows, k) (row_stride k, center_stride 1).
 * x[i * x_stride + f]: the (shifted) rows; weight: per-row weights, or NULL for all 1.
 * labels: previous labels in (any value, e.g. -1, when there are none), new labels out.
 * acc: n_acc blocks of width k*d + k + 2 doubles, zeroed by the caller; thread t adds into
 * block t: sums (k x d) | weights (k) | partial inertia | number of changed labels.
 * incremental: add each moved row to its new cluster and subtract it from its old one
 * (unit weights; rows that stay add only their inertia).
 *
 * The file includes itself once per dtype (T, NAME) below.
 */
#ifndef TM_KERNEL_BODY
#define TM_KERNEL_BODY
#include <stdint.h>
#include <omp.h>

#define BLOCK 256

int tm_max_threads(void) { return omp_get_max_threads(); }

#define T float
#define NAME tm_lloyd_step_f32
#include __FILE__
#undef T
#undef NAME
#define T double
#define NAME tm_lloyd_step_f64
#include __FILE__

#else

void NAME(int64_t n_rows, int64_t k, int64_t d, const T *scores, int64_t row_stride,
          int64_t center_stride, const T *x, int64_t x_stride, const T *weight,
          int64_t *labels, int incremental, double *acc, int n_acc) {
    const int64_t width = k * d + k + 2;
    const int64_t n_blocks = (n_rows + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(n_acc)
    {
        double *sums = acc + omp_get_thread_num() * width;
        double *weights = sums + k * d;
        double inertia = 0.0, changed = 0.0;
        T best[BLOCK];
        int64_t label[BLOCK];
#pragma omp for schedule(static)
        for (int64_t block = 0; block < n_blocks; ++block) {
            const int64_t begin = block * BLOCK;
            const int64_t rows = n_rows - begin < BLOCK ? n_rows - begin : BLOCK;
            const T *s = scores + begin * row_stride;
            if (row_stride == 1) {
                /* (k, rows) layout: a running minimum over centers, vectorised over rows;
                   strict < keeps the first center holding the minimum */
                for (int64_t i = 0; i < rows; ++i) { best[i] = s[i]; label[i] = 0; }
                for (int64_t j = 1; j < k; ++j) {
                    const T *column = s + j * center_stride;
                    for (int64_t i = 0; i < rows; ++i) {
                        const int better = column[i] < best[i];
                        best[i] = better ? column[i] : best[i];
                        label[i] = better ? j : label[i];
                    }
                }
            } else {
                /* (rows, k) layout (center_stride 1): the minimum of each row, vectorised,
                   then the first index holding it */
                for (int64_t i = 0; i < rows; ++i) {
                    const T *row = s + i * row_stride;
                    T minimum = row[0];
#pragma omp simd reduction(min : minimum)
                    for (int64_t j = 1; j < k; ++j) minimum = row[j] < minimum ? row[j] : minimum;
                    /* skip whole blocks of 16 without a hit (vectorised), then scan one */
                    int64_t first = 0;
                    for (; first + 16 <= k; first += 16) {
                        int hit = 0;
#pragma omp simd reduction(| : hit)
                        for (int64_t j = first; j < first + 16; ++j) hit |= row[j] == minimum;
                        if (hit) break;
                    }
                    while (first < k - 1 && !(row[first] == minimum)) ++first;
                    best[i] = minimum;
                    label[i] = first;
                }
            }
            for (int64_t i = 0; i < rows; ++i) {
                const int64_t row = begin + i, new_label = label[i], old_label = labels[row];
                const double w = weight ? (double)weight[row] : 1.0;
                const T *xi = x + row * x_stride;
                inertia += w * (double)best[i];
                if (old_label != new_label) {
                    changed += 1.0;
                    labels[row] = new_label;
                }
                if (!incremental) {
                    double *to = sums + new_label * d;
                    for (int64_t f = 0; f < d; ++f) to[f] += w * (double)xi[f];
                    weights[new_label] += w;
                } else if (old_label != new_label) {
                    double *to = sums + new_label * d, *from = sums + old_label * d;
                    for (int64_t f = 0; f < d; ++f) {
                        to[f] += (double)xi[f];
                        from[f] -= (double)xi[f];
                    }
                    weights[new_label] += 1.0;
                    weights[old_label] -= 1.0;
                }
            }
        }
        weights[k] += inertia;
        weights[k + 1] += changed;
    }
}

#endif
