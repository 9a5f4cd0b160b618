/*
 * Compiled kernels for interval AGT on the CPU (mipcert/agt/kernels.py wraps them).
 *
 * row_reduce: for every row (o, j) of a weight block,
 *
 *     out[o, j] = sum of the k largest of max(0, v_i)      (k > 0), or sum of v_i (k = 0),
 *     v_i = (A - A2)[o, i] X1[j, i] + sign (B - B2)[o, i] X2[j, i]        (i = 0 .. n-1)
 *
 * (A2, B2 may be absent (zero); B, X2 may be absent; with X1 absent too,
 * v_i = (A - A2)[o, i]: a bias block, n_in = 1; the differences let the caller pass the
 * clean and perturbed delta bounds without forming their difference first),
 * which is what the bounded-poisoning / label-flip aggregation rule needs per parameter
 * (FORMULATIONS 3.5; mipcert/agt/stepbounds.py builds A, B, X1, X2). It is the number that
 * materialising the (rows, n) values in torch and calling torch.topk gives, without storing
 * the values: each row keeps a min-heap of its k largest, started at k zeros (max(0, .) pads
 * a row with fewer than k positive values); long rows are scanned in two levels (see
 * row_topk_sum). Samples where A[o, .] and B[o, .] are both zero give v_i = 0, which never
 * enters the heap, so the scan of row o skips the zero prefix and suffix of its
 * coefficients. row_reduce does several such problems of one layer in one call, row by row,
 * so that the arrays they share are read from memory once.
 *
 * relu_gate: the ReLU derivative applied in place to delta bounds (see gate_pair).
 *
 * A row that meets a NaN gets NaN (so the caller's divergence check stops the run instead
 * of the value being dropped silently); an infinity enters the heap like any value.
 *
 * Arrays are C-contiguous float64: A, A2, B, B2 (n_out, n); X1, X2 (n_in, n);
 * out (n_out, n_in).
 * The Python wrapper checks shapes, dtypes and devices and passes data pointers; the GIL is
 * released while a kernel runs. On x86-64 CPUs with AVX2 the scans run four samples per
 * instruction (chosen at run time; the build itself needs no special flags), with the
 * scalar path's operations in the same order, so both give the same bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Replace the smallest entry h[0] of the min-heap h[0..k) by v and restore the heap. */
