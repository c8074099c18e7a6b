/* The fused CPU step of a Lloyd pass: first-minimum label, label update and weighted sums.
 *
 * Built at install, once per CPU level (build.py: x86-64-v4 "avx512", x86-64-v3 "avx2" and
 * a portable baseline; the macros below pick each one's code paths), as plain C99 + OpenMP
 * that links no OpenMP runtime: kernel.py loads the runtime torch already loaded first, so
 * both share one thread pool and threadpoolctl limits apply to both, then the best variant
 * tm_cpu_level() (below) allows. Entry points per dtype:
 *
 * - tm_lloyd_step_*: runs after torch's GEMM has written a chunk's scores ||c||^2 - 2 x.c
 *   and replaces the separate torch ops (minimum, label compare and update, index_add_,
 *   bincount) by one pass over the scores and the rows. Same scores in, same labels out as
 *   the torch path in torchmeans/backends/torch.py (the first center holding the minimum).
 * - tm_lloyd_tiled_*: the same for more features (x86 AVX2 / AVX-512), as a GEMM
 *   micro-kernel whose epilogue is the first minimum (see the comment above it).
 * - tm_seeding_steps_*: the blocked k-means++ seeding's steps over one pool of proposals.
 * - tm_elkan_pass_*: Elkan's bounded pass, scores only where bounds fail (see below).
 * - tm_sq_distances_*: exact distances of rows to their own centers (inertia).
 * - tm_lloyd_run_*, tm_greedy_seeding_*: all of a small problem's Lloyd iterations, and its
 *   greedy k-means++, in one call each on one thread (see the comment above them).
 * - tm_lloyd_direct_*: for few features (d <= DIRECT_MAX_FEATURES), computes the scores
 *   itself, block by block in registers and L1, so no rows x k score block ever reaches
 *   memory; at 1M x 8, k=16 that block is twice the size of the data and writing it was
 *   most of a pass. Each score is summed as a BLAS kernel sums it: the dot product x.c as
 *   a chain of fused multiply-adds over the features in order, then ||c||^2 - 2 (x.c) with
 *   one rounding (2 (x.c) is exact), so it matches torch's GEMM to the bit wherever that
 *   GEMM does the same (tests/test_native.py checks it on this machine's BLAS). Labels
 *   for predict come from the same kernel (torchmeans/core/assign.py), so a fit's labels_
 *   equal predict's whichever way a float near-tie falls.
 *
 * scores[i * row_stride + j * center_stride]: score of row i against center j; the layout is
 * (k, rows) (row_stride 1, center_stride rows) or (rows, k) (row_stride k, center_stride 1).
 * x[i * x_stride + f]: the (shifted) rows; weight: per-row weights, or NULL for all 1.
 * centers (direct): (k, d) contiguous; sq_norms: their squared norms, as torch computes them.
 * labels: previous labels in (any value, e.g. -1, when there are none), new labels out.
 * acc: n_acc blocks of width k*d + k + 2 doubles, zeroed by the caller; thread t adds into
 * block t: sums (k x d) | weights (k) | partial inertia | number of changed labels.
 * acc may be NULL for the direct kernels: labels only (predict), and with best_out (else
 * NULL) each row's minimum score too (the seeding's distances).
 * incremental: add each moved row to its new cluster and subtract it from its old one
 * (unit weights; rows that stay add only their inertia).
 *
 * The file includes itself once per dtype (T, SUFFIX) below.
 */
#ifndef TM_KERNEL_BODY
#define TM_KERNEL_BODY
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#if defined(__APPLE__)
#define _DARWIN_C_SOURCE /* sysctlbyname */
#endif
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

/* The CPU level this library was compiled for: 4 (x86-64-v4: AVX-512 F/BW/CD/DQ/VL), 3
   (x86-64-v3: AVX2, FMA, BMI1/2, ...) or 0 (the platform's baseline). */
int tm_build_level(void) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512CD__) && \
    defined(__AVX512DQ__) && defined(__AVX512VL__)
    return 4;
#elif defined(__AVX2__) && defined(__FMA__) && defined(__BMI2__)
    return 3;
#else
    return 0;
#endif
}

/* The highest level whose library this CPU and OS can run: 4, 3 or 0, as tm_build_level.
   Called only in the portable library (the others may use their instructions anywhere).
   Every feature that -march=x86-64-v3 / -v4 lets the compiler use is checked, and the OS
   must save the registers: XCR0 bits 1-2 (SSE, AVX state) for level 3, and also 5-7
   (opmask, ZMM) for level 4. macOS turns the AVX-512 state on at a thread's first use, so
   XCR0 does not show it there: the kernel's hw.optional.avx512f says instead. */
int tm_cpu_level(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, 0) < 7 || !__get_cpuid(1, &a, &b, &c, &d)) return 0;
    /* ECX: SSE3 0, SSSE3 9, FMA 12, CX16 13, SSE4.1 19, SSE4.2 20, MOVBE 22, POPCNT 23,
       OSXSAVE 27, AVX 28, F16C 29 */
    const unsigned v3_ecx = 1u << 0 | 1u << 9 | 1u << 12 | 1u << 13 | 1u << 19 | 1u << 20 |
                            1u << 22 | 1u << 23 | 1u << 27 | 1u << 28 | 1u << 29;
    if ((c & v3_ecx) != v3_ecx) return 0;
    if (__get_cpuid_max(0x80000000u, 0) < 0x80000001u) return 0;
    __cpuid(0x80000001u, a, b, c, d);
    if ((c & (1u << 0 | 1u << 5)) != (1u << 0 | 1u << 5)) return 0; /* LAHF-SAHF, LZCNT */
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned v3_ebx = 1u << 3 | 1u << 5 | 1u << 8; /* BMI1, AVX2, BMI2 */
    if ((b & v3_ebx) != v3_ebx) return 0;
    unsigned xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0)); /* OSXSAVE: allowed */
    if ((xcr0_low & 0x6u) != 0x6u) return 0;
    /* EBX: AVX512F 16, AVX512DQ 17, AVX512CD 28, AVX512BW 30, AVX512VL 31 */
    const unsigned v4_ebx = 1u << 16 | 1u << 17 | 1u << 28 | 1u << 30 | 1u << 31;
    if ((b & v4_ebx) != v4_ebx) return 3;
#if defined(__APPLE__)
    int enabled = 0;
    size_t size = sizeof enabled;
    if (sysctlbyname("hw.optional.avx512f", &enabled, &size, 0, 0) || !enabled) return 3;
#else
    if ((xcr0_low & 0xe6u) != 0xe6u) return 3;
