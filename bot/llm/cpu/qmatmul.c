/* Switchboard's CPU kernels: matrix products with GGUF's integer weights kept as they are.
 *
 * A weight matrix W [N][K] is stored as int8 codes q [N][K], one fp32 scale per group of G
 * columns s [N][K/G] and, for GGUF's K-quants with a minimum, one fp32 offset per group
 * o [N][K/G]: W[n][k] = q[n][k] * s[n][k/G] + o[n][k/G]. Every GGUF block type the built-in
 * models use (Q4_K, Q5_0, Q6_K, Q8_0) is exactly that, so the products are those of the
 * model's own weights, computed in fp32: no activation is quantized.
 *
 * qmm:     y[M][N] = x[M][K] . W^T  (+ bias), for small M (decoding: one row per stream);
 *          rows [n0, n1) only, so the caller can split the work between threads.
 * dequant: W rows [n0, n1) as fp32, for large M (prefill), where a BLAS product wins.
 *
 * Built at run time by bot/llm/cpu/kernels.py with the flags this CPU supports.
 */
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SB_AVX2 1
#endif

#define MAX_M 8

#ifdef SB_AVX2
static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}
static inline __m256 load8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
#endif

/* xs[m][g] = sum of x[m] over group g (for the offsets). */
void group_sums(int M, int K, int G, const float *x, float *xs) {
    int groups = K / G;
    for (int m = 0; m < M; m++)
        for (int g = 0; g < groups; g++) {
            float t = 0.f;
            for (int j = 0; j < G; j++) t += x[(int64_t)m * K + g * G + j];
            xs[m * groups + g] = t;
        }
}

#ifdef SB_AVX2
/* One output row n for a fixed number of input rows M (a compile-time constant, so the
 * accumulators stay in registers): two independent product chains per group, then the
 * group's scale. */
#define SB_ROW_KERNEL(MM)                                                                     \
    static void row_g32_##MM(int K, const float *x, const int8_t *qr, const float *sr,       \
                             float *out) {                                                   \
        __m256 acc[MM];                                                                      \
        for (int m = 0; m < MM; m++) acc[m] = _mm256_setzero_ps();                           \
        for (int g = 0; g < K / 32; g++) {                                                   \
            const int8_t *p = qr + g * 32;                                                   \
            __m256 w0 = load8(p), w1 = load8(p + 8), w2 = load8(p + 16), w3 = load8(p + 24); \
            __m256 sc = _mm256_broadcast_ss(sr + g);                                         \
            for (int m = 0; m < MM; m++) {                                                   \
                const float *xr = x + (int64_t)m * K + g * 32;                               \
                __m256 t0 = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));                          \
                __m256 t1 = _mm256_mul_ps(w1, _mm256_loadu_ps(xr + 8));                      \
                t0 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), t0);                      \
                t1 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), t1);                      \
                acc[m] = _mm256_fmadd_ps(_mm256_add_ps(t0, t1), sc, acc[m]);                 \
            }                                                                                \
        }                                                                                    \
        for (int m = 0; m < MM; m++) out[m] = hsum(acc[m]);                                  \
    }                                                                                        \
    static void row_g16_##MM(int K, const float *x, const int8_t *qr, const float *sr,       \
                             float *out) {                                                   \
        __m256 acc[MM];                                                                      \
        for (int m = 0; m < MM; m++) acc[m] = _mm256_setzero_ps();                           \
        for (int g = 0; g < K / 16; g++) {                                                   \
            const int8_t *p = qr + g * 16;                                                   \
            __m256 w0 = load8(p), w1 = load8(p + 8);                                         \
            __m256 sc = _mm256_broadcast_ss(sr + g);                                         \
            for (int m = 0; m < MM; m++) {                                                   \
                const float *xr = x + (int64_t)m * K + g * 16;                               \
                __m256 t0 = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));                          \
                __m256 t1 = _mm256_mul_ps(w1, _mm256_loadu_ps(xr + 8));                      \
                acc[m] = _mm256_fmadd_ps(_mm256_add_ps(t0, t1), sc, acc[m]);                 \
            }                                                                                \
        }                                                                                    \
        for (int m = 0; m < MM; m++) out[m] = hsum(acc[m]);                                  \
    }