static inline void heap_replace_min(double *h, Py_ssize_t k, double v)
{
    Py_ssize_t i = 0;
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

/* The two-level scan works on blocks of BLK consecutive samples (a multiple of 32: the
 * AVX2 scan's step of 8 vectors). */
#define BLK 32

/* Phase 1: the maxima bm[0 .. G) of the G full blocks from i0, without storing the values;
 * returns nonzero if a value is NaN. */
static int block_max_scalar(const row_t *r, Py_ssize_t i0, Py_ssize_t G, double *bm)
{
    int nan = 0;
    for (Py_ssize_t g = 0; g < G; g++) {
        double mx = -INFINITY;
        for (Py_ssize_t i = i0 + g * BLK; i < i0 + (g + 1) * BLK; i++) {
            const double v = value(r, i);
            nan |= v != v;
            mx = v > mx ? v : mx;
        }
        bm[g] = mx;
    }
    return nan;
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2"))) static int block_max_avx2(const row_t *r, Py_ssize_t i0,
                                                          Py_ssize_t G, double *bm)
{
    const __m256d sg = _mm256_set1_pd(r->sign);
    __m256d nan = _mm256_setzero_pd();
    for (Py_ssize_t g = 0; g < G; g++) {
        __m256d m = _mm256_set1_pd(-INFINITY);
        for (Py_ssize_t i = i0 + g * BLK; i < i0 + (g + 1) * BLK; i += 32) {
            const __m256d v0 = vals4(r, i, sg), v1 = vals4(r, i + 4, sg);
            const __m256d v2 = vals4(r, i + 8, sg), v3 = vals4(r, i + 12, sg);
            const __m256d v4 = vals4(r, i + 16, sg), v5 = vals4(r, i + 20, sg);
            const __m256d v6 = vals4(r, i + 24, sg), v7 = vals4(r, i + 28, sg);
            nan = _mm256_or_pd(nan, _mm256_or_pd(
                _mm256_or_pd(_mm256_cmp_pd(v0, v1, _CMP_UNORD_Q), _mm256_cmp_pd(v2, v3, _CMP_UNORD_Q)),
                _mm256_or_pd(_mm256_cmp_pd(v4, v5, _CMP_UNORD_Q), _mm256_cmp_pd(v6, v7, _CMP_UNORD_Q))));
            m = _mm256_max_pd(m, _mm256_max_pd(
                _mm256_max_pd(_mm256_max_pd(v0, v1), _mm256_max_pd(v2, v3)),
                _mm256_max_pd(_mm256_max_pd(v4, v5), _mm256_max_pd(v6, v7))));
        }
        m = _mm256_max_pd(m, _mm256_permute2f128_pd(m, m, 1));
        m = _mm256_max_pd(m, _mm256_permute_pd(m, 5));
        bm[g] = _mm256_cvtsd_f64(m);
    }
    return _mm256_movemask_pd(nan) != 0;
}
#endif

/* Offer the values v >= floor of the block of BLK samples from i to the heap (those above
 * its smallest entry enter; no NaN check: the caller has made it). */
static void offer_block_scalar(const row_t *r, Py_ssize_t i, Py_ssize_t k, double *heap,
                               double floor)
{
    for (Py_ssize_t q = i; q < i + BLK; q++) {
        const double v = value(r, q);
        if (v > heap[0] && v >= floor)
            heap_replace_min(heap, k, v);
    }
}

#ifdef HAVE_AVX2_PATH
/* The same, testing four values per instruction against the heap's smallest entry. */
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

/* Lane sums s[q] += v_{4t+q} over the full groups of four; returns the samples done. */
__attribute__((target("avx2"))) static Py_ssize_t sum4_avx2(const row_t *r, Py_ssize_t n,
                                                            double *s)
{
    const __m256d sg = _mm256_set1_pd(r->sign);
    __m256d acc = _mm256_loadu_pd(s);
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4)
        acc = _mm256_add_pd(acc, vals4(r, i, sg));
    _mm256_storeu_pd(s, acc);
    return i;
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

/* Sum of the k largest of max(0, v_i), i in [i0, i1).
 *
 * Short rows: one scan offering every value to the heap. Long rows, two levels, without
 * storing the values: first the maximum of every full block of BLK samples; then tau, the
 * k-th largest block maximum, by the same heap over the maxima; then only the blocks whose
 * maximum is >= tau are computed again and offered (the samples after the last full block
 * are offered directly). This is exact: the k largest block maxima are k values >= tau, so
 * the k-th largest value is >= tau, and every value of the k largest lies in a block whose
 * maximum is >= tau; values below tau need not be offered. The scan then costs little more
 * than computing each value once.
 * The heap is summed in increasing order, so that both scans give the same bits. */
static double row_topk_sum(const row_t *r, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t k,
                           double *heap, double *work)
{
    int bad = 0;
    const Py_ssize_t m = i1 - i0, G = m / BLK;
    for (Py_ssize_t q = 0; q < k; q++)
        heap[q] = 0.0;
    if (G < k) {
#ifdef HAVE_AVX2_PATH
        if (use_avx2)
            scan_avx2(r, i0, i1, k, heap, &bad);
        else
#endif
            scan_scalar(r, i0, i1, k, heap, &bad);
    } else {
        double *bm = work, *top = work + G;
        Py_ssize_t *cand = (Py_ssize_t *)(top + k);
#ifdef HAVE_AVX2_PATH
        bad = use_avx2 ? block_max_avx2(r, i0, G, bm) : block_max_scalar(r, i0, G, bm);
#else
        bad = block_max_scalar(r, i0, G, bm);
#endif
        for (Py_ssize_t i = i0 + G * BLK; i < i1; i++) /* the partial block */
            offer(heap, k, value(r, i), &bad);
        for (Py_ssize_t q = 0; q < k; q++)
            top[q] = -INFINITY;
        for (Py_ssize_t g = 0; g < G; g++)
            if (bm[g] > top[0])
                heap_replace_min(top, k, bm[g]);
        const double tau = top[0];
        /* the candidate blocks, largest maximum first: the heap then fills with the largest
         * values early, and most later candidates fail the test against its smallest */
        Py_ssize_t nc = 0;
        for (Py_ssize_t g = 0; g < G; g++)
            if (bm[g] >= tau)
                cand[nc++] = g;
        sort_by_max(cand, nc, bm);
        for (Py_ssize_t c = 0; c < nc; c++) {
            const Py_ssize_t g = cand[c];
            if (!(bm[g] > heap[0]))
                break;
#ifdef HAVE_AVX2_PATH
            if (use_avx2)
                offer_block_avx2(r, i0 + g * BLK, k, heap, tau);
            else
#endif
                offer_block_scalar(r, i0 + g * BLK, k, heap, tau);
        }
    }
    if (bad)
        return NAN;
    sort_increasing(heap, k);
    double s = 0.0;
    for (Py_ssize_t q = 0; q < k; q++)
        s += heap[q];
    return s;
}

/* [i0, i1): the samples outside which both coefficients of the row are exactly zero. */
static void support(const row_t *r, Py_ssize_t n, Py_ssize_t *i0, Py_ssize_t *i1)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi && coef_a(r, lo) == 0.0 && (r->b == NULL || coef_b(r, lo) == 0.0))
        lo++;
    while (hi > lo && coef_a(r, hi - 1) == 0.0 && (r->b == NULL || coef_b(r, hi - 1) == 0.0))
        hi--;
    *i0 = lo;
    *i1 = hi;
}

