import Foundation

/// One tensor of a ``SafetensorsFile``: its bytes point into the file's mapping and are
/// valid while the file object lives.
public struct SafetensorsTensor: @unchecked Sendable {
    public let name: String
    public let elementType: ElementType
    public let shape: [Int]
    public let data: UnsafeRawBufferPointer
}

/// A `.safetensors` file, mapped read-only and validated: an 8-byte little-endian header
/// length, a JSON header, then the tensors' bytes at the offsets the header gives.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    /// Tensors sorted by name.
    public let tensors: [SafetensorsTensor]
    /// The header's `__metadata__` string map.
    public let metadata: [String: String]
    private let mapping: MappedFile

    static let dtypes: [String: ElementType] = [
        "F16": .float16, "BF16": .bfloat16, "F32": .float32, "F64": .float64,
        "I64": .int64, "I32": .int32, "U8": .uint8,
    ]
    static let headerLimit = 100 << 20

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        let bytes = mapping.bytes
        let layout = try Self.parseLayout(bytes, path: path)
        tensors = layout.tensors.map { tensor in
            SafetensorsTensor(name: tensor.name, elementType: tensor.elementType, shape: tensor.shape,
                              data: UnsafeRawBufferPointer(rebasing: bytes[tensor.byteRange]))
        }
        metadata = layout.metadata
    }

    /// What a `.safetensors` header says, checked against the file's length.
    public struct Layout: Sendable {
        public struct Tensor: Sendable, Equatable {
            public let name: String
            public let elementType: ElementType
            public let shape: [Int]
            /// The tensor's bytes within the file (not within the data section).
            public let byteRange: Range<Int>
        }
        /// Tensors sorted by name (UTF-8 byte order).
        public let tensors: [Tensor]
        public let metadata: [String: String]
    }

    /// Parses and checks the `.safetensors` file whose bytes are `bytes`: the header length
    /// is compared with the file length before it becomes an `Int`, shapes are multiplied with
    /// overflow checks, and every tensor must lie inside the data section without overlapping another.
    ///
    /// - Throws: ``InterchangeError`` saying what was expected and what was found.
    public static func parseLayout(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Layout {
        func fail(_ message: String) -> InterchangeError { InterchangeError(path: path, message) }
        guard bytes.count >= 8 else { throw fail("not a safetensors file: expected an 8-byte header length, found \(bytes.count) bytes") }
        // The length is a u64; compare it as one, since values ≥ 2^63 do not fit an Int.
        let declaredLength = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard declaredLength > 0, declaredLength <= UInt64(Self.headerLimit), declaredLength <= UInt64(bytes.count - 8) else {
            throw fail("not a safetensors file: header length \(declaredLength) does not fit a \(bytes.count)-byte file (expected 1 to \(min(Self.headerLimit, max(0, bytes.count - 8))) bytes)")
        }
        let headerLength = Int(declaredLength)
        let header: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any] else {
                throw fail("safetensors header must be a JSON object")
            }
            header = object
        } catch let error as InterchangeError {
            throw error
        } catch {
            throw fail("safetensors header is not valid JSON: \(error.localizedDescription)")
        }
        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart
        var tensors: [Layout.Tensor] = []
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: String] else { throw fail("__metadata__ must map strings to strings") }
                metadata = map
                continue
            }
            guard let entry = value as? [String: Any], let code = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("tensor \(name): expected {dtype, shape: [integers], data_offsets: [begin, end]} with integers that fit 64 bits")
            }
            guard let type = Self.dtypes[code] else {
                throw fail("tensor \(name) has dtype \(code): expected one of \(Self.dtypes.keys.sorted().joined(separator: ", "))")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor \(name) has a negative dimension in \(shape)") }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor \(name) has data_offsets [\(begin), \(end)] outside the \(dataLength) data bytes (truncated file?)")
            }
            guard let expected = type.byteCount(shape: shape) else {
                throw fail("tensor \(name) of shape \(shape) \(code) is too large: its byte count overflows a 64-bit size (its offsets span \(end - begin))")
            }
            guard end - begin == expected else {
                throw fail("tensor \(name) of shape \(shape) \(code) needs \(expected) bytes, its offsets span \(end - begin)")
            }
            tensors.append(Layout.Tensor(name: name, elementType: type, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end)))
        }
        // Overlapping tensors would alias each other's bytes: refuse them.
        let byOffset = tensors.filter { !$0.byteRange.isEmpty }.sorted {
            ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound)
        }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.byteRange.upperBound > b.byteRange.lowerBound {
            throw fail("tensors \(a.name) and \(b.name) overlap in the file")
        }
        return Layout(tensors: tensors.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }, metadata: metadata)
    }

    public func tensor(named name: String) -> SafetensorsTensor? {
        tensors.first { $0.name == name }
    }
}

/// Writes `.safetensors` files (atomically: temporary name, fsync, rename).
public enum SafetensorsWriter {
    static func code(for type: ElementType) -> String {
        SafetensorsFile.dtypes.first { $0.value == type }!.key
    }

    public static func write(path: String, tensors: [(name: String, elementType: ElementType, shape: [Int], data: [UInt8])],
                             metadata: [String: String] = [:]) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for tensor in tensors {
            guard let expected = tensor.elementType.byteCount(shape: tensor.shape), tensor.data.count == expected else {
                throw InterchangeError(path: path, "tensor \(tensor.name) of shape \(tensor.shape) needs \(tensor.elementType.byteCount(shape: tensor.shape).map(String.init) ?? "more than 2^63") bytes, found \(tensor.data.count)")
            }
            header[tensor.name] = ["dtype": code(for: tensor.elementType), "shape": tensor.shape, "data_offsets": [offset, offset + expected]]
            offset += expected
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        for tensor in tensors { file.append(contentsOf: tensor.data) }
        let temporary = path + ".tmp-\(UInt64.random(in: 0...UInt64.max))"
        do {
            try file.write(to: URL(fileURLWithPath: temporary))
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: temporary))
            try handle.synchronize()
            try handle.close()
        } catch {
            unlink(temporary)
            throw InterchangeError(path: path, "cannot write: \(error)")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw InterchangeError(path: path, "cannot rename into place: \(String(cString: strerror(errno)))")
        }
    }
}
