import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Spec §7.5: an omitted optional key reads as null; `parent` of version 0; `change.set`.
@Suite struct ManifestKeyRuleTests {
    /// A version whose manifest omits every optional key (written by h5py through the
    /// reference writer) reads as the same version with the keys set to null.
    @Test func omittedOptionalKeysReadAsNull() throws {
        let scratch = try TemporaryDirectory()
        let write = """
        import sys, numpy as np
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        store = sys.argv[2]
        ref.create_store(store)
        ref.append(store, "s", np.arange(12, dtype=np.float32).reshape(3, 4), ids=["a", "b", "c"])
        ref.put_tensors(store, "w", {"t": np.ones(2, np.float32)})

        def strip(m):
            entry = m["sketch_sets"]["s"]
            for key in ("attributes", "allow_nonfinite"):
                del entry[key]
            for segment in entry["segments"]:
                del segment["deletions"], segment["metadata_kind"]
            tensors = m["tensor_sets"]["w"]
            del tensors["from"], tensors["to"]
            for tensor in tensors["tensors"]:
                del tensor["source_dtype"]
            return 0, 0
        ref._commit(store, "set-attributes", "s", strip)
        """
        let written = try ChildProcess.python(write, [Repository.root + "/Spec/reference", scratch.path + "/store"])
        try #require(written.status == 0, "\(written.standardError)")
        let text = try String(contentsOfFile: scratch.path + "/store/versions/v000000000003.h5", encoding: .isoLatin1)
        #expect(!text.contains("metadata_kind") && !text.contains("source_dtype"), "the keys were not stripped")

        let store = try Store(opening: scratch.path + "/store")
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")
        let set = try store.sketchSet("s")
        #expect(try set.ids() == ["a", "b", "c"])
        #expect(set.attributes.isEmpty && !set.entry.allowNonfinite && set.entry.segments[0].deletions == nil)
        let tensors = try store.tensorSet("w")
        #expect(tensors.entry.from == nil && tensors.entry.tensors[0].sourceDtype == nil)
        // Deleting and appending on top of it work as on a manifest with explicit nulls.
        try store.delete(ids: ["b"], from: "s")
        #expect(try store.sketchSet("s").ids() == ["a", "c"])
    }

    /// §7.5 extension entries: `name` and `must_understand` are required, further keys are the
    /// extension's own; an unknown must-understand extension makes the version unreadable.
    @Test func extensionEntriesHaveTheirSpecShape() throws {
        let scratch = try TemporaryDirectory()
        let write = """
        import sys, numpy as np
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        store = sys.argv[2]
        ref.create_store(store)
        ref.append(store, "s", np.ones((2, 3), np.float32), ids=["a", "b"])
        for extensions in ([{"name": "org.example.note", "must_understand": False, "since": 4}],
                           [{"name": "org.example.half"}],
                           [{"name": "org.example.strict", "must_understand": True}]):
            def change(m, extensions=extensions):
                m["extensions"] = extensions
                return 0, 0
            ref._commit(store, "set-attributes", "s", change)
        """
        let written = try ChildProcess.python(write, [Repository.root + "/Spec/reference", scratch.path + "/store"])
        try #require(written.status == 0, "\(written.standardError)")
        let store = try Store(opening: scratch.path + "/store")
        let readable = try store.manifest(at: 2)
        // The reference (a 1.2 writer) stores the set in segment lists, which it declares (Spec §7.1).
        #expect(readable.extensions.map(\.name) == ["org.example.note", "segment-lists"])
        #expect(try store.sketchSet("s", at: 2).ids() == ["a", "b"])
        do {
            _ = try store.manifest(at: 3)
            Issue.record("expected an extension entry without must_understand to be refused")
        } catch let error as StoreError {
            #expect(error.code == .corrupt && error.message.contains("must_understand"), "\(error.message)")
        }
        do {
            _ = try store.manifest(at: 4)
            Issue.record("expected an unknown must-understand extension to be refused")
        } catch let error as StoreError {
            #expect(error.code == .unsupportedVersion && error.message.contains("org.example.strict"), "\(error.message)")
        }
    }

    /// Version 0 has no parent, every later version N has parent N − 1, and `change.set`
    /// names what each operation changed.
    @Test func parentsAndChangeSets() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let rows: [Float] = [1, 2, 3, 4]
        try rows.withUnsafeBytes { bytes in
            _ = try store.append(to: "s", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: 2, k: 2),
                                 annotations: RowAnnotations(ids: ["x", "y"]))
        }
        try store.delete(ids: ["y"], from: "s")
        try store.saveResult("r", method: "manual", set: "s", setVersion: 2, parameters: [:], positions: [0], ids: ["x"], scores: [1])
        let expected: [(operation: String, set: String?)] = [("init", nil), ("append", "s"), ("delete", "s"), ("save-result", "s")]
        for (version, change) in expected.enumerated() {
            let manifest = try store.manifest(at: version)
            #expect(manifest.parent == (version == 0 ? nil : version - 1))
            #expect(manifest.change.operation == change.operation && manifest.change.set == change.set)
        }
        #expect(try store.manifest(at: 2).change.rowsDeleted == 1 && store.manifest(at: 1).change.rowsAdded == 2)
    }
}
