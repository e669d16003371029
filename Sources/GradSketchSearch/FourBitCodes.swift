import CGradSketchKernels
import GradSketchInterchange

/// Per-row uniform 4-bit codes of residuals, with an optional seeded orthogonal rotation, and
/// their inner products with an int8 query.
///
/// A residual r (width floats) is first rotated, y = R·r, when the coder has a rotation seed,
/// then coded per row as y_j ≈ low + step·c_j with c_j ∈ 0...15, low = min y, step = (max y − low)/15,
/// so every component is within step/2 of its reconstruction. Two codes share a byte: element 2j
/// in the low nibble of byte j, element 2j + 1 in the high nibble (the high nibble of the last
/// byte is 0 for an odd width).
///
/// A query is rotated the same way (R is orthogonal, so ⟨R·q, R·r⟩ = ⟨q, r⟩) and quantised to
/// int8: q_j ≈ qscale·q8_j. Then
///
///     ⟨q, r⟩ ≈ low·Σ_j q_j + step·qscale·⟨q8, c⟩
///
/// where Σ q_j is the rotated float query's sum and ⟨q8, c⟩ an exact int32 dot product.
/// The error is at most ‖q‖₁·step/2 (coding of r) + qscale/2·step·Σ c_j (coding of q), with q
/// the rotated query, plus float32 rounding of the final two products.
///
/// The rotation (RaBitQ-style) spreads a residual's energy over all components, so that a
/// few large components do not force a coarse step on the others: three rounds of random
/// signs followed by a Walsh–Hadamard transform on the leading and the trailing power-of-two
/// block of components (the same block when the width is a power of two). Each round is
/// orthogonal, so the rotation is, and it keeps the width.
public struct FourBitCoder: Sendable {
    public let width: Int
    /// The rotation's seed; nil when the coder does not rotate.
    public let rotationSeed: UInt64?
    /// The largest power of two not above `width`: the Walsh–Hadamard block.
    let hadamardBlock: Int
    /// ±1 per component per rotation step (rounds × 2 sign vectors of `width`).
    let signs: [Float]

    static let rotationRounds = 3

    public init(width: Int, rotationSeed: UInt64?) {
        precondition(width >= 1, "a 4-bit coder needs a width of at least 1")
        self.width = width
        self.rotationSeed = rotationSeed
        var block = 1
        while block * 2 <= width { block *= 2 }
        hadamardBlock = block
        if let seed = rotationSeed {
            var random = SeededRandom(seed: seed)
            var signs = [Float](repeating: 1, count: Self.rotationRounds * 2 * width)
            var bits: UInt64 = 0
            for i in signs.indices {
                if i % 64 == 0 { bits = random.next() }
                signs[i] = (bits >> UInt64(i % 64)) & 1 == 0 ? 1 : -1
            }
            self.signs = signs
        } else {
            signs = []
        }
    }

    /// ⌈width / 2⌉.
    public var bytesPerRow: Int { (width + 1) / 2 }

    // MARK: - Rotation

    /// y = R·x in place (x has `width` values). Nothing when the coder does not rotate.
    func rotate(_ values: UnsafeMutablePointer<Float>) {
        guard rotationSeed != nil else { return }
        let block = hadamardBlock
        // 1/√block per transform keeps each Walsh–Hadamard step orthogonal.
        let normaliser = 1 / Float(block).squareRoot()
        signs.withUnsafeBufferPointer { s in
            for round in 0..<Self.rotationRounds {
                let base = round * 2 * width
                for j in 0..<width { values[j] *= s[base + j] }
                Self.walshHadamard(values, count: block, scale: normaliser)
                if block < width {
                    for j in 0..<width { values[j] *= s[base + width + j] }
                    Self.walshHadamard(values + (width - block), count: block, scale: normaliser)
                }
            }
        }
    }

    /// The inverse rotation, x = Rᵀ·y in place, for tests and decoding.
    func unrotate(_ values: UnsafeMutablePointer<Float>) {
        guard rotationSeed != nil else { return }
        let block = hadamardBlock
        let normaliser = 1 / Float(block).squareRoot()
        signs.withUnsafeBufferPointer { s in
            for round in stride(from: Self.rotationRounds - 1, through: 0, by: -1) {
                let base = round * 2 * width
                if block < width {
                    Self.walshHadamard(values + (width - block), count: block, scale: normaliser)
                    for j in 0..<width { values[j] *= s[base + width + j] }
                }
                Self.walshHadamard(values, count: block, scale: normaliser)
                for j in 0..<width { values[j] *= s[base + j] }
            }
        }
    }

    /// Unnormalised fast Walsh–Hadamard transform of `count` (a power of two) values, times `scale`.
    /// H/√n is symmetric and orthogonal, hence its own inverse.
    static func walshHadamard(_ values: UnsafeMutablePointer<Float>, count: Int, scale: Float) {
        var half = 1
        while half < count {
            var start = 0
            while start < count {
                for j in start..<(start + half) {
                    let a = values[j], b = values[j + half]
                    values[j] = a + b
                    values[j + half] = a - b
                }
                start += 2 * half
            }
            half *= 2
        }
        for j in 0..<count { values[j] *= scale }
    }

