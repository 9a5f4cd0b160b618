/*
 * Compiled kernels for interval AGT on the CPU (mipcert/agt/kernels.py wraps them).
 *
 * row_reduce: for every row (o, j) of a weight block,
 *
 *     out[o, j] = sum of the k largest of max(0, v_i)      (k > 0), or sum of v_i (k = 0),
 *     v_i = (A - A2)[o, i] X1[j, i] + sign (B - B2)[o, i] X2[j, i]        (i = 0 .. n-1)
 *
 * (sign +-1; A2, B2 may be absent (zero); B, X2 may be absent; with X1 absent too,
 * v_i = (A - A2)[o, i]: a bias block, n_in = 1; the differences let the caller pass the
 * clean and perturbed delta bounds without forming their difference first),
 * which is what the bounded-poisoning / label-flip aggregation rule needs per parameter
 * (FORMULATIONS 3.5; mipcert/agt/stepbounds.py builds A, B, X1, X2). It is the number that
 * materialising the (rows, n) values in torch and calling torch.topk gives, without storing
 * the values: a heap of the k largest, started at k zeros (max(0, .) pads a row with fewer
 * than k positive values), fed in two passes (long_topk_sum). row_reduce does several such
 * problems of one layer in one call: the rows that share arrays (those of one o, or of one
 * j) are reduced together, block of samples by block (flush_group), so that each array is
 * read from memory once; samples where every row's coefficients are zero are skipped.
 * With a producer, the coefficient rows of each o (the layer's delta bounds) are not read
 * at all but computed by the kernel, unit by unit, into a buffer that stays in the cache
 * (produce_unit): this pass is bound by memory traffic, not arithmetic.
 *
 * relu_gate: the ReLU derivative applied in place to delta bounds (see gate_pair).
 *
 * A row that meets a NaN gets NaN (so the caller's divergence check stops the run instead
 * of the value being dropped silently); an infinity enters the heap like any value.
 *
 * Arrays are C-contiguous float64: A, A2, B, B2 (n_out, n); X1, X2 (n_in, n);
 * out (n_out, n_in).
 * The Python wrapper checks shapes, dtypes and devices and passes data pointers; the GIL is
 * released while a kernel runs. Built with OpenMP, a call runs on torch's own OpenMP thread
 * team (the runtime is loaded once). On x86-64 CPUs with AVX2 the scans run four samples per
 * instruction (chosen at run time; the build itself needs no special flags), with the
 * scalar path's operations in the same order, so both give the same bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Put v at node i of the min-heap h[0..k), whose subtrees below i are heaps, and sift it
 * down. */
static inline void heap_sift(double *h, Py_ssize_t k, Py_ssize_t i, double v)
{
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= k)
            break;
        if (c + 1 < k && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* Replace the smallest entry h[0] of the min-heap h[0..k) by v and restore the heap. */
static inline void heap_replace_min(double *h, Py_ssize_t k, double v)
{
    heap_sift(h, k, 0, v);
}

/* Offer v to the heap of the k largest; a NaN marks the row bad. */
static inline void offer(double *heap, Py_ssize_t k, double v, int *bad)
{
    if (!(v <= heap[0])) {
        if (v != v)
            *bad = 1;
        else
            heap_replace_min(heap, k, v);
    }
}

/* One row (o, j): v_i = (a - a2)[i] x1[i] + sign (b - b2)[i] x2[i]; x1 NULL: v_i =
 * (a - a2)[i]; b NULL: no second term; a2 / b2 NULL: zero. */
typedef struct {
    const double *a, *a2, *x1, *b, *b2, *x2;
    double sign;
} row_t;

static inline double coef_a(const row_t *r, Py_ssize_t i)
{
    return r->a2 ? r->a[i] - r->a2[i] : r->a[i];
}

static inline double coef_b(const row_t *r, Py_ssize_t i)
{
    return r->b2 ? r->b[i] - r->b2[i] : r->b[i];
}

static inline double value(const row_t *r, Py_ssize_t i)
{
    if (r->x1 == NULL)
        return coef_a(r, i);
    double v = coef_a(r, i) * r->x1[i];
    if (r->b != NULL)
        v += r->sign * (coef_b(r, i) * r->x2[i]);
    return v;
}

static void scan_scalar(const row_t *r, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t k,
                        double *heap, int *bad)
{
    for (Py_ssize_t i = i0; i < i1; i++)
        offer(heap, k, value(r, i), bad);
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
__attribute__((target("avx2"))) static inline __m256d load_coef(const double *p,
                                                               const double *p2,
                                                               Py_ssize_t i)
{
    const __m256d c = _mm256_loadu_pd(p + i);
    return p2 ? _mm256_sub_pd(c, _mm256_loadu_pd(p2 + i)) : c;
}

/* v for samples i .. i+3, with the scalar path's operations in the same order */
__attribute__((target("avx2"))) static inline __m256d vals4(const row_t *r, Py_ssize_t i,
                                                           __m256d sg)
{
    if (r->x1 == NULL)
        return load_coef(r->a, r->a2, i);
    __m256d v = _mm256_mul_pd(load_coef(r->a, r->a2, i), _mm256_loadu_pd(r->x1 + i));
    if (r->b != NULL)
        v = _mm256_add_pd(v, _mm256_mul_pd(sg, _mm256_mul_pd(load_coef(r->b, r->b2, i),
                                                             _mm256_loadu_pd(r->x2 + i))));
    return v;
}

/* The same scan, four samples per vector and eight per test: the common case (no value
 * above the heap's smallest entry) is a few vector instructions and a predicted branch.
 * The arithmetic is the scalar path's (no fused multiply-add), so both give equal sums. */
__attribute__((target("avx2"))) static void scan_avx2(const row_t *r, Py_ssize_t i0,
                                                      Py_ssize_t i1, Py_ssize_t k,
                                                      double *heap, int *bad)
{
    const __m256d sg = _mm256_set1_pd(r->sign);
    __m256d t = _mm256_set1_pd(heap[0]);
    Py_ssize_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256d v0 = vals4(r, i, sg), v1 = vals4(r, i + 4, sg);
        /* NLE_UQ: true for v > t and for NaN */
        const __m256d hit = _mm256_or_pd(_mm256_cmp_pd(v0, t, _CMP_NLE_UQ),
                                         _mm256_cmp_pd(v1, t, _CMP_NLE_UQ));
        if (__builtin_expect(_mm256_movemask_pd(hit) != 0, 0)) {
            double buf[8];
            _mm256_storeu_pd(buf, v0);
            _mm256_storeu_pd(buf + 4, v1);
            for (int q = 0; q < 8; q++)
                offer(heap, k, buf[q], bad);
            t = _mm256_set1_pd(heap[0]);
        }
    }
    scan_scalar(r, i, i1, k, heap, bad);
}
#endif

static int use_avx2 = 0;

/* The two-level scan works on blocks of BLK consecutive samples (a multiple of 32: eight
 * AVX2 vectors). */
#define BLK 32

/* Rows reduced together, block by block (a group): the arrays they share are then read
 * from memory once per block instead of once per row. */
#define GROUP 16

/* ------------------------------------------------------------------ one block of a row
 * Pass 1 of a row visits its blocks: a top-k row (k > 0) records each block's maximum, a
 * sum row (k = 0) adds the block's values into four lane sums (lane q: the samples
 * i0 + 4 t + q, in order of t). */

/* The maximum of v over [i, i + len) (setting *nan if a value is NaN), and the lane sums
 * s[(q - i0) mod 4] += v_q, *tail += the values after the last full group of four. */
static double block_max_scalar(const row_t *r, Py_ssize_t i, Py_ssize_t len, int *nan)
{
    double mx = -INFINITY;
    for (Py_ssize_t q = i; q < i + len; q++) {
        const double v = value(r, q);
        *nan |= v != v;
        mx = v > mx ? v : mx;
    }
    return mx;
}

static void block_sum_scalar(const row_t *r, Py_ssize_t i, Py_ssize_t len, double *s,
                             double *tail)
{
    const Py_ssize_t full = len - len % 4;
    for (Py_ssize_t q = 0; q < full; q += 4)
        for (int l = 0; l < 4; l++)
            s[l] += value(r, i + q + l);
    for (Py_ssize_t q = full; q < len; q++)
        *tail += value(r, i + q);
}

/* The sum of the lane sums and the tail, in a fixed order. */
static double lane_total(const double *s, double tail)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + tail;
}

