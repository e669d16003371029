import Foundation
import GradSketch
import GradSketchDistributed
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport

/// Small sharded data with ties on purpose: rows of small integers (every inner product exact
/// in float32, many equal), some rows copied into segments of other shards under new ids,
/// and deleted rows. The same rows are also written, in shard order, to one "whole" store:
/// its live order is the (shard, segment, row) order of the shards, so one-process answers
/// over it are the oracle of the distributed ones.
final class ShardedFixture: Sendable {
    static let k = 8
    static let set = "g"
    let directory: TemporaryDirectory
    /// Segments of each shard: rows (row-major float32) and ids.
    let shardSegments: [[(rows: [Float], ids: [String])]]
    /// Ids deleted (in whichever shard holds them).
    let deleted: Set<String>
    let shardPaths: [String]
    let wholePath: String

    init(shards: Int = 3, segmentsPerShard: Int = 3, seed: UInt64 = 7) throws {
        directory = try TemporaryDirectory()
        var random = SplitMix64(seed: seed)
        var segments: [[(rows: [Float], ids: [String])]] = []
        var firstRows: [[Float]] = []
        var serial = 0
        for shard in 0..<shards {
            var mine: [(rows: [Float], ids: [String])] = []
            for _ in 0..<segmentsPerShard {
                let count = 4 + random.next(below: 12)
                var rows: [Float] = []
                var ids: [String] = []
                for row in 0..<count {
                    var values = (0..<Self.k).map { _ in Float(random.next(below: 7)) - 3 }
                    // Every third row of a later shard repeats a row of shard 0: equal scores in other shards.
                    if shard > 0, row % 3 == 0, !firstRows.isEmpty { values = firstRows[random.next(below: firstRows.count)] }
                    if values.allSatisfy({ $0 == 0 }) { values[0] = 1 }
                    if shard == 0 { firstRows.append(values) }
                    rows += values
                    ids.append("r\(serial)")
                    serial += 1
                }
                mine.append((rows, ids))
            }
            segments.append(mine)
        }
        shardSegments = segments
        // A few deletions, in two shards.
        deleted = [segments[0][segmentsPerShard - 1].ids[0], segments[shards - 1][0].ids[1]]
        wholePath = directory.path + "/whole"
        let base = directory.path
        let paths = (0..<shards).map { base + "/shard\($0)" }
        shardPaths = paths
        let whole = try GradSketch.Store.create(at: base + "/whole")
        let removed = deleted
        for (shard, path) in paths.enumerated() {
            let store = try GradSketch.Store.create(at: path)
            for segment in segments[shard] {
                for target in [store, whole] {
                    try target.transaction { transaction in
                        try segment.rows.withUnsafeBytes { bytes in
                            try transaction.append(to: Self.set, rows: try GradSketchStore.RowInput(bytes: bytes, elementType: .float32, rowCount: segment.ids.count, k: Self.k),
                                                   annotations: GradSketchStore.RowAnnotations(ids: segment.ids, labels: segment.ids.map { "label-" + $0 }))
                        }
                    }
                }
            }
            let gone = segments[shard].flatMap(\.ids).filter { removed.contains($0) }
            if !gone.isEmpty {
                try store.transaction { try $0.delete(ids: gone, from: Self.set) }
                try whole.transaction { try $0.delete(ids: gone, from: Self.set) }
            }
        }
    }

    /// The layout of the shards, shard i on `hosts?[i]` (nil: every host).
    func layout(hosts: [String?]? = nil) -> ShardLayout {
        ShardLayout(shards: shardPaths.enumerated().map { index, path in
            ShardLayout.Shard(name: "shard\(index)", host: hosts?[index], path: path)
        })
    }

    /// Every live row as (shard, segment, row, id, values), in (shard, segment, row) order.
    var liveRows: [(shard: Int, segment: Int, row: Int, id: String, values: [Float])] {
        var result: [(shard: Int, segment: Int, row: Int, id: String, values: [Float])] = []
        for (shard, segments) in shardSegments.enumerated() {
            for (segment, data) in segments.enumerated() {
                for (row, id) in data.ids.enumerated() where !deleted.contains(id) {
                    result.append((shard, segment, row, id, Array(data.rows[(row * Self.k)..<((row + 1) * Self.k)])))
                }
            }
        }
        return result
    }
}

/// Every rank's value, or the first rank's error.
func allRanks<T: Sendable>(_ results: [Result<T, any Error>]) throws -> [T] {
    try results.map { try $0.get() }
}
