import Foundation
import GradSketchInterchange
import GradSketchTestSupport
import Testing

/// `.npy` and `.safetensors` files against what numpy and a by-hand writer produce.
@Suite struct ArrayFileTests {
    @Test func readsNumpyVersionsAndRefusesWhatItCannotRead() throws {
        let scratch = try TemporaryDirectory()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        a = np.arange(24, dtype=np.float32).reshape(4, 6) / 8
        for version in [(1, 0), (2, 0), (3, 0)]:
            with open(f"{out}/v{version[0]}.npy", "wb") as f:
                np.lib.format.write_array(f, a, version=version)
        np.save(f"{out}/f16.npy", a.astype(np.float16))
        np.save(f"{out}/i64.npy", np.arange(5, dtype=np.int64))
        np.save(f"{out}/scalar.npy", np.float32(2.5))
        np.save(f"{out}/fortran.npy", np.asfortranarray(a))
        np.save(f"{out}/big.npy", a.astype(">f4"))
        np.save(f"{out}/object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        np.save(f"{out}/structured.npy", np.zeros(3, dtype=[("x", "<f4"), ("y", "<i4")]))
        data = open(f"{out}/v1.npy", "rb").read()
        open(f"{out}/truncated.npy", "wb").write(data[:-5])
        open(f"{out}/trailing.npy", "wb").write(data + b"xx")
        open(f"{out}/notnpy.npy", "wb").write(b"hello world, not numpy")
        """
        let made = try ChildProcess.python(script, [scratch.path])
        try #require(made.status == 0, "\(made.standardError)")
        let expected = (0..<24).map { Float($0) / 8 }
        for version in 1...3 {
            let file = try NumpyFile(path: scratch.path + "/v\(version).npy")
            #expect(file.shape == [4, 6])
            #expect(file.elementType == .float32)
            #expect((0..<24).map { file.data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } == expected)
        }
        #expect(try NumpyFile(path: scratch.path + "/f16.npy").elementType == .float16)
        #expect(try NumpyFile(path: scratch.path + "/i64.npy").shape == [5])
        #expect(try NumpyFile(path: scratch.path + "/scalar.npy").shape == [])
        let refusals: [(String, String)] = [
            ("fortran", "fortran_order"), ("big", "big-endian"), ("object", "unsupported dtype '|O'"),
            ("structured", "structured"), ("truncated", "expected 96 data bytes"), ("trailing", "found 98"),
            ("notnpy", "not a .npy file"), ("missing", "cannot open"),
        ]
        for (name, message) in refusals {
            let error = #expect(throws: InterchangeError.self) { _ = try NumpyFile(path: scratch.path + "/\(name).npy") }
            #expect(error?.description.contains(message) == true, "\(name): \(String(describing: error))")
        }
    }

    @Test func numpyReadsWhatTheWriterWrites() throws {
        let scratch = try TemporaryDirectory()
        let values = (0..<(3 * 1000)).map { Float($0) * 0.25 - 7 }
        let path = scratch.path + "/out.npy"
        let writer = try NumpyWriter(path: path, elementType: .float32, shape: [1000, 3])
        try values.withUnsafeBytes { bytes in
            try writer.append(UnsafeRawBufferPointer(rebasing: bytes[0..<1200]))
            #expect(!FileManager.default.fileExists(atPath: path), "visible before finish")
            try writer.append(UnsafeRawBufferPointer(rebasing: bytes[1200...]))
        }
        try writer.finish()
        let check = try ChildProcess.python("""
        import sys, numpy as np
        a = np.load(sys.argv[1])
        expected = (np.arange(3000, dtype=np.float32) * 0.25 - 7).reshape(1000, 3)
        print(a.shape, a.dtype, np.array_equal(a, expected), open(sys.argv[1], "rb").read(10)[8] + 10)
        """, [path])
        #expect(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "(1000, 3) float32 True 128")
        // An unfinished writer leaves nothing.
        do {
            let abandoned = try NumpyWriter(path: scratch.path + "/abandoned.npy", elementType: .float16, shape: [10])
            #expect(throws: InterchangeError.self) { try abandoned.finish() }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["out.npy"])
    }

    @Test func safetensorsRoundTripAndValidation() throws {
        let scratch = try TemporaryDirectory()
        // Written by hand from the safetensors format description, not by our writer.
        let script = """
        import json, struct, sys, numpy as np
        out = sys.argv[1]
        def write(path, tensors, meta=None, corrupt=None):
            header, blobs, offset = {}, [], 0
            if meta: header["__metadata__"] = meta
            for name, (code, array) in tensors.items():
                data = array.tobytes()
                header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
                blobs.append(data); offset += len(data)
            if corrupt: corrupt(header)
            text = json.dumps(header).encode(); text += b" " * (-len(text) % 8)
            open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
        t = {"w": ("F32", np.arange(6, dtype="<f4").reshape(2, 3)), "h": ("F16", np.array([1.5, -2], dtype="<f2")),
             "b": ("BF16", np.array([0x3f80, 0xc000], dtype="<u2"))}
        write(f"{out}/ok.safetensors", t, meta={"format": "pt"})
        write(f"{out}/overlap.safetensors", t, corrupt=lambda h: h["h"].update(data_offsets=[0, 4]))
        write(f"{out}/outside.safetensors", t, corrupt=lambda h: h["w"].update(data_offsets=[0, 4000]))
        write(f"{out}/size.safetensors", t, corrupt=lambda h: h["w"].update(shape=[3, 3]))
        write(f"{out}/dtype.safetensors", t, corrupt=lambda h: h["w"].update(dtype="F8_E4M3"))
        open(f"{out}/huge.safetensors", "wb").write(struct.pack("<Q", 1 << 40) + b"{}")
        """
        try #require(try ChildProcess.python(script, [scratch.path]).status == 0)
        let file = try SafetensorsFile(path: scratch.path + "/ok.safetensors")
        #expect(file.tensors.map(\.name) == ["b", "h", "w"])
        #expect(file.metadata == ["format": "pt"])
        let w = try #require(file.tensor(named: "w"))
        #expect(w.shape == [2, 3] && w.elementType == .float32)
        #expect((0..<6).map { w.data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } == [0, 1, 2, 3, 4, 5])
        let b = try #require(file.tensor(named: "b"))
        var widened = [Float](repeating: 0, count: 2)
        _ = try widened.withUnsafeMutableBytes { try ElementConversion.convert(b.data, from: .bfloat16, to: .float32, into: $0) }
        #expect(widened == [1.0, -2.0])
        for (name, message) in [("overlap", "overlap"), ("outside", "outside"), ("size", "needs 36 bytes"),
                                ("dtype", "F8_E4M3"), ("huge", "header length")] {
            let error = #expect(throws: InterchangeError.self) { _ = try SafetensorsFile(path: scratch.path + "/\(name).safetensors") }
            #expect(error?.description.contains(message) == true, "\(name): \(String(describing: error))")
        }
        // Our writer's output reads back identically.
        try SafetensorsWriter.write(path: scratch.path + "/again.safetensors",
                                    tensors: file.tensors.map { ($0.name, $0.elementType, $0.shape, Array($0.data)) })
        let again = try SafetensorsFile(path: scratch.path + "/again.safetensors")
        #expect(again.tensors.map(\.name) == file.tensors.map(\.name))
        #expect(zip(again.tensors, file.tensors).allSatisfy { $0.data.elementsEqual($1.data) && $0.shape == $1.shape })
    }
}
