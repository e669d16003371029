import GradSketch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Three segments of 40, 30 and 50 rows (k = 12), five rows of the middle one deleted.
private func threeSegmentStore(dtype: SketchDType = .float32) throws -> KnownRowsStore {
    let store = try KnownRowsStore(k: 12)
    try store.append(randomRows(40, k: 12, seed: 1), prefix: "a", dtype: dtype)
    try store.append(randomRows(30, k: 12, seed: 2), prefix: "b", dtype: dtype)
    try store.append(randomRows(50, k: 12, seed: 3), prefix: "c", dtype: dtype)
    try store.delete(["b-0", "b-3", "b-4", "b-17", "b-29"])
    return store
}

@Suite struct SnapshotQueryTests {
    @Test(arguments: [SearchMetricName.innerProduct, .cosine], [false, true])
    func exactQueriesEqualTheBinary64Oracle(metric: SearchMetricName, smallest: Bool) throws {
        let store = try threeSegmentStore()
        let snapshot = try store.snapshot()
        let query = randomRows(1, k: 12, seed: 99)
        for k in [1, 7, 25] {
            var request = QueryRequest(set: "s", input: .vectors(query, count: 1))
            request.metric = metric
            request.k = k
            request.smallest = smallest
            let result = try snapshot.query(request)
            let expected = oracleTopK(store, query: query, metric: metric, k: k, smallest: smallest)
            #expect(result.plan.exact)
            #expect(result.hits.count == 1)
            #expect(result.hits[0].map(\.id) == expected.map(\.id))
            for (hit, truth) in zip(result.hits[0], expected) {
                #expect(abs(Double(hit.score) - truth.score) <= 1e-5 * max(1, abs(truth.score)))
                #expect(hit.address == store.addresses[truth.id])
                #expect(hit.label == store.labels[truth.id])
                #expect(hit.metadata == store.metadata[truth.id])
            }
        }
    }

    @Test func float16RowsScoreAsTheirStoredValues() throws {
        let store = try threeSegmentStore(dtype: .float16)
        let snapshot = try store.snapshot()
        let query = randomRows(1, k: 12, seed: 7)
        let result = try snapshot.query(QueryRequest(set: "s", input: .vectors(query, count: 1)))
        let expected = oracleTopK(store, query: query, metric: .innerProduct, k: 10)
        #expect(result.hits[0].map(\.id) == expected.map(\.id))
    }

    @Test func severalQueriesGiveOneListEach() throws {
        let store = try threeSegmentStore()
        let snapshot = try store.snapshot()
        let queries = randomRows(3, k: 12, seed: 11)
        var request = QueryRequest(set: "s", input: .vectors(queries, count: 3))
        request.k = 5
        let result = try snapshot.query(request)
        #expect(result.plan.queries == 3)
        #expect(result.hits.count == 3)
        for q in 0..<3 {
            let expected = oracleTopK(store, query: Array(queries[(q * 12)..<((q + 1) * 12)]), metric: .innerProduct, k: 5)
            #expect(result.hits[q].map(\.id) == expected.map(\.id))
        }
    }

    @Test func meanAggregationEqualsTheOracleOfTheMeanQuery() throws {
        // The mean of ⟨row, q_i⟩ over i is ⟨row, mean q⟩, an independent way to compute it.
        let store = try threeSegmentStore()
        let snapshot = try store.snapshot()
        let queries = randomRows(4, k: 12, seed: 12)
        let mean = (0..<12).map { j in Float((0..<4).reduce(0.0) { $0 + Double(queries[$1 * 12 + j]) } / 4) }
        var request = QueryRequest(set: "s", input: .vectors(queries, count: 4))
        request.aggregation = .mean
        request.k = 8
        let result = try snapshot.query(request)
        #expect(result.hits.count == 1)
        #expect(result.hits[0].map(\.id) == oracleTopK(store, query: mean, metric: .innerProduct, k: 8).map(\.id))
    }

    @Test func aStoredRowQueryFindsItselfFirstUnderCosine() throws {
        let store = try threeSegmentStore()
        let snapshot = try store.snapshot()
        var request = QueryRequest(set: "s", input: .storedRow(id: "c-7"))
        request.metric = .cosine
        request.k = 4
        let result = try snapshot.query(request)
        let expected = oracleTopK(store, query: store.rows["c-7"]!, metric: .cosine, k: 4)
        #expect(expected.first?.id == "c-7")
        #expect(result.hits[0].map(\.id) == expected.map(\.id))
    }