#endif
    return 4;
#else
    return 0;
#endif
}

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

/* The tiled kernel's vector ISA: AVX-512 (32 registers: tiles of 4 row vectors x 5 centers,
   20 accumulators; the running minima and labels may spill once per group) or AVX2 + FMA
   (16 registers: 2 x 4); 0 elsewhere (the GEMM path runs for d > 16). */
#if defined(__AVX512F__)
#define TILED_BYTES 64
#define VPRE(op) _mm512_##op
#define ROW_VECTORS 4
#define TILE_CENTERS 5
/* The seeding's potentials (potential_tile): 2 x 8, so its tile of rows stays in L1
   (RESULTS.md, "Figures moved from docstrings") */
#define POTENTIAL_ROW_VECTORS 2
#define POTENTIAL_CENTERS 8
#elif defined(__AVX2__) && defined(__FMA__)
#define TILED_BYTES 32
#define VPRE(op) _mm256_##op
#define ROW_VECTORS 2
#define TILE_CENTERS 4
#define POTENTIAL_ROW_VECTORS 2
#define POTENTIAL_CENTERS 4
#else
#define TILED_BYTES 0
#endif
int tm_tiled_vector_bytes(void) { return TILED_BYTES; }

#if TILED_BYTES
static void *tm_alloc64(size_t bytes) {
    void *memory = 0;
    return posix_memalign(&memory, 64, bytes ? bytes : 64) ? 0 : memory;
}
#endif

/* Inside a parallel region, after each thread allocated its buffers: 1 on every thread if any
   thread's allocation failed. A barrier: no thread writes *failed after it, so all threads
   take the same branch (and reach the same later barriers). */
static int tm_any_failed(int allocated, int *failed) {
    if (!allocated) {
#pragma omp atomic write
        *failed = 1;
    }
#pragma omp barrier
    int stop;
#pragma omp atomic read
    stop = *failed;
    return stop;
}

#define T float
#define LT int32_t /* a label, as wide as T: its bits ride in T's vector lanes */
#define FMA fmaf
#define SUFFIX _f32
#define VOP(op) PASTE(VPRE(op), _ps)
#if TILED_BYTES == 64
#define VT __m512
#define VMASK __mmask16
#define VCMP_MASK _mm512_cmp_ps_mask
#elif TILED_BYTES == 32
#define VT __m256
#define VPERMUTE(a, index) _mm256_permutevar8x32_ps(a, index)
#endif
#include __FILE__
#undef T
#undef LT
#undef FMA
#undef SUFFIX
#undef VOP
#undef VT
#undef VMASK
#undef VCMP_MASK
#undef VPERMUTE
#define T double
#define LT int64_t
#define FMA fma
#define SUFFIX _f64
#define VOP(op) PASTE(VPRE(op), _pd)
#if TILED_BYTES == 64
#define VT __m512d
#define VMASK __mmask8
#define VCMP_MASK _mm512_cmp_pd_mask
#elif TILED_BYTES == 32
#define VT __m256d
#define VPERMUTE(a, index) _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(a), index))
#endif
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
                             double *weights, double *inertia, double *changed, T *best_out) {
    int64_t *block_labels = labels + begin;
    if (!sums) {
        for (int64_t i = 0; i < rows; ++i) block_labels[i] = label[i];
        if (best_out)
            for (int64_t i = 0; i < rows; ++i) best_out[begin + i] = best[i];
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
                             incremental, sums, weights, &inertia, &changed, 0);
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
                         int64_t *labels, int incremental, double *acc, int n_acc,
                         T *best_out) {
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
                             incremental, sums, weights, &inertia, &changed, best_out);
        }
        if (weights) {
            weights[k] += inertia;
            weights[k + 1] += changed;
        }
    }
}

#undef DIRECT_CASE

/* Small problems in one call each (tm_lloyd_run, tm_greedy_seeding): a fit of a few hundred
   rows runs in microseconds, so a pass per call (with its Python around it and a fork of
   the threads) would cost many times the work. Both run on one thread and allocate
   nothing: the caller passes every buffer. */

/* One direct pass over all rows on this thread into acc (zeroed here; the layout of
   tm_lloyd_direct's per-thread block). */
static void FN(serial_direct_pass)(int64_t n_rows, int64_t k, int64_t d, const T *x,
                                   const T *centers, const T *sq_norms, const T *weight,
                                   int64_t *labels, double *acc) {
    const int64_t width = k * d + k + 2, x_stride = d;
    for (int64_t j = 0; j < width; ++j) acc[j] = 0.0;
    double *sums = acc, *weights = acc + k * d;
    double inertia = 0.0, changed = 0.0;
    T best[BLOCK];
    int32_t label[BLOCK];
    T xt[DIRECT_MAX_FEATURES * BLOCK];
    for (int64_t begin = 0; begin < n_rows; begin += BLOCK) {
        const int64_t rows = n_rows - begin < BLOCK ? n_rows - begin : BLOCK;
        switch (d) {
#define SERIAL_CASE(D) \
    case D: FN(direct_block)(rows, k, D, xt, x + begin * x_stride, x_stride, centers, sq_norms, best, label); break;
            SERIAL_CASE(1) SERIAL_CASE(2) SERIAL_CASE(3) SERIAL_CASE(4)
            SERIAL_CASE(5) SERIAL_CASE(6) SERIAL_CASE(7) SERIAL_CASE(8)
            SERIAL_CASE(9) SERIAL_CASE(10) SERIAL_CASE(11) SERIAL_CASE(12)
            SERIAL_CASE(13) SERIAL_CASE(14) SERIAL_CASE(15) SERIAL_CASE(16)
#undef SERIAL_CASE
        }
        FN(finish_block)(begin, rows, d, best, label, x, x_stride, weight, labels, 0, sums,
                         weights, &inertia, &changed, 0);
    }
    weights[k] = inertia;
    weights[k + 1] = changed;
}

/* Squared norms of the centers as torch sums a short row: in order, each square rounded. */
static void FN(center_sq_norms)(int64_t k, int64_t d, const T *centers, T *sq_norms) {
    for (int64_t j = 0; j < k; ++j) {
        T total = 0;
        for (int64_t f = 0; f < d; ++f) total += centers[j * d + f] * centers[j * d + f];
        sq_norms[j] = total;
    }
}

