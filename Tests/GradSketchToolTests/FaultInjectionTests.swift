import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Failing disks and power cuts at exact system calls of a commit (Spec §7.2), injected by
/// strace into the built `gradsketch`.
///
/// Each trial copies a small template store, runs one command with one call failing (EIO,
/// ENOSPC) or the process killed at it, and then checks with fresh readers: a command that
/// exited 0 left its version readable with the right content; a command that failed left no
/// new version; a killed command left either no new version or a complete one; `verify` is
/// clean; no temporary file is left by a command that exited; and the set still takes a
/// later append.
@Suite(.serialized) struct FaultInjectionTests {
    static let strace = ["/usr/bin/strace", "/bin/strace"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let calls = ["fsync", "rename", "link", "unlink", "unlinkat"]
    static let rows = 12, k = 8

    /// One command to break, with what a successful run must have committed.
    struct Scenario {
        let name: String
        let arguments: (_ store: String) -> [String]
        let checkCommitted: (_ store: Store) throws -> Void
    }

    enum Outcome: String, CaseIterable {
        case acknowledged = "exit 0"
        case acknowledgedWithWarning = "exit 0 + warning"
        case failedNothingCommitted = "exit 1, no version"
        case killedNothingCommitted = "killed, no version"
        case killedCommitted = "killed, version complete"
    }

    /// Row `i` of batch `batch`, column `j`: exact in float32, computed here and by numpy alike.
    static func value(batch: Int, row: Int, column: Int) -> Float {
        Float(batch * 1000 + row * k + column) * 0.25
    }

    @Test(.enabled(if: strace != nil, "strace is not installed; Tools/setup.sh installs it"))
    func everyCommitCallFailingOrKilledLosesNothing() throws {
        let fixture = try ToolFixture()
        func rowsFile(batch: Int) throws -> String {
            try fixture.makeRows("rows-\(batch).npy", rows: Self.rows, k: Self.k, code: "x = ((\(batch) * 1000 + np.arange(\(Self.rows * Self.k))) * 0.25).astype(np.float32).reshape(\(Self.rows), \(Self.k))")
        }
        let idsA = (0..<Self.rows).map { "a\($0)" }, idsB = (0..<Self.rows).map { "b\($0)" }
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", try rowsFile(batch: 0),
                                            "--ids", try fixture.writeLines("a.txt", idsA)))
        let template = fixture.store
        let baseVersion = try fixture.latestVersion()
        let rowsB = try rowsFile(batch: 1), idsBFile = try fixture.writeLines("b.txt", idsB)
        let deleted = ["a3", "a7"], deleteFile = try fixture.writeLines("delete.txt", deleted)
        let weights = try rowsFile(batch: 2)

        func expectRows(_ store: Store, _ expected: [(id: String, batch: Int, row: Int)]) throws {
            let set = try store.sketchSet("s")
            #expect(try set.ids() == expected.map(\.id))
            let values = try set.floatRows()
            let wanted = expected.flatMap { item in (0..<Self.k).map { Self.value(batch: item.batch, row: item.row, column: $0) } }
            #expect(values == wanted)
        }
        let original = idsA.indices.map { (id: idsA[$0], batch: 0, row: $0) }
        let scenarios = [
            Scenario(name: "append", arguments: { ["append", $0, "--set", "s", "--rows", rowsB, "--ids", idsBFile] }) { store in
                try expectRows(store, original + idsB.indices.map { (id: idsB[$0], batch: 1, row: $0) })
            },
            Scenario(name: "delete", arguments: { ["delete", $0, "--set", "s", "--ids", deleteFile] }) { store in
                try expectRows(store, original.filter { !deleted.contains($0.id) })
            },
            Scenario(name: "tensors put", arguments: { ["tensors", "put", $0, "--name", "w", weights] }) { store in
                let tensor = try store.tensorSet("w").tensor(named: "rows-2")
                #expect(tensor.shape == [Self.rows, Self.k])
                #expect(try tensor.floats() == (0..<(Self.rows * Self.k)).map { Self.value(batch: 2, row: $0 / Self.k, column: $0 % Self.k) })
            },
        ]

