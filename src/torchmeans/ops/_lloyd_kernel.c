/* The fused CPU step of a Lloyd pass: first-minimum label, label update and weighted sums.
 *
 * Built on first use by torchmeans/ops/_native.py (plain C99 + OpenMP, linked against the
 * OpenMP runtime torch already loaded, so both share one thread pool and threadpoolctl
 * limits apply to both). Two entry points per dtype:
 *
 * - tm_lloyd_step_*: runs after torch's GEMM has written a chunk's scores ||c||^2 - 2 x.c
 *   and replaces the separate torch ops (minimum, label compare and update, index_add_,
 *   bincount) by one pass over the scores and the rows. Same scores in, same labels out as
 *   the torch path in torchmeans/ops/assign.py (the first center holding the minimum).
 * - tm_lloyd_direct_*: for few features (d <= DIRECT_MAX_FEATURES), computes the scores
 *   itself, block by block in registers and L1, so no rows x k score block ever reaches
 *   memory; at 1M x 8, k=16 that block is twice the size of the data and writing it was
 *   most of a pass. Each score is summed as a BLAS kernel sums it: the dot product x.c as
 *   a chain of fused multiply-adds over the features in order, then ||c||^2 - 2 (x.c) with
 *   one rounding (2 (x.c) is exact), so it matches torch's GEMM to the bit wherever that
 *   GEMM does the same (tests/test_native.py checks it on this machine's BLAS). Labels
 *   for predict come from the same kernel (torchmeans/ops/assign.py), so a fit's labels_
 *   equal predict's whichever way a float near-tie falls.
 *
 * scores[i * row_stride + j * center_stride]: score of row i against center j; the layout is
 * (k, rows) (row_stride 1, center_stride rows) or (rows, k) (row_stride k, center_stride 1).
 * x[i * x_stride + f]: the (shifted) rows; weight: per-row weights, or NULL for all 1.
 * centers (direct): (k, d) contiguous; sq_norms: their squared norms, as torch computes them.
 * labels: previous labels in (any value, e.g. -1, when there are none), new labels out.
 * acc: n_acc blocks of width k*d + k + 2 doubles, zeroed by the caller; thread t adds into
 * block t: sums (k x d) | weights (k) | partial inertia | number of changed labels.
 * acc may be NULL for the direct kernel: labels only (predict).
 * incremental: add each moved row to its new cluster and subtract it from its old one
 * (unit weights; rows that stay add only their inertia).
 *
 * The file includes itself once per dtype (T, SUFFIX) below.
 */
#ifndef TM_KERNEL_BODY
#define TM_KERNEL_BODY
#include <math.h>
#include <stdint.h>
#include <omp.h>

#define BLOCK 256
#define LANES 16 /* rows per register block; divides BLOCK */
#define DIRECT_MAX_FEATURES 16
#define PASTE_(a, b) a##b
#define PASTE(a, b) PASTE_(a, b)
#define INLINE static inline __attribute__((always_inline))

int tm_max_threads(void) { return omp_get_max_threads(); }
/* Without hardware FMA (older x86), fmaf is a slow library call and the scores would not
   round as a BLAS kernel's: the direct kernel is then off (the GEMM path runs). */
int tm_direct_max_features(void) {
#if defined(__FMA__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
    return DIRECT_MAX_FEATURES;
#else
    return 0;
#endif
}

#define T float
#define FMA fmaf
#define SUFFIX _f32
#include __FILE__
#undef T
#undef FMA
#undef SUFFIX
#define T double
#define FMA fma
#define SUFFIX _f64
#include __FILE__

#else

#define FN(name) PASTE(name, SUFFIX)

/* Label update, changed count, weighted sums, weights and inertia of one block of rows whose
   first minima (best) and their centers (label) are known. The inertia and the changed
   count are vectorised over the block; only moved rows (or every row of a full pass) take
   the scalar loop that adds them to their clusters. */
