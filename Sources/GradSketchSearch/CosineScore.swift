public import GradSketchStore

/// Cosine similarity that holds over the whole finite float32 range.
///
/// The kernels accumulate ⟨row, q̂⟩ and ‖row‖² in float32 at memory speed. ‖row‖² overflows
/// once ‖row‖ passes about 1.8e19 and loses its low bits to underflow once ‖row‖ falls
/// below about 1e-19, which made huge rows score 0 and tiny ones score above 1. Queries are
/// therefore normalised in binary64 (see ``unitQuery(_:)``), and a row whose float32 results
/// fall outside the range where they are accurate is recomputed in binary64, whose exponent
/// range holds any float32 square and product. Scores are clamped to [−1, 1].
///
/// Accuracy: |score − cos| ≤ (k + 4)·2⁻²³ for rows and queries of k finite float32 values
/// (the float32 dot-product bound γₖ plus the roundings of q̂ and of the division); NaN rows
/// (sets with `allow_nonfinite`) score NaN as before; rows of norm 0 score 0.
enum CosineScore {
    /// ‖row‖² from the float32 kernel is trusted from here up to the largest float: products
    /// that underflow (each below 2⁻¹²⁶) then shift the result by at most k·2⁻⁴⁶ relative.
    static let smallestTrustedSquaredNorm: Float = 0x1p-80

    /// The query divided by its Euclidean norm computed in binary64; nil for a zero query.
    static func unitQuery(_ query: ArraySlice<Float>) -> [Float]? {
        let squares = query.reduce(0.0) { $0 + Double($1) * Double($1) }
        guard squares > 0 else { return nil }
        let norm = squares.squareRoot()
        return query.map { Float(Double($0) / norm) }
    }

    /// The cosine of one stored row with the unit query `query`, from the kernel's float32
    /// `dot` and `squaredNorm` when they are accurate, else recomputed from `row`.
    @inline(__always)
    static func score(dot: Float, squaredNorm: Float, row: UnsafeRawPointer, dtype: SketchDType, width: Int,
                      query: UnsafePointer<Float>) -> Float {
        if squaredNorm >= smallestTrustedSquaredNorm, squaredNorm.isFinite, dot.isFinite {
            return clamped(dot / squaredNorm.squareRoot())
        }
        return exact(row: row, dtype: dtype, width: width, query: query)
    }

    /// ⟨row, q̂⟩ / ‖row‖ accumulated in binary64.
    static func exact(row: UnsafeRawPointer, dtype: SketchDType, width: Int, query: UnsafePointer<Float>) -> Float {
        var dot = 0.0, squares = 0.0
        for j in 0..<width {
            let value: Double
            if dtype == .float16 {
                value = Double(Float16(bitPattern: row.loadUnaligned(fromByteOffset: 2 * j, as: UInt16.self)))
            } else {
                value = Double(row.loadUnaligned(fromByteOffset: 4 * j, as: Float.self))
            }
            dot += value * Double(query[j])
            squares += value * value
        }
        if squares.isNaN || dot.isNaN { return .nan }
        guard squares > 0 else { return 0 }
        return clamped(Float(dot / squares.squareRoot()))
    }

    /// `value` limited to [−1, 1]; NaN stays NaN.
    @inline(__always)
    static func clamped(_ value: Float) -> Float { value > 1 ? 1 : value < -1 ? -1 : value }

    /// Scales each of `count` rows of `width` floats (row-major) to unit norm, with the norm
    /// in binary64; rows of norm 0 stay 0.
    static func normalizeRows(_ rows: UnsafeMutablePointer<Float>, count: Int, width: Int) {
        for row in 0..<count {
            let start = rows + row * width
            var squares = 0.0
            for j in 0..<width { squares += Double(start[j]) * Double(start[j]) }
            guard squares > 0, squares.isFinite else { continue }
            let norm = squares.squareRoot()
            for j in 0..<width { start[j] = Float(Double(start[j]) / norm) }
        }
    }
}
