#ifndef GRADSKETCH_KERNELS_H
#define GRADSKETCH_KERNELS_H
// Byte-level kernels for GradSketch: CRC-32C, float16/bfloat16/float64 conversion,
// non-finite detection and sums. Every function accepts unaligned input and picks the
// fastest implementation this CPU supports at run time (SSE4.2, F16C, AVX2), with portable
// fallbacks that give identical results.
#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, reflected) of `data`, continuing from `crc`, the finalized CRC of
/// the bytes before (0 to start). Like zlib's crc32: crc(a‖b) = update(update(0, a), b).
uint32_t gsk_crc32c_update(uint32_t crc, const void *data, size_t length);
/// The same, with the table-driven (slicing-by-8) code only, for tests and old CPUs.
uint32_t gsk_crc32c_update_portable(uint32_t crc, const void *data, size_t length);

/// The CRC of A‖B from the CRC of A, the CRC of B and the length of B (as zlib's
/// crc32_combine), so a file's checksum can reuse a region whose CRC is already known.
uint32_t gsk_crc32c_combine(uint32_t first, uint32_t second, uint64_t second_length);

/// IEEE binary16 → binary32 (exact).
void gsk_f16_to_f32(const uint16_t *source, float *destination, size_t count);
/// binary32 → binary16, round to nearest, ties to even; overflow gives ±Inf, NaN stays NaN.
void gsk_f32_to_f16(const float *source, uint16_t *destination, size_t count);
/// bfloat16 → binary32 (exact: the 16 bits become the high half of the word).
void gsk_bf16_to_f32(const uint16_t *source, float *destination, size_t count);
/// binary64 → binary32, round to nearest, ties to even.
void gsk_f64_to_f32(const double *source, float *destination, size_t count);

/// Index of the first NaN or ±Inf, or -1.
ptrdiff_t gsk_first_nonfinite_f32(const float *values, size_t count);
ptrdiff_t gsk_first_nonfinite_f16(const uint16_t *values, size_t count);

/// Sum of all values: float32 partial sums in many independent lanes, combined in double.
double gsk_sum_f32(const float *values, size_t count);
double gsk_sum_f16(const uint16_t *values, size_t count);

/// Dot products of a float32 query with n rows of k values, and (when `norms` is not NULL)
/// the rows' squared norms, in one pass: float32 accumulation in 16 lanes (FMA where the CPU
/// has it), so results agree with a Double reference to float32 rounding, not bit for bit.
void gsk_dots_f16(const uint16_t *rows, size_t n, size_t k, const float *query, float *dots, float *norms);
void gsk_dots_f32(const float *rows, size_t n, size_t k, const float *query, float *dots, float *norms);

/// Symmetric int8 code of `values`: codes[j] = round(values[j] / scale) with
/// scale = max|values| / 127 (codes in [-127, 127]); returns the scale (0 for an all-zero input).
float gsk_quantize_int8(const float *values, size_t count, int8_t *codes);

/// Exact int32 dot products of one int8 query with n int8 codes of k values each (IVF list
/// scans). The query comes prepared once per query in two forms: widened to int16 (AVX2 and
/// portable paths) and as q + 128 in unsigned bytes (AVX-512 VNNI path; may be NULL).
/// Sums cannot overflow for k < 66,000 (255·127·k < 2^31).
void gsk_int8_dots(const int8_t *codes, size_t n, size_t k, const int16_t *query, const uint8_t *query_offset, int32_t *dots);
/// Whether gsk_int8_dots uses AVX-512 VNNI here.
int gsk_has_int8_vnni(void);

/// 4-bit codes (GradSketchSearch.FourBitCoder): exact int32 dot products of n rows of packed
/// nibbles (bytes_per_row bytes each; element 2j in the low nibble of byte j, 2j + 1 in the
/// high one) with an int8 query given as its even and odd elements, each zero-padded to a
/// multiple of 32 bytes (≥ bytes_per_row). AVX2 where the CPU has it, identical results.
void gsk_fourbit_dots(const uint8_t *codes, size_t n, size_t bytes_per_row, const int8_t *even, const int8_t *odd, int32_t *dots);
/// The same with the portable code only, for tests.
void gsk_fourbit_dots_portable(const uint8_t *codes, size_t n, size_t bytes_per_row, const int8_t *even, const int8_t *odd, int32_t *dots);
/// estimates[i] = lows[i]·query_sum + (steps[i]·query_scale)·dot_i in float32, never fused
/// (the same rounding as FourBitCoder's Swift reference).
void gsk_fourbit_estimate(const uint8_t *codes, size_t n, size_t bytes_per_row, const int8_t *even, const int8_t *odd,
                          const float *lows, const float *steps, float query_sum, float query_scale, float *estimates);
/// Whether gsk_fourbit_dots uses AVX2 here.
int gsk_has_fourbit_avx2(void);

/// Asks the CPU to start loading `bytes` bytes at `address` into cache (a hint; no fault on
/// any address). Used to overlap the random row reads of a re-rank.
void gsk_prefetch(const void *address, size_t bytes);

/// Makes a DYNAMIC_ARCH OpenBLAS that fell back to SSE kernels on an unrecognised CPU use
/// its AVX2 or AVX-512 kernels instead (unless OPENBLAS_CORETYPE is set). Call before the
/// first BLAS call; returns the core name in use afterwards.
const char *gsk_select_blas_kernels(void);

/// Whether the hardware paths are in use (for benchmarks and tests to report).
int gsk_has_hardware_crc32c(void);
int gsk_has_f16c(void);

#endif
