import Foundation
import GradSketchTestSupport
import Testing

/// `gradsketch select` / `results` against numpy's brute-force greedy running sum.
@Suite struct SelectCommandTests {
    struct Output: Decodable {
        struct Row: Decodable { let rank: Int, id: String, score: Double }
        let method: String, rows: [Row]
    }

    @Test func greedySelectionMatchesNumpyAndIsSavedAsAResult() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(12)
        x = rng.standard_normal((400, 24)).astype(np.float32)
        np.save(f"{out}/rows.npy", x)
        open(f"{out}/ids.txt", "w").writelines(f"doc{i}\\n" for i in range(400))
        q = rng.standard_normal(24).astype(np.float32)
        np.save(f"{out}/q.npy", q)
        s = x.astype(np.float16).astype(np.float64); qd = q.astype(np.float64)
        total = np.zeros(24); taken = []
        for _ in range(15):
            cand = total[None, :] + s
            cos = cand @ qd / (np.linalg.norm(cand, axis=1) * np.linalg.norm(qd))
            cos[taken] = -np.inf
            j = int(np.argmax(cos)); taken.append(j); total += s[j]
        open(f"{out}/expected.txt", "w").write(" ".join(f"doc{i}" for i in taken))
        """
        try #require(try ChildProcess.python(script, [fixture.scratch.path]).status == 0)
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("append", store, "--set", "pool", "--rows", fixture.path("rows.npy"), "--ids", fixture.path("ids.txt"), "--dtype", "float16"))
        let result = try expectSuccess(ChildProcess.tool("select", store, "--set", "pool", "--vector", fixture.path("q.npy"), "-k", "15",
                                                         "--strategy", "greedy", "--save", "picked", "--json"))
        let output = try JSONDecoder().decode(Output.self, from: Data(result.standardOutput.utf8))
        let expected = try String(contentsOfFile: fixture.path("expected.txt"), encoding: .utf8).split(separator: " ").map(String.init)
        #expect(output.method == "select/greedy")
        #expect(output.rows.map(\.id) == expected)
        let shown = try expectSuccess(ChildProcess.tool("results", "show", store, "--name", "picked", "--json", "--ids-out", fixture.path("picked.txt")))
        #expect(try JSONDecoder().decode(Output.self, from: Data(shown.standardOutput.utf8)).rows.map(\.id) == expected)
        #expect(try String(contentsOfFile: fixture.path("picked.txt"), encoding: .utf8).split(separator: "\n").map(String.init) == expected)
        try expectSuccess(ChildProcess.tool("verify", store))

        try expectFailure(["select", store, "--set", "pool", "--vector", fixture.path("q.npy"), "-k", "15", "--save", "picked"], saying: "result picked already exists")
        try expectFailure(["select", store, "--set", "pool", "--vector", fixture.path("q.npy"), "-k", "401"], saying: "cannot select 401 of the 400 live rows")
        try expectFailure(["select", store, "--set", "pool", "-k", "3"], saying: "give exactly one of --vector and --delta")
        try expectFailure(["select", store, "--set", "pool", "-k", "3", "--strategy", "best"], saying: "--strategy must be one of")
        try expectFailure(["results", "show", store, "--name", "nothing"], saying: "no result \"nothing\"")
    }

    @Test func gradExForwardSelectionMatchesNumpy() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, json, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(21)
        x = rng.standard_normal((240, 16)).astype(np.float32)
        src = [f"s{i % 8}" for i in range(240)]
        np.save(f"{out}/rows.npy", x)
        open(f"{out}/labels.txt", "w").writelines(s + "\\n" for s in src)
        v = rng.standard_normal(16).astype(np.float32)
        np.save(f"{out}/v.npy", v)
        s = x.astype(np.float64); names = [f"s{i}" for i in range(8)]
        def est(S):
            rows = [i for i in range(240) if src[i] in S]
            return 1.5 - 0.2 * float(v.astype(np.float64) @ s[rows].mean(0))
        chosen, best = [], float("inf")
        while len(chosen) < 8:
            cand = min((n for n in names if n not in chosen), key=lambda n: est(chosen + [n]))
            value = est(chosen + [cand])
            if value >= best: break
            best = value; chosen.append(cand)
        open(f"{out}/expected.txt", "w").write(", ".join(chosen))
        """
        try #require(try ChildProcess.python(script, [fixture.scratch.path]).status == 0)
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("append", store, "--set", "meta", "--rows", fixture.path("rows.npy"), "--labels", fixture.path("labels.txt")))
        let result = try expectSuccess(ChildProcess.tool("value", store, "--method", "gradex", "--set", "meta", "--vector", fixture.path("v.npy"),
                                                         "--base-loss", "1.5", "--step", "0.2", "--subsets", "50", "--save", "sources"))
        let expected = try String(contentsOfFile: fixture.path("expected.txt"), encoding: .utf8)
        #expect(result.standardOutput.contains("forward selection: " + expected + "\n"), "\(result.standardOutput)")
        try expectFailure(["value", store, "--method", "gradex", "--set", "meta"], saying: "--method gradex needs --set and --vector")
        try expectFailure(["value", store, "--method", "gradex", "--set", "meta", "--vector", fixture.path("v.npy"), "--estimator", "cubic"],
                          saying: "--estimator must be linear or logistic")
    }

    @Test func paserSelectionMatchesHandComputedBudgetsAndConceptFilter() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, json, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(5)
        a, b = rng.standard_normal(8), rng.standard_normal(8)
        x = np.concatenate([a + 0.05 * rng.standard_normal((60, 8)), b + 0.05 * rng.standard_normal((60, 8))]).astype(np.float32)
        deg = np.concatenate([rng.uniform(0.5, 1.5, 60), rng.uniform(2.5, 3.5, 60)])
        np.save(f"{out}/rows.npy", x); np.save(f"{out}/deg.npy", deg)
        # budgets 8 * 1.0/4.0 = 2 and 8 * 3.0/4.0 = 6 (up to the sampled means): floors, the spare
        # row to the larger fraction; highest degradation first
        m0, m1 = deg[:60].mean(), deg[60:].mean()
        s0, s1 = 8 * m0 / (m0 + m1), 8 * m1 / (m0 + m1)
        n0, n1 = int(s0), int(s1)
        if n0 + n1 < 8:
            if s0 - n0 >= s1 - n1: n0 += 1
            else: n1 += 1
        first, second = list(np.argsort(-deg[:60], kind="stable")), list(60 + np.argsort(-deg[60:], kind="stable"))
        # Concepts: the three most degraded rows of the second cluster, in that order: "apple"-"banana"
        # and then "apple"-"cherry" are linked; the third knows banana and cherry, unlinked, and is
        # rejected. Its text is an Alpaca record, read as instruction + input + output.
        meta = [""] * 120
        meta[second[0]] = "Apple, banana"
        meta[second[1]] = "an apple; the cherry"
        meta[second[2]] = json.dumps({"output": "Cherry!", "instruction": "Banana?", "input": ""})
        open(f"{out}/meta.txt", "w").writelines(m + "\\n" for m in meta)
        plain = first[:n0] + second[:n1]
        filtered = first[:n0] + [r for r in second if r != second[2]][:n1]
        open(f"{out}/expected.txt", "w").write(" ".join(f"r{i}" for i in sorted(plain)))
        open(f"{out}/expected-filtered.txt", "w").write(" ".join(f"r{i}" for i in sorted(filtered)))
        open(f"{out}/rejected.txt", "w").write(f"r{second[2]}")
        open(f"{out}/ids.txt", "w").writelines(f"r{i}\\n" for i in range(120))
        """
        try #require(try ChildProcess.python(script, [fixture.scratch.path]).status == 0)
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("append", store, "--set", "pool", "--rows", fixture.path("rows.npy"), "--ids", fixture.path("ids.txt"),
                                            "--metadata", fixture.path("meta.txt"), "--column", "degradation=\(fixture.path("deg.npy"))"))
        func selected(_ extra: String...) throws -> [String] {
            let result = try expectSuccess(ChildProcess.tool(arguments: ["select", store, "--set", "pool", "--method", "paser", "--clusters", "2", "-k", "8", "--json"] + extra))
            let output = try JSONDecoder().decode(Output.self, from: Data(result.standardOutput.utf8))
            #expect(output.method == "paser")
            return output.rows.map(\.id)
        }
        func words(_ file: String) throws -> [String] {
            try String(contentsOfFile: fixture.path(file), encoding: .utf8).split(separator: " ").map(String.init)
        }
        let plain = try selected(), filtered = try selected("--concepts-from-text"), rejected = try words("rejected.txt")[0]
        #expect(Set(plain) == Set(try words("expected.txt")) && plain.count == 8)
        #expect(Set(filtered) == Set(try words("expected-filtered.txt")) && filtered.count == 8)
        #expect(plain.contains(rejected) && !filtered.contains(rejected))
        try expectFailure(["select", store, "--set", "pool", "--method", "paser", "-k", "3", "--degradation-column", "nope"], saying: "has no column \"nope\"")
        try expectFailure(["select", store, "--set", "pool", "--method", "paser", "-k", "3", "--allocation", "even"],
                          saying: "--allocation must be one of proportional, released-code, uniform, found even")
        try expectFailure(["select", store, "--set", "pool", "--method", "paser", "-k", "8", "--concepts", "--concepts-from-text"],
                          saying: "give at most one of --concepts and --concepts-from-text")
        try expectFailure(["select", store, "--set", "pool", "--method", "paser", "-k", "8", "--concepts-from-text", "--stopwords", "/nonexistent/stop.txt"],
                          saying: "cannot read the stopword file /nonexistent/stop.txt")
    }
}
