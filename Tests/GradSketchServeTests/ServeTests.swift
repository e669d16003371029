import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchStore
import GradSketchServe
import GradSketchTestSupport
import Logging
import Testing

/// A store with one float32 set "s" of rows the test wrote (ids `r-0`, `r-1`, …), and a
/// server over it on an ephemeral loopback port.
final class ServedStore: Sendable {
    let directory: TemporaryDirectory
    let path: String
    let k: Int
    /// Row values by position (the ids' order), as stored (float32).
    let rows: [[Float]]
    let ids: [String]

    init(rows count: Int, k: Int, seed: UInt64) throws {
        directory = try TemporaryDirectory()
        path = directory.path + "/store"
        self.k = k
        var generator = SplitMix64(seed: seed)
        rows = (0..<count).map { _ in (0..<k).map { _ in Float(Double(generator.next() >> 11) / Double(1 << 53)) * 2 - 1 } }
        ids = (0..<count).map { "r-\($0)" }
        let store = try GradSketch.Store.create(at: path)
        try Self.append(rows, ids: ids, to: store, k: k)
    }

    static func append(_ rows: [[Float]], ids: [String], to store: GradSketch.Store, k: Int) throws {
        let flat = rows.flatMap { $0 }
        try store.transaction { transaction in
            try flat.withUnsafeBytes { bytes in
                try transaction.append(to: "s", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: rows.count, k: k),
                                       annotations: RowAnnotations(ids: ids, labels: ids.map { "label \($0)" }))
            }
        }
    }

    /// The naive oracle: every row scored in binary64, best first, `count` kept.
    func oracle(_ query: [Float], metric: String, count: Int, smallest: Bool = false) -> [(id: String, score: Double)] {
        let queryNorm = query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let scored = zip(ids, rows).map { id, row -> (id: String, score: Double) in
            let dot = zip(row, query).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            guard metric == "cosine" else { return (id, dot) }
            let rowNorm = row.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            return (id, dot / (rowNorm * queryNorm))
        }
        let sorted = scored.sorted { smallest ? $0.score < $1.score : $0.score > $1.score }
        return Array(sorted.prefix(count))
    }

    func randomQuery(seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<k).map { _ in Float(Double(generator.next() >> 11) / Double(1 << 53)) * 2 - 1 }
    }
}

/// A server run in-process on an ephemeral port, stopped by cancelling its task.
struct RunningServer {
    let port: Int
    let task: Task<Void, any Error>

    static func start(_ configure: (inout ServeConfiguration) -> Void = { _ in }, store: String) async throws -> RunningServer {
        var configuration = ServeConfiguration(storePath: store)
        configuration.port = 0
        configure(&configuration)
        var logger = Logger(label: "gradsketch-serve-test")
        // Stopping by cancellation makes the server library log errors; they are not the test's.
        logger.logLevel = .critical
        let server = try GradSketchServer(configuration: configuration, logger: logger)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let task = Task {
            try await server.run(handleSignals: false) { _, port, _ in continuation.yield(port) }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw LoopbackClient.ClientError("the server never listened") }
        return RunningServer(port: port, task: task)
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }
}

/// Score tolerance against the binary64 oracle: float32 accumulation over k ≤ 64 values in
/// [-1, 1] errs by well under 1e-5; the JSON round trip of a float32 adds under 1e-7.
let scoreTolerance = 1e-4

