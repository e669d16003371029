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
        Options are those of `gradsketch index build`, --kind ivf-int8 (default) or ivf-rq4 included. Each shard's index \
        covers that shard only; `gradsketch-mpi query --index NAME` searches each shard through it.
        """)

    @Argument(help: "The store directory: a sharded store (gradsketch-shards.json) or a plain store.") var store: String
    @Option(help: "Sketch set to index.") var set: String
    @Option(help: "Index name (default: the metric).") var name: String?
    @Option(help: "ip (inner product) or cosine.") var metric: String = "ip"
    @Option(help: "Number of lists per shard (default: the power of two nearest 2·√N of the shard).") var lists: Int?
    @Option(help: "Held-out recall@10 the default nprobe must reach.") var recallTarget: Double = 0.95
    @Option(help: "Candidates re-ranked exactly per query (at k = 10; scaled with k; default 32 for ivf-int8; for ivf-rq4 the smallest of 16…64 that keeps the recall target).") var rerank: Int?
    @Option(help: "Rows k-means trains on (default: 128 per list).") var trainingRows: Int?
    @Option(help: "k-means iterations.") var iterations: Int = 20
    @Option(help: "Seed for sampling and k-means.") var seed: UInt64 = 0
    @Option(help: "Threads per rank.") var threads: Int = 1
    @Option(help: "Index kind: ivf-int8 (one file, int8 codes) or ivf-rq4 (parts of 4-bit codes, two-level quantizer; updatable).")
    var kind: String = "ivf-int8"
    @Option(help: "ivf-rq4: upper-level groups of lists (default ⌈√lists⌉).") var groups: Int?
    @Option(help: "ivf-rq4: groups probed when routing by default (default ⌈groups/4⌉).") var groupProbe: Int?
    @Option(help: "ivf-rq4: rows a part covers at most (whole segments; bounds the build's memory).") var partRows: Int = 1 << 22
    @Flag(inversion: .prefixedNo, help: "ivf-rq4: rotate residuals (seeded orthogonal rotation) before 4-bit coding.") var rotation = true
    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        let set: String, name: String, kind: String
        let wallSeconds: Double
        let shards: [ShardedIndexBuild.ShardReport]
    }

    func validate() throws {
        for (name, value) in [("--lists", lists), ("--rerank", rerank), ("--groups", groups), ("--group-probe", groupProbe),
                              ("--part-rows", partRows), ("--training-rows", trainingRows), ("--iterations", iterations), ("--threads", threads)] {
            if let value, value < 1 { throw ValidationError("\(name) must be at least 1, found \(value)") }
        }
        guard (0.0...1.0).contains(recallTarget) else { throw ValidationError("--recall-target must be between 0 and 1, found \(recallTarget)") }
        guard kind == "ivf-int8" || kind == PartIndexKind.name else {
            throw ValidationError("--kind must be ivf-int8 or \(PartIndexKind.name), found \(kind)")
        }
        if kind == "ivf-int8", groups != nil || groupProbe != nil || partRows != 1 << 22 || !rotation {
            throw ValidationError("--groups, --group-probe, --part-rows and --no-rotation apply to --kind \(PartIndexKind.name) only")
        }
    }

    func run() throws {
        guard let metricValue = SearchMetric(rawValue: metric) else { throw ValidationError("--metric must be ip or cosine, found \(metric)") }
        let layout = try openLayout(store)
        let options: ShardedIndexBuild.Options
        if kind == PartIndexKind.name {
            var part = PartIndexOptions()
            part.metric = metricValue
            part.lists = lists
            part.groups = groups
            part.groupProbe = groupProbe
            part.partRows = partRows
            part.rotation = rotation
            part.recallTarget = recallTarget
            part.rerank = rerank
            part.trainingRows = trainingRows
            part.iterations = iterations
            part.seed = seed
            part.threads = threads
            options = .ivfRQ4(part)
        } else {
            var ivf = IVFBuildOptions()
            ivf.metric = metricValue
            ivf.lists = lists
            ivf.recallTarget = recallTarget
            ivf.rerank = rerank ?? 32
            ivf.trainingRows = trainingRows
            ivf.iterations = iterations
            ivf.seed = seed
            ivf.threads = threads
            options = .ivfInt8(ivf)
        }
        let collective = try MPIRuntime.shared
        try agreed {
            let result = try ShardedIndexBuild.run(set: set, name: name ?? metric, options: options, on: layout, collective: collective)
            output.emit(Output(set: set, name: name ?? metric, kind: kind, wallSeconds: result.wallSeconds, shards: result.shards), on: collective) { answer in
                (["index \(answer.name) (\(answer.kind)) of \(answer.set) built in \(answer.shards.count) shard(s) in \(String(format: "%.2f", answer.wallSeconds)) s"]
                    + answer.shards.map { "  \($0.shard): \($0.rows) rows, \($0.lists) lists, \(String(format: "%.2f", $0.seconds)) s on rank \($0.rank) (\($0.host))" })
                    .joined(separator: "\n")
            }
        }
    }
}
