#include "gradsketch_kernels.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Four independent 8-lane accumulators hide the add latency so the loop runs at memory
// speed; float32 lanes over at most 2^16 values each, then combined in double, keep the
// rounding error far below what a plain float32 running sum has.
#define CHUNK 65536

static double sum_f32_portable(const float *v, size_t n) {
    double total = 0;
    for (size_t start = 0; start < n; start += CHUNK) {
        size_t end = start + CHUNK < n ? start + CHUNK : n;
        float lanes[32] = {0};
        size_t i = start;
        for (; i + 32 <= end; i += 32)
            for (int j = 0; j < 32; j++) {
                float x;
                memcpy(&x, v + i + j, 4);
                lanes[j] += x;
            }
        double part = 0;
        for (int j = 0; j < 32; j++) part += lanes[j];
        for (; i < end; i++) {
            float x;
            memcpy(&x, v + i, 4);
            part += x;
        }
        total += part;
    }
    return total;
}

#if defined(__x86_64__)
static int has_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c"); }

__attribute__((target("avx2"))) static double horizontal(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    double total = 0;
    for (int j = 0; j < 8; j++) total += lanes[j];
    return total;
}

__attribute__((target("avx2"))) static double sum_f32_avx2(const float *v, size_t n) {
    double total = 0;
    for (size_t start = 0; start < n; start += CHUNK) {
        size_t end = start + CHUNK < n ? start + CHUNK : n;
        __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
        size_t i = start;
        for (; i + 32 <= end; i += 32) {
            a = _mm256_add_ps(a, _mm256_loadu_ps(v + i));
            b = _mm256_add_ps(b, _mm256_loadu_ps(v + i + 8));
            c = _mm256_add_ps(c, _mm256_loadu_ps(v + i + 16));
            d = _mm256_add_ps(d, _mm256_loadu_ps(v + i + 24));
        }
        total += horizontal(a, b, c, d);
        for (; i < end; i++) total += v[i];
    }
    return total;
}

__attribute__((target("avx2,f16c"))) static double sum_f16_avx2(const uint16_t *v, size_t n) {
    double total = 0;
    for (size_t start = 0; start < n; start += CHUNK) {
        size_t end = start + CHUNK < n ? start + CHUNK : n;
        __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
        size_t i = start;
        for (; i + 32 <= end; i += 32) {
            a = _mm256_add_ps(a, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))));
            b = _mm256_add_ps(b, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i + 8))));
            c = _mm256_add_ps(c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i + 16))));
            d = _mm256_add_ps(d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i + 24))));
        }
        total += horizontal(a, b, c, d);
        if (i < end) {
            float rest[32];
            gsk_f16_to_f32(v + i, rest, end - i);
            for (size_t j = 0; j < end - i; j++) total += rest[j];
        }
    }
    return total;
}
#endif

double gsk_sum_f32(const float *values, size_t count) {
#if defined(__x86_64__)
    if (has_avx2()) return sum_f32_avx2(values, count);
#endif
    return sum_f32_portable(values, count);
}

double gsk_sum_f16(const uint16_t *values, size_t count) {
#if defined(__x86_64__)
    if (has_avx2()) return sum_f16_avx2(values, count);
#endif
    double total = 0;
    float buffer[1024];
    for (size_t start = 0; start < count; start += 1024) {
        size_t n = count - start < 1024 ? count - start : 1024;
        gsk_f16_to_f32(values + start, buffer, n);
        total += sum_f32_portable(buffer, n);
    }
    return total;
}
