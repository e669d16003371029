#include "gradsketch_kernels.h"
#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// int8 codes for the IVF index: quantizing residuals, and scanning lists of codes against an
// int8 query. The scan is the inner loop of an approximate query, so it runs on AVX2 where the
// CPU has it (16 codes widened to int16 and multiplied pairwise into int32 per instruction).

float gsk_quantize_int8(const float *values, size_t count, int8_t *codes) {
    float largest = 0;
    for (size_t j = 0; j < count; j++) {
        float a = fabsf(values[j]);
        if (a > largest) largest = a;
    }
    if (largest == 0 || !isfinite(largest)) {
        for (size_t j = 0; j < count; j++) codes[j] = 0;
        return 0;
    }
    float scale = largest / 127.0f;
    for (size_t j = 0; j < count; j++) {
        long q = lrintf(values[j] / scale);  // round half to even, as Spec §10.2 states
        codes[j] = (int8_t)(q > 127 ? 127 : (q < -127 ? -127 : q));
    }
    return scale;
}

static void int8_dots_portable(const int8_t *codes, size_t n, size_t k, const int16_t *query, int32_t *dots) {
    for (size_t i = 0; i < n; i++) {
        const int8_t *code = codes + i * k;
        int32_t sum = 0;
        for (size_t j = 0; j < k; j++) sum += (int32_t)code[j] * query[j];
        dots[i] = sum;
    }
}

#if defined(__x86_64__)
static int has_avx2(void) { return __builtin_cpu_supports("avx2"); }

// Lists are short runs in a large file: fetch whole rows a few rows ahead rather than wait for
// the hardware prefetcher to notice each new run.
static inline void prefetch_row(const int8_t *row, size_t k) {
    for (size_t line = 0; line < k; line += 64) _mm_prefetch((const char *)row + line, _MM_HINT_T0);
}

__attribute__((target("avx2"))) static int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2"))) static void int8_dots_avx2(const int8_t *codes, size_t n, size_t k, const int16_t *query, int32_t *dots) {
    size_t k32 = k / 32 * 32;
    for (size_t i = 0; i < n; i++) {
        const int8_t *code = codes + i * k;
        if (i + 4 < n) prefetch_row(code + 4 * k, k);
        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
        size_t j = 0;
        for (; j < k32; j += 32) {
            __m256i x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(code + j)));
            __m256i x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(code + j + 16)));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(x0, _mm256_loadu_si256((const __m256i *)(query + j))));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(x1, _mm256_loadu_si256((const __m256i *)(query + j + 16))));
        }
        int32_t sum = hsum_epi32(_mm256_add_epi32(a0, a1));
        for (; j < k; j++) sum += (int32_t)code[j] * query[j];
        dots[i] = sum;
    }
}
#endif

#if defined(__x86_64__)
static int has_avx512_vnni(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
}

// VNNI multiplies unsigned by signed bytes, so the query enters offset by 128:
// Σ (q + 128)·x = Σ q·x + 128·Σ x, and a second product with all-ones bytes gives Σ x.
// 64 codes per instruction instead of 16.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void int8_dots_vnni(const int8_t *codes, size_t n, size_t k,
                                                                                 const uint8_t *query_offset, int32_t *dots) {
    const __m512i ones = _mm512_set1_epi8(1);
    size_t k64 = k / 64 * 64;
    __mmask64 tail = k64 == k ? 0 : (~(__mmask64)0 >> (64 - (k - k64)));
    for (size_t i = 0; i < n; i++) {
        const int8_t *code = codes + i * k;
        if (i + 4 < n) prefetch_row(code + 4 * k, k);
        __m512i products = _mm512_setzero_si512(), sums = products;
        size_t j = 0;
        for (; j < k64; j += 64) {
            __m512i x = _mm512_loadu_si512((const void *)(code + j));
            products = _mm512_dpbusd_epi32(products, _mm512_loadu_si512((const void *)(query_offset + j)), x);
            sums = _mm512_dpbusd_epi32(sums, ones, x);
        }
        if (tail) {
            __m512i x = _mm512_maskz_loadu_epi8(tail, code + j);
            products = _mm512_dpbusd_epi32(products, _mm512_maskz_loadu_epi8(tail, query_offset + j), x);
            sums = _mm512_dpbusd_epi32(sums, ones, x);
        }
        dots[i] = _mm512_reduce_add_epi32(products) - 128 * _mm512_reduce_add_epi32(sums);
    }
}
#endif

void gsk_int8_dots(const int8_t *codes, size_t n, size_t k, const int16_t *query, const uint8_t *query_offset, int32_t *dots) {
#if defined(__x86_64__)
    if (query_offset && has_avx512_vnni()) { int8_dots_vnni(codes, n, k, query_offset, dots); return; }
    if (has_avx2()) { int8_dots_avx2(codes, n, k, query, dots); return; }
#endif
    int8_dots_portable(codes, n, k, query, dots);
}

int gsk_has_int8_vnni(void) {
#if defined(__x86_64__)
    return has_avx512_vnni();
#else
    return 0;
#endif
}

void gsk_prefetch(const void *address, size_t bytes) {
    const char *p = (const char *)address;
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}