/* Sum of v_i over i in [0, n): four partial sums over the samples i = 4 t + q, then the
 * rest; the AVX2 path adds in the same order, so both give the same bits. */
static double row_sum(const row_t *r, Py_ssize_t n)
{
    double s[4] = {0.0, 0.0, 0.0, 0.0}, t = 0.0;
    Py_ssize_t i = 0;
#ifdef HAVE_AVX2_PATH
    if (use_avx2) {
        i = sum4_avx2(r, n, s);
    } else
#endif
    {
        for (; i + 4 <= n; i += 4)
            for (int q = 0; q < 4; q++)
                s[q] += value(r, i + q);
    }
    for (; i < n; i++)
        t += value(r, i);
    return ((s[0] + s[1]) + (s[2] + s[3])) + t;
}

/* One problem of row_reduce: out[o, j] for the rows of one block (see row_reduce). */
typedef struct {
    uint64_t a, a2, x1, b, b2, x2, out;
    int64_t n_in, k;
    double sign;
} problem_t;

static void row_of(const problem_t *p, Py_ssize_t o, Py_ssize_t j, Py_ssize_t n, row_t *r)
{
    r->a = (const double *)(uintptr_t)p->a + o * n;
    r->a2 = p->a2 ? (const double *)(uintptr_t)p->a2 + o * n : NULL;
    r->b = p->b ? (const double *)(uintptr_t)p->b + o * n : NULL;
    r->b2 = p->b2 ? (const double *)(uintptr_t)p->b2 + o * n : NULL;
    r->x1 = p->x1 ? (const double *)(uintptr_t)p->x1 + j * n : NULL;
    r->x2 = p->x2 ? (const double *)(uintptr_t)p->x2 + j * n : NULL;
    r->sign = p->sign;
}

static void reduce_row(const problem_t *p, Py_ssize_t o, Py_ssize_t j, Py_ssize_t n,
                       double *heap, double *work)
{
    row_t r;
    row_of(p, o, j, n, &r);
    double v;
    if (p->k == 0) {
        v = row_sum(&r, n);
    } else {
        Py_ssize_t i0, i1;
        support(&r, n, &i0, &i1);
        v = row_topk_sum(&r, i0, i1, p->k, heap, work);
    }
    ((double *)(uintptr_t)p->out)[o * p->n_in + j] = v;
}

/* row_reduce(problems, n_out, n, o0, o1, j0, j1, order): several reductions over the rows
 * of blocks that share n_out and n (and typically their arrays), row by row, so that the
 * arrays a row reads are still in the cache for the other problems' rows: problem p gives
 * out_p[o, j] = the top-k sum of max(0, v) (k > 0) or the sum of v (k = 0) for the row
 * (o, j) of its bilinear form (row_t), for o0 <= o < o1 and j0 <= j < min(j1, n_in_p).
 * order 0: o outer (each coefficient row read once); 1: j outer (each input row read once,
 * for blocks with few outputs and many inputs). */
