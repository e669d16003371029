import Dispatch
import GradSketch
import GradSketchSearch
import GradSketchStore

extension FanOutQuery {
    /// A fan-out through per-shard indexes (Spec/distributed.md §3.3.1): the options of
    /// `gradsketch query` that pick and tune an index, applied to each shard's own index.
    public struct IndexRequest: Sendable, Equatable {
        /// The index every shard must have (an error naming the shard otherwise); nil: each
        /// shard's index for the metric by the single-store rule, and an exact scan of a shard
        /// that has none.
        public var name: String?
        /// Lists to probe (overrides each index's tuned default).
        public var nprobe: Int?
        /// Probe as many lists as reached this held-out recall@10 when each index was built.
        public var recallTarget: Double?
        /// Candidates re-ranked exactly (at k = 10; overrides each index's default).
        public var rerank: Int?
        /// ivf-rq4: groups considered when routing (overrides each index's default).
        public var groupProbe: Int?

        public init(name: String? = nil, nprobe: Int? = nil, recallTarget: Double? = nil, rerank: Int? = nil,
                    groupProbe: Int? = nil) {
            self.name = name
            self.nprobe = nprobe
            self.recallTarget = recallTarget
            self.rerank = rerank
            self.groupProbe = groupProbe
        }
    }

    /// How one shard was searched in an indexed fan-out: through which index with which
    /// parameters, or exactly and why.
    public struct ShardSearch: Sendable, Codable, Equatable {
        public let shard: String
        public let shardIndex: Int
        /// The rank that searched the whole shard.
        public let rank: Int
        public let exact: Bool
        public let index: String?
        public let kind: String?
        public let lists: Int?
        public let nprobe: Int?
        public let rerank: Int?
        public let groupProbe: Int?
        /// Live rows searched through the index, and rows of later segments scanned exactly.
        public let indexedRows: Int
        public let exactRows: Int
        public let builtOnVersion: Int?
        /// Why the shard was scanned exactly, when it was.
        public let note: String?
    }

    /// The rank that searches shard `index` through its index: serving rank number
    /// (index mod m) of its m serving ranks, the rule of ``ShardedIndexBuild``.
    static func indexSearcher(of index: Int, servers: [[Int]]) -> Int {
        servers[index][index % servers[index].count]
    }

    /// The indexed fan-out: each shard searched whole, through its own index, by one of its
    /// serving ranks; the hits merged as in the exact fan-out. Collective.
    static func runIndexed(_ request: Request, index: IndexRequest, work: WorkAssignment, layout: ShardLayout,
                           collective: some Collective) throws -> Result {
        if index.nprobe != nil && index.recallTarget != nil {
            throw AgreedError(StoreError(.invalidInput, "give an nprobe or a recall target, not both"))
        }
        let started = DispatchTime.now()
        let lists = request.aggregate == nil ? request.count : 1
        let local = attempt { () throws -> (hits: [[Hit]], searches: [ShardSearch]) in
            var hits = [[Hit]](repeating: [], count: lists)
            var searches: [ShardSearch] = []
            for shard in layout.shards.indices where indexSearcher(of: shard, servers: work.servers) == collective.rank {
                let (found, search) = try searchShard(shard, request: request, index: index, version: work.versions[shard],
                                                      layout: layout, rank: collective.rank)
                for (query, list) in found.enumerated() where query < lists { hits[query] += list }
                searches.append(search)
            }
            return (hits.map { Array($0.sorted { precedes($0, $1, smallest: request.smallest) }.prefix(request.k)) }, searches)
        }
        let localSeconds = seconds(since: started)
        if case .failure(let error) = local { try collective.throwIfAnyFailed(error) }
        try collective.throwIfAnyFailed(nil)
        let mine = try local.get()
        let searched = mine.searches.reduce(0) { $0 + $1.indexedRows + $1.exactRows }
        let (hits, statistics) = try merge(mine.hits, request: request, rowsSearched: searched, localSeconds: localSeconds,
                                           layout: layout, collective: collective)
        let searches = try collective.allGather(value: mine.searches).flatMap { $0 }.sorted { $0.shardIndex < $1.shardIndex }
        var result = Result(versions: work.versions, hits: hits, statistics: statistics)
        result.shardSearches = searches
        return result
    }

    /// One shard's best k per query, searched as `gradsketch query SHARD --index … --nprobe …`
    /// searches it at `version` (the single-store planner and searchers, uncovered segments
    /// scanned exactly), with how it was searched.
    static func searchShard(_ shard: Int, request: Request, index: IndexRequest, version: Int, layout: ShardLayout,
                            rank: Int) throws -> ([[Hit]], ShardSearch) {
        let name = layout.shards[shard].name
        _ = try layout.openStore(shard)  // checks the store-id the map records
        let snapshot = try Snapshot(store: try GradSketch.Store(opening: layout.shards[shard].path), version: version)
        var query = QueryRequest(set: request.set, input: .vectors(request.queries, count: request.count))
        query.metric = SearchMetricName(rawValue: request.metric.rawValue)!
        query.k = request.k
        query.smallest = request.smallest
        query.aggregation = request.aggregate.map(Self.aggregation)
        query.annotations = request.annotations
        query.index = index.name.map { .named($0) } ?? .auto
        query.probe = index.nprobe.map { .nprobe($0) } ?? index.recallTarget.map { .recallTarget($0) } ?? .tuned
        query.rerank = index.rerank
        query.groupProbe = index.groupProbe
        var note: String?
        if index.name == nil {
            // Without a name, a shard with no index for the metric is scanned exactly (the
            // planner's exact plan without a note; aggregated queries and stale indexes get
            // the planner's own note from the query below).
            var probe = query
            probe.probe = .tuned
            let plan = try prefixed(name) { try snapshot.plan(probe) }
            if plan.index == nil && plan.note == nil {
                note = "shard \(name) has no index for metric \(request.metric.rawValue): scanned exactly"
                query.index = .exact
                query.probe = .tuned
                query.rerank = nil
                query.groupProbe = nil
            }
        }
        let result = try prefixed(name) { try snapshot.query(query) }
        let plan = result.plan
        let hits = result.hits.map { list in
            list.map { Hit(shard: name, shardIndex: shard, segment: $0.address.segment, row: $0.address.row, id: $0.id,
                           score: $0.score, label: $0.label, metadata: $0.metadata) }
        }
        let search = ShardSearch(shard: name, shardIndex: shard, rank: rank, exact: plan.exact, index: plan.index, kind: plan.kind,
                                 lists: plan.lists, nprobe: plan.nprobe, rerank: plan.rerank, groupProbe: plan.groupProbe,
                                 indexedRows: plan.indexedRows, exactRows: plan.exactRows,
                                 builtOnVersion: plan.exact ? nil : plan.builtOnVersion, note: note ?? plan.note)
        return (hits, search)
    }

    /// `body`'s result, or its store error with the shard's name in front.
    static func prefixed<T>(_ shard: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw StoreError(error.code, "shard \(shard): \(error.message)", path: error.path)
        }
    }

    static func aggregation(_ aggregate: QueryAggregation) -> QueryRequest.Aggregation {
        switch aggregate {
        case .mean: .mean
        case .max: .max
        case .groupMeanThenMax(let groups): .groupMeanThenMax(groups: groups)
        }
    }
}
