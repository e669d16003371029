import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Crashes, corruption and concurrent writers (Spec §7.2, §4).
@Suite(.serialized) struct DurabilityTests {
    /// Kills a writer with SIGKILL at random instants during appends, many times. After every
    /// kill the store must open at its last commit with every committed row there, the killed
    /// append all there or not at all, and `verify` clean.
    @Test func killedWritersLoseNothingCommitted() throws {
        let fixture = try ToolFixture()
        let rows = 4000, k = 512
        let file = try fixture.makeRows("big.npy", rows: rows, k: k)
        // How long one uninterrupted append takes here, to spread the kills over it.
        let started = Date()
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", file,
                                            "--ids", try fixture.writeLines("ids-warm.txt", (0..<rows).map { "warm-\($0)" })))
        let duration = Date().timeIntervalSince(started)
        var generator = SplitMix64(seed: 20261124)
        var committed: Set<Int> = []   // batches whose writer exited 0
        var uncertain: Set<Int> = []   // batches whose writer was killed
        var killedMidway = 0
        for batch in 0..<24 {
            let ids = try fixture.writeLines("ids-\(batch).txt", (0..<rows).map { "b\(batch)-\($0)" })
            let writer = try ChildProcess.start(ChildProcess.gradsketch, ["append", fixture.store, "--set", "s", "--rows", file, "--ids", ids])
            usleep(UInt32(Double.random(in: 0...(duration * 1.1), using: &generator) * 1e6))
            writer.killHard()
            let result = writer.wait()
            if result.wasSignalled { uncertain.insert(batch); killedMidway += 1 } else {
                #expect(result.status == 0, "\(result.standardError)")
                committed.insert(batch)
            }

            // A fresh reader, as another process would open the store after the crash.
            let store = try Store(opening: fixture.store)
            let present = Set(try store.sketchSet("s").ids())
            for done in committed {
                #expect(present.contains("b\(done)-0") && present.contains("b\(done)-\(rows - 1)"), "committed batch \(done) lost")
            }
            for killed in uncertain {
                let count = (0..<rows).filter { present.contains("b\(killed)-\($0)") }.count
                #expect(count == 0 || count == rows, "killed batch \(killed) is partly visible: \(count) rows")
            }
            #expect(present.count % rows == 0)
        }
        #expect(killedMidway > 0, "no writer was killed mid-append; the test did not test anything")
        let store = try Store(opening: fixture.store)
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")
        // Half-written files are invisible; vacuum (no grace) removes them and nothing else.
        let before = try store.sketchSet("s").floatRows().count
        _ = try store.vacuum(grace: 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.store + "/tmp").isEmpty)
        let after = try Store(opening: fixture.store)
        #expect(try after.sketchSet("s").floatRows().count == before)
        #expect(try after.verify().isClean)
    }

    /// Flips one byte in each kind of file at several places; `verify` names the file each
    /// time and reads never return the corrupted data.
    @Test func flippedBytesAreFoundWhereTheyAre() throws {
        let fixture = try ToolFixture()
        let rows = try fixture.makeRows("rows.npy", rows: 300, k: 64)
        let ids = try fixture.writeLines("ids.txt", (0..<300).map { "r\($0)" })
        let labels = try fixture.writeLines("labels.txt", (0..<300).map { "l\($0 % 4)" })
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", rows, "--ids", ids, "--labels", labels))
        try expectSuccess(ChildProcess.tool("delete", fixture.store, "--set", "s", "--ids", try fixture.writeLines("drop.txt", ["r5", "r7"])))
        let weights = try fixture.makeRows("w.npy", rows: 40, k: 40, seed: 4)
        try expectSuccess(ChildProcess.tool("tensors", "put", fixture.store, "--name", "base", weights))

        func files(in directory: String) throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: fixture.store + "/" + directory).map { directory + "/" + $0 }
        }
        let targets = try files(in: "segments") + files(in: "deletions") + files(in: "tensors")
        #expect(targets.count == 3)
        var generator = SplitMix64(seed: 7)
        for target in targets {
            let size = try #require(FileManager.default.attributesOfItem(atPath: fixture.store + "/" + target)[.size] as? Int)
            let positions = [0, 100, size / 2, size - 1] + (0..<4).map { _ in Int.random(in: 0..<size, using: &generator) }
            for position in positions {
                let copy = fixture.path("copy-\(UUID().uuidString)")
                try FileManager.default.copyItem(atPath: fixture.store, toPath: copy)
                defer { try? FileManager.default.removeItem(atPath: copy) }
                let handle = try #require(FileHandle(forUpdatingAtPath: copy + "/" + target))
                try handle.seek(toOffset: UInt64(position))
                let original = try #require(try handle.read(upToCount: 1)?.first)
                try handle.seek(toOffset: UInt64(position))
                try handle.write(contentsOf: [original ^ 0x10])
                try handle.close()

                let result = try ChildProcess.tool("verify", copy)
                #expect(result.status == 1, "flip at \(position) of \(target) not detected")
                #expect(result.standardOutput.contains(target), "verify did not name \(target): \(result.standardOutput)\(result.standardError)")
            }
        }
        // A flipped row byte: export fails with a checksum error instead of returning it.
        let segment = try #require(try files(in: "segments").first)
        let store = try Store(opening: fixture.store)
        let entry = try #require(try store.manifest().sketchSets["s"]?.segments.first)
        #expect(entry.file == segment)
        let copy = fixture.path("rows-flip")
        try FileManager.default.copyItem(atPath: fixture.store, toPath: copy)
        let check = try ChildProcess.python("""
        import sys, h5py
        with h5py.File(sys.argv[1], "r") as f: print(f["rows"].id.get_offset())
        """, [copy + "/" + segment])
        let offset = try #require(Int(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)))
        let handle = try #require(FileHandle(forUpdatingAtPath: copy + "/" + segment))
        try handle.seek(toOffset: UInt64(offset + 1234))
        try handle.write(contentsOf: [0x5A])
        try handle.close()
        try expectFailure(["export", copy, "--set", "s", "--out", fixture.path("never.npy")], saying: "checksum mismatch in dataset rows")
        #expect(!FileManager.default.fileExists(atPath: fixture.path("never.npy")))

        // Manifests: every flipped byte either fails the open with an error naming the
        // manifest, or leaves content that reads back identical (unused HDF5 bytes).
        let manifestFile = copy + "/versions/" + "v000000000002.h5"
        let pristine = try Data(contentsOf: URL(fileURLWithPath: manifestFile))
        let expectedManifest = try Store(opening: fixture.store).manifest(at: 2)
        var undetected = 0
        for position in stride(from: 0, to: pristine.count, by: 7) {
            var bytes = pristine
            bytes[position] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: manifestFile))
            do {
                let read = try Store(opening: copy).manifest(at: 2)
                #expect(read == expectedManifest, "flip at \(position) changed the manifest silently")
                undetected += 1
            } catch let error as StoreError {
                #expect(error.description.contains("v000000000002.h5"), "\(error)")
            }
        }
        try pristine.write(to: URL(fileURLWithPath: manifestFile))
        print("manifest flips with no effect on content: \(undetected) of \(pristine.count / 7 + 1)")
    }

    /// Several writer processes append at once while a reader reads; every commit lands and
    /// every version the reader sees is consistent.
    @Test func concurrentWritersAllLand() throws {
        let fixture = try ToolFixture()
        let writers = 4, appendsEach = 5, rows = 500
        let file = try fixture.makeRows("rows.npy", rows: rows, k: 64)
        var idFiles: [[String]] = []
        for writer in 0..<writers {
            idFiles.append(try (0..<appendsEach).map { batch in
                try fixture.writeLines("ids-\(writer)-\(batch).txt", (0..<rows).map { "w\(writer)-b\(batch)-\($0)" })
            })
        }
        // Each writer is a shell loop of appends, so the four run truly in parallel.
        let processes = try (0..<writers).map { writer in
            let script = idFiles[writer].map { "\"\(ChildProcess.gradsketch)\" append \"\(fixture.store)\" --set s --rows \"\(file)\" --ids \"\($0)\" || exit 1" }.joined(separator: "\n")
            return try ChildProcess.start("/bin/sh", ["-c", script])
        }
        var readsChecked = 0
        while processes.contains(where: { $0.process.isRunning }) {
            let store = try Store(opening: fixture.store)
            let version = try store.latestVersion()
            if let set = try? store.sketchSet("s", at: version) {
                let ids = try set.ids()
                #expect(ids.count == set.rowCount)
                #expect(Set(ids).count == ids.count)
                #expect(try set.floatRows().count == set.rowCount * 64)
                readsChecked += 1
            }
        }
        for process in processes {
            let result = process.wait()
            #expect(result.status == 0, "\(result.standardError)")
        }
        let store = try Store(opening: fixture.store)
        #expect(try store.latestVersion() == writers * appendsEach)
        #expect(try store.sketchSet("s").rowCount == writers * appendsEach * rows)
        // Every append was its own process: one writer name per commit, plus init.
        #expect(Set(try store.log().map(\.change.writer)).count == writers * appendsEach + 1)
        #expect(try store.verify().isClean)
        #expect(readsChecked > 0)

        // Writers racing to add the same ids: exactly one wins, the others are refused.
        let same = try fixture.writeLines("same.txt", (0..<rows).map { "same-\($0)" })
        let racers = try (0..<3).map { _ in try ChildProcess.start(ChildProcess.gradsketch, ["append", fixture.store, "--set", "s", "--rows", file, "--ids", same]) }
        let outcomes = racers.map { $0.wait() }
        #expect(outcomes.filter { $0.status == 0 }.count == 1)
        #expect(outcomes.filter { $0.standardError.contains("is already in set s") }.count == 2)
        #expect(try Store(opening: fixture.store).sketchSet("s").rowCount == (writers * appendsEach + 1) * rows)
    }

    /// Vacuum removes exactly what no retained version references.
    @Test func vacuumKeepsWhatRetainedVersionsNeed() throws {
        let fixture = try ToolFixture()
        let rows = try fixture.makeRows("rows.npy", rows: 50, k: 16)
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", rows, "--ids", try fixture.writeLines("a.txt", (0..<50).map { "a\($0)" })))
        try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", rows, "--ids", try fixture.writeLines("b.txt", (0..<50).map { "b\($0)" })))
        try expectSuccess(ChildProcess.tool("delete", fixture.store, "--set", "s", "--ids", try fixture.writeLines("d1.txt", ["a1", "b2"])))
        try expectSuccess(ChildProcess.tool("delete", fixture.store, "--set", "s", "--ids", try fixture.writeLines("d2.txt", ["a3"])))
        // An orphan as a killed writer leaves it, old enough to be collected.
        let orphan = fixture.store + "/segments/" + String(repeating: "ab", count: 16) + ".h5"
        try Data("orphan".utf8).write(to: URL(fileURLWithPath: orphan))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -7200)], ofItemAtPath: orphan)

        let dry = try expectSuccess(ChildProcess.tool("vacuum", fixture.store, "--keep-last", "1", "--dry-run", "--json"))
        let plan = try toolJSONDecoder().decode(VacuumReport.self, from: Data(dry.standardOutput.utf8))
        #expect(plan.removedVersions == [0, 1, 2, 3])
        #expect(FileManager.default.fileExists(atPath: orphan))
        // The first deletion list of segment a (a1 only) is superseded by the cumulative one; the
        // young-file grace keeps it unless grace is 0.
        let young = try toolJSONDecoder().decode(VacuumReport.self, from: Data(try expectSuccess(ChildProcess.tool("vacuum", fixture.store, "--keep-last", "1", "--json")).standardOutput.utf8))
        #expect(young.removedFiles == ["segments/" + String(repeating: "ab", count: 16) + ".h5"])
        // Also young: the segment lists (Spec §7.1) of versions 1–3, which version 4 replaced.
        #expect(young.keptYoungFiles.filter { $0.hasPrefix("deletions/") }.count == 1)
        #expect(young.keptYoungFiles.filter { $0.hasPrefix("segment-lists/") }.count == 3 && young.keptYoungFiles.count == 4)
        let done = try toolJSONDecoder().decode(VacuumReport.self, from: Data(try expectSuccess(ChildProcess.tool("vacuum", fixture.store, "--grace", "0", "--json")).standardOutput.utf8))
        #expect(done.removedFiles.filter { $0.hasPrefix("deletions/") }.count == 1)
        #expect(done.removedFiles.filter { $0.hasPrefix("segment-lists/") }.count == 3 && done.removedFiles.count == 4)
        let store = try Store(opening: fixture.store)
        #expect(try store.versions() == [4])
        #expect(try store.sketchSet("s").rowCount == 97)
        #expect(try store.verify().isClean)
        try expectFailure(["export", fixture.store, "--set", "s", "--at", "2", "--out", fixture.path("old.npy")], saying: "retained versions: 4–4")
    }
}
