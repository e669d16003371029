import ArgumentParser
import Foundation
import GradSketchInterchange
import GradSketchProjection
import GradSketchSearch
import GradSketchStore

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find the rows of a sketch set that best match a query gradient (exact search).",
        discussion: """
        The query is a .npy vector [k] or rows [Q, k] (--vector), a stored row (--id), a stored weight delta projected \
        with the set's own projection (--delta), or all rows of another sketch set (--query-set). Several queries give one \
        result list each, or one combined list with --aggregate mean|max|group-max (--groups: one group number per query). \
        When the set has an index for the metric (`gradsketch index build`), single queries go through it (--index picks \
        one) with the nprobe tuned at build time, or the one reaching --recall-target on the held-out sample, or --nprobe; \
        rows appended since the build are searched exactly. --exact, aggregated queries and sets without an index search \
        exactly over the memory-mapped rows.
        """)

    @OptionGroup var location: StoreArgument
    @Option(help: "Sketch set to search.") var set: String
    @Option(help: "Query vector(s): .npy of shape [k] or [Q, k].") var vector: String?
    @Option(help: "Use the stored row with this id as the query.") var id: String?
    @Option(help: "Use a stored tensor set (weight delta), projected with the set's projection.") var delta: String?
    @Flag(help: "Negate the projected delta (base − finetuned from a delta stored as finetuned − base).") var negate = false
    @Option(help: "Use every row of this sketch set as a query.") var querySet: String?
    @Option(name: .customShort("k"), help: "How many results.") var count: Int = 10
    @Option(help: "ip (inner product) or cosine.") var metric: String = "ip"
    @Flag(help: "Return the lowest scores instead of the highest.") var bottom = false
    @Option(help: "Combine several queries per row: mean, max or group-max.") var aggregate: String?
    @Option(help: "For group-max: a file with one group number per query.") var groups: String?
    @Flag(help: "Exact search even when an index exists.") var exact = false
    @Option(help: "Index to search through (default: the set's index for --metric, if any).") var index: String?
    @Option(help: "Probe as many lists as reach this held-out recall@10 (from the build's tuning).") var recallTarget: Double?
    @Option(help: "Lists to probe (overrides the tuned default).") var nprobe: Int?
    @Option(help: "Candidates re-ranked exactly (at k = 10; overrides the index's default).") var rerank: Int?
    @Option(help: ArgumentHelp("Another checkpoint's sketch set of the same documents and its query: SET=QUERY[@WEIGHT], QUERY a .npy vector or id:ID. Repeatable; scores become Σ_c w_c ⟨g_c, q_c⟩ (TracIn-style, exact), rows matched by id.", valueName: "term")) var term: [String] = []
    @Option(help: "Weight of the --set term when --term is given (e.g. its learning rate).") var weight: Float = 1
    @Option(help: "Search the store as of this version.") var at: Int?
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    struct Output: Encodable {
        struct Result: Encodable { let rank: Int, id: String, score: Float, label: String?, metadata: String? }
        struct IndexUse: Encodable { let name: String, lists: Int, nprobe: Int, rerank: Int, indexedRows: Int, exactRows: Int, builtOnVersion: Int }
        let set: String, version: Int, metric: String, exact: Bool, queries: Int
        let index: IndexUse?
        /// Why an index of the set was not used, when one exists.
        let note: String?
        let results: [[Result]]
    }

    func validate() throws {
        try requireOption(count, "-k", in: 1...OptionLimit.count)
        try requireOption(nprobe, "--nprobe", in: 1...OptionLimit.count)
        try requireOption(rerank, "--rerank", in: 1...OptionLimit.perQuery)
        try requireVersion(at)
        guard weight.isFinite else { throw ValidationError("--weight must be a finite number, found \(weight)") }
    }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let target = try store.sketchSet(set, at: at)
            guard let metricValue = SearchMetric(rawValue: metric) else {
                throw ValidationError("--metric must be ip or cosine, found \(metric)")
            }
            guard count >= 1 else { throw ValidationError("-k must be at least 1, found \(count)") }
            let (queries, queryCount) = try loadQueries(store: store, target: target)
            var aggregation: QueryAggregation?
            switch aggregate {
            case nil: aggregation = nil
            case "mean": aggregation = .mean
            case "max": aggregation = .max
            case "group-max":
                guard let groups else { throw ValidationError("--aggregate group-max needs --groups FILE") }
                let numbers = try TextLines.read(groups).enumerated().map { index, line in
                    guard let value = Int(line.trimmingCharacters(in: .whitespaces)) else {
                        throw StoreError(.invalidInput, "line \(index + 1) is not a group number: \"\(line)\"", path: groups)
                    }
                    return value
                }
                aggregation = .groupMeanThenMax(groups: numbers)
            default: throw ValidationError("--aggregate must be mean, max or group-max, found \(aggregate!)")
            }
            if !term.isEmpty {
                try runMultiCheckpoint(store: store, target: target, queries: queries, queryCount: queryCount)
                return
            }
            if recallTarget != nil && nprobe != nil { throw ValidationError("give --recall-target or --nprobe, not both") }
            if let recallTarget, !(0.0...1.0).contains(recallTarget) { throw ValidationError("--recall-target must be between 0 and 1, found \(recallTarget)") }
            if let nprobe, nprobe < 1 { throw ValidationError("--nprobe must be at least 1, found \(nprobe)") }
            if let rerank, rerank < 1 { throw ValidationError("--rerank must be at least 1, found \(rerank)") }
            var note: String?
            var searcher: IVFSearcher?
            let candidates = target.entry.indexes.filter { $0.value.metric == metric }.keys.sorted()
            // An explicit --index, else the index named after the metric, else any index for the metric.
            let chosenIndex = index ?? (candidates.contains(metric) ? metric : candidates.first)
            if let index {
                guard let entry = target.entry.indexes[index] else {
                    throw StoreError(.notFound, "set \(set) has no index \"\(index)\" in version \(target.version) (indexes: \(target.entry.indexes.keys.sorted().joined(separator: ", ")))")
                }
                guard entry.metric == metric else {
                    throw ValidationError("index \(index) is for metric \(entry.metric); query with --metric \(entry.metric) or build one for \(metric)")
                }
            }
            if exact {
                if index != nil || nprobe != nil || recallTarget != nil { throw ValidationError("--exact cannot be combined with --index, --nprobe or --recall-target") }
            } else if let name = chosenIndex {
                if aggregation != nil {
                    note = "aggregated queries are searched exactly; index \(name) answers single queries"
                } else {
                    do { searcher = try IVFSearcher(set: target, index: name) } catch let error as StoreError where error.code == .conflict {
                        note = error.message + "; searched exactly"
                        FileHandle.standardError.write(Data("gradsketch: \(note!)\n".utf8))
                    }
                }
            } else if nprobe != nil || recallTarget != nil {
                throw ValidationError("set \(set) has no index for metric \(metric): build one with `gradsketch index build` or drop --nprobe/--recall-target")
            }
            let hits: [[SearchHit]]
            var use: Output.IndexUse?
            if let searcher {
                var parameters = searcher.defaults
                if let nprobe { parameters.nprobe = nprobe }
                if let recallTarget { parameters.nprobe = searcher.nprobe(forRecall: recallTarget) }
                if let rerank { parameters.rerank = rerank }
                parameters.nprobe = min(parameters.nprobe, searcher.lists)
                hits = try searcher.search(queries: queries, count: queryCount, k: count, parameters: parameters, smallest: bottom, threads: 2)
                use = .init(name: chosenIndex!, lists: searcher.lists, nprobe: parameters.nprobe,
                            rerank: parameters.rerank, indexedRows: searcher.indexedRows, exactRows: searcher.exactRows,
                            builtOnVersion: target.entry.indexes[chosenIndex!]!.builtOnVersion)
            } else {
                hits = try ExactSearch.search(target, queries: queries, count: queryCount, metric: metricValue, k: count,
                                              smallest: bottom, aggregate: aggregation)
            }
            // Labels and metadata of the hits only, read by block (not the set's every string).
            let addresses = try target.addresses(ofLive: hits.flatMap { $0.map(\.position) })
            let labels = target.entry.hasLabels ? try target.labels(at: addresses) : nil
            let metadata = target.entry.hasMetadata ? try target.metadata(at: addresses) : nil
            var slot = 0
            let output = Output(set: set, version: target.version, metric: metric, exact: searcher == nil, queries: queryCount, index: use, note: note,
                                results: hits.map { list in
                list.enumerated().map { rank, hit in
                    defer { slot += 1 }
                    return .init(rank: rank + 1, id: hit.id, score: hit.score, label: labels?[slot], metadata: metadata?[slot])
                }
            })
            if json { printJSON(output); return }
            for (index, list) in output.results.enumerated() {
                if output.results.count > 1 { print("query \(index):") }
                for result in list {
                    var line = String(format: "%3d  %-40@ %.6g", result.rank, result.id as NSString, result.score)
                    if let label = result.label, !label.isEmpty { line += "  [\(label)]" }
                    if let text = result.metadata, !text.isEmpty { line += "  \(text.prefix(80))" }
                    print(line)
                }
            }
        }
    }

    /// Σ_c w_c ⟨g_c, q_c⟩ over the --set term and every --term, exactly.
    private func runMultiCheckpoint(store: Store, target: SketchSet, queries: [Float], queryCount: Int) throws {
        guard queryCount == 1, aggregate == nil, index == nil, nprobe == nil, recallTarget == nil, metric == "ip" else {
            throw ValidationError("--term takes one query per set, inner product and exact search (no --aggregate, --metric cosine, --index, --nprobe or --recall-target)")
        }
        var terms: [(set: SketchSet, query: [Float], weight: Float)] = [(target, queries, weight)]
        for text in term {
            let (setName, rest) = try splitPair(text, option: "--term")
            var source = rest, termWeight: Float = 1
            if let at = rest.lastIndex(of: "@") {
                guard let value = Float(rest[rest.index(after: at)...]), value.isFinite else {
                    throw ValidationError("--term \(text): the weight after @ must be a finite number")
                }
                termWeight = value
                source = String(rest[..<at])
            }
            let set = try store.sketchSet(setName, at: at)
            let query: [Float]
            if source.hasPrefix("id:") {
                query = try set.floatRows(at: try set.positions(of: [String(source.dropFirst(3))]))
            } else {
                query = try readVectors(source, width: set.k, what: "query for set \(setName)").values
            }
            terms.append((set, query, termWeight))
        }
        let hits = try ExactSearch.searchAcrossCheckpoints(terms, k: count, smallest: bottom)
        let labels = target.entry.hasLabels ? try target.labels() : nil
        let metadata = target.entry.hasMetadata ? try target.metadata() : nil
        let output = Output(set: set, version: target.version, metric: "ip", exact: true, queries: 1, index: nil,
                            note: "multi-checkpoint: " + ([set + "@\(weight)"] + term).joined(separator: " + "),
                            results: [hits.enumerated().map { rank, hit in
                                .init(rank: rank + 1, id: hit.id, score: hit.score, label: labels?[hit.position], metadata: metadata?[hit.position])
                            }])
        if json { printJSON(output); return }
        for result in output.results[0] { print(String(format: "%3d  %-40@ %.6g", result.rank, result.id as NSString, result.score)) }
    }

    private func loadQueries(store: Store, target: SketchSet) throws -> ([Float], Int) {
        let sources = [vector != nil, id != nil, delta != nil, querySet != nil].filter { $0 }.count
        guard sources == 1 else {
            throw ValidationError("give exactly one query source: --vector, --id, --delta or --query-set (found \(sources))")
        }
        if let vector {
            return try readVectors(vector, width: target.k, allowMany: true, what: "query")
        }
        if let id {
            return (try target.floatRows(at: try target.positions(of: [id])), 1)
        }
        if let querySet {
            let queries = try store.sketchSet(querySet, at: at)
            guard queries.k == target.k else {
                throw StoreError(.invalidInput, "query set \(querySet) has k = \(queries.k), set \(target.name) has k = \(target.k)")
            }
            if let mine = target.attributes["projection"], let theirs = queries.attributes["projection"],
               let difference = ProjectionRule.firstDifference(theirs, mine) {
                throw StoreError(.invalidInput, "query set \(querySet) was sketched with a different projection than \(target.name) (\(difference))")
            }
            return (try queries.floatRows(), queries.rowCount)
        }
        let query = try projectedDelta(delta!, for: target, store: store, at: at, negate: negate)
        return (query, 1)
    }
}
