import Foundation
import GradSketch
import GradSketchDistributed
import GradSketchInterchange
import GradSketchSearch
import GradSketchSelect
import GradSketchStore
import GradSketchTestSupport
import Testing

@Suite struct WorkAssignmentTests {
    @Test func splitsSegmentsIntoContiguousRangesOfAboutEqualRows() {
        #expect(WorkAssignment.split(rows: [5, 5, 5, 5], parts: 2) == [0..<2, 2..<4])
        #expect(WorkAssignment.split(rows: [10, 1, 1, 1, 1], parts: 2) == [0..<1, 1..<5])
        #expect(WorkAssignment.split(rows: [3], parts: 3) == [0..<1, 1..<1, 1..<1])
        #expect(WorkAssignment.split(rows: [], parts: 2) == [0..<0, 0..<0])
    }

    @Test func aShardNoRankCanReachIsAnErrorOnEveryRankNamingItAndItsHost() throws {
        let fixture = try ShardedFixture(shards: 2, segmentsPerShard: 1)
        let layout = fixture.layout(hosts: ["a", "elsewhere"])
        let results = ThreadCollective.run(hosts: ["a", "a"]) { group in
            try FanOutQuery.run(FanOutQuery.Request(set: ShardedFixture.set, queries: [Float](repeating: 1, count: ShardedFixture.k), count: 1),
                                on: layout, collective: group)
        }
        for result in results {
            #expect(throws: AgreedError.self) { try result.get() }
            if case .failure(let error) = result {
                #expect("\(error)".contains("shard1"))
                #expect("\(error)".contains("elsewhere"))
            }
        }
    }
}

@Suite struct FanOutQueryTests {
    /// The oracle: binary64 scores over every live row, ordered by score, then shard, segment, row.
    static func oracle(_ fixture: ShardedFixture, query: [Float], k: Int, smallest: Bool) -> [(id: String, score: Double)] {
        let scored = fixture.liveRows.map { row in
            (row, zip(row.values, query).reduce(0.0) { $0 + Double($1.0) * Double($1.1) })
        }
        let ordered = scored.sorted { a, b in
            if a.1 != b.1 { return smallest ? a.1 < b.1 : a.1 > b.1 }
            return (a.0.shard, a.0.segment, a.0.row) < (b.0.shard, b.0.segment, b.0.row)
        }
        return ordered.prefix(k).map { ($0.0.id, $0.1) }
    }

    @Test(arguments: [false, true])
    func everyRankCountGivesTheOracleAnswerWithTiesInOrder(smallest: Bool) throws {
        let fixture = try ShardedFixture()
        let layout = fixture.layout()
        let query: [Float] = [1, -2, 0, 3, 1, 0, -1, 2]
        var request = FanOutQuery.Request(set: ShardedFixture.set, queries: query, count: 1)
        request.k = 12
        request.smallest = smallest
        let expected = Self.oracle(fixture, query: query, k: 12, smallest: smallest)
        // Small integers: the oracle's scores repeat (ties across shards) and float32 holds them exactly.
        #expect(Set(expected.map(\.score)).count < expected.count)
        var answers: [[FanOutQuery.Hit]] = []
        for size in 1...4 {
            let results = try allRanks(ThreadCollective.run(size: size) { [request] group in
                try FanOutQuery.run(request, on: layout, collective: group).hits
            })
            #expect(results.allSatisfy { $0 == results[0] }, "ranks of a group of \(size) disagree")
            let hits = results[0][0]
            #expect(hits.map(\.id) == expected.map(\.id), "\(size) ranks")
            #expect(hits.map { Double($0.score) } == expected.map(\.score))
            #expect(hits.allSatisfy { $0.label == "label-" + $0.id })
            answers.append(results[0][0])
        }
        #expect(answers.allSatisfy { $0 == answers[0] })
    }

    @Test func shardsPlacedOnHostsGiveTheSameAnswerAsSharedShards() throws {
        let fixture = try ShardedFixture()
        var request = FanOutQuery.Request(set: ShardedFixture.set, queries: [2, 1, -1, 0, 0, 3, 1, -2], count: 1)
        request.k = 9
        let shared = try allRanks(ThreadCollective.run(size: 1) { [request] group in
            try FanOutQuery.run(request, on: fixture.layout(), collective: group).hits
        })[0]
        let placed = fixture.layout(hosts: ["h0", "h1", "h0"])
        let results = try allRanks(ThreadCollective.run(hosts: ["h1", "h0", "h0", "h1"]) { [request] group in
            try FanOutQuery.run(request, on: placed, collective: group).hits
        })
        #expect(results.allSatisfy { $0 == shared })
    }

