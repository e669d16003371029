import GradSketchStore
import GradSketchSearch

extension Snapshot {
    /// How `request` would be answered (exact or through which index, with what nprobe and
    /// rerank, over how many rows), without searching.
    ///
    /// - Throws: `.invalidInput` for a request that cannot run (k < 1, an nprobe or recall
    ///   target with exact search or without an index, an index of another metric),
    ///   `.notFound` for an unknown set, index, query set or tensor set.
    public func plan(_ request: QueryRequest) throws -> QueryPlan {
        let entry = try entry(of: request.set)
        return try QueryPlanner(snapshot: self, request: request, entry: entry, queryCount: try queryCount(request)).plan()
    }

    /// Answers `request`: plans it (see ``plan(_:)``), resolves the query vectors, searches
    /// and fetches ids (and, when asked, labels and metadata) of the hits only.
    public func query(_ request: QueryRequest) throws -> QueryResult {
        let entry = try entry(of: request.set)
        // Planned first, so a request that cannot run fails before any row is read.
        let plan = try QueryPlanner(snapshot: self, request: request, entry: entry, queryCount: try queryCount(request)).plan()
        let opened = try openedSet(request.set)
        let (queries, count) = try queryVectors(request, target: opened.set)
        let metric = SearchMetric(rawValue: plan.metric)!
        let found: [[SearchHit]]
        if let index = plan.index, !plan.exact, plan.kind == PartIndexKind.name {
            let searcher = try opened.partSearcher(index)
            let parameters = PartSearchParameters(nprobe: plan.nprobe!, rerank: plan.rerank!, groupProbe: plan.groupProbe)
            found = try searcher.search(queries: queries, count: count, k: request.k, parameters: parameters,
                                        smallest: request.smallest, threads: 2)
        } else if let index = plan.index, !plan.exact {
            let searcher = try opened.searcher(index)
            let parameters = IVFSearchParameters(nprobe: plan.nprobe!, rerank: plan.rerank!)
            found = try searcher.search(queries: queries, count: count, k: request.k, parameters: parameters,
                                        smallest: request.smallest, threads: 2)
        } else {
            found = try ExactSearch.search(opened.set, queries: queries, count: count, metric: metric, k: request.k,
                                           smallest: request.smallest, aggregate: request.aggregation.map(Self.searchAggregation))
        }
        // The hits' addresses and annotations, reading only the deletion lists and string
        // blocks of the segments the hits lie in (they are live rows of this version, so they
        // need no second liveness check).
        let set = opened.set
        let addresses = try found.map { try set.addresses(ofLive: $0.map(\.position)) }
        let wanted = addresses.flatMap { $0 }
        let labels = request.annotations && entry.hasLabels ? try set.labels(at: wanted) : nil
        let metadata = request.annotations && entry.hasMetadata ? try set.metadata(at: wanted) : nil
        var next = 0
        let hits = zip(found, addresses).map { list, places in
            zip(list, places).map { hit, address in
                defer { next += 1 }
                return QueryHit(address: address, id: hit.id, score: hit.score, label: labels?[next], metadata: metadata?[next])
            }
        }
        return QueryResult(plan: plan, hits: hits)
    }

    static func searchAggregation(_ aggregation: QueryRequest.Aggregation) -> QueryAggregation {
        switch aggregation {
        case .mean: .mean
        case .max: .max
        case .groupMeanThenMax(let groups): .groupMeanThenMax(groups: groups)
        }
    }

    /// How many queries `request` runs, known without reading rows.
    func queryCount(_ request: QueryRequest) throws -> Int {
        switch request.input {
        case .vectors(_, let count): return count
        case .storedRow, .delta: return 1
        case .querySet(let name): return try entry(of: name).rowCount
        }
    }

    /// The query vectors of `request` as float32 `[count, k]`.
    func queryVectors(_ request: QueryRequest, target: SketchSet) throws -> ([Float], Int) {
        switch request.input {
        case .vectors(let values, let count):
            guard count >= 1, values.count == count * target.k else {
                throw StoreError(.invalidInput, "query vectors must be [Q, \(target.k)] for set \(target.name): found \(values.count) values for Q = \(count)")
            }
            return (values, count)
        case .storedRow(let id):
            return (try target.floatRows(at: try target.positions(of: [id])), 1)
        case .querySet(let name):
            let queries = try openedSet(name).set
            guard queries.k == target.k else {
                throw StoreError(.invalidInput, "query set \(name) has k = \(queries.k), set \(target.name) has k = \(target.k)")
            }
            if let mine = target.attributes["projection"], let theirs = queries.attributes["projection"],
               let difference = ProjectionRule.firstDifference(theirs, mine) {
                throw StoreError(.invalidInput, "query set \(name) was sketched with a different projection than \(target.name) (\(difference))")
            }
            guard queries.rowCount >= 1 else {
                throw StoreError(.invalidInput, "query set \(name) has no live rows in version \(version)")
            }
            return (try queries.floatRows(), queries.rowCount)
        case .delta(let name, let negate):
            return (try projectedDelta(name, for: target, negate: negate), 1)
        }
    }
}