typedef double (*block_max_fn)(const row_t *r, Py_ssize_t i, int *nan);
typedef void (*block_sum_fn)(const row_t *r, Py_ssize_t i, double *s);

#ifdef HAVE_AVX2_PATH
/* v for samples i .. i+3 of a row of a fixed form: the flags are compile-time constants at
 * every call below, so each form gets its own branch-free code (sign +-1 is an add or a
 * subtract, which gives the bits of the multiply by the sign in value()). */
__attribute__((target("avx2"), always_inline)) static inline __m256d
vals4_form(const row_t *r, Py_ssize_t i, const int X1, const int B, const int A2,
           const int B2, const int NEG)
{
    __m256d a = _mm256_loadu_pd(r->a + i);
    if (A2)
        a = _mm256_sub_pd(a, _mm256_loadu_pd(r->a2 + i));
    if (!X1)
        return a;
    a = _mm256_mul_pd(a, _mm256_loadu_pd(r->x1 + i));
    if (!B)
        return a;
    __m256d b = _mm256_loadu_pd(r->b + i);
    if (B2)
        b = _mm256_sub_pd(b, _mm256_loadu_pd(r->b2 + i));
    b = _mm256_mul_pd(b, _mm256_loadu_pd(r->x2 + i));
    return NEG ? _mm256_sub_pd(a, b) : _mm256_add_pd(a, b);
}

/* Per form: the maximum of one full block of BLK = 32 samples (eight vectors, setting
 * *nan if a value is NaN), and its values added into the lane sums s[0..4). */
#define BLOCK_FORM(NAME, X1, B, A2, B2, NEG)                                                \
    __attribute__((target("avx2"))) static double bmax_##NAME(const row_t *r, Py_ssize_t i, \
                                                               int *nan)                    \
    {                                                                                       \
        __m256d v[8];                                                                       \
        for (int q = 0; q < 8; q++)                                                         \
            v[q] = vals4_form(r, i + 4 * q, X1, B, A2, B2, NEG);                            \
        const __m256d u = _mm256_or_pd(                                                     \
            _mm256_or_pd(_mm256_cmp_pd(v[0], v[1], _CMP_UNORD_Q),                           \
                         _mm256_cmp_pd(v[2], v[3], _CMP_UNORD_Q)),                          \
            _mm256_or_pd(_mm256_cmp_pd(v[4], v[5], _CMP_UNORD_Q),                           \
                         _mm256_cmp_pd(v[6], v[7], _CMP_UNORD_Q)));                         \
        __m256d m = _mm256_max_pd(                                                          \
            _mm256_max_pd(_mm256_max_pd(v[0], v[1]), _mm256_max_pd(v[2], v[3])),            \
            _mm256_max_pd(_mm256_max_pd(v[4], v[5]), _mm256_max_pd(v[6], v[7])));           \
        m = _mm256_max_pd(m, _mm256_permute2f128_pd(m, m, 1));                              \
        m = _mm256_max_pd(m, _mm256_permute_pd(m, 5));                                      \
        *nan |= _mm256_movemask_pd(u);                                                      \
        return _mm256_cvtsd_f64(m);                                                         \
    }                                                                                       \
    __attribute__((target("avx2"))) static void bsum_##NAME(const row_t *r, Py_ssize_t i,   \
                                                            double *s)                      \
    {                                                                                       \
        __m256d acc = _mm256_loadu_pd(s);                                                   \
        for (int q = 0; q < 8; q++)                                                         \
            acc = _mm256_add_pd(acc, vals4_form(r, i + 4 * q, X1, B, A2, B2, NEG));         \
        _mm256_storeu_pd(s, acc);                                                           \
    }

