public import GradSketchStore

/// The changes of one ``Store/transaction(detail:_:)``, recorded by its body and committed
/// together as one version.
///
/// Changes apply in the order they are recorded: a delete after an append to the same set
/// can delete rows the append added. Appends and tensor sets are written while the body runs
/// (the commit only links the manifest); deletions, attributes and drops are decided at the
/// commit, against the version it lands on. A `Transaction` is valid only inside its body.
public final class Transaction {
    private let engine: GradSketchStore.Store
    private var pending: [Pending] = []
    /// Keeps vacuum off the tensor sets written so far (segments have their sessions' own).
    private var claim: WriteClaim?
    private var finished = false
    /// The dtype and non-finite rule of sets this transaction creates, fixed by their first
    /// append, so later appends to them in the same transaction store rows the same way.
    private var creating: [String: (dtype: SketchDType, allowNonfinite: Bool)] = [:]

    private enum Pending {
        case append(GradSketchStore.AppendSession)
        case change(StoreChange)
    }

    init(engine: GradSketchStore.Store) {
        self.engine = engine
    }

    /// Appends `rows` to `set`, creating it with `options` when the commit does not find it.
    /// The rows are written now; ids, k, dtype and projection are checked now against the
    /// latest version and again at the commit against the version it lands on.
    public func append(to set: String, rows: RowInput, annotations: RowAnnotations = .init(), options: SketchSetOptions = .init()) throws {
        try checkOpen()
        var options = options
        if let created = creating[set] {
            options.dtype = options.dtype ?? created.dtype
            options.allowNonfinite = created.allowNonfinite
        }
        let session = try engine.beginAppend(to: set, options: options, inputType: rows.elementType)
        do {
            try session.append(rows, annotations: annotations)
        } catch {
            session.abandon()
            throw error
        }
        if creating[set] == nil, try engine.manifest().sketchSets[set] == nil {
            creating[set] = (session.dtype, session.allowNonfinite)
        }
        pending.append(.append(session))
    }

    /// Deletes the rows with `ids` from `set` (each must be a live row when the commit applies
    /// this change).
    public func delete(ids: [String], from set: String) throws {
        try checkOpen()
        pending.append(.change(.delete(set: set, ids: ids)))
    }

    /// Stores `tensors` as tensor set `name` of kind `kind` (only `weights`; deltas come from
    /// ``delta(_:from:to:)``). Written now, committed with the transaction.
    public func putTensors(_ name: String, kind: String, tensors: [TensorInput]) throws {
        try checkOpen()
        guard kind == "weights" else {
            throw StoreError(.invalidInput, "putTensors stores tensor sets of kind weights, found kind \"\(kind)\" (a delta is recorded with delta(_:from:to:))", path: engine.path)
        }
        try claimWrites()
        let staged = try engine.stageTensors(name, tensors)
        pending.append(.change(.putTensors(name: name, tensors: staged)))
    }

    /// Records `to − from` as tensor set `name` (kind `delta`). Both must be committed tensor
    /// sets (of the latest version when this is called); the commit is refused if either
    /// changed meanwhile.
    public func delta(_ name: String, from: String, to: String) throws {
        try checkOpen()
        try claimWrites()
        let staged = try engine.stageDelta(name, from: from, to: to)
        pending.append(.change(.delta(name: name, from: from, to: to, tensors: staged)))
    }

    /// Sets attributes of `set` (a `.null` value removes the key). `projection`, `tensor_set`
    /// and `tensor_set_hash` are fixed when a set is created and cannot change.
    public func setAttributes(of set: String, _ attributes: [String: JSONValue]) throws {
        try checkOpen()
        pending.append(.change(.setAttributes(set: set, attributes: attributes)))
    }

    /// Removes sketch set `set` (older versions keep it until vacuumed).
    public func dropSet(_ set: String) throws {
        try checkOpen()
        pending.append(.change(.dropSet(set)))
    }

    /// Removes tensor set `name` (older versions keep it until vacuumed).
    public func dropTensors(_ name: String) throws {
        try checkOpen()
        pending.append(.change(.dropTensors(name)))
    }

    // MARK: - Commit

    func commit(detail: String?) throws -> CommitResult {
        try checkOpen()
        guard !pending.isEmpty else {
            throw StoreError(.invalidInput, "nothing to commit: the transaction recorded no change", path: engine.path)
        }
        let changes = try pending.map { item -> StoreChange in
            switch item {
            case .append(let session): try session.staged()
            case .change(let change): change
            }
        }
        let committed = try engine.commit(changes: changes, detail: detail)
        finished = true
        for case .append(let session) in pending { session.markCommitted() }
        claim?.release()
        return CommitResult(committed)
    }

    /// Removes every file the transaction wrote; nothing references them.
    func abandon() {
        guard !finished else { return }
        finished = true
        for item in pending {
            switch item {
            case .append(let session):
                session.abandon()
            case .change(let change):
                engine.removeStagedFiles(of: change)
            }
        }
        claim?.release()
    }

    private func claimWrites() throws {
        if claim == nil { claim = try engine.claimWrites() }
    }

    private func checkOpen() throws {
        guard !finished else {
            throw StoreError(.invalidInput, "the transaction is over: record changes only inside the body of Store.transaction", path: engine.path)
        }
    }
}