INLINE void FN(finish_block)(int64_t begin, int64_t rows, int64_t d, const T *best,
                             const int32_t *label, const T *x, int64_t x_stride,
                             const T *weight, int64_t *labels, int incremental, double *sums,
                             double *weights, double *inertia, double *changed) {
    int64_t *block_labels = labels + begin;
    if (!sums) {
        for (int64_t i = 0; i < rows; ++i) block_labels[i] = label[i];
        return;
    }
    double block_inertia = 0.0;
    int64_t moved = 0;
    if (weight) {
        const T *w = weight + begin;
#pragma omp simd reduction(+ : block_inertia)
        for (int64_t i = 0; i < rows; ++i) block_inertia += (double)w[i] * (double)best[i];
    } else {
#pragma omp simd reduction(+ : block_inertia)
        for (int64_t i = 0; i < rows; ++i) block_inertia += (double)best[i];
    }
#pragma omp simd reduction(+ : moved)
    for (int64_t i = 0; i < rows; ++i) moved += block_labels[i] != (int64_t)label[i];
    *inertia += block_inertia;
    *changed += (double)moved;
    if (incremental && !moved) return;
    for (int64_t i = 0; i < rows; ++i) {
        const int64_t row = begin + i, new_label = label[i], old_label = labels[row];
        const T *xi = x + row * x_stride;
        labels[row] = new_label;
        if (!incremental) {
            const double w = weight ? (double)weight[row] : 1.0;
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

void FN(tm_lloyd_step)(int64_t n_rows, int64_t k, int64_t d, const T *scores,
                       int64_t row_stride, int64_t center_stride, const T *x,
                       int64_t x_stride, const T *weight, int64_t *labels, int incremental,
                       double *acc, int n_acc) {
    const int64_t width = k * d + k + 2;
    const int64_t n_blocks = (n_rows + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(n_acc)
    {
        double *sums = acc + omp_get_thread_num() * width;
        double *weights = sums + k * d;
        double inertia = 0.0, changed = 0.0;
        T best[BLOCK];
        int32_t label[BLOCK];
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
                        label[i] = better ? (int32_t)j : label[i];
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
                    label[i] = (int32_t)first;
                }
            }
            FN(finish_block)(begin, rows, d, best, label, x, x_stride, weight, labels,
                             incremental, sums, weights, &inertia, &changed);
        }
        weights[k] += inertia;
        weights[k + 1] += changed;
    }
}

/* First minimum over the centers of the scores of one block of rows, computed in place:
   xt holds the block's rows transposed (d x BLOCK). n_features is a compile-time constant
   at every call (see the switch below), so the feature loop unrolls into registers. */
INLINE void FN(direct_block)(int64_t rows, int64_t k, const int64_t n_features, T *xt,
                             const T *xb, int64_t x_stride,
                             const T *centers, const T *sq_norms, T *best, int32_t *label) {
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t f = 0; f < n_features; ++f) xt[f * BLOCK + i] = xb[i * x_stride + f];
    for (int64_t i = rows; i < BLOCK; ++i)
        for (int64_t f = 0; f < n_features; ++f) xt[f * BLOCK + i] = 0;
    for (int64_t i0 = 0; i0 < rows; i0 += LANES) {
        T xr[DIRECT_MAX_FEATURES][LANES], b[LANES];
        int32_t l[LANES];
        for (int64_t f = 0; f < n_features; ++f)
            for (int64_t i = 0; i < LANES; ++i) xr[f][i] = xt[f * BLOCK + i0 + i];
        for (int64_t i = 0; i < LANES; ++i) { b[i] = (T)INFINITY; l[i] = 0; }
        for (int64_t j = 0; j < k; ++j) {
            const T *c = centers + j * n_features;
            const T sq = sq_norms[j];
#pragma omp simd
            for (int64_t i = 0; i < LANES; ++i) {
                T dot = xr[0][i] * c[0];
                for (int64_t f = 1; f < n_features; ++f) dot = FMA(xr[f][i], c[f], dot);
                const T score = FMA((T)-2, dot, sq), previous = b[i];
                const int32_t better = -(int32_t)(score < previous);
                b[i] = score < previous ? score : previous;
                l[i] = (l[i] & ~better) | ((int32_t)j & better);
            }
        }
        for (int64_t i = 0; i < LANES; ++i) { best[i0 + i] = b[i]; label[i0 + i] = l[i]; }
    }
}

#define DIRECT_CASE(D) \
    case D: FN(direct_block)(rows, k, D, xt, x + begin * x_stride, x_stride, centers, sq_norms, best, label); break;

void FN(tm_lloyd_direct)(int64_t n_rows, int64_t k, int64_t d, const T *x, int64_t x_stride,
                         const T *centers, const T *sq_norms, const T *weight,
                         int64_t *labels, int incremental, double *acc, int n_acc) {
    if (d < 1 || d > DIRECT_MAX_FEATURES) return; /* the caller checks; never read past xt */
    const int64_t width = k * d + k + 2;
    const int64_t n_blocks = (n_rows + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(n_acc)
    {
        double *sums = acc ? acc + omp_get_thread_num() * width : 0;
        double *weights = acc ? sums + k * d : 0;
        double inertia = 0.0, changed = 0.0;
        T best[BLOCK];
        int32_t label[BLOCK];
        T xt[DIRECT_MAX_FEATURES * BLOCK];
#pragma omp for schedule(static)
        for (int64_t block = 0; block < n_blocks; ++block) {
            const int64_t begin = block * BLOCK;
            const int64_t rows = n_rows - begin < BLOCK ? n_rows - begin : BLOCK;
            switch (d) {
                DIRECT_CASE(1) DIRECT_CASE(2) DIRECT_CASE(3) DIRECT_CASE(4)
                DIRECT_CASE(5) DIRECT_CASE(6) DIRECT_CASE(7) DIRECT_CASE(8)
                DIRECT_CASE(9) DIRECT_CASE(10) DIRECT_CASE(11) DIRECT_CASE(12)
                DIRECT_CASE(13) DIRECT_CASE(14) DIRECT_CASE(15) DIRECT_CASE(16)
            }
            FN(finish_block)(begin, rows, d, best, label, x, x_stride, weight, labels,
                             incremental, sums, weights, &inertia, &changed);
        }
        if (weights) {
            weights[k] += inertia;
            weights[k + 1] += changed;
        }
    }
}

#undef DIRECT_CASE
#undef FN

#endif
