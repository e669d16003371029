import Foundation

/// A NumPy `.npy` file (format versions 1.0, 2.0 and 3.0), mapped read-only.
///
/// Only little-endian (or byte-order-free) numeric arrays in C order are accepted: that is
/// what GradSketch stores and what every training framework writes; anything else is
/// refused with what was expected and what was found.
public final class NumpyFile: @unchecked Sendable {
    public let path: String
    public let elementType: ElementType
    public let shape: [Int]
    /// The array's bytes, zero-copy into the mapping; valid while this object lives.
    public let data: UnsafeRawBufferPointer
    private let mapping: MappedFile

    public var elementCount: Int { shape.reduce(1, *) }

    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        let layout = try Self.parseLayout(mapping.bytes, path: path)
        elementType = layout.elementType
        shape = layout.shape
        data = UnsafeRawBufferPointer(rebasing: mapping.bytes[layout.dataOffset...])
    }

    /// What a `.npy` file's header says, checked against the file's length.
    public struct Layout: Sendable, Equatable {
        public let elementType: ElementType
        public let shape: [Int]
        /// Where the array's bytes start; they run to the end of the file.
        public let dataOffset: Int
    }

    /// Parses and checks the header of the `.npy` file whose bytes are `bytes`: every number
    /// in it (header length, dimensions) is checked before any size is computed from it, and
    /// the data must be exactly as long as the shape says.
    ///
    /// - Throws: ``InterchangeError`` saying what was expected and what was found.
    public static func parseLayout(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Layout {
        func fail(_ message: String) -> InterchangeError { InterchangeError(path: path, message) }
        guard bytes.count >= 10, Array(bytes[0..<6]) == Self.magic else {
            throw fail("not a .npy file: expected the magic bytes \\x93NUMPY, found \(bytes.count < 6 ? "a \(bytes.count)-byte file" : "other bytes")")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw fail("truncated .npy header") }
            headerLength = Int(bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian)
            headerStart = 12
        default:
            throw fail(".npy format version \(major).\(bytes[7]) is not supported: expected 1.0, 2.0 or 3.0")
        }
        // headerLength < 2^32, so this sum cannot overflow.
        guard headerStart + headerLength <= bytes.count else {
            throw fail("truncated .npy header: expected \(headerLength) header bytes, found \(bytes.count - headerStart)")
        }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        let fields = try NumpyHeader(parsing: header, path: path)
        guard !fields.fortranOrder else {
            throw fail("expected a C-order (row-major) array, found fortran_order: True; save with np.ascontiguousarray")
        }
        let elementType = try Self.elementType(descr: fields.descr, path: path)
        let dataStart = headerStart + headerLength
        guard let expected = elementType.byteCount(shape: fields.shape) else {
            throw fail("shape \(fields.shape) \(elementType.rawValue) is too large: its byte count overflows a 64-bit size (the file has \(bytes.count - dataStart) data bytes)")
        }
        guard bytes.count - dataStart == expected else {
            throw fail("expected \(expected) data bytes for shape \(fields.shape) \(elementType.rawValue), found \(bytes.count - dataStart) (truncated or trailing bytes)")
        }
        return Layout(elementType: elementType, shape: fields.shape, dataOffset: dataStart)
    }

    static func elementType(descr: String, path: String) throws -> ElementType {
        var code = descr
        // '|' (not applicable) and '=' (native; little-endian on every supported machine)
        if code.hasPrefix("|") || code.hasPrefix("=") { code = "<" + code.dropFirst() }
        if code.hasPrefix(">") && !["u1", "i1", "b1"].contains(String(code.dropFirst())) {
            throw InterchangeError(path: path, "expected a little-endian array, found big-endian dtype '\(descr)'; convert with astype('<\(code.dropFirst())')")
        }
        switch code {
        case "<f2": return .float16
        case "<f4": return .float32
        case "<f8": return .float64
        case "<i8": return .int64
        case "<i4": return .int32
        case "<u1", ">u1": return .uint8
        default:
            throw InterchangeError(path: path, "unsupported dtype '\(descr)': expected one of <f2 <f4 <f8 <i8 <i4 |u1")
        }
    }

    /// The header text numpy writes for an array, padded so the data starts at a multiple
    /// of 64 bytes (what numpy itself does, so mapped data is aligned).
    static func header(elementType: ElementType, shape: [Int]) -> [UInt8] {
        let descr: String
        switch elementType {
        case .float16: descr = "<f2"
        case .float32: descr = "<f4"
        case .float64: descr = "<f8"
        case .int64: descr = "<i8"
        case .int32: descr = "<i4"
        case .uint8: descr = "|u1"
        case .bfloat16: descr = "<V2"  // not written: refused by NumpyWriter
        }
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var text = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = 10 + text.utf8.count + 1
        text += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let length = text.utf8.count
        return magic + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + Array(text.utf8)
    }
}

