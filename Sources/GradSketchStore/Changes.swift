/// Rows an append wrote as segment files (published, pinned, in no version yet), ready to be
/// committed by an ``StoreChange/appendSegments(set:segments:options:)``.
public struct StagedSegments: Sendable {
    let written: [SegmentWriter.Written]
    /// The row width every segment has.
    public let k: Int
    /// The dtype the rows were stored in.
    public let dtype: SketchDType
    /// Whether the set this append creates (if it creates one) allows non-finite rows.
    public let allowNonfinite: Bool

    init(written: [SegmentWriter.Written], k: Int, dtype: SketchDType, allowNonfinite: Bool) {
        self.written = written
        self.k = k
        self.dtype = dtype
        self.allowNonfinite = allowNonfinite
    }

    /// Rows in all the segments.
    public var rows: Int { written.reduce(0) { $0 + $1.entry.rows } }
    /// The segment files, relative to the store.
    public var files: [String] { written.map(\.entry.file) }
}

/// A tensor set written as a file (published, in no version yet), ready to be committed by
/// ``StoreChange/putTensors(name:tensors:)`` or ``StoreChange/delta(name:from:to:tensors:)``.
public struct StagedTensorSet: Sendable {
    let entry: Manifest.TensorSetEntry
    /// Content hashes of `from` and `to` the delta was computed from; nil for weights.
    let sourceHashes: (from: String, to: String)?

    /// The tensor set file, relative to the store.
    public var file: String { entry.file }
}

/// One change to a store, as every writer (CLI, library, facade, C ABI) states it. A commit
/// is a list of changes applied in order to the latest manifest by ``Rules/apply(_:to:store:)``,
/// which checks every rule of the Spec, again on each rebase (Spec §7.2 step 2).
package enum StoreChange: Sendable {
    /// Adds written segments to a set, creating it with `options` when it does not exist.
    case appendSegments(set: String, segments: StagedSegments, options: SketchSetOptions)
    /// Deletes the live rows with these ids (all must be live rows of the set).
    case delete(set: String, ids: [String])
    /// Adds a tensor set of kind `weights`.
    case putTensors(name: String, tensors: StagedTensorSet)
    /// Adds a tensor set of kind `delta` = `to − from`, computed from the contents whose
    /// hashes the staged set records (refused if `from` or `to` changed meanwhile).
    case delta(name: String, from: String, to: String, tensors: StagedTensorSet)
    /// Sets (or with `.null`, removes) attributes of a sketch set.
    case setAttributes(set: String, attributes: [String: JSONValue])
    /// Removes a sketch set (older versions keep it until vacuum).
    case dropSet(String)
    /// Removes a tensor set (older versions keep it until vacuum).
    case dropTensors(String)
    /// Adds index `name` to `set`; `entry.segments` are the files it covers.
    case buildIndex(name: String, set: String, entry: Manifest.IndexEntry)
    /// Removes index `name` of `set`.
    case dropIndex(name: String, set: String)
    /// Saves result `name`.
    case saveResult(name: String, entry: Manifest.ResultEntry)
    /// Replaces runs of a set's segments by the segments merged from their live rows
    /// (Spec §5.5); refused when a replaced segment changed meanwhile.
    case compact(set: String, runs: [CompactionRun])

    /// The name `log` shows for a commit of this one change.
    var operation: String {
        switch self {
        case .appendSegments: "append"
        case .delete: "delete"
        case .putTensors: "put-tensors"
        case .delta: "delta"
        case .setAttributes: "set-attributes"
        case .dropSet: "drop-set"
        case .dropTensors: "drop-tensors"
        case .buildIndex: "build-index"
        case .dropIndex: "drop-index"
        case .saveResult: "save-result"
        case .compact: "compact"
        }
    }

    /// The sketch set (or tensor set, or result's set) the change is about, for `log`.
    var subject: String {
        switch self {
        case .appendSegments(let set, _, _), .delete(let set, _), .setAttributes(let set, _), .dropSet(let set),
             .buildIndex(_, let set, _), .dropIndex(_, let set), .compact(let set, _):
            set
        case .putTensors(let name, _), .delta(let name, _, _, _), .dropTensors(let name):
            name
        case .saveResult(_, let entry):
            entry.set
        }
    }

    /// Files the change brings that no version references yet: removed when the change is
    /// not committed.
    var stagedFiles: [String] {
        switch self {
        case .appendSegments(_, let segments, _): segments.files
        case .putTensors(_, let tensors), .delta(_, _, _, let tensors): [tensors.file]
        // An ivf-rq4 update reuses its quantizer and older parts, which earlier versions
        // reference: only the parts built on the entry's version are new.
        case .buildIndex(_, _, let entry):
            entry.parts.map { parts in
                (entry.parameters["quantizer_built_on_version"]?.intValue == entry.builtOnVersion ? [entry.file] : [])
                    + parts.filter { $0.builtOnVersion == entry.builtOnVersion }.map(\.file)
            } ?? [entry.file]
        case .saveResult(_, let entry): [entry.file]
        case .compact(_, let runs): runs.compactMap { $0.merged?.file }
        case .delete, .setAttributes, .dropSet, .dropTensors, .dropIndex: []
        }
    }
}