/* Lloyd's iterations on a small problem, as torchmeans/core/lloyd.py's loop runs them with
   the native backend: each pass is tm_lloyd_direct's (the same scores, so the same labels),
   the update the plain quotient of the float64 sums, rounded to T and round-tripped
   through the offset ((c + offset) - offset, lloyd.as_returned), the stop scikit-learn's
   (no label changed, or the squared center shift within tol). The shift is summed in
   float64 (the loop sums it in T: the two agree but for the last bits).
   centers (k x d) in: the initial ones, out: the final ones; labels (n) out; previous (n),
   acc (k*d + k + 2), new_centers (k x d) and sq_norms (k) scratch; history (max_iter x 4)
   out: inertia (inertia_offset + the pass's partial inertia, at least 0), shift, changed
   labels, 0. outcome[0]: 1 converged, 0 max_iter reached, 2 handed back: a pass left a
   cluster without weight (or a weight below DBL_MIN); its iteration is not counted, and
   centers and labels are those it started from (the engine relocates as scikit-learn
   does). outcome[1]: whether the last pass's labels are final (no label changed and no
   center moved); sq_norms then hold the final centers' norms that labelled them, and
   distances (n) the rows' exact squared distances to their centers (tm_sq_distances').
   Returns the number of iterations counted. */
void FN(tm_sq_distances)(int64_t n_rows, int64_t d, const T *x, int64_t x_stride,
                         const T *centers, const int64_t *labels, T *out);

int64_t FN(tm_lloyd_run)(int64_t n_rows, int64_t k, int64_t d, const T *x, const T *weight,
                         const T *offset, T *centers, int64_t *labels, int64_t *previous,
                         double *acc, T *new_centers, T *sq_norms, int64_t max_iter,
                         double tol, double inertia_offset, double *history,
                         int64_t *outcome, T *distances) {
    outcome[0] = 0;
    outcome[1] = 0;
    if (d < 1 || d > DIRECT_MAX_FEATURES) return 0; /* the caller checks */
    const double *sums = acc, *weights = acc + k * d;
    for (int64_t iteration = 0; iteration < max_iter; ++iteration) {
        FN(center_sq_norms)(k, d, centers, sq_norms);
        memcpy(previous, labels, (size_t)n_rows * sizeof(int64_t));
        FN(serial_direct_pass)(n_rows, k, d, x, centers, sq_norms, weight, labels, acc);
        for (int64_t j = 0; j < k; ++j)
            if (!(weights[j] >= DBL_MIN)) {
                memcpy(labels, previous, (size_t)n_rows * sizeof(int64_t));
                outcome[0] = 2;
                return iteration;
            }
        double shift = 0.0;
        int moved = 0;
        for (int64_t j = 0; j < k; ++j)
            for (int64_t f = 0; f < d; ++f) {
                T mean = (T)(sums[j * d + f] / weights[j]);
                mean = (mean + offset[f]) - offset[f];
                const T old = centers[j * d + f];
                const double difference = (double)(T)(mean - old);
                shift += difference * difference;
                moved |= mean != old;
                new_centers[j * d + f] = mean;
            }
        const double n_changed = weights[k + 1];
        double inertia = weights[k] + inertia_offset;
        inertia = inertia < 0.0 ? 0.0 : inertia; /* (NaN stays NaN) */
        double *row = history + iteration * 4;
        row[0] = inertia;
        row[1] = shift;
        row[2] = n_changed;
        row[3] = 0.0;
        memcpy(centers, new_centers, (size_t)(k * d) * sizeof(T));
        if (n_changed == 0.0 || shift <= tol) {
            outcome[0] = 1;
            outcome[1] = n_changed == 0.0 && !moved;
            if (outcome[1]) /* the exact inertia's terms, as the engine's pass computes them */
                FN(tm_sq_distances)(n_rows, d, x, d, centers, labels, distances);
            return iteration + 1;
        }
    }
    return max_iter;
}

/* Squared distance in float64, summed over the features in order. */
INLINE double FN(wide_sq_distance)(int64_t d, const T *a, const T *b) {
    double total = 0.0;
    for (int64_t f = 0; f < d; ++f) {
        const double difference = (double)a[f] - (double)b[f];
        total += difference * difference;
    }
    return total;
}

/* First i with cumulative[i] > target (right), or >= target (left); n if none. */
INLINE int64_t FN(search_cumulative)(const double *cumulative, int64_t n, double target, int right) {
    int64_t low = 0, high = n;
    while (low < high) {
        const int64_t middle = low + (high - low) / 2;
        if (right ? cumulative[middle] <= target : cumulative[middle] < target) low = middle + 1;
        else high = middle;
    }
    return low;
}

/* scikit-learn's greedy k-means++ on all rows (torchmeans/core/seeding.py,
   greedy_kmeans_plusplus_centers, computes the same with torch ops). uniforms (in [0, 1)):
   1 + (k - 1) x n_trials. A draw by values v with uniform u is the row whose interval of the
   float64 cumulative sum of v holds u times the total (at most the last row of positive v).
   The first center is drawn by weight; each later step draws n_trials rows by w D^2 (by
   weight alone where D^2 is 0 everywhere) and keeps the one leaving the least potential
   sum_i w_i min(D_i^2, |x_i - c|^2), the first on ties. Distances and potentials in float64.
   closest, cumulative (n) and distances (n_trials x n) are scratch; indices (k) out. */
void FN(tm_greedy_seeding)(int64_t n, int64_t d, const T *x, const T *weight, int64_t k,
                           int64_t n_trials, const double *uniforms, int64_t *indices,
                           double *closest, double *cumulative, double *distances) {
    double running = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        running += weight ? (double)weight[i] : 1.0;
        cumulative[i] = running;
    }
    {
        const int64_t last_positive = FN(search_cumulative)(cumulative, n, running, 0);
        const int64_t row = FN(search_cumulative)(cumulative, n, uniforms[0] * running, 1);
        indices[0] = row < last_positive ? row : last_positive;
    }
    uniforms += 1;
    const T *first = x + indices[0] * d;
    for (int64_t i = 0; i < n; ++i) closest[i] = FN(wide_sq_distance)(d, x + i * d, first);
    for (int64_t step = 1; step < k; ++step) {
        double running = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            running += weight ? closest[i] * (double)weight[i] : closest[i];
            cumulative[i] = running;
        }
        if (!(running > 0.0)) { /* every row on a center: by weight */
            running = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                running += weight ? (double)weight[i] : 1.0;
                cumulative[i] = running;
            }
        }
        const double total = cumulative[n - 1];
        const int64_t last_positive = FN(search_cumulative)(cumulative, n, total, 0);
        int64_t winner = 0, winner_row = 0;
        double least = INFINITY;
        for (int64_t t = 0; t < n_trials; ++t) {
            int64_t row = FN(search_cumulative)(cumulative, n, uniforms[(step - 1) * n_trials + t]
                                                           * total, 1);
            row = row < last_positive ? row : last_positive;
            const T *candidate = x + row * d;
            double *lowered = distances + t * n, potential = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                const double distance = FN(wide_sq_distance)(d, x + i * d, candidate);
                lowered[i] = distance < closest[i] ? distance : closest[i];
                potential += weight ? (double)weight[i] * lowered[i] : lowered[i];
            }
            if (potential < least || t == 0) {
                least = potential;
                winner = t;
                winner_row = row;
            }
        }
        indices[step] = winner_row;
        memcpy(closest, distances + winner * n, (size_t)n * sizeof(double));
    }
}