@Suite("gradsketch serve: answers", .serialized)
struct ServeAnswerTests {
    @Test("top-k by inner product and cosine, largest and smallest, equal the naive Double oracle")
    func queriesMatchOracle() async throws {
        let data = try ServedStore(rows: 300, k: 24, seed: 7)
        let server = try await RunningServer.start(store: data.path)
        for (metric, smallest) in [("ip", false), ("cosine", false), ("ip", true)] {
            let query = data.randomQuery(seed: 99)
            let reply = try await LoopbackClient.post(server.port, "/v1/sets/s/query",
                                                      json: ["vector": query.map(Double.init), "k": 12, "metric": metric, "smallest": smallest])
            #expect(reply.status == 200, "\(reply.text)")
            #expect(reply.headers["content-type"]?.hasPrefix("application/json") == true)
            let body = try reply.object()
            let results = try #require(body["results"] as? [[[String: Any]]])
            #expect(results.count == 1)
            let expected = data.oracle(query, metric: metric, count: 12, smallest: smallest)
            #expect(results[0].map { $0["id"] as? String } == expected.map(\.id))
            for (hit, reference) in zip(results[0], expected) {
                let score = try #require(hit["score"] as? Double)
                #expect(abs(score - reference.score) <= scoreTolerance, "\(metric): \(hit) vs \(reference)")
                #expect(hit["label"] as? String == "label \(reference.id)")
                let position = Int(reference.id.dropFirst(2))!
                #expect(hit["segment"] as? Int == 0 && hit["row"] as? Int == position)
            }
            let plan = try #require(body["plan"] as? [String: Any])
            #expect(plan["exact"] as? Bool == true)
            #expect(body["set"] as? String == "s")
        }
        await server.stop()
    }

    @Test("several vectors give one list each; aggregate mean gives one list of mean scores")
    func batchedAndAggregatedQueries() async throws {
        let data = try ServedStore(rows: 200, k: 16, seed: 3)
        let server = try await RunningServer.start(store: data.path)
        let queries = [data.randomQuery(seed: 1), data.randomQuery(seed: 2)]
        let batched = try await LoopbackClient.post(server.port, "/v1/sets/s/query",
                                                    json: ["vectors": queries.map { $0.map(Double.init) }, "k": 5])
        #expect(batched.status == 200, "\(batched.text)")
        let lists = try #require(try batched.object()["results"] as? [[[String: Any]]])
        #expect(lists.count == 2)
        for (list, query) in zip(lists, queries) {
            #expect(list.map { $0["id"] as? String } == data.oracle(query, metric: "ip", count: 5).map(\.id))
        }
        let aggregated = try await LoopbackClient.post(server.port, "/v1/sets/s/query",
                                                       json: ["vectors": queries.map { $0.map(Double.init) }, "k": 5, "aggregate": "mean"])
        #expect(aggregated.status == 200, "\(aggregated.text)")
        let single = try #require(try aggregated.object()["results"] as? [[[String: Any]]])
        let meanQuery = zip(queries[0], queries[1]).map { (Double($0) + Double($1)) / 2 }.map(Float.init)
        // The mean of inner products is the inner product with the mean query.
        let expected = data.oracle(meanQuery, metric: "ip", count: 5)
        #expect(single.count == 1)
        #expect(single[0].map { $0["id"] as? String } == expected.map(\.id))
        for (hit, reference) in zip(single[0], expected) {
            #expect(abs((hit["score"] as? Double ?? .nan) - reference.score) <= scoreTolerance)
        }
        await server.stop()
    }

    @Test("a stored row as the query finds itself first under cosine; health and sets describe the snapshot")
    func rowIDQueryHealthAndSets() async throws {
        let data = try ServedStore(rows: 50, k: 8, seed: 11)
        let server = try await RunningServer.start(store: data.path)
        let reply = try await LoopbackClient.post(server.port, "/v1/sets/s/query", json: ["row_id": "r-17", "k": 3, "metric": "cosine"])
        #expect(reply.status == 200, "\(reply.text)")
        let hits = try #require((try reply.object()["results"] as? [[[String: Any]]])?.first)
        #expect(hits.map { $0["id"] as? String } == data.oracle(data.rows[17], metric: "cosine", count: 3).map(\.id))
        #expect(abs((hits[0]["score"] as? Double ?? 0) - 1) <= scoreTolerance)

        let health = try await LoopbackClient.get(server.port, "/v1/health")
        #expect(health.status == 200)
        let healthBody = try health.object()
        #expect(healthBody["status"] as? String == "ok")
        #expect(healthBody["version"] as? Int == 1)

        let sets = try await LoopbackClient.get(server.port, "/v1/sets")
        #expect(sets.status == 200)
        let list = try #require(try sets.json() as? [[String: Any]])
        #expect(list.count == 1)
        #expect(list[0]["name"] as? String == "s")
        #expect(list[0]["k"] as? Int == 8)
        #expect(list[0]["dtype"] as? String == "float32")
        #expect(list[0]["rows"] as? Int == 50)
        #expect(list[0]["segments"] as? Int == 1)
        await server.stop()
    }

