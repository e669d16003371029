#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file (or a byte range of one) mapped read-only into memory.
///
/// The mapping is shared and read-only, so it costs no copy and no private memory. Nothing is
/// read when mapping: pages come in as they are touched, so a query that reads ten rows of a
/// 2 GB file pays for ten rows. Callers that will read a range whole say so with
/// ``advise(_:range:)`` (`.sequential` populates the range's page tables in one call, so a
/// scan does not fault every few pages). GradSketch maps only immutable files, which makes
/// the bytes stable for the mapping's lifetime even if the file is unlinked meanwhile.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    /// The mapped bytes; valid while this object lives.
    public let bytes: UnsafeRawBufferPointer
    private let mapping: UnsafeMutableRawPointer?
    private let mappingLength: Int

    public var count: Int { bytes.count }

    /// Maps the whole file, advised for one front-to-back read (its callers parse or checksum
    /// all of it).
    public convenience init(path: String) throws {
        try self.init(lazilyMapping: path)
        advise(.sequential)
    }

    /// Maps the whole file without reading any of it: pages come in as they are touched (for
    /// streaming readers that go through a file once and release what they read).
    public convenience init(lazilyMapping path: String) throws {
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
        guard let address = mmap(nil, mappingLength, PROT_READ, MAP_SHARED, descriptor, off_t(start)), address != MAP_FAILED else {
            throw InterchangeError(path: path, "cannot map file: \(String(cString: strerror(errno)))")
        }
        mapping = address
        bytes = UnsafeRawBufferPointer(start: address + (offset - start), count: length)
    }

    /// How a range of the mapping is about to be read.
    public enum Access: Sendable {
        /// Read whole, front to back (scans, whole-file checksums): read ahead and map the
        /// range's pages now rather than one fault at a time.
        case sequential
        /// Scattered reads (index probes, re-ranking): no read-ahead beyond the touched pages.
        case random
        /// Read and done with: the pages leave this process's memory (the kernel's page cache
        /// keeps or drops them as it likes), so streaming a file larger than memory stays flat.
        case finished
    }

    /// Tells the kernel how `range` (byte offsets into ``bytes``; all of it when nil) will be
    /// read. Advice only: a kernel that refuses it changes speed, never results.
    public func advise(_ access: Access, range: Range<Int>? = nil) {
        guard let mapping, mappingLength > 0 else { return }
        let wanted = range ?? 0..<bytes.count
        guard !wanted.isEmpty, wanted.lowerBound >= 0, wanted.upperBound <= bytes.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lead = bytes.baseAddress! - UnsafeRawPointer(mapping)
        let first = (lead + wanted.lowerBound) / page * page
        let length = lead + wanted.upperBound - first
        let start = mapping + first
        switch access {
        case .random:
            _ = madvise(start, length, MADV_RANDOM)
        case .finished:
            _ = madvise(start, length, MADV_DONTNEED)
        case .sequential:
            // Not MADV_SEQUENTIAL: it lets the kernel drop pages behind the reader, so the
            // next scan of the same rows would fault them all in again.
            _ = madvise(start, length, MADV_NORMAL)
            #if os(Linux)
            // MADV_POPULATE_READ (Linux 5.14) maps the pages now, as MAP_POPULATE did for the
            // whole file; older kernels refuse it and get read-ahead instead.
            if madvise(start, length, 22 /* MADV_POPULATE_READ */) != 0 {
                _ = madvise(start, length, MADV_WILLNEED)
            }
            #else
            _ = madvise(start, length, MADV_WILLNEED)
            #endif
        }
    }

    deinit {
        if let mapping { munmap(mapping, mappingLength) }
    }
}
