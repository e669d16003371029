import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Keys a newer writer added survive every commit made on top of them (Spec §7.2 "Keys a
/// writer does not know"), at every level of the manifest, through the one commit path all
/// writers share (``Store/commit(changes:detail:)``).
@Suite struct ManifestUnknownKeyTests {
    /// The Python reference writes a store with every kind of entry, then a version whose
    /// manifest carries a key `future_<level>` at every level (it stands for a newer writer).
    static let writeStore = """
    import sys, json
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import gradsketch_ref as ref
    store = sys.argv[2]
    ref.create_store(store)
    ref.append(store, "s", np.arange(8, dtype="<f4").reshape(4, 2), ids=["a", "b", "c", "d"], attributes={"gradient_kind": "g"})
    ref.append(store, "s", np.arange(8, dtype="<f4").reshape(4, 2) + 100, ids=["e", "f", "g", "h"])
    ref.delete(store, "s", ["b"])
    ref.delete(store, "s", ["f"])
    ref.put_tensors(store, "w", {"x": np.ones((2, 2), dtype="<f4")})
    ref.build_index(store, "s", "ix", 1)
    ref.save_result(store, "r", "manual", "s", [0, 1], [1.0, 0.5], {"p": 1})

    def annotate(m):
        m["future_top"] = {"n": 18446744073709551615}
        m["extensions"] = [{"name": "org.example.later", "must_understand": False, "future_extension": 1}]
        s = m["sketch_sets"]["s"]
        s["future_set"] = "set"
        s["attributes"]["future_attribute"] = [1, 2]
        for i, segment in enumerate(s["segments"]):
            segment["future_segment"] = i
            segment["deletions"]["future_deletion"] = i
        s["indexes"]["ix"]["future_index"] = True
        s["indexes"]["ix"]["parameters"]["future_parameter"] = "p"
        t = m["tensor_sets"]["w"]
        t["future_tensor_set"] = 1
        t["tensors"][0]["future_tensor"] = 2
        m["results"]["r"]["future_result"] = {"deep": [None]}
        m["results"]["r"]["parameters"]["future_result_parameter"] = 3
        return (0, 0)
    ref._commit(store, "future-operation", "s", annotate)
    print(ref.versions(store)[-1])
    """

    @Test func keysANewerWriterAddedSurviveAtEveryLevel() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        let made = try ChildProcess.python(Self.writeStore, [Repository.root + "/Spec/reference", path])
        try #require(made.status == 0, "\(made.standardError)")
        let store = try Store(opening: path)
        // One commit of several changes on top of the annotated version: an append to s, a
        // delete in its second segment (replacing that segment's deletion list) and a tensor set.
        let rows: [Float] = [7, 7]
        let session = try rows.withUnsafeBytes { bytes in
            let session = try store.beginAppend(to: "s")
            try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: 1, k: 2), annotations: RowAnnotations(ids: ["z"]))
            return session
        }
        let weights: [Float] = [1]
        let claim = try store.claimWrites()
        let tensors = try weights.withUnsafeBytes { bytes in
            try store.stageTensors("w2", [try TensorInput(name: "y", elementType: .float32, shape: [1], bytes: bytes)])
        }
        let committed = try store.commit(changes: [try session.staged(), .delete(set: "s", ids: ["g"]), .putTensors(name: "w2", tensors: tensors)])
        session.markCommitted()
        claim.release()

        // Python (json, not the Swift decoder) is the oracle for what the new manifest holds.
        let check = """
        import sys, json
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        m = ref.manifest(sys.argv[2], int(sys.argv[3]))
        s = m["sketch_sets"]["s"]
        segments = s["segments"]
        found = {
            "top": m.get("future_top") == {"n": 18446744073709551615},
            "extension": [e for e in m["extensions"] if e["name"] != "segment-lists"] == [{"name": "org.example.later", "must_understand": False, "future_extension": 1}],
            "set": s.get("future_set") == "set",
            "attribute": s["attributes"].get("future_attribute") == [1, 2],
            "segment0": segments[0].get("future_segment") == 0,
            "segment1": segments[1].get("future_segment") == 1,
            "deletion0": segments[0]["deletions"].get("future_deletion") == 0,
            "deletion1 replaced": "future_deletion" not in segments[1]["deletions"] and segments[1]["deletions"]["count"] == 2,
            "new segment plain": len(segments) == 3 and not any(k.startswith("future") for k in segments[2]),
            "index": s["indexes"]["ix"].get("future_index") is True,
            "index parameter": s["indexes"]["ix"]["parameters"].get("future_parameter") == "p",
            "tensor set": m["tensor_sets"]["w"].get("future_tensor_set") == 1,
            "tensor": m["tensor_sets"]["w"]["tensors"][0].get("future_tensor") == 2,
            "new tensor set plain": not any(k.startswith("future") for k in m["tensor_sets"]["w2"]),
            "result": m["results"]["r"].get("future_result") == {"deep": [None]},
            "result parameter": m["results"]["r"]["parameters"].get("future_result_parameter") == 3,
            "change is this commit's": m["change"]["operation"] == "transaction" and m["change"]["rows_added"] == 1 and m["change"]["rows_deleted"] == 1,
        }
        print(json.dumps(sorted(k for k, v in found.items() if not v)))
        """
        let run = try ChildProcess.python(check, [Repository.root + "/Spec/reference", path, String(committed.version)])
        try #require(run.status == 0, "\(run.standardError)")
        #expect(run.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "[]", "levels whose keys were lost: \(run.standardOutput)")
        #expect(try store.sketchSet("s").ids() == ["a", "c", "d", "e", "h", "z"])
    }
}
