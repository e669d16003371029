import Foundation
import GradSketchTestSupport
import Testing

/// `gradsketch query` against numpy's own top-k over the same rows.
@Suite struct QueryCommandTests {
    struct Output: Decodable {
        struct Result: Decodable { let rank: Int, id: String, score: Float, label: String? }
        let results: [[Result]]
    }

    @Test func queriesMatchNumpyAndBadQueriesAreRefused() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(4)
        x = rng.standard_normal((3000, 32)).astype(np.float32)
        np.save(f"{out}/rows.npy", x)
        open(f"{out}/ids.txt", "w").writelines(f"doc{i}\\n" for i in range(3000))
        open(f"{out}/labels.txt", "w").writelines(f"L{i % 7}\\n" for i in range(3000))
        q = rng.standard_normal(32).astype(np.float32)
        np.save(f"{out}/q.npy", q)
        np.save(f"{out}/bad.npy", np.ones(31, dtype=np.float32))
        stored = x.astype(np.float16).astype(np.float64)
        scores = stored @ q.astype(np.float64)
        top = np.lexsort((np.arange(3000), -scores))[:10]
        open(f"{out}/expected.txt", "w").write(" ".join(f"doc{i}" for i in top))
        cos = scores / np.linalg.norm(stored, axis=1)
        low = np.lexsort((np.arange(3000), cos))[:5]
        open(f"{out}/expected_low.txt", "w").write(" ".join(f"doc{i}" for i in low))
        """
        try #require(try ChildProcess.python(script, [fixture.scratch.path]).status == 0)
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("append", store, "--set", "s", "--rows", fixture.path("rows.npy"), "--ids", fixture.path("ids.txt"),
                                            "--labels", fixture.path("labels.txt"), "--dtype", "float16"))
        let result = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", fixture.path("q.npy"), "-k", "10", "--json"))
        let output = try JSONDecoder().decode(Output.self, from: Data(result.standardOutput.utf8))
        let expected = try String(contentsOfFile: fixture.path("expected.txt"), encoding: .utf8).split(separator: " ").map(String.init)
        #expect(output.results[0].map(\.id) == expected)
        #expect(output.results[0].map(\.rank) == Array(1...10))
        #expect(output.results[0].first?.label == "L\(Int(expected[0].dropFirst(3))! % 7)")
        let low = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", fixture.path("q.npy"), "-k", "5",
                                                      "--metric", "cosine", "--bottom", "--json"))
        let lowest = try JSONDecoder().decode(Output.self, from: Data(low.standardOutput.utf8))
        #expect(lowest.results[0].map(\.id) == (try String(contentsOfFile: fixture.path("expected_low.txt"), encoding: .utf8).split(separator: " ").map(String.init)))
        // A stored row as the query finds itself first under cosine.
        let itself = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--id", "doc1234", "-k", "1", "--metric", "cosine", "--json"))
        #expect(try JSONDecoder().decode(Output.self, from: Data(itself.standardOutput.utf8)).results[0].first?.id == "doc1234")

        try expectFailure(["query", store, "--set", "s", "--vector", fixture.path("bad.npy")], saying: "query must have shape [32] or [Q, 32]")
        try expectFailure(["query", store, "--set", "s", "--id", "nope"], saying: "no row with id \"nope\"")
        try expectFailure(["query", store, "--set", "s", "--delta", "nothing"], saying: "records no projection")
        try expectFailure(["query", store, "--set", "missing", "--vector", fixture.path("q.npy")], saying: "no sketch set \"missing\"")

        // Through an index: every list probed and enough candidates re-ranked gives numpy's answer;
        // the JSON says which path answered.
        try expectSuccess(ChildProcess.tool("index", "build", store, "--set", "s", "--lists", "16"))
        struct Routed: Decodable {
            struct IndexUse: Decodable { let name: String, lists: Int, nprobe: Int }
            let exact: Bool, index: IndexUse?, note: String?
            let results: [[Output.Result]]
        }
        let routed = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", fixture.path("q.npy"), "-k", "10",
                                                         "--nprobe", "16", "--rerank", "200", "--json"))
        let viaIndex = try JSONDecoder().decode(Routed.self, from: Data(routed.standardOutput.utf8))
        #expect(!viaIndex.exact && viaIndex.index?.name == "ip" && viaIndex.index?.nprobe == 16)
        #expect(viaIndex.results[0].map(\.id) == expected)
        let forced = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", fixture.path("q.npy"), "--exact", "--json"))
        #expect(try JSONDecoder().decode(Routed.self, from: Data(forced.standardOutput.utf8)).exact)
        let info = try expectSuccess(ChildProcess.tool("index", "info", store, "--set", "s", "--json"))
        #expect(info.standardOutput.contains("\"lists\" : 16"))
        // --explain prints the plan without searching: the index, the nprobe asked for, the rows.
        struct Plan: Decodable { let exact: Bool, index: String?, nprobe: Int?, lists: Int?, indexedRows: Int, exactRows: Int, steps: [String] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let explained = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", fixture.path("q.npy"), "--nprobe", "5", "--explain", "--json"))
        let plan = try decoder.decode(Plan.self, from: Data(explained.standardOutput.utf8))
        #expect(!plan.exact && plan.index == "ip" && plan.nprobe == 5 && plan.lists == 16)
        #expect(plan.indexedRows == 3000 && plan.exactRows == 0 && !plan.steps.isEmpty)
        let exactPlan = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", fixture.path("q.npy"), "--exact", "--explain", "--json"))
        #expect(try decoder.decode(Plan.self, from: Data(exactPlan.standardOutput.utf8)).exactRows == 3000)
        try expectFailure(["query", store, "--set", "s", "--vector", fixture.path("q.npy"), "--nprobe", "0"], saying: "--nprobe must be at least 1")
        try expectFailure(["query", store, "--set", "s", "--vector", fixture.path("q.npy"), "--recall-target", "1.5"], saying: "--recall-target must be between 0 and 1")
        try expectFailure(["query", store, "--set", "s", "--vector", fixture.path("q.npy"), "--metric", "cosine", "--nprobe", "4"], saying: "has no index for metric cosine")
        try expectFailure(["query", store, "--set", "s", "--vector", fixture.path("bad.npy")], saying: "query must have shape [32] or [Q, 32]")
        try expectFailure(["index", "build", store, "--set", "s", "--lists", "5000"], saying: "needs between 1 and 3000 lists")
        try expectSuccess(ChildProcess.tool("index", "drop", store, "--set", "s", "--name", "ip"))
        try expectFailure(["index", "drop", store, "--set", "s", "--name", "ip"], saying: "has no index \"ip\"")
        let after = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", fixture.path("q.npy"), "--json"))
        #expect(try JSONDecoder().decode(Routed.self, from: Data(after.standardOutput.utf8)).exact)
    }

    @Test func multiCheckpointScoresMatchNumpy() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(8)
        a, b = rng.standard_normal((500, 24)).astype(np.float32), rng.standard_normal((500, 16)).astype(np.float32)
        order = rng.permutation(500)   # the second checkpoint stores the same documents in another order
        np.save(f"{out}/a.npy", a); np.save(f"{out}/b.npy", b[order])
        open(f"{out}/ids_a.txt", "w").writelines(f"doc{i}\\n" for i in range(500))
        open(f"{out}/ids_b.txt", "w").writelines(f"doc{i}\\n" for i in order)
        qa, qb = rng.standard_normal(24).astype(np.float32), rng.standard_normal(16).astype(np.float32)
        np.save(f"{out}/qa.npy", qa); np.save(f"{out}/qb.npy", qb)
        score = 0.5 * (a.astype(np.float16).astype(np.float64) @ qa) + 2.0 * (b.astype(np.float16).astype(np.float64) @ qb)
        top = np.lexsort((np.arange(500), -score))[:7]
        open(f"{out}/expected.txt", "w").write(" ".join(f"doc{i}" for i in top))
        """
        try #require(try ChildProcess.python(script, [fixture.scratch.path]).status == 0)
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("append", store, "--set", "step100", "--rows", fixture.path("a.npy"), "--ids", fixture.path("ids_a.txt"), "--dtype", "float16"))
        try expectSuccess(ChildProcess.tool("append", store, "--set", "step200", "--rows", fixture.path("b.npy"), "--ids", fixture.path("ids_b.txt"), "--dtype", "float16"))
        let result = try expectSuccess(ChildProcess.tool("query", store, "--set", "step100", "--vector", fixture.path("qa.npy"), "--weight", "0.5",
                                                         "--term", "step200=\(fixture.path("qb.npy"))@2", "-k", "7", "--json"))
        let output = try JSONDecoder().decode(Output.self, from: Data(result.standardOutput.utf8))
        let expected = try String(contentsOfFile: fixture.path("expected.txt"), encoding: .utf8).split(separator: " ").map(String.init)
        #expect(output.results[0].map(\.id) == expected)
        try expectFailure(["query", store, "--set", "step100", "--vector", fixture.path("qa.npy"), "--term", "step200=\(fixture.path("qa.npy"))"],
                          saying: "query for set step200 must have shape [16]")
        try expectFailure(["query", store, "--set", "step100", "--vector", fixture.path("qa.npy"), "--term", "step200=\(fixture.path("qb.npy"))@x"],
                          saying: "the weight after @ must be a finite number")
    }

    @Test func aWeightDeltaQueriesGradientSketchesOfTheSameModel() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("train", store, "--split", "test", "--limit", "500", "--hidden", "16", "--batch", "100"))
        try expectSuccess(ChildProcess.tool("sketch", store, "--split", "test", "--limit", "200", "--checkpoint", "mlp-step5",
                                            "--set", "g", "--side", "8", "--k-dense", "16"))
        try expectSuccess(ChildProcess.tool("tensors", "delta", store, "--name", "d", "--from", "mlp-step0", "--to", "mlp-step5"))
        let result = try expectSuccess(ChildProcess.tool("query", store, "--set", "g", "--delta", "d", "--negate", "-k", "5", "--json"))
        let output = try JSONDecoder().decode(Output.self, from: Data(result.standardOutput.utf8))
        #expect(output.results[0].count == 5)
        #expect(output.results[0].allSatisfy { $0.id.hasPrefix("fashion-mnist/test/") })
        #expect(zip(output.results[0], output.results[0].dropFirst()).allSatisfy { $0.score >= $1.score })
    }
}