/// One run of consecutive segments a compaction replaces, and the segment merged from their
/// live rows (nil when none was live).
package struct CompactionRun: Sendable {
    package let replaced: [Manifest.SegmentEntry]
    package let merged: Manifest.SegmentEntry?
}

/// What a commit of changes produced.
public struct ChangesCommitted: Sendable {
    public let version: Int
    /// Rows the version added and deleted, over all sketch sets.
    public let rowsAdded: Int
    public let rowsDeleted: Int
    /// Failures after the link (Spec §7.2 step 4): the version IS committed.
    public let warnings: [StoreError]
}

extension Store {
    /// Commits `changes` as one new version (Spec §7.2): each attempt applies them in order to
    /// the latest manifest through ``Rules/apply(_:to:store:)``, so every rule is checked
    /// against the version actually committed on top of.
    ///
    /// Files the changes staged are not removed when the commit fails: the caller (which
    /// wrote them and holds their pin) decides. Deletion lists this commit writes itself are
    /// removed unless the committed version references them.
    ///
    /// - Throws: the first rule a change breaks, or `.conflict`; nothing is committed then.
    @discardableResult
    package func commit(changes: [StoreChange], detail: String? = nil) throws -> ChangesCommitted {
        guard !changes.isEmpty else {
            throw StoreError(.invalidInput, "nothing to commit: a commit needs at least one change", path: path)
        }
        let subjects = Set(changes.map(\.subject))
        let operation = changes.count == 1 ? changes[0].operation : "transaction"
        let subject = subjects.count == 1 ? subjects.first : nil
        // Deletion lists are written during the commit: pinned so vacuum leaves them be.
        let pin = try changes.contains { if case .delete = $0 { true } else { false } } ? pinWriter() : nil
        defer { pin?.release() }
        var written: [String] = []  // deletion lists of every attempt
        var kept = Set<String>()
        var committed = false
        defer {
            // Deletion lists of earlier attempts (rebased away) and of a failed commit are
            // unreferenced; the committed version's own are not touched.
            for file in written where !(committed && kept.contains(file)) { try? FileSystem.remove(absolute(file)) }
        }
        let (version, warnings) = try commitReturningWarnings(operation: operation, set: subject, allSets: subject == nil, detail: detail) { manifest in
            try Rules.apply(changes, to: &manifest, store: self, written: &written)
            kept = manifest.referencedFiles
        }
        committed = true
        let change = try manifest(at: version).change
        return ChangesCommitted(version: version, rowsAdded: change.rowsAdded, rowsDeleted: change.rowsDeleted, warnings: warnings)
    }
}

/// A writer's claim on the files it stages until it commits them (Spec §7.4): while held,
/// `vacuum` leaves files written since it was taken in place.
public final class WriteClaim {
    private let pin: WriterPin

    init(pin: WriterPin) { self.pin = pin }

    /// Gives the claim up (also done when the claim is released by ARC); later calls do nothing.
    public func release() { pin.release() }
}

extension Store {
    /// Claims the files a writer is about to stage (``stageTensors(_:_:dtype:)``,
    /// ``stageDelta(_:from:to:)``, …) until it commits them or gives up.
    public func claimWrites() throws -> WriteClaim { WriteClaim(pin: try pinWriter()) }
}

extension Store {
    /// Checks an append to `set` with `options` against the latest version before anything is
    /// written (name, dtype, projection); the commit checks again on the version it lands on.
    public func checkAppend(to set: String, options: SketchSetOptions) throws {
        try Rules.checkName(set, what: "set")
        guard let existing = try manifest().sketchSets[set] else { return }
        try Rules.checkAppend(options, to: existing, set: set, storePath: path)
    }

    /// Removes the files `change` staged, which no version references (a transaction given up).
    package func removeStagedFiles(of change: StoreChange) {
        for file in change.stagedFiles { try? FileSystem.remove(absolute(file)) }
    }
}
