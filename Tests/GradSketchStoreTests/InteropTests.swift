import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// h5py both ways, through the Python reference reader and writer that was written from
/// Spec/format.md alone (Spec/reference/gradsketch_ref.py).
@Suite struct InteropTests {
    /// Python preamble: the reference module and the inputs both sides use.
    static let preamble = """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import gradsketch_ref as ref
    work = sys.argv[2]

    """

    @Test func pythonReadsWhatSwiftWrites() throws {
        let scratch = try TemporaryDirectory()
        let inputs = Self.preamble + """
        rng = np.random.default_rng(21)
        np.save(f"{work}/a.npy", rng.standard_normal((120, 24)).astype(np.float32))
        np.save(f"{work}/b.npy", (rng.standard_normal((40, 24)) * 3).astype(np.float16))
        np.save(f"{work}/c.npy", rng.standard_normal((30, 5)).astype(np.float64))
        np.save(f"{work}/w.npy", rng.standard_normal((6, 4)).astype(np.float32))
        np.save(f"{work}/w2.npy", rng.standard_normal((6, 4)).astype(np.float32))
        """
        try #require(try ChildProcess.python(inputs, [Repository.root + "/Spec/reference", scratch.path]).status == 0)

        let store = try Store.create(at: scratch.path + "/store")
        func rows(_ name: String) throws -> (NumpyFile, RowInput) {
            let file = try NumpyFile(path: scratch.path + "/\(name).npy")
            return (file, try RowInput(bytes: file.data, elementType: file.elementType, rowCount: file.shape[0], k: file.shape[1]))
        }
        let (fa, a) = try rows("a"), (fb, b) = try rows("b"), (fc, c) = try rows("c")
        try withExtendedLifetime([fa, fb, fc]) {
            var annotations = RowAnnotations(ids: (0..<120).map { "a-\($0)" }, labels: (0..<120).map { ["web", "code", "ünï"][$0 % 3] },
                                             metadata: (0..<120).map { "{\"i\": \($0)}" }, metadataKind: .json)
            annotations.columns["loss"] = (0..<120).map { Double($0) / 7 }
            try store.append(to: "mixed", rows: a, annotations: annotations, options: SketchSetOptions(dtype: .float16))
            try store.append(to: "mixed", rows: b, annotations: RowAnnotations(ids: (0..<40).map { "b-\($0)" }))
            try store.append(to: "wide", rows: c)
        }
        try store.delete(ids: ["a-3", "a-50", "b-0"], from: "mixed")
        for name in ["w", "w2"] {
            let file = try NumpyFile(path: scratch.path + "/\(name).npy")
            try withExtendedLifetime(file) {
                _ = try store.putTensors(name, [try TensorInput(name: "layer/weight", elementType: .float32, shape: file.shape, bytes: file.data)])
            }
        }
        try store.recordDelta("d", from: "w", to: "w2")

        let check = Self.preamble + """
        store = f"{work}/store"
        problems = ref.verify(store)
        assert not problems, problems
        rows, ids, labels, metadata, columns = ref.read_set(store, "mixed")
        a, b = np.load(f"{work}/a.npy"), np.load(f"{work}/b.npy")
        keep = [i for i in range(120) if i not in (3, 50)]
        expected = np.concatenate([a.astype(np.float16)[keep], b[1:]])
        assert rows.dtype == np.float16 and np.array_equal(rows.view(np.uint16), expected.view(np.uint16)), "rows differ"
        assert list(ids) == [f"a-{i}" for i in keep] + [f"b-{i}" for i in range(1, 40)], ids[:5]
        assert list(labels) == [["web", "code", "ünï"][i % 3] for i in keep] + [""] * 39
        assert [json.loads(m) for m in metadata[:118]] == [{"i": i} for i in keep]
        loss = columns["loss"]
        assert np.array_equal(loss[:118], np.array(keep) / 7) and np.isnan(loss[118:]).all()
        wide, wide_ids, *_ = ref.read_set(store, "wide")
        assert wide.dtype == np.float32 and np.array_equal(wide, np.load(f"{work}/c.npy").astype(np.float32))
        before, *_ = ref.read_set(store, "mixed", version=3)
        assert len(before) == 160
        tensors = ref.read_tensors(store, "d")
        assert np.array_equal(tensors["layer/weight"], np.load(f"{work}/w2.npy") - np.load(f"{work}/w.npy"))
        print("ok")
        """
        let result = try ChildProcess.python(check, [Repository.root + "/Spec/reference", scratch.path])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("ok"))
    }

    @Test func swiftReadsWhatPythonWrites() throws {
        let scratch = try TemporaryDirectory()
        let write = Self.preamble + """
        store = f"{work}/store"
        rng = np.random.default_rng(33)
        ref.create_store(store)
        x = rng.standard_normal((70, 16)).astype(np.float32)
        h = (rng.standard_normal((20, 16))).astype(np.float16)
        ref.append(store, "s", x, ids=[f"x{i}" for i in range(70)], labels=[f"L{i % 2}" for i in range(70)],
                   metadata=[json.dumps({"n": i}) for i in range(70)], metadata_kind="json",
                   columns={"score": np.arange(70, dtype=np.float64) * 0.5}, attributes={"training_step": 7})
        ref.append(store, "h", h)
        ref.delete(store, "s", ["x1", "x69"])
        w = {"a.weight": rng.standard_normal((3, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
        w2 = {n: (v + 1).astype(np.float32) for n, v in w.items()}
        ref.put_tensors(store, "w", w)
        ref.put_tensors(store, "w2", w2)
        ref.delta(store, "d", "w", "w2")
        keep = [i for i in range(70) if i not in (1, 69)]
        np.save(f"{work}/s.npy", x[keep])
        np.save(f"{work}/h.npy", h)
        np.save(f"{work}/d_b.npy", w2["b"] - w["b"])
        json.dump({"ids": [f"x{i}" for i in keep], "labels": [f"L{i % 2}" for i in keep],
                   "score": [i * 0.5 for i in keep]}, open(f"{work}/expected.json", "w"))
        """
        let written = try ChildProcess.python(write, [Repository.root + "/Spec/reference", scratch.path])
        try #require(written.status == 0, "reference writer failed: \(written.standardError)")

        let store = try Store(opening: scratch.path + "/store")
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path + "/expected.json"))) as? [String: Any]
        let s = try store.sketchSet("s")
        #expect(try s.ids() == expected?["ids"] as? [String])
        #expect(try s.labels() == expected?["labels"] as? [String])
        #expect(try s.column("score") == expected?["score"] as? [Double])
        #expect(try s.metadata().first == "{\"n\": 0}")
        #expect(s.attributes["training_step"] == .number(7))
        let rows = try s.floatRows()
        let expectedRows = try NumpyFile(path: scratch.path + "/s.npy")
        #expect(rows.withUnsafeBytes { $0.elementsEqual(expectedRows.data) })
        let h = try store.sketchSet("h")
        #expect(h.dtype == .float16)
        var halfBytes: [UInt8] = []
        try h.forEachBlock { halfBytes += Array($0.bytes) }
        let expectedHalves = try NumpyFile(path: scratch.path + "/h.npy")  // owns the mapping `data` points into
        #expect(halfBytes.elementsEqual(expectedHalves.data))
        let delta = try store.tensorSet("d")
        #expect(delta.kind == "delta")
        let expectedDelta = try NumpyFile(path: scratch.path + "/d_b.npy")
        #expect(try delta.tensor(named: "b").bytes.elementsEqual(expectedDelta.data))
    }

    /// Another writer may store rows chunked and compressed: the reader must refuse to map
    /// them, say why, read them through HDF5 instead, and still check their checksum.
    @Test func unmappableRowsFallBackToHDF5Reads() throws {
        let scratch = try TemporaryDirectory()
        let script = Self.preamble + """
        import h5py, glob
        store = f"{work}/store"
        ref.create_store(store)
        x = np.random.default_rng(4).standard_normal((64, 40)).astype(np.float32)
        ref.append(store, "s", x)
        np.save(f"{work}/x.npy", x)
        segment = glob.glob(f"{store}/segments/*.h5")[0]
        with h5py.File(segment, "r+") as f:  # same values and attributes, chunked + gzip
            attrs = {k: v for k, v in f["rows"].attrs.items()}
            del f["rows"]
            d = f.create_dataset("rows", data=x, chunks=(16, 40), compression="gzip")
            for k, v in attrs.items(): d.attrs[k] = v
        """
        let made = try ChildProcess.python(script, [Repository.root + "/Spec/reference", scratch.path])
        try #require(made.status == 0, "\(made.standardError)")
        let store = try Store(opening: scratch.path + "/store")
        let set = try store.sketchSet("s")
        let rows = try set.floatRows()
        let expected = try NumpyFile(path: scratch.path + "/x.npy")
        #expect(rows.withUnsafeBytes { $0.elementsEqual(expected.data) })
        let status = try set.segments[0].mappingStatus()
        #expect(!status.mapped)
        #expect(status.reason?.contains("not contiguous") == true)
        // verify says the file changed after publication and is not mappable as §2.4 asks.
        let problems = try store.verify().problems.map(\.message)
        #expect(problems.contains { $0.contains("whole-file checksum mismatch") || $0.contains("file size") })
        #expect(problems.contains { $0.contains("not mappable") })
    }
}