    @Test("select topk picks the rows of largest cosine with the target, in order")
    func selectTopKMatchesOracle() async throws {
        let data = try ServedStore(rows: 120, k: 16, seed: 5)
        let server = try await RunningServer.start(store: data.path)
        let target = data.randomQuery(seed: 42)
        let reply = try await LoopbackClient.post(server.port, "/v1/sets/s/select",
                                                  json: ["vector": target.map(Double.init), "count": 7, "method": "topk"])
        #expect(reply.status == 200, "\(reply.text)")
        let body = try reply.object()
        let expected = data.oracle(target, metric: "cosine", count: 7)
        #expect(body["ids"] as? [String] == expected.map(\.id))
        let scores = try #require(body["scores"] as? [Double])
        for (score, reference) in zip(scores, expected) {
            #expect(abs(score - reference.score) <= scoreTolerance)
        }
        let random = try await LoopbackClient.post(server.port, "/v1/sets/s/select", json: ["count": 5, "method": "random", "seed": 3])
        #expect(random.status == 200, "\(random.text)")
        let picked = try #require(try random.object()["ids"] as? [String])
        #expect(Set(picked).count == 5 && picked.allSatisfy(data.ids.contains))
        await server.stop()
    }

    @Test("--follow switches to a newly committed version; a pinned server keeps its version")
    func followPicksUpNewVersion() async throws {
        let data = try ServedStore(rows: 40, k: 8, seed: 13)
        let following = try await RunningServer.start({ $0.follow = true; $0.followInterval = .milliseconds(100) }, store: data.path)
        let pinned = try await RunningServer.start(store: data.path)
        #expect(try await LoopbackClient.get(following.port, "/v1/health").object()["version"] as? Int == 1)

        var generator = SplitMix64(seed: 77)
        let newRows = (0..<10).map { _ in (0..<8).map { _ in Float(Double(generator.next() >> 11) / Double(1 << 53)) } }
        try ServedStore.append(newRows, ids: (0..<10).map { "new-\($0)" }, to: try GradSketch.Store(opening: data.path), k: 8)

        var version = 1
        let deadline = ContinuousClock.now + .seconds(20)
        while version != 2 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            version = try await LoopbackClient.get(following.port, "/v1/health").object()["version"] as? Int ?? -1
        }
        #expect(version == 2)
        let reply = try await LoopbackClient.post(following.port, "/v1/sets/s/query", json: ["row_id": "new-3", "k": 1, "metric": "cosine"])
        #expect(reply.status == 200, "\(reply.text)")
        #expect((try reply.object()["results"] as? [[[String: Any]]])?.first?.first?["id"] as? String == "new-3")
        #expect(try await LoopbackClient.get(pinned.port, "/v1/health").object()["version"] as? Int == 1)
        let unknownThere = try await LoopbackClient.post(pinned.port, "/v1/sets/s/query", json: ["row_id": "new-3", "k": 1])
        #expect(unknownThere.status == 404)
        await following.stop()
        await pinned.stop()
    }
}

@Suite("gradsketch serve: refusals", .serialized)
struct ServeRefusalTests {
    /// Expects `reply` to be the JSON error body with `status`, and its message to contain `fragment`.
    func expectRefused(_ reply: LoopbackClient.Reply, _ status: Int, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(reply.status == status, "\(reply.text)", sourceLocation: sourceLocation)
        let body = try reply.object()
        #expect(body["status"] as? Int == status, sourceLocation: sourceLocation)
        let message = try #require(body["error"] as? String, sourceLocation: sourceLocation)
        #expect(message.contains(fragment), "\(message)", sourceLocation: sourceLocation)
    }