BLOCK_FORM(a, 0, 0, 0, 0, 0)
BLOCK_FORM(a_a2, 0, 0, 1, 0, 0)
BLOCK_FORM(ax, 1, 0, 0, 0, 0)
BLOCK_FORM(ax_a2, 1, 0, 1, 0, 0)
BLOCK_FORM(axbx, 1, 1, 0, 0, 0)
BLOCK_FORM(axbx_neg, 1, 1, 0, 0, 1)
BLOCK_FORM(axbx_b2, 1, 1, 0, 1, 0)
BLOCK_FORM(axbx_b2_neg, 1, 1, 0, 1, 1)
BLOCK_FORM(axbx_a2, 1, 1, 1, 0, 0)
BLOCK_FORM(axbx_a2_neg, 1, 1, 1, 0, 1)
BLOCK_FORM(axbx_a2b2, 1, 1, 1, 1, 0)
BLOCK_FORM(axbx_a2b2_neg, 1, 1, 1, 1, 1)

/* The block functions of a row's form (index into the tables below; sign is +-1). */
static int form_of(const row_t *r)
{
    const int a2 = r->a2 != NULL, b2 = r->b2 != NULL, neg = r->sign == -1.0;
    if (r->x1 == NULL)
        return a2;
    if (r->b == NULL)
        return 2 + a2;
    return 4 + 4 * a2 + 2 * b2 + neg;
}

static const block_max_fn bmax_form[12] = {
    bmax_a, bmax_a_a2, bmax_ax, bmax_ax_a2, bmax_axbx, bmax_axbx_neg, bmax_axbx_b2,
    bmax_axbx_b2_neg, bmax_axbx_a2, bmax_axbx_a2_neg, bmax_axbx_a2b2, bmax_axbx_a2b2_neg};
static const block_sum_fn bsum_form[12] = {
    bsum_a, bsum_a_a2, bsum_ax, bsum_ax_a2, bsum_axbx, bsum_axbx_neg, bsum_axbx_b2,
    bsum_axbx_b2_neg, bsum_axbx_a2, bsum_axbx_a2_neg, bsum_axbx_a2b2, bsum_axbx_a2b2_neg};
#endif

/* ------------------------------------------------------------------ top-k selection */

/* Offer the values v >= floor of the block [i, i + len) to the heap (those above its
 * smallest entry enter; no NaN check: pass 1 has made it). */
static void offer_block_scalar(const row_t *r, Py_ssize_t i, Py_ssize_t len, Py_ssize_t k,
                               double *heap, double floor)
{
    for (Py_ssize_t q = i; q < i + len; q++) {
        const double v = value(r, q);
        if (v > heap[0] && v >= floor)
            heap_replace_min(heap, k, v);
    }
}

#ifdef HAVE_AVX2_PATH
/* The same for a full block, testing four values per instruction against the heap's
 * smallest entry. */
__attribute__((target("avx2"))) static void offer_block_avx2(const row_t *r, Py_ssize_t i,
                                                             Py_ssize_t k, double *heap,
                                                             double floor)
{
    const __m256d sg = _mm256_set1_pd(r->sign), fl = _mm256_set1_pd(floor);
    for (int q = 0; q < BLK; q += 4) {
        const __m256d v = vals4(r, i + q, sg);
        const __m256d hit = _mm256_and_pd(_mm256_cmp_pd(v, _mm256_set1_pd(heap[0]), _CMP_GT_OQ),
                                          _mm256_cmp_pd(v, fl, _CMP_GE_OQ));
        if (_mm256_movemask_pd(hit)) {
            double buf[4];
            _mm256_storeu_pd(buf, v);
            for (int t = 0; t < 4; t++)
                if (buf[t] > heap[0] && buf[t] >= floor)
                    heap_replace_min(heap, k, buf[t]);
        }
    }
}
#endif

