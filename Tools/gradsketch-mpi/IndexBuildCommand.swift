import ArgumentParser
import Foundation
import GradSketchDistributed
import GradSketchMPI
import GradSketchSearch
import GradSketchStore

/// `gradsketch-mpi index-build`: an index in every shard, the shards spread over the ranks
/// (Spec/distributed.md §3.6).
struct IndexBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index-build",
        abstract: "Build an IVF index in every shard of a sharded store, each shard by one rank of its host.",
        discussion: """
        Shard i is built by serving rank number i mod (ranks serving it), so 4 shards on 2 ranks build two at a time. \
        Options are those of `gradsketch index build`. Each shard's index covers that shard only; distributed queries \
        search exactly for now (the per-shard index is what `gradsketch query` on the shard uses).
        """)

    @Argument(help: "The store directory: a sharded store (gradsketch-shards.json) or a plain store.") var store: String
    @Option(help: "Sketch set to index.") var set: String
    @Option(help: "Index name (default: the metric).") var name: String?
    @Option(help: "ip (inner product) or cosine.") var metric: String = "ip"
    @Option(help: "Number of lists per shard (default: the power of two nearest 2·√N of the shard).") var lists: Int?
    @Option(help: "Held-out recall@10 the default nprobe must reach.") var recallTarget: Double = 0.95
    @Option(help: "Candidates re-ranked exactly per query (at k = 10; scaled with k).") var rerank: Int = 32
    @Option(help: "Rows k-means trains on (default: 128 per list).") var trainingRows: Int?
    @Option(help: "k-means iterations.") var iterations: Int = 20
    @Option(help: "Seed for sampling and k-means.") var seed: UInt64 = 0
    @Option(help: "Threads per rank.") var threads: Int = 1
    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        let set: String, name: String
        let wallSeconds: Double
        let shards: [ShardedIndexBuild.ShardReport]
    }

    func run() throws {
        guard let metricValue = SearchMetric(rawValue: metric) else { throw ValidationError("--metric must be ip or cosine, found \(metric)") }
        let layout = try openLayout(store)
        var options = IVFBuildOptions()
        options.metric = metricValue
        options.lists = lists
        options.recallTarget = recallTarget
        options.rerank = rerank
        options.trainingRows = trainingRows
        options.iterations = iterations
        options.seed = seed
        options.threads = threads
        let collective = try MPIRuntime.shared
        try agreed {
            let result = try ShardedIndexBuild.run(set: set, name: name ?? metric, options: options, on: layout, collective: collective)
            output.emit(Output(set: set, name: name ?? metric, wallSeconds: result.wallSeconds, shards: result.shards), on: collective) { answer in
                (["index \(answer.name) of \(answer.set) built in \(answer.shards.count) shard(s) in \(String(format: "%.2f", answer.wallSeconds)) s"]
                    + answer.shards.map { "  \($0.shard): \($0.report.rows) rows, \($0.report.lists) lists, \(String(format: "%.2f", $0.seconds)) s on rank \($0.rank) (\($0.host))" })
                    .joined(separator: "\n")
            }
        }
    }
}
