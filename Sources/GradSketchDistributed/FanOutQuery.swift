import Dispatch
import Foundation
public import GradSketchSearch
public import GradSketchStore

/// Top-k search of a set across the shards of a ``ShardLayout`` (Spec/distributed.md §3.3):
/// each rank scans its ranges exactly (or, with ``Request/index``, searches whole shards
/// through their own indexes), keeps its best k per query, the ranks all-gather those and
/// every rank merges them in the same deterministic order.
public enum FanOutQuery {
    public struct Request: Sendable {
        public var set: String
        /// `count × k` float32, row-major.
        public var queries: [Float]
        public var count: Int
        public var metric: SearchMetric = .innerProduct
        public var k: Int = 10
        /// Lowest scores first instead of highest.
        public var smallest = false
        public var aggregate: QueryAggregation?
        /// Fetch labels and metadata of the hits.
        public var annotations = true
        /// One version per shard (nil: the latest of each).
        public var versions: [Int]?
        public var threads = 2
        /// Search each shard through its own index instead of scanning exactly (§3.3.1); nil:
        /// exact scan, split by segments among the serving ranks.
        public var index: IndexRequest?

        public init(set: String, queries: [Float], count: Int) {
            self.set = set
            self.queries = queries
            self.count = count
        }
    }

    /// One hit: which shard, where in it, its id, score and annotations.
    public struct Hit: Sendable, Codable, Equatable {
        public let shard: String
        public let shardIndex: Int
        public let segment: Int
        public let row: Int
        public let id: String
        public let score: Float
        public let label: String?
        public let metadata: String?
    }

    /// What a fan-out cost this rank (for the benchmark's cost model).
    public struct Statistics: Sendable, Codable {
        /// Live rows this rank scanned.
        public let rowsScanned: Int
        /// Seconds this rank spent scanning and fetching its hits' annotations.
        public let localSeconds: Double
        /// Bytes this rank contributed to the merge's allGather, and the total all ranks received.
        public let bytesSent: Int
        public let bytesGathered: Int
        /// Seconds of the allGather and merge.
        public let mergeSeconds: Double
    }

    public struct Result: Sendable {
        /// The version read in each shard.
        public let versions: [Int]
        public let hits: [[Hit]]
        public let statistics: Statistics
        /// How each shard was searched, in shard order, when an index was asked for (nil for
        /// the exact fan-out).
        public var shardSearches: [ShardSearch]? = nil
    }

    /// Whether `a` comes before `b` in an answer: score (descending, or ascending with
    /// `smallest`), then shard index, then segment, then row, ascending.
    public static func precedes(_ a: Hit, _ b: Hit, smallest: Bool) -> Bool {
        if a.score != b.score { return smallest ? a.score < b.score : a.score > b.score }
        if a.shardIndex != b.shardIndex { return a.shardIndex < b.shardIndex }
        if a.segment != b.segment { return a.segment < b.segment }
        return a.row < b.row
    }

    /// Runs the fan-out on every rank of `collective` (collective: every rank calls it with
    /// the same request); every rank returns the same result.
    public static func run(_ request: Request, on layout: ShardLayout, collective: some Collective) throws -> Result {
        guard request.k >= 1 else { throw AgreedError(StoreError(.invalidInput, "k must be at least 1, found \(request.k)")) }
        let work = try WorkAssignment.agree(on: layout, set: request.set, versions: request.versions, collective: collective)
        if let index = request.index { return try runIndexed(request, index: index, work: work, layout: layout, collective: collective) }
        let started = DispatchTime.now()
        let local = attempt { try localHits(request, work: work, layout: layout) }
        let localSeconds = seconds(since: started)
        if case .failure(let error) = local { try collective.throwIfAnyFailed(error) }
        try collective.throwIfAnyFailed(nil)
        let mine = try local.get()
        let (hits, statistics) = try merge(mine, request: request, rowsSearched: work.localRows, localSeconds: localSeconds,
                                           layout: layout, collective: collective)
        return Result(versions: work.versions, hits: hits, statistics: statistics)
    }

