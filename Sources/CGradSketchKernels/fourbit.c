#include "gradsketch_kernels.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// 4-bit residual codes (FourBitCoder in GradSketchSearch): exact int32 dot products of rows of
// packed nibbles with an int8 query, and the estimates low·Σq + step·qscale·dot built from them.
//
// A code byte holds element 2j in its low nibble and 2j + 1 in its high nibble. The query comes
// split into its even and odd elements, so a kernel needs no interleaving: the masked low
// nibbles multiply `even` and the shifted high nibbles multiply `odd`, byte for byte. The nibbles
// are unsigned (0…15) and the query signed, which is exactly the operand order of AVX2's
// maddubs (u8 × i8, pairs summed to i16): each pair sum is at most 2·15·127 = 3810, so the
// saturating i16 never saturates, and all paths give the same int32, bit for bit.

// The estimate must round the same on every path and in Swift (FourBitCoder.combine): two
// products and a sum, never fused.
#pragma STDC FP_CONTRACT OFF

void gsk_fourbit_dots_portable(const uint8_t *codes, size_t n, size_t bytes_per_row, const int8_t *even,
                               const int8_t *odd, int32_t *dots) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *row = codes + i * bytes_per_row;
        int32_t sum = 0;
        for (size_t b = 0; b < bytes_per_row; b++) {
            sum += (int32_t)(row[b] & 0x0F) * even[b] + (int32_t)(row[b] >> 4) * odd[b];
        }
        dots[i] = sum;
    }
}

#if defined(__x86_64__)
static int has_avx2(void) { return __builtin_cpu_supports("avx2"); }

// One 32-byte chunk of codes (64 elements) against the matching 32 bytes of each query half:
// sixteen int16 lanes, each at most 2 pairs × 3810 = 7620 in magnitude, so four chunks can be
// added in int16 (≤ 30,480 < 32,767) before widening to int32.
__attribute__((target("avx2"))) static inline __m256i chunk_pairs(__m256i bytes, __m256i even, __m256i odd) {
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    __m256i low = _mm256_and_si256(bytes, nibble);
    __m256i high = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble);
    return _mm256_add_epi16(_mm256_maddubs_epi16(low, even), _mm256_maddubs_epi16(high, odd));
}

__attribute__((target("avx2"))) static inline __m256i widen_add(__m256i acc, __m256i pairs) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// Four rows at a time, so their horizontal sums share the shuffles. The last partial chunk
// of a row (bytes_per_row not a multiple of 32) is copied into a zeroed buffer: the query
// halves are zero-padded to a multiple of 32 bytes, so the padding adds nothing, and no load
// reads past the end of the codes.
__attribute__((target("avx2"))) static void fourbit_dots_avx2(const uint8_t *codes, size_t n, size_t bytes_per_row,
                                                             const int8_t *even, const int8_t *odd, int32_t *dots) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint8_t *row = codes + i * bytes_per_row;
        for (size_t line = 0; line < 4 * bytes_per_row; line += 64) _mm_prefetch((const char *)row + 8 * bytes_per_row + line, _MM_HINT_T0);
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        size_t j = 0;
        while (j < bytes_per_row) {
            // Up to four chunks summed in int16, then widened once.
            __m256i p0 = _mm256_setzero_si256(), p1 = p0, p2 = p0, p3 = p0;
            for (int chunk = 0; chunk < 4 && j < bytes_per_row; chunk++, j += 32) {
                __m256i e = _mm256_loadu_si256((const __m256i *)(even + j));
                __m256i o = _mm256_loadu_si256((const __m256i *)(odd + j));
                if (j + 32 <= bytes_per_row) {
                    p0 = _mm256_add_epi16(p0, chunk_pairs(_mm256_loadu_si256((const __m256i *)(row + j)), e, o));
                    p1 = _mm256_add_epi16(p1, chunk_pairs(_mm256_loadu_si256((const __m256i *)(row + bytes_per_row + j)), e, o));
                    p2 = _mm256_add_epi16(p2, chunk_pairs(_mm256_loadu_si256((const __m256i *)(row + 2 * bytes_per_row + j)), e, o));
                    p3 = _mm256_add_epi16(p3, chunk_pairs(_mm256_loadu_si256((const __m256i *)(row + 3 * bytes_per_row + j)), e, o));
                } else {
                    size_t rest = bytes_per_row - j;
                    uint8_t tail[4][32];
                    memset(tail, 0, sizeof tail);
                    for (int r = 0; r < 4; r++) memcpy(tail[r], row + r * bytes_per_row + j, rest);
                    p0 = _mm256_add_epi16(p0, chunk_pairs(_mm256_loadu_si256((const __m256i *)tail[0]), e, o));
                    p1 = _mm256_add_epi16(p1, chunk_pairs(_mm256_loadu_si256((const __m256i *)tail[1]), e, o));
                    p2 = _mm256_add_epi16(p2, chunk_pairs(_mm256_loadu_si256((const __m256i *)tail[2]), e, o));
                    p3 = _mm256_add_epi16(p3, chunk_pairs(_mm256_loadu_si256((const __m256i *)tail[3]), e, o));
                }
            }
            a0 = widen_add(a0, p0);
            a1 = widen_add(a1, p1);
            a2 = widen_add(a2, p2);
            a3 = widen_add(a3, p3);
        }
        // [a0 a1 a2 a3] per 128-bit half after two rounds of pairwise adds, then the halves.
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        _mm_storeu_si128((__m128i *)(dots + i), s);
    }
    if (i < n) gsk_fourbit_dots_portable(codes + i * bytes_per_row, n - i, bytes_per_row, even, odd, dots + i);
}
#endif

void gsk_fourbit_dots(const uint8_t *codes, size_t n, size_t bytes_per_row, const int8_t *even, const int8_t *odd,
                      int32_t *dots) {
#if defined(__x86_64__)
    if (has_avx2()) { fourbit_dots_avx2(codes, n, bytes_per_row, even, odd, dots); return; }
#endif
    gsk_fourbit_dots_portable(codes, n, bytes_per_row, even, odd, dots);
}

void gsk_fourbit_estimate(const uint8_t *codes, size_t n, size_t bytes_per_row, const int8_t *even, const int8_t *odd,
                          const float *lows, const float *steps, float query_sum, float query_scale, float *estimates) {
    int32_t dots[256];
    for (size_t start = 0; start < n; start += 256) {
        size_t m = n - start < 256 ? n - start : 256;
        gsk_fourbit_dots(codes + start * bytes_per_row, m, bytes_per_row, even, odd, dots);
        for (size_t i = 0; i < m; i++) {
            float offset = lows[start + i] * query_sum;
            float factor = steps[start + i] * query_scale;
            estimates[start + i] = offset + factor * (float)dots[i];
        }
    }
}

int gsk_has_fourbit_avx2(void) {
#if defined(__x86_64__)
    return has_avx2();
#else
    return 0;
#endif
}
