/// Dense Rademacher projections (Spec/projection.md §2): entries ±1/√k, 128 per Philox call.
public enum DenseRademacher {
    /// Writes the transposed block Pᵀ[columns, 0..<k] (row-major, `columns.count × k`): row
    /// `c` holds P[·, columns.lowerBound + c]. This is the operand a GEMM `X · Pᵀ` needs.
    ///
    /// Branch-free: each entry is the scale's bit pattern with the random bit as its sign
    /// bit, so the 32-entry loops vectorise.
    @inlinable
    public static func fillTransposed(_ stream: ProjectionStream, k: Int, columns: Range<Int>,
                                      into output: UnsafeMutableBufferPointer<Float>) {
        precondition(output.count >= columns.count * k, "output too small for the block")
        if k == 0 { return }
        let scaleBits = inverseSquareRootScale(k).bitPattern
        let key = stream.key
        let blocks = (k + 127) / 128
        var row = output.baseAddress!
        for column in columns {
            for block in 0..<blocks {
                let bits = Philox4x32.random((UInt32(truncatingIfNeeded: column), UInt32(block), stream.id.0, stream.id.1), key: key)
                let base = block * 128
                writeSigns(bits.0, scaleBits, row + base, count: min(32, k - base))
                if base + 32 < k { writeSigns(bits.1, scaleBits, row + base + 32, count: min(32, k - base - 32)) }
                if base + 64 < k { writeSigns(bits.2, scaleBits, row + base + 64, count: min(32, k - base - 64)) }
                if base + 96 < k { writeSigns(bits.3, scaleBits, row + base + 96, count: min(32, k - base - 96)) }
            }
            row += k
        }
    }

    /// Entry b of the run is `−scale` when bit b of `word` is set, `+scale` otherwise.
    @inlinable @inline(__always)
    static func writeSigns(_ word: UInt32, _ scaleBits: UInt32, _ target: UnsafeMutablePointer<Float>, count: Int) {
        if count == 32 {
            for bit in 0..<32 { target[bit] = Float(bitPattern: scaleBits | ((word >> UInt32(bit)) & 1) << 31) }
        } else {
            for bit in 0..<count { target[bit] = Float(bitPattern: scaleBits | ((word >> UInt32(bit)) & 1) << 31) }
        }
    }

    /// The whole matrix P [k, d], row-major (for tests and small layers).
    public static func matrix(_ stream: ProjectionStream, k: Int, d: Int) -> [Float] {
        var transposed = [Float](repeating: 0, count: k * d)
        transposed.withUnsafeMutableBufferPointer { fillTransposed(stream, k: k, columns: 0..<d, into: $0) }
        var matrix = [Float](repeating: 0, count: k * d)
        for j in 0..<d {
            for r in 0..<k { matrix[r * d + j] = transposed[j * k + r] }
        }
        return matrix
    }
}

/// Sparse JL / CountSketch projections (Spec/projection.md §3): s signed entries of 1/√s per
/// input coordinate, at rows chosen by multiply-shift.
public enum SparseJL {
    /// For input coordinate j, its s (row, value) entries in t order.
    @inlinable
    public static func entries(_ stream: ProjectionStream, k: Int, nonzeros s: Int, column j: Int) -> [(row: Int, value: Float)] {
        let scale = inverseSquareRootScale(s)
        return (0..<s).map { t in
            let bits = Philox4x32.random((UInt32(truncatingIfNeeded: j), 0x8000_0000 &+ UInt32(t), stream.id.0, stream.id.1), key: stream.key)
            let row = Int((UInt64(bits.0) &* UInt64(k)) >> 32)
            return (row, bits.1 & 1 == 1 ? -scale : scale)
        }
    }

    /// Projects rows X [n, d] into Y [n, k] (added to Y).
    public static func project(_ x: UnsafeBufferPointer<Float>, rows n: Int, d: Int, stream: ProjectionStream,
                               k: Int, nonzeros s: Int, addingInto y: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == n * d && y.count == n * k, "shapes do not match")
        if k == 0 { return }
        // §3 fixes this order: y[r] gets, for j ascending and within a column for t
        // ascending, the binary32 product entry · x_j added in binary32. Two entries of one
        // column on the same row are two additions, not one addition of their sum.
        for j in 0..<d {
            for (row, value) in entries(stream, k: k, nonzeros: s, column: j) {
                for example in 0..<n { y[example * k + row] += value * x[example * d + j] }
            }
        }
    }

    /// The whole matrix P [k, d], row-major (for tests): entries of a column on the same
    /// row are summed in binary32, in t order, from 0 (§3).
    public static func matrix(_ stream: ProjectionStream, k: Int, d: Int, nonzeros s: Int) -> [Float] {
        var matrix = [Float](repeating: 0, count: k * d)
        for j in 0..<d {
            for (row, value) in entries(stream, k: k, nonzeros: s, column: j) { matrix[row * d + j] += value }
        }
        return matrix
    }
}
