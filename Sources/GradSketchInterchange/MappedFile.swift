#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file (or a byte range of one) mapped read-only into memory.
///
/// The mapping is shared and read-only, so it costs no copy and no private memory; the
/// pages are populated up front on Linux (`MAP_POPULATE`) so scans do not take a page fault
/// every 4 KiB. GradSketch maps only immutable files, which makes the bytes stable for the
/// mapping's lifetime even if the file is unlinked meanwhile.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    /// The mapped bytes; valid while this object lives.
    public let bytes: UnsafeRawBufferPointer
    private let mapping: UnsafeMutableRawPointer?
    private let mappingLength: Int

    public var count: Int { bytes.count }

    /// Maps the whole file.
    public convenience init(path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw InterchangeError(path: path, "cannot open file: \(String(cString: strerror(errno)))")
        }
        try self.init(path: path, offset: 0, length: Int(info.st_size))
    }

    /// Maps `length` bytes starting at `offset` (any offset; the mapping starts at the page
    /// below it).
    public init(path: String, offset: Int, length: Int) throws {
        self.path = path
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw InterchangeError(path: path, "cannot open file: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw InterchangeError(path: path, "cannot stat file: \(String(cString: strerror(errno)))")
        }
        // offset and length can come from a manifest: compare without adding them.
        guard offset >= 0, length >= 0, offset <= Int(info.st_size), length <= Int(info.st_size) - offset else {
            throw InterchangeError(path: path, "expected \(length) bytes at offset \(offset) in the file, found a file of \(info.st_size) bytes (truncated?)")
        }
        if length == 0 {
            mapping = nil
            mappingLength = 0
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        mappingLength = offset - start + length
        #if os(Linux)
        let flags = MAP_SHARED | MAP_POPULATE
        #else
        let flags = MAP_SHARED
        #endif
        guard let address = mmap(nil, mappingLength, PROT_READ, flags, descriptor, off_t(start)), address != MAP_FAILED else {
            throw InterchangeError(path: path, "cannot map file: \(String(cString: strerror(errno)))")
        }
        mapping = address
        bytes = UnsafeRawBufferPointer(start: address + (offset - start), count: length)
    }

    deinit {
        if let mapping { munmap(mapping, mappingLength) }
    }
}