    @Test func cosineAndSeveralQueriesAgreeAcrossRankCountsAndWithTheOracle() throws {
        let fixture = try ShardedFixture()
        let queries: [Float] = [1, 0, 0, 2, -1, 0, 1, 1, /* second */ 0, 3, -1, 1, 0, 0, 2, -2]
        var request = FanOutQuery.Request(set: ShardedFixture.set, queries: queries, count: 2)
        request.metric = .cosine
        request.k = 6
        var first: [[FanOutQuery.Hit]]?
        for size in [1, 3] {
            let hits = try allRanks(ThreadCollective.run(size: size) { [request] group in
                try FanOutQuery.run(request, on: fixture.layout(), collective: group).hits
            })[0]
            if let first { #expect(hits == first) } else { first = hits }
            for q in 0..<2 {
                let query = Array(queries[(q * 8)..<((q + 1) * 8)])
                let norm = query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                let cosines = fixture.liveRows.map { row -> Double in
                    let dot = zip(row.values, query).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                    return dot / norm / row.values.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                }.sorted(by: >)
                // Binary32 cosine within (k + 4)·2⁻²³ of binary64 (CosineScore's bound).
                for (hit, expected) in zip(hits[q], cosines.prefix(6)) { #expect(abs(Double(hit.score) - expected) <= 12 * 0x1p-23) }
            }
        }
    }
}

@Suite struct DistributedGreedyTests {
    @Test(arguments: [0, 3])
    func picksAndScoresEqualOneProcessGreedyOverTheConcatenatedRows(resetEvery: Int) throws {
        let fixture = try ShardedFixture()
        let query: [Float] = [0.5, -1, 2, 0.25, 1, -0.5, 0, 1.5]
        let whole = try GradSketchStore.Store(opening: fixture.wholePath).sketchSet(ShardedFixture.set)
        let oracle = try Select.run(whole, query: query, count: 10, strategy: resetEvery > 0 ? .greedyBatched : .greedy,
                                    batchSize: resetEvery)
        for size in 1...4 {
            let results = try allRanks(ThreadCollective.run(size: size) { group in
                try DistributedGreedy.run(set: ShardedFixture.set, query: query, count: 10, resetEvery: resetEvery,
                                          on: fixture.layout(), collective: group).picks
            })
            #expect(results.allSatisfy { $0 == results[0] })
            #expect(results[0].map(\.id) == oracle.ids, "\(size) ranks")
            // Same per-row values and the same order of every sum: the same bits.
            #expect(results[0].map(\.score) == oracle.scores)
        }
    }
}

@Suite struct DistributedDensityTests {
    /// The definition, naively: binary64 projections, counts, scores, keys from rowUniform.
    static func naive(_ fixture: ShardedFixture, count: Int, options: DensitySampling.Options) -> [(id: String, score: Double)] {
        let k = ShardedFixture.k, hashes = options.hashes
        var generator = SeededRandom(seed: options.seed)
        var directions = [Float](repeating: 0, count: k * hashes)
        for index in directions.indices { directions[index] = Float(DensitySampling.gaussian(&generator)) }
        let offsets = (0..<hashes).map { _ in generator.nextUnit() * options.width! }
        let rows = fixture.liveRows
        let buckets = rows.map { row in
            (0..<hashes).map { r -> Int in
                let projection = (0..<k).reduce(0.0) { $0 + Double(row.values[$1]) * Double(directions[$1 * hashes + r]) }
                let cell = Int(((projection + offsets[r]) / options.width!).rounded(.down))
                return ((cell % options.buckets) + options.buckets) % options.buckets
            }
        }
        var counts = [Int](repeating: 0, count: hashes * options.buckets)
        for row in buckets { for r in 0..<hashes { counts[r * options.buckets + row[r]] += 1 } }
        let scored = zip(rows, buckets).map { row, cells -> (key: Double, id: String, score: Double) in
            let score = Double((0..<hashes).reduce(0) { $0 + counts[$1 * options.buckets + cells[$1]] }) / Double(hashes)
            let u = DistributedDensity.rowUniform(seed: options.seed &+ 0x5EED, shard: row.shard, segment: row.segment, row: row.row)
            return (log(u) * score, row.id, score)
        }
        return scored.sorted { $0.key > $1.key }.prefix(count).map { ($0.id, $0.score) }
    }

    @Test func sampleIsTheSameForEveryRankCountAndMatchesTheNaiveDefinition() throws {
        let fixture = try ShardedFixture()
        var options = DensitySampling.Options()
        options.hashes = 16
        options.buckets = 64
        options.width = 3
        options.seed = 11
        let expected = Self.naive(fixture, count: 12, options: options)
        for size in 1...4 {
            let results = try allRanks(ThreadCollective.run(size: size) { [options] group in
                try DistributedDensity.run(set: ShardedFixture.set, count: 12, options: options, on: fixture.layout(), collective: group).picks
            })
            #expect(results.allSatisfy { $0 == results[0] })
            #expect(results[0].map(\.id) == expected.map(\.id), "\(size) ranks")
            #expect(results[0].map(\.score) == expected.map(\.score))
        }
    }

    @Test func sampledWidthIsTheMedianNearestDistanceForEveryRankCount() throws {
        let fixture = try ShardedFixture()
        // Fewer than 1000 rows: the sample is every row.
        let rows = fixture.liveRows.map(\.values)
        let nearest = rows.indices.map { i in
            rows.indices.filter { $0 != i }.map { j in
                zip(rows[i], rows[j]).reduce(0.0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) }
            }.min()!.squareRoot()
        }.sorted()
        let expected = nearest[nearest.count / 2]
        var options = DensitySampling.Options()
        options.hashes = 4
        options.buckets = 16
        for size in [1, 2, 4] {
            let widths = try allRanks(ThreadCollective.run(size: size) { [options] group in
                try DistributedDensity.run(set: ShardedFixture.set, count: 3, options: options, on: fixture.layout(), collective: group).width
            })
            #expect(widths.allSatisfy { $0 == expected }, "\(size) ranks: \(widths) vs \(expected)")
        }
    }
}

/// `DistributedDensity.rowUniform` pinned to values computed outside the code under test
/// (Spec/distributed.md §3.5), by this python3 (SplitMix64's published constants):
///
///     M = (1 << 64) - 1
///     def mix(z):
///         z = (z + 0x9E3779B97F4A7C15) & M
///         z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
///         z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
///         return z ^ (z >> 31)
///     def u(seed, shard, segment, row):
///         h = mix(seed)
///         for c in (shard, segment, row): h = mix(h ^ c)
///         return (h >> 11) + 1   # the numerator over 2**53
///     print(u(0, 0, 0, 0), u(42, 1, 2, 3), u(0xD15, 3, 0, 17))
///     # 1167743916529921 2242093438946049 1937657422429535
@Suite struct RowUniformTests {
    @Test(arguments: [
        (UInt64(0), 0, 0, 0, 1_167_743_916_529_921 as UInt64),
        (42, 1, 2, 3, 2_242_093_438_946_049),
        (0xD15, 3, 0, 17, 1_937_657_422_429_535),
    ])
    func matchesAnIndependentSplitMix64(seed: UInt64, shard: Int, segment: Int, row: Int, numerator: UInt64) {
        #expect(DistributedDensity.rowUniform(seed: seed, shard: shard, segment: segment, row: row)
            == Double(numerator) / Double(UInt64(1) << 53))
    }
}

