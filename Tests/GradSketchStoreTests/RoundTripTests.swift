import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Every input dtype through every stored dtype, against numpy's own conversions.
@Suite struct RoundTripTests {
    /// numpy writes the input rows (with float16 edge cases: the largest finite value, ties,
    /// subnormals, signed zero) and, independently, what the stored values must be.
    static let makeRows = """
    import sys, numpy as np
    out, source, stored = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(11)
    x = rng.standard_normal((301, 37)) * 50.0
    edge = [65504.0, -65504.0, 2.0**-24, 2.0**-25 * 3, 2.0**-14, 1 + 2.0**-11, 1 + 3 * 2.0**-11, -0.0, 0.0, 1e-9, 1/3]
    x[0, :len(edge)] = edge
    x = x.astype(source)
    np.save(f"{out}/input.npy", x)
    # float64 input is rounded to float32 first (Spec §2.3), then to the stored dtype.
    wide = x.astype(np.float32) if source == "float64" else x
    np.save(f"{out}/expected.npy", wide.astype(stored))
    """

    @Test(arguments: [
        ("float32", SketchDType.float32), ("float32", .float16), ("float16", .float16),
        ("float16", .float32), ("float64", .float32), ("float64", .float16),
    ])
    func numpyInputRoundTrips(source: String, stored: SketchDType) throws {
        let scratch = try TemporaryDirectory()
        let made = try ChildProcess.python(Self.makeRows, [scratch.path, source, stored.rawValue])
        try #require(made.status == 0, "numpy failed: \(made.standardError)")

        let store = try Store.create(at: scratch.path + "/store")
        let input = try NumpyFile(path: scratch.path + "/input.npy")
        let rows = try RowInput(bytes: input.data, elementType: input.elementType, rowCount: input.shape[0], k: input.shape[1])
        let result = try store.append(to: "train", rows: rows, options: SketchSetOptions(dtype: stored))
        #expect(result.version == 1)

        // Export in the stored dtype: bit-for-bit equal to numpy's conversion.
        try store.exportRows(of: "train", to: scratch.path + "/out.npy")
        let exported = try NumpyFile(path: scratch.path + "/out.npy")
        let expected = try NumpyFile(path: scratch.path + "/expected.npy")
        #expect(exported.shape == [301, 37])
        #expect(exported.elementType == stored.elementType)
        #expect(exported.data.elementsEqual(expected.data), "stored \(stored) values differ from numpy's astype")

        // The zero-copy scan sees the same bytes, mapped.
        let set = try store.sketchSet("train")
        var scanned = 0
        try set.forEachBlock { block in
            #expect(block.isMapped)
            #expect(block.bytes.elementsEqual(expected.data))
            scanned += block.rowCount
        }
        #expect(scanned == 301)
    }

