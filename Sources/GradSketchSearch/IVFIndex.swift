import CGradSketchKernels
import Dispatch
import Synchronization
public import GradSketchStore

/// The arrays an IVF search reads, whether just built or loaded from the store.
struct IVFLists: @unchecked Sendable {
    let metric: SearchMetric
    let width: Int
    let centroids: [Float]
    let offsets: [Int]
    let codes: UnsafeBufferPointer<Int8>
    let scales: UnsafeBufferPointer<Float>
    let positions: UnsafeBufferPointer<Int64>
    /// The stored index the arrays point into, which verifies a list's rows before a search
    /// reads them; nil for arrays just built in memory.
    let stored: StoredIndex?
    /// int8 codes of the centroids, for routing: a quarter of the bytes of float32, which
    /// matters because every query reads all centroids.
    let centroidCodes: [Int8]
    let centroidScales: [Float]
    var lists: Int { offsets.count - 1 }

    init(metric: SearchMetric, width: Int, centroids: [Float], offsets: [Int], codes: UnsafeBufferPointer<Int8>,
         scales: UnsafeBufferPointer<Float>, positions: UnsafeBufferPointer<Int64>, stored: StoredIndex? = nil) {
        self.metric = metric
        self.width = width
        self.centroids = centroids
        self.offsets = offsets
        self.codes = codes
        self.scales = scales
        self.positions = positions
        self.stored = stored
        let lists = offsets.count - 1
        var centroidCodes = [Int8](repeating: 0, count: lists * width)
        var centroidScales = [Float](repeating: 0, count: lists)
        centroids.withUnsafeBufferPointer { c in
            centroidCodes.withUnsafeMutableBufferPointer { codes in
                for list in 0..<lists {
                    centroidScales[list] = gsk_quantize_int8(c.baseAddress! + list * width, width, codes.baseAddress! + list * width)
                }
            }
        }
        self.centroidCodes = centroidCodes
        self.centroidScales = centroidScales
    }
}

/// Search parameters of an IVF query.
public struct IVFSearchParameters: Sendable, Equatable {
    /// Lists probed per query.
    public var nprobe: Int
    /// Candidates re-ranked exactly from the stored rows when k = 10; scaled with k.
    public var rerank: Int

    public init(nprobe: Int, rerank: Int) {
        self.nprobe = nprobe
        self.rerank = rerank
    }

    func candidates(for k: Int) -> Int {
        // rerank × k / 10, saturating: both come from users and files.
        let (product, overflow) = rerank.multipliedReportingOverflow(by: k)
        return overflow ? Int.max : max(rerank, product / 10 + (product % 10 == 0 ? 0 : 1), k)
    }
}

/// Approximate search through an IVF index, exact where the index does not reach.
///
/// A query routes to the `nprobe` lists of largest ⟨q, centroid⟩, scores their rows from int8
/// residual codes (⟨q, c⟩ + ⟨q, r⟩ estimated with an int8 query), keeps the best candidates,
/// and re-scores them exactly from the set's mapped rows. Rows of segments appended after the
/// build are scanned exactly and rows deleted since are skipped, so an answer never misses a
/// row because the index is older than the set.
///
/// Opening reads the centroids and list offsets only; a query reads its probed lists' codes,
/// scales and positions, the rows it re-ranks, and the ids of its hits, each verified by block
/// on first touch. A searcher can be kept open and shared across threads.
public final class IVFSearcher: @unchecked Sendable {
    public let set: SketchSet
    public let metric: SearchMetric
    let ivf: IVFLists
    /// Keeps the index's mapping alive while `ivf.codes` points into it.
    private let owner: AnyObject?
    /// First physical position of each covered segment, plus the total.
    private let physicalStarts: [Int]
    /// The covered segments, whose rows are re-ranked where candidates land.
    private let coveredSegments: [SegmentRows]
    private let coveredMasks: [ExactSearch.LiveMask]
    /// Segments after the covered ones, searched exactly, and their live numbering.
    private let tailBlocks: [RowBlock]
    private let tailMasks: [ExactSearch.LiveMask]
    /// Physical positions deleted in this version; empty when no covered segment has deletions.
    private let deleted: [Bool]
    /// Defaults stored with the index.
    public let defaults: IVFSearchParameters
    public let tuning: [(nprobe: Int, recall: Double)]