    @Test func aQuerySetRunsEveryLiveRowOfIt() throws {
        let store = try threeSegmentStore()
        let queries = randomRows(6, k: 12, seed: 21)
        try store.append(queries, prefix: "q", set: "queries")
        let snapshot = try store.snapshot()
        var request = QueryRequest(set: "s", input: .querySet("queries"))
        request.k = 3
        let result = try snapshot.query(request)
        #expect(result.hits.count == 6)
        for q in 0..<6 {
            let expected = oracleTopK(store, query: Array(queries[(q * 12)..<((q + 1) * 12)]), metric: .innerProduct, k: 3)
            #expect(result.hits[q].map(\.id) == expected.map(\.id))
        }
    }

    @Test func idsLabelsAndMetadataAreReadByAddress() throws {
        let store = try threeSegmentStore()
        let snapshot = try store.snapshot()
        let wanted = ["c-49", "a-0", "b-5", "b-28"]
        let addresses = wanted.map { store.addresses[$0]! }
        #expect(try snapshot.ids(set: "s", at: addresses) == wanted)
        #expect(try snapshot.labels(set: "s", at: addresses) == wanted.map { store.labels[$0]! })
        #expect(try snapshot.metadata(set: "s", at: addresses) == wanted.map { store.metadata[$0]! })
        // A deleted row and an address past the segment are refused, not misread.
        #expect(throws: StoreError.self) { try snapshot.ids(set: "s", at: [store.addresses["b-3"]!]) }
        #expect(throws: StoreError.self) { try snapshot.ids(set: "s", at: [RowAddress(segment: 0, row: 40)]) }
        #expect(throws: StoreError.self) { try snapshot.ids(set: "s", at: [RowAddress(segment: 3, row: 0)]) }
    }

    @Test func segmentViewsShowTheStoredRowsAndTheirDeletions() throws {
        let store = try threeSegmentStore()
        let snapshot = try store.snapshot()
        let info = try snapshot.sketchSet("s")
        #expect(info.k == 12 && info.dtype == .float32)
        #expect(info.rows == 115 && info.segments == 3 && info.segmentRows == [40, 30, 50])
        #expect(snapshot.sketchSetNames == ["s"])
        for (segment, prefix, rows) in [(0, "a", 40), (1, "b", 30), (2, "c", 50)] {
            try snapshot.withSegmentRows(set: "s", segment: segment) { view in
                #expect(view.rows == rows && view.k == 12 && view.dtype == .float32)
                #expect(view.deleted == (segment == 1 ? [0, 3, 4, 17, 29] : []))
                let floats = view.base.assumingMemoryBound(to: Float.self)
                for row in [0, rows / 2, rows - 1] {
                    let expected = store.rows["\(prefix)-\(row)"]!
                    #expect((0..<12).map { floats[row * 12 + $0] } == expected)
                }
            }
        }
        #expect(throws: StoreError.self) { try snapshot.withSegmentRows(set: "s", segment: 3) { _ in } }
        #expect(throws: StoreError.self) { try snapshot.withSegmentRows(set: "nope", segment: 0) { _ in } }
    }

    @Test func badRequestsAreRefusedWithClearErrors() throws {
        let store = try threeSegmentStore()
        let snapshot = try store.snapshot()
        var request = QueryRequest(set: "s", input: .vectors([1, 2, 3], count: 1))
        #expect(throws: StoreError.self) { try snapshot.query(request) }
        request.input = .vectors(randomRows(1, k: 12, seed: 1), count: 1)
        request.k = 0
        #expect(throws: StoreError.self) { try snapshot.query(request) }
        request.k = 10
        request.probe = .nprobe(4)
        // No index: an nprobe has nothing to apply to.
        #expect(throws: StoreError.self) { try snapshot.plan(request) }
        request.probe = .tuned
        request.index = .named("ip")
        #expect(throws: StoreError.self) { try snapshot.plan(request) }
        request.index = .auto
        request.input = .storedRow(id: "b-3")  // deleted
        #expect(throws: StoreError.self) { try snapshot.query(request) }
        request.set = "missing"
        #expect(throws: StoreError.self) { try snapshot.plan(request) }
    }
}