    @Test func bfloat16SafetensorsWidensExactly() throws {
        let scratch = try TemporaryDirectory()
        // bfloat16 is the high half of a float32 word; numpy computes the widened values.
        let script = """
        import json, struct, sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(5)
        bits = (rng.standard_normal((40, 16)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        bits[0, 0] = 0x7f7f  # largest finite bfloat16, overflows float16
        bits[0, 1] = 0x0001  # smallest subnormal bfloat16
        data = bits.astype("<u2").tobytes()
        header = json.dumps({"g": {"dtype": "BF16", "shape": [40, 16], "data_offsets": [0, len(data)]}}).encode()
        header += b" " * (-len(header) % 8)
        open(f"{out}/rows.safetensors", "wb").write(struct.pack("<Q", len(header)) + header + data)
        np.save(f"{out}/expected.npy", (bits.astype(np.uint32) << 16).view(np.float32))
        """
        let made = try ChildProcess.python(script, [scratch.path])
        try #require(made.status == 0, "python failed: \(made.standardError)")
        let file = try SafetensorsFile(path: scratch.path + "/rows.safetensors")
        let tensor = try #require(file.tensor(named: "g"))
        let store = try Store.create(at: scratch.path + "/store")
        let rows = try RowInput(bytes: tensor.data, elementType: .bfloat16, rowCount: 40, k: 16)
        try store.append(to: "g", rows: rows)
        #expect(try store.sketchSet("g").dtype == .float32)
        try store.exportRows(of: "g", to: scratch.path + "/out.npy")
        let exported = try NumpyFile(path: scratch.path + "/out.npy")
        let expected = try NumpyFile(path: scratch.path + "/expected.npy")
        #expect(exported.data.elementsEqual(expected.data))

        // The same input into a float16 set overflows at row 0 and is refused, naming it.
        let error = #expect(throws: StoreError.self) {
            try store.append(to: "g16", rows: rows, options: SketchSetOptions(dtype: .float16))
        }
        #expect(error?.code == .invalidInput)
        #expect(error?.message.contains("row 0") == true)
        #expect(try store.manifest().sketchSets["g16"] == nil)
    }

    @Test func annotationsAndVersionsReadBack() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let k = 8
        func rows(_ n: Int, _ offset: Float) -> [Float] { (0..<(n * k)).map { Float($0) * 0.5 + offset } }
        let first = rows(5, 0), second = rows(3, 1000)
        try first.withUnsafeBytes { bytes in
            var annotations = RowAnnotations(ids: ["a0", "a1", "a2", "a3", "a4"], labels: ["x", "y", "x", "y", "x"],
                                             metadata: ["{\"n\":1}", "[2]", "\"s\"", "null", "4.5"], metadataKind: .json)
            annotations.columns = ["loss": [0.5, 1.5, 2.5, 3.5, 4.5]]
            try store.append(to: "t", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: 5, k: k), annotations: annotations,
                             options: SketchSetOptions(attributes: ["training_step": .number(100), "tensor_set": .string("base")]))
        }
        try second.withUnsafeBytes { bytes in
            try store.append(to: "t", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: 3, k: k))
        }
        try store.delete(ids: ["a1", "a3"], from: "t")
        let latest = try store.sketchSet("t")
        #expect(latest.version == 3)
        #expect(latest.rowCount == 6)
        let ids = try latest.ids()
        let segment = try #require(try store.manifest().sketchSets["t"]?.segments.last?.segmentID)
        #expect(ids == ["a0", "a2", "a4", "\(segment):0", "\(segment):1", "\(segment):2"])
        #expect(try latest.labels() == ["x", "x", "x", "", "", ""])
        #expect(try latest.metadata() == ["{\"n\":1}", "\"s\"", "4.5", "", "", ""])
        let loss = try latest.column("loss")
        #expect(Array(loss.prefix(3)) == [0.5, 2.5, 4.5])
        #expect(loss.suffix(3).allSatisfy { $0.isNaN })
        #expect(latest.attributes["training_step"] == .number(100))

        // Rows by live position and by id, against the inputs.
        let floats = try latest.floatRows()
        let expected = [0, 2, 4].flatMap { Array(first[($0 * k)..<(($0 + 1) * k)]) } + second
        #expect(floats == expected)
        let chosen = try latest.floatRows(at: try latest.positions(of: ["a4", "\(segment):1"]))
        #expect(chosen == Array(first[(4 * k)..<(5 * k)]) + Array(second[k..<(2 * k)]))

        // Version 2 still has the deleted rows.
        let before = try store.sketchSet("t", at: 2)
        #expect(before.rowCount == 8)
        #expect(try Array(before.ids().prefix(5)) == ["a0", "a1", "a2", "a3", "a4"])

        let log = try store.log()
        #expect(log.map(\.change.operation) == ["delete", "append", "append", "init"])
        #expect(log.first?.change.rowsDeleted == 2)
        #expect(log[1].change.rowsAdded == 3)
        #expect(try store.verify().isClean)
    }

    @Test func tensorsAndDeltaMatchNumpy() throws {
        let scratch = try TemporaryDirectory()
        let script = """
        import hashlib, json, struct, sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(9)
        base = {"layer.0/w": rng.standard_normal((7, 5)).astype(np.float32), "b%": rng.standard_normal(5).astype(np.float32),
                "h": rng.standard_normal((3, 2)).astype(np.float16), ".": np.array(2.5, dtype=np.float32)}
        tuned = {n: (v + np.asarray(0.25, dtype=v.dtype) * rng.standard_normal(v.shape).astype(v.dtype)).astype(v.dtype) for n, v in base.items()}
        codes = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
        def write(path, tensors):
            header, blobs, offset = {}, [], 0
            for name, value in tensors.items():
                data = value.astype(value.dtype.newbyteorder("<")).tobytes()
                header[name] = {"dtype": codes[value.dtype], "shape": list(value.shape), "data_offsets": [offset, offset + len(data)]}
                blobs.append(data); offset += len(data)
            text = json.dumps(header).encode(); text += b" " * (-len(text) % 8)
            open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
        write(f"{out}/base.safetensors", base); write(f"{out}/tuned.safetensors", tuned)
        def content_hash(tensors):
            h = hashlib.sha256()
            for name in sorted(tensors, key=lambda s: s.encode()):
                v = tensors[name]
                dtype = "float16" if v.dtype == np.float16 else "float32"
                data = v.tobytes()
                h.update(name.encode() + b"\\0" + dtype.encode() + b"\\0" + struct.pack("<Q", v.ndim)
                         + b"".join(struct.pack("<Q", d) for d in v.shape) + struct.pack("<Q", len(data)) + data)
            return "sha256:" + h.hexdigest()
        delta = {n: tuned[n].astype(np.float32) - base[n].astype(np.float32) for n in base}
        json.dump({"base": content_hash(base), "tuned": content_hash(tuned), "delta": content_hash(delta)}, open(f"{out}/hashes.json", "w"))
        for n, v in delta.items(): np.save(f"{out}/delta_{n.replace('/', '_')}.npy", v)
        """
        let made = try ChildProcess.python(script, [scratch.path])
        try #require(made.status == 0, "python failed: \(made.standardError)")
        let hashes = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: scratch.path + "/hashes.json")))

        let store = try Store.create(at: scratch.path + "/store")
        for name in ["base", "tuned"] {
            let file = try SafetensorsFile(path: scratch.path + "/\(name).safetensors")
            let inputs = try file.tensors.map { try TensorInput(name: $0.name, elementType: $0.elementType, shape: $0.shape, bytes: $0.data) }
            try withExtendedLifetime(file) { _ = try store.putTensors(name, inputs) }
            #expect(try store.tensorSet(name).contentHash == hashes[name])
        }
        try store.recordDelta("finetune", from: "base", to: "tuned")
        let delta = try store.tensorSet("finetune")
        #expect(delta.contentHash == hashes["delta"])
        #expect(delta.kind == "delta")
        for name in delta.tensorNames {
            let expected = try NumpyFile(path: scratch.path + "/delta_\(name.replacingOccurrences(of: "/", with: "_")).npy")
            let view = try delta.tensor(named: name)
            #expect(view.shape == expected.shape)
            #expect(view.bytes.elementsEqual(expected.data), "delta of \(name) differs from numpy's float32 difference")
        }
        #expect(try store.tensorSet("base").tensor(named: "h").dtype == .float16)

        // Mismatched names or shapes are refused, naming the tensor; nothing is committed.
        let four: [Float] = [1, 2, 3, 4]
        try four.withUnsafeBytes { bytes in
            try store.putTensors("square", [try TensorInput(name: "w", elementType: .float32, shape: [2, 2], bytes: bytes)])
            try store.putTensors("flat", [try TensorInput(name: "w", elementType: .float32, shape: [4], bytes: bytes)])
        }
        let versionBefore = try store.latestVersion()
        let shapeError = #expect(throws: StoreError.self) { try store.recordDelta("bad", from: "square", to: "flat") }
        #expect(shapeError?.message.contains("tensor w has shape [2, 2] in square and [4] in flat") == true)
        let nameError = #expect(throws: StoreError.self) { try store.recordDelta("bad", from: "base", to: "flat") }
        #expect(nameError?.message.contains("is in base but not in flat") == true)
        #expect(try store.latestVersion() == versionBefore)
        #expect(try store.verify().isClean)
    }

    /// Reads by position and full exports across segments with scattered deletions, against
    /// a naive list of the surviving rows.
    @Test func chosenRowsAcrossDeletions() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 77)
        let k = 5
        var naive: [(id: String, row: [Float])] = []
        for segment in 0..<4 {
            let n = Int.random(in: 1...40, using: &generator)
            let rows = (0..<(n * k)).map { _ in Float.random(in: -10...10, using: &generator) }
            let ids = (0..<n).map { "s\(segment)-\($0)" }
            try rows.withUnsafeBytes { bytes in
                try store.append(to: "t", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k),
                                 annotations: RowAnnotations(ids: ids))
            }
            naive += (0..<n).map { (ids[$0], Array(rows[($0 * k)..<(($0 + 1) * k)])) }
        }
        for _ in 0..<3 {
            let doomed = Array(Set((0..<8).map { _ in naive[Int.random(in: 0..<naive.count, using: &generator)].id }))
            try store.delete(ids: doomed, from: "t")
            naive.removeAll { doomed.contains($0.id) }
        }
        let set = try store.sketchSet("t")
        #expect(try set.ids() == naive.map(\.id))
        #expect(try set.floatRows() == naive.flatMap(\.row))
        let positions = (0..<200).map { _ in Int.random(in: 0..<naive.count, using: &generator) }
        #expect(try set.floatRows(at: positions) == positions.flatMap { naive[$0].row })
        let wanted = positions.prefix(50).map { naive[$0].id }
        let unique = Array(NSOrderedSet(array: wanted)) as! [String]
        try store.exportRows(of: "t", ids: unique, to: scratch.path + "/chosen.npy")
        let chosen = try NumpyFile(path: scratch.path + "/chosen.npy")
        let expected = unique.flatMap { id in naive.first { $0.id == id }!.row }
        #expect((0..<expected.count).map { chosen.data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } == expected)
        #expect(throws: StoreError.self) { try set.floatRows(at: [naive.count]) }
    }

    /// A multi-batch session: one version for all batches, nothing visible before commit,
    /// repeated ids refused, abandoned batches removed.
    @Test func appendSessionsCommitOnceAndCleanUp() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let k = 4
        func batch(_ first: Int, _ n: Int) -> [Float] { (0..<(n * k)).map { Float(first * k + $0) } }
        let session = try store.beginAppend(to: "s")
        for (first, n) in [(0, 3), (3, 5), (8, 2)] {
            try batch(first, n).withUnsafeBytes { bytes in
                try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k),
                                   annotations: RowAnnotations(ids: (first..<(first + n)).map { "r\($0)" }))
            }
        }
        #expect(try store.latestVersion() == 0)  // nothing visible yet
        let repeated = #expect(throws: StoreError.self) {
            try batch(0, 1).withUnsafeBytes { bytes in
                try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: 1, k: k), annotations: RowAnnotations(ids: ["r4"]))
            }
        }
        #expect(repeated?.message.contains("already appended in this session") == true)
        let result = try session.commit(detail: "three batches")
        #expect(result.version == 1 && result.rows == 10 && result.segments.count == 3)
        let set = try store.sketchSet("s")
        #expect(try set.ids() == (0..<10).map { "r\($0)" })
        #expect(try set.floatRows() == batch(0, 10))

        // An abandoned session leaves no segment behind; one colliding with live ids neither.
        let segmentsBefore = try FileManager.default.contentsOfDirectory(atPath: store.path + "/segments").count
        do {
            let dropped = try store.beginAppend(to: "s")
            try batch(20, 2).withUnsafeBytes { bytes in
                try dropped.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: 2, k: k), annotations: RowAnnotations(ids: ["x1", "x2"]))
            }
            dropped.abandon()
        }
        let colliding = try store.beginAppend(to: "s")
        try batch(30, 1).withUnsafeBytes { bytes in
            try colliding.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: 1, k: k), annotations: RowAnnotations(ids: ["r9"]))
        }
        #expect(throws: StoreError.self) { try colliding.commit() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.path + "/segments").count == segmentsBefore)
        #expect(try store.latestVersion() == 1)
        #expect(try store.verify().isClean)
    }

    /// Generated ids are not kept in the session's id set, yet a caller-given id equal to one
    /// of them (`<segment-id>:<row>`, Spec §5.1) is still refused; look-alikes that are not
    /// generated ids (row out of range, non-canonical digits) are accepted.
    @Test func givenIDsEqualToGeneratedOnesAreRefusedInASession() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let k = 2
        let session = try store.beginAppend(to: "s")
        func append(_ n: Int, ids: [String]?) throws {
            try [Float](repeating: 1, count: n * k).withUnsafeBytes { bytes in
                try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k), annotations: RowAnnotations(ids: ids))
            }
        }
        try append(5, ids: nil)
        let files = try FileManager.default.contentsOfDirectory(atPath: store.path + "/segments").filter { $0.hasSuffix(".h5") }
        try #require(files.count == 1)
        let segmentID = String(files[0].dropLast(3))
        for taken in ["\(segmentID):0", "\(segmentID):4"] {
            let refused = #expect(throws: StoreError.self) { try append(1, ids: [taken]) }
            #expect(refused?.message.contains("id \"\(taken)\" was already appended in this session") == true)
        }
        try append(3, ids: ["\(segmentID):5", "\(segmentID):04", "\(segmentID):+1"])
        try append(2, ids: nil)  // a second generated batch: its own segment id, no clash
        let refusedGiven = #expect(throws: StoreError.self) { try append(1, ids: ["\(segmentID):04"]) }
        #expect(refusedGiven?.message.contains("already appended in this session") == true)
        let result = try session.commit()
        #expect(result.rows == 10)
        let ids = try store.sketchSet("s").ids()
        #expect(Set(ids).count == 10)
        #expect(Array(ids[0..<5]) == (0..<5).map { "\(segmentID):\($0)" })
        #expect(try store.verify().isClean)
    }
}
