import ArgumentParser
import Foundation
import GradSketch
import GradSketchInterchange

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
    @Option(help: "ivf-rq4 indexes: groups of lists considered when routing (overrides the index's default).") var groupProbe: Int?
    @Option(help: ArgumentHelp("Another checkpoint's sketch set of the same documents and its query: SET=QUERY[@WEIGHT], QUERY a .npy vector or id:ID. Repeatable; scores become Σ_c w_c ⟨g_c, q_c⟩ (TracIn-style, exact), rows matched by id.", valueName: "term")) var term: [String] = []
    @Option(help: "Weight of the --set term when --term is given (e.g. its learning rate).") var weight: Float = 1
    @Option(help: "Search the store as of this version.") var at: Int?
    @Flag(help: "Print the plan (exact or through which index, nprobe, rerank, rows searched each way) without searching.") var explain = false
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    struct Output: Encodable {
        struct Result: Encodable { let rank: Int, id: String, score: Float, label: String?, metadata: String? }
        struct IndexUse: Encodable {
            let name: String, lists: Int, nprobe: Int, rerank: Int, indexedRows: Int, exactRows: Int, builtOnVersion: Int
            let kind: String?, parts: Int?, groupProbe: Int?
        }
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
        try requireOption(groupProbe, "--group-probe", in: 1...OptionLimit.count)
        try requireVersion(at)
        guard weight.isFinite else { throw ValidationError("--weight must be a finite number, found \(weight)") }
    }

    func run() throws {
        try reportingErrors {
            let snapshot = try Snapshot(store: try GradSketch.Store(opening: location.store), version: at)
            guard let metricValue = SearchMetricName(rawValue: metric) else {
                throw ValidationError("--metric must be ip or cosine, found \(metric)")
            }
            let target = try snapshot.sketchSet(set)
            let input = try queryInput(width: target.k)
            var aggregation: QueryRequest.Aggregation?
            switch aggregate {
            case nil: aggregation = nil
            case "mean": aggregation = .mean
            case "max": aggregation = .max
            case "group-max":
                guard let groups else { throw ValidationError("--aggregate group-max needs --groups FILE") }
                aggregation = .groupMeanThenMax(groups: try QueryInputs.readGroups(groups))
            default: throw ValidationError("--aggregate must be mean, max or group-max, found \(aggregate!)")
            }
            if !term.isEmpty {
                guard !explain else { throw ValidationError("--explain explains index use; --term queries are always exact") }
                try runMultiCheckpoint(snapshot: snapshot, input: input)
                return
            }
            if recallTarget != nil && nprobe != nil { throw ValidationError("give --recall-target or --nprobe, not both") }
            if let recallTarget, !(0.0...1.0).contains(recallTarget) {
                throw ValidationError("--recall-target must be between 0 and 1, found \(recallTarget)")
            }
            if exact && (index != nil || nprobe != nil || recallTarget != nil) {
                throw ValidationError("--exact cannot be combined with --index, --nprobe or --recall-target")
            }
            var request = QueryRequest(set: set, input: input)
            request.metric = metricValue
            request.k = count
            request.smallest = bottom
            request.aggregation = aggregation
            request.index = exact ? .exact : index.map { .named($0) } ?? .auto
            request.probe = nprobe.map { .nprobe($0) } ?? recallTarget.map { .recallTarget($0) } ?? .tuned
            request.rerank = rerank
            request.groupProbe = groupProbe
            if explain {
                let plan = try snapshot.plan(request)
                if json { printJSON(plan) } else { print(plan.description) }
                return
            }
            let result = try snapshot.query(request)
            let plan = result.plan
            if plan.staleIndex, let note = plan.note {
                FileHandle.standardError.write(Data("gradsketch: \(note)\n".utf8))
            }
            let use = plan.index.map { name in
                Output.IndexUse(name: name, lists: plan.lists!, nprobe: plan.nprobe!, rerank: plan.rerank!,
                                indexedRows: plan.indexedRows, exactRows: plan.exactRows, builtOnVersion: plan.builtOnVersion!,
                                kind: plan.kind, parts: plan.parts, groupProbe: plan.groupProbe)
            }
            let output = Output(set: set, version: plan.version, metric: plan.metric, exact: plan.exact, queries: plan.queries,
                                index: use, note: plan.note, results: result.hits.map(Self.ranked))
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

    static func ranked(_ hits: [QueryHit]) -> [Output.Result] {
        hits.enumerated().map { rank, hit in
            .init(rank: rank + 1, id: hit.id, score: hit.score, label: hit.label, metadata: hit.metadata)
        }
    }

    /// Σ_c w_c ⟨g_c, q_c⟩ over the --set term and every --term, exactly.
    private func runMultiCheckpoint(snapshot: Snapshot, input: QueryRequest.Input) throws {
        let single: Bool
        if case .vectors(_, let count) = input { single = count == 1 } else if case .storedRow = input { single = true } else { single = false }
        guard single, aggregate == nil, index == nil, nprobe == nil, recallTarget == nil, metric == "ip" else {
            throw ValidationError("--term takes one query per set, inner product and exact search (no --aggregate, --metric cosine, --index, --nprobe or --recall-target)")
        }
        var terms = [CheckpointTerm(set: set, input: input, weight: weight)]
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
            let termInput: QueryRequest.Input
            if source.hasPrefix("id:") {
                termInput = .storedRow(id: String(source.dropFirst(3)))
            } else {
                let width = try snapshot.sketchSet(setName).k
                termInput = .vectors(try QueryInputs.readVectors(source, width: width, what: "query for set \(setName)").values, count: 1)
            }
            terms.append(CheckpointTerm(set: setName, input: termInput, weight: termWeight))
        }
        let hits = try snapshot.queryAcrossCheckpoints(terms, k: count, smallest: bottom)
        let output = Output(set: set, version: snapshot.version, metric: "ip", exact: true, queries: 1, index: nil,
                            note: "multi-checkpoint: " + ([set + "@\(weight)"] + term).joined(separator: " + "),
                            results: [Self.ranked(hits)])
        if json { printJSON(output); return }
        for result in output.results[0] { print(String(format: "%3d  %-40@ %.6g", result.rank, result.id as NSString, result.score)) }
    }

    /// The one query source given, read from its file where it has one.
    private func queryInput(width: Int) throws -> QueryRequest.Input {
        let sources = [vector != nil, id != nil, delta != nil, querySet != nil].filter { $0 }.count
        guard sources == 1 else {
            throw ValidationError("give exactly one query source: --vector, --id, --delta or --query-set (found \(sources))")
        }
        if let vector {
            let (values, count) = try QueryInputs.readVectors(vector, width: width, allowMany: true, what: "query")
            return .vectors(values, count: count)
        }
        if let id { return .storedRow(id: id) }
        if let querySet { return .querySet(querySet) }
        return .delta(tensorSet: delta!, negate: negate)
    }
}
