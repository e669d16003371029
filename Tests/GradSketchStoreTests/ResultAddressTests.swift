import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Format 1.2 results (Spec §11) store each row's address, so deleting another row never
/// changes which row a result names; 1.1 results still read. Oracles: the ids the test
/// wrote, live positions recounted from those ids, and the Python reference.
@Suite struct ResultAddressTests {
    static let k = 4

    static func append(_ store: Store, ids: [String], seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        let rows = (0..<(ids.count * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: k),
                             annotations: RowAnnotations(ids: ids))
        }
    }

    static func python(_ body: String, _ work: String) throws -> ChildProcessResult {
        try ChildProcess.reference(body, work: work)
    }

    @Test func aDeletionBeforeAResultRowDoesNotMoveIt() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let first = (0..<10).map { "r\($0)" }, second = (0..<10).map { "s\($0)" }
        try Self.append(store, ids: first, seed: 1)
        try Self.append(store, ids: second, seed: 2)
        let written = first + second
        let setVersion = try store.latestVersion()
        let positions = [12, 3, 7, 19]
        let ids = positions.map { written[$0] }  // s2, r3, r7, s9
        try store.saveResult("picked", method: "select/test", set: "g", setVersion: setVersion, parameters: [:],
                             positions: positions, ids: ids, scores: [4, 3, 2, 1])

        // Earlier rows go, in both segments, and one of the result's own rows.
        let deleted = ["r0", "r5", "s0", "s9"]
        try store.delete(ids: deleted, from: "g")
        let live = written.filter { !deleted.contains($0) }

        let result = try store.result("picked")
        #expect(result.addressSource == .stored)
        #expect(result.ids == ids)
        #expect(result.positions == positions)  // as saved: live positions in set_version
        let resolved = try store.resolve(result)
        #expect(resolved.map { $0?.id } == ["s2", "r3", "r7", nil])
        #expect(resolved.map { $0?.position } == ["s2", "r3", "r7"].map { live.firstIndex(of: $0) } + [nil])
        #expect(resolved.map { $0?.address } == [RowAddress(segment: 1, row: 2), RowAddress(segment: 0, row: 3), RowAddress(segment: 0, row: 7), nil])
        // In the version it was saved against, every row is where the positions say.
        let atSave = try store.resolve(result, at: setVersion)
        #expect(atSave.map { $0?.position } == positions)
        #expect(atSave.map { $0?.id } == ids)

        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")

        // The reference reads the stored addresses and resolves them the same way.
        let check = try Self.python("""
        result = ref.read_result(store, "picked")
        assert result["addresses_from"] == "stored" and result["positions_checked"], result
        resolved = ref.resolve_result(store, "picked")
        assert resolved == [(9, "s2"), (2, "r3"), (5, "r7"), None], resolved  # hand-counted
        assert not ref.verify(store), ref.verify(store)
        print("ok")
        """, scratch.path)
        #expect(check.status == 0, "\(check.standardError)")
        #expect(check.standardOutput.contains("ok"))
    }


    /// A stored address that is not the row at its position (a buggy writer, checksums
    /// recomputed so only the rule can catch it) is reported by `verify` and refused by readers.
    @Test func anAddressThatIsNotTheRowAtItsPositionIsCaught() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try Self.append(store, ids: (0..<10).map { "r\($0)" }, seed: 5)
        try store.saveResult("picked", method: "select/test", set: "g", setVersion: try store.latestVersion(), parameters: [:],
                             positions: [2, 5], ids: ["r2", "r5"], scores: [1, 0])
        #expect(try store.verify().isClean)
        try HostileStore.rewriteLatestManifest(of: store.path, """
        r = m["results"]["picked"]
        result_file = os.path.join(store, r["file"])
        with h5py.File(result_file, "r+") as f:
            d = f["addresses"]
            a = d[()]
            assert a.tolist() == [[0, 2], [0, 5]], a
            a[0, 1] = 3
            d[...] = a
            del d.attrs["checksum"]
            ref._set_attr(d, "checksum", ref.checksum_numeric(a))
        r["checksums"]["addresses"] = ref.checksum_numeric(a)
        r["size"], r["file_checksum"] = ref.file_checksum(result_file)
        """)
        let reopened = try Store(opening: store.path)
        let problems = try reopened.verify().problems
        #expect(problems.count == 1 && problems.first?.object == "addresses", "\(problems)")
        #expect(problems.first?.message.contains("live position 3") == true, "\(problems)")
        #expect(throws: StoreError.self) { try reopened.result("picked") }
    }

    /// A 1.2 result the reference writes, then rows before and among its rows deleted by the
    /// reference: the engine finds the same rows by their stored addresses.
    @Test func engineResolvesAddressesTheReferenceWrites() throws {
        let scratch = try TemporaryDirectory()
        let write = try Self.python("""
        rng = np.random.default_rng(11)
        ref.create_store(store)
        ref.append(store, "g", rng.standard_normal((8, 4)).astype(np.float32), ids=[f"r{i}" for i in range(8)])
        ref.append(store, "g", rng.standard_normal((4, 4)).astype(np.float32), ids=[f"t{i}" for i in range(4)])
        ref.save_result(store, "picked", "top-by-column", "g", [9, 2, 6], [3.0, 2.0, 1.0], {"count": 3})
        ref.delete(store, "g", ["r0", "r1", "t0", "r6"])
        m = ref.manifest(store)
        assert m["format_version"] == "1.2" and "addresses" in m["results"]["picked"]["checksums"]
        print("ok")
        """, scratch.path)
        try #require(write.status == 0, "\(write.standardError)")
        let store = try Store(opening: scratch.path + "/store")
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")
        let picked = try store.result("picked")
        #expect(picked.addressSource == .stored)
        #expect(picked.ids == ["t1", "r2", "r6"])  // live positions 9, 2, 6 before the deletion
        let segments = try store.manifest().sketchSets["g"]!.segments.map(\.file)
        #expect(picked.addresses == [SegmentRow(segment: segments[1], row: 1), SegmentRow(segment: segments[0], row: 2),
                                     SegmentRow(segment: segments[0], row: 6)])
        // Live now: r2 r3 r4 r5 r7 t1 t2 t3; r6 is gone.
        let resolved = try store.resolve(picked)
        #expect(resolved.map { $0?.id } == ["t1", "r2", nil])
        #expect(resolved.map { $0?.position } == [5, 0, nil])
    }

    /// A 1.1 result (positions only), written by the reference at format 1.1: translated
    /// through its positions while set_version is retained, by id once it is vacuumed.
    @Test func formatOneOneResultsAreTranslatedToAddresses() throws {
        let scratch = try TemporaryDirectory()
        let write = try Self.python("""
        ref.FORMAT_MINOR = 1
        rng = np.random.default_rng(7)
        ref.create_store(store)
        ref.append(store, "g", rng.standard_normal((6, 4)).astype(np.float32), ids=[f"r{i}" for i in range(6)])
        ref.append(store, "g", rng.standard_normal((5, 4)).astype(np.float32), ids=[f"t{i}" for i in range(5)])
        ref.delete(store, "g", ["r1"])
        ref.save_result(store, "old", "top-by-column", "g", [0, 5, 9], [3.0, 2.0, 1.0], {"count": 3}, with_addresses=False)
        m = ref.manifest(store)
        assert m["format_version"] == "1.1" and set(m["results"]["old"]["checksums"]) == {"ids", "positions", "scores"}
        print("ok")
        """, scratch.path)
        try #require(write.status == 0, "\(write.standardError)")
        let store = try Store(opening: scratch.path + "/store")
        #expect(try store.verify().isClean)
        // Live rows after deleting r1: r0 r2 r3 r4 r5 t0 t1 t2 t3 t4.
        let old = try store.result("old")
        #expect(old.ids == ["r0", "t0", "t4"])
        #expect(old.addressSource == .positions)
        let segments = try store.manifest().sketchSets["g"]!.segments.map(\.file)
        #expect(old.addresses == [SegmentRow(segment: segments[0], row: 0), SegmentRow(segment: segments[1], row: 0), SegmentRow(segment: segments[1], row: 4)])

        // set_version vacuumed: positions mean nothing now, ids still find the rows.
        try store.delete(ids: ["r0", "r2"], from: "g")
        _ = try store.vacuum(keepLast: 1, grace: 0)
        let later = try store.result("old")
        #expect(later.addressSource == .ids)
        #expect(later.addresses == [nil, SegmentRow(segment: segments[1], row: 0), SegmentRow(segment: segments[1], row: 4)])
        // Live now: r3 r4 r5 t0 … t4.
        #expect(try store.resolve(later).map { $0?.position } == [nil, 3, 7])
        #expect(try store.verify().isClean)
    }
}
