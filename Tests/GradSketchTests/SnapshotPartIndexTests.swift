import GradSketch
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// `ivf-rq4` through the planner: auto picks it, `--index` names it, the plan shows its kind,
/// parts and group probe, and answers are exactly scored hits of the oracle's top-k.
@Suite struct SnapshotPartIndexTests {
    @Test func plannerRoutesQueriesThroughThePartitionedIndex() throws {
        let store = try KnownRowsStore(k: 24)
        try store.append(clusteredRows(1500, k: 24, clusters: 20, seed: 7), prefix: "a")
        try store.append(clusteredRows(500, k: 24, clusters: 20, seed: 8), prefix: "b")
        var options = PartIndexOptions()
        options.lists = 16
        options.groups = 4
        options.partRows = 1500
        options.iterations = 10
        _ = try PartIndexBuilder.build(try store.engine.sketchSet("s"), in: store.engine, name: "ip", options: options)
        try store.append(clusteredRows(50, k: 24, clusters: 20, seed: 9), prefix: "late")

        let snapshot = try store.snapshot()
        let queries = clusteredRows(10, k: 24, clusters: 20, seed: 10)
        var request = QueryRequest(set: "s", input: .vectors(queries, count: 10))
        request.probe = .nprobe(16)
        request.rerank = 5_000
        request.groupProbe = 2
        let plan = try snapshot.plan(request)
        #expect(!plan.exact && plan.index == "ip" && plan.kind == "ivf-rq4" && plan.parts == 2 && plan.groupProbe == 2)
        #expect(plan.indexedRows == 2000 && plan.exactRows == 50)
        #expect(plan.steps.contains { $0.contains("ivf-rq4") })
        let result = try snapshot.query(request)
        for q in 0..<10 {
            let query = Array(queries[(q * 24)..<((q + 1) * 24)])
            // Every list probed, every candidate re-ranked: the oracle's top-10 exactly.
            let expected = oracleTopK(store, query: query, metric: .innerProduct, k: 10)
            #expect(result.hits[q].map(\.id) == expected.map(\.id), "query \(q)")
            for (hit, want) in zip(result.hits[q], expected) {
                #expect(abs(Double(hit.score) - want.score) <= 1e-4 * max(1, abs(want.score)))
            }
        }
        request.groupProbe = 0
        #expect(throws: StoreError.self) { try snapshot.plan(request) }
    }
}