    /// All-gathers every rank's best k per query and merges them in answer order (collective).
    static func merge(_ mine: [[Hit]], request: Request, rowsSearched: Int, localSeconds: Double, layout: ShardLayout,
                      collective: some Collective) throws -> ([[Hit]], Statistics) {
        let merging = DispatchTime.now()
        let payload = try WireHits(mine).encoded()
        let gathered = try collective.allGather(payload)
        var merged = [[Hit]](repeating: [], count: mine.count)
        for bytes in gathered {
            for (query, hits) in try WireHits.decode(bytes, layout: layout).enumerated() where query < merged.count {
                merged[query] += hits
            }
        }
        let hits = merged.map { Array($0.sorted { precedes($0, $1, smallest: request.smallest) }.prefix(request.k)) }
        let statistics = Statistics(rowsScanned: rowsSearched, localSeconds: localSeconds, bytesSent: payload.count,
                                    bytesGathered: gathered.reduce(0) { $0 + $1.count }, mergeSeconds: seconds(since: merging))
        return (hits, statistics)
    }

    /// This rank's best k per query over its ranges, in answer order.
    static func localHits(_ request: Request, work: WorkAssignment, layout: ShardLayout) throws -> [[Hit]] {
        let lists = request.aggregate == nil ? request.count : 1
        var hits = [[Hit]](repeating: [], count: lists)
        for range in work.local {
            let tops = try ExactSearch.topEntries(range.set, segments: range.segments, queries: request.queries, count: request.count,
                                                  metric: request.metric, k: request.k, smallest: request.smallest,
                                                  aggregate: request.aggregate, threads: request.threads)
            let flat = tops.flatMap { $0 }
            let addresses = try range.set.addresses(ofLive: flat.map(\.position))
            let ids = try range.set.ids(at: addresses)
            let entry = range.set.entry
            let labels = request.annotations && entry.hasLabels ? try range.set.labels(at: addresses) : nil
            let metadata = request.annotations && entry.hasMetadata ? try range.set.metadata(at: addresses) : nil
            var next = 0
            for (query, top) in tops.enumerated() {
                for found in top {
                    hits[query].append(Hit(shard: layout.shards[range.shard].name, shardIndex: range.shard,
                                           segment: addresses[next].segment, row: addresses[next].row, id: ids[next],
                                           score: found.score, label: labels?[next], metadata: metadata?[next]))
                    next += 1
                }
            }
        }
        return hits.map { Array($0.sorted { precedes($0, $1, smallest: request.smallest) }.prefix(request.k)) }
    }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}

/// The hits a rank contributes to the merge, as JSON with the score's bits (so NaN and every
/// float travel exactly) and without the shard name (every rank has the layout).
struct WireHits: Codable {
    struct Hit: Codable {
        let s: Int, g: Int, r: Int, id: String, bits: UInt32, label: String?, metadata: String?
    }
    let lists: [[Hit]]

    init(_ hits: [[FanOutQuery.Hit]]) {
        lists = hits.map { list in
            list.map { Hit(s: $0.shardIndex, g: $0.segment, r: $0.row, id: $0.id, bits: $0.score.bitPattern, label: $0.label, metadata: $0.metadata) }
        }
    }

    func encoded() throws -> [UInt8] { Array(try JSONEncoder().encode(self)) }

    static func decode(_ bytes: [UInt8], layout: ShardLayout) throws -> [[FanOutQuery.Hit]] {
        let wire = try JSONDecoder().decode(WireHits.self, from: Data(bytes))
        return try wire.lists.map { list in
            try list.map { hit in
                guard layout.shards.indices.contains(hit.s) else {
                    throw StoreError(.corrupt, "a rank sent a hit of shard \(hit.s), the layout has \(layout.shards.count) shards")
                }
                return FanOutQuery.Hit(shard: layout.shards[hit.s].name, shardIndex: hit.s, segment: hit.g, row: hit.r, id: hit.id,
                                       score: Float(bitPattern: hit.bits), label: hit.label, metadata: hit.metadata)
            }
        }
    }
}