#if TILED_BYTES
/* The tiled kernel (d > DIRECT_MAX_FEATURES): a GEMM whose epilogue is the first minimum.
 *
 * The centers are packed once per call in groups of TILE_CENTERS ((d, TILE_CENTERS) per
 * group, padded with zero centers of norm +inf, which never win). Each thread takes tiles of
 * TILE_ROWS rows, transposed into a (d, TILE_ROWS) buffer, and for every group keeps
 * ROW_VECTORS x TILE_CENTERS accumulators in registers: per feature, ROW_VECTORS loads of
 * rows and TILE_CENTERS broadcasts feed ROW_VECTORS * TILE_CENTERS fused multiply-adds (the
 * register tile of a BLAS micro-kernel). Once a group's dot products are complete, its
 * scores fma(-2, x.c, ||c||^2) meet each row's running minimum, which stays in registers
 * for the whole pass over the centers: a lane is a row, the centers come in increasing
 * order and the comparison is strict, so each lane ends with its first minimum and no
 * score is ever stored. Each dot product is one FMA chain over the features in order, as
 * the direct kernel's. RESULTS.md, "The native Lloyd step". */
#define VL (TILED_BYTES / (int)sizeof(T))
#define TILE_ROWS (ROW_VECTORS * VL)
/* The register tile of the GEMM micro-kernels: dot[v][q] = sum_f a[f, rows of vector v] *
 * c[f, q] for a (d, ROWV * VL) block of transposed rows and a (d, CENTERS) group of packed
 * centers, one FMA chain per (row, center) in feature order; advances a and c past the
 * block. A macro, not a function, so that each caller's tile sizes are constants and its
 * accumulators stay in registers (tm_lloyd_tiled: 4 x 5, the seeding: 2 x 8). */
#define TILE_DOTS(dot, ROWV, CENTERS, a, c, d, LOAD)                                         \
    do {                                                                                     \
        for (int v = 0; v < (ROWV); ++v)                                                     \
            for (int q = 0; q < (CENTERS); ++q) dot[v][q] = VOP(setzero)();                  \
        for (int64_t f = 0; f < (d); ++f, a += (ROWV) * VL, c += (CENTERS)) {                \
            VT rows[ROWV];                                                                   \
            for (int v = 0; v < (ROWV); ++v) rows[v] = LOAD(a + v * VL);                     \
            for (int q = 0; q < (CENTERS); ++q) {                                            \
                const VT center = VOP(set1)(c[q]);                                           \
                for (int v = 0; v < (ROWV); ++v)                                             \
                    dot[v][q] = VOP(fmadd)(rows[v], center, dot[v][q]);                      \
            }                                                                                \
        }                                                                                    \
    } while (0)

/* The rows of a tile, transposed: xt[f * TILE_ROWS + i] = x[i * x_stride + f] for i < rows,
 * zero for rows <= i < TILE_ROWS. Full tiles go VL x VL values at a time: VL row vectors
 * loaded (a vector of rows at a time: VL sequential streams of reads), transposed in
 * registers in log2(VL) stages (stage h swaps the off-diagonal h x h blocks of every
 * 2h x 2h block: two-source lane permutes with AVX-512, two permutes and a blend with AVX2),
 * VL aligned stores (much faster than a copy of one value at a time: RESULTS.md, "Lloyd
 * step vs scikit-learn"). Partial tiles and the last d % VL features are copied one value
 * at a time. */
#define TRANSPOSE_STAGES 4 /* at most log2(16) */
#if TILED_BYTES == 64
#define VI __m512i
#define LANES_FROM(a, b, index, mask) VOP(permutex2var)(a, index, b)
#else
#define VI __m256i
#define LANES_FROM(a, b, index, mask) VOP(blendv)(VPERMUTE(a, index), VPERMUTE(b, index), mask)
#endif
/* rows i and i + h of every 2h x 2h block (h a literal: the loops unroll) */
#define TRANSPOSE_STAGE(h, stage)                                                            \
    do {                                                                                     \
        const int at = (stage);                                                              \
        _Pragma("GCC unroll 16") for (int base = 0; base < VL; base += 2 * (h))              \
        _Pragma("GCC unroll 16") for (int i = base; i < base + (h); ++i) {                   \
            const VT a = r[i], b = r[i + (h)];                                               \
            r[i] = LANES_FROM(a, b, low[at], low_mask[at]);                                  \
            r[i + (h)] = LANES_FROM(a, b, high[at], high_mask[at]);                          \
        }                                                                                    \
    } while (0)

/* Lane sources of each stage: lane j of row i takes a[j], or b[j - h] where bit h of j is
   set; lane j of row i + h takes a[j + h], or b[j] (a = row i, b = row i + h). As indices
   into (a, b) (0 <= index < 2 VL); for AVX2, 32-bit lane indices into a and into b, and a
   mask of the lanes taken from b. */
INLINE void FN(transpose_indices)(VI low[TRANSPOSE_STAGES], VI high[TRANSPOSE_STAGES],
                                  VT low_mask[TRANSPOSE_STAGES],
                                  VT high_mask[TRANSPOSE_STAGES]) {
    int stage = 0;
    for (int h = VL / 2; h >= 1; h /= 2, ++stage) {
        LT from_low[VL], from_high[VL], b_low[VL], b_high[VL];
        for (int j = 0; j < VL; ++j) {
            from_low[j] = (LT)(j & h ? VL + j - h : j);
            from_high[j] = (LT)(j & h ? VL + j : j + h);
            b_low[j] = from_low[j] >= VL ? -1 : 0;
            b_high[j] = from_high[j] >= VL ? -1 : 0;
        }
#if TILED_BYTES == 64
        low[stage] = _mm512_loadu_si512(from_low);
        high[stage] = _mm512_loadu_si512(from_high);
        (void)b_low, (void)b_high, (void)low_mask, (void)high_mask;
#else
        const int per = (int)(sizeof(T) / 4); /* 32-bit lanes per value */
        int32_t lanes_low[8], lanes_high[8];
        for (int j = 0; j < VL; ++j)
            for (int e = 0; e < per; ++e) {
                lanes_low[j * per + e] = (int32_t)((from_low[j] % VL) * per + e);
                lanes_high[j * per + e] = (int32_t)((from_high[j] % VL) * per + e);
            }
        low[stage] = _mm256_loadu_si256((const __m256i *)lanes_low);
        high[stage] = _mm256_loadu_si256((const __m256i *)lanes_high);
        T mask_low[VL], mask_high[VL];
        __builtin_memcpy(mask_low, b_low, sizeof mask_low);
        __builtin_memcpy(mask_high, b_high, sizeof mask_high);
        low_mask[stage] = VOP(loadu)(mask_low);
        high_mask[stage] = VOP(loadu)(mask_high);
#endif
    }
}

