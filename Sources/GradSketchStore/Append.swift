import GradSketchHDF5
public import GradSketchInterchange
import Synchronization

/// What an append committed.
public struct AppendResult: Codable, Sendable {
    public let version: Int
    public let rows: Int
    /// The segment files the version added, relative to the store.
    public let segments: [String]
}

/// What a delete committed.
public struct DeleteResult: Codable, Sendable {
    public let version: Int
    public let rows: Int
}

/// Several batches of rows appended to one sketch set and committed as one version: the
/// way a training loop or a sketching job writes (Spec §7.2). Each batch is written and
/// published as its own segment as it arrives, so memory stays at one batch; nothing is
/// visible until ``commit(detail:)``, and an abandoned session leaves only unreferenced
/// segments, removed here (or by `vacuum` after a crash).
public final class AppendSession {
    public let store: Store
    public let set: String
    public let dtype: SketchDType
    public let allowNonfinite: Bool
    let options: SketchSetOptions
    private(set) var k: Int?
    private var written: [SegmentWriter.Written] = []
    /// The ids callers gave in this session, to refuse one given twice (Spec §5.2).
    private var givenIDs = Set<UTF8Key>()
    /// Row counts of this session's segments whose ids the writer generated, by segment id.
    /// Generated ids (`<segment-id>:<row>`, Spec §5.1) are unique by construction (a fresh
    /// random segment id each), so they are not hashed into a set; a given id is compared
    /// with them by its form instead (``isGeneratedHere(_:)``).
    private var generatedIDRows: [String: Int] = [:]
    private var committed = false
    /// Set by ``prepare()``: the segments now belong to a token; releasing the session keeps them.
    private var prepared = false
    /// Keeps vacuum off the segments written so far, however long the session lasts.
    private let pin: WriterPin

    init(store: Store, set: String, options: SketchSetOptions, firstInputType: ElementType?) throws {
        // Checked here too, so a refused append costs no segment writes.
        try store.checkAppend(to: set, options: options)
        let existing = try store.manifest().sketchSets[set]
        self.store = store
        self.set = set
        self.options = options
        k = existing?.k
        dtype = existing.flatMap { SketchDType(rawValue: $0.dtype) } ?? options.dtype ?? .natural(for: firstInputType ?? .float32)
        allowNonfinite = existing?.allowNonfinite ?? options.allowNonfinite
        pin = try store.pinWriter()
    }

    deinit { if !committed && !prepared { abandon() } }

    /// Writes one batch as a segment (not yet visible).
    ///
    /// - Throws: `.invalidInput` for a width different from the set's, ids repeated within
    ///   the session, or rows refused by the segment writer; the session stays usable.
    public func append(_ rows: RowInput, annotations: RowAnnotations = RowAnnotations(), progress: ((Int, Int) -> Void)? = nil) throws {
        precondition(!committed && !prepared, "the session is already committed or prepared")
        if let k, k != rows.k {
            throw StoreError(.invalidInput, "set \(set) has rows of width k = \(k), the input has k = \(rows.k)", path: store.path)
        }
        if let given = annotations.ids, let repeated = given.first(where: { givenIDs.contains(UTF8Key($0)) || isGeneratedHere($0) }) {
            throw StoreError(.invalidInput, "id \"\(repeated)\" was already appended in this session: ids must be unique within a set", path: store.path)
        }
        let segment = try SegmentWriter.write(into: store, rows: rows, dtype: dtype, allowNonfinite: allowNonfinite,
                                              annotations: annotations, progress: progress)
        k = rows.k
        if let generator = segment.generatedIDsSegment {
            generatedIDRows[generator] = segment.entry.rows
        } else {
            givenIDs.formUnion(segment.ids.lazy.map(UTF8Key.init))
        }
        written.append(segment)
    }

    /// Whether `id` is one this session generated: `<segment-id>:<row>` with a segment of
    /// this session whose ids were generated and a row, in canonical decimal, below its count.
    private func isGeneratedHere(_ id: String) -> Bool {
        guard !generatedIDRows.isEmpty, let colon = id.lastIndex(of: ":") else { return false }
        let digits = id[id.index(after: colon)...]
        guard let rows = generatedIDRows[String(id[..<colon])], let row = Int(digits), String(row) == digits else { return false }
        return row >= 0 && row < rows
    }

    /// Commits every batch written so far as one new version.
    @discardableResult
    public func commit(detail: String? = nil) throws -> AppendResult {
        let change = try staged()
        do {
            let version = try store.commit(changes: [change], detail: detail).version
            markCommitted()
            return AppendResult(version: version, rows: written.reduce(0) { $0 + $1.entry.rows }, segments: written.map(\.entry.file))
        } catch {
            abandon()
            throw error
        }
    }

    /// The change this session's batches make, for a caller that commits it with other
    /// changes (``Store/commit(changes:detail:)``) and then calls ``markCommitted()`` or
    /// ``abandon()``.
    package func staged() throws -> StoreChange {
        precondition(!committed, "the session is already committed")
        guard let k, !written.isEmpty else {
            throw StoreError(.invalidInput, "nothing to commit: no rows were appended to \(set)", path: store.path)
        }
        let segments = StagedSegments(written: written, k: k, dtype: dtype, allowNonfinite: allowNonfinite)
        return .appendSegments(set: set, segments: segments, options: options)
    }

