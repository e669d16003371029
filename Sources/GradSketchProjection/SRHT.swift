import Dispatch
import Foundation

/// Subsampled randomized Hadamard transforms (Spec/projection.md §3b): O(d log n) per row
/// instead of O(d k), for inputs too large for a dense matrix.
public enum SRHT {
    /// The smallest power of two ≥ d, at most 2²⁰ (4 MiB of float32 per transform).
    public static func defaultBlock(for d: Int) -> Int {
        var n = 1
        while n < d && n < 1 << 20 { n <<= 1 }
        return n
    }

    /// Sample counters are `0xC0000000 + b` for block b; they must stay below the sign
    /// counter `0xE0000000` (§3b), so a parameter has at most 2²⁹ blocks.
    public static let maximumBlocks = 1 << 29

    /// Checks the §3b bounds for a parameter of `d` elements: d < 2³², k < 2³² and at
    /// most 2²⁹ blocks of `blockSize`, so no two counters of the matrix coincide.
    ///
    /// - Throws: ``ProjectionError`` saying which bound fails.
    public static func checkCounters(d: Int, k: Int, blockSize n: Int) throws(ProjectionError) {
        guard n > 0, n & (n - 1) == 0 else { throw ProjectionError("SRHT block must be a power of two, found \(n)") }
        guard d >= 0, d < 1 << 32, k >= 0, k < 1 << 32 else {
            throw ProjectionError("SRHT needs d and k below 2^32, found d = \(d), k = \(k)")
        }
        let blocks = (d + n - 1) / n
        guard blocks <= maximumBlocks else {
            throw ProjectionError("SRHT with block \(n) cuts d = \(d) into \(blocks) blocks: at most 2^29 are allowed (a larger --block fixes it)")
        }
    }

    /// The sign of input coordinate j (§3b).
    @inlinable
    public static func sign(_ stream: ProjectionStream, column j: Int) -> Float {
        Philox4x32.random((UInt32(truncatingIfNeeded: j), 0xE000_0000, stream.id.0, stream.id.1), key: stream.key).0 & 1 == 1 ? -1 : 1
    }

    /// The k Hadamard rows block b samples (§3b).
    public static func sampledRows(_ stream: ProjectionStream, k: Int, blockSize n: Int, block b: Int) -> [Int] {
        (0..<k).map { r in
            let w = Philox4x32.random((UInt32(truncatingIfNeeded: r), 0xC000_0000 &+ UInt32(truncatingIfNeeded: b), stream.id.0, stream.id.1), key: stream.key)
            return Int((UInt64(w.0) &* UInt64(n)) >> 32)
        }
    }

    /// The whole matrix P [k, d], row-major, entry by entry from §3b (for tests):
    /// P[r, j] = scale · sign_j · H[row_{b,r}, j − b·n] with b = ⌊j / n⌋.
    public static func matrix(_ stream: ProjectionStream, k: Int, d: Int, blockSize n: Int) -> [Float] {
        let scale = inverseSquareRootScale(k)
        var matrix = [Float](repeating: 0, count: k * d)
        for b in 0..<((d + n - 1) / n) {
            let samples = sampledRows(stream, k: k, blockSize: n, block: b)
            for j in (b * n)..<min(d, (b + 1) * n) {
                let sign = SRHT.sign(stream, column: j)
                for r in 0..<k {
                    let hadamard: Float = (samples[r] & (j - b * n)).nonzeroBitCount % 2 == 1 ? -1 : 1
                    matrix[r * d + j] = scale * sign * hadamard
                }
            }
        }
        return matrix
    }

    /// In-place unnormalised fast Walsh–Hadamard transform of `n` (a power of two) floats.
    @inlinable
    public static func transform(_ values: UnsafeMutableBufferPointer<Float>) {
        let n = values.count
        var half = 1
        while half < n {
            var start = 0
            while start < n {
                for i in start..<(start + half) {
                    let a = values[i], b = values[i + half]
                    values[i] = a + b
                    values[i + half] = a - b
                }
                start += 2 * half
            }
            half *= 2
        }
    }

    /// Y [rows, k] += P X for rows X [rows, d], blocks of `blockSize` (a power of two).
    ///
    /// Rows are spread over all cores; each thread transforms its rows in its own buffer and
    /// writes only its own rows of Y.
    public static func project(_ x: UnsafeBufferPointer<Float>, rows: Int, d: Int, stream: ProjectionStream, k: Int,
                               blockSize n: Int, addingInto y: UnsafeMutableBufferPointer<Float>) {
        do { try checkCounters(d: d, k: k, blockSize: n) } catch { preconditionFailure(error.description) }
        precondition(x.count == rows * d && y.count == rows * k, "shapes do not match")
        if k == 0 || rows == 0 { return }
        let blocks = (d + n - 1) / n
        // §3b: binary32(1/√k), correctly rounded, as every kind's scale (Float's own 1/√k
        // rounds twice and is one ulp off for k = 6, 7, 300, 1000, …).
        let scale = inverseSquareRootScale(k)
        let threads = max(1, min(rows, ProcessInfo.processInfo.activeProcessorCount))
        for b in 0..<blocks {
            let start = b * n, end = min(d, start + n)
            let signs = (start..<end).map { sign(stream, column: $0) }
            let samples = sampledRows(stream, k: k, blockSize: n, block: b)
            nonisolated(unsafe) let output = y, input = x
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
                defer { buffer.deallocate() }
                for row in stride(from: thread, to: rows, by: threads) {
                    for j in start..<end { buffer[j - start] = input[row * d + j] * signs[j - start] }
                    for j in (end - start)..<n { buffer[j] = 0 }
                    transform(buffer)
                    for (r, sample) in samples.enumerated() { output[row * k + r] += scale * buffer[sample] }
                }
            }
        }
    }
}
