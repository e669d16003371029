import CGradSketchKernels
import Foundation
import GradSketchInterchange
public import GradSketchStore

/// How an IVF index is built and tuned.
public struct IVFBuildOptions: Sendable {
    public var metric: SearchMetric = .innerProduct
    /// Number of lists; nil chooses the power of two nearest 2·√N (at most N/32).
    public var lists: Int?
    /// Rows k-means trains on; nil takes 128 per list (all rows when fewer). On 200k × 512
    /// clustered rows, 128 per list and 20 iterations lifted recall@10 at nprobe 8/1024 from
    /// 0.90 (48 per list, 10 iterations) to 0.965, for 2.7× the training time.
    public var trainingRows: Int?
    public var iterations: Int = 20
    /// Held-out recall@10 the default nprobe must reach.
    public var recallTarget: Double = 0.95
    /// Rows sampled as held-out queries for tuning (not used to train the centroids).
    public var tuningQueries: Int = 200
    /// Candidates re-ranked exactly at k = 10. On 200k × 512 clustered rows, 20, 32 and 64 gave
    /// the same recall@10 (the int8 estimates rank well); 32 leaves a margin for harder data.
    public var rerank: Int = 32
    public var seed: UInt64 = 0
    public var threads: Int = 2

    public init() {}
}

/// What a build did: the chosen parameters, the held-out recall curve, and the time spent.
public struct IVFBuildReport: Sendable, Codable {
    public let version: Int
    public let name: String
    public let metric: String
    public let lists: Int
    public let rows: Int
    public let defaultNprobe: Int
    public let rerank: Int
    public let recallTarget: Double
    public let tuning: [TuningPoint]
    public let seconds: [String: Double]
    public let indexBytes: Int

    public struct TuningPoint: Sendable, Codable {
        public let nprobe: Int
        public let recall: Double
    }
}

public enum IVFIndexBuilder {
    /// The default number of lists for `rows` rows.
    public static func defaultLists(rows: Int) -> Int {
        let target = 2 * Double(rows).squareRoot()
        var lists = 1
        while Double(lists * 2) <= target * 1.414 { lists *= 2 }
        return max(1, min(lists, rows / 32))
    }

