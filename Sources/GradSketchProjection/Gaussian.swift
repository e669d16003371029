/// Dense Gaussian projections (Spec/projection.md §3a): Box–Muller in binary64 with the
/// Spec's own logarithm and cosine, built from +, −, ×, ÷ and √ only, evaluated in a fixed
/// order, so every language computes the same bits. (Swift never fuses a·b + c into an FMA
/// on its own, which this relies on.)
public enum DenseGaussian {
    @usableFromInline static let sqrt2 = 1.4142135623730951
    @usableFromInline static let ln2High = 0.6931471803691238, ln2Low = 1.9082149292705877e-10
    @usableFromInline static let twoPi = 6.283185307179586
    /// 2/n for n = 19, 17, …, 3, then 2 (the atanh series of §3a, highest term first).
    @usableFromInline static let logCoefficients: [Double] = stride(from: 19, through: 1, by: -2).map { 2.0 / Double($0) }
    /// (−1)ⁿ/(2n)! and (−1)ⁿ/(2n+1)! for n = 8 down to 0.
    @usableFromInline static let cosCoefficients: [Double] = (0...8).reversed().map { sign($0) / factorial(2 * $0) }
    @usableFromInline static let sinCoefficients: [Double] = (0...8).reversed().map { sign($0) / factorial(2 * $0 + 1) }

    static func sign(_ n: Int) -> Double { n % 2 == 0 ? 1 : -1 }
    static func factorial(_ n: Int) -> Double { (1...max(1, n)).reduce(1.0) { $0 * Double($1) } }

    /// §3a `gs_log` for u ∈ (0, 1].
    @inlinable
    public static func log(_ u: Double) -> Double {
        var m = u.significand            // [1, 2), exact
        var e = Double(u.exponent)
        if m > sqrt2 {
            m = m / 2
            e = e + 1
        }
        let s = (m - 1) / (m + 1)
        let t = s * s
        var p = logCoefficients[0]
        for coefficient in logCoefficients.dropFirst() { p = p * t + coefficient }
        return e * ln2High + (s * p + e * ln2Low)
    }

    /// §3a `gs_cos2pi`: cos(2πu).
    @inlinable
    public static func cos2pi(_ u: Double) -> Double {
        let q = (4 * u).rounded(.toNearestOrEven)
        let x = u - q / 4
        let theta = x * twoPi
        let t = theta * theta
        var c = cosCoefficients[0]
        for coefficient in cosCoefficients.dropFirst() { c = c * t + coefficient }
        var s = sinCoefficients[0]
        for coefficient in sinCoefficients.dropFirst() { s = s * t + coefficient }
        s = theta * s
        switch Int(q) & 3 {
        case 0: return c
        case 1: return -s
        case 2: return -c
        default: return s
        }
    }

    /// One entry z/√k from two random words (§3a).
    @inlinable
    static func entry(_ a: UInt32, _ b: UInt32, sqrtK: Double) -> Float {
        let u1 = (Double(a) + 1) / 4_294_967_296
        let u2 = Double(b) / 4_294_967_296
        let z = (-2 * log(u1)).squareRoot() * cos2pi(u2)
        return Float(z / sqrtK)
    }

    /// Writes Pᵀ[columns, 0..<k] (row-major, `columns.count × k`), as ``DenseRademacher``.
    @inlinable
    public static func fillTransposed(_ stream: ProjectionStream, k: Int, columns: Range<Int>,
                                      into output: UnsafeMutableBufferPointer<Float>) {
        precondition(output.count >= columns.count * k, "output too small for the block")
        let sqrtK = Double(k).squareRoot()
        var row = output.baseAddress!
        for column in columns {
            for pair in 0..<((k + 1) / 2) {
                let w = Philox4x32.random((UInt32(truncatingIfNeeded: column), UInt32(pair), stream.id.0, stream.id.1), key: stream.key)
                row[2 * pair] = entry(w.0, w.1, sqrtK: sqrtK)
                if 2 * pair + 1 < k { row[2 * pair + 1] = entry(w.2, w.3, sqrtK: sqrtK) }
            }
            row += k
        }
    }

    /// The whole matrix P [k, d], row-major.
    public static func matrix(_ stream: ProjectionStream, k: Int, d: Int) -> [Float] {
        var transposed = [Float](repeating: 0, count: k * d)
        transposed.withUnsafeMutableBufferPointer { fillTransposed(stream, k: k, columns: 0..<d, into: $0) }
        var matrix = [Float](repeating: 0, count: k * d)
        for j in 0..<d { for r in 0..<k { matrix[r * d + j] = transposed[j * k + r] } }
        return matrix
    }
}
