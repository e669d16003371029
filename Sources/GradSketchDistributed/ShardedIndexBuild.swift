import Dispatch
public import GradSketchSearch
public import GradSketchStore

/// Builds an index in every shard of a layout, each shard by one of the ranks that serve it
/// (Spec/distributed.md §3.6): shard i by its serving rank number i mod (its server count),
/// so shards spread over ranks and hosts. An index covers one shard store; a query through
/// it stays per shard, and the fan-out merges as for exact search.
public enum ShardedIndexBuild {
    /// The kind of index to build and its options (those of `gradsketch index build --kind`).
    public enum Options: Sendable {
        /// One file of int8 codes (Spec/format.md §10).
        case ivfInt8(IVFBuildOptions)
        /// Parts of 4-bit codes with a two-level quantizer (Spec/format.md §10.3).
        case ivfRQ4(PartIndexOptions)

        /// The kind's name in the manifest: `ivf-int8` or `ivf-rq4`.
        public var kind: String {
            switch self {
            case .ivfInt8: "ivf-int8"
            case .ivfRQ4: PartIndexKind.name
            }
        }
    }

    public struct ShardReport: Sendable, Codable {
        public let shard: String
        public let shardIndex: Int
        public let rank: Int
        public let host: String
        public let seconds: Double
        public let kind: String
        public let rows: Int
        public let lists: Int
        /// The build's report: `report` for ivf-int8, `partReport` for ivf-rq4.
        public let report: IVFBuildReport?
        public let partReport: PartIndexReport?
    }

    public struct Result: Sendable {
        public let shards: [ShardReport]
        /// Seconds from the first rank's start to the last rank's end of its builds, as seen by
        /// the barrier after them (this rank's view).
        public let wallSeconds: Double
    }

    /// Builds index `name` of set `set` in every shard. Collective; every rank returns every
    /// shard's report, or every rank throws the lowest failing rank's error.
    public static func run(set: String, name: String, options: IVFBuildOptions, on layout: ShardLayout,
                           collective: some Collective) throws -> Result {
        try run(set: set, name: name, options: .ivfInt8(options), on: layout, collective: collective)
    }

    /// Builds index `name` of set `set`, of the kind `options` names, in every shard.
    /// Collective; every rank returns every shard's report, or every rank throws the lowest
    /// failing rank's error.
    public static func run(set: String, name: String, options: Options, on layout: ShardLayout,
                           collective: some Collective) throws -> Result {
        guard !layout.shards.isEmpty else { throw AgreedError(StoreError(.invalidInput, "the store has no shards")) }
        let hosts = try collective.allGather(value: collective.host)
        let servers = layout.shards.map { WorkAssignment.servers(of: $0, hosts: hosts) }
        if let orphan = servers.firstIndex(where: \.isEmpty) {
            let shard = layout.shards[orphan]
            throw AgreedError(StoreError(.notFound, "shard \(shard.name) lives on host \(shard.host ?? "any"), where no rank runs (ranks' hosts: \(Array(Set(hosts)).sorted().joined(separator: ", "))): launch a rank there", path: shard.path))
        }
        try collective.barrier()
        let started = DispatchTime.now()
        let built = attempt { () throws -> [ShardReport] in
            try layout.shards.indices.filter { servers[$0][$0 % servers[$0].count] == collective.rank }.map { index in
                let shardStart = DispatchTime.now()
                let store = try layout.openStore(index)
                let sketches = try store.sketchSet(set)
                let shard = layout.shards[index].name
                switch options {
                case .ivfInt8(let options):
                    let report = try IVFIndexBuilder.build(sketches, in: store, name: name, options: options)
                    return ShardReport(shard: shard, shardIndex: index, rank: collective.rank, host: collective.host,
                                       seconds: FanOutQuery.seconds(since: shardStart), kind: "ivf-int8", rows: report.rows,
                                       lists: report.lists, report: report, partReport: nil)
                case .ivfRQ4(let options):
                    let report = try PartIndexBuilder.build(sketches, in: store, name: name, options: options)
                    return ShardReport(shard: shard, shardIndex: index, rank: collective.rank, host: collective.host,
                                       seconds: FanOutQuery.seconds(since: shardStart), kind: report.kind, rows: report.rows,
                                       lists: report.lists, report: nil, partReport: report)
                }
            }
        }
        if case .failure(let error) = built { try collective.throwIfAnyFailed(error) }
        try collective.throwIfAnyFailed(nil)
        let wall = FanOutQuery.seconds(since: started)
        let reports = try collective.allGather(value: try built.get()).flatMap { $0 }.sorted { $0.shardIndex < $1.shardIndex }
        return Result(shards: reports, wallSeconds: wall)
    }
}
