#include "gradsketch_kernels.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// ---- Portable, exact conversions (the reference the hardware paths must match) ----

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);  // Inf or NaN (payload kept)
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;  // ±0
    } else {  // subnormal: normalise
        int shift = 0;
        while (!(mantissa & 0x400)) { mantissa <<= 1; shift++; }
        bits = sign | ((uint32_t)(113 - shift) << 23) | ((mantissa & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t float_to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (bits >> 16) & 0x8000;
    uint32_t exponent = (bits >> 23) & 0xff, mantissa = bits & 0x7fffff;
    if (exponent == 0xff) return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >> 13) : 0);  // Inf, quiet NaN
    int e = (int)exponent - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00;  // overflow
    if (e <= 0) {  // subnormal half (or zero): shift the full significand, round to even
        if (e < -10) return sign;
        uint32_t significand = mantissa | 0x800000;
        int shift = 14 - e;
        uint32_t half = significand >> shift, rest = significand & ((1u << shift) - 1), midpoint = 1u << (shift - 1);
        if (rest > midpoint || (rest == midpoint && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (mantissa >> 13), rest = mantissa & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;  // may carry into the exponent: correct
    return sign | (uint16_t)half;
}

int gsk_has_f16c(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
#else
    return 0;
#endif
}

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++) d[i] = half_to_float(s[i]);
}

__attribute__((target("avx,f16c"))) static void f32_to_f16_f16c(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) d[i] = float_to_half(s[i]);
}
#endif

void gsk_f16_to_f32(const uint16_t *source, float *destination, size_t count) {
#if defined(__x86_64__)
    if (gsk_has_f16c()) { f16_to_f32_f16c(source, destination, count); return; }
#endif
    for (size_t i = 0; i < count; i++) destination[i] = half_to_float(source[i]);
}

void gsk_f32_to_f16(const float *source, uint16_t *destination, size_t count) {
#if defined(__x86_64__)
    if (gsk_has_f16c()) { f32_to_f16_f16c(source, destination, count); return; }
#endif
    for (size_t i = 0; i < count; i++) destination[i] = float_to_half(source[i]);
}

void gsk_bf16_to_f32(const uint16_t *source, float *destination, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint16_t h;
        memcpy(&h, source + i, 2);
        uint32_t bits = (uint32_t)h << 16;
        memcpy(destination + i, &bits, 4);
    }
}

void gsk_f64_to_f32(const double *source, float *destination, size_t count) {
    for (size_t i = 0; i < count; i++) {
        double v;
        memcpy(&v, source + i, 8);
        destination[i] = (float)v;
    }
}

// ---- Non-finite detection: a branch-free pass per block, a precise search only on a hit ----

static ptrdiff_t first_nonfinite_f32_scalar(const unsigned char *bytes, size_t start, size_t end) {
    for (size_t i = start; i < end; i++) {
        uint32_t bits;
        memcpy(&bits, bytes + 4 * i, 4);
        if ((bits & 0x7f800000u) == 0x7f800000u) return (ptrdiff_t)i;
    }
    return -1;
}

#if defined(__x86_64__)
// 32 values per step: the exponent mask compared for all ones, or-ed into one flag vector;
// the exact index is searched only in a block that has a hit.
__attribute__((target("avx2"))) static ptrdiff_t first_nonfinite_f32_avx2(const unsigned char *bytes, size_t count) {
    const __m256i mask = _mm256_set1_epi32(0x7f800000);
    size_t start = 0;
    for (; start + 1024 <= count; start += 1024) {
        __m256i hit = _mm256_setzero_si256();
        for (size_t i = start; i < start + 1024; i += 32) {
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(bytes + 4 * (i + 8 * j))), mask);
                hit = _mm256_or_si256(hit, _mm256_cmpeq_epi32(v, mask));
            }
        }
        if (!_mm256_testz_si256(hit, hit)) return first_nonfinite_f32_scalar(bytes, start, start + 1024);
    }
    return first_nonfinite_f32_scalar(bytes, start, count);
}
#endif

ptrdiff_t gsk_first_nonfinite_f32(const float *values, size_t count) {
    const unsigned char *bytes = (const unsigned char *)values;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) return first_nonfinite_f32_avx2(bytes, count);
#endif
    for (size_t start = 0; start < count; start += 1024) {
        size_t end = start + 1024 < count ? start + 1024 : count;
        uint32_t hit = 0;
        for (size_t i = start; i < end; i++) {
            uint32_t bits;
            memcpy(&bits, bytes + 4 * i, 4);
            hit |= (bits & 0x7f800000u) == 0x7f800000u;
        }
        if (hit) return first_nonfinite_f32_scalar(bytes, start, end);
    }
    return -1;
}

ptrdiff_t gsk_first_nonfinite_f16(const uint16_t *values, size_t count) {
    const unsigned char *bytes = (const unsigned char *)values;
    for (size_t start = 0; start < count; start += 2048) {
        size_t end = start + 2048 < count ? start + 2048 : count;
        uint32_t hit = 0;
        for (size_t i = start; i < end; i++) {
            uint16_t bits;
            memcpy(&bits, bytes + 2 * i, 2);
            hit |= (bits & 0x7c00u) == 0x7c00u;
        }
        if (hit)
            for (size_t i = start; i < end; i++) {
                uint16_t bits;
                memcpy(&bits, bytes + 2 * i, 2);
                if ((bits & 0x7c00u) == 0x7c00u) return (ptrdiff_t)i;
            }
    }
    return -1;
}
