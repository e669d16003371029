import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A writer's claim on the files it writes until it commits (Spec §7.4).
///
/// A pin is an empty file `pins/<created>.<host>.<pid>.<random>`, created before the writer
/// writes anything and removed when it commits or gives up. `vacuum` keeps every
/// unreferenced file modified at or after the `created` second of the oldest live pin, so a
/// writer that stalls past vacuum's grace (a slow training loop between batches of an
/// ``AppendSession``) does not lose its published segments. A pin is live while its
/// modification time is less than ``lifetime`` seconds old (and, on the same host, while its
/// process runs); a timer refreshes it every ``refreshInterval`` seconds, so only a writer
/// that is stopped or gone lets its pin lapse, and the re-check before the link
/// (Spec §7.2 step 3) then refuses to commit files a vacuum removed.
final class WriterPin {
    static let directory = "pins"
    static let lifetime: Double = 600
    static let refreshInterval = 60

    let path: String
    private let timer: DispatchSourceTimer
    private var released = false

    init(store: Store) throws {
        let directory = store.path + "/" + WriterPin.directory
        try FileSystem.makeStoreDirectory(directory)
        let created = Int(FileSystem.now().rounded(.down))
        path = directory + "/\(created).\(FileSystem.hostName).\(FileSystem.processID).\(randomIdentifier())"
        try WriterPin.touch(path)
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "gradsketch.pin"))
        timer.schedule(deadline: .now() + .seconds(WriterPin.refreshInterval), repeating: .seconds(WriterPin.refreshInterval))
        let path = self.path
        timer.setEventHandler { try? WriterPin.touch(path) }
        timer.resume()
    }

    deinit { release() }

    /// Stops refreshing and removes the pin file; later calls do nothing.
    func release() {
        guard !released else { return }
        released = true
        timer.cancel()
        try? FileSystem.remove(path)
    }

    /// Creates the pin file if missing and sets its modification time to now.
    static func touch(_ path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw StoreError(.io, "cannot create or refresh the writer's pin: \(FileSystem.errnoText())", path: path)
        }
        defer { close(descriptor) }
        futimens(descriptor, nil)
    }

    /// The `created` seconds of the oldest live pin in `store`, or nil when none is live.
    /// Pins that have lapsed are removed (best effort) so `pins/` does not grow.
    static func oldestLiveCreation(in store: Store, removeLapsed: Bool) throws -> Int? {
        let directory = store.path + "/" + WriterPin.directory
        guard FileSystem.exists(directory) else { return nil }
        guard FileSystem.isRealDirectory(directory) else {
            throw StoreError(.corrupt, "expected a directory of the store, found a symbolic link or a file; the store does not follow links out of itself", path: directory)
        }
        var oldest: Int?
        for name in try FileSystem.list(directory) {
            let full = directory + "/" + name
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 4, let created = Int(parts[0]), let pid = Int(parts[parts.count - 2]) else { continue }
            let host = parts[1..<(parts.count - 2)].joined(separator: ".")
            let lapsed = (FileSystem.age(full) ?? .infinity) >= lifetime
                || (host == FileSystem.hostName && !FileSystem.isProcessAlive(pid))
            if lapsed {
                if removeLapsed { try? FileSystem.remove(full) }
                continue
            }
            oldest = min(oldest ?? created, created)
        }
        return oldest
    }
}

extension Store {
    /// Pins the files a writer is about to write until the returned pin is released.
    func pinWriter() throws -> WriterPin { try WriterPin(store: self) }
}
