import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchProjection
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Queries and selections whose input is a stored weight delta, against the delta projected
/// by hand: Σ_p P_p vec(Δ_p) with each P_p the explicit dense Rademacher matrix of its stream
/// (the Projection module's naive path), summed in binary64.
@Suite struct SnapshotDeltaTests {
    static let k = 16
    static let definition = ProjectionDefinition(seed: 1234, kind: .rademacher, kDense: k, layout: [
        .init(name: "w1", shape: [3, 5]), .init(name: "w2", shape: [7]),
    ])

    static func storeWithDelta() throws -> (KnownRowsStore, base: [String: [Float]], tuned: [String: [Float]]) {
        let store = try KnownRowsStore(k: k)
        let json = try JSONEncoder().encode(definition)
        let projection = try JSONDecoder().decode(JSONValue.self, from: json)
        try store.append(randomRows(90, k: k, seed: 51), prefix: "r", attributes: ["projection": projection])
        let base = ["w1": randomRows(3, k: 5, seed: 52), "w2": randomRows(1, k: 7, seed: 53)]
        let tuned = ["w1": randomRows(3, k: 5, seed: 54), "w2": randomRows(1, k: 7, seed: 55)]
        for (name, tensors) in [("base", base), ("tuned", tuned)] {
            let w1 = tensors["w1"]!, w2 = tensors["w2"]!
            try w1.withUnsafeBytes { one in
                try w2.withUnsafeBytes { two in
                    _ = try store.engine.putTensors(name, [
                        try TensorInput(name: "w1", elementType: .float32, shape: [3, 5], bytes: one),
                        try TensorInput(name: "w2", elementType: .float32, shape: [7], bytes: two),
                    ])
                }
            }
        }
        try store.engine.recordDelta("d", from: "base", to: "tuned")
        return (store, base, tuned)
    }

    /// P(tuned − base), or its negation, by explicit matrices.
    static func projectedByHand(base: [String: [Float]], tuned: [String: [Float]], negate: Bool) -> [Float] {
        var total = [Double](repeating: 0, count: k)
        for parameter in definition.layout {
            let d = parameter.shape.reduce(1, *)
            let matrix = DenseRademacher.matrix(ProjectionStream(seed: definition.seed, name: parameter.name), k: k, d: d)
            let delta = (0..<d).map { Double(tuned[parameter.name]![$0] - base[parameter.name]![$0]) }
            for r in 0..<k {
                for j in 0..<d { total[r] += Double(matrix[r * d + j]) * delta[j] }
            }
        }
        return total.map { Float(negate ? -$0 : $0) }
    }

    @Test(arguments: [false, true])
    func deltaQueriesEqualTheDeltaProjectedByHand(negate: Bool) throws {
        let (store, base, tuned) = try Self.storeWithDelta()
        let snapshot = try store.snapshot()
        let query = Self.projectedByHand(base: base, tuned: tuned, negate: negate)
        for metric in [SearchMetricName.innerProduct, .cosine] {
            var request = QueryRequest(set: "s", input: .delta(tensorSet: "d", negate: negate))
            request.metric = metric
            request.k = 9
            let result = try snapshot.query(request)
            let expected = oracleTopK(store, query: query, metric: metric, k: 9)
            #expect(result.hits[0].map(\.id) == expected.map(\.id))
            for (hit, truth) in zip(result.hits[0], expected) {
                #expect(abs(Double(hit.score) - truth.score) <= 1e-4 * max(1, abs(truth.score)))
            }
        }
    }

    @Test func selectionsAgainstADeltaEqualSelectionsAgainstTheHandProjection() throws {
        let (store, base, tuned) = try Self.storeWithDelta()
        let snapshot = try store.snapshot()
        let query = Self.projectedByHand(base: base, tuned: tuned, negate: true)
        // top-k: the rows of largest cosine (oracle: binary64 cosines).
        let top = try snapshot.select(SelectionRequest(set: "s", target: .delta(tensorSet: "d", negate: true), method: .topK, count: 7))
        let expected = oracleTopK(store, query: query, metric: .cosine, k: 7)
        #expect(top.ids == expected.map(\.id))
        #expect(top.addresses == expected.map { store.addresses[$0.id]! })
        for (score, truth) in zip(top.scores, expected) { #expect(abs(score - truth.score) <= 1e-5) }
        // greedy against the delta picks what greedy against the hand projection picks.
        let byDelta = try snapshot.select(SelectionRequest(set: "s", target: .delta(tensorSet: "d", negate: true), method: .greedy, count: 6))
        let byVector = try snapshot.select(SelectionRequest(set: "s", target: .vector(query), method: .greedy, count: 6))
        #expect(byDelta.ids == byVector.ids)
        #expect(byDelta.ids == Self.greedyOracle(store, query: query, count: 6))
    }

    /// SELECT greedy by definition: each pick maximises cos(S + s_i, q), S the sum so far,
    /// ties to the earlier row; binary64.
    static func greedyOracle(_ store: KnownRowsStore, query: [Float], count: Int, resetEvery: Int = 0) -> [String] {
        var sum = [Double](repeating: 0, count: k)
        var picked: [String] = []
        let queryNorm = query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        for pick in 0..<count {
            if resetEvery > 0 && pick % resetEvery == 0 { sum = [Double](repeating: 0, count: k) }
            var best: (id: String, score: Double)?
            for id in store.liveIDs where !picked.contains(id) {
                let row = store.rows[id]!
                var dot = 0.0, norm = 0.0
                for j in 0..<k {
                    let value = sum[j] + Double(row[j])
                    dot += value * Double(query[j])
                    norm += value * value
                }
                let score = norm == 0 ? 0 : dot / (norm.squareRoot() * queryNorm)
                if best == nil || score > best!.score { best = (id, score) }
            }
            picked.append(best!.id)
            for j in 0..<k { sum[j] += Double(store.rows[best!.id]![j]) }
        }
        return picked
    }

    @Test func greedyBatchedResetsTheRunningSumAndBadCountsAreRefused() throws {
        let (store, _, _) = try Self.storeWithDelta()
        let snapshot = try store.snapshot()
        let query = randomRows(1, k: Self.k, seed: 61)
        let batched = try snapshot.select(SelectionRequest(set: "s", target: .vector(query), method: .greedyBatched(batch: 3), count: 8))
        #expect(batched.ids == Self.greedyOracle(store, query: query, count: 8, resetEvery: 3))
        #expect(batched.addresses == batched.ids.map { store.addresses[$0]! })
        for count in [0, 91] {
            #expect(throws: StoreError.self) {
                try snapshot.select(SelectionRequest(set: "s", target: .vector(query), method: .topK, count: count))
            }
        }
        #expect(throws: StoreError.self) {
            try snapshot.select(SelectionRequest(set: "s", target: .vector([1, 2]), method: .greedy, count: 2))
        }
    }

    @Test func aDeltaNeedsTheSetsProjection() throws {
        let store = try KnownRowsStore(k: 4)
        try store.append(randomRows(5, k: 4, seed: 1), prefix: "p")
        let snapshot = try store.snapshot()
        #expect {
            try snapshot.query(QueryRequest(set: "s", input: .delta(tensorSet: "d", negate: false)))
        } throws: { error in
            (error as? StoreError)?.message.contains("records no projection") == true
        }
    }
}
