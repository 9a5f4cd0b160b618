/*
 * Top-k sums of bilinear per-sample values, for interval AGT on the CPU.
 *
 * For every row (o, j) of a weight block this computes
 *
 *     out[o, j] = sum of the k largest of max(0, v_i),
 *     v_i = (A - A2)[o, i] X1[j, i] + sign (B - B2)[o, i] X2[j, i]        (i = 0 .. n-1)
 *
 * (A2, B2 may be absent (zero); B, X2 may be absent; with X1 absent too,
 * v_i = (A - A2)[o, i]: a bias block, n_in = 1; the differences let the caller pass the
 * clean and perturbed delta bounds without forming their difference first),
 * which is what the bounded-poisoning / label-flip aggregation rule needs per parameter
 * (FORMULATIONS 3.5; mipcert/agt/stepbounds.py builds A, B, X1, X2). It is the number that
 * materialising the (rows, n) values in torch and calling torch.topk gives, in one pass
 * over the inputs and without storing the values: each row keeps a min-heap of its k
 * largest so far, started at k zeros (max(0, .) pads a row with fewer than k positive
 * values), and a value is only looked at individually when it exceeds the heap's smallest
 * entry. Samples where A[o, .] and B[o, .] are both zero give v_i = 0, which never enters
 * the heap, so the scan of row o skips the zero prefix and suffix of its coefficients.
 *
 * A row that meets a NaN gets NaN (so the caller's divergence check stops the run instead
 * of the value being dropped silently); an infinity enters the heap like any value.
 *
 * Arrays are C-contiguous float64: A, A2, B, B2 (n_out, n); X1, X2 (n_in, n);
 * out (n_out, n_in).
 * The Python wrapper (mipcert/agt/kernels.py) checks shapes, dtypes and devices and
 * passes data pointers; the GIL is released while the kernel runs. On x86-64 CPUs with
 * AVX2 the scan runs four samples per instruction (chosen at run time; the build itself
 * needs no special flags).
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

/* Values per block of the two-level scan (a multiple of 8, the AVX2 step). */
#define BLK 16

/* Phase 1 of the two-level scan: v[i] for i in [i0, i1) into buf[0 .. m) and the maximum of
 * each block of BLK into bm[0 .. G); returns nonzero if a value is NaN. */
static int fill_scalar(const row_t *r, Py_ssize_t i0, Py_ssize_t i1, double *buf, double *bm)
{
    const Py_ssize_t m = i1 - i0;
    int nan = 0;
    for (Py_ssize_t g = 0; g * BLK < m; g++) {
        const Py_ssize_t e = (g + 1) * BLK < m ? (g + 1) * BLK : m;
        double mx = -INFINITY;
        for (Py_ssize_t q = g * BLK; q < e; q++) {
            const double v = value(r, i0 + q);
            buf[q] = v;
            nan |= v != v;
            mx = v > mx ? v : mx;
        }
        bm[g] = mx;
    }
    return nan;
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2"))) static int fill_avx2(const row_t *r, Py_ssize_t i0,
                                                     Py_ssize_t i1, double *buf, double *bm)
{
    const Py_ssize_t m = i1 - i0;
    const __m256d sg = _mm256_set1_pd(r->sign);
    __m256d nan = _mm256_setzero_pd();
    Py_ssize_t g = 0;
    for (; (g + 1) * BLK <= m; g++) {
        const Py_ssize_t q = g * BLK;
        const __m256d v0 = vals4(r, i0 + q, sg), v1 = vals4(r, i0 + q + 4, sg);
        const __m256d v2 = vals4(r, i0 + q + 8, sg), v3 = vals4(r, i0 + q + 12, sg);
        _mm256_storeu_pd(buf + q, v0);
        _mm256_storeu_pd(buf + q + 4, v1);
        _mm256_storeu_pd(buf + q + 8, v2);
        _mm256_storeu_pd(buf + q + 12, v3);
        nan = _mm256_or_pd(nan, _mm256_or_pd(_mm256_cmp_pd(v0, v1, _CMP_UNORD_Q),
                                             _mm256_cmp_pd(v2, v3, _CMP_UNORD_Q)));
        __m256d mx = _mm256_max_pd(_mm256_max_pd(v0, v1), _mm256_max_pd(v2, v3));
        mx = _mm256_max_pd(mx, _mm256_permute2f128_pd(mx, mx, 1));
        mx = _mm256_max_pd(mx, _mm256_permute_pd(mx, 5));
        bm[g] = _mm256_cvtsd_f64(mx);
    }
    int bad = _mm256_movemask_pd(nan) != 0;
    if (g * BLK < m) /* the last, partial block */
        bad |= fill_scalar(r, i0 + g * BLK, i1, buf + g * BLK, bm + g);
    return bad;
}
#endif