    /// R·x as a new array.
    public func rotated(_ values: UnsafePointer<Float>) -> [Float] {
        var out = Array(UnsafeBufferPointer(start: values, count: width))
        out.withUnsafeMutableBufferPointer { rotate($0.baseAddress!) }
        return out
    }

    // MARK: - Coding

    /// Codes one residual r (width floats): r ≈ low + step·c_j, c_j ∈ 0...15 packed two per byte
    /// (element 2j in the low nibble of byte j), after the rotation when there is one.
    /// A constant (or non-finite-free zero-range) row gets step 0 and all codes 0.
    public func encode(_ residual: UnsafePointer<Float>, into codes: UnsafeMutablePointer<UInt8>) -> (low: Float, step: Float) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: width) { buffer in
            let y = buffer.baseAddress!
            y.update(from: residual, count: width)
            rotate(y)
            return Self.encodeRotated(y, width: width, into: codes)
        }
    }

    static func encodeRotated(_ y: UnsafePointer<Float>, width: Int, into codes: UnsafeMutablePointer<UInt8>) -> (low: Float, step: Float) {
        var low = y[0], high = y[0]
        for j in 1..<max(width, 1) {
            low = min(low, y[j])
            high = max(high, y[j])
        }
        let step = (high - low) / 15
        let bytes = (width + 1) / 2
        guard step > 0, step.isFinite else {
            for b in 0..<bytes { codes[b] = 0 }
            return (low, 0)
        }
        let inverse = 1 / step
        for b in 0..<bytes {
            var byte: UInt8 = 0
            for half in 0..<2 {
                let j = 2 * b + half
                guard j < width else { break }
                // Round to nearest; clamped because (y − low)/step can round past 15 by an ulp.
                let code = min(max(((y[j] - low) * inverse).rounded(.toNearestOrEven), 0), 15)
                byte |= UInt8(code) << UInt8(4 * half)
            }
            codes[b] = byte
        }
        return (low, step)
    }

    /// The reconstruction low + step·c_j of a row, in the rotated space when the coder rotates
    /// (apply `unrotate` to get back to the residual's space).
    public func decodeRotated(_ codes: UnsafePointer<UInt8>, low: Float, step: Float) -> [Float] {
        (0..<width).map { j in
            let nibble = (codes[j / 2] >> UInt8(4 * (j % 2))) & 0x0F
            return low + step * Float(nibble)
        }
    }

    // MARK: - Queries

    /// A query prepared once for many `estimate` calls: rotated, quantised to int8, split into
    /// the even and odd elements (the low and high nibbles of the code bytes), each padded with
    /// zeros to a multiple of 32 bytes so a SIMD kernel can read whole registers.
    public struct PreparedQuery: Sendable {
        /// The rotated float32 query.
        public let rotated: [Float]
        /// int8 query elements 0, 2, 4, … and 1, 3, 5, …, zero-padded to `paddedBytes`.
        public let even: [Int8]
        public let odd: [Int8]
        /// q_j ≈ scale·q8_j (0 for an all-zero query).
        public let scale: Float
        /// Σ_j of the rotated float query (in Double, rounded once).
        public let sum: Float
    }

    /// Bytes of each half of a prepared query: bytesPerRow rounded up to 32.
    var paddedBytes: Int { (bytesPerRow + 31) / 32 * 32 }

    public func prepare(query: UnsafePointer<Float>) -> PreparedQuery {
        let rotated = self.rotated(query)
        var q8 = [Int8](repeating: 0, count: width)
        let scale = rotated.withUnsafeBufferPointer { r in
            q8.withUnsafeMutableBufferPointer { gsk_quantize_int8(r.baseAddress!, width, $0.baseAddress!) }
        }
        var even = [Int8](repeating: 0, count: paddedBytes)
        var odd = [Int8](repeating: 0, count: paddedBytes)
        for j in 0..<width {
            if j % 2 == 0 { even[j / 2] = q8[j] } else { odd[j / 2] = q8[j] }
        }
        var sum: Double = 0
        for value in rotated { sum += Double(value) }
        return PreparedQuery(rotated: rotated, even: even, odd: odd, scale: scale, sum: Float(sum))
    }

    /// estimates[i] ≈ ⟨q, r_i⟩ for `count` rows of codes stored contiguously (bytesPerRow each).
    public func estimate(_ query: PreparedQuery, codes: UnsafePointer<UInt8>, lows: UnsafePointer<Float>,
                         steps: UnsafePointer<Float>, count: Int, into estimates: UnsafeMutablePointer<Float>) {
        let bytes = bytesPerRow
        query.even.withUnsafeBufferPointer { even in
            query.odd.withUnsafeBufferPointer { odd in
                for i in 0..<count {
                    let row = codes + i * bytes
                    var dot: Int32 = 0
                    for b in 0..<bytes {
                        dot += Int32(row[b] & 0x0F) * Int32(even[b]) + Int32(row[b] >> 4) * Int32(odd[b])
                    }
                    estimates[i] = Self.combine(low: lows[i], step: steps[i], dot: dot, query: query)
                }
            }
        }
    }

    /// low·Σq + (step·qscale)·dot, in this order of float32 operations (the C kernels use the same).
    @inline(__always)
    static func combine(low: Float, step: Float, dot: Int32, query: PreparedQuery) -> Float {
        let offset = low * query.sum
        let factor = step * query.scale
        return offset + factor * Float(dot)
    }
}
