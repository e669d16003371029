import ArgumentParser
import Foundation
import GradSketchDistributed
import GradSketchInterchange
import GradSketchMPI
import GradSketchSearch
import GradSketchStore

/// `gradsketch-mpi query`: top-k over every shard, merged (Spec/distributed.md §3.3): an exact
/// scan split among the ranks, or each shard through its own index (§3.3.1).
struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Find the rows of a (sharded) sketch set that best match a query, across every rank.",
        discussion: """
        Each shard is searched by the ranks on its host (every rank for a shard without a host), its segments split among \
        them; each rank keeps its best k and rank 0 prints the merged answer: score descending (ascending with --bottom), \
        ties by shard index, then segment and row. The same command on any number of ranks prints the same JSON. With \
        --index, --nprobe, --recall-target, --rerank or --group-probe each shard is searched whole through its own index \
        (shard i by serving rank i mod m), as `gradsketch query SHARD` with those options searches it; a shard without \
        the --index named is an error, and without --index a shard with no index for the metric is scanned exactly (the \
        JSON says how each shard was searched). Without them every shard is scanned exactly. --id, --delta, --query-set \
        and --term are refused.
        """)

    @Argument(help: "The store directory: a sharded store (gradsketch-shards.json) or a plain store.") var store: String
    @Option(help: "Sketch set to search.") var set: String
    @Option(help: "Query vector(s): .npy of shape [k] or [Q, k] (read by rank 0).") var vector: String?
    @Option(help: "Not supported by distributed queries.") var id: String?
    @Option(help: "Not supported by distributed queries.") var delta: String?
    @Option(help: "Not supported by distributed queries.") var querySet: String?
    @Option(name: .customShort("k"), help: "How many results.") var count: Int = 10
    @Option(help: "ip (inner product) or cosine.") var metric: String = "ip"
    @Flag(help: "Return the lowest scores instead of the highest.") var bottom = false
    @Option(help: "Combine several queries per row: mean, max or group-max.") var aggregate: String?
    @Option(help: "For group-max: a file with one group number per query (read by every rank).") var groups: String?
    @Flag(help: "Exact search (the default without index options).") var exact = false
    @Option(help: "Index every shard is searched through (each shard must have it).") var index: String?
    @Option(help: "Probe as many lists as reach this held-out recall@10 (from each shard's build tuning).") var recallTarget: Double?
    @Option(help: "Lists to probe in each shard's index (overrides the tuned default).") var nprobe: Int?
    @Option(help: "Candidates re-ranked exactly (at k = 10; overrides each index's default).") var rerank: Int?
    @Option(help: "ivf-rq4 indexes: groups of lists considered when routing (overrides each index's default).") var groupProbe: Int?
    @Option(help: "Version to read: one number for a plain store, one per shard (comma-separated) for a sharded one.") var at: String?
    @Option(help: "Threads per rank for the scan.") var threads: Int = 1
    @Flag(help: "Add each rank's rows scanned, seconds and bytes merged (not byte-identical across runs).") var stats = false
    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        let set: String, metric: String, exact: Bool, queries: Int
        let shards: [ShardOutput]
        /// How each shard was searched, when an index was asked for.
        let search: [ShardSearchOutput]?
        let results: [[FanOutQuery.Hit]]
        let ranks: [RankStatistics<FanOutQuery.Statistics>]?
    }

    /// How a shard was searched, as printed: the rank that searched it only with --stats, so
    /// the default JSON stays byte-identical for any number of ranks.
    struct ShardSearchOutput: Encodable {
        let shard: String, shardIndex: Int, rank: Int?, exact: Bool
        let index: String?, kind: String?, lists: Int?, nprobe: Int?, rerank: Int?, groupProbe: Int?
        let indexedRows: Int, exactRows: Int, builtOnVersion: Int?, note: String?

        init(_ search: FanOutQuery.ShardSearch, withRank: Bool) {
            shard = search.shard
            shardIndex = search.shardIndex
            rank = withRank ? search.rank : nil
            exact = search.exact
            index = search.index
            kind = search.kind
            lists = search.lists
            nprobe = search.nprobe
            rerank = search.rerank
            groupProbe = search.groupProbe
            indexedRows = search.indexedRows
            exactRows = search.exactRows
            builtOnVersion = search.builtOnVersion
            note = search.note
        }
    }

    func validate() throws {
        guard (1...1_000_000).contains(count) else { throw ValidationError("-k must be in 1...1000000, found \(count)") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be in 1...64, found \(threads)") }
        let refused = [("--id", id != nil), ("--delta", delta != nil), ("--query-set", querySet != nil)]
        if let (name, _) = refused.first(where: \.1) {
            throw ValidationError("\(name) is not supported by gradsketch-mpi query: distributed queries take --vector queries (use gradsketch query on one store for \(name))")
        }
        if let nprobe { guard nprobe >= 1 else { throw ValidationError("--nprobe must be at least 1, found \(nprobe)") } }
        if let rerank { guard rerank >= 1 else { throw ValidationError("--rerank must be at least 1, found \(rerank)") } }
        if let groupProbe { guard groupProbe >= 1 else { throw ValidationError("--group-probe must be at least 1, found \(groupProbe)") } }
        if recallTarget != nil && nprobe != nil { throw ValidationError("give --recall-target or --nprobe, not both") }
        if let recallTarget, !(0.0...1.0).contains(recallTarget) {
            throw ValidationError("--recall-target must be between 0 and 1, found \(recallTarget)")
        }
        if exact && indexRequest != nil {
            throw ValidationError("--exact cannot be combined with --index, --nprobe, --recall-target, --rerank or --group-probe")
        }
        guard vector != nil else { throw ValidationError("give the query as --vector FILE.npy") }
    }

    /// The per-shard index search asked for, or nil for the exact fan-out.
    var indexRequest: FanOutQuery.IndexRequest? {
        guard index != nil || nprobe != nil || recallTarget != nil || rerank != nil || groupProbe != nil else { return nil }
        return FanOutQuery.IndexRequest(name: index, nprobe: nprobe, recallTarget: recallTarget, rerank: rerank, groupProbe: groupProbe)
    }

    func run() throws {
        guard let metricValue = SearchMetric(rawValue: metric) else { throw ValidationError("--metric must be ip or cosine, found \(metric)") }
        let layout = try openLayout(store)
        let versions = try parseVersions(at, layout: layout)
        var aggregation: QueryAggregation?
        switch aggregate {
        case nil: aggregation = nil
        case "mean": aggregation = .mean
        case "max": aggregation = .max
        case "group-max":
            guard let groups else { throw ValidationError("--aggregate group-max needs --groups FILE") }
            aggregation = .groupMeanThenMax(groups: try QueryInputs.readGroups(groups))
        default: throw ValidationError("--aggregate must be mean, max or group-max, found \(aggregate!)")
        }
        let collective = try MPIRuntime.shared
        try agreed {
            let (values, queries) = try broadcastVectors(vector!, allowMany: true, collective: collective)
            var request = FanOutQuery.Request(set: set, queries: values, count: queries)
            request.metric = metricValue
            request.k = count
            request.smallest = bottom
            request.aggregate = aggregation
            request.versions = versions
            request.threads = threads
            request.index = indexRequest
            let result = try FanOutQuery.run(request, on: layout, collective: collective)
            let ranks = try gatherStatistics(result.statistics, asked: stats, collective: collective)
            let exactly = result.shardSearches?.allSatisfy(\.exact) ?? true
            let answer = Output(set: set, metric: metric, exact: exactly, queries: queries, shards: shardOutputs(layout, versions: result.versions),
                                search: result.shardSearches?.map { ShardSearchOutput($0, withRank: stats) }, results: result.hits, ranks: ranks)
            output.emit(answer, on: collective) { answer in
                var lines: [String] = []
                for search in answer.search ?? [] {
                    lines.append(search.exact
                        ? "\(search.shard): scanned exactly\(search.note.map { " (\($0))" } ?? "")"
                        : "\(search.shard): index \(search.index ?? "?") (\(search.kind ?? "?")), nprobe \(search.nprobe ?? 0) of \(search.lists ?? 0), rerank \(search.rerank ?? 0), \(search.indexedRows) rows indexed + \(search.exactRows) exact")
                }
                for (index, list) in answer.results.enumerated() {
                    if answer.results.count > 1 { lines.append("query \(index):") }
                    for (rank, hit) in list.enumerated() {
                        var line = String(format: "%3d  %-40@ %.6g  %@ (%d, %d)", rank + 1, hit.id as NSString, hit.score,
                                          hit.shard as NSString, hit.segment, hit.row)
                        if let label = hit.label, !label.isEmpty { line += "  [\(label)]" }
                        lines.append(line)
                    }
                }
                return lines.joined(separator: "\n")
            }
        }
    }
}
