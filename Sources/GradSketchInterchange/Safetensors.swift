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
        func fail(_ message: String) -> InterchangeError { InterchangeError(path: path, message) }
        guard bytes.count >= 8 else { throw fail("not a safetensors file: expected an 8-byte header length, found \(bytes.count) bytes") }
        let headerLength = Int(bytes.loadUnaligned(as: UInt64.self).littleEndian)
        guard headerLength > 0, headerLength <= Self.headerLimit, 8 + headerLength <= bytes.count else {
            throw fail("not a safetensors file: header length \(headerLength) does not fit a \(bytes.count)-byte file (limit \(Self.headerLimit))")
        }
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
        var tensors: [SafetensorsTensor] = []
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let map = value as? [String: String] else { throw fail("__metadata__ must map strings to strings") }
                metadata = map
                continue
            }
            guard let entry = value as? [String: Any], let code = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("tensor \(name): expected {dtype, shape, data_offsets: [begin, end]}")
            }
            guard let type = Self.dtypes[code] else {
                throw fail("tensor \(name) has dtype \(code): expected one of \(Self.dtypes.keys.sorted().joined(separator: ", "))")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor \(name) has a negative dimension in \(shape)") }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor \(name) has data_offsets [\(begin), \(end)] outside the \(dataLength) data bytes (truncated file?)")
            }
            let expected = shape.reduce(1, *) * type.byteWidth
            guard end - begin == expected else {
                throw fail("tensor \(name) of shape \(shape) \(code) needs \(expected) bytes, its offsets span \(end - begin)")
            }
            tensors.append(SafetensorsTensor(name: name, elementType: type, shape: shape,
                                             data: UnsafeRawBufferPointer(rebasing: bytes[(dataStart + begin)..<(dataStart + end)])))
        }
        // Overlapping tensors would alias each other's bytes: refuse them.
        let byOffset = tensors.sorted { $0.data.baseAddress! < $1.data.baseAddress! || ($0.data.baseAddress! == $1.data.baseAddress! && $0.data.count < $1.data.count) }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where !a.data.isEmpty && !b.data.isEmpty {
            if a.data.baseAddress! + a.data.count > b.data.baseAddress! {
                throw fail("tensors \(a.name) and \(b.name) overlap in the file")
            }
        }
        self.tensors = tensors.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        self.metadata = metadata
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
            let expected = tensor.shape.reduce(1, *) * tensor.elementType.byteWidth
            guard tensor.data.count == expected else {
                throw InterchangeError(path: path, "tensor \(tensor.name) of shape \(tensor.shape) needs \(expected) bytes, found \(tensor.data.count)")
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
