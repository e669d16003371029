import Foundation
import GradSketchInterchange
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Exact search against a naive Double reference built from the inputs themselves.
@Suite struct ExactSearchTests {
    /// A float16 store of three segments with deletions and exact duplicate rows (ties),
    /// and the surviving rows as the reference sees them (float16-rounded, in set order).
    static func makeStore(_ scratch: TemporaryDirectory, k: Int) throws -> (Store, [(id: String, row: [Float])]) {
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 99)
        var reference: [(id: String, row: [Float])] = []
        for segment in 0..<3 {
            let n = 700 + 300 * segment
            var rows = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            // Rows 10 and 11 of each segment equal row 5: ties that only position can order.
            for copy in [10, 11] { for j in 0..<k { rows[copy * k + j] = rows[5 * k + j] } }
            let ids = (0..<n).map { "s\(segment)-\($0)" }
            try rows.withUnsafeBytes { bytes in
                try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k),
                                 annotations: RowAnnotations(ids: ids), options: SketchSetOptions(dtype: .float16))
            }
            reference += (0..<n).map { (ids[$0], rows[($0 * k)..<(($0 + 1) * k)].map { Float(Float16($0)) }) }
        }
        let doomed = ["s0-3", "s1-500", "s2-0", "s2-1299", "s1-5"]
        try store.delete(ids: doomed, from: "g")
        reference.removeAll { doomed.contains($0.id) }
        return (store, reference)
    }

    /// Naive top-k: Double scores, best first, ties by position.
    static func naive(_ reference: [(id: String, row: [Float])], _ query: [Float], k: Int, cosine: Bool, smallest: Bool) -> [String] {
        let qNorm = query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let scored = reference.enumerated().map { position, item -> (Double, Int) in
            var dot = 0.0, norm = 0.0
            for j in query.indices { dot += Double(item.row[j]) * Double(query[j]); norm += Double(item.row[j]) * Double(item.row[j]) }
            let score = cosine ? dot / (norm.squareRoot() * qNorm) : dot
            return (smallest ? -score : score, position)
        }
        return scored.sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }.prefix(k).map { reference[$0.1].id }
    }

    @Test(arguments: [(SearchMetric.innerProduct, false), (.innerProduct, true), (.cosine, false)])
    func singleAndBatchedQueriesMatchTheReference(metric: SearchMetric, smallest: Bool) throws {
        let scratch = try TemporaryDirectory()
        let k = 40
        let (store, reference) = try Self.makeStore(scratch, k: k)
        let set = try store.sketchSet("g")
        var generator = SplitMix64(seed: 5)
        let queries = (0..<(4 * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        let batched = try ExactSearch.search(set, queries: queries, count: 4, metric: metric, k: 15, smallest: smallest)
        for q in 0..<4 {
            let query = Array(queries[(q * k)..<((q + 1) * k)])
            let expected = Self.naive(reference, query, k: 15, cosine: metric == .cosine, smallest: smallest)
            let single = try ExactSearch.search(set, queries: query, count: 1, metric: metric, k: 15, smallest: smallest)[0]
            #expect(single.map(\.id) == expected, "query \(q) single")
            #expect(batched[q].map(\.id) == expected, "query \(q) batched")
            #expect(zip(single, batched[q]).allSatisfy { abs($0.score - $1.score) < 1e-4 })
        }
    }

    @Test func tiesAreOrderedByPositionAndAggregationsMatch() throws {
        let scratch = try TemporaryDirectory()
        let k = 24
        let (store, reference) = try Self.makeStore(scratch, k: k)
        let set = try store.sketchSet("g")
        // A query equal to a duplicated row: its copies tie at the top, first position first.
        let tied = reference.first { $0.id == "s1-10" }!.row
        let hits = try ExactSearch.search(set, queries: tied, count: 1, k: 2)[0]
        #expect(hits.map(\.id) == ["s1-10", "s1-11"])  // s1-5 itself was deleted
        #expect(hits[0].score == hits[1].score)

        var generator = SplitMix64(seed: 8)
        let queries = (0..<(5 * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        let groups = [0, 0, 1, 2, 2]
        func scores(_ row: [Float]) -> [Double] {
            (0..<5).map { q in (0..<k).reduce(0.0) { $0 + Double(row[$1]) * Double(queries[q * k + $1]) } }
        }
        let aggregations: [(QueryAggregation, ([Double]) -> Double)] = [
            (.mean, { $0.reduce(0, +) / 5 }),
            (.max, { $0.max()! }),
            (.groupMeanThenMax(groups: groups), { s in [(s[0] + s[1]) / 2, s[2], (s[3] + s[4]) / 2].max()! }),
        ]
        for (aggregation, combine) in aggregations {
            let expected = reference.enumerated().map { (combine(scores($0.element.row)), $0.offset) }
                .sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }.prefix(10).map { reference[$0.1].id }
            let got = try ExactSearch.search(set, queries: queries, count: 5, k: 10, aggregate: aggregation)
            #expect(got.count == 1)
            #expect(got[0].map(\.id) == expected, "\(aggregation)")
        }
    }

    @Test func badQueriesAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let (store, _) = try Self.makeStore(scratch, k: 8)
        let set = try store.sketchSet("g")
        let wrong = #expect(throws: StoreError.self) { _ = try ExactSearch.search(set, queries: [1, 2, 3], count: 1, k: 5) }
        #expect(wrong?.message.contains("queries must be [Q, 8]") == true)
        var nan = [Float](repeating: 1, count: 8)
        nan[3] = .nan
        let bad = #expect(throws: StoreError.self) { _ = try ExactSearch.search(set, queries: nan, count: 1, k: 5) }
        #expect(bad?.message.contains("non-finite value at column 3") == true)
        #expect(throws: StoreError.self) { _ = try ExactSearch.search(set, queries: [Float](repeating: 0, count: 8), count: 1, metric: .cosine, k: 5) }
        #expect(throws: StoreError.self) {
            _ = try ExactSearch.search(set, queries: [Float](repeating: 1, count: 16), count: 2, k: 5, aggregate: .groupMeanThenMax(groups: [0]))
        }
    }
}

