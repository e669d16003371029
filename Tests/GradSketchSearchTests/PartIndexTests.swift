import Foundation
import GradSketchInterchange
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The partitioned 4-bit index (`ivf-rq4`, Spec §10.3) against naive Double-precision search
/// over the same float16-rounded rows, and its files read back without the searcher.
@Suite struct PartIndexTests {
    typealias Fixture = IVFIndexTests
    static let k = IVFIndexTests.k

    static func options(lists: Int, partRows: Int = 1 << 22, groups: Int? = nil) -> PartIndexOptions {
        var options = PartIndexOptions()
        options.lists = lists
        options.groups = groups
        options.partRows = partRows
        options.tuningQueries = 100
        options.iterations = 10
        return options
    }

    static func query(_ rows: [Float], _ q: Int) -> [Float] { Array(rows[(q * k)..<((q + 1) * k)]) }

    @Test func everyListProbedAndEveryCandidateReRankedIsExactSearch() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let rows = Fixture.clustered(900, seed: 11)
        try Fixture.append(store, Array(rows[0..<(500 * Self.k)]), prefix: "a")
        try Fixture.append(store, Array(rows[(500 * Self.k)...]), prefix: "b")
        // Part rows 500: one part per segment.
        let report = try PartIndexBuilder.build(try store.sketchSet("g"), in: store, name: "rq",
                                                options: Self.options(lists: 16, partRows: 500, groups: 4))
        #expect(report.parts == 2 && report.rows == 900 && report.kind == "ivf-rq4")
        #expect(report.peakRSSBytes > 0 && report.indexBytes > 0 && report.memoryBoundBytes > 0)
        let searcher = try PartIndexSearcher(set: try store.sketchSet("g"), index: "rq")
        #expect(searcher.indexedRows == 900 && searcher.exactRows == 0 && searcher.partCount == 2)
        let reference = Fixture.rounded(Array(rows[0..<(500 * Self.k)]), prefix: "a") + Fixture.rounded(Array(rows[(500 * Self.k)...]), prefix: "b")
        let queries = Fixture.clustered(8, seed: 12)
        let all = PartSearchParameters(nprobe: 16, rerank: 10_000, groupProbe: 1)
        let found = try searcher.search(queries: queries, count: 8, k: 10, parameters: all)
        for q in 0..<8 {
            let expected = Fixture.naive(reference, Self.query(queries, q), k: 10, cosine: false)
            #expect(found[q].map(\.id) == expected, "query \(q)")
        }
    }

    @Test func recallOnPlantedClustersAtTheTunedNprobe() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let rows = Fixture.clustered(6000, seed: 2)
        try Fixture.append(store, rows, prefix: "r")
        let report = try PartIndexBuilder.build(try store.sketchSet("g"), in: store, name: "ip", options: Self.options(lists: 64, partRows: 2500))
        #expect(report.tuning.last!.recall >= 0.95, "held-out recall with all lists probed: \(report.tuning)")
        let searcher = try PartIndexSearcher(set: try store.sketchSet("g"), index: "ip")
        let queries = Fixture.clustered(60, seed: 3)
        let reference = Fixture.rounded(rows, prefix: "r")
        let tuned = try searcher.search(queries: queries, count: 60, k: 10)
        var recall = 0.0
        for q in 0..<60 {
            recall += Fixture.recall(tuned[q], Fixture.naive(reference, Self.query(queries, q), k: 10, cosine: false)) / 60
        }
        // The tuned nprobe targets 0.95 on held-out rows; fresh queries may fall a little short.
        #expect(recall >= 0.9, "recall@10 at the tuned nprobe \(searcher.defaults.nprobe), group probe \(searcher.defaults.groupProbe ?? 0): \(recall)")
    }

    /// Two-level training and coding through 2 of 8 groups: rows may land in a list that is not
    /// their nearest, which may cost recall at a given nprobe but never correctness, so probing
    /// every list with an unbounded re-rank is still exact search, and the tuned nprobe keeps
    /// recall on planted clusters.
    @Test func twoLevelTrainingAndAssignmentThroughGroups() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let rows = Fixture.clustered(6000, seed: 4)
        try Fixture.append(store, rows, prefix: "r")
        var options = Self.options(lists: 64, partRows: 2500)
        options.twoLevelTraining = true
        options.assignGroupProbe = 2
        let report = try PartIndexBuilder.build(try store.sketchSet("g"), in: store, name: "ip", options: options)
        #expect(report.lists == 64 && report.groups == 8 && report.assignment == "2 of 8 groups")
        #expect(report.misassignedShare >= 0 && report.misassignedShare < 0.2, "share coded outside the nearest list: \(report.misassignedShare)")
        let searcher = try PartIndexSearcher(set: try store.sketchSet("g"), index: "ip")
        let queries = Fixture.clustered(40, seed: 5)
        let reference = Fixture.rounded(rows, prefix: "r")
        let everything = try searcher.search(queries: queries, count: 40, k: 10,
                                             parameters: PartSearchParameters(nprobe: 64, rerank: 100_000, groupProbe: nil))
        let tuned = try searcher.search(queries: queries, count: 40, k: 10)
        var recall = 0.0
        for q in 0..<40 {
            let expected = Fixture.naive(reference, Self.query(queries, q), k: 10, cosine: false)
            #expect(everything[q].map(\.id) == expected, "query \(q), every list probed")
            recall += Fixture.recall(tuned[q], expected) / 40
        }
        #expect(recall >= 0.9, "recall@10 at the tuned nprobe \(searcher.defaults.nprobe): \(recall)")
    }

    @Test func updateCodesOnlyNewSegmentsAndMergeKeepsEveryListEntry() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let rows = Fixture.clustered(1200, seed: 21)
        try Fixture.append(store, Array(rows[0..<(800 * Self.k)]), prefix: "a")
        try PartIndexBuilder.build(try store.sketchSet("g"), in: store, name: "rq", options: Self.options(lists: 16))
        let first = try store.sketchSet("g").entry.indexes["rq"]!
        let oldPart = first.parts![0]
        let oldBytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: store.path + "/" + oldPart.file))

        // Appended rows, one of them planted to beat every row for a query.
        let query = Self.query(rows, 0)
        try Fixture.append(store, Array(rows[(800 * Self.k)...]) + query.map { $0 * 5 }, prefix: "b")
        let updated = try PartIndexBuilder.update(try store.sketchSet("g"), in: store, name: "rq")
        #expect(updated.rowsCoded == 401 && updated.partsWritten == 1 && updated.parts == 2 && updated.rows == 1201)
        let entry = try store.sketchSet("g").entry.indexes["rq"]!
        #expect(entry.parts![0] == oldPart && entry.quantizerFileUnchanged(from: first))
        #expect(try Foundation.Data(contentsOf: URL(fileURLWithPath: store.path + "/" + oldPart.file)) == oldBytes)
        let searcher = try PartIndexSearcher(set: try store.sketchSet("g"), index: "rq")
        #expect(searcher.indexedRows == 1201 && searcher.exactRows == 0)
        #expect(try searcher.search(queries: query, count: 1, k: 1, parameters: PartSearchParameters(nprobe: 16, rerank: 64, groupProbe: nil))[0].first?.id == "b400")
        #expect(try store.verify().problems.isEmpty)

        // Merge: every (list, position, code row) of the two parts, read with h5py, is in the
        // merged part, and nothing else.
        let before = try Self.listEntries(store: store.path, files: entry.parts!.map(\.file))
        let merged = try PartIndexBuilder.merge(try store.sketchSet("g"), in: store, name: "rq")
        #expect(merged.parts == 1 && merged.partsWritten == 1 && merged.rowsCoded == 0 && merged.rows == 1201)
        let after = try store.sketchSet("g").entry.indexes["rq"]!
        #expect(after.segments == entry.segments && after.parts![0].segments == entry.segments)
        let afterEntries = try Self.listEntries(store: store.path, files: after.parts!.map(\.file))
        #expect(afterEntries.count == 1201 && Set(afterEntries) == Set(before))
        #expect(try store.verify().problems.isEmpty)
        let mergedSearcher = try PartIndexSearcher(set: try store.sketchSet("g"), index: "rq")
        #expect(try mergedSearcher.search(queries: query, count: 1, k: 1, parameters: PartSearchParameters(nprobe: 16, rerank: 64, groupProbe: nil))[0].first?.id == "b400")

        // Vacuum keeps the files the latest version references; older ones may go.
        _ = try store.vacuum(keepLast: 1, grace: 0)
        #expect(try store.verify().problems.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: store.path + "/" + oldPart.file))
    }

    /// "list position code-hex" for every row of the given part files, read with h5py.
    static func listEntries(store: String, files: [String]) throws -> [String] {
        let script = """
        import sys, h5py
        out = []
        for name in sys.argv[2:]:
            with h5py.File(sys.argv[1] + "/" + name, "r") as f:
                assert f.attrs["encoding-type"] in (b"ivf-rq4-part", "ivf-rq4-part")
                off, codes, pos = f["list-offsets"][()], f["codes"][()], f["positions"][()]
                lows, steps = f["lows"][()], f["steps"][()]
                assert codes.dtype.name == "uint8" and codes.shape[0] == len(pos)
                for l in range(len(off) - 1):
                    for i in range(off[l], off[l + 1]):
                        out.append("%d %d %s %r %r" % (l, pos[i], codes[i].tobytes().hex(), float(lows[i]), float(steps[i])))
        print("\\n".join(out))
        """
        let result = try ChildProcess.python(script, [store] + files)
        guard result.status == 0 else { throw StoreError(.io, "h5py reader failed: \(result.standardError)") }
        return result.standardOutput.split(separator: "\n").map(String.init)
    }

    @Test func deletedRowsAreSkippedAndCompactionLeavesNoStaleIndex() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let rows = Fixture.clustered(700, seed: 31)
        try Fixture.append(store, Array(rows[0..<(400 * Self.k)]), prefix: "a")
        try Fixture.append(store, Array(rows[(400 * Self.k)...]), prefix: "b")
        try PartIndexBuilder.build(try store.sketchSet("g"), in: store, name: "rq", options: Self.options(lists: 8, partRows: 400))
        let query = Self.query(rows, 5)
        let all = PartSearchParameters(nprobe: 8, rerank: 10_000, groupProbe: nil)
        let before = try PartIndexSearcher(set: try store.sketchSet("g"), index: "rq").search(queries: query, count: 1, k: 5, parameters: all)[0].map(\.id)
        try store.delete(ids: [before[0], before[2]], from: "g")
        let after = try PartIndexSearcher(set: try store.sketchSet("g"), index: "rq").search(queries: query, count: 1, k: 3, parameters: all)[0].map(\.id)
        #expect(after == [before[1], before[3], before[4]])

        let compacted = try store.compact(set: "g")
        #expect(compacted.droppedIndexes == ["rq"])
        #expect(throws: StoreError.self) { try PartIndexSearcher(set: try store.sketchSet("g"), index: "rq") }
        // The version before the compaction still reads its index.
        let old = try store.sketchSet("g", at: try store.latestVersion() - 1)
        #expect(try PartIndexSearcher(set: old, index: "rq").indexedRows == 700)
    }

    @Test func aCorruptedPartIsReportedAsCorruptNamingTheFile() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let rows = Fixture.clustered(600, seed: 41)
        try Fixture.append(store, rows, prefix: "a")
        try PartIndexBuilder.build(try store.sketchSet("g"), in: store, name: "rq", options: Self.options(lists: 4))
        #expect(try store.verify().problems.isEmpty)
        let part = try store.sketchSet("g").entry.indexes["rq"]!.parts![0]

        // Flip a byte inside the codes dataset (mapped: found by its extent in the file).
        let path = store.path + "/" + part.file
        let offset = try Self.codesOffset(path)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(offset + 37))
        let byte = try handle.read(upToCount: 1)![0]
        try handle.seek(toOffset: UInt64(offset + 37))
        handle.write(Foundation.Data([byte ^ 0x5A]))
        try handle.close()

        let problems = try store.verify().problems
        #expect(problems.contains { $0.file == part.file }, "\(problems)")
        do {
            let searcher = try PartIndexSearcher(set: try store.sketchSet("g"), index: "rq")
            _ = try searcher.search(queries: Self.query(rows, 0), count: 1, k: 10, parameters: PartSearchParameters(nprobe: 4, rerank: 64, groupProbe: nil))
            Issue.record("a corrupted part was searched without error")
        } catch let error as StoreError {
            #expect(error.code == .corrupt && error.description.contains(part.file.split(separator: "/").last!), "\(error)")
        }
    }

    static func codesOffset(_ path: String) throws -> Int {
        let result = try ChildProcess.python("import sys, h5py\nprint(h5py.File(sys.argv[1], 'r')['codes'].id.get_offset())", [path])
        guard result.status == 0, let offset = Int(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw StoreError(.io, "h5py could not locate the codes: \(result.standardError)")
        }
        return offset
    }
}

extension Manifest.IndexEntry {
    /// The quantizer file and its checksums are those of `other` (an update reuses them).
    func quantizerFileUnchanged(from other: Manifest.IndexEntry) -> Bool {
        file == other.file && fileChecksum == other.fileChecksum && checksums == other.checksums
    }
}