    /// Opens index `name` of `set` for searching.
    ///
    /// - Throws: `.notFound` without such an index; `.conflict` if the set no longer starts
    ///   with the segments the index was built on (rebuild it).
    public convenience init(set: SketchSet, index name: String) throws {
        let stored = try set.index(name)
        guard let metric = SearchMetric(rawValue: stored.entry.metric) else {
            throw StoreError(.unsupportedVersion, "index \(name) has metric \"\(stored.entry.metric)\": expected ip or cosine")
        }
        guard stored.entry.kind == "ivf-int8" else {
            throw StoreError(.unsupportedVersion, "index \(name) is of kind \"\(stored.entry.kind)\": this version reads ivf-int8")
        }
        let arrays = stored.unverifiedArrays
        let lists = IVFLists(metric: metric, width: set.k, centroids: stored.centroids, offsets: stored.listOffsets,
                             codes: arrays.codes, scales: arrays.scales, positions: arrays.positions, stored: stored)
        let parameters = stored.entry.parameters
        let nprobe = parameters["default_nprobe"]?.intValue ?? min(stored.lists, 16)
        let rerank = parameters["rerank"]?.intValue ?? 32
        var tuning: [(Int, Double)] = []
        if case .array(let rows)? = parameters["tuning"] {
            for row in rows {
                if case .object(let fields) = row, let probe = fields["nprobe"]?.intValue, let recall = fields["recall"]?.doubleValue {
                    tuning.append((probe, recall))
                }
            }
        }
        try self.init(set: set, lists: lists, owner: stored, coveredSegments: set.coveredSegmentCount(of: stored.entry), indexName: name,
                      defaults: IVFSearchParameters(nprobe: nprobe, rerank: rerank), tuning: tuning)
    }

    init(set: SketchSet, lists: IVFLists, owner: AnyObject?, coveredSegments: Int?, indexName: String,
         defaults: IVFSearchParameters, tuning: [(Int, Double)]) throws {
        guard let covered = coveredSegments else {
            throw StoreError(.conflict, "index \(indexName) of set \(set.name) was built on segments that version \(set.version) no longer starts with; rebuild it with `gradsketch index build`")
        }
        self.set = set
        self.metric = lists.metric
        self.ivf = lists
        self.owner = owner
        self.defaults = defaults
        self.tuning = tuning.map { (nprobe: $0.0, recall: $0.1) }
        // Live numbering and physical positions come from the manifest's row and deletion
        // counts; only segments that have deletions have their deletion lists read.
        var starts = [0], masks: [ExactSearch.LiveMask] = []
        var firstLive = 0
        for segment in set.segments.prefix(covered) {
            masks.append(ExactSearch.LiveMask(first: firstLive, deleted: try segment.deletedRows()))
            starts.append(starts.last! + segment.entry.rows)
            firstLive += segment.entry.rows - segment.deletedCount
        }
        self.coveredSegments = Array(set.segments.prefix(covered))
        coveredMasks = masks
        physicalStarts = starts
        var tail: [RowBlock] = []
        try set.forEachBlock(segments: covered..<set.segments.count) { tail.append($0) }
        tailBlocks = tail
        tailMasks = tail.map(ExactSearch.LiveMask.init)
        if masks.contains(where: { !$0.sortedDeleted.isEmpty }) {
            var deleted = [Bool](repeating: false, count: starts.last!)
            for (segment, mask) in masks.enumerated() {
                for row in mask.sortedDeleted { deleted[starts[segment] + row] = true }
            }
            self.deleted = deleted
        } else {
            self.deleted = []
        }
    }

    /// Rows searched through the index, and rows searched exactly because they were appended later.
    public var indexedRows: Int { ivf.positions.count }
    public var exactRows: Int { tailBlocks.reduce(0) { $0 + $1.rowCount - $1.deleted.count } }
    public var lists: Int { ivf.lists }

    /// The smallest tuned nprobe whose held-out recall@10 reached `target`, or all lists.
    public func nprobe(forRecall target: Double) -> Int {
        tuning.sorted { $0.nprobe < $1.nprobe }.first { $0.recall >= target }?.nprobe ?? ivf.lists
    }