INLINE void FN(transpose_tile)(const T *x, int64_t x_stride, int64_t rows, int64_t d, T *xt) {
    int64_t done = 0; /* features transposed in registers */
    if (rows == TILE_ROWS && d >= VL) {
        VI low[TRANSPOSE_STAGES], high[TRANSPOSE_STAGES];
        VT low_mask[TRANSPOSE_STAGES], high_mask[TRANSPOSE_STAGES];
        FN(transpose_indices)(low, high, low_mask, high_mask);
        done = d - d % VL;
        for (int v = 0; v < ROW_VECTORS; ++v)
            for (int64_t f = 0; f < done; f += VL) {
                VT r[VL];
#pragma GCC unroll 16
                for (int l = 0; l < VL; ++l) r[l] = VOP(loadu)(x + (v * VL + l) * x_stride + f);
                int stage = 0;
                if (VL >= 16) TRANSPOSE_STAGE(8, stage++);
                if (VL >= 8) TRANSPOSE_STAGE(4, stage++);
                TRANSPOSE_STAGE(2, stage++);
                TRANSPOSE_STAGE(1, stage++);
#pragma GCC unroll 16
                for (int l = 0; l < VL; ++l) VOP(store)(xt + (f + l) * TILE_ROWS + v * VL, r[l]);
            }
    }
    for (int64_t i = 0; i < rows; ++i) {
        const T *row = x + i * x_stride;
        for (int64_t f = done; f < d; ++f) xt[f * TILE_ROWS + i] = row[f];
    }
    for (int64_t i = rows; i < TILE_ROWS; ++i)
        for (int64_t f = done; f < d; ++f) xt[f * TILE_ROWS + i] = 0;
}

INLINE void FN(tiled_tile)(int64_t k, int64_t d, const T *xt, const T *packed,
                           const T *group_sq, T *best, int32_t *label) {
    const VT minus2 = VOP(set1)((T)-2);
    VT b[ROW_VECTORS], l[ROW_VECTORS];
    for (int v = 0; v < ROW_VECTORS; ++v) {
        b[v] = VOP(set1)((T)INFINITY);
        l[v] = VOP(setzero)();
    }
    const int64_t n_groups = (k + TILE_CENTERS - 1) / TILE_CENTERS;
    for (int64_t g = 0; g < n_groups; ++g) {
        const T *a = xt, *c = packed + g * d * TILE_CENTERS;
        VT dot[ROW_VECTORS][TILE_CENTERS];
        TILE_DOTS(dot, ROW_VECTORS, TILE_CENTERS, a, c, d, VOP(load));
        for (int q = 0; q < TILE_CENTERS; ++q) {
            const VT sq = VOP(set1)(group_sq[g * TILE_CENTERS + q]);
            const LT index = (LT)(g * TILE_CENTERS + q);
            T index_bits;
            __builtin_memcpy(&index_bits, &index, sizeof index_bits);
            const VT j = VOP(set1)(index_bits);
            for (int v = 0; v < ROW_VECTORS; ++v) {
                const VT score = VOP(fmadd)(minus2, dot[v][q], sq);
#if TILED_BYTES == 64
                const VMASK better = VCMP_MASK(score, b[v], _CMP_LT_OQ);
                b[v] = VOP(mask_blend)(better, b[v], score);
                l[v] = VOP(mask_blend)(better, l[v], j);
#else
                const VT better = VOP(cmp)(score, b[v], _CMP_LT_OQ);
                b[v] = VOP(blendv)(b[v], score, better);
                l[v] = VOP(blendv)(l[v], j, better);
#endif
            }
        }
    }
    T label_bits[TILE_ROWS] __attribute__((aligned(64)));
    for (int v = 0; v < ROW_VECTORS; ++v) {
        VOP(store)(best + v * VL, b[v]);
        VOP(store)(label_bits + v * VL, l[v]);
    }
    for (int i = 0; i < TILE_ROWS; ++i) {
        LT index;
        __builtin_memcpy(&index, label_bits + i, sizeof index);
        label[i] = (int32_t)index;
    }
}

int FN(tm_lloyd_tiled)(int64_t n_rows, int64_t k, int64_t d, const T *x, int64_t x_stride,
                       const T *centers, const T *sq_norms, const T *weight,
                       int64_t *labels, int incremental, double *acc, int n_acc,
                       T *best_out) {
    const int64_t width = k * d + k + 2;
    const int64_t n_groups = (k + TILE_CENTERS - 1) / TILE_CENTERS;
    const int64_t n_tiles = (n_rows + TILE_ROWS - 1) / TILE_ROWS;
    T *packed = tm_alloc64(sizeof(T) * n_groups * TILE_CENTERS * d);
    T *group_sq = tm_alloc64(sizeof(T) * n_groups * TILE_CENTERS);
    int failed = !packed || !group_sq;
#pragma omp parallel num_threads(n_acc)
    {
        T *xt = tm_alloc64(sizeof(T) * TILE_ROWS * d);
        const int stop = tm_any_failed(xt != 0, &failed);
        double *sums = acc && !stop ? acc + omp_get_thread_num() * width : 0;
        double *weights = sums ? sums + k * d : 0;
        double inertia = 0.0, changed = 0.0;
        T best[TILE_ROWS] __attribute__((aligned(64)));
        int32_t label[TILE_ROWS];
        if (!stop) {
#pragma omp for schedule(static)
            for (int64_t j = 0; j < n_groups * TILE_CENTERS; ++j) {
                const int64_t g = j / TILE_CENTERS, q = j % TILE_CENTERS;
                group_sq[j] = j < k ? sq_norms[j] : (T)INFINITY;
                for (int64_t f = 0; f < d; ++f)
                    packed[(g * d + f) * TILE_CENTERS + q] = j < k ? centers[j * d + f] : 0;
            }
#pragma omp for schedule(static)
            for (int64_t tile = 0; tile < n_tiles; ++tile) {
                const int64_t begin = tile * TILE_ROWS;
                const int64_t rows = n_rows - begin < TILE_ROWS ? n_rows - begin : TILE_ROWS;
                FN(transpose_tile)(x + begin * x_stride, x_stride, rows, d, xt);
                FN(tiled_tile)(k, d, xt, packed, group_sq, best, label);
                FN(finish_block)(begin, rows, d, best, label, x, x_stride, weight, labels,
                                 incremental, sums, weights, &inertia, &changed, best_out);
            }
        }
        if (weights) {
            weights[k] += inertia;
            weights[k + 1] += changed;
        }
        free(xt);
    }
    free(packed);
    free(group_sq);
    return failed;
}
#define POTENTIAL_ROWS (POTENTIAL_ROW_VECTORS * VL)
int FN(tm_potential_tile_rows)(void) { return POTENTIAL_ROWS; }