    /// Finishes the session without committing: its segments stay published, in no version,
    /// and its pin stays held until the session is released; the returned token describes
    /// them for ``Store/commitPrepared(_:detail:)`` in any process. The session can no longer
    /// append or commit; ``abandon()`` still removes its segments.
    ///
    /// - Throws: `.invalidInput` when nothing was appended.
    package func prepare() throws -> PreparedAppendToken {
        precondition(!committed && !prepared, "the session is already committed or prepared")
        guard let k, !written.isEmpty else {
            throw StoreError(.invalidInput, "nothing to prepare: no rows were appended to \(set)", path: store.path)
        }
        prepared = true
        return PreparedAppendToken(
            storeID: store.storeID, set: set, k: k, dtype: dtype.rawValue, allowNonfinite: allowNonfinite,
            options: .init(dtype: options.dtype?.rawValue, allowNonfinite: options.allowNonfinite, attributes: options.attributes),
            segments: written.map { .init(entry: $0.entry, hasNonfinite: $0.hasNonfinite) })
    }

    /// Records that a version referencing the staged segments is committed: they are no
    /// longer this session's to remove, and its pin is released.
    public func markCommitted() {
        committed = true
        pin.release()
    }

    /// Removes the segments written so far; nothing references them.
    public func abandon() {
        for segment in written { try? FileSystem.remove(store.absolute(segment.entry.file)) }
        written.removeAll()
        committed = true
        pin.release()
    }
}

extension Store {
    /// Starts a multi-batch append to sketch set `name` (created with `options` by the
    /// commit when it does not exist). See ``AppendSession``.
    public func beginAppend(to name: String, options: SketchSetOptions = SketchSetOptions(), inputType: ElementType? = nil) throws -> AppendSession {
        try AppendSession(store: self, set: name, options: options, firstInputType: inputType)
    }

    /// Appends rows (with their annotations) to sketch set `name`, creating the set with
    /// `options` when it does not exist, and commits a new version (Spec §5, §7.2).
    ///
    /// The rows are converted to the set's dtype and checked before anything is published;
    /// ids are checked against the set's live ids in the version the commit lands on, so
    /// concurrent appenders cannot both add the same id.
    ///
    /// - Parameter progress: called after each written block with (rows written, total).
    @discardableResult
    public func append(
        to name: String, rows: RowInput, annotations: RowAnnotations = RowAnnotations(),
        options: SketchSetOptions = SketchSetOptions(), detail: String? = nil,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> AppendResult {
        let session = try beginAppend(to: name, options: options, inputType: rows.elementType)
        try session.append(rows, annotations: annotations, progress: progress)
        return try session.commit(detail: detail)
    }

    /// The ids of the live rows of `set`, read (and verified) once per segment and process;
    /// compared as bytes (Spec §2.5), so NFC and NFD spellings are different ids.
    func liveIDs(of set: Manifest.SketchSetEntry) throws -> Set<UTF8Key> {
        var live = Set<UTF8Key>()
        live.reserveCapacity(set.rowCount)
        for segment in set.segments {
            let ids = try segmentIDs(segment)
            if let deletions = segment.deletions {
                let deleted = try SegmentFiles.readDeletions(storePath: path, entry: deletions, segment: segment)
                live.formUnion(SegmentFiles.live(ids, deleted: deleted).lazy.map(UTF8Key.init))
            } else {
                live.formUnion(ids.lazy.map(UTF8Key.init))
            }
        }
        return live
    }

    /// A segment's ids (all rows), cached: segment files never change.
    func segmentIDs(_ segment: Manifest.SegmentEntry) throws -> [String] {
        if let cached = idCache.withLock({ $0[segment.file] }) { return cached }
        guard let checksum = segment.checksums["ids"] else {
            throw StoreError(.corrupt, "manifest lists no ids checksum for the segment", path: absolute(segment.file))
        }
        let ids = try SegmentFiles.readStrings(path: absolute(segment.file), dataset: "ids", expected: checksum, rows: segment.rows)
        idCache.withLock { $0[segment.file] = ids }
        return ids
    }

    /// Deletes the rows with `ids` from set `name` and commits a new version (Spec §5.4).
    /// Older versions keep the rows until vacuumed.
    ///
    /// - Throws: `.notFound` when an id is not a live row of the set (nothing is committed).
    @discardableResult
    public func delete(ids: [String], from name: String, detail: String? = nil) throws -> DeleteResult {
        let committed = try commit(changes: [.delete(set: name, ids: ids)], detail: detail)
        return DeleteResult(version: committed.version, rows: ids.count)
    }

    /// Writes and publishes one segment's deletion list. Called inside a commit, whose own
    /// pin keeps vacuum off the file until the version naming it is linked.
    func writeDeletions(_ rows: [Int], segment: Manifest.SegmentEntry) throws -> Manifest.DeletionEntry {
        let pin = try pinWriter()
        defer { pin.release() }
        let writer = try DataFileWriter(store: self, kind: FileKinds.deletions, pin: pin)
        try writer.setRootAttribute("segment", segment.segmentID)
        let checksum = try writer.write(rows.map { Int64($0) }, dataset: "rows", mappable: false)
        let published = try writer.publish()
        return Manifest.DeletionEntry(file: published.file, count: rows.count, checksum: checksum, size: published.size, fileChecksum: published.fileChecksum)
    }
}
