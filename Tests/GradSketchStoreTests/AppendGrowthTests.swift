import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Format 1.2's id hashes and segment lists (Spec §5.1, §5.2, §7.1): what lets an append
/// check its ids and commit without reading or rewriting the whole set.
@Suite struct AppendGrowthTests {
    static let preamble = """
    import json, os, sys
    import numpy as np, h5py
    sys.path.insert(0, sys.argv[1])
    import gradsketch_ref as ref
    store = sys.argv[2]

    """

    static func python(_ script: String, store: String) throws -> ChildProcessResult {
        try ChildProcess.python(preamble + script, [Repository.root + "/Spec/reference", store])
    }

    /// `count` rows of width 3 whose values encode (batch, row), so any reordering shows.
    static func rows(batch: Int, count: Int) -> [Float] {
        (0..<(count * 3)).map { Float(batch * 100 + $0 / 3) + Float($0 % 3) / 4 }
    }

    @discardableResult
    static func append(_ store: Store, batch: Int, ids: [String], set: String = "s",
                       labels: [String]? = nil, metadata: [String]? = nil, loss: [Double]? = nil) throws -> AppendResult {
        let values = rows(batch: batch, count: ids.count)
        return try values.withUnsafeBytes { bytes in
            var annotations = RowAnnotations(ids: ids, labels: labels, metadata: metadata, metadataKind: .json)
            if let loss { annotations.columns["loss"] = loss }
            return try store.append(to: set, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: 3),
                                    annotations: annotations)
        }
    }

    @Test func duplicateOfAnIDInAnOldSegmentIsRefused() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        // 70 segments: more than one segment list (64 per list), so the id of segment 3 lives
        // in a closed list and the check has to find it there.
        for batch in 0..<70 { try Self.append(store, batch: batch, ids: ["b\(batch)-0", "b\(batch)-1"]) }
        let latest = try store.latestVersion()
        // In this process (tables cached) and in a fresh one (tables read from the files).
        for opened in [store, try Store(opening: scratch.path + "/store")] {
            let error = #expect(throws: StoreError.self) {
                try Self.append(opened, batch: 99, ids: ["new-0", "b3-1", "b68-0"])
            }
            #expect(error?.code == .invalidInput)
            #expect(error?.message.contains("\"b3-1\" is already in set s") == true, "\(String(describing: error))")
            #expect(try opened.latestVersion() == latest)
        }
        // The manifest names lists, not segments: two lists for 70 segments.
        let check = try Self.python("""
        m = ref.manifest(store)
        with h5py.File(f"{store}/versions/v{m['version']:012d}.h5", "r") as f:
            text = f["manifest"].asstr()[()]
        raw = json.loads(text)["sketch_sets"]["s"]
        assert "segments" not in raw, "segments listed inline"
        assert [l["count"] for l in raw["segment_lists"]] == [64, 6], raw["segment_lists"]
        assert "segments/" not in text
        assert {"name": "segment-lists", "must_understand": True} in json.loads(text)["extensions"]
        print("ok")
        """, store: scratch.path + "/store")
        #expect(check.status == 0, "\(check.standardError)")
    }

    @Test func aDeletedIDCanBeAppendedAgain() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        for batch in 0..<5 { try Self.append(store, batch: batch, ids: ["b\(batch)-0", "b\(batch)-1"]) }
        try store.delete(ids: ["b2-1"], from: "s")
        let fresh = try Store(opening: scratch.path + "/store")
        try Self.append(fresh, batch: 7, ids: ["b2-1"])
        #expect(try fresh.sketchSet("s").ids() == ["b0-0", "b0-1", "b1-0", "b1-1", "b2-0", "b3-0", "b3-1", "b4-0", "b4-1", "b2-1"])
        // Live again, so once more is refused.
        #expect(throws: StoreError.self) { try Self.append(store, batch: 8, ids: ["b2-1"]) }
        #expect(try store.verify().isClean)
    }

    /// A hash hit is only a candidate: the engine must compare the id itself. The id hash
    /// table of one segment is rewritten by hand so that row 0's entry carries the hash of
    /// "zz"; appending "zz" then hits that row and must be accepted, since its id is "a-0".
    @Test func aHashHitIsConfirmedAgainstTheID() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        let store = try Store.create(at: path)
        try Self.append(store, batch: 0, ids: ["a-0", "a-1", "a-2"])
        // Inline segments (as 1.1 lists them), so the engine probes the segment's own table.
        try HostileStore.rewriteLatestManifest(of: path, """
        entry = seg[0]
        with h5py.File(segment_file(0), "r+") as f:
            hashes, rows = f["id-hashes"][()], f["id-hash-rows"][()]
            pairs = sorted((ref.id_hash("zz") if r == 0 else h, r) for h, r in zip(hashes.tolist(), rows.tolist()))
            hashes = np.array([p[0] for p in pairs], dtype="<i8")
            rows = np.array([p[1] for p in pairs], dtype="<i8")
            f["id-hashes"][...] = hashes
            f["id-hash-rows"][...] = rows
            for name, values in (("id-hashes", hashes), ("id-hash-rows", rows)):
                del f[name].attrs["checksum"]
                ref._set_attr(f[name], "checksum", ref.checksum_numeric(values))
                entry["checksums"][name] = ref.checksum_numeric(values)
        assert ref.id_hash("zz") != ref.id_hash("a-0")
        """)
        let fresh = try Store(opening: path)
        try Self.append(fresh, batch: 1, ids: ["zz"])
        #expect(try fresh.sketchSet("s").ids() == ["a-0", "a-1", "a-2", "zz"])
        // A real duplicate in the same segment is still found through its (true) hash.
        let error = #expect(throws: StoreError.self) { try Self.append(try Store(opening: path), batch: 2, ids: ["a-2"]) }
        #expect(error?.message.contains("\"a-2\" is already in set s") == true)
    }

    /// The golden store (format 1.0, written by the reference) takes appends: its ids are
    /// still checked, the new version is in segment lists, and the reference reads it.
    @Test func aFormatOneZeroStoreAcceptsAppendsAndStaysReadableByTheReference() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        try HostileStore.copy(Repository.goldenDirectory + "/store", to: path)
        let store = try Store(opening: path)
        let before = try store.sketchSet("train").ids()
        let k = try store.sketchSet("train").k
        let live = try #require(before.last)
        func append(_ ids: [String]) throws {
            let values = [Float](repeating: 0.5, count: ids.count * k)
            try values.withUnsafeBytes { bytes in
                _ = try store.append(to: "train", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: k),
                                     annotations: RowAnnotations(ids: ids))
            }
        }
        #expect(throws: StoreError.self) { try append(["fresh-0", live]) }
        try append(["fresh-0", "fresh-1"])
        try append(["fresh-2"])
        #expect(try store.sketchSet("train").ids() == before + ["fresh-0", "fresh-1", "fresh-2"])
        #expect(try store.verify().isClean)
        let check = try Self.python("""
        assert not ref.verify(store), ref.verify(store)
        _, ids, *_ = ref.read_set(store, "train")
        assert ids == \(Self.pythonList(before + ["fresh-0", "fresh-1", "fresh-2"])), ids[-4:]
        assert "segment_lists" in ref.manifest(store)["sketch_sets"]["train"]
        print("ok")
        """, store: path)
        #expect(check.status == 0, "\(check.standardError)")
    }

    /// Engine → reference: lists, id hashes of segments and lists verified by the reference's
    /// own FNV-1a; reference → engine: the reference's lists (50 segments each, a different
    /// cut from the engine's) read, verified and appended to.
    @Test func segmentListsAndIDHashesInteroperateBothWays() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        let store = try Store.create(at: path)
        for batch in 0..<66 { try Self.append(store, batch: batch, ids: ["e\(batch)-0", "e\(batch)-1"]) }
        try store.delete(ids: ["e1-0", "e65-1"], from: "s")
        let written = try Self.python("""
        assert not ref.verify(store), ref.verify(store)
        rows, ids, *_ = ref.read_set(store, "s")
        expected = [f"e{b}-{r}" for b in range(66) for r in range(2) if (b, r) not in ((1, 0), (65, 1))]
        assert ids == expected, ids[:4]
        # The reference appends on top: its lists cut the set at 50 segments.
        ref.append(store, "s", np.full((2, 3), 7, dtype=np.float32), ids=["r-0", "r-1"])
        assert [l["count"] for l in ref.manifest(store)["sketch_sets"]["s"]["segment_lists"]] == [50, 17]
        print("ok")
        """, store: path)
        #expect(written.status == 0, "\(written.standardError)")

        let reopened = try Store(opening: path)
        #expect(try reopened.verify().isClean)
        let ids = try reopened.sketchSet("s").ids()
        #expect(ids.count == 132 && ids.suffix(2) == ["r-0", "r-1"])
        #expect(throws: StoreError.self) { try Self.append(reopened, batch: 70, ids: ["r-1"]) }
        #expect(throws: StoreError.self) { try Self.append(reopened, batch: 70, ids: ["e30-1"]) }
        try Self.append(reopened, batch: 70, ids: ["e1-0"])  // deleted, so allowed
        let final = try Self.python("""
        assert not ref.verify(store), ref.verify(store)
        print("ok")
        """, store: path)
        #expect(final.status == 0, "\(final.standardError)")
    }

    static func pythonList(_ strings: [String]) -> String {
        "[" + strings.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
    }
}