/// Turns a request into a plan: the index rules in one place.
struct QueryPlanner {
    let snapshot: Snapshot
    let request: QueryRequest
    let entry: Manifest.SketchSetEntry
    let queryCount: Int

    func plan() throws -> QueryPlan {
        let metric = request.metric.rawValue
        guard request.k >= 1 else { throw StoreError(.invalidInput, "k must be at least 1, found \(request.k)") }
        if let rerank = request.rerank, rerank < 1 {
            throw StoreError(.invalidInput, "rerank must be at least 1, found \(rerank)")
        }
        switch request.probe {
        case .tuned: break
        case .nprobe(let nprobe):
            guard nprobe >= 1 else { throw StoreError(.invalidInput, "nprobe must be at least 1, found \(nprobe)") }
        case .recallTarget(let target):
            guard (0.0...1.0).contains(target) else {
                throw StoreError(.invalidInput, "the recall target must be between 0 and 1, found \(target)")
            }
        }
        var steps = ["search set \(request.set) of version \(snapshot.version) with \(queryCount) \(queryCount == 1 ? "query" : "queries") by \(metric), k = \(request.k)\(request.smallest ? " (lowest scores)" : "")"]
        let candidates = Snapshot.byteSorted(entry.indexes.filter { $0.value.metric == metric }.keys)
        let chosen: String?
        switch request.index {
        case .exact:
            guard request.probe == .tuned else {
                throw StoreError(.invalidInput, "exact search cannot be combined with an nprobe or a recall target")
            }
            chosen = nil
            steps.append("exact search was asked for")
        case .named(let name):
            guard let index = entry.indexes[name] else {
                throw StoreError(.notFound, "set \(request.set) has no index \"\(name)\" in version \(snapshot.version) (indexes: \(Snapshot.byteSorted(entry.indexes.keys).joined(separator: ", ")))")
            }
            guard index.metric == metric else {
                throw StoreError(.invalidInput, "index \(name) is for metric \(index.metric); query with metric \(index.metric) or build one for \(metric)")
            }
            chosen = name
            steps.append("index \(name) (\(index.kind)) was asked for")
        case .auto:
            // The index named after the metric, else the first (by bytes) for the metric.
            chosen = candidates.contains(metric) ? metric : candidates.first
            if let chosen { steps.append("index \(chosen) (\(entry.indexes[chosen]?.kind ?? "?")) is the set's index for \(metric)") }
        }
        if chosen == nil && request.index == .auto && request.probe != .tuned {
            throw StoreError(.invalidInput, "set \(request.set) has no index for metric \(metric): build one, or query without an nprobe or recall target")
        }
        let live = entry.rowCount
        guard let name = chosen, let index = entry.indexes[name] else {
            if request.index == .auto { steps.append("no index for \(metric): every live row is scored exactly") }
            steps.append("scan \(live) live rows exactly")
            return QueryPlan(set: request.set, version: snapshot.version, metric: metric, queries: queryCount, exact: true,
                             index: nil, nprobe: nil, rerank: nil, lists: nil, indexedRows: 0, exactRows: live,
                             builtOnVersion: nil, expectedRecall: 1, note: nil, staleIndex: false, steps: steps)
        }
        func exactInstead(_ note: String, stale: Bool) -> QueryPlan {
            steps.append(note)
            steps.append("scan \(live) live rows exactly")
            return QueryPlan(set: request.set, version: snapshot.version, metric: metric, queries: queryCount, exact: true,
                             index: nil, nprobe: nil, rerank: nil, lists: nil, indexedRows: 0, exactRows: live,
                             builtOnVersion: index.builtOnVersion, expectedRecall: 1, note: note, staleIndex: stale, steps: steps)
        }
        if request.aggregation != nil {
            return exactInstead("aggregated queries are searched exactly; index \(name) answers single queries", stale: false)
        }
        guard let covered = Self.coveredSegments(of: index, in: entry) else {
            return exactInstead("index \(name) of set \(request.set) was built on segments that version \(snapshot.version) no longer starts with (rebuild the index); searched exactly", stale: true)
        }
        let (tunedNprobe, tunedRerank, tuning) = Self.storedParameters(index)
        var nprobe: Int
        switch request.probe {
        case .tuned:
            nprobe = tunedNprobe
            steps.append("probe \(nprobe) of \(index.lists) lists (tuned at build time)")
        case .nprobe(let value):
            nprobe = value
            steps.append("probe \(min(value, index.lists)) of \(index.lists) lists (asked for)")
        case .recallTarget(let target):
            // The fewest lists whose held-out recall reached the target, else all of them.
            let reached = tuning.sorted { $0.nprobe < $1.nprobe }.first { $0.recall >= target }
            nprobe = reached?.nprobe ?? index.lists
            if let reached {
                steps.append("probe \(min(nprobe, index.lists)) of \(index.lists) lists: the fewest whose held-out recall@10 at build time (\(reached.recall)) reached \(target)")
            } else {
                steps.append("probe all \(index.lists) lists: no tuned nprobe reached recall@10 \(target)")
            }
        }
        nprobe = min(nprobe, index.lists)
        let expectedRecall = tuning.first { $0.nprobe == nprobe }?.recall
        if let expectedRecall { steps.append("held-out recall@10 at this nprobe when built: \(expectedRecall)") }
        let rerank = request.rerank ?? tunedRerank
        var groupProbe: Int? = nil
        if let parts = index.parts {
            // ivf-rq4 (Spec §10.3): routing looks at the lists of the best groups only.
            let groups = index.parameters["groups"]?.intValue ?? 1
            if let asked = request.groupProbe, asked < 1 {
                throw StoreError(.invalidInput, "group probe must be at least 1, found \(asked)")
            }
            let tunedGroups = index.parameters["group_probe"]?.intValue ?? groups
            groupProbe = min(groups, request.groupProbe ?? PartIndexBuilder.groupProbe(
                forNprobe: nprobe, tunedNprobe: tunedNprobe, tunedGroupProbe: tunedGroups, lists: index.lists, groups: groups))
            steps.append(nprobe >= index.lists
                ? "route through all \(groups) groups (every list is probed); 4-bit codes of \(parts.count) \(parts.count == 1 ? "part" : "parts")"
                : "route through the best \(groupProbe!) of \(groups) groups\(request.groupProbe == nil ? " (tuned at build time, scaled with nprobe)" : " (asked for)"); 4-bit codes of \(parts.count) \(parts.count == 1 ? "part" : "parts")")
        }
        steps.append("re-score \(rerank) candidates per query exactly (at k = 10, scaled with k)")
        let tail = entry.segments.dropFirst(covered).reduce(0) { $0 + $1.liveRows }
        let indexed = entry.rowCount - tail
        steps.append("\(indexed) live rows through the index (built on version \(index.builtOnVersion)), \(tail) rows of later segments scanned exactly")
        var plan = QueryPlan(set: request.set, version: snapshot.version, metric: metric, queries: queryCount, exact: false,
                             index: name, nprobe: nprobe, rerank: rerank, lists: index.lists, indexedRows: indexed, exactRows: tail,
                             builtOnVersion: index.builtOnVersion, expectedRecall: expectedRecall, note: nil, staleIndex: false, steps: steps)
        plan.kind = index.kind
        plan.parts = index.parts?.count
        plan.groupProbe = groupProbe
        return plan
    }