    @Test("every bad request gets its 4xx with a JSON message")
    func badRequests() async throws {
        let data = try ServedStore(rows: 30, k: 4, seed: 1)
        let server = try await RunningServer.start({ $0.maxBodyBytes = 2048 }, store: data.path)
        let port = server.port
        let query = "/v1/sets/s/query"
        try expectRefused(try await LoopbackClient.post(port, query, raw: "{\"vector\": [1, 2,"), 400, "not valid JSON")
        try expectRefused(try await LoopbackClient.post(port, query, raw: ""), 400, "empty")
        try expectRefused(try await LoopbackClient.post(port, query, raw: "[1, 2, 3, 4]"), 400, "expected a JSON object")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": "1,2,3,4"]), 400, "vector")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3, 4], "k": "ten"]), 400, "k")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3]]), 400, "must have 4 values")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vectors": [[1, 2, 3, 4], [1, 2]]]), 400, "vectors[1]")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3e39, 4]]), 400, "not a finite float32")
        try expectRefused(try await LoopbackClient.post(port, query, raw: "{\"vector\": [1, NaN, 3, 4]}"), 400, "not valid JSON")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3, 4], "k": 0]), 400, "\"k\" must be in 1...10000")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3, 4], "k": 10_001]), 400, "found 10001")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3, 4], "metric": "l2"]), 400, "metric")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vecotr": [1, 2, 3, 4]]), 400, "unknown field \"vecotr\"")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3, 4], "row_id": "r-1"]), 400, "exactly one")
        try expectRefused(try await LoopbackClient.post(port, "/v1/sets/s/select", json: ["vector": [1, 2, 3, 4]]), 400, "count")
        try expectRefused(try await LoopbackClient.post(port, "/v1/sets/s/select", json: ["vector": [1, 2, 3, 4], "count": 31, "method": "topk"]), 400, "cannot select 31 of the 30 live rows")

        try expectRefused(try await LoopbackClient.post(port, "/v1/sets/nope/query", json: ["vector": [1, 2, 3, 4]]), 404, "nope")
        try expectRefused(try await LoopbackClient.post(port, "/v1/sets/nope/select", json: ["vector": [1, 2, 3, 4], "count": 1]), 404, "nope")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["delta": "no-such-delta"]), 404, "no-such-delta")
        try expectRefused(try await LoopbackClient.post(port, query, json: ["row_id": "no-such-row"]), 404, "no-such-row")
        try expectRefused(try await LoopbackClient.get(port, "/v1/nothing"), 404, "no endpoint")
        try expectRefused(try await LoopbackClient.get(port, "/"), 404, "no endpoint")

        let wrongMethod = try await LoopbackClient.get(port, query)
        try expectRefused(wrongMethod, 405, "expected POST")
        #expect(wrongMethod.headers["allow"] == "POST")
        try expectRefused(try await LoopbackClient.post(port, "/v1/health", json: [:]), 405, "expected GET")
        try expectRefused(try await LoopbackClient.send(port: port, method: "DELETE", path: "/v1/sets", body: nil), 405, "expected GET")

        let oversized = Data(("{\"vector\": [" + Array(repeating: "1.0", count: 1000).joined(separator: ",") + "]}").utf8)
        try expectRefused(try await LoopbackClient.send(port: port, method: "POST", path: query, body: oversized), 413, "at most 2048")
        try expectRefused(try await LoopbackClient.send(port: port, method: "POST", path: query, body: oversized, chunked: true), 413, "at most 2048")

        // The refusals left the server answering.
        let fine = try await LoopbackClient.post(port, query, json: ["vector": [1, 2, 3, 4], "k": 2])
        #expect(fine.status == 200, "\(fine.text)")
        await server.stop()
    }
}