/// The three keys of a `.npy` header dictionary, parsed from its Python literal.
struct NumpyHeader {
    var descr = ""
    var fortranOrder = false
    var shape: [Int] = []

    init(parsing text: String, path: String) throws {
        func fail() -> InterchangeError {
            InterchangeError(path: path, "cannot parse the .npy header: expected {'descr': ..., 'fortran_order': ..., 'shape': (...)}, found \(text.prefix(120))")
        }
        func value(after key: String) throws -> Substring {
            guard let range = text.range(of: "'\(key)'") ?? text.range(of: "\"\(key)\"") else { throw fail() }
            var rest = text[range.upperBound...].drop { $0 == " " }
            guard rest.first == ":" else { throw fail() }
            rest = rest.dropFirst().drop { $0 == " " }
            return rest
        }
        let descrText = try value(after: "descr")
        guard let quote = descrText.first, quote == "'" || quote == "\"" else {
            throw InterchangeError(path: path, "structured or object dtypes are not supported: expected a simple dtype string, found \(descrText.prefix(40))")
        }
        guard let close = descrText.dropFirst().firstIndex(of: quote) else { throw fail() }
        descr = String(descrText[descrText.index(after: descrText.startIndex)..<close])
        let fortran = try value(after: "fortran_order")
        if fortran.hasPrefix("True") { fortranOrder = true } else if !fortran.hasPrefix("False") { throw fail() }
        let shapeText = try value(after: "shape")
        guard shapeText.first == "(", let end = shapeText.firstIndex(of: ")") else { throw fail() }
        let inside = shapeText[shapeText.index(after: shapeText.startIndex)..<end]
        shape = try inside.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map {
            guard let dimension = Int($0.hasSuffix("L") ? String($0.dropLast()) : $0), dimension >= 0 else { throw fail() }
            return dimension
        }
    }
}

/// Writes a `.npy` file in pieces, atomically: the data goes to a temporary name next to
/// the destination and is renamed into place, fsynced, only by ``finish()`` once exactly
/// the announced number of bytes has arrived. An unfinished writer leaves nothing behind.
public final class NumpyWriter {
    public let path: String
    private let temporary: String
    private let expected: Int
    private var written = 0
    private var handle: FileHandle?
    private var buffer: [UInt8] = []
    private static let flushBytes = 8 << 20

    public init(path: String, elementType: ElementType, shape: [Int]) throws {
        guard elementType != .bfloat16 else {
            throw InterchangeError(path: path, "numpy has no bfloat16 dtype: expected float16, float32, float64 or an integer type")
        }
        self.path = path
        temporary = path + ".tmp-\(UInt64.random(in: 0...UInt64.max))"
        guard let expected = elementType.byteCount(shape: shape) else {
            throw InterchangeError(path: path, "cannot write shape \(shape): expected non-negative dimensions whose byte count fits a 64-bit size")
        }
        self.expected = expected
        // open(2) directly: FileManager.createFile writes "atomically" through a scratch
        // directory that Foundation on Linux leaves behind in /tmp.
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard descriptor >= 0 else {
            throw InterchangeError(path: path, "cannot create the output file next to this path: \(String(cString: strerror(errno)))")
        }
        self.handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        buffer = NumpyFile.header(elementType: elementType, shape: shape)
        buffer.reserveCapacity(Self.flushBytes + (1 << 20))
    }

    deinit {
        if handle != nil {
            try? handle?.close()
            unlink(temporary)
        }
    }

    /// Appends the next bytes of the array, in row-major order.
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count <= expected - written else {
            throw InterchangeError(path: path, "more data than the shape holds: expected \(expected) bytes in all, got \(written + bytes.count)")
        }
        written += bytes.count
        if buffer.count + bytes.count > Self.flushBytes { try flush() }
        if bytes.count >= Self.flushBytes {
            try write(Data(bytes))
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    /// Checks the size, syncs and renames the file into place.
    public func finish() throws {
        guard written == expected else {
            throw InterchangeError(path: path, "incomplete array: expected \(expected) bytes, got \(written)")
        }
        try flush()
        guard let handle else { return }
        try handle.synchronize()
        try handle.close()
        self.handle = nil
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw InterchangeError(path: path, "cannot rename the finished file into place: \(String(cString: strerror(errno)))")
        }
    }

    private func flush() throws {
        if buffer.isEmpty { return }
        try write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }

    private func write(_ data: Data) throws {
        do { try handle?.write(contentsOf: data) } catch {
            throw InterchangeError(path: path, "cannot write: \(error)")
        }
    }

    /// Writes a whole array at once.
    public static func write<T: BitwiseCopyable>(_ values: [T], as elementType: ElementType, shape: [Int], to path: String) throws {
        let writer = try NumpyWriter(path: path, elementType: elementType, shape: shape)
        try values.withUnsafeBytes { try writer.append($0) }
        try writer.finish()
    }
}
