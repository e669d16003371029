/// The entries of a zip archive whose members are stored uncompressed, as `torch.save` writes
/// them (its zip writer never deflates, and pads each local header so data is aligned).
///
/// Only the central directory and the local headers are read; every offset and size read from
/// the file is checked against the archive's length before it is used, so a truncated or
/// hostile archive yields an ``InterchangeError``, never an out-of-bounds read. ZIP64 sizes and
/// offsets (archives over 4 GB) are understood.
public struct StoredZip: @unchecked Sendable {
    public let path: String
    /// Entry name → the entry's bytes, within the bytes given to ``init(bytes:path:)``.
    public let entries: [String: UnsafeRawBufferPointer]
    /// Entry names in central-directory order.
    public let names: [String]

    /// Parses the archive whose bytes are `bytes` (typically a whole mapped file).
    ///
    /// - Throws: ``InterchangeError`` for anything that is not a well-formed archive of stored
    ///   entries: no end-of-central-directory record, a compressed or encrypted entry, an entry
    ///   reaching past the end of the file.
    public init(bytes: UnsafeRawBufferPointer, path: String) throws {
        self.path = path
        func fail(_ message: String) -> InterchangeError { InterchangeError(path: path, message) }
        func u16(_ offset: Int) throws -> Int {
            guard offset >= 0, offset <= bytes.count - 2 else { throw fail("truncated zip archive: a record reaches past the end of the file") }
            return Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
        }
        func u32(_ offset: Int) throws -> Int {
            guard offset >= 0, offset <= bytes.count - 4 else { throw fail("truncated zip archive: a record reaches past the end of the file") }
            return Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
        }
        func u64(_ offset: Int) throws -> Int {
            guard offset >= 0, offset <= bytes.count - 8 else { throw fail("truncated zip archive: a record reaches past the end of the file") }
            let value = bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
            guard value <= UInt64(Int.max) else { throw fail("zip64 field \(value) is out of range") }
            return Int(value)
        }

        // The end-of-central-directory record sits in the last 22 + 65535 bytes (its comment).
        guard bytes.count >= 22 else { throw fail("not a zip archive: the file has only \(bytes.count) bytes") }
        var end = -1
        var candidate = bytes.count - 22
        let lowest = max(0, bytes.count - 22 - 65535)
        while candidate >= lowest {
            if try u32(candidate) == 0x0605_4b50 { end = candidate; break }
            candidate -= 1
        }
        guard end >= 0 else {
            throw fail("not a zip archive (no end-of-central-directory record); a legacy (pre-1.6) torch.save file or another format?")
        }
        var entryCount = try u16(end + 10)
        var directorySize = try u32(end + 12)
        var directoryOffset = try u32(end + 16)
        if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // ZIP64: a locator 20 bytes before the record points at the zip64 end record.
            guard end >= 20, try u32(end - 20) == 0x0706_4b50 else { throw fail("zip64 archive without a zip64 end-of-central-directory locator") }
            let record = try u64(end - 20 + 8)
            guard try u32(record) == 0x0606_4b50 else { throw fail("zip64 end-of-central-directory record not found at offset \(record)") }
            entryCount = try u64(record + 32)
            directorySize = try u64(record + 40)
            directoryOffset = try u64(record + 48)
        }
        guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset else {
            throw fail("truncated zip archive: the central directory (\(directorySize) bytes at \(directoryOffset)) reaches past the end of the \(bytes.count)-byte file")
        }
        var entries: [String: UnsafeRawBufferPointer] = [:]
        var names: [String] = []
        var cursor = directoryOffset
        for _ in 0..<entryCount {
            guard try u32(cursor) == 0x0201_4b50 else { throw fail("corrupt zip central directory at offset \(cursor)") }
            let flags = try u16(cursor + 8)
            let method = try u16(cursor + 10)
            var compressedSize = try u32(cursor + 20)
            var size = try u32(cursor + 24)
            let nameLength = try u16(cursor + 28)
            let extraLength = try u16(cursor + 30)
            let commentLength = try u16(cursor + 32)
            var localOffset = try u32(cursor + 42)
            guard cursor + 46 + nameLength <= bytes.count else { throw fail("truncated zip central directory") }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(cursor + 46)..<(cursor + 46 + nameLength)]), as: UTF8.self)
            // ZIP64 extra field (id 1): the 64-bit values of the fields set to 0xFFFFFFFF, in order.
            var extra = cursor + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = try u16(extra), length = try u16(extra + 2)
                if id == 1 {
                    var field = extra + 4
                    if size == 0xFFFF_FFFF { size = try u64(field); field += 8 }
                    if compressedSize == 0xFFFF_FFFF { compressedSize = try u64(field); field += 8 }
                    if localOffset == 0xFFFF_FFFF { localOffset = try u64(field) }
                }
                extra += 4 + length
            }
            guard flags & 1 == 0 else { throw fail("zip entry \(name) is encrypted") }
            guard method == 0 else {
                throw fail("zip entry \(name) is compressed (method \(method)); expected stored entries, as torch.save writes them")
            }
            guard compressedSize == size else { throw fail("zip entry \(name): stored size \(compressedSize) differs from its size \(size)") }
            guard try u32(localOffset) == 0x0403_4b50 else { throw fail("zip entry \(name): no local header at offset \(localOffset)") }
            let dataStart = localOffset + 30 + (try u16(localOffset + 26)) + (try u16(localOffset + 28))
            guard dataStart <= bytes.count, size <= bytes.count - dataStart else {
                throw fail("truncated zip archive: entry \(name) (\(size) bytes at offset \(dataStart)) reaches past the end of the \(bytes.count)-byte file")
            }
            entries[name] = UnsafeRawBufferPointer(rebasing: bytes[dataStart..<(dataStart + size)])
            names.append(name)
            cursor += 46 + nameLength + extraLength + commentLength
        }
        self.entries = entries
        self.names = names
    }
}