    /// Builds an IVF index over every row of `set` (its version as read), tunes nprobe for
    /// `options.recallTarget` on held-out rows, and commits it as index `name`.
    public static func build(_ set: SketchSet, in store: Store, name: String, options: IVFBuildOptions = IVFBuildOptions(),
                             progress: ((String) -> Void)? = nil) throws -> IVFBuildReport {
        let width = set.k
        let live = set.rowCount
        guard live >= 2 else {
            throw StoreError(.invalidInput, "set \(set.name) has \(live) live rows: an index needs at least 2")
        }
        let lists = options.lists ?? defaultLists(rows: live)
        guard lists >= 1, lists <= live else {
            throw StoreError(.invalidInput, "an index over \(live) rows needs between 1 and \(live) lists, found \(lists)")
        }
        guard (0.0...1.0).contains(options.recallTarget) else {
            throw StoreError(.invalidInput, "recall target must be between 0 and 1, found \(options.recallTarget)")
        }
        var seconds: [String: Double] = [:]
        var clock = Date()
        func lap(_ phase: String) { seconds[phase] = Date().timeIntervalSince(clock); clock = Date() }
        var random = SeededRandom(seed: options.seed)

        // Held-out tuning queries first, so training never sees them.
        let tuningCount = min(options.tuningQueries, max(1, live / 10))
        var shuffled = Array(0..<live)
        random.shuffle(&shuffled)
        let heldOut = Array(shuffled.prefix(tuningCount))
        let trainingCount = min(live - tuningCount, options.trainingRows ?? max(lists, 128 * lists))
        guard trainingCount >= lists else {
            throw StoreError(.invalidInput, "\(lists) lists need at least as many training rows; \(live) rows leave \(live - tuningCount)")
        }
        let trainingPositions = Array(shuffled[tuningCount..<(tuningCount + trainingCount)]).sorted()

        // 1. Centroids.
        progress?("training \(lists) centroids on \(trainingCount) rows")
        var training = try set.floatRows(at: trainingPositions)
        if options.metric == .cosine { normalizeRows(&training, width: width) }
        let centroids = KMeans.train(points: training, count: trainingCount, width: width, lists: lists,
                                     iterations: options.iterations, seed: random.next())
        training = []
        lap("train")

        // 2. Assign every live row and code its residual.
        progress?("assigning and coding \(live) rows")
        var assignment = [Int32](repeating: 0, count: live)
        var codes = [Int8](repeating: 0, count: live * width)
        var scales = [Float](repeating: 0, count: live)
        var physical = [Int64](repeating: 0, count: live)
        var slot = 0
        var chunk = [Float](repeating: 0, count: KMeans.blockPoints * width)
        var residual = [Float](repeating: 0, count: width)
        try set.forEachLiveChunk(rows: KMeans.blockPoints) { rows, positions in
            let n = positions.count
            chunk.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: rows.baseAddress!, count: n * width) }
            for i in 0..<n { physical[slot + i] = Int64(positions[i]) }
            if options.metric == .cosine { normalizeRows(&chunk, width: width, count: n) }
            chunk.withUnsafeBufferPointer { points in
                assignment.withUnsafeMutableBufferPointer { a in
                    KMeans.assign(points: points.baseAddress!, count: n, width: width, centroids: centroids, lists: lists,
                                  into: a.baseAddress! + slot)
                }
            }
            for i in 0..<n {
                let list = Int(assignment[slot + i])
                for j in 0..<width { residual[j] = chunk[i * width + j] - centroids[list * width + j] }
                scales[slot + i] = codes.withUnsafeMutableBufferPointer { c in
                    gsk_quantize_int8(residual, width, c.baseAddress! + (slot + i) * width)
                }
            }
            slot += n
        }
        lap("assign")

        // 3. Group rows by list (a stable counting sort keeps set order within a list).
        var offsets = [Int](repeating: 0, count: lists + 1)
        for list in assignment { offsets[Int(list) + 1] += 1 }
        for list in 0..<lists { offsets[list + 1] += offsets[list] }
        var next = Array(offsets.dropLast())
        var sortedCodes = [Int8](repeating: 0, count: live * width)
        var sortedScales = [Float](repeating: 0, count: live)
        var sortedPositions = [Int64](repeating: 0, count: live)
        codes.withUnsafeBufferPointer { source in
            sortedCodes.withUnsafeMutableBufferPointer { target in
                for row in 0..<live {
                    let list = Int(assignment[row])
                    let to = next[list]
                    next[list] += 1
                    (target.baseAddress! + to * width).update(from: source.baseAddress! + row * width, count: width)
                    sortedScales[to] = scales[row]
                    sortedPositions[to] = physical[row]
                }
            }
        }
        codes = []
        lap("group")

        // 4. Tune nprobe on the held-out rows against exact search (each query's own row excluded).
        progress?("tuning nprobe on \(tuningCount) held-out rows")
        let queries = try set.floatRows(at: heldOut)
        let truth = try ExactSearch.search(set, queries: queries, count: tuningCount, metric: options.metric, k: 11, threads: options.threads)
        let tuning = try sortedCodes.withUnsafeBufferPointer { codeBuffer -> [IVFBuildReport.TuningPoint] in
          try sortedScales.withUnsafeBufferPointer { scaleBuffer -> [IVFBuildReport.TuningPoint] in
          try sortedPositions.withUnsafeBufferPointer { positionBuffer -> [IVFBuildReport.TuningPoint] in
            let ivf = IVFLists(metric: options.metric, width: width, centroids: centroids, offsets: offsets, codes: codeBuffer,
                               scales: scaleBuffer, positions: positionBuffer)
            let searcher = try IVFSearcher(set: set, lists: ivf, owner: nil, coveredSegments: set.segments.count, indexName: name,
                                           defaults: IVFSearchParameters(nprobe: 1, rerank: options.rerank), tuning: [])
            var points: [IVFBuildReport.TuningPoint] = []
            for nprobe in probeSchedule(lists: lists) {
                let found = try searcher.search(queries: queries, count: tuningCount, k: 11,
                                                parameters: IVFSearchParameters(nprobe: nprobe, rerank: options.rerank), threads: options.threads)
                let recall = meanRecall(found: found, truth: truth, excluding: heldOut, k: 10)
                points.append(.init(nprobe: nprobe, recall: recall))
                if recall >= 0.999 { break }
            }
            return points
        }}}
        let chosen = tuning.first { $0.recall >= options.recallTarget }?.nprobe ?? lists
        lap("tune")

        // 5. Publish and commit.
        progress?("writing the index")
        let parameters: [String: JSONValue] = [
            "default_nprobe": .number(Double(chosen)),
            "rerank": .number(Double(options.rerank)),
            "recall_target": .number(options.recallTarget),
            "tuning_queries": .number(Double(tuningCount)),
            "training_rows": .number(Double(trainingCount)),
            "iterations": .number(Double(options.iterations)),
            "seed": JSONValue(options.seed),
            "tuning": .array(tuning.map { .object(["nprobe": .number(Double($0.nprobe)), "recall": .number($0.recall)]) }),
        ]
        let arrays = IVFIndexArrays(centroids: centroids, listOffsets: offsets.map(Int64.init), codes: sortedCodes,
                                    scales: sortedScales, positions: sortedPositions)
        let version = try store.commitIndex(name, over: set, coveredSegments: set.segments.count, metric: options.metric.rawValue,
                                            arrays: arrays, parameters: parameters)
        lap("write")
        let size = try store.manifest(at: version).sketchSets[set.name]?.indexes[name]?.size ?? 0
        return IVFBuildReport(version: version, name: name, metric: options.metric.rawValue, lists: lists, rows: live,
                              defaultNprobe: chosen, rerank: options.rerank, recallTarget: options.recallTarget,
                              tuning: tuning, seconds: seconds, indexBytes: size)
    }

    /// nprobe values tried when tuning: roughly geometric, ending at all lists.
    static func probeSchedule(lists: Int) -> [Int] {
        var values: [Int] = []
        var value = 1
        while value < lists {
            values.append(value)
            let step = max(1, value / 2)
            value += step
        }
        values.append(lists)
        return values
    }

    /// Mean recall@k of `found` against `truth`, ignoring each query's own row.
    static func meanRecall(found: [[SearchHit]], truth: [[SearchHit]], excluding own: [Int], k: Int) -> Double {
        var total = 0.0
        for (index, (a, b)) in zip(found, truth).enumerated() {
            let expected = Set(b.map(\.position).filter { $0 != own[index] }.prefix(k))
            let got = Set(a.map(\.position).filter { $0 != own[index] }.prefix(k))
            total += Double(expected.intersection(got).count) / Double(max(1, expected.count))
        }
        return total / Double(max(1, found.count))
    }

    static func normalizeRows(_ rows: inout [Float], width: Int, count: Int? = nil) {
        let count = count ?? rows.count / width
        rows.withUnsafeMutableBufferPointer { CosineScore.normalizeRows($0.baseAddress!, count: count, width: width) }
    }
}
