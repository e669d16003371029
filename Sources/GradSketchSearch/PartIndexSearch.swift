import CGradSketchKernels
import Dispatch
import Synchronization
public import GradSketchStore

/// Search parameters of an `ivf-rq4` query.
public struct PartSearchParameters: Sendable, Equatable {
    /// Lists probed per query.
    public var nprobe: Int
    /// Candidates re-ranked exactly at k = 10; scaled with k.
    public var rerank: Int
    /// Upper-level groups whose lists are considered when routing; nil considers all.
    public var groupProbe: Int?

    public init(nprobe: Int, rerank: Int, groupProbe: Int?) {
        self.nprobe = nprobe
        self.rerank = rerank
        self.groupProbe = groupProbe
    }
}

/// Approximate search through an `ivf-rq4` index (Spec §10.3), exact where it does not reach.
///
/// A query routes through the two-level coarse quantizer to `nprobe` lists (considering the
/// lists of the `groupProbe` best groups only), estimates ⟨q, c⟩ + ⟨q, r⟩ for the rows of
/// those lists in every part from their 4-bit codes, keeps the best `rerank`·k/10 candidates
/// and re-scores them exactly from the set's rows. Segments after the covered prefix are
/// scanned exactly; rows deleted since the build are skipped. Part arrays are verified by
/// block on first touch.
public final class PartIndexSearcher: @unchecked Sendable {
    public let set: SketchSet
    public let metric: SearchMetric
    let quantizer: CoarseQuantizer
    let coder: FourBitCoder
    let parts: [StoredIndexPart]
    /// Index of each part's first row in the candidate numbering (parts concatenated).
    private let partStarts: [Int]
    private let physicalStarts: [Int]
    private let coveredSegments: [SegmentRows]
    private let coveredMasks: [ExactSearch.LiveMask]
    private let tailBlocks: [RowBlock]
    private let tailMasks: [ExactSearch.LiveMask]
    private let deleted: [Bool]
    public let defaults: PartSearchParameters
    public let tuning: [(nprobe: Int, recall: Double)]

    /// Opens `ivf-rq4` index `name` of `set`.
    ///
    /// - Throws: `.notFound` without such an index; `.conflict` if the set no longer starts
    ///   with the segments it covers.
    public convenience init(set: SketchSet, index name: String) throws {
        let (entry, stored, parts) = try set.partIndex(name)
        guard let metric = SearchMetric(rawValue: entry.metric) else {
            throw StoreError(.unsupportedVersion, "index \(name) has metric \"\(entry.metric)\": expected ip or cosine")
        }
        let quantizer = try CoarseQuantizer(width: set.k, centroids: stored.centroids, groupCentroids: stored.groupCentroids,
                                            groupOffsets: stored.groupOffsets)
        let coder = FourBitCoder(width: set.k, rotationSeed: stored.rotationSeed)
        let (nprobe, rerank, tuning) = QueryParametersText.stored(entry)
        let groups = stored.groupOffsets.count - 1
        let groupProbe = entry.parameters["group_probe"]?.intValue ?? groups
        try self.init(set: set, quantizer: quantizer, coder: coder, parts: parts, metric: metric,
                      coveredSegments: set.coveredSegmentCount(of: entry), indexName: name,
                      defaults: PartSearchParameters(nprobe: nprobe, rerank: rerank, groupProbe: groupProbe),
                      tuning: tuning.map { ($0.nprobe, $0.recall) })
    }