/* One tile of POTENTIAL_ROWS rows against m candidates packed in groups of POTENTIAL_CENTERS
 * ((groups, d, POTENTIAL_CENTERS), padded with zero candidates; group_sq their squared norms):
 * a register tile as tm_lloyd_tiled's, POTENTIAL_ROW_VECTORS x POTENTIAL_CENTERS (a step's 8
 * candidates at k=1024 fill one group). The epilogue adds the norms, clamps at 0, takes the
 * minimum with closest, stores it in distances ((m, n_padded)) and sums the tile's values
 * (times weight, NULL: all 1) in double into tile_sums[j]. */
INLINE void FN(potential_tile)(int64_t tile, int64_t m, int64_t d, int64_t n_padded,
                               const T *xt, const T *row_sq, const T *closest, const T *weight,
                               const T *packed, const T *group_sq, T *distances,
                               double *tile_sums) {
    const T *tile_xt = xt + tile * d * POTENTIAL_ROWS;
    const int64_t first_row = tile * POTENTIAL_ROWS;
    const VT minus2 = VOP(set1)((T)-2), zero = VOP(setzero)();
    for (int64_t g = 0; g * POTENTIAL_CENTERS < m; ++g) {
        const T *a = tile_xt, *c = packed + g * d * POTENTIAL_CENTERS;
        VT dot[POTENTIAL_ROW_VECTORS][POTENTIAL_CENTERS];
        TILE_DOTS(dot, POTENTIAL_ROW_VECTORS, POTENTIAL_CENTERS, a, c, d, VOP(loadu));
        for (int q = 0; q < POTENTIAL_CENTERS && g * POTENTIAL_CENTERS + q < m; ++q) {
            const int64_t j = g * POTENTIAL_CENTERS + q;
            const VT sq = VOP(set1)(group_sq[j]);
            VT total = zero;
            for (int v = 0; v < POTENTIAL_ROW_VECTORS; ++v) {
                const int64_t at = first_row + v * VL;
                /* (||x||^2 - 2 x.c) + ||c||^2 in the order of the torch path's addmm and add
                   (core/seeding.py's _CandidateJudge); max(0, NaN) is NaN, which min turns
                   into closest */
                VT value = VOP(add)(VOP(fmadd)(minus2, dot[v][q], VOP(loadu)(row_sq + at)), sq);
                value = VOP(min)(VOP(max)(zero, value), VOP(loadu)(closest + at));
                VOP(storeu)(distances + j * n_padded + at, value);
                if (weight) value = VOP(mul)(value, VOP(loadu)(weight + at));
                total = VOP(add)(total, value);
            }
            T lanes[VL] __attribute__((aligned(64)));
            VOP(store)(lanes, total);
            double sum = 0.0;
            for (int l = 0; l < VL; ++l) sum += (double)lanes[l];
            tile_sums[j] = sum;
        }
    }
}

/* The steps of the blocked k-means++ seeding over one pool of proposals (the loop of
 * core/seeding.py's blocked_kmeans_plusplus_centers, in one parallel region: at large k the
 * per-step Python and the thread pool's wake-ups between calls cost as much as the products).
 *
 * Rows are given once, in tiles: xt is (n_tiles, d, POTENTIAL_ROWS) (any alignment); row_sq,
 * closest and weight (NULL: all 1) hold n_tiles * POTENTIAL_ROWS entries (padding rows: zero
 * features, closest 0). The pool: n_pool proposals (rows of pool, (n_pool, d)) with their
 * squared norms, their current D^2 in pool_now and their acceptance thresholds u D_0^2.
 *
 * Step s takes the next n_trials proposals p (in pool order, after the previous step's last)
 * with thresholds[p] < pool_now[p]; at step 0 (D == D_0) every proposal is accepted (at most
 * n_trials). If a later step finds fewer than n_trials, the pool is used up and the call
 * returns. Else each candidate's potential on the rows,
 * sum_i w_i min(closest_i, max(0, ||x_i||^2 + ||c||^2 - 2 x_i.c)), is summed in double per
 * tile and the tile sums are added in tile order (independent of the number of threads); the
 * first candidate with the least potential (or the first NaN, as torch's argmin) wins:
 * winners[s] is its pool position, closest becomes its minima, and pool_now of the
 * proposals after the step's last drops to their D^2 against it (the torch path's order of
 * terms, (||p||^2 - 2 p.w) + ||w||^2, clamped at 0; the dot product is summed in another
 * order than BLAS's gemv, so at an exact near-tie the two paths can accept another
 * proposal). Runs at most max_steps steps; returns the number run, or -1 when out of
 * memory. */
