import ArgumentParser
import Foundation
import GradSketchDistributed
import GradSketchMPI
import GradSketchSelect
import GradSketchStore

/// `gradsketch-mpi select`: SELECT greedy (one reduction per pick) or density sampling over
/// every shard (Spec/distributed.md §3.4–3.5).
struct Select: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "select",
        abstract: "Select rows of a (sharded) sketch set across every rank: SELECT greedy or density sampling.",
        discussion: """
        --method select (strategies greedy and greedy-batched) picks as one process over all rows would: the same rows, \
        scores to the bit. --method density samples with probability ∝ 1/(LSH kernel-sum score) with per-row randomness \
        drawn from (seed, shard, segment, row), so the sample does not depend on the number of ranks (it differs from \
        `gradsketch select --method density`, whose generator is sequential). Other methods and strategies, --delta and \
        --save are refused.
        """)

    @Argument(help: "The store directory: a sharded store (gradsketch-shards.json) or a plain store.") var store: String
    @Option(help: "Sketch set to select from.") var set: String
    @Option(help: "select or density.") var method: String = "select"
    @Option(help: "SELECT strategy: greedy or greedy-batched.") var strategy: String = "greedy"
    @Option(name: .customShort("k"), help: "How many rows to select.") var count: Int
    @Option(help: "Query .npy vector [k] (SELECT; read by rank 0).") var vector: String?
    @Option(help: "Not supported by distributed selection.") var delta: String?
    @Flag(help: "Greedy strategies sum unit-normalised rows.") var unitRows = false
    @Option(help: "Reset the running sum every N picks (greedy-batched).") var batchSize: Int = 0
    @Option(help: "Density: hash functions.") var hashes: Int = 200
    @Option(help: "Density: buckets per hash.") var buckets: Int = 20_000
    @Option(help: "Density: bucket width (default: median nearest-neighbour distance of a sample of 1000 rows).") var width: Double?
    @Option(help: "Density: p-stable projections per hash.") var power: Int = 1
    @Option(help: "Seed (density hashes and sampling).") var seed: UInt64 = 0
    @Option(help: "Not supported by distributed selection.") var save: String?
    @Option(help: "Version to read: one number for a plain store, one per shard (comma-separated) for a sharded one.") var at: String?
    @Option(help: "Threads per rank.") var threads: Int = 1
    @Flag(help: "Add each rank's statistics (not byte-identical across runs).") var stats = false
    @OptionGroup var output: OutputOptions

    struct Row: Encodable {
        let rank: Int, shard: String, shardIndex: Int, segment: Int, row: Int, id: String, score: Double
    }
    struct Output<S: Codable & Sendable>: Encodable {
        let method: String, set: String
        let parameters: [String: JSONValue]
        let shards: [ShardOutput]
        let rows: [Row]
        let ranks: [RankStatistics<S>]?
    }

    func validate() throws {
        guard (1...100_000_000).contains(count) else { throw ValidationError("-k must be in 1...100000000, found \(count)") }
        guard method == "select" || method == "density" else {
            throw ValidationError("gradsketch-mpi select supports --method select or density, found \(method) (use gradsketch select on one store)")
        }
        if method == "select" && strategy != "greedy" && strategy != "greedy-batched" {
            throw ValidationError("gradsketch-mpi select supports --strategy greedy or greedy-batched, found \(strategy)")
        }
        if strategy == "greedy-batched" && batchSize < 1 { throw ValidationError("greedy-batched needs --batch-size of at least 1") }
        if delta != nil { throw ValidationError("--delta is not supported by gradsketch-mpi select: give the query as --vector FILE.npy") }
        if save != nil { throw ValidationError("--save is not supported by gradsketch-mpi select (a result belongs to one store, not to a sharded one)") }
        if method == "select" && vector == nil { throw ValidationError("--method select needs --vector FILE.npy") }
        guard hashes >= 1, buckets >= 1, power >= 1 else { throw ValidationError("--hashes, --buckets and --power must be at least 1") }
        if let width, !(width.isFinite && width > 0) { throw ValidationError("--width must be a finite number > 0, found \(width)") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be in 1...64, found \(threads)") }
    }

    func run() throws {
        let layout = try openLayout(store)
        let versions = try parseVersions(at, layout: layout)
        let collective = try MPIRuntime.shared
        try agreed {
            if method == "select" {
                let (query, _) = try broadcastVectors(vector!, allowMany: false, collective: collective)
                let batched = strategy == "greedy-batched"
                let result = try DistributedGreedy.run(set: set, query: query, count: count, resetEvery: batched ? batchSize : 0,
                                                       unitRows: unitRows, versions: versions, threads: threads, on: layout, collective: collective)
                var parameters: [String: JSONValue] = ["strategy": .string(strategy), "count": .number(Double(count))]
                if batched { parameters["batch_size"] = .number(Double(batchSize)) }
                if unitRows { parameters["unit_rows"] = .bool(true) }
                let rows = result.picks.enumerated().map { Row(rank: $0 + 1, shard: $1.shard, shardIndex: $1.shardIndex, segment: $1.segment, row: $1.row, id: $1.id, score: $1.score) }
                let answer = Output(method: "select/" + strategy, set: set, parameters: parameters, shards: shardOutputs(layout, versions: result.versions),
                                    rows: rows, ranks: try gatherStatistics(result.statistics, asked: stats, collective: collective))
                output.emit(answer, on: collective, text: Self.text)
            } else {
                var options = DensitySampling.Options()
                options.hashes = hashes
                options.buckets = buckets
                options.width = width
                options.power = power
                options.seed = seed
                let result = try DistributedDensity.run(set: set, count: count, options: options, versions: versions, on: layout, collective: collective)
                let parameters: [String: JSONValue] = [
                    "hashes": .number(Double(hashes)), "buckets": .number(Double(buckets)), "width": .number(result.width),
                    "power": .number(Double(power)), "seed": JSONValue(seed), "count": .number(Double(count)),
                    "sampling": .string("inverse-propensity, per-row uniforms from (seed, shard, segment, row)"),
                ]
                let rows = result.picks.enumerated().map { Row(rank: $0 + 1, shard: $1.shard, shardIndex: $1.shardIndex, segment: $1.segment, row: $1.row, id: $1.id, score: $1.score) }
                let answer = Output(method: "density", set: set, parameters: parameters, shards: shardOutputs(layout, versions: result.versions),
                                    rows: rows, ranks: try gatherStatistics(result.statistics, asked: stats, collective: collective))
                output.emit(answer, on: collective, text: Self.text)
            }
        }
    }

    static func text<S>(_ answer: Output<S>) -> String {
        (["\(answer.method) on \(answer.set) across \(answer.shards.count) shard(s)"] + answer.rows.map { row in
            String(format: "%5d  %-40@ %.6g  %@ (%d, %d)", row.rank, row.id as NSString, row.score, row.shard as NSString, row.segment, row.row)
        }).joined(separator: "\n")
    }
}