    init(set: SketchSet, quantizer: CoarseQuantizer, coder: FourBitCoder, parts: [StoredIndexPart], metric: SearchMetric,
         coveredSegments: Int?, indexName: String, defaults: PartSearchParameters, tuning: [(Int, Double)]) throws {
        guard let covered = coveredSegments else {
            throw StoreError(.conflict, "index \(indexName) of set \(set.name) was built on segments that version \(set.version) no longer starts with; rebuild it with `gradsketch index build --kind \(PartIndexKind.name)`")
        }
        self.set = set
        self.metric = metric
        self.quantizer = quantizer
        self.coder = coder
        self.parts = parts
        var starts = [0]
        for part in parts { starts.append(starts.last! + part.rows) }
        partStarts = starts
        self.defaults = defaults
        self.tuning = tuning.map { (nprobe: $0.0, recall: $0.1) }
        var physical = [0], masks: [ExactSearch.LiveMask] = []
        var firstLive = 0
        for segment in set.segments.prefix(covered) {
            masks.append(ExactSearch.LiveMask(first: firstLive, deleted: try segment.deletedRows()))
            physical.append(physical.last! + segment.entry.rows)
            firstLive += segment.entry.rows - segment.deletedCount
        }
        self.coveredSegments = Array(set.segments.prefix(covered))
        coveredMasks = masks
        physicalStarts = physical
        var tail: [RowBlock] = []
        try set.forEachBlock(segments: covered..<set.segments.count) { tail.append($0) }
        tailBlocks = tail
        tailMasks = tail.map(ExactSearch.LiveMask.init)
        if masks.contains(where: { !$0.sortedDeleted.isEmpty }) {
            var deleted = [Bool](repeating: false, count: physical.last!)
            for (segment, mask) in masks.enumerated() {
                for row in mask.sortedDeleted { deleted[physical[segment] + row] = true }
            }
            self.deleted = deleted
        } else {
            self.deleted = []
        }
    }

    public var indexedRows: Int { partStarts.last! }
    public var exactRows: Int { tailBlocks.reduce(0) { $0 + $1.rowCount - $1.deleted.count } }
    public var lists: Int { quantizer.lists }
    public var groups: Int { quantizer.groupOffsets.count - 1 }
    public var partCount: Int { parts.count }

    /// The smallest tuned nprobe whose held-out recall@10 reached `target`, or all lists.
    public func nprobe(forRecall target: Double) -> Int {
        tuning.sorted { $0.nprobe < $1.nprobe }.first { $0.recall >= target }?.nprobe ?? lists
    }