/// Σ_c w_c ⟨g_c, q_c⟩ across sets of the same documents stored in different orders.
@Suite struct MultiCheckpointTests {
    @Test func weightedSumsAcrossCheckpointsMatchTheReference() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 3)
        let (n, k) = (500, 16)
        let ids = (0..<n).map { "doc\($0)" }
        var stored: [[Float]] = []
        for checkpoint in 0..<2 {
            let rows = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            stored.append(rows)
            // The second checkpoint's set stores the documents in reverse order.
            let order = checkpoint == 0 ? Array(0..<n) : Array((0..<n).reversed())
            let arranged = order.flatMap { rows[($0 * k)..<(($0 + 1) * k)] }
            try arranged.withUnsafeBytes { bytes in
                try store.append(to: "c\(checkpoint)", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k),
                                 annotations: RowAnnotations(ids: order.map { ids[$0] }))
            }
        }
        let queries = (0..<2).map { _ in (0..<k).map { _ in Float.random(in: -1...1, using: &generator) } }
        let weights: [Float] = [0.3, 1.7]
        let hits = try ExactSearch.searchAcrossCheckpoints(
            [(try store.sketchSet("c0"), queries[0], weights[0]), (try store.sketchSet("c1"), queries[1], weights[1])], k: 7)
        var totals: [(score: Double, doc: Int)] = []
        for doc in 0..<n {
            var sum: Double = 0
            for c in 0..<2 {
                let weight = Double(weights[c])
                for j in 0..<k {
                    let value = Double(stored[c][doc * k + j])
                    let query = Double(queries[c][j])
                    sum += weight * value * query
                }
            }
            totals.append((sum, doc))
        }
        totals.sort { $0.score != $1.score ? $0.score > $1.score : $0.doc < $1.doc }
        let naive = totals.prefix(7).map { ($0.score, $0.doc) }
        #expect(hits.map(\.id) == naive.map { ids[$0.1] })
        #expect(zip(hits, naive).allSatisfy { abs(Double($0.score) - $1.0) < 1e-4 })
        try store.delete(ids: ["doc3"], from: "c1")
        #expect(throws: StoreError.self) {
            _ = try ExactSearch.searchAcrossCheckpoints([(try store.sketchSet("c0"), queries[0], 1), (try store.sketchSet("c1"), queries[1], 1)], k: 3)
        }
    }
}
