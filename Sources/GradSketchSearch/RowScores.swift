import CGradSketchKernels
import Dispatch
public import GradSketchStore

/// Streaming passes over a set's live rows: the scores exact search, multi-checkpoint scoring
/// and the selection methods are built from.
public enum RowScores {
    /// Rows handed to one kernel call.
    static let chunkRows = 2048

    /// ⟨row, query⟩ for every live row, in live order, and (when `norms` is set) each row's
    /// squared norm: one pass over the mapped rows, split across `threads`.
    public static func dots(_ set: SketchSet, query: [Float], squaredNorms: Bool = false,
                            threads: Int = 2) throws -> (dots: [Float], squaredNorms: [Float]?) {
        guard query.count == set.k else {
            throw StoreError(.invalidInput, "query has \(query.count) values, set \(set.name) has k = \(set.k)")
        }
        var dots = [Float](repeating: 0, count: set.rowCount)
        var norms = squaredNorms ? [Float](repeating: 0, count: set.rowCount) : nil
        try set.forEachBlock { block in
            let parts = max(1, min(threads, (block.rowCount + chunkRows - 1) / chunkRows))
            let per = (block.rowCount + parts - 1) / parts
            // Rows of this block, deleted ones included, then compacted to live order.
            var blockDots = [Float](repeating: 0, count: block.rowCount)
            var blockNorms = [Float](repeating: 0, count: squaredNorms ? block.rowCount : 0)
            blockDots.withUnsafeMutableBufferPointer { d in
                blockNorms.withUnsafeMutableBufferPointer { s in
                    nonisolated(unsafe) let d = d, s = s
                    query.withUnsafeBufferPointer { q in
                        nonisolated(unsafe) let q = q
                        DispatchQueue.concurrentPerform(iterations: parts) { part in
                            var start = part * per
                            let end = min(block.rowCount, start + per)
                            while start < end {
                                let n = min(chunkRows, end - start)
                                let rows = block.bytes.baseAddress! + start * block.k * block.dtype.byteWidth
                                let normsOut = squaredNorms ? s.baseAddress! + start : nil
                                if block.dtype == .float16 {
                                    gsk_dots_f16(rows.assumingMemoryBound(to: UInt16.self), n, block.k, q.baseAddress, d.baseAddress! + start, normsOut)
                                } else {
                                    gsk_dots_f32(rows.assumingMemoryBound(to: Float.self), n, block.k, q.baseAddress, d.baseAddress! + start, normsOut)
                                }
                                start += n
                            }
                        }
                    }
                }
            }
            for (offset, row) in block.liveRows.enumerated() {
                dots[block.firstLiveIndex + offset] = blockDots[row]
                if squaredNorms { norms![block.firstLiveIndex + offset] = blockNorms[row] }
            }
        }
        return (dots, norms)
    }

    /// ‖row‖ for every live row, in live order, accumulated in binary64 (which holds the
    /// square of any float32 row, unlike a float32 accumulator).
    public static func norms(_ set: SketchSet) throws -> [Double] {
        var norms: [Double] = []
        norms.reserveCapacity(set.rowCount)
        let width = set.k
        try set.forEachLiveChunk(rows: chunkRows) { rows, positions in
            for row in positions.indices {
                var squares = 0.0
                for j in 0..<width { squares += Double(rows[row * width + j]) * Double(rows[row * width + j]) }
                norms.append(squares.squareRoot())
            }
        }
        return norms
    }

    /// cos(row, query) for every live row, in live order: in [−1, 1] for rows and queries of
    /// any finite magnitude, 0 for rows of norm 0 (`CosineScore` states the accuracy).
    ///
    /// - Throws: `.invalidInput` for a query of norm 0 or the wrong width.
    public static func cosines(_ set: SketchSet, query: [Float], threads: Int = 2) throws -> [Float] {
        guard query.count == set.k else {
            throw StoreError(.invalidInput, "query has \(query.count) values, set \(set.name) has k = \(set.k)")
        }
        guard let unit = CosineScore.unitQuery(query[...]) else {
            throw StoreError(.invalidInput, "the query has norm 0: cosine is undefined")
        }
        let (dots, norms) = try self.dots(set, query: unit, squaredNorms: true, threads: threads)
        var scores = [Float](repeating: 0, count: dots.count)
        var recompute: [Int] = []
        for i in dots.indices {
            let squared = norms![i]
            if squared >= CosineScore.smallestTrustedSquaredNorm, squared.isFinite, dots[i].isFinite {
                scores[i] = CosineScore.clamped(dots[i] / squared.squareRoot())
            } else {
                recompute.append(i)
            }
        }
        // Rows whose float32 norm overflowed or underflowed (rare): again in binary64.
        let width = set.k
        for start in stride(from: 0, to: recompute.count, by: chunkRows) {
            let positions = Array(recompute[start..<min(recompute.count, start + chunkRows)])
            let rows = try set.floatRows(at: positions)
            rows.withUnsafeBytes { raw in
                unit.withUnsafeBufferPointer { q in
                    for (offset, position) in positions.enumerated() {
                        scores[position] = CosineScore.exact(row: raw.baseAddress! + offset * width * 4, dtype: .float32,
                                                             width: width, query: q.baseAddress!)
                    }
                }
            }
        }
        return scores
    }

}
