#include "gradsketch_kernels.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Dot products of one float32 query with n rows of k values (float16 or float32), and the
// rows' squared norms when `norms` is not NULL: one pass over the rows, at memory speed.

static void dots_f32_portable(const float *rows, size_t n, size_t k, const float *q, float *dots, float *norms) {
    for (size_t i = 0; i < n; i++) {
        const float *row = rows + i * k;
        float d = 0, s = 0;
        for (size_t j = 0; j < k; j++) { d += row[j] * q[j]; s += row[j] * row[j]; }
        dots[i] = d;
        if (norms) norms[i] = s;
    }
}

static void dots_f16_portable(const uint16_t *rows, size_t n, size_t k, const float *q, float *dots, float *norms) {
    float buffer[256];
    for (size_t i = 0; i < n; i++) {
        float d = 0, s = 0;
        for (size_t start = 0; start < k; start += 256) {
            size_t m = k - start < 256 ? k - start : 256;
            gsk_f16_to_f32(rows + i * k + start, buffer, m);
            for (size_t j = 0; j < m; j++) { d += buffer[j] * q[start + j]; s += buffer[j] * buffer[j]; }
        }
        dots[i] = d;
        if (norms) norms[i] = s;
    }
}

#if defined(__x86_64__)
static int has_avx2_fma(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

__attribute__((target("avx2,fma"))) static float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma,f16c"))) static void dots_f16_avx2(const uint16_t *rows, size_t n, size_t k, const float *q, float *dots, float *norms) {
    size_t k16 = k / 16 * 16;
    for (size_t i = 0; i < n; i++) {
        const uint16_t *row = rows + i * k;
        __m256 d0 = _mm256_setzero_ps(), d1 = d0, s0 = d0, s1 = d0;
        size_t j = 0;
        for (; j < k16; j += 16) {
            __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + j)));
            __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + j + 8)));
            d0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(q + j), d0);
            d1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(q + j + 8), d1);
            if (norms) { s0 = _mm256_fmadd_ps(a, a, s0); s1 = _mm256_fmadd_ps(b, b, s1); }
        }
        float d = hsum(_mm256_add_ps(d0, d1)), s = norms ? hsum(_mm256_add_ps(s0, s1)) : 0;
        if (j < k) {
            float rest[16];
            gsk_f16_to_f32(row + j, rest, k - j);
            for (size_t t = 0; t < k - j; t++) { d += rest[t] * q[j + t]; s += rest[t] * rest[t]; }
        }
        dots[i] = d;
        if (norms) norms[i] = s;
    }
}

__attribute__((target("avx2,fma"))) static void dots_f32_avx2(const float *rows, size_t n, size_t k, const float *q, float *dots, float *norms) {
    size_t k16 = k / 16 * 16;
    for (size_t i = 0; i < n; i++) {
        const float *row = rows + i * k;
        __m256 d0 = _mm256_setzero_ps(), d1 = d0, s0 = d0, s1 = d0;
        size_t j = 0;
        for (; j < k16; j += 16) {
            __m256 a = _mm256_loadu_ps(row + j), b = _mm256_loadu_ps(row + j + 8);
            d0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(q + j), d0);
            d1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(q + j + 8), d1);
            if (norms) { s0 = _mm256_fmadd_ps(a, a, s0); s1 = _mm256_fmadd_ps(b, b, s1); }
        }
        float d = hsum(_mm256_add_ps(d0, d1)), s = norms ? hsum(_mm256_add_ps(s0, s1)) : 0;
        for (; j < k; j++) { d += row[j] * q[j]; s += row[j] * row[j]; }
        dots[i] = d;
        if (norms) norms[i] = s;
    }
}
#endif

void gsk_dots_f16(const uint16_t *rows, size_t n, size_t k, const float *query, float *dots, float *norms) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { dots_f16_avx2(rows, n, k, query, dots, norms); return; }
#endif
    dots_f16_portable(rows, n, k, query, dots, norms);
}

void gsk_dots_f32(const float *rows, size_t n, size_t k, const float *query, float *dots, float *norms) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { dots_f32_avx2(rows, n, k, query, dots, norms); return; }
#endif
    dots_f32_portable(rows, n, k, query, dots, norms);
}
