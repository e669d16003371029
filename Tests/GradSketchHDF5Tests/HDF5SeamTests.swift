import Foundation
import GradSketchHDF5
import GradSketchTestSupport
import Testing

/// The HDF5 seam against h5py: float16 exactly as h5py writes it, mapping checks, errors.
@Suite struct HDF5SeamTests {
    @Test func float16AndFloat32MatchH5py() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/ours.h5"
        let values: [Float16] = [0, -0.0, 1, -2.5, 65504, 0.000_000_059_604_645, .infinity, 1.0009765625]
        let wide: [Float] = [1.5, -3.25, .greatestFiniteMagnitude, 1e-45]
        do {
            let file = try HDF5File.create(path: path)
            let root = try file.root()
            let half = try root.createDataset("half", type: .float16, shape: [2, 4])
            try values.withUnsafeBufferPointer { try half.write($0) }
            try half.close()
            let single = try root.createDataset("single", type: .float32, shape: [4])
            try wide.withUnsafeBufferPointer { try single.write($0) }
            try single.close()
            try root.close()
            try file.close()
        }
        // h5py must see '<f2' and '<f4' with the same bits, and write its own float16 file.
        let script = """
        import sys, h5py, numpy as np
        with h5py.File(sys.argv[1], "r") as f:
            assert f["half"].dtype == np.dtype("<f2"), f["half"].dtype
            assert f["single"].dtype == np.dtype("<f4")
            print(f["half"][()].view("<u2").ravel().tolist())
            print(f["single"][()].view("<u4").ravel().tolist())
        with h5py.File(sys.argv[2], "w") as f:
            f["half"] = np.array([[1.0, -0.5, 65504.0], [2.0**-24, 0.0, -1.0]], dtype="<f2")
            f.create_dataset("chunked", data=np.arange(4096, dtype="<f4"), chunks=(512,))
        """
        let result = try ChildProcess.python(script, [path, scratch.path + "/theirs.h5"])
        try #require(result.status == 0, "\(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines[0] == "[" + values.map { String($0.bitPattern) }.joined(separator: ", ") + "]")
        #expect(lines[1] == "[" + wide.map { String($0.bitPattern) }.joined(separator: ", ") + "]")

        let theirs = try HDF5File.open(path: scratch.path + "/theirs.h5")
        let root = try theirs.root()
        let half = try root.openDataset("half")
        #expect(try half.storageType() == .float16)
        let read: [Float16] = try half.readAll()
        #expect(read.map(\.bitPattern) == ([1.0, -0.5, 65504.0, 0.000_000_059_604_645, 0.0, -1.0] as [Float16]).map(\.bitPattern))
        // HDF5 converts on read: the in-memory type comes from the Swift element type.
        let asFloat: [Float] = try half.readAll()
        #expect(asFloat == [1.0, -0.5, 65504.0, 0x1p-24, 0.0, -1.0])
        try half.close()
        let chunked = try root.openDataset("chunked")
        guard case .failure(let refusal) = try chunked.mappableExtent(as: .float32) else {
            Issue.record("a chunked dataset must not be mappable")
            return
        }
        #expect(refusal.description.contains("not contiguous"))
        try chunked.close()
        try root.close()
        try theirs.close()
    }

    @Test func mappableDatasetsAreAligned() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/rows.h5"
        let file = try HDF5File.create(path: path)
        let root = try file.root()
        try root.setAttribute("note", "x")
        let rows = try root.createDataset("rows", type: .float32, shape: [100, 33])
        let values = (0..<3300).map { Float($0) }
        try values.withUnsafeBufferPointer { try rows.write($0) }
        guard case .success(let extent) = try rows.mappableExtent(as: .float32) else {
            Issue.record("our rows must be mappable")
            return
        }
        #expect(extent.offset % 4096 == 0)
        #expect(extent.length == 3300 * 4)
        // Wrong expected type: refused with the reason.
        guard case .failure(let refusal) = try rows.mappableExtent(as: .float16) else {
            Issue.record("a float32 dataset must not map as float16")
            return
        }
        #expect(refusal.description.contains("expected float16"))
        try rows.close()
        try root.close()
        try file.close()
        // The bytes at the offset are the values, little-endian (independent read with h5py).
        let check = try ChildProcess.python("""
        import sys, h5py, numpy as np
        with h5py.File(sys.argv[1], "r") as f: off = f["rows"].id.get_offset()
        data = np.fromfile(sys.argv[1], dtype="<f4", count=3300, offset=off)
        print(off, bool((data == np.arange(3300)).all()))
        """, [path])
        #expect(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "\(extent.offset) True")
    }

    @Test func failuresCarryTheErrorStackAndPrintNothing() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/not-hdf5.h5"
        try Data("this is not an HDF5 file".utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: HDF5Error.self) { _ = try HDF5File.open(path: path) }
        #expect(error?.call == "H5Fopen")
        #expect(error?.stack.isEmpty == false)
        #expect(error?.description.contains(path) == true)
        // Creating over an existing file fails rather than truncating it.
        #expect(throws: HDF5Error.self) { _ = try HDF5File.create(path: path) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "this is not an HDF5 file")
    }
}