static PyObject *row_reduce(PyObject *self, PyObject *args)
{
    Py_buffer desc;
    Py_ssize_t n_out, n, o0, o1, j0, j1;
    int order;
    if (!PyArg_ParseTuple(args, "y*nnnnnnp", &desc, &n_out, &n, &o0, &o1, &j0, &j1, &order))
        return NULL;
    const Py_ssize_t np = desc.len / (Py_ssize_t)sizeof(problem_t);
    const problem_t *ps = (const problem_t *)desc.buf;
    Py_ssize_t kmax = 1, in_max = 1;
    int ok = desc.len % (Py_ssize_t)sizeof(problem_t) == 0 && np > 0 && n > 0 && n_out > 0 &&
             o0 >= 0 && o0 <= o1 && o1 <= n_out && j0 >= 0 && j0 <= j1;
    for (Py_ssize_t q = 0; ok && q < np; q++) {
        const problem_t *p = ps + q;
        ok = p->a && p->out && p->k >= 0 && p->n_in >= 1 && (p->x1 || (!p->b && p->n_in == 1)) &&
             ((p->b == 0) == (p->x2 == 0)) && (p->b || !p->b2);
        kmax = p->k > kmax ? p->k : kmax;
        in_max = p->n_in > in_max ? p->n_in : in_max;
    }
    if (!ok) {
        PyBuffer_Release(&desc);
        PyErr_SetString(PyExc_ValueError, "row_reduce: bad problems or sizes");
        return NULL;
    }
    double *heap = (double *)malloc(sizeof(double) * (size_t)(2 * kmax + 2 * (n / BLK) + 2));
    if (heap == NULL) {
        PyBuffer_Release(&desc);
        return PyErr_NoMemory();
    }
    if (j1 > in_max)
        j1 = in_max;
    Py_BEGIN_ALLOW_THREADS
    if (!order) {
        for (Py_ssize_t o = o0; o < o1; o++)
            for (Py_ssize_t q = 0; q < np; q++)
                for (Py_ssize_t j = j0; j < j1 && j < ps[q].n_in; j++)
                    reduce_row(ps + q, o, j, n, heap, heap + kmax);
    } else {
        for (Py_ssize_t j = j0; j < j1; j++)
            for (Py_ssize_t o = o0; o < o1; o++)
                for (Py_ssize_t q = 0; q < np; q++)
                    if (j < ps[q].n_in)
                        reduce_row(ps + q, o, j, n, heap, heap + kmax);
    }
    Py_END_ALLOW_THREADS
    free(heap);
    PyBuffer_Release(&desc);
    Py_RETURN_NONE;
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

static void gate_pair_scalar(double *restrict lo, double *restrict hi,
                             const double *restrict al, const double *restrict au,
                             Py_ssize_t e0, Py_ssize_t e1)
{
    for (Py_ssize_t e = e0; e < e1; e++) {
        const double maybe = (au ? au[e] : al[e]) > 0.0 ? 1.0 : 0.0;
        const double l = lo[e], h = hi[e];
        const int on = al[e] > 0.0;
        lo[e] = (on ? l : (l > 0.0 ? 0.0 : l)) * maybe;
        hi[e] = (on ? h : (h < 0.0 ? 0.0 : h)) * maybe;
    }
}

#ifdef HAVE_AVX2_PATH
/* The same, four elements per instruction and without branches (the gates of a hidden
 * layer follow no pattern a branch predictor could learn). */
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
        const __m256d l = _mm256_loadu_pd(lo + e), h = _mm256_loadu_pd(hi + e);
        /* min(l, 0) / max(h, 0) keeping a NaN: blend 0 in only where l > 0 / h < 0 */
        const __m256d l0 = _mm256_blendv_pd(l, zero, _mm256_cmp_pd(l, zero, _CMP_GT_OQ));
        const __m256d h0 = _mm256_blendv_pd(h, zero, _mm256_cmp_pd(h, zero, _CMP_LT_OQ));
        _mm256_storeu_pd(lo + e, _mm256_mul_pd(_mm256_blendv_pd(l0, l, on), maybe));
        _mm256_storeu_pd(hi + e, _mm256_mul_pd(_mm256_blendv_pd(h0, h, on), maybe));
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

static PyObject *relu_gate(PyObject *self, PyObject *args)
{
    unsigned long long plo, phi, plo2, phi2, pal, pau;
    Py_ssize_t e0, e1;
    if (!PyArg_ParseTuple(args, "KKKKKKnn", &plo, &phi, &plo2, &phi2, &pal, &pau, &e0, &e1))
        return NULL;
    if (plo == 0 || phi == 0 || pal == 0 || plo == phi || ((plo2 == 0) != (phi2 == 0)) ||
        (plo2 != 0 && plo2 == phi2) || e0 < 0 || e1 < e0) {
        PyErr_SetString(PyExc_ValueError, "relu_gate: bad operands");
        return NULL;
    }
    const double *al = (const double *)(uintptr_t)pal, *au = (const double *)(uintptr_t)pau;
    Py_BEGIN_ALLOW_THREADS
    /* tile by tile, so that both pairs read the tile's gates from the cache */
    for (Py_ssize_t t = e0; t < e1; t += GATE_TILE) {
        const Py_ssize_t u = t + GATE_TILE < e1 ? t + GATE_TILE : e1;
        gate_pair((double *)(uintptr_t)plo, (double *)(uintptr_t)phi, al, au, t, u);
        if (plo2)
            gate_pair((double *)(uintptr_t)plo2, (double *)(uintptr_t)phi2, al, au, t, u);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
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
     "row_reduce(problems, n_out, n, o0, o1, j0, j1, j_outer): packed problem descriptors "
     "(see mipcert/agt/kernels.py); fills each problem's out rows."},
    {"relu_gate", relu_gate, METH_VARARGS,
     "relu_gate(lo, hi, lo2, hi2, al, au, e0, e1): data pointers (0: absent); gates "
     "elements [e0, e1) in place (see mipcert/agt/kernels.py)."},
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
