"""Reference implementation of Spec/projection.md with numpy, written from the Spec text.

  rademacher(seed, stream, k, d)  -> float32 [k, d]
  sparse(seed, stream, k, d, s)   -> float32 [k, d]
  kronecker_sketch(seed, name, A, B, k_out, k_in) -> float32 [k_out * k_in]
"""
import hashlib
import math
import sys

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = np.uint64(0xFFFFFFFF)


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on arrays of counters (uint32-valued) with a scalar key."""
    c = [np.asarray(x, dtype=np.uint64) & MASK for x in (c0, c1, c2, c3)]
    c = np.broadcast_arrays(*c)
    c = [x.copy() for x in c]
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    for round_ in range(10):
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
        if round_ < 9:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
    return [x.astype(np.uint32) for x in c]


def scale32(n):
    """binary32(1/sqrt(n)): the binary32 value nearest to the exact 1/sqrt(n) (§2), found by
    comparing squares of exact rationals, never trusting floating-point rounding."""
    from fractions import Fraction
    n = int(n)
    guess = np.float32(1.0 / math.sqrt(n))
    def below(m):  # 1/sqrt(n) < m  <=>  n * m^2 > 1  (m > 0)
        return n * m * m > 1
    while True:
        f = Fraction(float(guess))
        low = (Fraction(float(np.nextafter(guess, np.float32(0)))) + f) / 2
        high = (f + Fraction(float(np.nextafter(guess, np.float32(np.inf))))) / 2
        if below(low):
            guess = np.nextafter(guess, np.float32(0))
        elif not below(high):
            guess = np.nextafter(guess, np.float32(np.inf))
        else:
            return np.float32(guess)


def stream_id(name):
    value = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return value & 0xFFFFFFFF, value >> 32


def rademacher(seed, stream, k, d):
    s0, s1 = stream_id(stream)
    rows = np.arange(k)
    cols = np.arange(d)
    j, block = np.meshgrid(cols, rows // 128)  # shapes [k, d]
    words = philox(j, block, s0, s1, seed & 0xFFFFFFFF, seed >> 32)
    b = (rows % 128)[:, None]
    word = np.choose(np.broadcast_to(b // 32, (k, d)), words)
    bit = (word >> (b % 32).astype(np.uint32)) & 1
    scale = scale32(k)
    return np.where(bit == 1, -scale, scale).astype(np.float32)


def sparse(seed, stream, k, d, s):
    s0, s1 = stream_id(stream)
    scale = scale32(s)
    out = np.zeros((k, d), dtype=np.float32)
    cols = np.arange(d)
    for t in range(s):
        w0, w1, _, _ = philox(cols, 0x80000000 + t, s0, s1, seed & 0xFFFFFFFF, seed >> 32)
        rows = ((w0.astype(np.uint64) * np.uint64(k)) >> np.uint64(32)).astype(np.int64)
        signs = np.where(w1 & 1, -scale, scale).astype(np.float32)
        np.add.at(out, (rows, cols), signs)
    return out


def sparse_entries(seed, stream, k, d, s):
    """Per column j and t: (row, signed binary32 scale) as lists of arrays over j."""
    s0, s1 = stream_id(stream)
    scale = scale32(s)
    cols = np.arange(d)
    out = []
    for t in range(s):
        w0, w1, _, _ = philox(cols, 0x80000000 + t, s0, s1, seed & 0xFFFFFFFF, seed >> 32)
        rows = ((w0.astype(np.uint64) * np.uint64(k)) >> np.uint64(32)).astype(np.int64)
        out.append((rows, np.where(w1 & 1, -scale, scale).astype(np.float32)))
    return out


def sparse_apply(seed, stream, k, x, s):
    """y = P x for rows x [N, d] in binary32, in the order §3 fixes: j ascending, then t,
    each product rounded to binary32 and added in binary32."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    y = np.zeros((x.shape[0], k), dtype=np.float32)
    entries = sparse_entries(seed, stream, k, x.shape[1], s)
    for j in range(x.shape[1]):
        for t in range(s):
            r, value = int(entries[t][0][j]), entries[t][1][j]
            y[:, r] = y[:, r] + (np.float32(value) * x[:, j]).astype(np.float32)
    return y


def kronecker_matrix(seed, name, k_out, n_out, k_in, n_in):
    """(P_out ⊗ P_in) in binary64: each entry the exact product of two binary32 entries (§4)."""
    p_out = rademacher(seed, name + "/out", k_out, n_out).astype(np.float64)
    p_in = rademacher(seed, name + "/in", k_in, n_in).astype(np.float64)
    return np.kron(p_out, p_in)


def kronecker_sketch(seed, name, A, B, k_out, k_in):
    """(B P_outᵀ)ᵀ (A P_inᵀ), flattened row-major, in float64 then rounded."""
    p_in = rademacher(seed, name + "/in", k_in, A.shape[1]).astype(np.float64)
    p_out = rademacher(seed, name + "/out", k_out, B.shape[1]).astype(np.float64)
    return ((B @ p_out.T).T @ (A @ p_in.T)).ravel()


