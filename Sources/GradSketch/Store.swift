public import GradSketchStore

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

    /// Opens version `version` (the latest when nil) for reading: keep the snapshot for many
    /// queries, share it across threads; it keeps reading its version after later commits.
    public func snapshot(at version: Int? = nil) throws -> Snapshot {
        try Snapshot(store: self, version: version)
    }

    /// Runs `body`, which records changes on a ``Transaction``, and commits them all as ONE
    /// new version.
    ///
    /// The rows of appends are written (as segment files no version references) while the
    /// body runs, so memory stays at one batch. The commit applies the changes in order to
    /// the latest version and checks every Spec rule on them (projection, checkpoint, ids,
    /// k/dtype, index coverage, …); when another writer commits first it rebases and checks
    /// them again. If `body` or the commit throws, nothing is committed and the files the
    /// transaction wrote are removed.
    ///
    /// - Throws: what `body` throws, or the first rule a change breaks (nothing committed).
    @discardableResult
    public func transaction(detail: String? = nil, _ body: (Transaction) throws -> Void) throws -> CommitResult {
        let transaction = Transaction(engine: engine)
        do {
            try body(transaction)
            return try transaction.commit(detail: detail)
        } catch {
            transaction.abandon()
            throw error
        }
    }

    /// Starts a streaming append of many batches to `set` (created with `options` when the
    /// commit does not find it), committed as one version by ``AppendSession/commit(detail:)``.
    public func beginAppend(to set: String, options: SketchSetOptions = .init()) throws -> AppendSession {
        try AppendSession(engine: engine, set: set, options: options)
    }

    /// Reads every file of every retained version back and checks it against its checksums
    /// (Spec §7.6); `progress` gets (files done, files in all).
    public func verify(progress: ((Int, Int) -> Void)? = nil) throws -> VerificationReport {
        try engine.verify(progress: progress)
    }

    /// Merges runs of a set's small segments into segments of about `targetRows` rows (live
    /// rows only, annotations kept) as one new version (Spec §5.5); older versions still read
    /// the old segments until `vacuum` drops them.
    @discardableResult
    public func compact(set: String, targetRows: Int? = nil) throws -> CompactResult {
        try engine.compact(set: set, targetRows: targetRows)
    }

    /// Removes versions older than the newest `keepLast` (never the latest; nil keeps every
    /// version) and every data file no retained version references, sparing files younger
    /// than `grace` seconds and files a live writer's pin protects (Spec §7.4).
    @discardableResult
    public func vacuum(keepLast: Int? = nil, grace: Double = 3600, dryRun: Bool = false) throws -> VacuumReport {
        try engine.vacuum(keepLast: keepLast, grace: grace, dryRun: dryRun)
    }
}