int64_t FN(tm_seeding_steps)(int64_t n_tiles, int64_t d, const T *xt, const T *row_sq,
                             T *closest, const T *weight, int64_t n_pool, const T *pool,
                             const T *pool_sq, T *pool_now, const T *thresholds,
                             int64_t n_trials, int64_t max_steps, int64_t *winners) {
    const int64_t n_groups = (n_trials + POTENTIAL_CENTERS - 1) / POTENTIAL_CENTERS;
    const int64_t n_padded = n_tiles * POTENTIAL_ROWS;
    T *packed = tm_alloc64(sizeof(T) * n_groups * POTENTIAL_CENTERS * d);
    T *group_sq = tm_alloc64(sizeof(T) * n_groups * POTENTIAL_CENTERS);
    T *distances = tm_alloc64(sizeof(T) * n_trials * n_padded);
    double *tile_sums = tm_alloc64(sizeof(double) * n_tiles * n_trials);
    int64_t *trials = tm_alloc64(sizeof(int64_t) * n_trials);
    int64_t steps = -1;
    if (packed && group_sq && distances && tile_sums && trials) {
        int64_t m = 0, next = 0, best = 0;
        steps = 0;
        for (int64_t j = 0; j < n_groups * POTENTIAL_CENTERS; ++j) group_sq[j] = (T)INFINITY;
        for (int64_t j = 0; j < n_groups * POTENTIAL_CENTERS * d; ++j) packed[j] = 0;
#pragma omp parallel
        for (;;) {
#pragma omp single
            {
                m = 0;
                for (int64_t p = next; steps < max_steps && p < n_pool && m < n_trials; ++p)
                    if (steps == 0 || thresholds[p] < pool_now[p]) trials[m++] = p;
                if (m < n_trials && steps > 0) m = 0; /* the pool is used up */
                for (int64_t j = 0; j < m; ++j) {
                    const int64_t g = j / POTENTIAL_CENTERS, q = j % POTENTIAL_CENTERS;
                    group_sq[j] = pool_sq[trials[j]];
                    for (int64_t f = 0; f < d; ++f)
                        packed[(g * d + f) * POTENTIAL_CENTERS + q] = pool[trials[j] * d + f];
                }
            }
            if (m == 0) break;
#pragma omp for schedule(static)
            for (int64_t tile = 0; tile < n_tiles; ++tile)
                FN(potential_tile)(tile, m, d, n_padded, xt, row_sq, closest, weight, packed,
                                   group_sq, distances, tile_sums + tile * n_trials);
#pragma omp single
            {
                double least = INFINITY;
                best = 0;
                for (int64_t j = 0; j < m; ++j) {
                    double sum = 0.0;
                    for (int64_t tile = 0; tile < n_tiles; ++tile)
                        sum += tile_sums[tile * n_trials + j];
                    /* torch's argmin: the first minimum, or the first NaN */
                    if (least == least && !(sum >= least)) least = sum, best = j;
                }
                winners[steps++] = trials[best];
                next = trials[m - 1] + 1;
            }
            const T *winner = pool + trials[best] * d;
            const T winner_sq = pool_sq[trials[best]];
            const T *best_distances = distances + best * n_padded;
#pragma omp for schedule(static) nowait
            for (int64_t i = 0; i < n_padded; ++i) closest[i] = best_distances[i];
#pragma omp for schedule(static)
            for (int64_t p = next; p < n_pool; ++p) {
                const T *row = pool + p * d;
                T dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int64_t f = 0; f < d; ++f) dot += row[f] * winner[f];
                T gap = (pool_sq[p] - 2 * dot) + winner_sq;
                gap = gap < 0 ? 0 : gap;                                /* clamp_(min=0) */
                if (gap != gap || gap < pool_now[p]) pool_now[p] = gap; /* torch.minimum */
            }
        }
    }
    free(packed);
    free(group_sq);
    free(distances);
    free(tile_sums);
    free(trials);
    return steps;
}
#undef POTENTIAL_ROWS
#undef TRANSPOSE_STAGES
#undef TILE_DOTS
#undef TRANSPOSE_STAGE
#undef LANES_FROM
#undef VI
#undef TILE_ROWS
#undef VL
#else
int FN(tm_lloyd_tiled)(int64_t n_rows, int64_t k, int64_t d, const T *x, int64_t x_stride,
                       const T *centers, const T *sq_norms, const T *weight,
                       int64_t *labels, int incremental, double *acc, int n_acc,
                       T *best_out) {
    return 2; /* not built for this CPU: tm_tiled_vector_bytes() is 0 and it is never called */
}
int FN(tm_potential_tile_rows)(void) { return 0; }
int64_t FN(tm_seeding_steps)(int64_t n_tiles, int64_t d, const T *xt, const T *row_sq,
                             T *closest, const T *weight, int64_t n_pool, const T *pool,
                             const T *pool_sq, T *pool_now, const T *thresholds,
                             int64_t n_trials, int64_t max_steps, int64_t *winners) {
    return -2; /* not built for this CPU: never called */
}
#endif

/* Exact squared distances of rows to their centers, out[i] = sum_f (x[i, f] - c[labels[i], f])^2,
   summed in double (the inertia of a final assignment; no (rows, d) temporary). */
void FN(tm_sq_distances)(int64_t n_rows, int64_t d, const T *x, int64_t x_stride,
                         const T *centers, const int64_t *labels, T *out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n_rows; ++i) {
        const T *row = x + i * x_stride, *center = centers + labels[i] * d;
        double total = 0.0;
#pragma omp simd reduction(+ : total)
        for (int64_t f = 0; f < d; ++f) {
            const double difference = (double)row[f] - (double)center[f];
            total += difference * difference;
        }
        out[i] = (T)total;
    }
}

/* Elkan's pass (one lower bound per center; algorithm='elkan' with the native backend).
 *
 * The bounds are true distances: upper[i] >= ||x_i - c_label||, lower[i, j] <= ||x_i - c_j||
 * (lower[i, label] is +inf), as torchmeans/core/bounds.py keeps them. Per block of rows:
 * 1. move the bounds by the centers' drift (upper += drift[label], lower[j] -= drift[j]) and
 *    keep the rows whose upper bound fails max(min_j lower, 2 half_gap[label] - upper)
 *    within the margin (u^2 + 2E >= l^2, E the rounding bound of a score);
 * 2. tighten: their score against their own center, u^2 = s + ||x||^2 + E;
 * 3. the rows still failing get scores only for the centers j whose own bound fails,
 *    u^2 + 2E >= lower[i, j]^2 (Elkan's test per center), and take the first minimum of
 *    those scores and their own: a center skipped has a score strictly above the row's,
 *    so the label is Lloyd's first minimum. New exact bounds replace the computed ones.
 * Every score is computed as the direct and tiled kernels compute it (one FMA chain over
 * the features in order, then fma(-2, x.c, ||c||^2)), so labels equal a native Lloyd
 * pass's to the bit. The dot products of a block's (row, center) pairs run ELKAN_CHAINS at
 * a time as independent chains (a single chain waits on each FMA's latency).
 * counts[0] += rows tightened, counts[1] += rows whose other centers were tested.
 * Returns 1 when a buffer cannot be allocated (nothing is then changed). */
#ifndef ELKAN_CHAINS
#define ELKAN_CHAINS 8
#define ELKAN_PAIRS 16384 /* pairs buffered per block of rows: rows = PAIRS / k, 8..256 */
#endif

