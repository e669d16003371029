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
    private var ids = Set<UTF8Key>()
    private var committed = false
    /// Keeps vacuum off the segments written so far, however long the session lasts.
    private let pin: WriterPin

    init(store: Store, set: String, options: SketchSetOptions, firstInputType: ElementType?) throws {
        try Rules.checkName(set, what: "set")
        let existing = try store.manifest().sketchSets[set]
        if let existing, let dtype = options.dtype, dtype.rawValue != existing.dtype {
            throw StoreError(.invalidInput, "set \(set) stores \(existing.dtype), the append asks for \(dtype.rawValue)", path: store.path)
        }
        // Checked here too, so a refused projection costs no segment writes.
        if let existing {
            try ProjectionRule.checkAppend(stating: options.attributes["projection"], to: existing, set: set, storePath: store.path)
        }
        self.store = store
        self.set = set
        self.options = options
        k = existing?.k
        dtype = existing.flatMap { SketchDType(rawValue: $0.dtype) } ?? options.dtype ?? .natural(for: firstInputType ?? .float32)
        allowNonfinite = existing?.allowNonfinite ?? options.allowNonfinite
        pin = try store.pinWriter()
    }

    deinit { if !committed { abandon() } }

    /// Writes one batch as a segment (not yet visible).
    ///
    /// - Throws: `.invalidInput` for a width different from the set's, ids repeated within
    ///   the session, or rows refused by the segment writer; the session stays usable.
    public func append(_ rows: RowInput, annotations: RowAnnotations = RowAnnotations(), progress: ((Int, Int) -> Void)? = nil) throws {
        precondition(!committed, "the session is already committed")
        if let k, k != rows.k {
            throw StoreError(.invalidInput, "set \(set) has rows of width k = \(k), the input has k = \(rows.k)", path: store.path)
        }
        if let given = annotations.ids, let repeated = given.first(where: { ids.contains(UTF8Key($0)) }) {
            throw StoreError(.invalidInput, "id \"\(repeated)\" was already appended in this session: ids must be unique within a set", path: store.path)
        }
        let segment = try SegmentWriter.write(into: store, rows: rows, dtype: dtype, allowNonfinite: allowNonfinite,
                                              annotations: annotations, progress: progress)
        k = rows.k
        ids.formUnion(segment.ids.lazy.map(UTF8Key.init))
        written.append(segment)
    }

    /// Commits every batch written so far as one new version.
    @discardableResult
    public func commit(detail: String? = nil) throws -> AppendResult {
        precondition(!committed, "the session is already committed")
        guard let k, !written.isEmpty else {
            throw StoreError(.invalidInput, "nothing to commit: no rows were appended to \(set)", path: store.path)
        }
        let entries = written.map(\.entry)
        let hasNonfinite = written.contains { $0.hasNonfinite }
        let (store, set, dtype, allowNonfinite, options) = (self.store, self.set, self.dtype, self.allowNonfinite, self.options)
        let orderedIDs = written.flatMap(\.ids)  // so a collision is reported at its first row
        do {
            let version = try store.commit(operation: "append", set: set, detail: detail) { manifest in
                if var entry = manifest.sketchSets[set] {
                    // Re-checked against the version this commit lands on (Spec §7.2 step 2).
                    guard entry.k == k, entry.dtype == dtype.rawValue else {
                        throw StoreError(.conflict, "set \(set) changed meanwhile: it now has k = \(entry.k), dtype \(entry.dtype); this append has k = \(k), dtype \(dtype.rawValue)", path: store.path)
                    }
                    try ProjectionRule.checkAppend(stating: options.attributes["projection"], to: entry, set: set, storePath: store.path)
                    if hasNonfinite && !entry.allowNonfinite {
                        throw StoreError(.invalidInput, "set \(set) does not allow non-finite rows, and this append has some", path: store.path)
                    }
                    // Through the set's id hash tables: never reads the ids of the whole set.
                    try store.checkNewIDs(orderedIDs, against: entry, setName: set)
                    entry.segments += entries
                    manifest.sketchSets[set] = entry
                } else {
                    manifest.sketchSets[set] = Manifest.SketchSetEntry(
                        k: k, dtype: dtype.rawValue, allowNonfinite: allowNonfinite,
                        attributes: options.attributes, segments: entries)
                }
            }
            committed = true
            pin.release()
            return AppendResult(version: version, rows: written.reduce(0) { $0 + $1.entry.rows }, segments: entries.map(\.file))
        } catch {
            abandon()
            throw error
        }
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
        let wanted = Set(ids.lazy.map(UTF8Key.init))
        guard wanted.count == ids.count else {
            throw StoreError(.invalidInput, "the ids to delete repeat themselves: \(ids.count) given, \(wanted.count) distinct")
        }
        let pin = try pinWriter()
        defer { pin.release() }
        var writtenFiles: [String] = []
        var kept: Set<String> = []
        var committed = false
        defer {
            // Deletion lists of earlier attempts (rebased away) and of a failed commit are
            // unreferenced; the committed version's own are not touched.
            for file in writtenFiles where !(committed && kept.contains(file)) { try? FileSystem.remove(absolute(file)) }
        }
        let version = try commit(operation: "delete", set: name, detail: detail) { manifest in
            guard var set = manifest.sketchSets[name] else {
                throw StoreError(.notFound, "no sketch set \"\(name)\" in version \(manifest.version)", path: path)
            }
            var found = 0
            for index in set.segments.indices {
                let segment = set.segments[index]
                let segmentIDs = try self.segmentIDs(segment)
                var deleted = Set(try segment.deletions.map { try SegmentFiles.readDeletions(storePath: path, entry: $0, segment: segment) } ?? [])
                let before = deleted.count
                for (local, id) in segmentIDs.enumerated() where wanted.contains(UTF8Key(id)) && !deleted.contains(local) {
                    deleted.insert(local)
                }
                guard deleted.count > before else { continue }
                found += deleted.count - before
                let file = try writeDeletions(deleted.sorted(), segment: segment)
                writtenFiles.append(file.file)
                set.segments[index].deletions = file
            }
            guard found == wanted.count else {
                let live = try liveIDs(of: manifest.sketchSets[name]!)
                let missing = ids.first { !live.contains(UTF8Key($0)) } ?? "?"
                throw StoreError(.notFound, "cannot delete id \"\(missing)\": it is not a live row of set \(name) in version \(manifest.version) (\(wanted.count - found) of \(wanted.count) ids not found; nothing deleted)", path: path)
            }
            manifest.sketchSets[name] = set
            kept = Set(set.segments.compactMap { $0.deletions?.file })
        }
        committed = true
        return DeleteResult(version: version, rows: ids.count)
    }

    private func writeDeletions(_ rows: [Int], segment: Manifest.SegmentEntry) throws -> Manifest.DeletionEntry {
        let id = randomIdentifier()
        let temporary = try temporaryPath()
        defer { try? FileSystem.remove(temporary) }
        let values = rows.map { Int64($0) }
        let checksum = Checksum.values(values)
        try withContext(.io, "cannot write deletion list", path: temporary) {
            let file = try HDF5File.create(path: temporary)
            let root = try file.root()
            try FileHeader.write(on: root, type: .rowDeletions)
            try root.setAttribute("segment", segment.segmentID)
            let dataset = try root.createDataset("rows", type: .int64, shape: [values.count], mappable: false)
            try values.withUnsafeBytes { try dataset.writeBytes($0, as: .int64) }
            try FileHeader.mark(dataset, type: .deletedRows, checksum: checksum)
            try dataset.close()
            try root.close()
            try file.close()
        }
        let relative = "deletions/\(id).h5"
        let whole = try publish(temporary, as: relative)
        return Manifest.DeletionEntry(file: relative, count: values.count, checksum: checksum, size: whole.size, fileChecksum: whole.checksum)
    }
}
