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

void qmm(int M, int N, int K, int G, const float *x, const int8_t *q, const float *s,
         const float *o, const float *xs, const float *bias, float *y, int n0, int n1) {
    int groups = K / G;
    for (int n = n0; n < n1; n++) {
        const int8_t *qr = q + (int64_t)n * K;
        const float *sr = s + (int64_t)n * groups;
        float out[MAX_M];
#ifdef SB_AVX2
        __m256 acc[MAX_M];
        for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
        if (G == 32) {
            for (int g = 0; g < groups; g++) {
                const int8_t *p = qr + g * 32;
                __m256 w0 = load8(p), w1 = load8(p + 8), w2 = load8(p + 16), w3 = load8(p + 24);
                __m256 sc = _mm256_broadcast_ss(sr + g);
                for (int m = 0; m < M; m++) {
                    const float *xr = x + (int64_t)m * K + g * 32;
                    __m256 t = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));
                    t = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), t);
                    t = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), t);
                    t = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), t);
                    acc[m] = _mm256_fmadd_ps(t, sc, acc[m]);
                }
            }
        } else if (G == 16) {
            for (int g = 0; g < groups; g++) {
                const int8_t *p = qr + g * 16;
                __m256 w0 = load8(p), w1 = load8(p + 8);
                __m256 sc = _mm256_broadcast_ss(sr + g);
                for (int m = 0; m < M; m++) {
                    const float *xr = x + (int64_t)m * K + g * 16;
                    __m256 t = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));
                    t = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), t);
                    acc[m] = _mm256_fmadd_ps(t, sc, acc[m]);
                }
            }
        } else
#endif
        {
#ifdef SB_AVX2
            for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
#endif
            for (int m = 0; m < M; m++) out[m] = 0.f;
            for (int g = 0; g < groups; g++) {
                for (int m = 0; m < M; m++) {
                    const float *xr = x + (int64_t)m * K + g * G;
                    float t = 0.f;
                    for (int j = 0; j < G; j++) t += (float)qr[g * G + j] * xr[j];
                    out[m] += t * sr[g];
                }
            }
        }
        for (int m = 0; m < M; m++) {
#ifdef SB_AVX2
            out[m] = (G == 32 || G == 16) ? hsum(acc[m]) : out[m];
#endif
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

/* The same, split across `threads` OpenMP threads by output rows. */
void qmm_par(int M, int N, int K, int G, const float *x, const int8_t *q, const float *s,
             const float *o, const float *xs, const float *bias, float *y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; t++) {
        int n0 = (int)((int64_t)N * t / threads), n1 = (int)((int64_t)N * (t + 1) / threads);
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