/* Insertion sort of the block indices c[0 .. m) by decreasing bm[c]; m is about k. */
static void sort_by_max(Py_ssize_t *c, Py_ssize_t m, const double *bm)
{
    for (Py_ssize_t a = 1; a < m; a++) {
        const Py_ssize_t g = c[a];
        Py_ssize_t b = a;
        for (; b > 0 && bm[c[b - 1]] < bm[g]; b--)
            c[b] = c[b - 1];
        c[b] = g;
    }
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sort increasing: insertion sort for a small k, else qsort. */
static void sort_increasing(double *h, Py_ssize_t k)
{
    if (k > 32) {
        qsort(h, (size_t)k, sizeof(double), cmp_double);
        return;
    }
    for (Py_ssize_t a = 1; a < k; a++) {
        const double v = h[a];
        Py_ssize_t b = a;
        for (; b > 0 && h[b - 1] > v; b--)
            h[b] = h[b - 1];
        h[b] = v;
    }
}

/* The heap's entries summed in increasing order (so that both scans give the same bits),
 * or NaN for a row that met one. */
static double heap_sum(double *heap, Py_ssize_t k, int bad)
{
    if (bad)
        return NAN;
    sort_increasing(heap, k);
    double s = 0.0;
    for (Py_ssize_t q = 0; q < k; q++)
        s += heap[q];
    return s;
}

/* Sum of the k largest of max(0, v_i), i in [i0, i1), of a short row (fewer than k full
 * blocks): one scan offering every value to a heap of k, started at k zeros. */
static double short_topk_sum(const row_t *r, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t k,
                             double *heap)
{
    int bad = 0;
    for (Py_ssize_t q = 0; q < k; q++)
        heap[q] = 0.0;
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        scan_avx2(r, i0, i1, k, heap, &bad);
    else
#endif
        scan_scalar(r, i0, i1, k, heap, &bad);
    return heap_sum(heap, k, bad);
}

/* Pass 2 of a long row: the sum of the k largest of max(0, v_i), i in [i0, i1), given the
 * maxima bm[0 .. nb) of its blocks (pass 1, nb >= k).
 *
 * tau is the k-th largest block maximum; only the blocks whose maximum is >= tau (and > 0:
 * the heap starts at k zeros, for max(0, .)) are computed again, largest maximum first, and
 * their values >= tau offered to the heap. This is exact: the k largest block maxima are k
 * values >= tau, so the k-th largest value is >= tau, and every value of the k largest lies
 * in a block whose maximum is >= tau. With pass 1 the row costs little more than computing
 * each value once, and no value is stored. top, cand: scratch of k doubles, nb indices. */
static double long_topk_sum(const row_t *r, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t k,
                            const double *bm, Py_ssize_t nb, double *heap, double *top,
                            Py_ssize_t *cand)
{
    /* tau: a min-heap of the k largest maxima, built from the first k */
    for (Py_ssize_t q = 0; q < k; q++)
        top[q] = bm[q];
    for (Py_ssize_t q = k / 2 - 1; q >= 0; q--)
        heap_sift(top, k, q, top[q]);
    for (Py_ssize_t g = k; g < nb; g++)
        if (bm[g] > top[0])
            heap_replace_min(top, k, bm[g]);
    const double tau = top[0];
    Py_ssize_t nc = 0;
    for (Py_ssize_t g = 0; g < nb; g++)
        if (bm[g] >= tau && bm[g] > 0.0)
            cand[nc++] = g;
    /* largest maximum first: the heap then fills with the largest values early, and most
     * later candidates fail the test against its smallest entry */
    sort_by_max(cand, nc, bm);
    for (Py_ssize_t q = 0; q < k; q++)
        heap[q] = 0.0;
    for (Py_ssize_t c = 0; c < nc; c++) {
        const Py_ssize_t g = cand[c], i = i0 + g * BLK;
        if (!(bm[g] > heap[0]))
            break;
#ifdef HAVE_AVX2_PATH
        if (use_avx2 && i + BLK <= i1)
            offer_block_avx2(r, i, k, heap, tau);
        else
#endif
            offer_block_scalar(r, i, i + BLK <= i1 ? BLK : i1 - i, k, heap, tau);
    }
    return heap_sum(heap, k, 0);
}

/* Whether both coefficients of the row are exactly zero at sample i (a NaN is not zero). */
static inline int zero_at(const row_t *r, Py_ssize_t i)
{
    return coef_a(r, i) == 0.0 && (r->b == NULL || coef_b(r, i) == 0.0);
}

#ifdef HAVE_AVX2_PATH
/* Whether they are zero at all of the samples i .. i+3. */
__attribute__((target("avx2"))) static inline int zero4(const row_t *r, Py_ssize_t i)
{
    const __m256d z = _mm256_setzero_pd();
    __m256d nz = _mm256_cmp_pd(load_coef(r->a, r->a2, i), z, _CMP_NEQ_UQ);
    if (r->b != NULL)
        nz = _mm256_or_pd(nz, _mm256_cmp_pd(load_coef(r->b, r->b2, i), z, _CMP_NEQ_UQ));
    return _mm256_movemask_pd(nz) == 0;
}
#endif

/* Widen [*i0, *i1) (empty: *i0 >= *i1) to take in the support of the row: the samples
 * outside which both its coefficients are exactly zero. Only the samples outside the
 * current range are looked at, so the union over a group costs little once one row's
 * support is wide. */
static void widen_support(const row_t *r, Py_ssize_t n, Py_ssize_t *i0, Py_ssize_t *i1)
{
    const int empty = *i0 >= *i1;
    const Py_ssize_t lim = empty ? n : *i0;   /* first nonzero before lim */
    Py_ssize_t lo = 0;
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        while (lo + 4 <= lim && zero4(r, lo))
            lo += 4;
#endif
    while (lo < lim && zero_at(r, lo))
        lo++;
    if (lo == n)                              /* the row is all zero */
        return;
    const Py_ssize_t floor = empty ? lo : (*i1 > lo ? *i1 : lo);
    Py_ssize_t hi = n;                        /* last nonzero at or after floor */
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        while (hi - 4 >= floor && zero4(r, hi - 4))
            hi -= 4;
#endif
    while (hi > floor && zero_at(r, hi - 1))
        hi--;
    if (empty) {
        *i0 = lo;
        *i1 = hi;
    } else {
        *i0 = lo < *i0 ? lo : *i0;
        *i1 = hi > *i1 ? hi : *i1;
    }
}

/* ------------------------------------------------------------------ problems and groups */

/* One problem of row_reduce: out[o, j] for the rows of one block (see row_reduce). With a
 * producer, a, a2, b, b2 are slots (1 .. 4: the unit's rows cl, cu, pl, pu; 0: absent). */
typedef struct {
    uint64_t a, a2, x1, b, b2, x2, out;
    int64_t n_in, k;
    double sign;
} problem_t;

/* The producer of a layer's delta bounds, unit by unit (the backward pass through the layer
 * above and the ReLU derivative, see produce_unit): plo, phi (n_out, K); zc, zp (K, n);
 * al, au (n_out, n) (au 0: a point). */
typedef struct {
    uint64_t plo, phi, zc, zp, al, au;
    int64_t K;
} producer_t;

/* Per-thread scratch of row_reduce. */
typedef struct {
    row_t rows[GROUP];          /* the rows of the group being filled */
    double *outs[GROUP];        /* where each one's result goes */
    Py_ssize_t ks[GROUP];       /* its k (0: a plain sum) */
    int R;                      /* rows in the group */
    double *heap, *top, *bm;    /* k, k, GROUP * (n / BLK + 1) doubles */
    Py_ssize_t *cand;           /* n / BLK + 1 */
    double *unit;               /* the produced rows cl, cu, pl, pu of a unit: 4 n */
    Py_ssize_t n;
} work_t;

static const double *coef_row(const work_t *w, uint64_t f, Py_ssize_t o)
{
    if (f == 0)
        return NULL;
    if (w->unit)
        return w->unit + (Py_ssize_t)(f - 1) * w->n;
    return (const double *)(uintptr_t)f + o * w->n;
}

static void row_of(const work_t *w, const problem_t *p, Py_ssize_t o, Py_ssize_t j,
                   row_t *r)
{
    r->a = coef_row(w, p->a, o);
    r->a2 = coef_row(w, p->a2, o);
    r->b = coef_row(w, p->b, o);
    r->b2 = coef_row(w, p->b2, o);
    r->x1 = p->x1 ? (const double *)(uintptr_t)p->x1 + j * w->n : NULL;
    r->x2 = p->x2 ? (const double *)(uintptr_t)p->x2 + j * w->n : NULL;
    r->sign = p->sign;
}

/* Pass 1 of the group's R rows over [i0, i1) (G full blocks, nb blocks with the partial
 * one): block by block, all rows, so that a block's data is read from memory once. Top-k
 * rows get their block maxima bm[c * nb + g] (nan[c] set on a NaN), sum rows their lane
 * sums s[4 c ..] and tail t[c]. */
static void group_pass(const work_t *w, int R, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t nb,
                       int *nan, double *s, double *t)
{
    const Py_ssize_t G = (i1 - i0) / BLK;
    const row_t *rows = w->rows;
    double *bm = w->bm;
#ifdef HAVE_AVX2_PATH
    if (use_avx2) {
        int form[GROUP];
        for (int c = 0; c < R; c++)
            form[c] = form_of(rows + c);
        for (Py_ssize_t g = 0; g < G; g++)
            for (int c = 0; c < R; c++) {
                if (w->ks[c])
                    bm[c * nb + g] = bmax_form[form[c]](rows + c, i0 + g * BLK, nan + c);
                else
                    bsum_form[form[c]](rows + c, i0 + g * BLK, s + 4 * c);
            }
    } else
#endif
        for (Py_ssize_t g = 0; g < G; g++)
            for (int c = 0; c < R; c++) {
                if (w->ks[c])
                    bm[c * nb + g] = block_max_scalar(rows + c, i0 + g * BLK, BLK, nan + c);
                else
                    block_sum_scalar(rows + c, i0 + g * BLK, BLK, s + 4 * c, t + c);
            }
    if (nb > G)
        for (int c = 0; c < R; c++) {
            if (w->ks[c])
                bm[c * nb + G] = block_max_scalar(rows + c, i0 + G * BLK, i1 - i0 - G * BLK,
                                                  nan + c);
            else
                block_sum_scalar(rows + c, i0 + G * BLK, i1 - i0 - G * BLK, s + 4 * c, t + c);
        }
}

/* Reduce the rows of the group: over their common support (samples outside it are zero in
 * every row, and v = 0 adds nothing to a sum and never enters a heap started at zeros),
 * pass 1 for all rows at once, then pass 2 of each top-k row. */
static void flush_group(work_t *w)
{
    const int R = w->R;
    Py_ssize_t i0 = 0, i1 = 0, kmax = 0;
    for (int c = 0; c < R; c++) {
        widen_support(w->rows + c, w->n, &i0, &i1);
        kmax = w->ks[c] > kmax ? w->ks[c] : kmax;
    }
    w->R = 0;
    if (i1 <= i0) {             /* every coefficient is zero */
        for (int c = 0; c < R; c++)
            *w->outs[c] = 0.0;
        return;
    }
    const Py_ssize_t G = (i1 - i0) / BLK, nb = G + ((i1 - i0) % BLK != 0);
    int nan[GROUP] = {0};
    double s[4 * GROUP] = {0.0}, t[GROUP] = {0.0};
    if (G < kmax) {             /* short rows: one scan each */
        for (int c = 0; c < R; c++) {
            if (w->ks[c])
                *w->outs[c] = short_topk_sum(w->rows + c, i0, i1, w->ks[c], w->heap);
            else {
                block_sum_scalar(w->rows + c, i0, i1 - i0, s + 4 * c, t + c);
                *w->outs[c] = lane_total(s + 4 * c, t[c]);
            }
        }
        return;
    }
    group_pass(w, R, i0, i1, nb, nan, s, t);
    for (int c = 0; c < R; c++) {
        if (w->ks[c] == 0)
            *w->outs[c] = lane_total(s + 4 * c, t[c]);
        else
            *w->outs[c] = nan[c] ? NAN
                                 : long_topk_sum(w->rows + c, i0, i1, w->ks[c],
                                                 w->bm + c * nb, nb, w->heap, w->top, w->cand);
    }
}

/* Row (o, j) of problem p into the group. */
static void add_row(work_t *w, const problem_t *p, Py_ssize_t o, Py_ssize_t j)
{
    row_of(w, p, o, j, w->rows + w->R);
    w->outs[w->R] = (double *)(uintptr_t)p->out + o * p->n_in + j;
    w->ks[w->R] = p->k;
    if (++w->R == GROUP)
        flush_group(w);
}

/* ------------------------------------------------------------------ ReLU backward gate
 * In place, for the delta bounds [lo, hi] of a hidden layer's units (unit-major (width, n),
 * flattened) and the ReLU derivative s in [H(h_lo), H(h_hi)] (H(x) = 1[x > 0]), given by the
 * layer's *post*-activation bounds al = max(h_lo, 0), au = max(h_hi, 0) (al > 0 iff h_lo > 0):
 *
 *     surely on  (al > 0):            [lo, hi]
 *     unstable   (al <= 0 < au):      [min(lo, 0), max(hi, 0)]
 *     surely off (au <= 0):           [0, 0]
 *
 * (the exact product of an interval with s in {0, 1}: mipcert.bounds.interval.mul_heaviside).
 * Written as ``lo' = (on ? lo : min(lo, 0)) * maybe`` so that a NaN stays a NaN (and an
 * infinity times a surely-off gate gives NaN), as the torch path does: the caller's
 * divergence check then fires instead of a bad value being dropped. au NULL: a point
 * activation (au = al). lo2 / hi2: a second pair with the same gates (NULL: none). */
#define GATE_TILE 2048

/* One element: l, h the delta bounds, al, au the post-activation bounds. */
static inline void gate_one(double l, double h, double al, double au, double *lo, double *hi)
{
    const double maybe = au > 0.0 ? 1.0 : 0.0;
    const int on = al > 0.0;
    *lo = (on ? l : (l > 0.0 ? 0.0 : l)) * maybe;
    *hi = (on ? h : (h < 0.0 ? 0.0 : h)) * maybe;
}

#ifdef HAVE_AVX2_PATH
/* Four elements of the ReLU derivative (gate_one), branch-free: the gates of a hidden
 * layer follow no pattern a branch predictor could learn. min(l, 0) / max(h, 0) keep a NaN
 * (0 is blended in only where l > 0 / h < 0), as the torch path does. */
__attribute__((target("avx2"), always_inline)) static inline void
gate4(__m256d l, __m256d h, __m256d on, __m256d maybe, double *lo, double *hi)
{
    const __m256d zero = _mm256_setzero_pd();
    const __m256d l0 = _mm256_blendv_pd(l, zero, _mm256_cmp_pd(l, zero, _CMP_GT_OQ));
    const __m256d h0 = _mm256_blendv_pd(h, zero, _mm256_cmp_pd(h, zero, _CMP_LT_OQ));
    _mm256_storeu_pd(lo, _mm256_mul_pd(_mm256_blendv_pd(l0, l, on), maybe));
    _mm256_storeu_pd(hi, _mm256_mul_pd(_mm256_blendv_pd(h0, h, on), maybe));
}
#endif

static void gate_pair_scalar(double *restrict lo, double *restrict hi,
                             const double *restrict al, const double *restrict au,
                             Py_ssize_t e0, Py_ssize_t e1)
{
    for (Py_ssize_t e = e0; e < e1; e++)
        gate_one(lo[e], hi[e], al[e], au ? au[e] : al[e], lo + e, hi + e);
}

#ifdef HAVE_AVX2_PATH
/* The same, four elements per instruction (gate4). */
__attribute__((target("avx2"))) static void gate_pair_avx2(double *restrict lo,
                                                           double *restrict hi,
                                                           const double *restrict al,
                                                           const double *restrict au,
                                                           Py_ssize_t e0, Py_ssize_t e1)
{
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    Py_ssize_t e = e0;
    for (; e + 4 <= e1; e += 4) {
        const __m256d a = _mm256_loadu_pd(al + e);
        const __m256d on = _mm256_cmp_pd(a, zero, _CMP_GT_OQ);
        const __m256d maybe = _mm256_and_pd(
            _mm256_cmp_pd(au ? _mm256_loadu_pd(au + e) : a, zero, _CMP_GT_OQ), one);
        gate4(_mm256_loadu_pd(lo + e), _mm256_loadu_pd(hi + e), on, maybe, lo + e, hi + e);
    }
    gate_pair_scalar(lo, hi, al, au, e, e1);
}
#endif

static void gate_pair(double *lo, double *hi, const double *al, const double *au,
                      Py_ssize_t e0, Py_ssize_t e1)
{
#ifdef HAVE_AVX2_PATH
    if (use_avx2) {
        gate_pair_avx2(lo, hi, al, au, e0, e1);
        return;
    }
#endif
    gate_pair_scalar(lo, hi, al, au, e0, e1);
}

/* ------------------------------------------------------------------ a produced layer */

/* Samples [i0, n) of produce_unit: lo = plo . z[:, i], hi = phi . z[:, i] (products added
 * in order of q) for z = zc and zp, each pair gated. */
static void produce_scalar(const double *plo, const double *phi, const double *zc,
                           const double *zp, const double *al, const double *au,
                           Py_ssize_t K, Py_ssize_t n, Py_ssize_t i0, double *cl, double *cu,
                           double *pl, double *pu)
{
    for (Py_ssize_t i = i0; i < n; i++) {
        double l = plo[0] * zc[i], h = phi[0] * zc[i];
        double l2 = plo[0] * zp[i], h2 = phi[0] * zp[i];
        for (Py_ssize_t q = 1; q < K; q++) {
            l += plo[q] * zc[q * n + i];
            h += phi[q] * zc[q * n + i];
            l2 += plo[q] * zp[q * n + i];
            h2 += phi[q] * zp[q * n + i];
        }
        const double u = au ? au[i] : al[i];
        gate_one(l, h, al[i], u, cl + i, cu + i);
        gate_one(l2, h2, al[i], u, pl + i, pu + i);
    }
}

#ifdef HAVE_AVX2_PATH
/* The same, four samples per instruction, the operations in the same order. */
__attribute__((target("avx2"))) static void produce_avx2(const double *plo, const double *phi,
                                                         const double *zc, const double *zp,
                                                         const double *al, const double *au,
                                                         Py_ssize_t K, Py_ssize_t n,
                                                         double *cl, double *cu, double *pl,
                                                         double *pu)
{
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d p = _mm256_set1_pd(plo[0]), r = _mm256_set1_pd(phi[0]);
        __m256d z = _mm256_loadu_pd(zc + i), z2 = _mm256_loadu_pd(zp + i);
        __m256d l = _mm256_mul_pd(p, z), h = _mm256_mul_pd(r, z);
        __m256d l2 = _mm256_mul_pd(p, z2), h2 = _mm256_mul_pd(r, z2);
        for (Py_ssize_t q = 1; q < K; q++) {
            p = _mm256_set1_pd(plo[q]);
            r = _mm256_set1_pd(phi[q]);
            z = _mm256_loadu_pd(zc + q * n + i);
            z2 = _mm256_loadu_pd(zp + q * n + i);
            l = _mm256_add_pd(l, _mm256_mul_pd(p, z));
            h = _mm256_add_pd(h, _mm256_mul_pd(r, z));
            l2 = _mm256_add_pd(l2, _mm256_mul_pd(p, z2));
            h2 = _mm256_add_pd(h2, _mm256_mul_pd(r, z2));
        }
        const __m256d a = _mm256_loadu_pd(al + i);
        const __m256d on = _mm256_cmp_pd(a, zero, _CMP_GT_OQ);
        const __m256d maybe = _mm256_and_pd(
            _mm256_cmp_pd(au ? _mm256_loadu_pd(au + i) : a, zero, _CMP_GT_OQ), one);
        gate4(l, h, on, maybe, cl + i, cu + i);
        gate4(l2, h2, on, maybe, pl + i, pu + i);
    }
    produce_scalar(plo, phi, zc, zp, al, au, K, n, i, cl, cu, pl, pu);
}
#endif