SB_ROW_KERNEL(1)
SB_ROW_KERNEL(2)
SB_ROW_KERNEL(3)
SB_ROW_KERNEL(4)
SB_ROW_KERNEL(5)
SB_ROW_KERNEL(6)
SB_ROW_KERNEL(7)
SB_ROW_KERNEL(8)
typedef void (*row_fn)(int, const float *, const int8_t *, const float *, float *);
static const row_fn ROW_G32[MAX_M + 1] = {0, row_g32_1, row_g32_2, row_g32_3, row_g32_4,
                                          row_g32_5, row_g32_6, row_g32_7, row_g32_8};
static const row_fn ROW_G16[MAX_M + 1] = {0, row_g16_1, row_g16_2, row_g16_3, row_g16_4,
                                          row_g16_5, row_g16_6, row_g16_7, row_g16_8};
#endif

/* The portable row: plain C, in the same order of additions per group. */
static void row_any(int M, int K, int G, const float *x, const int8_t *qr, const float *sr,
                    float *out) {
    for (int m = 0; m < M; m++) {
        float acc = 0.f;
        for (int g = 0; g < K / G; g++) {
            const float *xr = x + (int64_t)m * K + g * G;
            float t = 0.f;
            for (int j = 0; j < G; j++) t += (float)qr[g * G + j] * xr[j];
            acc += t * sr[g];
        }
        out[m] = acc;
    }
}

void qmm(int M, int N, int K, int G, const float *x, const int8_t *q, const float *s,
         const float *o, const float *xs, const float *bias, float *y, int n0, int n1) {
    int groups = K / G;
    for (int n = n0; n < n1; n++) {
        const int8_t *qr = q + (int64_t)n * K;
        const float *sr = s + (int64_t)n * groups;
        float out[MAX_M];
#ifdef SB_AVX2
        if (G == 32 && M <= MAX_M)
            ROW_G32[M](K, x, qr, sr, out);
        else if (G == 16 && M <= MAX_M)
            ROW_G16[M](K, x, qr, sr, out);
        else
#endif
            row_any(M, K, G, x, qr, sr, out);
        for (int m = 0; m < M; m++) {
            float v = out[m];
            if (o) {
                const float *orow = o + (int64_t)n * groups;
                const float *xsr = xs + (int64_t)m * groups;
                float t = 0.f;
                for (int g = 0; g < groups; g++) t += orow[g] * xsr[g];
                v += t;
            }
            if (bias) v += bias[n];
            y[(int64_t)m * N + n] = v;
        }
    }
}

void dequant(int N, int K, int G, const int8_t *q, const float *s, const float *o, float *w,
             int n0, int n1) {
    int groups = K / G;
    for (int n = n0; n < n1; n++)
        for (int g = 0; g < groups; g++) {
            float sc = s[(int64_t)n * groups + g], off = o ? o[(int64_t)n * groups + g] : 0.f;
            const int8_t *p = q + (int64_t)n * K + g * G;
            float *d = w + (int64_t)n * K + g * G;
            for (int j = 0; j < G; j++) d[j] = (float)p[j] * sc + off;
        }
}

/* The same, split across `threads` OpenMP threads by output rows, in 8 chunks per thread
 * taken as threads free up: a thread that another process holds off its core delays only
 * its chunk, not half of the product. Each row is computed the same way whichever thread
 * takes it, so the results do not depend on the split. */
void qmm_par(int M, int N, int K, int G, const float *x, const int8_t *q, const float *s,
             const float *o, const float *xs, const float *bias, float *y, int threads) {
    int chunks = threads > 1 ? threads * 8 : 1;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int c = 0; c < chunks; c++) {
        int n0 = (int)((int64_t)N * c / chunks), n1 = (int)((int64_t)N * (c + 1) / chunks);
        qmm(M, N, K, G, x, q, s, o, xs, bias, y, n0, n1);
    }
}

void dequant_par(int N, int K, int G, const int8_t *q, const float *s, const float *o, float *w,
                 int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; t++) {
        int n0 = (int)((int64_t)N * t / threads), n1 = (int)((int64_t)N * (t + 1) / threads);
        dequant(N, K, G, q, s, o, w, n0, n1);
    }
}