    /// The best `k` rows for each query (`count × set.k` float32); `smallest` gives the bottom-k.
    public func search(queries: [Float], count: Int, k: Int, parameters: PartSearchParameters? = nil, smallest: Bool = false,
                       threads: Int = 1) throws -> [[SearchHit]] {
        let width = set.k
        guard k >= 1 else { throw StoreError(.invalidInput, "k must be at least 1, found \(k)") }
        let parameters = parameters ?? defaults
        // An nprobe without a group probe: the tuned share of groups, scaled with nprobe.
        var scaled = parameters
        if parameters.groupProbe == nil, let tuned = defaults.groupProbe {
            scaled.groupProbe = PartIndexBuilder.groupProbe(forNprobe: parameters.nprobe, tunedNprobe: defaults.nprobe,
                                                            tunedGroupProbe: tuned, lists: lists, groups: groups)
        }
        let routed = scaled
        guard parameters.nprobe >= 1, parameters.rerank >= 1, (parameters.groupProbe ?? 1) >= 1 else {
            throw StoreError(.invalidInput, "nprobe, rerank and group probe must be at least 1, found \(parameters.nprobe), \(parameters.rerank) and \(parameters.groupProbe ?? 0)")
        }
        var prepared = try ExactSearch.prepareQueries(queries, count: count, for: set, metric: metric)
        if smallest { prepared = prepared.map { -$0 } }
        let sign: Float = smallest ? -1 : 1
        nonisolated(unsafe) var results = [[TopK.Entry]](repeating: [], count: count)
        let failure = Mutex<(any Error)?>(nil)
        let frozen = prepared
        results.withUnsafeMutableBufferPointer { output in
            nonisolated(unsafe) let output = output
            let workers = max(1, min(threads, count))
            @Sendable func work(_ worker: Int) {
                var q = worker
                while q < count {
                    let query = Array(frozen[(q * width)..<((q + 1) * width)])
                    do {
                        output[q] = try searchOne(query, k: k, parameters: routed).sorted
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                        return
                    }
                    q += workers
                }
            }
            if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return try SearchHit.hits(results, of: set, sign: sign)
    }

    /// One (already normalised and signed) query; returns live positions with scores.
    func searchOne(_ query: [Float], k: Int, parameters: PartSearchParameters) throws -> TopK {
        let width = set.k, bytesPerRow = coder.bytesPerRow
        let nprobe = min(parameters.nprobe, lists)
        // Probing every list needs every group: the answer is then exact up to the re-rank.
        let groupProbe = nprobe >= lists ? nil : parameters.groupProbe.map { min($0, groups) }
        let probes = query.withUnsafeBufferPointer { quantizer.probe($0.baseAddress!, nprobe: nprobe, groupProbe: groupProbe) }
        let prepared = query.withUnsafeBufferPointer { coder.prepare(query: $0.baseAddress!) }
        var candidates = TopK(capacity: IVFSearchParameters(nprobe: nprobe, rerank: parameters.rerank).candidates(for: k))
        let chunk = 4096
        try withUnsafeTemporaryAllocation(of: Float.self, capacity: chunk) { estimates in
        try quantizer.centroids.withUnsafeBufferPointer { centroids in
        try deleted.withUnsafeBufferPointer { deleted in
            for probe in probes {
                let list = Int(probe)
                var base: Float = 0
                gsk_dots_f32(centroids.baseAddress! + list * width, 1, width, query, &base, nil)
                for (partIndex, part) in parts.enumerated() {
                    try part.verify(list: list)
                    let (codes, lows, steps, positions) = part.unverifiedArrays
                    let firstCandidate = partStarts[partIndex]
                    var start = part.listOffsets[list]
                    let end = part.listOffsets[list + 1]
                    while start < end {
                        let n = min(chunk, end - start)
                        coder.estimate(prepared, codes: codes.baseAddress! + start * bytesPerRow, lows: lows.baseAddress! + start,
                                       steps: steps.baseAddress! + start, count: n, into: estimates.baseAddress!)
                        // The threshold only rises, so it is re-read after an offer, not per row.
                        var threshold = candidates.threshold
                        for i in 0..<n {
                            let estimate = base + estimates[i]
                            guard estimate >= threshold else { continue }
                            let physical = positions[start + i]
                            // A position out of range is caught when re-ranked, below.
                            if !deleted.isEmpty && physical >= 0 && physical < Int64(deleted.count) && deleted[Int(physical)] { continue }
                            candidates.offer(estimate, position: firstCandidate + start + i)
                            threshold = candidates.threshold
                        }
                        start += n
                    }
                }
            }
        }}}
        // Exact re-rank from the stored rows.
        var top = TopK(capacity: k)
        let physicalRows = physicalStarts.last!
        let rowBytes = width * set.dtype.byteWidth
        let ranked = candidates.sorted
        var located: [(row: UnsafeRawPointer, segment: Int, local: Int)] = []
        located.reserveCapacity(ranked.count)
        for candidate in ranked {
            var partIndex = 0
            while partStarts[partIndex + 1] <= candidate.position { partIndex += 1 }
            let physical = Int(parts[partIndex].unverifiedArrays.positions[candidate.position - partStarts[partIndex]])
            guard physical >= 0 && physical < physicalRows else {
                throw StoreError(.corrupt, "index part names row position \(physical), but its segments hold \(physicalRows) rows",
                                 path: parts[partIndex].path)
            }
            var segment = 0, high = physicalStarts.count - 1
            while segment + 1 < high {  // last start ≤ physical
                let mid = (segment + high) / 2
                if physicalStarts[mid] <= physical { segment = mid } else { high = mid }
            }
            let local = physical - physicalStarts[segment]
            let row = try coveredSegments[segment].verifiedRow(local)
            gsk_prefetch(row, rowBytes)
            located.append((row, segment, local))
        }
        let cosine = metric == .cosine
        for (row, segment, local) in located {
            var dot: Float = 0, norm: Float = 0
            withUnsafeMutablePointer(to: &norm) { normPointer in
                let norms = cosine ? normPointer : nil
                if set.dtype == .float16 {
                    gsk_dots_f16(row.assumingMemoryBound(to: UInt16.self), 1, width, query, &dot, norms)
                } else {
                    gsk_dots_f32(row.assumingMemoryBound(to: Float.self), 1, width, query, &dot, norms)
                }
            }
            let score = cosine ? CosineScore.score(dot: dot, squaredNorm: norm, row: row, dtype: set.dtype, width: width, query: query) : dot
            if let position = coveredMasks[segment].position(local) { top.offer(score, position: position) }
        }
        for (block, mask) in zip(tailBlocks, tailMasks) {
            top.merge(ExactSearch.scanSingle(block, query: query, metric: metric, k: k, sign: 1, live: mask, threads: 1))
        }
        return top
    }
}
