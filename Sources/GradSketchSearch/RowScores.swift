import CGradSketchKernels
import Dispatch
import GradSketchInterchange
public import GradSketchStore

/// Streaming passes over a set's live rows: the scores exact search, multi-checkpoint scoring
/// and the selection methods are built from.
public enum RowScores {
    /// Rows handed to one kernel call.
    static let chunkRows = 2048

    /// ⟨row, query⟩ for every live row, in live order, and (when `norms` is set) each row's
    /// squared norm: one pass over the mapped rows, split across `threads`. With `segments`,
    /// only the live rows of those segments, in live order from the range's first live row
    /// (each row's values are the same as in the whole-set pass).
    public static func dots(_ set: SketchSet, segments: Range<Int>? = nil, query: [Float], squaredNorms: Bool = false,
                            threads: Int = 2) throws -> (dots: [Float], squaredNorms: [Float]?) {
        guard query.count == set.k else {
            throw StoreError(.invalidInput, "query has \(query.count) values, set \(set.name) has k = \(set.k)")
        }
        let range = try segmentRange(segments, of: set)
        let (first, rowCount) = liveSpan(of: range, in: set)
        var dots = [Float](repeating: 0, count: rowCount)
        var norms = squaredNorms ? [Float](repeating: 0, count: rowCount) : nil
        try set.forEachBlock(segments: range) { block in
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
                dots[block.firstLiveIndex - first + offset] = blockDots[row]
                if squaredNorms { norms![block.firstLiveIndex - first + offset] = blockNorms[row] }
            }
        }
        return (dots, norms)
    }

    /// ‖row‖ for every live row, in live order, accumulated in binary64 (which holds the
    /// square of any float32 row, unlike a float32 accumulator). With `segments`, only the
    /// live rows of those segments.
    public static func norms(_ set: SketchSet, segments: Range<Int>? = nil) throws -> [Double] {
        let range = try segmentRange(segments, of: set)
        var norms: [Double] = []
        norms.reserveCapacity(liveSpan(of: range, in: set).count)
        let width = set.k
        var widened = [Float](repeating: 0, count: width)
        try set.forEachBlock(segments: range) { block in
            for row in block.liveRows {
                try widened.withUnsafeMutableBytes { target in
                    _ = try ElementConversion.convert(block.row(row), from: block.dtype.elementType, to: .float32, into: target)
                }
                var squares = 0.0
                for j in 0..<width { squares += Double(widened[j]) * Double(widened[j]) }
                norms.append(squares.squareRoot())
            }
        }
        return norms
    }

    /// `segments`, or every segment of the set when nil, checked against the set.
    static func segmentRange(_ segments: Range<Int>?, of set: SketchSet) throws -> Range<Int> {
        guard let segments else { return 0..<set.segments.count }
        guard segments.lowerBound >= 0, segments.upperBound <= set.segments.count else {
            throw StoreError(.invalidInput, "segments \(segments) are outside set \(set.name), which has \(set.segments.count) segments")
        }
        return segments
    }

    /// The live position of the first live row of `range` and the live rows in it, from the
    /// manifest (no file is read).
    static func liveSpan(of range: Range<Int>, in set: SketchSet) -> (first: Int, count: Int) {
        let live = { (segment: SegmentRows) in segment.entry.rows - segment.deletedCount }
        return (set.segments[..<range.lowerBound].reduce(0) { $0 + live($1) }, set.segments[range].reduce(0) { $0 + live($1) })
    }

    /// cos(row, query) for every live row, in live order: in [−1, 1] for rows and queries of
    /// any finite magnitude, 0 for rows of norm 0 (`CosineScore` states the accuracy).
    ///
    /// - Throws: `.invalidInput` for a query of norm 0 or the wrong width.
    public static func cosines(_ set: SketchSet, segments: Range<Int>? = nil, query: [Float], threads: Int = 2) throws -> [Float] {
        guard query.count == set.k else {
            throw StoreError(.invalidInput, "query has \(query.count) values, set \(set.name) has k = \(set.k)")
        }
        guard let unit = CosineScore.unitQuery(query[...]) else {
            throw StoreError(.invalidInput, "the query has norm 0: cosine is undefined")
        }
        let range = try segmentRange(segments, of: set)
        let first = liveSpan(of: range, in: set).first
        let (dots, norms) = try self.dots(set, segments: range, query: unit, squaredNorms: true, threads: threads)
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
            let rows = try set.floatRows(at: positions.map { first + $0 })
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