static void FN(pair_scores)(int64_t n, int64_t d, const T *x, int64_t x_stride,
                            const T *centers, const T *center_sq, const int32_t *row,
                            const int32_t *center, T *out) {
    int64_t p = 0;
    for (; p + ELKAN_CHAINS <= n; p += ELKAN_CHAINS) {
        const T *a[ELKAN_CHAINS], *c[ELKAN_CHAINS];
        T dot[ELKAN_CHAINS];
        for (int q = 0; q < ELKAN_CHAINS; ++q) {
            a[q] = x + (int64_t)row[p + q] * x_stride;
            c[q] = centers + (int64_t)center[p + q] * d;
            dot[q] = 0;
        }
        for (int64_t f = 0; f < d; ++f)
            for (int q = 0; q < ELKAN_CHAINS; ++q) dot[q] = FMA(a[q][f], c[q][f], dot[q]);
        for (int q = 0; q < ELKAN_CHAINS; ++q)
            out[p + q] = FMA((T)-2, dot[q], center_sq[center[p + q]]);
    }
    for (; p < n; ++p) {
        const T *a = x + (int64_t)row[p] * x_stride, *c = centers + (int64_t)center[p] * d;
        T dot = 0;
        for (int64_t f = 0; f < d; ++f) dot = FMA(a[f], c[f], dot);
        out[p] = FMA((T)-2, dot, center_sq[center[p]]);
    }
}

INLINE T FN(root)(T value) { return value > 0 ? (T)sqrt((double)value) : 0; }

int FN(tm_elkan_pass)(int64_t n_rows, int64_t k, int64_t d, const T *x, int64_t x_stride,
                      const T *row_sq, const T *margin, const T *centers, const T *center_sq,
                      const T *drift, const T *half_gaps, T *upper, T *lower,
                      int64_t *labels, int64_t *counts) {
    const int64_t block_rows = ELKAN_PAIRS / k < 8 ? 8 : ELKAN_PAIRS / k > 256 ? 256
                                                                          : ELKAN_PAIRS / k;
    const int64_t n_blocks = (n_rows + block_rows - 1) / block_rows;
    int failed = 0;
    int64_t tightened = 0, recomputed = 0;
#pragma omp parallel reduction(+ : tightened, recomputed)
    {
        const size_t pairs = (size_t)(block_rows * k);
        int32_t *pair_row = malloc(sizeof(int32_t) * pairs);
        int32_t *pair_center = malloc(sizeof(int32_t) * pairs);
        T *pair_score = malloc(sizeof(T) * pairs);
        int32_t *rows = malloc(sizeof(int32_t) * block_rows);
        T *own = malloc(sizeof(T) * block_rows), *bound = malloc(sizeof(T) * block_rows);
        if (!tm_any_failed(pair_row && pair_center && pair_score && rows && own && bound,
                           &failed)) {
#pragma omp for schedule(dynamic, 4)
            for (int64_t block = 0; block < n_blocks; ++block) {
                const int64_t begin = block * block_rows;
                const int64_t end = begin + block_rows < n_rows ? begin + block_rows : n_rows;
                /* 1. drift and the global test */
                int64_t n_fail = 0;
                for (int64_t i = begin; i < end; ++i) {
                    const int64_t a = labels[i];
                    const T u = upper[i] + drift[a];
                    T *l = lower + i * k, least = (T)INFINITY;
#pragma omp simd reduction(min : least)
                    for (int64_t j = 0; j < k; ++j) {
                        const T moved = l[j] - drift[j];
                        l[j] = moved;
                        least = moved < least ? moved : least;
                    }
                    const T hamerly = 2 * half_gaps[a] - u;
                    T lb = least > hamerly ? least : hamerly;
                    lb = lb > 0 ? lb : 0;
                    upper[i] = u;
                    if (u * u + 2 * margin[i] >= lb * lb) {
                        rows[n_fail] = (int32_t)i;
                        pair_row[n_fail] = (int32_t)i;
                        pair_center[n_fail] = (int32_t)a;
                        bound[n_fail++] = lb;
                    }
                }
                /* 2. tighten the upper bound to the row's own score */
                FN(pair_scores)(n_fail, d, x, x_stride, centers, center_sq, pair_row,
                                pair_center, own);
                tightened += n_fail;
                int64_t n_still = 0;
                for (int64_t t = 0; t < n_fail; ++t) {
                    const int64_t i = rows[t];
                    const T tight = own[t] + row_sq[i] + margin[i];
                    upper[i] = FN(root)(tight);
                    if (tight + 2 * margin[i] >= bound[t] * bound[t]) {
                        rows[n_still] = rows[t];
                        own[n_still++] = own[t];
                    }
                }
                recomputed += n_still;
                /* 3. Elkan's test per center, then the scores that are needed */
                int64_t n_pairs = 0;
                for (int64_t t = 0; t < n_still; ++t) {
                    const int64_t i = rows[t], a = labels[i];
                    const T limit = own[t] + row_sq[i] + 3 * margin[i]; /* u^2 + 2E */
                    const T *l = lower + i * k;
                    for (int64_t j = 0; j < k; ++j) {
                        const T lj = l[j] > 0 ? l[j] : 0;
                        if (lj * lj <= limit && j != a) {
                            pair_row[n_pairs] = (int32_t)i;
                            pair_center[n_pairs++] = (int32_t)j;
                        }
                    }
                }
                FN(pair_scores)(n_pairs, d, x, x_stride, centers, center_sq, pair_row,
                                pair_center, pair_score);
                for (int64_t t = 0, p = 0; t < n_still; ++t) {
                    const int64_t i = rows[t], a = labels[i];
                    T *l = lower + i * k, best = own[t];
                    int64_t label = a;
                    for (; p < n_pairs && pair_row[p] == i; ++p) {
                        const int64_t j = pair_center[p];
                        const T score = pair_score[p];
                        l[j] = FN(root)(score + row_sq[i] - margin[i]);
                        if (score < best || (score == best && j < label)) {
                            best = score;
                            label = j;
                        }
                    }
                    if (label != a) {
                        l[a] = FN(root)(own[t] + row_sq[i] - margin[i]);
                        l[label] = (T)INFINITY;
                        labels[i] = label;
                        upper[i] = FN(root)(best + row_sq[i] + margin[i]);
                    }
                }
            }
        }
        free(pair_row);
        free(pair_center);
        free(pair_score);
        free(rows);
        free(own);
        free(bound);
    }
    if (failed) return 1;
    counts[0] += tightened;
    counts[1] += recomputed;
    return 0;
}

#undef FN

#endif
