import GradSketchStore

/// A GradSketch store, the entry point of the engine (Spec §1).
///
/// Open or create one, then read through a ``Snapshot`` (one version, opened once and kept
/// for many queries) and write through transactions. Several processes may hold the same
/// store open and commit concurrently; every commit is re-validated against the latest
/// version (Spec §7.2).
public final class Store: Sendable {
    /// The engine's store, which this facade drives.
    let engine: GradSketchStore.Store

    init(engine: GradSketchStore.Store) {
        self.engine = engine
    }

    /// Opens an existing store.
    public convenience init(opening path: String) throws {
        self.init(engine: try GradSketchStore.Store(opening: path))
    }

    /// Creates a new, empty store at `path` (a new path or an empty directory) and commits
    /// version 0.
    public static func create(at path: String) throws -> Store {
        Store(engine: try GradSketchStore.Store.create(at: path))
    }

    /// The store's directory.
    public var path: String { engine.path }

    /// Every retained version number, ascending.
    public func versions() throws -> [Int] { try engine.versions() }

    /// The latest committed version.
    public func latestVersion() throws -> Int { try engine.latestVersion() }
}
