import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The rules every writer is held to through ``Store/commit(changes:detail:)`` (one rules
/// component, checked on the version a commit lands on), and the Python reference's
/// independent implementation of the same rules.
@Suite struct RulesTests {
    static func append(_ store: Store, to set: String, ids: [String], k: Int = 2, attributes: [String: JSONValue] = [:]) throws {
        let rows = [Float](repeating: 0.25, count: ids.count * k)
        try rows.withUnsafeBytes { bytes in
            _ = try store.append(to: set, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: k),
                                 annotations: RowAnnotations(ids: ids), options: SketchSetOptions(attributes: attributes))
        }
    }

    static func stage(_ store: Store, to set: String, ids: [String], k: Int) throws -> (AppendSession, StoreChange) {
        let rows = [Float](repeating: 0.5, count: ids.count * k)
        let session = try store.beginAppend(to: set, inputType: .float32)
        try rows.withUnsafeBytes { bytes in
            try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: k), annotations: RowAnnotations(ids: ids))
        }
        return (session, try session.staged())
    }

    static func files(_ store: Store, _ directory: String) -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: store.path + "/" + directory)) ?? []).map { directory + "/" + $0 })
    }

    /// Staged rows of width 2 meet a set another writer created meanwhile with k = 3: the
    /// commit re-checks k against the version it lands on and refuses the whole commit.
    @Test func aWidthChangedMeanwhileRefusesTheWholeCommit() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try Self.append(store, to: "other", ids: ["o1", "o2"])
        let (session, change) = try Self.stage(store, to: "s", ids: ["a"], k: 2)
        try Self.append(store, to: "s", ids: ["b"], k: 3)  // the concurrent writer
        let version = try store.latestVersion()
        do {
            try store.commit(changes: [.delete(set: "other", ids: ["o1"]), change])
            Issue.record("rows of width 2 were committed into a set of width 3")
        } catch let error as StoreError {
            #expect(error.code == .conflict && "\(error)".contains("k = 3"), "\(error)")
        }
        session.abandon()
        #expect(try store.latestVersion() == version)
        #expect(try store.sketchSet("other").ids() == ["o1", "o2"])  // the delete before it is not committed either
        #expect(Self.files(store, "deletions").isEmpty)  // nor its deletion list left behind
        #expect(try Self.files(store, "segments") == Set(store.manifest().referencedFiles.filter { $0.hasPrefix("segments/") }))
    }

    @Test func deletingAnIdThatIsNotLiveCommitsNothing() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try Self.append(store, to: "s", ids: ["a", "b", "c"])
        #expect(throws: StoreError.self) { try store.commit(changes: [.delete(set: "s", ids: ["a"]), .delete(set: "s", ids: ["a"])]) }
        #expect(throws: StoreError.self) { try store.delete(ids: ["b", "nope"], from: "s") }
        #expect(try store.latestVersion() == 1 && Self.files(store, "deletions").isEmpty)
        let committed = try store.commit(changes: [.delete(set: "s", ids: ["a"]), .delete(set: "s", ids: ["c"])])
        #expect(try committed.rowsDeleted == 2 && store.sketchSet("s").ids() == ["b"])
        // Two deletions in one segment: only the second list is referenced, the first is removed.
        #expect(Self.files(store, "deletions").count == 1)
    }

    /// An index built on a version whose segments a later version no longer starts with would
    /// be stale the moment it is committed (Spec §10.1): refused, and its file removed.
    @Test func anIndexOverSegmentsTheSetNoLongerStartsWithIsRefused() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try Self.append(store, to: "s", ids: ["a", "b"])
        let old = try store.sketchSet("s")
        try store.commit(changes: [.dropSet("s")])
        try Self.append(store, to: "s", ids: ["a", "b"])
        let arrays = IVFIndexArrays(centroids: [0, 0], listOffsets: [0, 2], codes: [0, 0, 0, 0], scales: [1, 1], positions: [0, 1])
        do {
            try store.commitIndex("ix", over: old, coveredSegments: 1, metric: "ip", arrays: arrays, parameters: [:])
            Issue.record("a stale index was committed")
        } catch let error as StoreError {
            #expect(error.code == .conflict && "\(error)".contains("no longer starts with"), "\(error)")
        }
        #expect(Self.files(store, "indexes").isEmpty)
        // Over the current segments it is accepted.
        try store.commitIndex("ix", over: try store.sketchSet("s"), coveredSegments: 1, metric: "ip", arrays: arrays, parameters: [:])
        #expect(try store.manifest().sketchSets["s"]?.indexes["ix"]?.rows == 2)
    }

    @Test func fixedAttributesAndNamesAreCheckedForEveryWriter() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let projection = try JSONValue.parse(#"{"version": "1.0", "generator": "philox4x32-10", "seed": 4, "kind": "rademacher", "k_dense": 2, "layout": [{"name": "g", "shape": [8], "kind": "dense"}]}"#)
        try Self.append(store, to: "s", ids: ["a"], attributes: ["projection": projection])
        for attributes: [String: JSONValue] in [["projection": .null], ["projection": .integer(1)], ["tensor_set": .string("w")]] {
            #expect(throws: StoreError.self) { try store.commit(changes: [.setAttributes(set: "s", attributes: attributes)]) }
        }
        // Restating the same value, and other attributes, are fine; null removes a free attribute.
        try store.commit(changes: [.setAttributes(set: "s", attributes: ["projection": projection, "note": .string("x")])])
        try store.commit(changes: [.setAttributes(set: "s", attributes: ["note": .null])])
        #expect(try store.manifest().sketchSets["s"]?.attributes.keys.sorted() == ["projection"])
        #expect(throws: StoreError.self) { try store.commit(changes: [.dropTensors("absent")]) }
        #expect(throws: StoreError.self) { try store.commit(changes: [.dropIndex(name: "absent", set: "s")]) }
        #expect(throws: StoreError.self) { try store.commit(changes: [.setAttributes(set: "absent", attributes: [:])]) }
        #expect(throws: StoreError.self) { try store.commit(changes: []) }
        try store.saveResult("r", method: "manual", set: "s", setVersion: try store.latestVersion(), parameters: [:], positions: [0], ids: ["a"], scores: [1])
        #expect(throws: StoreError.self) {
            try store.saveResult("r", method: "manual", set: "s", setVersion: try store.latestVersion(), parameters: [:], positions: [0], ids: ["a"], scores: [1])
        }
        #expect(Self.files(store, "results").count == 1)
    }

    /// The engine and the Python reference refuse the same appends stating another
    /// checkpoint, each by its own implementation of Spec §7.1.
    @Test func theEngineAndTheReferenceHoldASetToOneCheckpoint() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let weights: [Float] = [1, 2]
        let hash = try weights.withUnsafeBytes { bytes in
            _ = try store.putTensors("w", [try TensorInput(name: "x", elementType: .float32, shape: [2], bytes: bytes)])
            return try store.tensorSet("w").contentHash
        }
        #expect(throws: StoreError.self) { try Self.append(store, to: "bad", ids: ["a"], attributes: ["tensor_set": .string("w"), "tensor_set_hash": .string("sha256:00")]) }
        try Self.append(store, to: "s", ids: ["a"], attributes: ["tensor_set": .string("w"), "tensor_set_hash": .string(hash)])
        do {
            try Self.append(store, to: "s", ids: ["b"], attributes: ["tensor_set": .string("w2"), "tensor_set_hash": .string("sha256:11")])
            Issue.record("an append at another checkpoint was committed")
        } catch let error as StoreError {
            #expect("\(error)".contains("checkpoint w (\(hash)), not w2 (sha256:11)"), "\(error)")
        }
        // Same content under another name is the same checkpoint.
        try Self.append(store, to: "s", ids: ["c"], attributes: ["tensor_set": .string("w-copy"), "tensor_set_hash": .string(hash)])
        let script = """
        import sys, numpy as np
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        store, digest = sys.argv[2], sys.argv[3]
        outcomes = []
        for attributes in ({"tensor_set_hash": "sha256:11"}, {"tensor_set_hash": digest}, {"tensor_set": "w", "tensor_set_hash": "sha256:00"}):
            for target in ("s", "new"):
                try:
                    ref.append(store, target, np.zeros((1, 2), dtype="<f4"), ids=[f"p{len(outcomes)}"], attributes=attributes)
                    outcomes.append("ok")
                except ValueError:
                    outcomes.append("refused")
        for digest_stated in ("sha256:00", digest):
            try:
                ref.append(store, "fresh", np.zeros((1, 2), dtype="<f4"), attributes={"tensor_set": "w", "tensor_set_hash": digest_stated})
                outcomes.append("ok")
            except ValueError:
                outcomes.append("refused")
        print(" ".join(outcomes))
        """
        let run = try ChildProcess.python(script, [Repository.root + "/Spec/reference", store.path, hash])
        try #require(run.status == 0, "\(run.standardError)")
        // Expected by Spec §7.1, hand-derived in order: another hash into s (refused); `new`
        // created with only a hash (ok); s's own hash (ok); H into `new`, which records 11
        // (refused); w with hash 00 into s, which records H (refused), and into `new` (refused);
        // a fresh set naming w with hash 00 (refused: not w's content) and with H (ok).
        #expect(run.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "refused ok ok refused refused refused refused ok")
    }
}
