import Foundation
import GradSketchInterchange
import GradSketchTestSupport
import Testing

/// Issue 12 items 5 and 10: numbers from a file are checked before arithmetic, and text
/// files give one entry per line whatever their line endings.
@Suite struct ParserHardeningTests {
    /// A `.npy` file with a hand-written header, which numpy would refuse to write.
    static func numpyFile(header: String, dataBytes: Int, in scratch: TemporaryDirectory, name: String) throws -> String {
        var text = Array(header.utf8)
        text += [UInt8](repeating: 0x20, count: (64 - (10 + text.count + 1) % 64) % 64) + [0x0A]
        let bytes = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(text.count & 0xff), UInt8(text.count >> 8)] + text
            + [UInt8](repeating: 0, count: dataBytes)
        let path = scratch.path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func file(_ bytes: [UInt8], in scratch: TemporaryDirectory, name: String) throws -> String {
        let path = scratch.path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func numpyShapesWhoseByteCountOverflowsAreRefused() throws {
        let scratch = try TemporaryDirectory()
        // 2^62 × 4 × 4 bytes = 2^66, 2^32 × 2^32 = 2^64, and a zero row count next to a
        // width whose row size (2^62 × 4) overflows: each trapped in `shape.reduce(1, *) * width`.
        let shapes = ["(4611686018427387904, 4)", "(4294967296, 4294967296)", "(9223372036854775807,)", "(0, 4611686018427387904)"]
        for (index, shape) in shapes.enumerated() {
            let path = try Self.numpyFile(header: "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }", dataBytes: 16,
                                          in: scratch, name: "overflow\(index).npy")
            let error = #expect(throws: InterchangeError.self) { _ = try NumpyFile(path: path) }
            #expect(error?.message.contains("too large: its byte count overflows a 64-bit size") == true, "\(shape): \(String(describing: error))")
        }
        // The checked product is exact where it fits: 2^20 × 2^20 float16 needs 2^41 bytes, not 16.
        let big = try Self.numpyFile(header: "{'descr': '<f2', 'fortran_order': False, 'shape': (1048576, 1048576), }", dataBytes: 16,
                                     in: scratch, name: "big.npy")
        let error = #expect(throws: InterchangeError.self) { _ = try NumpyFile(path: big) }
        #expect(error?.message.contains("expected 2199023255552 data bytes") == true, "\(String(describing: error))")
    }

    @Test func byteCountsAreCheckedProducts() {
        #expect(ElementType.float32.byteCount(shape: [3, 4]) == 48)
        #expect(ElementType.float64.byteCount(shape: []) == 8)
        #expect(ElementType.uint8.byteCount(shape: [0, 7]) == 0)
        #expect(ElementType.float32.byteCount(shape: [1 << 61]) == nil)
        #expect(ElementType.uint8.byteCount(shape: [1 << 31, 1 << 31, 2]) == nil)
        #expect(ElementType.float32.byteCount(shape: [0, 1 << 62]) == nil)
        #expect(ElementType.float16.byteCount(shape: [-1, 2]) == nil)
    }

    @Test func safetensorsHeaderLengthsOf2To63AndAboveAreRefused() throws {
        let scratch = try TemporaryDirectory()
        for (name, length) in [("ff", [UInt8](repeating: 0xff, count: 8)), ("2p63", [0, 0, 0, 0, 0, 0, 0, 0x80] as [UInt8])] {
            // Int(UInt64) trapped for both before the length was compared as a UInt64.
            let path = try Self.file(length + Array("{}".utf8), in: scratch, name: "\(name).safetensors")
            let error = #expect(throws: InterchangeError.self) { _ = try SafetensorsFile(path: path) }
            #expect(error?.message.contains("does not fit a 10-byte file") == true, "\(String(describing: error))")
        }
    }

    @Test func safetensorsShapesWhoseByteCountOverflowsAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let headers = [
            #"{"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#,
            #"{"x":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}"#,
        ]
        for (index, header) in headers.enumerated() {
            var json = Array(header.utf8)
            json += [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8)
            var bytes: [UInt8] = []
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes += $0 }
            let path = try Self.file(bytes + json + [UInt8](repeating: 0, count: 16), in: scratch, name: "shape\(index).safetensors")
            let error = #expect(throws: InterchangeError.self) { _ = try SafetensorsFile(path: path) }
            #expect(error?.message.contains("too large: its byte count overflows a 64-bit size") == true, "\(String(describing: error))")
        }
    }

    @Test func mappedRangesNearIntMaxAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let path = try Self.file([UInt8](repeating: 7, count: 100), in: scratch, name: "hundred")
        // offset + length overflowed (a trap) for ranges a hostile manifest can declare.
        for (offset, length) in [(Int.max - 4, 10), (10, Int.max - 4), (101, 0), (90, 11)] {
            let error = #expect(throws: InterchangeError.self) { _ = try MappedFile(path: path, offset: offset, length: length) }
            #expect(error?.message.contains("found a file of 100 bytes") == true, "\(offset), \(length): \(String(describing: error))")
        }
        let tail = try MappedFile(path: path, offset: 90, length: 10)
        withExtendedLifetime(tail) { #expect(tail.bytes.count == 10 && tail.bytes.allSatisfy { $0 == 7 }) }
    }

    @Test func textLinesEndAtLFCRLFOrCR() throws {
        let scratch = try TemporaryDirectory()
        let expected = ["row-0", "row-1", "Ankle boot", "", "étude"]
        let endings: [(String, [UInt8])] = [("lf", [0x0A]), ("crlf", [0x0D, 0x0A]), ("cr", [0x0D])]
        for (name, ending) in endings {
            let bytes = expected.map { Array($0.utf8) + ending }.flatMap { $0 }
            #expect(try TextLines.read(try Self.file(bytes, in: scratch, name: name)) == expected, "\(name)")
            // Without the final line ending too.
            #expect(try TextLines.read(try Self.file(bytes.dropLast(ending.count), in: scratch, name: name + "-open")) == expected, "\(name)")
        }
        let mixed = Array("a\r\nb\nc\rd\r\n\r\ne".utf8)
        #expect(try TextLines.read(try Self.file(mixed, in: scratch, name: "mixed")) == ["a", "b", "c", "d", "", "e"])
        let bom = [0xEF, 0xBB, 0xBF] + Array("x\r\ny\r\n".utf8)
        #expect(try TextLines.read(try Self.file(bom, in: scratch, name: "bom")) == ["x", "y"])
        #expect(try TextLines.read(try Self.file([], in: scratch, name: "empty")) == [])
        #expect(try TextLines.read(try Self.file([0x0D, 0x0A], in: scratch, name: "one-empty")) == [""])
    }

    @Test func textLinesRefuseWhatIsNotUTF8AndWriteWhatTheyRead() throws {
        let scratch = try TemporaryDirectory()
        let bad = try Self.file(Array("ok\r\nbad-".utf8) + [0xFF, 0x0D, 0x0A], in: scratch, name: "bad")
        let error = #expect(throws: InterchangeError.self) { _ = try TextLines.read(bad) }
        #expect(error?.message.contains("line 2 is not valid UTF-8") == true, "\(String(describing: error))")
        #expect(throws: InterchangeError.self) { _ = try TextLines.read(scratch.path + "/missing") }
        #expect(throws: InterchangeError.self) { _ = try TextLines.read(scratch.path) }  // a directory
        let written = scratch.path + "/out.txt"
        try TextLines.write(["a", "", "ü"], to: written)
        #expect(try Data(contentsOf: URL(fileURLWithPath: written)) == Data("a\n\nü\n".utf8))
        #expect(throws: InterchangeError.self) { try TextLines.write(["one\rtwo"], to: written) }
    }
}
