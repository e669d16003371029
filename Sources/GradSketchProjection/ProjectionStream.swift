import Crypto

/// A seed and a stream name: everything that decides a projection matrix's entries
/// (Spec/projection.md §1). Different streams (tensors, or the two Kronecker factors of one)
/// never share random numbers.
public struct ProjectionStream: Sendable, Hashable {
    public let seed: UInt64
    public let name: String
    /// The stream id's halves: the first 8 bytes of SHA-256(name), little-endian.
    public let id: (UInt32, UInt32)

    public init(seed: UInt64, name: String) {
        self.seed = seed
        self.name = name
        let digest = Array(SHA256.hash(data: Array(name.utf8)))
        let value = (0..<8).reduce(UInt64(0)) { $0 | UInt64(digest[$1]) << (8 * UInt64($1)) }
        id = (UInt32(truncatingIfNeeded: value), UInt32(truncatingIfNeeded: value >> 32))
    }

    @inlinable var key: (UInt32, UInt32) { (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)) }

    public static func == (a: Self, b: Self) -> Bool { a.seed == b.seed && a.name == b.name }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(seed)
        hasher.combine(name)
    }
}

/// The binary32 value nearest to the exact 1/√n (ties cannot occur), the entry scale of
/// Spec/projection.md §2, §3 and §3b, for 1 ≤ n < 2³².
///
/// 1/√n in binary64 and then binary32 rounds three times; that happens to be correct for
/// every n ≤ 2¹⁶ (checked against exact rationals in the tests) but is not proven beyond,
/// so the guess is corrected against the exact value: x = 1/√n lies below a positive m
/// exactly when n·m² > 1, which is decided in integers.
public func inverseSquareRootScale(_ n: Int) -> Float {
    precondition(n >= 1 && n < 1 << 32, "1/√n is defined here for 1 ≤ n < 2^32, found \(n)")
    var guess = Float(1.0 / Double(n).squareRoot())
    while isInverseSquareRoot(of: n, below: midpoint(guess.nextDown, guess)) { guess = guess.nextDown }
    while !isInverseSquareRoot(of: n, below: midpoint(guess, guess.nextUp)) { guess = guess.nextUp }
    return guess
}

/// The midpoint of two adjacent positive binary32 values, exact in binary64.
private func midpoint(_ a: Float, _ b: Float) -> Double { (Double(a) + Double(b)) / 2 }

/// Whether 1/√n < m for a positive binary64 `m` with at most 26 significant bits.
private func isInverseSquareRoot(of n: Int, below m: Double) -> Bool {
    // m = M · 2^e exactly, M < 2^26; then 1/√n < m ⟺ n·M² > 2^(−2e).
    let e = m.exponent - 25
    let significand = UInt64(m.significandBitPattern >> 27 | 1 << 25)  // 26 bits; the low 27 are zero
    precondition(Double(sign: .plus, exponent: e, significand: Double(significand)) == m, "midpoint not exact")
    let (high, low) = UInt64(n).multipliedFullWidth(by: significand * significand)
    let power = -2 * Int(e)  // compare n·M² with 2^power
    guard power >= 0 else { return true }
    if power >= 128 { return false }
    let (powerHigh, powerLow): (UInt64, UInt64) = power >= 64 ? (1 << UInt64(power - 64), 0) : (0, 1 << UInt64(power))
    return (high, low) > (powerHigh, powerLow)
}
