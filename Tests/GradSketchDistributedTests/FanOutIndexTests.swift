import Foundation
import GradSketch
import GradSketchDistributed
import GradSketchInterchange
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Three shards of random float rows (no ties): shard 0 has an ivf-int8 index "ip" and a
/// segment appended after the build (uncovered), shard 1 an ivf-rq4 index "ip", shard 2 an
/// ivf-int8 index "other" only when `indexEveryShard`, else no index at all.
final class IndexedShards: Sendable {
    static let k = 16
    static let set = "g"
    let directory: TemporaryDirectory
    let paths: [String]

    init(indexEveryShard: Bool) throws {
        let scratch = try TemporaryDirectory()
        directory = scratch
        var random = SplitMix64(seed: 23)
        paths = (0..<3).map { scratch.path + "/shard\($0)" }
        for (shard, path) in paths.enumerated() {
            let store = try GradSketch.Store.create(at: path)
            for segment in 0..<2 { try Self.append(store, rows: 60, tag: "s\(shard)g\(segment)", random: &random) }
            let engine = try GradSketchStore.Store(opening: path)
            switch shard {
            case 0:
                var options = IVFBuildOptions()
                options.lists = 4
                options.iterations = 5
                _ = try IVFIndexBuilder.build(try engine.sketchSet(Self.set), in: engine, name: "ip", options: options)
                try Self.append(store, rows: 25, tag: "s0late", random: &random)
            case 1:
                var options = PartIndexOptions()
                options.lists = 4
                options.groups = 2
                options.iterations = 5
                options.tuningQueries = 20
                _ = try PartIndexBuilder.build(try engine.sketchSet(Self.set), in: engine, name: "ip", options: options)
            default:
                if indexEveryShard {
                    var options = IVFBuildOptions()
                    options.lists = 4
                    options.iterations = 5
                    _ = try IVFIndexBuilder.build(try engine.sketchSet(Self.set), in: engine, name: "other", options: options)
                }
            }
        }
    }

    static func append(_ store: GradSketch.Store, rows: Int, tag: String, random: inout SplitMix64) throws {
        let values = (0..<(rows * k)).map { _ in Float(random.nextUnit() * 2 - 1) }
        let ids = (0..<rows).map { "\(tag)-\($0)" }
        try store.transaction { transaction in
            try values.withUnsafeBytes { bytes in
                try transaction.append(to: set, rows: try GradSketchStore.RowInput(bytes: bytes, elementType: .float32, rowCount: rows, k: k),
                                       annotations: GradSketchStore.RowAnnotations(ids: ids))
            }
        }
    }

    var layout: ShardLayout {
        ShardLayout(shards: paths.enumerated().map { ShardLayout.Shard(name: "shard\($0)", host: nil, path: $1) })
    }

    /// The oracle: each shard searched alone by the one-store query with the same options,
    /// the lists merged by score (descending), then shard, segment, row.
    func oneStoreMerge(queries: [Float], count: Int, k: Int, index: FanOutQuery.IndexRequest) throws -> [[(id: String, score: Float)]] {
        var all = [[(shard: Int, hit: QueryHit)]](repeating: [], count: count)
        for (shard, path) in paths.enumerated() {
            let snapshot = try Snapshot(store: try GradSketch.Store(opening: path), version: nil)
            var request = QueryRequest(set: Self.set, input: .vectors(queries, count: count))
            request.k = k
            request.index = index.name.map { .named($0) } ?? .auto
            let unindexed = try snapshot.sketchSet(Self.set).indexes.isEmpty
            if shard == 2 && index.name == nil && unindexed {
                request.index = .exact
            } else {
                request.probe = index.nprobe.map { .nprobe($0) } ?? .tuned
                request.rerank = index.rerank
            }
            for (query, list) in try snapshot.query(request).hits.enumerated() { all[query] += list.map { (shard, $0) } }
        }
        return all.map { list in
            list.sorted { a, b in
                if a.hit.score != b.hit.score { return a.hit.score > b.hit.score }
                return (a.shard, a.hit.address.segment, a.hit.address.row) < (b.shard, b.hit.address.segment, b.hit.address.row)
            }.prefix(k).map { ($0.hit.id, $0.hit.score) }
        }
    }
}

@Suite struct FanOutIndexTests {
    static func queries(_ count: Int) -> [Float] {
        var random = SplitMix64(seed: 99)
        return (0..<(count * IndexedShards.k)).map { _ in Float(random.nextUnit() * 2 - 1) }
    }

