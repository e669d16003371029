import CGradSketchKernels
import COpenBLAS
import Dispatch
public import GradSketchStore

/// How query scores are compared with rows.
public enum SearchMetric: String, Sendable, CaseIterable {
    /// ⟨row, query⟩.
    case innerProduct = "ip"
    /// ⟨row, query⟩ / (‖row‖ ‖query‖), in [−1, 1] for any finite rows and query; rows of
    /// norm 0 score 0 (see `CosineScore` for the accuracy).
    case cosine
}

/// How several queries combine into one score per row (LESS-style task scoring).
public enum QueryAggregation: Sendable, Equatable {
    case mean, max
    /// Mean within each group of queries, then the max over groups (groups may differ in size).
    case groupMeanThenMax(groups: [Int])
}

/// One result: a row of the set (live numbering and id) and its score.
public struct SearchHit: Codable, Sendable, Equatable {
    public let position: Int
    public let id: String
    public let score: Float
}

/// Exact search over a sketch set's mapped rows: a single query streams the rows once at
/// memory speed; several queries run block by block as GEMM with the top-k kept per block,
/// never materialising a rows × queries matrix.
extension SearchHit {
    /// The hits of each query's best entries (scores multiplied back by `sign`), with the ids
    /// of those rows only, read by block (Spec §4.1), never the set's every id.
    static func hits(_ tops: [[TopK.Entry]], of set: SketchSet, sign: Float) throws -> [[SearchHit]] {
        let ids = try set.ids(atLive: tops.flatMap { $0.map(\.position) })
        var next = 0
        return tops.map { top in
            top.map { entry in
                defer { next += 1 }
                return SearchHit(position: entry.position, id: ids[next], score: sign * entry.score)
            }
        }
    }
}

public enum ExactSearch {
    /// Rows per block handed to a kernel or to GEMM.
    static let blockRows = 2048

    /// The best `k` rows for each query (or, with `aggregate`, for the combined score; then
    /// the result has one list). `smallest` returns the bottom-k instead.
    ///
    /// - Parameter queries: `count × set.k` float32, row-major.
    public static func search(_ set: SketchSet, queries: [Float], count: Int, metric: SearchMetric = .innerProduct,
                              k: Int, smallest: Bool = false, aggregate: QueryAggregation? = nil,
                              threads: Int = 2) throws -> [[SearchHit]] {
        let tops = try topEntries(set, segments: 0..<set.segments.count, queries: queries, count: count, metric: metric, k: k,
                                  smallest: smallest, aggregate: aggregate, threads: threads)
        return try SearchHit.hits(tops, of: set, sign: 1)
    }

    /// The best `k` (live position, score) pairs of each query among the live rows of
    /// segments `range` only, best first (lowest scores first with `smallest`), ties by
    /// position: the per-range answer distributed search merges across ranks and shards.
    /// Scores are those ``search(_:queries:count:metric:k:smallest:aggregate:threads:)``
    /// gives the same rows (one segment is one block either way).
    public static func topEntries(_ set: SketchSet, segments range: Range<Int>, queries: [Float], count: Int,
                                  metric: SearchMetric = .innerProduct, k: Int, smallest: Bool = false,
                                  aggregate: QueryAggregation? = nil, threads: Int = 2) throws -> [[TopK.Entry]] {
        guard range.lowerBound >= 0, range.upperBound <= set.segments.count else {
            throw StoreError(.invalidInput, "segments \(range) are outside set \(set.name), which has \(set.segments.count) segments")
        }
        let prepared = try prepareQueries(queries, count: count, for: set, metric: metric)
        if case .groupMeanThenMax(let groups) = aggregate, groups.count != count || groups.contains(where: { $0 < 0 }) {
            throw StoreError(.invalidInput, "group-mean-then-max needs one non-negative group number per query: expected \(count), found \(groups.count)")
        }
        let sign: Float = smallest ? -1 : 1
        let lists = aggregate == nil ? count : 1
        var results = [TopK](repeating: TopK(capacity: k), count: lists)
        try set.forEachBlock(segments: range) { block in
            let live = LiveMask(block)
            if count == 1 {
                let local = scanSingle(block, query: prepared, metric: metric, k: k, sign: sign, live: live, threads: threads)
                results[0].merge(local)
            } else {
                scanBatch(block, queries: prepared, count: count, metric: metric, sign: sign, aggregate: aggregate,
                          live: live, into: &results)
            }
        }
        return results.map { $0.sorted.map { TopK.Entry(score: sign * $0.score, position: $0.position) } }
    }

    /// Checks `count × set.k` queries (shape, finite values) and, for cosine, scales each to
    /// unit norm with the norm in binary64, so a query of any finite magnitude works (a zero
    /// query is refused).
    static func prepareQueries(_ queries: [Float], count: Int, for set: SketchSet, metric: SearchMetric) throws -> [Float] {
        let width = set.k
        guard count >= 1, queries.count == count * width else {
            throw StoreError(.invalidInput, "queries must be [Q, \(width)] for set \(set.name), found \(queries.count) values for Q = \(count)")
        }
        if let bad = queries.firstIndex(where: { !$0.isFinite }) {
            throw StoreError(.invalidInput, "query \(bad / width) has a non-finite value at column \(bad % width)")
        }
        var prepared = queries
        if metric == .cosine {
            for q in 0..<count {
                guard let unit = CosineScore.unitQuery(queries[(q * width)..<((q + 1) * width)]) else {
                    throw StoreError(.invalidInput, "query \(q) has norm 0: cosine is undefined")
                }
                prepared.replaceSubrange((q * width)..<((q + 1) * width), with: unit)
            }
        }
        return prepared
    }

