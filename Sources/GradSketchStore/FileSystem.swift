import CGradSketchKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few POSIX operations the commit protocol (Spec §7.2) depends on, each failing with a
/// ``StoreError`` that names the path and the system's reason.
enum FileSystem {
    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw StoreError(.io, "cannot create directory: \(errnoText())", path: path)
        }
    }

    /// Names in a directory (not `.`/`..`), unsorted.
    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            throw StoreError(.io, "cannot list directory: \(errnoText())", path: path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Flushes a file's data and metadata to stable storage.
    static func fsyncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw StoreError(.io, "cannot open for fsync: \(errnoText())", path: path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError(.io, "fsync failed: \(errnoText())", path: path) }
    }

    /// Makes a directory's entries (a rename, link or unlink in it) durable.
    static func fsyncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw StoreError(.io, "cannot open directory for fsync: \(errnoText())", path: path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError(.io, "directory fsync failed: \(errnoText())", path: path) }
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else {
            throw StoreError(.io, "cannot rename \(from) to \(to): \(errnoText())", path: to)
        }
    }

    /// Creates `to` as a new name for `from`; returns false (instead of throwing) when `to`
    /// already exists, which is how a writer learns that another commit came first.
    static func linkIfAbsent(_ from: String, _ to: String) throws -> Bool {
        if link(from, to) == 0 { return true }
        if errno == EEXIST { return false }
        throw StoreError(.io, "cannot link \(from) to \(to): \(errnoText())", path: to)
    }

    static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT {
            throw StoreError(.io, "cannot remove: \(errnoText())", path: path)
        }
    }

    static func size(_ path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : nil
    }

    /// Seconds since the file was last modified.
    static func age(_ path: String) -> Double? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec - info.st_mtim.tv_sec) + Double(now.tv_nsec - info.st_mtim.tv_nsec) / 1e9
    }

    /// Asks the kernel to start writing a byte range of a file to disk now, without waiting.
    ///
    /// Appends call this after each block so the disk writes while the next block is being
    /// converted and checksummed; the fsync at publish then has little left to flush.
    /// Best effort: a failure only means the final fsync does all the work.
    final class Writeback {
        private let descriptor: Int32

        init?(path: String) {
            descriptor = open(path, O_RDONLY)
            if descriptor < 0 { return nil }
        }

        deinit { close(descriptor) }

        func start(offset: Int, length: Int) {
            _ = gsk_start_writeback(descriptor, Int64(offset), Int64(length))
        }
    }

    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    static var processID: Int { Int(getpid()) }
}

/// A random 128-bit identifier as 32 lowercase hex digits (Spec §1).
func randomIdentifier() -> String {
    var generator = SystemRandomNumberGenerator()
    let high = generator.next() as UInt64
    let low = generator.next() as UInt64
    return hex64(high) + hex64(low)
}

func hex64(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// The current UTC time as ISO 8601 `YYYY-MM-DDTHH:MM:SSZ`.
func utcTimestamp() -> String {
    var now = time(nil)
    var parts = tm()
    gmtime_r(&now, &parts)
    var buffer = [CChar](repeating: 0, count: 32)
    strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