/* Sum of the k largest of max(0, v_i), i in [i0, i1).
 *
 * Short rows: one scan offering every value to the heap. Long rows, two levels: the values
 * and their block maxima first; then tau, the k-th largest block maximum, by the same heap
 * over the maxima; then only the blocks whose maximum reaches tau are offered. This is
 * exact: the k blocks with the largest maxima hold k values >= tau, so the k-th largest
 * value is >= tau and every one of the k largest values lies in a block whose maximum is
 * >= tau. It saves most heap insertions (about k ln(n / k) of them per row in one scan). */
static double row_topk_sum(const row_t *r, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t k,
                           double *heap, double *work)
{
    int bad = 0;
    const Py_ssize_t m = i1 - i0, G = (m + BLK - 1) / BLK;
    for (Py_ssize_t q = 0; q < k; q++)
        heap[q] = 0.0;
    if (G < 4 * k) {
#ifdef HAVE_AVX2_PATH
        if (use_avx2)
            scan_avx2(r, i0, i1, k, heap, &bad);
        else
#endif
            scan_scalar(r, i0, i1, k, heap, &bad);
    } else {
        double *buf = work, *bm = work + m, *top = work + m + G;
#ifdef HAVE_AVX2_PATH
        bad = use_avx2 ? fill_avx2(r, i0, i1, buf, bm) : fill_scalar(r, i0, i1, buf, bm);
#else
        bad = fill_scalar(r, i0, i1, buf, bm);
#endif
        for (Py_ssize_t q = 0; q < k; q++)
            top[q] = -INFINITY;
        for (Py_ssize_t g = 0; g < G; g++)
            if (bm[g] > top[0])
                heap_replace_min(top, k, bm[g]);
        const double tau = top[0];
        for (Py_ssize_t g = 0; g < G; g++) {
            if (bm[g] >= tau && bm[g] > heap[0]) {
                const Py_ssize_t e = (g + 1) * BLK < m ? (g + 1) * BLK : m;
                for (Py_ssize_t q = g * BLK; q < e; q++)
                    if (buf[q] > heap[0])
                        heap_replace_min(heap, k, buf[q]);
            }
        }
    }
    if (bad)
        return NAN;
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

static PyObject *bilinear_topk_sum(PyObject *self, PyObject *args)
{
    unsigned long long pa, pa2, px1, pb, pb2, px2, pout;
    Py_ssize_t n_out, n_in, n, k, o0, o1;
    double sign;
    if (!PyArg_ParseTuple(args, "KKKKKKdKnnnnnn", &pa, &pa2, &px1, &pb, &pb2, &px2, &sign,
                          &pout, &n_out, &n_in, &n, &k, &o0, &o1))
        return NULL;
    if (k <= 0 || n <= 0 || n_out <= 0 || n_in <= 0 || o0 < 0 || o1 > n_out || o0 > o1) {
        PyErr_SetString(PyExc_ValueError, "bilinear_topk_sum: bad sizes");
        return NULL;
    }
    if (pa == 0 || pout == 0 || (px1 == 0 && (pb != 0 || n_in != 1)) ||
        ((pb == 0) != (px2 == 0)) || (pb == 0 && pb2 != 0)) {
        PyErr_SetString(PyExc_ValueError, "bilinear_topk_sum: bad operands");
        return NULL;
    }
    const double *A = (const double *)(uintptr_t)pa, *A2 = (const double *)(uintptr_t)pa2;
    const double *B = (const double *)(uintptr_t)pb, *B2 = (const double *)(uintptr_t)pb2;
    const double *X1 = (const double *)(uintptr_t)px1;
    const double *X2 = (const double *)(uintptr_t)px2;
    double *out = (double *)(uintptr_t)pout;
    /* heap (k), then the two-level scan's values (n), block maxima and their heap (k) */
    double *heap = (double *)malloc(sizeof(double) * (size_t)(2 * k + n + n / BLK + 1));
    if (heap == NULL)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t o = o0; o < o1; o++) {
        row_t r;
        r.a = A + o * n;
        r.a2 = A2 ? A2 + o * n : NULL;
        r.b = B ? B + o * n : NULL;
        r.b2 = B2 ? B2 + o * n : NULL;
        r.sign = sign;
        r.x1 = r.x2 = NULL;
        Py_ssize_t i0, i1;
        support(&r, n, &i0, &i1);
        for (Py_ssize_t j = 0; j < n_in; j++) {
            r.x1 = X1 ? X1 + j * n : NULL;
            r.x2 = X2 ? X2 + j * n : NULL;
            out[o * n_in + j] = row_topk_sum(&r, i0, i1, k, heap, heap + k);
        }
    }
    Py_END_ALLOW_THREADS
    free(heap);
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
    {"bilinear_topk_sum", bilinear_topk_sum, METH_VARARGS,
     "bilinear_topk_sum(A, A2, X1, B, B2, X2, sign, out, n_out, n_in, n, k, o0, o1): data "
     "pointers "
     "(0 for an absent operand); fills out[o0:o1] (see mipcert/agt/kernels.py)."},
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