        var matrix: [String: [Outcome: Int]] = [:]
        var trials = 0
        let started = Date()
        for scenario in scenarios {
            // How often the command makes each call when nothing fails.
            let counted = fixture.path("count-\(trials)")
            try FileManager.default.copyItem(atPath: template, toPath: counted)
            let trace = fixture.path("trace-\(trials).txt")
            let clean = try ChildProcess.run(Self.strace!, ["-f", "-qq", "-o", trace, "-e", "trace=" + Self.calls.joined(separator: ",")]
                                             + [ChildProcess.gradsketch] + scenario.arguments(counted))
            try #require(clean.status == 0, "\(scenario.name) fails even without injection: \(clean.standardError)")
            let traced = try String(contentsOfFile: trace, encoding: .utf8)
            var counts: [String: Int] = [:]
            for line in traced.split(separator: "\n") {
                // "PID  call(args) = result"; a call another thread interrupted continues on a
                // "<... call resumed>" line, which is not a second call.
                let call = line.drop { $0.isNumber || $0 == " " }.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                if Self.calls.contains(String(call)) { counts[String(call), default: 0] += 1 }
            }
            #expect((counts["link"] ?? 0) == 1, "\(scenario.name) should link exactly one manifest: \(counts)")

            for call in Self.calls {
                for occurrence in 0..<(counts[call] ?? 0) {
                    for fault in ["error=EIO", "error=ENOSPC", "signal=KILL"] {
                        trials += 1
                        let trial = fixture.path("trial-\(trials)")
                        try FileManager.default.copyItem(atPath: template, toPath: trial)
                        defer { try? FileManager.default.removeItem(atPath: trial) }
                        let label = "\(scenario.name): \(call) #\(occurrence + 1) \(fault)"
                        let result = try ChildProcess.run(Self.strace!, ["-f", "-qq", "-o", "/dev/null", "-e", "trace=\(call)",
                                                                         "-e", "inject=\(call):\(fault):when=\(occurrence + 1)"]
                                                          + [ChildProcess.gradsketch] + scenario.arguments(trial))
                        let outcome = try check(trial, result, label: label, baseVersion: baseVersion, original: original,
                                                scenario: scenario, injectedCall: call, expectRows: expectRows)
                        matrix["\(scenario.name): \(call) \(fault)", default: [:]][outcome, default: 0] += 1
                    }
                }
            }
        }
        print("fault injection: \(trials) trials in \(Int(Date().timeIntervalSince(started))) s")
        for (key, outcomes) in matrix.sorted(by: { $0.key < $1.key }) {
            print("  \(key): " + Outcome.allCases.compactMap { outcome in outcomes[outcome].map { "\(outcome.rawValue) ×\($0)" } }.joined(separator: ", "))
        }
        #expect(trials >= 3 * 3 * 5, "too few calls found to break: \(matrix.keys.sorted())")
        // Failures of the calls after the link are the point of Spec §7.2 step 4.
        #expect(matrix.values.contains { ($0[.acknowledgedWithWarning] ?? 0) > 0 })
    }

    /// Runs `gradsketch` under strace with `options`.
    static func traced(_ options: [String], _ arguments: [String]) throws -> ChildProcessResult {
        try ChildProcess.run(strace!, ["-f", "-qq"] + options + [ChildProcess.gradsketch] + arguments)
    }

    /// The fsync of `versions/` after the link fails (issue 12 item 1): the version is live,
    /// so the command says it committed, warns, exits 0 and removes nothing it references.
    @Test(.enabled(if: strace != nil, "strace is not installed; Tools/setup.sh installs it"))
    func anErrorAfterTheLinkReportsTheVersionCommitted() throws {
        let fixture = try ToolFixture()
        let rows = try fixture.makeRows("rows.npy", rows: 10, k: 4)
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", rows,
                                            "--ids", try fixture.writeLines("a.txt", (0..<10).map { "a\($0)" })))
        // -P limits the injection to calls on versions/ (strace follows the descriptor).
        let failVersionsFsync = ["-o", "/dev/null", "-P", fixture.store + "/versions", "-e", "trace=fsync", "-e", "inject=fsync:error=EIO"]
        let append = try Self.traced(failVersionsFsync, ["append", fixture.store, "--set", "s", "--rows", rows,
                                                         "--ids", try fixture.writeLines("b.txt", (0..<10).map { "b\($0)" })])
        #expect(append.status == 0, "\(append.standardError)")
        #expect(append.standardOutput.contains("version 2"), "\(append.standardOutput)")
        #expect(append.standardError.contains("warning: version 2 is committed, but a step after the commit failed"), "\(append.standardError)")
        #expect(append.standardError.contains("directory fsync failed: Input/output error"), "\(append.standardError)")
        let delete = try Self.traced(failVersionsFsync, ["delete", fixture.store, "--set", "s", "--ids", try fixture.writeLines("d.txt", ["a1", "b1"])])
        #expect(delete.status == 0, "\(delete.standardError)")
        #expect(delete.standardError.contains("warning: version 3 is committed"), "\(delete.standardError)")

        // Every other kind of commit, too.
        let put = try Self.traced(failVersionsFsync, ["tensors", "put", fixture.store, "--name", "w", rows])
        #expect(put.status == 0 && put.standardError.contains("warning: version 4 is committed"), "\(put.standardError)")
        let index = try Self.traced(failVersionsFsync, ["index", "build", fixture.store, "--set", "s", "--lists", "2"])
        #expect(index.status == 0 && index.standardError.contains("warning: version 5 is committed"), "\(index.standardError)")

        let store = try Store(opening: fixture.store)
        #expect(try store.latestVersion() == 5)
        #expect(try store.manifest().sketchSets["s"]?.indexes.count == 1)
        #expect(try store.tensorSet("w").tensor(named: "rows").shape == [10, 4])
        #expect(try store.sketchSet("s").ids() == (0..<10).filter { $0 != 1 }.map { "a\($0)" } + (0..<10).filter { $0 != 1 }.map { "b\($0)" })
        #expect(try store.verify().isClean)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.store + "/tmp").isEmpty)
        // Every later write to the set still works.
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", rows,
                                            "--ids", try fixture.writeLines("c.txt", (0..<10).map { "c\($0)" })))
        try expectSuccess(ChildProcess.tool("delete", fixture.store, "--set", "s", "--ids", try fixture.writeLines("e.txt", ["c2"])))
        #expect(try Store(opening: fixture.store).sketchSet("s").rowCount == 27)
        #expect(try Store(opening: fixture.store).verify().isClean)
    }

    /// A writer stalled right before its link while `vacuum --grace 0` runs in another
    /// process (issue 12 item 3): the writer's pin keeps its segment, and the version it then
    /// commits is complete.
    @Test(.enabled(if: strace != nil, "strace is not installed; Tools/setup.sh installs it"))
    func vacuumDuringAStalledCommitKeepsTheWritersFiles() throws {
        let fixture = try ToolFixture()
        let rows = try fixture.makeRows("rows.npy", rows: 10, k: 4)
        let ids = try fixture.writeLines("ids.txt", (0..<10).map { "r\($0)" })
        // Three seconds of stall at the link, after the segment and the manifest are written.
        let writer = try ChildProcess.start(Self.strace!, ["-f", "-qq", "-o", "/dev/null", "-e", "trace=link", "-e", "inject=link:delay_enter=3000000",
                                                           ChildProcess.gradsketch, "append", fixture.store, "--set", "s", "--rows", rows, "--ids", ids])
        let deadline = Date(timeIntervalSinceNow: 20)
        while (try FileManager.default.contentsOfDirectory(atPath: fixture.store + "/segments")).isEmpty && Date() < deadline {
            usleep(20_000)
        }
        let segments = try FileManager.default.contentsOfDirectory(atPath: fixture.store + "/segments").map { "segments/" + $0 }
        try #require(segments.count == 1, "the writer did not publish its segment in time")
        let vacuum = try expectSuccess(ChildProcess.tool("vacuum", fixture.store, "--grace", "0", "--json"))
        let report = try toolJSONDecoder().decode(VacuumReport.self, from: Data(vacuum.standardOutput.utf8))
        #expect(report.removedFiles.filter { $0.hasPrefix("segments/") }.isEmpty, "vacuum removed the stalled writer's segment: \(report.removedFiles)")
        #expect(report.keptPinnedFiles.contains(segments[0]), "\(report)")
        let result = writer.wait()
        #expect(result.status == 0, "\(result.standardError)")
        let store = try Store(opening: fixture.store)
        #expect(try store.latestVersion() == 1)
        #expect(try store.sketchSet("s").ids() == (0..<10).map { "r\($0)" })
        #expect(try store.verify().isClean)
    }

    /// A full disk at every write HDF5 makes for an append (rows, metadata, the flush in
    /// `H5Fclose`, the manifest): the command says "No space left on device" and exits 1,
    /// never crashing in HDF5 at exit, and leaves the store as it was (issue 12 item 2).
    @Test(.enabled(if: strace != nil, "strace is not installed; Tools/setup.sh installs it"))
    func aFullDiskFailsEveryWriteCleanly() throws {
        let fixture = try ToolFixture()
        // Two row blocks of SegmentWriter.blockBytes, so writes fail between blocks too.
        let rows = try fixture.makeRows("rows.npy", rows: 3000, k: 512)
        let trace = fixture.path("writes.txt")
        let counting = fixture.path("counting")
        try FileManager.default.copyItem(atPath: fixture.store, toPath: counting)
        try expectSuccess(try Self.traced(["-o", trace, "-e", "trace=pwrite64"], ["append", counting, "--set", "s", "--rows", rows]))
        let writes = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").filter { $0.contains("pwrite64(") }.count
        try #require(writes >= 6, "expected HDF5 to write with pwrite64, found \(writes) calls")
        var crashed = 0
        for occurrence in 1...writes {
            let trial = fixture.path("full-\(occurrence)")
            try FileManager.default.copyItem(atPath: fixture.store, toPath: trial)
            let result = try Self.traced(["-o", "/dev/null", "-e", "trace=pwrite64", "-e", "inject=pwrite64:error=ENOSPC:when=\(occurrence)"],
                                         ["append", trial, "--set", "s", "--rows", rows])
            if result.wasSignalled { crashed += 1 }
            #expect(!result.wasSignalled && result.status == 1, "write #\(occurrence): exit \(result.status), signalled \(result.wasSignalled): \(result.standardError.prefix(300))")
            #expect(result.standardError.contains("No space left on device"), "write #\(occurrence): \(result.standardError.prefix(300))")
            let store = try Store(opening: trial)
            #expect(try store.latestVersion() == 0)
            #expect(try FileManager.default.contentsOfDirectory(atPath: trial + "/tmp").isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: trial + "/segments").isEmpty)
            #expect(try store.verify().isClean)
            try FileManager.default.removeItem(atPath: trial)
        }
        print("full disk: \(writes) writes failed one at a time, \(crashed) crashes")
    }

    /// A pack killed before its rename leaves a temporary file; the next pack to the same
    /// output removes it, and every pack fsyncs the output's directory (issue 12 item 4).
    @Test(.enabled(if: strace != nil, "strace is not installed; Tools/setup.sh installs it"))
    func packCleansUpAfterAKilledPackAndSyncsItsDirectory() throws {
        let fixture = try ToolFixture()
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", try fixture.makeRows("rows.npy", rows: 10, k: 4)))
        let directory = fixture.path("packed")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let out = directory + "/out.h5"
        let killed = try Self.traced(["-o", "/dev/null", "-e", "trace=rename", "-e", "inject=rename:signal=KILL"], ["pack", fixture.store, "--out", out])
        #expect(killed.wasSignalled)
        let left = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(left.count == 1 && left.allSatisfy { $0.hasPrefix("out.h5.tmp-") }, "\(left)")

        let trace = fixture.path("pack-trace.txt")
        try expectSuccess(try Self.traced(["-y", "-o", trace, "-e", "trace=fsync"], ["pack", fixture.store, "--out", out]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["out.h5"])
        let calls = try String(contentsOfFile: trace, encoding: .utf8)
        #expect(calls.contains("fsync(") && calls.contains("<" + directory + ">) = 0"), "no fsync of the output directory:\n\(calls)")
        let read = try ChildProcess.python("""
        import sys, h5py
        with h5py.File(sys.argv[1], "r") as f: print(f["sketch_sets/s/rows"].shape)
        """, [out])
        #expect(read.standardOutput.contains("(10, 4)"), "\(read.standardOutput)\(read.standardError)")
    }

    /// Checks one trial's store against what its result promised; returns the outcome.
    private func check(
        _ path: String, _ result: ChildProcessResult, label: String, baseVersion: Int,
        original: [(id: String, batch: Int, row: Int)], scenario: Scenario, injectedCall: String,
        expectRows: (Store, [(id: String, batch: Int, row: Int)]) throws -> Void
    ) throws -> Outcome {
        #expect(!result.standardError.contains("HDF5-DIAG"), "\(label): HDF5 printed its own diagnostics")
        let store = try Store(opening: path)
        let latest = try store.latestVersion()
        let outcome: Outcome
        if result.wasSignalled {
            #expect(latest == baseVersion || latest == baseVersion + 1, "\(label): killed, latest version \(latest)")
            outcome = latest == baseVersion ? .killedNothingCommitted : .killedCommitted
        } else if result.status == 0 {
            #expect(latest == baseVersion + 1, "\(label): exit 0 but latest version is \(latest)")
            outcome = result.standardError.contains("warning:") ? .acknowledgedWithWarning : .acknowledged
        } else {
            #expect(result.status == 1, "\(label): exit \(result.status): \(result.standardError)")
            #expect(latest == baseVersion, "\(label): failed, yet version \(latest) is live: \(result.standardError)")
            #expect(result.standardError.contains("error:"), "\(label): failed without saying why")
            outcome = .failedNothingCommitted
        }
        if latest == baseVersion + 1 {
            try scenario.checkCommitted(store)
        } else {
            try expectRows(store, original)
        }
        let report = try store.verify()
        #expect(report.isClean, "\(label): \(report.problems)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: path + "/tmp")
        if !result.wasSignalled && !injectedCall.hasPrefix("unlink") {
            #expect(leftovers.isEmpty, "\(label): temporary files left: \(leftovers)")
            // A command that exited removed every data file it wrote and did not commit.
            let referenced = try store.versions().reduce(into: Set<String>()) { $0.formUnion(try store.manifest(at: $1).referencedFiles) }
            for directory in ["segments", "deletions", "tensors"] where FileManager.default.fileExists(atPath: path + "/" + directory) {
                let orphans = try FileManager.default.contentsOfDirectory(atPath: path + "/" + directory)
                    .map { directory + "/" + $0 }.filter { !referenced.contains($0) }
                #expect(orphans.isEmpty, "\(label): unreferenced files left: \(orphans)")
            }
        }
        // Whatever happened, the set takes a later append (after a kill, once vacuumed).
        if result.wasSignalled { _ = try store.vacuum(grace: 0) }
        let later = try Store(opening: path)
        let extra = (0..<Self.k).map { Float($0) }
        try extra.withUnsafeBytes { bytes in
            _ = try later.append(to: "s", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: 1, k: Self.k),
                                 annotations: RowAnnotations(ids: ["later"]))
        }
        #expect(try later.sketchSet("s").ids().last == "later", "\(label): the set does not take a later append")
        return outcome
    }
}
