import Dispatch
import GradSketch
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Synchronization
import Testing

@Suite struct SnapshotLifetimeTests {
    @Test func aSnapshotSharedByThreadsAnswersAsSerialQueriesDo() throws {
        let store = try KnownRowsStore(k: 16)
        try store.append(clusteredRows(1500, k: 16, clusters: 12, seed: 31), prefix: "a")
        try store.append(randomRows(200, k: 16, seed: 32), prefix: "b")
        try store.delete(["a-3", "b-7"])
        var options = IVFBuildOptions()
        options.seed = 1
        _ = try IVFIndexBuilder.build(try store.engine.sketchSet("s"), in: store.engine, name: "ip", options: options)
        let queries = randomRows(16, k: 16, seed: 33)
        @Sendable func request(_ q: Int) -> QueryRequest {
            var request = QueryRequest(set: "s", input: .vectors(Array(queries[(q * 16)..<((q + 1) * 16)]), count: 1))
            request.metric = q % 2 == 0 ? .innerProduct : .cosine   // cosine has no index: exact
            request.k = 5 + q % 4
            request.index = q % 3 == 0 ? .exact : .auto
            return request
        }
        let serial = try store.snapshot()
        let expected = try (0..<16).map { try serial.query(request($0)).hits }
        // A fresh snapshot, so threads race to open its sets, searchers and annotations.
        let shared = try store.snapshot()
        let answers = Mutex<[Int: [[QueryHit]]]>([:])
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for round in 0..<4 {
                let q = (worker * 4 + round) % 16
                do {
                    let hits = try shared.query(request(q)).hits
                    answers.withLock { all in
                        if let earlier = all[q], earlier != hits { failures.withLock { $0.append("query \(q) differs between threads") } }
                        all[q] = hits
                    }
                } catch {
                    failures.withLock { $0.append("query \(q): \(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
        let got = answers.withLock { $0 }
        #expect(got.count == 16)
        for q in 0..<16 { #expect(got[q] == expected[q], "query \(q)") }
    }

    @Test func aSnapshotKeepsReadingItsVersionAfterLaterCommitsAndVacuum() throws {
        let store = try KnownRowsStore(k: 8)
        try store.append(randomRows(60, k: 8, seed: 41), prefix: "a")
        try store.append(randomRows(60, k: 8, seed: 42), prefix: "b")
        let query = randomRows(1, k: 8, seed: 43)
        var request = QueryRequest(set: "s", input: .vectors(query, count: 1))
        request.k = 12
        let old = try store.snapshot()
        let oldVersion = old.version
        let expected = oracleTopK(store, query: query, metric: .innerProduct, k: 12)
        let before = try old.query(request)
        #expect(before.hits[0].map(\.id) == expected.map(\.id))

        // Later versions delete the best rows and add better ones.
        try store.delete(Array(expected.prefix(4).map(\.id)))
        try store.append(query.map { $0 * 10 } + query.map { $0 * 11 }, prefix: "z")
        #expect(try store.snapshot().query(request).hits[0].first?.id.hasPrefix("z") == true)
        let after = try old.query(request)
        #expect(after.hits[0].map(\.id) == before.hits[0].map(\.id))
        #expect(after.hits[0].map(\.address) == before.hits[0].map(\.address))
        #expect(after.plan.version == oldVersion)

        // The set leaves the store and a vacuum removes its files and the old versions: the
        // snapshot, which holds them open, still answers for its version.
        _ = try store.engine.commit(operation: "test-drop-set", set: "s", detail: nil) { manifest in
            manifest.sketchSets["s"] = nil
        }
        let report = try store.engine.vacuum(keepLast: 1, grace: 0)
        #expect(!report.removedFiles.isEmpty)
        #expect(throws: StoreError.self) { try store.snapshot(oldVersion) }
        let vacuumed = try old.query(request)
        #expect(vacuumed.hits[0].map(\.id) == before.hits[0].map(\.id))
        #expect(try old.ids(set: "s", at: before.hits[0].map(\.address)) == before.hits[0].map(\.id))
    }
}
