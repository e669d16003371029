import GradSketchHDF5
import GradSketchInterchange
import Synchronization

/// What an append committed.
public struct AppendResult: Codable, Sendable {
    public let version: Int
    public let rows: Int
    public let segment: String
}

/// What a delete committed.
public struct DeleteResult: Codable, Sendable {
    public let version: Int
    public let rows: Int
}

extension Store {
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
        try Rules.checkName(name, what: "set")
        let existing = try manifest().sketchSets[name]
        if let existing {
            guard existing.k == rows.k else {
                throw StoreError(.invalidInput, "set \(name) has rows of width k = \(existing.k), the input has k = \(rows.k)", path: path)
            }
            if let dtype = options.dtype, dtype.rawValue != existing.dtype {
                throw StoreError(.invalidInput, "set \(name) stores \(existing.dtype), the append asks for \(dtype.rawValue)", path: path)
            }
        }
        let dtype = existing.flatMap { SketchDType(rawValue: $0.dtype) } ?? options.dtype ?? .natural(for: rows.elementType)
        let allowNonfinite = existing?.allowNonfinite ?? options.allowNonfinite
        let written = try SegmentWriter.write(into: self, rows: rows, dtype: dtype, allowNonfinite: allowNonfinite,
                                              annotations: annotations, progress: progress)
        do {
            let version = try commit(operation: "append", set: name, detail: detail) { manifest in
                if var set = manifest.sketchSets[name] {
                    // Re-checked against the version this commit lands on (Spec §7.2 step 2).
                    guard set.k == rows.k, set.dtype == dtype.rawValue else {
                        throw StoreError(.conflict, "set \(name) changed meanwhile: it now has k = \(set.k), dtype \(set.dtype); this append has k = \(rows.k), dtype \(dtype.rawValue)", path: path)
                    }
                    if written.hasNonfinite && !set.allowNonfinite {
                        throw StoreError(.invalidInput, "set \(name) does not allow non-finite rows, and this append has some", path: path)
                    }
                    let live = try liveIDs(of: set)
                    if let duplicate = written.ids.first(where: { live.contains($0) }) {
                        throw StoreError(.invalidInput, "id \"\(duplicate)\" is already in set \(name): ids must be unique within a set", path: path)
                    }
                    set.segments.append(written.entry)
                    manifest.sketchSets[name] = set
                } else {
                    manifest.sketchSets[name] = Manifest.SketchSetEntry(
                        k: rows.k, dtype: dtype.rawValue, allowNonfinite: allowNonfinite,
                        attributes: options.attributes, segments: [written.entry])
                }
            }
            return AppendResult(version: version, rows: rows.rowCount, segment: written.entry.file)
        } catch {
            // No manifest references the segment, and none ever will: remove it now rather
            // than leaving it to vacuum.
            try? FileSystem.remove(absolute(written.entry.file))
            throw error
        }
    }

    /// The ids of the live rows of `set`, read (and verified) once per segment and process.
    func liveIDs(of set: Manifest.SketchSetEntry) throws -> Set<String> {
        var live = Set<String>()
        live.reserveCapacity(set.rowCount)
        for segment in set.segments {
            let ids = try segmentIDs(segment)
            if let deletions = segment.deletions {
                let deleted = try SegmentFiles.readDeletions(storePath: path, entry: deletions, segment: segment)
                live.formUnion(SegmentFiles.live(ids, deleted: deleted))
            } else {
                live.formUnion(ids)
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
        let wanted = Set(ids)
        guard wanted.count == ids.count else {
            throw StoreError(.invalidInput, "the ids to delete repeat themselves: \(ids.count) given, \(wanted.count) distinct")
        }
        var writtenFiles: [String] = []
        var kept: Set<String> = []
        defer {
            for file in writtenFiles where !kept.contains(file) { try? FileSystem.remove(absolute(file)) }
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
                for (local, id) in segmentIDs.enumerated() where wanted.contains(id) && !deleted.contains(local) {
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
                let missing = ids.first { !live.contains($0) } ?? "?"
                throw StoreError(.notFound, "cannot delete id \"\(missing)\": it is not a live row of set \(name) in version \(manifest.version) (\(wanted.count - found) of \(wanted.count) ids not found; nothing deleted)", path: path)
            }
            manifest.sketchSets[name] = set
            kept = Set(set.segments.compactMap { $0.deletions?.file })
        }
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