if __name__ == "__main__":
    # python3 projection_ref.py rademacher|sparse SEED STREAM K D [S] OUT.npy
    kind, seed, stream, k, d = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    if kind == "rademacher":
        np.save(sys.argv[6], rademacher(seed, stream, k, d))
    elif kind == "sparse":
        np.save(sys.argv[7], sparse(seed, stream, k, d, int(sys.argv[6])))


# ---- §3a dense Gaussian: Box–Muller with the Spec's own log and cos (binary64, no FMA) ----

SQRT2 = 1.4142135623730951
LN2_HI, LN2_LO = 0.6931471803691238, 1.9082149292705877e-10
TWO_PI = 6.283185307179586


def gs_log(u):
    u = np.asarray(u, dtype=np.float64)
    m, e = np.frexp(u)            # u = m · 2^e, m ∈ [0.5, 1)
    m, e = m * 2.0, e - 1         # m ∈ [1, 2), exact
    big = m > SQRT2
    m = np.where(big, m / 2.0, m)
    e = np.where(big, e + 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    t = s * s
    p = np.full_like(t, 2.0 / 19.0)
    for n in range(17, 1, -2):
        p = p * t + 2.0 / n
    p = p * t + 2.0
    return e * LN2_HI + (s * p + e * LN2_LO)


def gs_cos2pi(u):
    import math
    u = np.asarray(u, dtype=np.float64)
    q = np.rint(4.0 * u)
    x = u - q / 4.0
    theta = x * TWO_PI
    t = theta * theta
    c = np.full_like(t, (-1.0) ** 8 / math.factorial(16))
    for n in range(7, -1, -1):
        c = c * t + (-1.0) ** n / math.factorial(2 * n)
    s = np.full_like(t, (-1.0) ** 8 / math.factorial(17))
    for n in range(7, -1, -1):
        s = s * t + (-1.0) ** n / math.factorial(2 * n + 1)
    s = theta * s
    quadrant = q.astype(np.int64) % 4
    return np.choose(quadrant, [c, -s, -c, s])


def gaussian(seed, stream, k, d):
    s0, s1 = stream_id(stream)
    rows = np.arange(k)
    j, pair = np.meshgrid(np.arange(d), rows // 2)
    w = philox(j, pair, s0, s1, seed & 0xFFFFFFFF, seed >> 32)
    odd = (rows % 2 == 1)[:, None]
    a = np.where(odd, w[2], w[0]).astype(np.float64)
    b = np.where(odd, w[3], w[1]).astype(np.float64)
    u1 = (a + 1.0) / 4294967296.0
    u2 = b / 4294967296.0
    z = np.sqrt(-2.0 * gs_log(u1)) * gs_cos2pi(u2)
    return (z / np.sqrt(np.float64(k))).astype(np.float32)


# ---- §3b SRHT ----------------------------------------------------------------------------

def srht_signs(seed, stream, d):
    s0, s1 = stream_id(stream)
    w = philox(np.arange(d), 0xE0000000, s0, s1, seed & 0xFFFFFFFF, seed >> 32)
    return np.where(w[0] & 1, -1.0, 1.0)


def srht_rows(seed, stream, k, n, block):
    s0, s1 = stream_id(stream)
    w = philox(np.arange(k), 0xC0000000 + block, s0, s1, seed & 0xFFFFFFFF, seed >> 32)
    return ((w[0].astype(np.uint64) * np.uint64(n)) >> np.uint64(32)).astype(np.int64)


def hadamard(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def srht(seed, stream, k, x, n):
    """P x for rows x [N, d] in float64, with explicit Hadamard matrices (small n only)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    d = x.shape[1]
    signed = x * srht_signs(seed, stream, d)
    h = hadamard(n)
    out = np.zeros((x.shape[0], k))
    for b in range(0, (d + n - 1) // n):
        chunk = np.zeros((x.shape[0], n))
        part = signed[:, b * n:(b + 1) * n]
        chunk[:, :part.shape[1]] = part
        out += (chunk @ h.T)[:, srht_rows(seed, stream, k, n, b)]
    return out / np.sqrt(k)


def srht_matrix(seed, stream, k, d, n):
    """P [k, d] in binary32 from §3b: P[r, j] = scale · sign_j · H[row_{b,r}, j − b·n]."""
    signs = srht_signs(seed, stream, d)
    scale = scale32(k)
    out = np.zeros((k, d), dtype=np.float32)
    for j in range(d):
        b = j // n
        rows = srht_rows(seed, stream, k, n, b)
        for r in range(k):
            h = -1.0 if bin(int(rows[r]) & (j - b * n)).count("1") % 2 else 1.0
            out[r, j] = np.float32(scale * signs[j] * h)
    return out