    static func fanOut(_ request: FanOutQuery.Request, layout: ShardLayout, ranks: Int) throws -> FanOutQuery.Result {
        let results = try allRanks(ThreadCollective.run(size: ranks) { group in try FanOutQuery.run(request, on: layout, collective: group) })
        #expect(results.allSatisfy { $0.hits == results[0].hits && $0.shardSearches == results[0].shardSearches },
                "ranks of a group of \(ranks) disagree")
        return results[0]
    }

    @Test func everyRankCountGivesTheMergedOneStoreAnswersAndSaysHowEachShardWasSearched() throws {
        let shards = try IndexedShards(indexEveryShard: false)
        var request = FanOutQuery.Request(set: IndexedShards.set, queries: Self.queries(3), count: 3)
        request.k = 7
        let index = FanOutQuery.IndexRequest(nprobe: 1, rerank: 8)
        request.index = index
        let expected = try shards.oneStoreMerge(queries: request.queries, count: 3, k: 7, index: index)
        var answers: [[[FanOutQuery.Hit]]] = []
        for ranks in 1...4 {
            let result = try Self.fanOut(request, layout: shards.layout, ranks: ranks)
            for (query, list) in result.hits.enumerated() {
                #expect(list.map(\.id) == expected[query].map(\.id), "\(ranks) ranks, query \(query)")
                #expect(list.map(\.score) == expected[query].map(\.score))
            }
            let searches = try #require(result.shardSearches)
            #expect(searches.map(\.shardIndex) == [0, 1, 2])
            // Shard i by serving rank i mod m: with every rank serving every shard, rank i mod ranks.
            #expect(searches.map(\.rank) == [0, 1 % ranks, 2 % ranks])
            #expect(searches[0].kind == "ivf-int8" && searches[0].nprobe == 1 && searches[0].exactRows == 25 && searches[0].indexedRows == 120)
            #expect(searches[1].kind == "ivf-rq4" && searches[1].nprobe == 1 && searches[1].exactRows == 0 && !searches[1].exact)
            #expect(searches[2].exact && searches[2].index == nil && (searches[2].note ?? "").contains("no index"))
            answers.append(result.hits)
        }
        #expect(answers.allSatisfy { $0 == answers[0] })
    }

    @Test func everyListProbedAndEveryRowReRankedIsTheExactFanOut() throws {
        let shards = try IndexedShards(indexEveryShard: false)
        var request = FanOutQuery.Request(set: IndexedShards.set, queries: Self.queries(4), count: 4)
        request.k = 10
        let exact = try Self.fanOut(request, layout: shards.layout, ranks: 2)
        #expect(exact.shardSearches == nil)
        request.index = FanOutQuery.IndexRequest(nprobe: 4, rerank: 1000)
        let indexed = try Self.fanOut(request, layout: shards.layout, ranks: 3)
        // Recall 1.0 exactly: the same rows in the same order (re-ranked scores may differ from
        // the scan's in the last bits, as on one store).
        #expect(indexed.hits.map { $0.map(\.id) } == exact.hits.map { $0.map(\.id) })
        for (a, b) in zip(indexed.hits.joined(), exact.hits.joined()) { #expect(abs(a.score - b.score) <= 1e-5) }
        // A bound that can fail: one list of four and little re-ranking misses some of the exact top 10.
        request.index = FanOutQuery.IndexRequest(nprobe: 1, rerank: 1)
        let rough = try Self.fanOut(request, layout: shards.layout, ranks: 2)
        let found = zip(rough.hits, exact.hits).map { Set($0.map(\.id)).intersection($1.map(\.id)).count }.reduce(0, +)
        #expect(found < 40)
    }

    @Test func aShardWithoutTheNamedIndexIsAnErrorOnEveryRankNamingTheShard() throws {
        let shards = try IndexedShards(indexEveryShard: true)
        var request = FanOutQuery.Request(set: IndexedShards.set, queries: Self.queries(1), count: 1)
        request.index = FanOutQuery.IndexRequest(name: "ip")
        let results = ThreadCollective.run(size: 2) { [request] group in try FanOutQuery.run(request, on: shards.layout, collective: group) }
        for result in results {
            #expect(throws: AgreedError.self) { try result.get() }
            if case .failure(let error) = result {
                #expect("\(error)".contains("shard2") && "\(error)".contains("no index \"ip\""))
            }
        }
        // Named "other" there and "ip" elsewhere: only the auto rule picks each shard's own index.
        request.index = FanOutQuery.IndexRequest(nprobe: 4, rerank: 1000)
        let auto = try Self.fanOut(request, layout: shards.layout, ranks: 2)
        #expect(try #require(auto.shardSearches).map(\.index) == ["ip", "ip", "other"])
    }
}

@Suite struct ShardedIndexBuildKindTests {
    @Test func ivfRQ4IsBuiltInEveryShardSpreadOverRanksAndAnswersTheIndexedFanOut() throws {
        let shards = try IndexedShards(indexEveryShard: false)
        var options = PartIndexOptions()
        options.lists = 4
        options.groups = 2
        options.iterations = 5
        options.tuningQueries = 20
        let built = try allRanks(ThreadCollective.run(size: 2) { [options] group in
            try ShardedIndexBuild.run(set: IndexedShards.set, name: "rq2", options: .ivfRQ4(options), on: shards.layout, collective: group).shards
        })
        let reports = built[0]
        #expect(reports.map(\.kind) == ["ivf-rq4", "ivf-rq4", "ivf-rq4"])
        #expect(reports.map(\.rank) == [0, 1, 0])
        #expect(reports.map(\.rows) == [145, 120, 120])
        #expect(reports.allSatisfy { $0.partReport?.lists == 4 && $0.report == nil })
        var request = FanOutQuery.Request(set: IndexedShards.set, queries: FanOutIndexTests.queries(2), count: 2)
        let exact = try FanOutIndexTests.fanOut(request, layout: shards.layout, ranks: 2)
        request.index = FanOutQuery.IndexRequest(name: "rq2", nprobe: 4, rerank: 1000)
        let indexed = try FanOutIndexTests.fanOut(request, layout: shards.layout, ranks: 2)
        #expect(try #require(indexed.shardSearches).map(\.kind) == ["ivf-rq4", "ivf-rq4", "ivf-rq4"])
        #expect(indexed.hits.map { $0.map(\.id) } == exact.hits.map { $0.map(\.id) })
    }
}
