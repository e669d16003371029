/// SplitMix64 (Steele, Lea & Flood 2014): a small seeded generator, so builds, samples and
/// experiments repeat exactly across runs and platforms.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) / Double(UInt64(1) << 53) }

    /// Uniform in 0 ..< bound (modulo bias below 2⁻⁴⁰ for the bounds used here).
    public mutating func next(below bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Fisher–Yates.
    public mutating func shuffle<T>(_ values: inout [T]) {
        guard values.count > 1 else { return }
        for i in stride(from: values.count - 1, to: 0, by: -1) { values.swapAt(i, next(below: i + 1)) }
    }
}
