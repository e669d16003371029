#include "gradsketch_kernels.h"
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

// Reflected CRC-32C polynomial 0x1EDC6F41.
#define POLY 0x82F63B78u

static uint32_t table[8][256];

static void build_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int bit = 0; bit < 8; bit++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

static void ensure_tables(void) {
    static int ready;  // benign race: every thread builds identical tables
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        build_tables();
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
}

uint32_t gsk_crc32c_update_portable(uint32_t crc, const void *data, size_t length) {
    ensure_tables();
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= c;  // little-endian: the low 32 bits meet the running CRC
        c = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^ table[5][(word >> 16) & 0xff] ^
            table[4][(word >> 24) & 0xff] ^ table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^
            table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    return ~c;
}

// Combining works on polynomials over GF(2) modulo the CRC polynomial, in the reflected bit
// order the CRC itself uses: bit 31 holds the coefficient of x^0, bit 0 that of x^31.
#define X_TO_THE_0 0x80000000u

// a·b mod P, one shift of b per bit of a (at most 32 steps).
static uint32_t multiply_mod_poly(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (uint32_t bit = X_TO_THE_0; a; bit >>= 1) {
        if (a & bit) {
            product ^= b;
            a ^= bit;
        }
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;  // b·x mod P
    }
    return product;
}

// x^(2^n) mod P for n = 0…63: repeated squaring of x, built once.
static uint32_t x_to_the_power_of_two[64];

static void ensure_powers(void) {
    static int ready;  // benign race: every thread builds the identical table
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        uint32_t power = X_TO_THE_0 >> 1;  // x^1
        for (int n = 0; n < 64; n++) {
            x_to_the_power_of_two[n] = power;
            power = multiply_mod_poly(power, power);
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
}

// x^(8·length) mod P: the operator that appends `length` zero bytes to a CRC state is a
// multiplication by it. One multiplication per set bit of the length, so ~log2(length)·32
// steps, where the 32×32 GF(2) matrix squarings of zlib's old method cost ~1000× more.
static uint32_t zeros_operator(uint64_t length) {
    ensure_powers();
    uint32_t result = X_TO_THE_0;
    for (int n = 3; length && n < 64; n++, length >>= 1)  // 8·length = length << 3
        if (length & 1) result = multiply_mod_poly(x_to_the_power_of_two[n], result);
    return result;
}

uint32_t gsk_crc32c_combine(uint32_t first, uint32_t second, uint64_t second_length) {
    // first is the CRC of A, second of B; the state after A‖B is the state after A pushed
    // through len(B) zero bytes, xor the state of B from a zero start. The pre/post
    // inversion of finalized CRCs cancels out, as in zlib's crc32_combine.
    if (second_length == 0) return first;
    // Writers combine many blocks of one length in a row: remember the last operator.
    static _Thread_local uint64_t cached_length;
    static _Thread_local uint32_t cached_operator;
    if (second_length != cached_length) {
        cached_operator = zeros_operator(second_length);
        cached_length = second_length;
    }
    return multiply_mod_poly(cached_operator, first) ^ second;
}

#if defined(__x86_64__)
// One crc32 instruction has a latency of 3 cycles but a throughput of 1 per cycle, so three
// independent streams over three equal blocks run about three times faster than one; the
// three partial CRCs are then joined with the "append zeros" operator, applied by table.
#define BLOCK 8192  // bytes per stream per round

// Operators that append BLOCK and 2·BLOCK zero bytes to a CRC state, as 4 byte tables each.
static uint32_t shift1[4][256], shift2[4][256];

static void operator_tables(uint32_t tables[4][256], size_t length) {
    uint32_t op = zeros_operator(length);
    for (int byte = 0; byte < 4; byte++)
        for (uint32_t v = 0; v < 256; v++) tables[byte][v] = multiply_mod_poly(op, v << (8 * byte));
}

static uint32_t apply(uint32_t tables[4][256], uint32_t crc) {
    return tables[0][crc & 0xff] ^ tables[1][(crc >> 8) & 0xff] ^ tables[2][(crc >> 16) & 0xff] ^ tables[3][crc >> 24];
}

static void ensure_shift_tables(void) {
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        operator_tables(shift1, BLOCK);
        operator_tables(shift2, 2 * BLOCK);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
}

__attribute__((target("sse4.2"))) static uint64_t crc_words(uint64_t c, const unsigned char *p, size_t words) {
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        c = _mm_crc32_u64(c, w);
    }
    return c;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hardware(uint32_t crc, const unsigned char *p, size_t length) {
    uint64_t c = ~crc;
    if (length >= 3 * BLOCK) ensure_shift_tables();
    while (length >= 3 * BLOCK) {
        uint64_t a = c, b = 0, d = 0;
        for (size_t i = 0; i < BLOCK; i += 8) {
            uint64_t wa, wb, wd;
            memcpy(&wa, p + i, 8);
            memcpy(&wb, p + BLOCK + i, 8);
            memcpy(&wd, p + 2 * BLOCK + i, 8);
            a = _mm_crc32_u64(a, wa);
            b = _mm_crc32_u64(b, wb);
            d = _mm_crc32_u64(d, wd);
        }
        // state(a‖b‖d) = shift2(a) ^ shift1(b) ^ d, with b and d started from zero state.
        c = apply(shift2, (uint32_t)a) ^ apply(shift1, (uint32_t)b) ^ (uint32_t)d;
        p += 3 * BLOCK;
        length -= 3 * BLOCK;
    }
    c = crc_words(c, p, length / 8);
    p += length / 8 * 8;
    length %= 8;
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

int gsk_has_hardware_crc32c(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("sse4.2");
#else
    return 0;
#endif
}

uint32_t gsk_crc32c_update(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (gsk_has_hardware_crc32c()) return crc32c_hardware(crc, data, length);
#endif
    return gsk_crc32c_update_portable(crc, data, length);
}