    /// Maps a block's local rows to live positions (nil for deleted rows).
    struct LiveMask {
        let first: Int
        let deleted: Set<Int>
        let sortedDeleted: [Int]
        init(_ block: RowBlock) {
            self.init(first: block.firstLiveIndex, deleted: block.deleted)
        }
        init(first: Int, deleted: [Int]) {
            self.first = first
            sortedDeleted = deleted
            self.deleted = Set(deleted)
        }
        /// Live position of local row `row`, or nil when deleted.
        func position(_ row: Int) -> Int? {
            if sortedDeleted.isEmpty { return first + row }
            if deleted.contains(row) { return nil }
            // rows deleted before this one
            var low = 0, high = sortedDeleted.count
            while low < high { let mid = (low + high) / 2; if sortedDeleted[mid] < row { low = mid + 1 } else { high = mid } }
            return first + row - low
        }
    }

    static func scanSingle(_ block: RowBlock, query: [Float], metric: SearchMetric, k: Int, sign: Float,
                           live: LiveMask, threads: Int) -> TopK {
        let parts = max(1, min(threads, (block.rowCount + blockRows - 1) / blockRows))
        let per = (block.rowCount + parts - 1) / parts
        nonisolated(unsafe) var partial = [TopK](repeating: TopK(capacity: k), count: parts)
        partial.withUnsafeMutableBufferPointer { heaps in
            nonisolated(unsafe) let heaps = heaps
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                var top = TopK(capacity: k)
                var dots = [Float](repeating: 0, count: blockRows), norms = [Float](repeating: 0, count: blockRows)
                var start = part * per
                let end = min(block.rowCount, start + per)
                while start < end {
                    let n = min(blockRows, end - start)
                    let rows = block.bytes.baseAddress! + start * block.k * block.dtype.byteWidth
                    query.withUnsafeBufferPointer { q in
                        dots.withUnsafeMutableBufferPointer { d in
                            norms.withUnsafeMutableBufferPointer { s in
                                let normsPointer = metric == .cosine ? s.baseAddress : nil
                                if block.dtype == .float16 {
                                    gsk_dots_f16(rows.assumingMemoryBound(to: UInt16.self), n, block.k, q.baseAddress, d.baseAddress, normsPointer)
                                } else {
                                    gsk_dots_f32(rows.assumingMemoryBound(to: Float.self), n, block.k, q.baseAddress, d.baseAddress, normsPointer)
                                }
                            }
                        }
                    }
                    let rowBytes = block.k * block.dtype.byteWidth
                    for i in 0..<n {
                        guard let position = live.position(start + i) else { continue }
                        var score = dots[i]
                        if metric == .cosine {
                            score = query.withUnsafeBufferPointer { q in
                                CosineScore.score(dot: dots[i], squaredNorm: norms[i], row: rows + i * rowBytes, dtype: block.dtype,
                                                  width: block.k, query: q.baseAddress!)
                            }
                        }
                        score *= sign
                        if score >= top.threshold { top.offer(score, position: position) }
                    }
                    start += n
                }
                heaps[part] = top
            }
        }
        var merged = TopK(capacity: k)
        for top in partial { merged.merge(top) }
        return merged
    }

    static func scanBatch(_ block: RowBlock, queries: [Float], count: Int, metric: SearchMetric, sign: Float,
                          aggregate: QueryAggregation?, live: LiveMask, into results: inout [TopK]) {
        let width = block.k
        var rows = [Float](repeating: 0, count: blockRows * width)
        var scores = [Float](repeating: 0, count: blockRows * count)
        var start = 0
        while start < block.rowCount {
            let n = min(blockRows, block.rowCount - start)
            let source = UnsafeRawBufferPointer(rebasing: block.bytes[(start * width * block.dtype.byteWidth)..<((start + n) * width * block.dtype.byteWidth)])
            rows.withUnsafeMutableBufferPointer { target in
                if block.dtype == .float16 {
                    gsk_f16_to_f32(source.baseAddress!.assumingMemoryBound(to: UInt16.self), target.baseAddress, n * width)
                } else {
                    target.baseAddress!.update(from: source.baseAddress!.assumingMemoryBound(to: Float.self), count: n * width)
                }
            }
            // Cosine: unit rows (norms in binary64, so no row overflows or underflows), then
            // the GEMM gives the cosines themselves.
            if metric == .cosine {
                rows.withUnsafeMutableBufferPointer { CosineScore.normalizeRows($0.baseAddress!, count: n, width: width) }
            }
            // scores (n × Q) = rows (n × k) · queriesᵀ (k × Q)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(count), Int32(width),
                        1, rows, Int32(width), queries, Int32(width), 0, &scores, Int32(count))
            for i in 0..<n {
                guard let position = live.position(start + i) else { continue }
                let row = i * count
                if metric == .cosine {
                    for q in 0..<count { scores[row + q] = CosineScore.clamped(scores[row + q]) }
                }
                switch aggregate {
                case nil:
                    for q in 0..<count { results[q].offer(sign * scores[row + q], position: position) }
                case .mean:
                    var sum: Float = 0
                    for q in 0..<count { sum += scores[row + q] }
                    results[0].offer(sign * sum / Float(count), position: position)
                case .max:
                    var best = -Float.infinity
                    for q in 0..<count { best = Swift.max(best, scores[row + q]) }
                    results[0].offer(sign * best, position: position)
                case .groupMeanThenMax(let groups):
                    var sums: [Int: (Float, Int)] = [:]
                    for q in 0..<count { let value = sums[groups[q]] ?? (0, 0); sums[groups[q]] = (value.0 + scores[row + q], value.1 + 1) }
                    let best = sums.values.map { $0.0 / Float($0.1) }.max()!
                    results[0].offer(sign * best, position: position)
                }
            }
            start += n
        }
    }
}
