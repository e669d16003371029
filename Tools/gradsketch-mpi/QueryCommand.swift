import ArgumentParser
import Foundation
import GradSketchDistributed
import GradSketchInterchange
import GradSketchMPI
import GradSketchSearch
import GradSketchStore

/// `gradsketch-mpi query`: exact top-k over every shard, merged (Spec/distributed.md §3.3).
struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Find the rows of a (sharded) sketch set that best match a query, across every rank (exact search).",
        discussion: """
        Each shard is searched by the ranks on its host (every rank for a shard without a host), its segments split among \
        them; each rank keeps its best k and rank 0 prints the merged answer: score descending (ascending with --bottom), \
        ties by shard index, then segment and row. The same command on any number of ranks prints the same JSON. Options \
        are those of `gradsketch query` that an exact distributed search supports; --index, --nprobe, --recall-target, \
        --rerank, --id, --delta, --query-set and --term are refused.
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
    @Flag(help: "Exact search (distributed queries always are).") var exact = false
    @Option(help: "Not supported: distributed queries search exactly.") var index: String?
    @Option(help: "Not supported: distributed queries search exactly.") var recallTarget: Double?
    @Option(help: "Not supported: distributed queries search exactly.") var nprobe: Int?
    @Option(help: "Not supported: distributed queries search exactly.") var rerank: Int?
    @Option(help: "Version to read: one number for a plain store, one per shard (comma-separated) for a sharded one.") var at: String?
    @Option(help: "Threads per rank for the scan.") var threads: Int = 1
    @Flag(help: "Add each rank's rows scanned, seconds and bytes merged (not byte-identical across runs).") var stats = false
    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        let set: String, metric: String, exact: Bool, queries: Int
        let shards: [ShardOutput]
        let results: [[FanOutQuery.Hit]]
        let ranks: [RankStatistics<FanOutQuery.Statistics>]?
    }

    func validate() throws {
        guard (1...1_000_000).contains(count) else { throw ValidationError("-k must be in 1...1000000, found \(count)") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be in 1...64, found \(threads)") }
        let refused = [("--id", id != nil), ("--delta", delta != nil), ("--query-set", querySet != nil), ("--index", index != nil),
                       ("--recall-target", recallTarget != nil), ("--nprobe", nprobe != nil), ("--rerank", rerank != nil)]
        if let (name, _) = refused.first(where: \.1) {
            throw ValidationError("\(name) is not supported by gradsketch-mpi query: distributed queries search exactly with --vector queries (use gradsketch query on one store for \(name))")
        }
        guard vector != nil else { throw ValidationError("give the query as --vector FILE.npy") }
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
            let result = try FanOutQuery.run(request, on: layout, collective: collective)
            let ranks = try gatherStatistics(result.statistics, asked: stats, collective: collective)
            let answer = Output(set: set, metric: metric, exact: true, queries: queries, shards: shardOutputs(layout, versions: result.versions),
                                results: result.hits, ranks: ranks)
            output.emit(answer, on: collective) { answer in
                var lines: [String] = []
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