    /// The best `k` rows for each query (`count × set.k` float32); `smallest` gives the bottom-k.
    public func search(queries: [Float], count: Int, k: Int, parameters: IVFSearchParameters? = nil, smallest: Bool = false,
                       threads: Int = 1) throws -> [[SearchHit]] {
        let width = set.k
        guard k >= 1 else { throw StoreError(.invalidInput, "k must be at least 1, found \(k)") }
        let parameters = parameters ?? defaults
        guard parameters.nprobe >= 1, parameters.rerank >= 1 else {
            throw StoreError(.invalidInput, "nprobe and rerank must be at least 1, found \(parameters.nprobe) and \(parameters.rerank)")
        }
        var prepared = try ExactSearch.prepareQueries(queries, count: count, for: set, metric: metric)
        // The bottom-k of ⟨q, x⟩ is the top-k of ⟨−q, x⟩.
        if smallest { prepared = prepared.map { -$0 } }
        let sign: Float = smallest ? -1 : 1
        nonisolated(unsafe) var results = [[TopK.Entry]](repeating: [], count: count)
        let failure = Mutex<(any Error)?>(nil)
        let frozen = prepared
        results.withUnsafeMutableBufferPointer { output in
            nonisolated(unsafe) let output = output
            let workers = max(1, min(threads, count))
            @Sendable func work(_ worker: Int) {
                let scratch = Scratch(width: width, lists: ivf.lists)
                var q = worker
                while q < count {
                    let query = Array(frozen[(q * width)..<((q + 1) * width)])
                    do {
                        output[q] = try searchOne(query, k: k, parameters: parameters, scratch: scratch).sorted
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

    /// Per-thread buffers, allocated once per search call and reused for every query.
    final class Scratch {
        let dots: UnsafeMutableBufferPointer<Int32>
        let routeDots: UnsafeMutableBufferPointer<Int32>
        let query16: UnsafeMutableBufferPointer<Int16>
        let query8: UnsafeMutableBufferPointer<Int8>
        let queryOffset: UnsafeMutableBufferPointer<UInt8>
        var located: [(base: UnsafeRawPointer, segment: Int, row: Int)] = []
        static let chunk = 4096

        init(width: Int, lists: Int) {
            dots = .allocate(capacity: Self.chunk)
            routeDots = .allocate(capacity: max(1, lists))
            query16 = .allocate(capacity: width)
            query8 = .allocate(capacity: width)
            queryOffset = .allocate(capacity: width)
        }

        deinit {
            dots.deallocate(); routeDots.deallocate(); query16.deallocate(); query8.deallocate(); queryOffset.deallocate()
        }
    }

    /// One (already normalised and signed) query; returns live positions with scores.
    func searchOne(_ query: [Float], k: Int, parameters: IVFSearchParameters, scratch: Scratch) throws -> TopK {
        let width = ivf.width
        let lists = ivf.lists
        let queryScale = gsk_quantize_int8(query, width, scratch.query8.baseAddress)
        for j in 0..<width {
            let value = Int16(scratch.query8[j])
            scratch.query16[j] = value
            scratch.queryOffset[j] = UInt8(value + 128)
        }
        // 1. Route: lists of largest ⟨q, centroid⟩, estimated from int8 codes of both.
        ivf.centroidCodes.withUnsafeBufferPointer { c in
            gsk_int8_dots(c.baseAddress, lists, width, scratch.query16.baseAddress, scratch.queryOffset.baseAddress, scratch.routeDots.baseAddress)
        }
        var route = TopK(capacity: min(parameters.nprobe, lists))
        ivf.centroidScales.withUnsafeBufferPointer { scales in
            for list in 0..<lists { route.offer(queryScale * scales[list] * Float(scratch.routeDots[list]), position: list) }
        }
        // The probed lists' codes, scales and positions, verified on first touch (Spec §4).
        let probes = route.sorted
        if let stored = ivf.stored {
            for probe in probes { try stored.verify(list: probe.position) }
        }
        let physicalRows = physicalStarts.last!
        // 2. Estimate ⟨q, c⟩ + ⟨q, r⟩: ⟨q, c⟩ exactly for the probed lists, ⟨q, r⟩ from int8 codes.
        var candidates = TopK(capacity: parameters.candidates(for: k))
        let scales = ivf.scales, positions = ivf.positions
        ivf.centroids.withUnsafeBufferPointer { centroids in
        deleted.withUnsafeBufferPointer { deleted in
            var base: Float = 0
            for probe in probes {
                let list = probe.position
                gsk_dots_f32(centroids.baseAddress! + list * width, 1, width, query, &base, nil)
                var start = ivf.offsets[list]
                let end = ivf.offsets[list + 1]
                while start < end {
                    let n = min(Scratch.chunk, end - start)
                    gsk_int8_dots(ivf.codes.baseAddress! + start * width, n, width, scratch.query16.baseAddress,
                                  scratch.queryOffset.baseAddress, scratch.dots.baseAddress)
                    for i in 0..<n {
                        let estimate = base + queryScale * scales[start + i] * Float(scratch.dots[i])
                        // A position out of range is caught when re-ranked, below.
                        if estimate >= candidates.threshold,
                           deleted.isEmpty || !(positions[start + i] >= 0 && positions[start + i] < Int64(deleted.count) && deleted[Int(positions[start + i])]) {
                            candidates.offer(estimate, position: start + i)
                        }
                    }
                    start += n
                }
            }
        }}
        // 3. Re-rank exactly from the stored rows: locate them all and start their loads first,
        // so the random reads overlap instead of waiting one after another.
        var top = TopK(capacity: k)
        let rowBytes = width * set.dtype.byteWidth
        scratch.located.removeAll(keepingCapacity: true)
        for candidate in candidates.sorted {
            let physical = Int(ivf.positions[candidate.position])
            guard physical >= 0 && physical < physicalRows else {
                throw StoreError(.corrupt, "index names row position \(physical), but its segments hold \(physicalRows) rows")
            }
            var segment = 0, high = physicalStarts.count - 1
            while segment + 1 < high {  // last start ≤ physical
                let mid = (segment + high) / 2
                if physicalStarts[mid] <= physical { segment = mid } else { high = mid }
            }
            let local = physical - physicalStarts[segment]
            let row = try coveredSegments[segment].verifiedRow(local)
            gsk_prefetch(row, rowBytes)
            scratch.located.append((row, segment, local))
        }
        let cosine = metric == .cosine
        for (row, segment, local) in scratch.located {
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
        // 4. Rows appended after the build: exact.
        for (block, mask) in zip(tailBlocks, tailMasks) {
            top.merge(ExactSearch.scanSingle(block, query: query, metric: metric, k: k, sign: 1, live: mask, threads: 1))
        }
        return top
    }
}