/// A set created to allow non-finite rows, with one NaN row: the one-process density sampler
/// and the distributed one (whose width sample now carries float bits, so the NaN row crosses
/// the exchange) refuse it with the same clear error instead of trapping.
@Suite struct DensityNonfiniteTests {
    @Test func oneProcessAndEveryRankCountRefuseANaNRowWithTheSameError() throws {
        let scratch = try TemporaryDirectory()
        let k = 4
        let paths = [scratch.path + "/a", scratch.path + "/b"]
        for (shard, path) in paths.enumerated() {
            let store = try GradSketch.Store.create(at: path)
            var random = SplitMix64(seed: UInt64(shard) + 5)
            var values = (0..<(12 * k)).map { _ in Float(random.nextUnit() * 2 - 1) }
            if shard == 1 { values[5 * k + 2] = .nan }  // row 5 of shard 1's only segment
            let ids = (0..<12).map { "s\(shard)-\($0)" }
            try store.transaction { transaction in
                try values.withUnsafeBytes { bytes in
                    try transaction.append(to: "g", rows: try GradSketchStore.RowInput(bytes: bytes, elementType: .float32, rowCount: 12, k: k),
                                           annotations: GradSketchStore.RowAnnotations(ids: ids),
                                           options: GradSketchStore.SketchSetOptions(allowNonfinite: true))
                }
            }
        }
        let expected = "density sampling needs finite rows: set g has NaN or ±Inf in row 5 of segment 0"
        let engine = try GradSketchStore.Store(opening: paths[1])
        var options = DensitySampling.Options()
        options.hashes = 8
        options.buckets = 32
        let single = #expect(throws: StoreError.self) { _ = try DensitySampling.scores(try engine.sketchSet("g"), options: options) }
        #expect(single.map { "\($0)".contains(expected) } == true, "\(String(describing: single))")
        let layout = ShardLayout(shards: paths.enumerated().map { ShardLayout.Shard(name: "s\($0)", host: nil, path: $1) })
        for size in 1...2 {
            for result in ThreadCollective.run(size: size, { [options] group in
                try DistributedDensity.run(set: "g", count: 3, options: options, on: layout, collective: group)
            }) {
                let error = #expect(throws: AgreedError.self) { _ = try result.get() }
                #expect(error.map { "\($0)".contains(expected) } == true, "\(size) ranks: \(String(describing: error))")
            }
        }
    }
}
