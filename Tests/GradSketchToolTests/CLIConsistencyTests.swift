import Foundation
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The tool as a user expects it: `--json` everywhere with one key style and one error shape,
/// the same spelling of `-k`, results ranked as they read, and a README that runs.
@Suite struct CLIConsistencyTests {
    /// Every leaf command, found by walking the SUBCOMMANDS sections of the help.
    static func leafCommands(_ path: [String] = []) throws -> [[String]] {
        let help = try ChildProcess.tool(arguments: path + ["--help"]).standardOutput
        guard let section = help.range(of: "SUBCOMMANDS:") else { return [path] }
        let names = help[section.upperBound...].split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first, name.allSatisfy({ $0.isLowercase || $0 == "-" }) else { return nil }
            return String(name)
        }.filter { $0 != "help" }
        return try names.flatMap { try leafCommands(path + [$0]) }
    }

    @Test func everyCommandTakesJSON() throws {
        let commands = try Self.leafCommands()
        // `reproduce` is its own tool, gradsketch-reproduce (issue 13: experiments leave the
        // production CLI's dependency graph); `gradsketch reproduce` only execs it (issue 15).
        #expect(commands.count >= 25, "found \(commands)")
        #expect(commands.contains(["reproduce"]), "found \(commands)")
        // `serve` runs gradsketch-serve, a server whose every answer is JSON (Spec/serve.md),
        // with no one-shot output for --json to shape; `reproduce` execs gradsketch-reproduce,
        // whose own help (with --json) is only there when that binary is built beside the CLI.
        for command in commands where command != ["serve"] && command != ["reproduce"] {
            let help = try ChildProcess.tool(arguments: command + ["--help"]).standardOutput
            #expect(help.contains("--json"), "gradsketch \(command.joined(separator: " ")) has no --json")
        }
    }

    /// Keys of the tool's own JSON that are not snake_case; keys inside set attributes and
    /// method parameters are user data and not checked.
    static func nonSnakeKeys(_ value: Any, path: String = "") -> [String] {
        if let object = value as? [String: Any] {
            return object.flatMap { key, child -> [String] in
                let bad = key.range(of: "^[a-z][a-z0-9_]*$", options: .regularExpression) == nil ? ["\(path)/\(key)"] : []
                return bad + (["attributes", "parameters"].contains(key) ? [] : nonSnakeKeys(child, path: path + "/" + key))
            }
        }
        if let array = value as? [Any] { return array.flatMap { nonSnakeKeys($0, path: path + "[]") } }
        return []
    }

    @Test func allJSONKeysAreSnakeCase() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        try fixture.makeRows("rows.npy", rows: 300, k: 16)
        try fixture.makeRows("weights.npy", rows: 4, k: 3)
        try fixture.makeRows("q.npy", rows: 1, k: 16)
        let ids = try fixture.writeLines("ids.txt", (0..<300).map { "doc\($0)" })
        let drop = try fixture.writeLines("drop.txt", ["doc3", "doc4"])
        let outputs: [[String]] = [
            ["append", store, "--set", "s", "--rows", fixture.path("rows.npy"), "--ids", ids, "--json"],
            ["info", store, "--json"],
            ["tensors", "put", store, "--name", "w", fixture.path("weights.npy"), "--json"],
            ["tensors", "put", store, "--name", "w2", fixture.path("weights.npy"), "--json"],
            ["tensors", "delta", store, "--name", "d", "--from", "w", "--to", "w2", "--json"],
            ["tensors", "list", store, "--name", "w", "--json"],
            ["delete", store, "--set", "s", "--ids", drop, "--json"],
            ["log", store, "--json"],
            ["export", store, "--set", "s", "--out", fixture.path("out.npy"), "--json"],
            ["index", "build", store, "--set", "s", "--lists", "4", "--json"],
            ["index", "info", store, "--set", "s", "--json"],
            ["query", store, "--set", "s", "--vector", fixture.path("q.npy"), "-k", "3", "--json"],
            ["select", store, "--set", "s", "--strategy", "random", "-k", "5", "--save", "r", "--json"],
            ["results", "list", store, "--json"],
            ["results", "show", store, "--name", "r", "--json"],
            ["results", "export", store, "--name", "r", "--out", fixture.path("r.csv"), "--json"],
            ["verify", store, "--json"],
            ["pack", store, "--out", fixture.path("packed.h5"), "--json"],
            ["vacuum", store, "--dry-run", "--json"],
            ["init", fixture.path("second"), "--json"],
        ]
        for arguments in outputs {
            let result = try expectSuccess(ChildProcess.tool(arguments: arguments))
            let parsed = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8), options: [.fragmentsAllowed])
            #expect(Self.nonSnakeKeys(parsed).isEmpty, "gradsketch \(arguments[0]) \(arguments[1]): keys \(Self.nonSnakeKeys(parsed))")
        }
    }

    struct ErrorOutput: Decodable {
        struct Detail: Decodable { let code: String, message: String, path: String? }
        let error: Detail
    }

    @Test func errorsAreJSONUnderTheJSONFlag() throws {
        let fixture = try ToolFixture()
        // A store error: exit 1, the error object on stdout, the message still on stderr.
        let missing = fixture.path("nowhere")
        let failed = try ChildProcess.tool("info", missing, "--json")
        #expect(failed.status == 1)
        let error = try JSONDecoder().decode(ErrorOutput.self, from: Data(failed.standardOutput.utf8)).error
        #expect(error.path == missing && !error.message.isEmpty && error.code.range(of: "^[a-z_]+$", options: .regularExpression) != nil)
        #expect(failed.standardError.contains(error.message))
        // Usage errors (parsing, and checks in the command) keep exit status 64.
        let parse = try ChildProcess.tool("append", fixture.store, "--json")
        #expect(parse.status == 64)
        let parseError = try JSONDecoder().decode(ErrorOutput.self, from: Data(parse.standardOutput.utf8)).error
        #expect(parseError.code == "usage" && parseError.message.contains("--set"))
        try fixture.makeRows("rows.npy", rows: 10, k: 4)
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", fixture.path("rows.npy")))
        let usage = try ChildProcess.tool("query", fixture.store, "--set", "s", "--json")
        #expect(usage.status == 64)
        #expect(try JSONDecoder().decode(ErrorOutput.self, from: Data(usage.standardOutput.utf8)).error.message.contains("exactly one query source"))
        // Without --json, stdout stays empty.
        let plain = try ChildProcess.tool("info", missing)
        #expect(plain.status == 1 && plain.standardOutput.isEmpty && plain.standardError.contains("gradsketch: error:"))
    }

    @Test func projectTakesShortK() throws {
        let fixture = try ToolFixture()
        try fixture.makeRows("grads.npy", rows: 20, k: 50)
        struct Output: Decodable { let rows: Int, k: Int, version: Int? }
        let result = try expectSuccess(ChildProcess.tool("project", fixture.store, "--rows", fixture.path("grads.npy"), "--set", "g", "--seed", "3", "-k", "16", "--json"))
        let output = try JSONDecoder().decode(Output.self, from: Data(result.standardOutput.utf8))
        #expect(output.rows == 20 && output.k == 16 && output.version == 1)
        #expect(try Store(opening: fixture.store).sketchSet("g").k == 16)
    }

    @Test func initCreatesMissingParentsOrNamesTheFileInTheWay() throws {
        let scratch = try TemporaryDirectory()
        let nested = scratch.path + "/runs/deeper/store"
        let created = try expectSuccess(ChildProcess.tool("init", nested))
        #expect(created.standardOutput.contains("created directory \(scratch.path)/runs"))
        #expect(try Store(opening: nested).latestVersion() == 0)
        try Data("x".utf8).write(to: URL(fileURLWithPath: scratch.path + "/file"))
        try expectFailure(["init", scratch.path + "/file/store"], saying: "cannot create a store under \(scratch.path)/file: expected a directory, found a file")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/file/store"))
    }

    /// In-Run values against numpy's Σ_t η_t ⟨v_t, s_{t,z}⟩: `value -k 3 --json` gives the three
    /// lowest, in order, and says how many there are in all.
    @Test func valueJSONHonoursK() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(5)
        steps, batch, k = 4, 6, 8
        s = rng.standard_normal((steps * batch, k)).astype(np.float32)
        v = rng.standard_normal((steps, k)).astype(np.float32)
        ids = [f"ex{int(e)}@{t}" for t in range(steps) for e in rng.choice(10, batch, replace=False)]
        eta = np.full(steps * batch, 0.1)
        np.save(f"{out}/log.npy", s); np.save(f"{out}/val.npy", v)
        np.save(f"{out}/step.npy", np.repeat(np.arange(steps), batch).astype(np.float64)); np.save(f"{out}/lr.npy", eta)
        open(f"{out}/log_ids.txt", "w").writelines(i + "\\n" for i in ids)
        open(f"{out}/val_ids.txt", "w").writelines(f"{t}\\n" for t in range(steps))
        values = {}
        for row, name in enumerate(ids):
            example, t = name.split("@")
            values[example] = values.get(example, 0.0) + eta[row] * float(np.dot(v[int(t)].astype(np.float64), s[row].astype(np.float64)))
        ranked = sorted(values, key=lambda e: (values[e], e))
        print(" ".join(ranked))
        """
        let oracle = try expectSuccess(ChildProcess.python(script, [fixture.scratch.path]))
        let expected = oracle.standardOutput.split(whereSeparator: \.isWhitespace).map(String.init)
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("append", store, "--set", "log", "--rows", fixture.path("log.npy"), "--ids", fixture.path("log_ids.txt"),
                                            "--column", "step=" + fixture.path("step.npy"), "--column", "learning_rate=" + fixture.path("lr.npy")))
        try expectSuccess(ChildProcess.tool("append", store, "--set", "val", "--rows", fixture.path("val.npy"), "--ids", fixture.path("val_ids.txt")))
        struct Output: Decodable {
            struct Row: Decodable { let rank: Int, id: String }
            let count: Int, rows: [Row]
        }
        let result = try expectSuccess(ChildProcess.tool("value", store, "--log", "log", "--validation", "val", "-k", "3", "--save", "v", "--json"))
        let output = try JSONDecoder().decode(Output.self, from: Data(result.standardOutput.utf8))
        #expect(output.rows.map(\.id) == Array(expected.prefix(3)) && output.rows.map(\.rank) == [1, 2, 3])
        #expect(output.count == expected.count)
    }

    struct ShownResult: Decodable {
        struct Row: Decodable { let rank: Int, id: String }
        let rows: [Row]
    }

    /// A valuation saved in example order (as the experiments save In-Run values) is shown and
    /// exported by score, lowest first; a selection keeps its pick order.
    @Test func resultsAreShownAndExportedInRankOrder() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        // Results name a set and version their positions lie in (Spec §11): a 4-row set "log".
        try expectSuccess(ChildProcess.tool("append", store, "--set", "log", "--rows", try fixture.makeRows("log.npy", rows: 4, k: 3),
                                            "--ids", try fixture.writeLines("log.txt", ["ex0@0", "ex1@0", "ex2@0", "ex3@0"])))
        let logVersion = try Store(opening: store).latestVersion()
        let scores = [0.5, -1.0, 2.0, 0.1]
        try Store(opening: store).saveResult("by-example", method: "in-run-shapley/first-order", set: "log", setVersion: logVersion, parameters: [:],
                                             positions: [0, 1, 2, 3], ids: ["ex0", "ex1", "ex,2", "ex3"], scores: scores)
        let shown = try expectSuccess(ChildProcess.tool("results", "show", store, "--name", "by-example", "--json", "--ids-out", fixture.path("ranked.txt")))
        #expect(try String(contentsOfFile: fixture.path("ranked.txt"), encoding: .utf8) == "ex1\nex3\nex0\nex,2\n")
        let ranked = try JSONDecoder().decode(ShownResult.self, from: Data(shown.standardOutput.utf8))
        #expect(ranked.rows.map(\.id) == ["ex1", "ex3", "ex0", "ex,2"] && ranked.rows.map(\.rank) == [1, 2, 3, 4])
        // A selection keeps its pick order.
        try Store(opening: store).saveResult("picked", method: "select/greedy", set: "log", setVersion: logVersion, parameters: [:],
                                             positions: [3, 1], ids: ["ex3@0", "ex1@0"], scores: [0.9, 0.2])
        let picked = try expectSuccess(ChildProcess.tool("results", "show", store, "--name", "picked", "--json"))
        #expect(try JSONDecoder().decode(ShownResult.self, from: Data(picked.standardOutput.utf8)).rows.map(\.id) == ["ex3@0", "ex1@0"])
        let text = try expectSuccess(ChildProcess.tool("results", "show", store, "--name", "by-example")).standardOutput
        #expect(text.split(separator: "\n").dropFirst().map { $0.split(separator: " ").map(String.init) } ==
                [["1", "ex1", "-1"], ["2", "ex3", "0.1"], ["3", "ex0", "0.5"], ["4", "ex,2", "2"]])

        // results export writes the same ranking; ids with a comma are quoted.
        try expectSuccess(ChildProcess.tool("results", "export", store, "--name", "by-example", "--out", fixture.path("values.csv")))
        #expect(try String(contentsOfFile: fixture.path("values.csv"), encoding: .utf8) ==
                "rank,id,position,score\n1,ex1,1,-1.0\n2,ex3,3,0.1\n3,ex0,0,0.5\n4,\"ex,2\",2,2.0\n")
        try expectSuccess(ChildProcess.tool("results", "export", store, "--name", "picked", "--out", fixture.path("picked.jsonl")))
        #expect(try String(contentsOfFile: fixture.path("picked.jsonl"), encoding: .utf8) ==
                "{\"id\":\"ex3@0\",\"position\":3,\"rank\":1,\"score\":0.9}\n{\"id\":\"ex1@0\",\"position\":1,\"rank\":2,\"score\":0.2}\n")
        try expectFailure(["results", "export", store, "--name", "picked", "--out", store + "/segments/x.csv"], saying: "cannot write the output inside the store")
        try expectFailure(["results", "export", store, "--name", "picked", "--out", fixture.path("x.txt")], saying: "expected an output file ending in .csv or .jsonl")
        #expect(!FileManager.default.fileExists(atPath: store + "/segments/x.csv"))
    }

    struct BuildOutput: Decodable {
        struct Point: Decodable, Equatable { let nprobe: Int, recall: Double }
        let lists: Int, defaultNprobe: Int, tuning: [Point], warnings: [String]
    }

    struct InfoOutput: Decodable {
        struct Index: Decodable { let name: String, lists: Int, defaultNprobe: Int?, tuning: [BuildOutput.Point], warnings: [String] }
        let indexes: [Index]
    }

    /// Isotropic rows need most lists for the recall target, so the index is flagged as no
    /// better than exact search; clustered rows are not flagged. `index info` repeats the
    /// build's tuning curve in the same shape, as text and as JSON.
    @Test func indexWarnsWhenItGainsNothingOverExactSearch() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(9)
        np.save(f"{out}/isotropic.npy", rng.standard_normal((2000, 32)).astype(np.float32))
        centers = 10 * np.eye(32, dtype=np.float32)[:16]
        np.save(f"{out}/clustered.npy", (centers[rng.integers(0, 16, 2000)] + rng.standard_normal((2000, 32))).astype(np.float32))
        """
        try expectSuccess(ChildProcess.python(script, [fixture.scratch.path]))
        let store = fixture.store
        let curve = { (output: String) in
            output.split(separator: "\n").first { $0.contains("held-out recall@10 by nprobe:") }.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        var indexes: [String: InfoOutput.Index] = [:]
        for name in ["isotropic", "clustered"] {
            try expectSuccess(ChildProcess.tool("append", store, "--set", name, "--rows", fixture.path(name + ".npy")))
            let built = try expectSuccess(ChildProcess.tool("index", "build", store, "--set", name, "--lists", "16"))
            let info = try expectSuccess(ChildProcess.tool("index", "info", store, "--set", name, "--json"))
            let index = try #require(try toolJSONDecoder().decode(InfoOutput.self, from: Data(info.standardOutput.utf8)).indexes.first)
            indexes[name] = index
            let text = try expectSuccess(ChildProcess.tool("index", "info", store, "--set", name))
            #expect(curve(text.standardOutput) != nil && curve(text.standardOutput) == curve(built.standardOutput))
            if index.warnings.isEmpty {
                #expect(!built.standardError.contains("warning") && !text.standardError.contains("warning"))
            } else {
                for output in [built.standardError, text.standardError] {
                    #expect(output.contains("gradsketch: warning: index ip probes \(index.defaultNprobe ?? -1) of 16 lists"), "\(output)")
                    #expect(output.contains("gains little over exact search"))
                }
            }
            // --json of the build: the same curve shape and the same verdict.
            let again = try expectSuccess(ChildProcess.tool("index", "build", store, "--set", name, "--lists", "16", "--name", "again", "--json"))
            let report = try toolJSONDecoder().decode(BuildOutput.self, from: Data(again.standardOutput.utf8))
            #expect(!report.tuning.isEmpty && report.tuning.allSatisfy { (1...16).contains($0.nprobe) && (0...1).contains($0.recall) })
            #expect(report.warnings.isEmpty == (report.defaultNprobe * 2 < report.lists))
        }
        let isotropic = try #require(indexes["isotropic"]), clustered = try #require(indexes["clustered"])
        #expect((isotropic.defaultNprobe ?? 0) * 2 >= 16 && !isotropic.warnings.isEmpty, "isotropic: nprobe \(String(describing: isotropic.defaultNprobe))")
        #expect((clustered.defaultNprobe ?? 16) * 2 < 16 && clustered.warnings.isEmpty, "clustered: nprobe \(String(describing: clustered.defaultNprobe))")
    }

    /// The README doc-test harness runs every unmarked command, skips marked blocks saying
    /// why, and fails naming the first failing command.
    @Test func readmeHarnessNamesTheFirstFailingCommand() throws {
        let scratch = try TemporaryDirectory()
        let readme = scratch.path + "/README.md"
        try Data("""
        # Example

        <!-- doc-test: skip (needs a GPU) -->
        ```sh
        false
        ```

        ```sh
        gradsketch init runs/store    # makes runs/
        gradsketch append runs/store --set s \\
            --rows missing.npy
        gradsketch info runs/store
        ```

        """.utf8).write(to: URL(fileURLWithPath: readme))
        let result = try ChildProcess.run("/usr/bin/env", ["bash", Repository.root + "/Tools/readme-test.sh", readme],
                                          environment: ["GRADSKETCH_BIN_DIR": ChildProcess.productsDirectory])
        #expect(result.status != 0)
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.contains("skip README.md:4: block not run: needs a GPU"), "\(result.standardOutput)")
        #expect(lines.contains { $0.hasPrefix("ok   README.md:9 ") && $0.hasSuffix("gradsketch init runs/store    # makes runs/") }, "\(result.standardOutput)")
        #expect(lines.contains("FAIL README.md:10 (exit 1): gradsketch append runs/store --set s \\"), "\(result.standardOutput)")
        #expect(result.standardOutput.contains("missing.npy"))
        #expect(lines.contains("readme-test: 1 commands not run after the failure"))
        #expect(lines.last == "1 passed, 1 failed")
    }
}
