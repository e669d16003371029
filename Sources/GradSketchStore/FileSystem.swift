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

    /// Whether `path` itself (not what a symbolic link there points to) is a directory.
    static func isRealDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func isSymbolicLink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
    }

    /// Creates `path` if missing and checks it is a real directory: a store's data
    /// directories are never followed through a symbolic link (Spec §7.4), so neither a
    /// writer nor vacuum acts on files outside the store.
    static func makeStoreDirectory(_ path: String) throws {
        try makeDirectory(path)
        guard isRealDirectory(path) else {
            let found = isSymbolicLink(path) ? "a symbolic link" : "a file"
            throw StoreError(.corrupt, "expected a directory of the store, found \(found); the store does not follow links out of itself", path: path)
        }
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
    ///
    /// A failed call whose link did happen (a lost NFS reply) is recognised by `to` being
    /// the same inode as `from`, and counts as success: the commit is live either way.
    static func linkIfAbsent(_ from: String, _ to: String) throws -> Bool {
        if link(from, to) == 0 { return true }
        let failure = errno
        let reason = String(cString: strerror(failure))
        if isSameFile(from, to) { return true }
        if failure == EEXIST { return false }
        throw StoreError(.io, "cannot link \(from) to \(to): \(reason)", path: to)
    }

    static func isSameFile(_ first: String, _ second: String) -> Bool {
        var a = stat(), b = stat()
        guard lstat(first, &a) == 0, lstat(second, &b) == 0 else { return false }
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    static func remove(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT {
            throw StoreError(.io, "cannot remove: \(errnoText())", path: path)
        }
    }

    /// The directory holding `path` (`.` for a bare name).
    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Whether process `pid` on this host still runs (a process we may not signal does).
    static func isProcessAlive(_ pid: Int) -> Bool {
        guard let pid = Int32(exactly: pid), pid > 0 else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    /// Removes the files `<prefix><pid>.<anything>` beside `prefix` whose process `pid`
    /// (on this host: the caller puts the host name in `prefix`) no longer runs: temporary
    /// files of a killed writer. Best effort; a file it cannot remove stays.
    static func removeOrphans(prefix: String) {
        let directory = parentDirectory(of: prefix)
        let namePrefix = prefix.lastIndex(of: "/").map { String(prefix[prefix.index(after: $0)...]) } ?? prefix
        guard let names = try? list(directory) else { return }
        for name in names where name.hasPrefix(namePrefix) {
            let rest = name.dropFirst(namePrefix.count)
            guard let dot = rest.firstIndex(of: "."), let pid = Int(rest[..<dot]), !isProcessAlive(pid) else { continue }
            try? remove(directory + "/" + name)
        }
    }

    /// Size of the file at `path` itself (a symbolic link's own size, not its target's).
    static func size(_ path: String) -> Int? {
        var info = stat()
        return lstat(path, &info) == 0 ? Int(info.st_size) : nil
    }

    /// Seconds since the file at `path` itself (not a link's target) was last modified.
    static func age(_ path: String) -> Double? {
        modificationTime(path).map { now() - $0 }
    }

    /// When the file at `path` itself (not a link's target) was last modified, in seconds
    /// since the Unix epoch.
    static func modificationTime(_ path: String) -> Double? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
    }

    /// The current time in seconds since the Unix epoch.
    static func now() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
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