/// `compact` (Spec §5.5): the live rows and everything attached to them survive, in order.
@Suite struct CompactTests {
    @Test func compactionKeepsLiveRowsIDsAndAnnotationsAndLeavesOldVersionsAlone() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        let store = try Store.create(at: path)
        for batch in 0..<12 {
            let ids = (0..<4).map { "c\(batch)-\($0)" }
            try AppendGrowthTests.append(store, batch: batch, ids: ids, labels: ids.map { "L" + $0 },
                                         metadata: ids.map { "{\"id\": \"\($0)\"}" }, loss: (0..<4).map { Double(batch) + Double($0) / 8 })
        }
        try store.delete(ids: ["c0-0", "c5-2", "c11-3"], from: "s")
        let before = try store.latestVersion()
        let result = try store.compact(set: "s")
        #expect(result.segmentsBefore == 12 && result.segmentsAfter == 1 && result.rowsRewritten == 45)
        #expect(result.version == before + 1)
        let manifest = try store.manifest()
        #expect(manifest.change.operation == "compact" && manifest.change.rowsAdded == 0 && manifest.change.rowsDeleted == 0)
        let segment = try #require(manifest.sketchSets["s"]?.segments.first)
        #expect(segment.rows == 45 && segment.deletions == nil)
        #expect(try store.verify().isClean)
        // Oracle: the reference reads both versions from the files with h5py.
        let check = try AppendGrowthTests.python("""
        assert not ref.verify(store), ref.verify(store)
        old = ref.read_set(store, "s", \(before))
        new = ref.read_set(store, "s", \(before + 1))
        assert old[0].dtype == new[0].dtype and np.array_equal(old[0], new[0]), "rows differ"
        assert old[1] == new[1] and len(new[1]) == 45, "ids differ"
        assert old[2] == new[2] and old[3] == new[3], "labels or metadata differ"
        assert np.array_equal(old[4]["loss"], new[4]["loss"]), "columns differ"
        assert len(ref.manifest(store, \(before))["sketch_sets"]["s"]["segments"]) == 12
        ids = [f"c{b}-{r}" for b in range(12) for r in range(4) if (b, r) not in ((0, 0), (5, 2), (11, 3))]
        assert new[1] == ids
        print("ok")
        """, store: path)
        #expect(check.status == 0, "\(check.standardError)")
        // Ids are still checked after compaction, and a deleted one may come back.
        #expect(throws: StoreError.self) { try AppendGrowthTests.append(store, batch: 50, ids: ["c7-1"]) }
        try AppendGrowthTests.append(store, batch: 50, ids: ["c5-2"], labels: ["x"], metadata: ["1"], loss: [0])
    }

    @Test func onlySegmentsWithTheSameAnnotationsMergeAndLargeOnesStay() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try AppendGrowthTests.append(store, batch: 0, ids: ["a0", "a1"])
        try AppendGrowthTests.append(store, batch: 1, ids: ["b0", "b1"])
        try AppendGrowthTests.append(store, batch: 2, ids: ["c0", "c1"], labels: ["x", "y"])
        try AppendGrowthTests.append(store, batch: 3, ids: ["d0", "d1"], labels: ["z", "w"])
        try AppendGrowthTests.append(store, batch: 4, ids: (0..<10).map { "big\($0)" })
        try AppendGrowthTests.append(store, batch: 5, ids: ["e0"])
        let idsBefore = try store.sketchSet("s").ids()
        let labelsBefore = try store.sketchSet("s").labels()
        let result = try store.compact(set: "s", targetRows: 8)
        // [a b] [c d] big [e]: two merges; the 10-row segment is kept; e alone stays.
        #expect(result.segmentsAfter == 4)
        let segments = try #require(try store.manifest().sketchSets["s"]?.segments)
        #expect(segments.map(\.rows) == [4, 4, 10, 1])
        #expect(try store.sketchSet("s").ids() == idsBefore)
        #expect(try store.sketchSet("s").labels() == labelsBefore)
        #expect(try store.verify().isClean)
        // Nothing left to merge.
        #expect(throws: StoreError.self) { try store.compact(set: "s", targetRows: 8) }
    }
}