/* The delta bounds of unit o of a layer, into w->unit (rows cl, cu, pl, pu): the backward
 * pass through the layer above, lo = plo[o, :] z, hi = phi[o, :] z (K terms: the stacked
 * forms of stepbounds._backprop, with z = zc for the clean bounds and zp for the perturbed
 * ones), times the ReLU derivative of the unit (as relu_gate). The rows live in the
 * thread's scratch, in the cache, and never reach memory. */
static void produce_unit(work_t *w, const producer_t *pr, Py_ssize_t o)
{
    const Py_ssize_t n = w->n, K = pr->K;
    const double *plo = (const double *)(uintptr_t)pr->plo + o * K;
    const double *phi = (const double *)(uintptr_t)pr->phi + o * K;
    const double *al = (const double *)(uintptr_t)pr->al + o * n;
    const double *au = pr->au ? (const double *)(uintptr_t)pr->au + o * n : NULL;
    const double *zc = (const double *)(uintptr_t)pr->zc, *zp = (const double *)(uintptr_t)pr->zp;
    double *cl = w->unit, *cu = cl + n, *pl = cu + n, *pu = pl + n;
#ifdef HAVE_AVX2_PATH
    if (use_avx2)
        produce_avx2(plo, phi, zc, zp, al, au, K, n, cl, cu, pl, pu);
    else
#endif
        produce_scalar(plo, phi, zc, zp, al, au, K, n, 0, cl, cu, pl, pu);
}

