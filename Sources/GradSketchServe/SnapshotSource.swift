public import GradSketch
import Logging
import ServiceLifecycle
import Synchronization

/// The snapshot a server answers from.
///
/// A request takes the current snapshot once and uses it to the end, so swapping in a newer
/// version never changes the version a request reads; the old snapshot (a class) stays open
/// until the last request holding it finishes.
public final class SnapshotSource: Sendable {
    /// The store the snapshots come from.
    public let store: Store
    private let current: Mutex<Snapshot>

    /// Opens `version` of the store at `path` (the latest when nil).
    ///
    /// - Throws: the engine's `StoreError` if the path is not a store or the version does
    ///   not exist.
    public init(storePath path: String, version: Int?) throws {
        store = try Store(opening: path)
        current = Mutex(try store.snapshot(at: version))
    }

    /// The snapshot requests read now.
    public var snapshot: Snapshot { current.withLock { $0 } }

    /// Switches to the latest version if it is newer than the one served.
    ///
    /// - Returns: the version switched to, or nil when the served version is the latest.
    @discardableResult
    public func refresh() throws -> Int? {
        let latest = try store.latestVersion()
        guard latest > snapshot.version else { return nil }
        // Opened outside the lock: only the swap is serialised.
        let newer = try store.snapshot(at: latest)
        return current.withLock { served in
            guard newer.version > served.version else { return nil }
            served = newer
            return newer.version
        }
    }
}

/// Looks for a newer committed version every `interval` and switches the source to it
/// (`--follow`). Reading the latest version number is one directory listing, so the check
/// is cheap.
struct SnapshotFollower: Service {
    let source: SnapshotSource
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                do {
                    if let version = try source.refresh() {
                        logger.info("now serving version \(version)")
                    }
                } catch {
                    // A failed check keeps the served snapshot; the next tick tries again.
                    logger.error("could not open the latest version: \(error)")
                }
            }
        }
    }
}
