import ArgumentParser
import Foundation
import GradSketchDistributed
import GradSketchInterchange
import GradSketchMPI
import GradSketchStore

/// What the distributed subcommands (query, select, index-build) share: the store's layout,
/// per-shard versions, query vectors read once and broadcast, agreed errors.

/// `--at`: one version for a plain store, or one per shard, comma-separated, for a sharded one.
func parseVersions(_ text: String?, layout: ShardLayout) throws -> [Int]? {
    guard let text else { return nil }
    let values = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil && $0! >= 0 }) else {
        throw ValidationError("--at must be a version number, or one per shard separated by commas, found \(text)")
    }
    guard values.count == layout.shards.count else {
        throw ValidationError("--at on a store of \(layout.shards.count) shards needs one version per shard (comma-separated), found \(values.count)")
    }
    return values.map { $0! }
}

/// The shards of `directory` (a sharded store's map, or a plain store as one shard).
func openLayout(_ directory: String) throws -> ShardLayout {
    try ShardLayout.open(directory: directory)
}

/// Runs `body` and turns a failure every rank shares (an ``AgreedError``) into the launcher's
/// ``AgreedFailure``, so each rank exits with a failure status without aborting the job.
func agreed<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as AgreedError {
        throw AgreedFailure(failedRanks: [], message: error.description)
    }
}

/// Query vectors as rank 0 read them, or its error.
struct BroadcastVectors: Codable { let values: [Float], count: Int, error: String? }

/// Query vectors `[count, width]` from a .npy file that rank 0 reads (other hosts need not
/// see the file), broadcast to every rank; a read error is every rank's error.
func broadcastVectors(_ path: String, allowMany: Bool, collective: some Collective) throws -> (values: [Float], count: Int) {
    var mine = BroadcastVectors(values: [], count: 0, error: nil)
    if collective.rank == 0 {
        do {
            let shape = try NumpyFile(path: path).shape
            guard let width = shape.last, shape.count == 1 || shape.count == 2 else {
                throw ValidationError("the query file \(path) must hold [k] or [Q, k] values, found shape \(shape)")
            }
            let read = try QueryInputs.readVectors(path, width: width, allowMany: allowMany, what: "query")
            mine = BroadcastVectors(values: read.values, count: read.count, error: nil)
        } catch {
            mine = BroadcastVectors(values: [], count: 0, error: "\(error)")
        }
    }
    let received = try collective.broadcast(value: mine, root: 0)
    if let error = received.error { throw AgreedFailure(failedRanks: [0], message: "rank 0: \(error)") }
    return (received.values, received.count)
}

/// Each shard as answers name it, with the version read.
struct ShardOutput: Encodable {
    let name: String
    let host: String?
    let version: Int
}

func shardOutputs(_ layout: ShardLayout, versions: [Int]) -> [ShardOutput] {
    zip(layout.shards, versions).map { ShardOutput(name: $0.name, host: $0.host, version: $1) }
}

/// One rank's statistics, printed with --stats (they differ between runs, so they are left
/// out of the default output, which is byte-identical for any number of ranks).
struct RankStatistics<S: Codable & Sendable>: Codable, Sendable {
    let rank: Int
    let host: String
    let statistics: S
}

func gatherStatistics<S: Codable & Sendable>(_ statistics: S, asked: Bool, collective: some Collective) throws -> [RankStatistics<S>]? {
    guard asked else { return nil }
    return try collective.allGather(value: RankStatistics(rank: collective.rank, host: collective.host, statistics: statistics))
}
