public import GradSketchStore

/// A streaming append of many batches to one set, committed as one version (Spec §7.2).
///
/// Each batch is written as a segment as it arrives, so memory stays at one batch; nothing is
/// visible until ``commit(detail:)``. ``abort()`` (or dropping an uncommitted session) removes
/// the segments written.
public final class AppendSession {
    private let engine: GradSketchStore.Store
    private let set: String
    private let options: SketchSetOptions
    /// Created by the first batch, whose element type picks the natural dtype of a new set.
    private var session: GradSketchStore.AppendSession?
    private var finished = false
    /// Set by ``prepare()``: the segments belong to the token now.
    private var prepared = false

    init(engine: GradSketchStore.Store, set: String, options: SketchSetOptions) throws {
        self.engine = engine
        self.set = set
        self.options = options
        // Name, dtype and projection are checked now, so a refused append writes nothing.
        try engine.checkAppend(to: set, options: options)
    }

    /// Writes one batch (not yet visible).
    ///
    /// - Throws: `.invalidInput` for a width or dtype different from the set's, ids repeated
    ///   within the session, or rows the segment writer refuses; the session stays usable.
    public func append(_ rows: RowInput, annotations: RowAnnotations = .init()) throws {
        try checkActive()
        if session == nil {
            session = try engine.beginAppend(to: set, options: options, inputType: rows.elementType)
        }
        try session!.append(rows, annotations: annotations)
    }

    /// Commits every batch written so far as one new version; on failure the session's
    /// segments are removed and nothing is committed.
    @discardableResult
    public func commit(detail: String? = nil) throws -> CommitResult {
        try checkActive()
        guard let session else {
            throw StoreError(.invalidInput, "nothing to commit: no rows were appended to \(set)", path: engine.path)
        }
        finished = true
        do {
            let committed = try engine.commit(changes: [try session.staged()], detail: detail)
            session.markCommitted()
            return CommitResult(committed)
        } catch {
            session.abandon()
            throw error
        }
    }

    /// Finishes the session without committing, for a commit of many sessions' rows as one
    /// version by ``Store/commit(prepared:detail:)`` in this or any other process.
    ///
    /// The segments written stay published (in no version) and this session keeps its pin, so
    /// `vacuum` leaves them alone until the session is released; after that only vacuum's
    /// grace period protects them, so commit the token while the session lives. The session
    /// can no longer append or commit; ``abort()`` removes the segments (only do that when
    /// the token was not committed).
    ///
    /// - Throws: `.invalidInput` when nothing was appended or the session is finished.
    public func prepare() throws -> PreparedAppend {
        try checkActive()
        guard let session else {
            throw StoreError(.invalidInput, "nothing to prepare: no rows were appended to \(set)", path: engine.path)
        }
        let token = try session.prepare()
        finished = true
        prepared = true
        return PreparedAppend(token: try token.jsonText())
    }

    /// Removes the segments written so far (also after ``prepare()``); the session can no
    /// longer be used.
    public func abort() {
        finished = true
        session?.abandon()
    }

    private func checkActive() throws {
        guard !finished else {
            let state = prepared ? "prepared: commit its token with Store.commit(prepared:)" : "already committed or aborted"
            throw StoreError(.invalidInput, "the append session to \(set) is \(state)", path: engine.path)
        }
    }

    // A prepared session's segments outlive it (its token names them); its pin goes with it.
    deinit { if !finished { session?.abandon() } }
}
