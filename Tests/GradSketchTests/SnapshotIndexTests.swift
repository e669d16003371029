import GradSketch
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// 3000 rows around 30 centres (k = 24) with an index per metric, built by the engine.
private func indexedStore(metrics: [SearchMetric] = [.innerProduct]) throws -> KnownRowsStore {
    let store = try KnownRowsStore(k: 24)
    try store.append(clusteredRows(3000, k: 24, clusters: 30, seed: 5), prefix: "r")
    for metric in metrics {
        var options = IVFBuildOptions()
        options.metric = metric
        options.seed = 3
        _ = try IVFIndexBuilder.build(try store.engine.sketchSet("s"), in: store.engine, name: metric.rawValue, options: options)
    }
    return store
}

private func recall(_ hits: [QueryHit], _ expected: [(id: String, score: Double)]) -> Double {
    Double(Set(hits.map(\.id)).intersection(expected.map(\.id)).count) / Double(expected.count)
}

@Suite struct SnapshotIndexTests {
    @Test(arguments: [SearchMetricName.innerProduct, .cosine])
    func indexedHitsAreExactlyScoredAndReachTheClaimedRecall(metric: SearchMetricName) throws {
        let store = try indexedStore(metrics: [metric == .cosine ? .cosine : .innerProduct])
        let snapshot = try store.snapshot()
        // Fresh queries from the same clusters, not rows of the set.
        let queries = clusteredRows(40, k: 24, clusters: 30, seed: 5).enumerated().map { $0.element + Float($0.offset % 7) * 0.01 }
        for probe in [QueryRequest.Probe.tuned, .recallTarget(0.9), .nprobe(1_000)] {
            var request = QueryRequest(set: "s", input: .vectors(queries, count: 40))
            request.metric = metric
            request.probe = probe
            let result = try snapshot.query(request)
            #expect(!result.plan.exact && result.plan.index == metric.rawValue)
            #expect(result.plan.indexedRows == 3000 && result.plan.exactRows == 0)
            var total = 0.0
            for q in 0..<40 {
                let query = Array(queries[(q * 24)..<((q + 1) * 24)])
                let expected = oracleTopK(store, query: query, metric: metric, k: 10)
                total += recall(result.hits[q], expected) / 40
                // Every hit carries its exact score (re-ranked from the stored rows).
                let all = oracleTopK(store, query: query, metric: metric, k: 3000)
                let exact = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0.score) })
                for hit in result.hits[q] {
                    #expect(abs(Double(hit.score) - exact[hit.id]!) <= 1e-4 * max(1, abs(exact[hit.id]!)))
                    #expect(hit.address == store.addresses[hit.id])
                }
            }
            // The plan's claim is the build's held-out recall; fresh queries may fall a little short.
            let claimed = try #require(result.plan.expectedRecall ?? (probe == .nprobe(1_000) ? 0.99 : nil),
                                       "the plan names the recall of \(String(describing: result.plan.nprobe)) lists")
            #expect(total >= claimed - 0.05, "recall@10 \(total) with plan \(result.plan)")
            if case .recallTarget(let target) = probe { #expect(claimed >= target) }
        }
    }

    @Test func plansExplainEachIndexPolicy() throws {
        let store = try indexedStore(metrics: [.innerProduct, .cosine])
        let snapshot = try store.snapshot()
        let query = randomRows(1, k: 24, seed: 8)
        var request = QueryRequest(set: "s", input: .vectors(query, count: 1))

        // auto: the index named after the metric, with the tuned nprobe stored at build time.
        let stored = try store.engine.sketchSet("s").entry.indexes["ip"]!
        let tuned = stored.parameters["default_nprobe"]!.intValue!
        var plan = try snapshot.plan(request)
        #expect(!plan.exact && plan.index == "ip" && plan.nprobe == tuned && plan.lists == stored.lists)
        #expect(plan.rerank == stored.parameters["rerank"]!.intValue && plan.builtOnVersion == stored.builtOnVersion)
        #expect(plan.note == nil && plan.steps.contains { $0.contains("tuned at build time") })

        // exact: no index, every live row scanned.
        request.index = .exact
        plan = try snapshot.plan(request)
        #expect(plan.exact && plan.index == nil && plan.exactRows == 3000 && plan.indexedRows == 0)
        #expect(plan.steps.contains { $0.contains("exact search was asked for") })
        request.probe = .nprobe(3)
        #expect(throws: StoreError.self) { try snapshot.plan(request) }

        // named: that index, which must be for the metric asked.
        request.index = .named("cosine")
        #expect(throws: StoreError.self) { try snapshot.plan(request) }
        request.metric = .cosine
        plan = try snapshot.plan(request)
        #expect(plan.index == "cosine" && plan.nprobe == 3 && plan.steps.contains { $0.contains("asked for") })
        request.index = .named("nope")
        #expect(throws: StoreError.self) { try snapshot.plan(request) }

        // A recall target picks the fewest tuned lists reaching it (oracle: the stored table).
        request.index = .auto
        request.metric = .innerProduct
        request.probe = .recallTarget(0.8)
        plan = try snapshot.plan(request)
        guard case .array(let table)? = stored.parameters["tuning"] else { Issue.record("no tuning table"); return }
        let points = table.compactMap { row -> (Int, Double)? in
            guard case .object(let fields) = row else { return nil }
            return (fields["nprobe"]!.intValue!, fields["recall"]!.doubleValue!)
        }
        let fewest = points.filter { $0.1 >= 0.8 }.map(\.0).min() ?? stored.lists
        #expect(plan.nprobe == fewest)
        request.rerank = 77
        #expect(try snapshot.plan(request).rerank == 77)

        // Aggregated queries are exact, with a note saying why the index was not used.
        request = QueryRequest(set: "s", input: .vectors(query + query, count: 2))
        request.aggregation = .max
        plan = try snapshot.plan(request)
        #expect(plan.exact && plan.note?.contains("aggregated") == true && !plan.staleIndex)
        #expect(plan.queries == 2)
    }

    @Test func rowsAppendedAfterTheBuildAreScannedExactly() throws {
        let store = try indexedStore()
        try store.append(randomRows(20, k: 24, seed: 9), prefix: "late")
        let snapshot = try store.snapshot()
        let query = randomRows(1, k: 24, seed: 10)
        var request = QueryRequest(set: "s", input: .vectors(query, count: 1))
        let plan = try snapshot.plan(request)
        #expect(!plan.exact && plan.indexedRows == 3000 && plan.exactRows == 20)
        request.probe = .nprobe(1_000)
        let hits = try snapshot.query(request).hits[0]
        #expect(recall(hits, oracleTopK(store, query: query, metric: .innerProduct, k: 10)) >= 0.9)
    }

    @Test func aStaleIndexFallsBackToExactSearchWithANote() throws {
        let store = try indexedStore()
        try store.append(randomRows(20, k: 24, seed: 9), prefix: "late")
        // An index whose segments are no longer the set's first ones (as after a rewrite of
        // the set): its entry names the second segment only.
        _ = try store.engine.commit(operation: "test-stale-index", set: "s", detail: nil) { manifest in
            let second = manifest.sketchSets["s"]!.segments[1].file
            manifest.sketchSets["s"]!.indexes["ip"]!.segments = [second]
        }
        let snapshot = try store.snapshot()
        let query = randomRows(1, k: 24, seed: 10)
        var request = QueryRequest(set: "s", input: .vectors(query, count: 1))
        request.k = 6
        let result = try snapshot.query(request)
        #expect(result.plan.exact && result.plan.staleIndex && result.plan.index == nil)
        #expect(result.plan.note?.contains("rebuild") == true)
        #expect(result.hits[0].map(\.id) == oracleTopK(store, query: query, metric: .innerProduct, k: 6).map(\.id))
        // Asking for the stale index by name falls back the same way.
        request.index = .named("ip")
        #expect(try snapshot.plan(request).staleIndex)
    }
}