/* row_reduce(problems, n_out, n, order, threads, producer): several reductions over the
 * rows of blocks that share n_out and n (and typically their arrays): problem p gives
 * out_p[o, j] = the top-k sum of max(0, v) (k > 0) or the sum of v (k = 0) for the row
 * (o, j) of its bilinear form (row_t), for o < n_out and j < n_in_p.
 * order 0: o outer (the rows of one o, which share its coefficient rows, are reduced
 * together); 1: j outer (the rows of one j, which share its input rows: for blocks with
 * few outputs and many inputs). producer (bytes of a producer_t, or None; order 0 only):
 * the coefficient rows of each o are produced by produce_unit, and the problems' a, a2, b,
 * b2 are slots of them. The outer index is shared out among `threads` OpenMP threads (where
 * the module is built with OpenMP: the same runtime and thread team as torch's, so that no
 * other threads compete for the cores). */
static PyObject *row_reduce(PyObject *self, PyObject *args)
{
    Py_buffer desc, pdesc = {0};
    PyObject *pobj;
    Py_ssize_t n_out, n;
    int order, threads;
    if (!PyArg_ParseTuple(args, "y*nnpiO", &desc, &n_out, &n, &order, &threads, &pobj))
        return NULL;
    if (pobj != Py_None && PyObject_GetBuffer(pobj, &pdesc, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&desc);
        return NULL;
    }
    const producer_t *prod = pobj != Py_None ? (const producer_t *)pdesc.buf : NULL;
    const Py_ssize_t np = desc.len / (Py_ssize_t)sizeof(problem_t);
    const problem_t *ps = (const problem_t *)desc.buf;
    Py_ssize_t kmax = 1, in_max = 1;
    int ok = desc.len % (Py_ssize_t)sizeof(problem_t) == 0 && np > 0 && n > 0 && n_out > 0 &&
             threads >= 1;
    if (prod)
        ok = ok && pdesc.len == (Py_ssize_t)sizeof(producer_t) && !order && prod->K >= 1 &&
             prod->plo && prod->phi && prod->zc && prod->zp && prod->al;
    for (Py_ssize_t q = 0; ok && q < np; q++) {
        const problem_t *p = ps + q;
        ok = p->a && p->out && p->k >= 0 && p->n_in >= 1 && (p->x1 || (!p->b && p->n_in == 1)) &&
             ((p->b == 0) == (p->x2 == 0)) && (p->b || !p->b2) &&
             (p->sign == 1.0 || p->sign == -1.0) &&
             (!prod || (p->a <= 4 && p->a2 <= 4 && p->b <= 4 && p->b2 <= 4));
        kmax = p->k > kmax ? p->k : kmax;
        in_max = p->n_in > in_max ? p->n_in : in_max;
    }
    if (!ok) {
        PyBuffer_Release(&desc);
        if (prod)
            PyBuffer_Release(&pdesc);
        PyErr_SetString(PyExc_ValueError, "row_reduce: bad problems or sizes");
        return NULL;
    }
    const Py_ssize_t nb = n / BLK + 1;
    const size_t scratch = sizeof(double) * (size_t)(2 * kmax + GROUP * nb + (prod ? 4 * n : 0)) +
                           sizeof(Py_ssize_t) * (size_t)nb;
    const Py_ssize_t outer = order ? in_max : n_out;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        work_t w;
        w.R = 0;
        w.n = n;
        w.heap = (double *)malloc(scratch);   /* per thread */
        if (w.heap == NULL) {
#pragma omp atomic write
            failed = 1;
        } else {
            w.top = w.heap + kmax;
            w.bm = w.top + kmax;
            w.unit = prod ? w.bm + GROUP * nb : NULL;
            w.cand = (Py_ssize_t *)(w.bm + GROUP * nb + (prod ? 4 * n : 0));
        }
#pragma omp for schedule(dynamic, 1)
        for (Py_ssize_t t = 0; t < outer; t++) {
            if (w.heap == NULL)
                continue;
            if (!order) {
                if (prod)
                    produce_unit(&w, prod, t);
                for (Py_ssize_t q = 0; q < np; q++)
                    for (Py_ssize_t j = 0; j < ps[q].n_in; j++)
                        add_row(&w, ps + q, t, j);
            } else {
                for (Py_ssize_t o = 0; o < n_out; o++)
                    for (Py_ssize_t q = 0; q < np; q++)
                        if (t < ps[q].n_in)
                            add_row(&w, ps + q, o, t);
            }
            if (w.R)
                flush_group(&w);
        }
        free(w.heap);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&desc);
    if (prod)
        PyBuffer_Release(&pdesc);
    if (failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}