    /// How many of the set's first segments the index covers, or nil when the set no longer
    /// starts with the segments it was built on (Spec §10).
    static func coveredSegments(of index: Manifest.IndexEntry, in entry: Manifest.SketchSetEntry) -> Int? {
        guard index.segments.count <= entry.segments.count,
              zip(entry.segments, index.segments).allSatisfy({ $0.file == $1 }) else { return nil }
        return index.segments.count
    }

    /// The search parameters stored with an index at build time: default nprobe and rerank,
    /// and the tuning table (nprobe → held-out recall@10).
    static func storedParameters(_ index: Manifest.IndexEntry) -> (nprobe: Int, rerank: Int, tuning: [(nprobe: Int, recall: Double)]) {
        let parameters = index.parameters
        let nprobe = parameters["default_nprobe"]?.intValue ?? min(index.lists, 16)
        let rerank = parameters["rerank"]?.intValue ?? 32
        var tuning: [(nprobe: Int, recall: Double)] = []
        if case .array(let rows)? = parameters["tuning"] {
            for row in rows {
                if case .object(let fields) = row, let probe = fields["nprobe"]?.intValue, let recall = fields["recall"]?.doubleValue {
                    tuning.append((probe, recall))
                }
            }
        }
        return (nprobe, rerank, tuning)
    }
}