/* relu_gate(lo, hi, lo2, hi2, al, au, size, threads): gate_pair over [0, size). */
static PyObject *relu_gate(PyObject *self, PyObject *args)
{
    unsigned long long plo, phi, plo2, phi2, pal, pau;
    Py_ssize_t size;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKKKKni", &plo, &phi, &plo2, &phi2, &pal, &pau, &size,
                          &threads))
        return NULL;
    if (plo == 0 || phi == 0 || pal == 0 || plo == phi || ((plo2 == 0) != (phi2 == 0)) ||
        (plo2 != 0 && plo2 == phi2) || size < 0 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "relu_gate: bad operands");
        return NULL;
    }
    const double *al = (const double *)(uintptr_t)pal, *au = (const double *)(uintptr_t)pau;
    const Py_ssize_t tiles = (size + GATE_TILE - 1) / GATE_TILE;
    Py_BEGIN_ALLOW_THREADS
    /* tile by tile, so that both pairs read the tile's gates from the cache */
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (Py_ssize_t i = 0; i < tiles; i++) {
        const Py_ssize_t t = i * GATE_TILE, u = t + GATE_TILE < size ? t + GATE_TILE : size;
        gate_pair((double *)(uintptr_t)plo, (double *)(uintptr_t)phi, al, au, t, u);
        if (plo2)
            gate_pair((double *)(uintptr_t)plo2, (double *)(uintptr_t)phi2, al, au, t, u);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* openmp(): whether the module was built with OpenMP (else `threads` is ignored). */
static PyObject *openmp(PyObject *self, PyObject *args)
{
#ifdef _OPENMP
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static int avx2_supported(void)
{
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static PyObject *simd(PyObject *self, PyObject *args)
{
    return PyUnicode_FromString(use_avx2 ? "avx2" : "scalar");
}

/* use_simd(flag): turn the AVX2 scan on (where the CPU has it) or off; returns simd(). */
static PyObject *use_simd(PyObject *self, PyObject *args)
{
    int flag;
    if (!PyArg_ParseTuple(args, "p", &flag))
        return NULL;
    use_avx2 = flag && avx2_supported();
    return simd(self, NULL);
}

static PyMethodDef methods[] = {
    {"row_reduce", row_reduce, METH_VARARGS,
     "row_reduce(problems, n_out, n, j_outer, threads): packed problem descriptors "
     "(see mipcert/agt/kernels.py); fills each problem's out rows."},
    {"relu_gate", relu_gate, METH_VARARGS,
     "relu_gate(lo, hi, lo2, hi2, al, au, size, threads): data pointers (0: absent); gates "
     "elements [0, size) in place (see mipcert/agt/kernels.py)."},
    {"openmp", openmp, METH_NOARGS, "Whether the module was built with OpenMP."},
    {"simd", simd, METH_NOARGS, "The scan in use: 'avx2' or 'scalar'."},
    {"use_simd", use_simd, METH_VARARGS, "use_simd(flag): the AVX2 scan on or off."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_topk",
                                    "Compiled top-k sums for interval AGT.", -1, methods};

PyMODINIT_FUNC PyInit__topk(void)
{
    use_avx2 = avx2_supported() && getenv("MIPCERT_KERNEL_SCALAR") == NULL;
    return PyModule_Create(&module);
}
