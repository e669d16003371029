import GradSketchHDF5
import GradSketchInterchange

/// What a compaction committed.
public struct CompactResult: Codable, Sendable {
    public let version: Int
    /// Segments of the set before and after.
    public let segmentsBefore: Int
    public let segmentsAfter: Int
    /// Live rows copied into new segments (deleted rows of merged segments are dropped).
    public let rowsRewritten: Int
    /// Indexes dropped because they covered a merged segment (Spec §10.1).
    public let droppedIndexes: [String]
}

extension Store {
    /// Merges runs of consecutive small segments of set `name` into single segments holding
    /// their live rows, with ids, labels, metadata and columns, and commits a new version
    /// (operation `compact`, Spec §5.5). The set's live rows, in order, are unchanged; older
    /// versions still read the old segments until vacuumed.
    ///
    /// A segment with `targetRows` live rows or more is kept as it is; the others are merged
    /// in order into new segments of at most about `targetRows` rows (nil: no limit, so every
    /// run of mergeable segments becomes one). Only segments with the same annotations (labels
    /// or not, metadata kind, columns) merge, so no row gains a label, metadata or column it
    /// did not have. Indexes covering a merged segment are dropped; others are kept.
    ///
    /// - Throws: `.notFound` for an unknown set; `.conflict` when a concurrent writer changed
    ///   a merged segment (deleted rows in it, dropped the set) before this commit landed.
    @discardableResult
    public func compact(set name: String, targetRows: Int? = nil, detail: String? = nil) throws -> CompactResult {
        if let targetRows, targetRows < 1 {
            throw StoreError(.invalidInput, "target rows must be at least 1, found \(targetRows)")
        }
        let pin = try pinWriter()
        defer { pin.release() }
        let base = try manifest()
        guard let set = base.sketchSets[name] else {
            throw StoreError(.notFound, "no sketch set \"\(name)\" in version \(base.version)", path: path)
        }
        let runs = Store.compactionRuns(set.segments, targetRows: targetRows ?? Int.max)
        guard !runs.isEmpty else {
            throw StoreError(.invalidInput, "set \(name) has nothing to compact: \(set.segments.count) segments, none mergeable (each is large enough, alone among segments with its annotations, and has no deleted rows)", path: path)
        }
        guard let dtype = SketchDType(rawValue: set.dtype) else {
            throw StoreError(.corrupt, "set \(name) has dtype \(set.dtype), expected float16 or float32", path: path)
        }
        var written: [(run: Range<Int>, entry: Manifest.SegmentEntry?)] = []
        var committed = false
        defer {
            if !committed { for case let (_, entry?) in written { try? FileSystem.remove(absolute(entry.file)) } }
        }
        var rowsRewritten = 0
        for run in runs {
            let merged = try mergeSegments(Array(set.segments[run]), k: set.k, dtype: dtype, allowNonfinite: set.allowNonfinite)
            rowsRewritten += merged?.rows ?? 0
            written.append((run, merged))
        }
        let runsWritten = written.map { CompactionRun(replaced: Array(set.segments[$0.run]), merged: $0.entry) }
        let version = try commit(changes: [.compact(set: name, runs: runsWritten)], detail: detail).version
        let result = try manifest(at: version).sketchSets[name]
        let after = result?.segments.count ?? 0
        let dropped = set.indexes.keys.filter { result?.indexes[$0] == nil }.sorted()
        committed = true
        return CompactResult(version: version, segmentsBefore: set.segments.count, segmentsAfter: after,
                             rowsRewritten: rowsRewritten, droppedIndexes: dropped)
    }

    /// The runs of consecutive segments to merge: segments under `targetRows` live rows with
    /// the same annotations, cut once a run reaches `targetRows`; a run of one segment only
    /// when it has deleted rows to drop.
    static func compactionRuns(_ segments: [Manifest.SegmentEntry], targetRows: Int) -> [Range<Int>] {
        func annotations(_ segment: Manifest.SegmentEntry) -> [String] {
            let keys = segment.checksums.keys.filter { $0 == "labels" || $0 == "metadata" || $0.hasPrefix("columns/") }.sorted()
            return keys + [segment.metadataKind ?? ""]
        }
        var runs: [Range<Int>] = []
        var start = 0, rows = 0  // the current run is start..<index
        func close(_ end: Int) {
            if end - start >= 2 || (end - start == 1 && segments[start].deletions != nil) { runs.append(start..<end) }
        }
        for (index, segment) in segments.enumerated() {
            if segment.liveRows >= targetRows {
                close(index)
                start = index + 1
                rows = 0
                continue
            }
            if index > start && (annotations(segments[start]) != annotations(segment) || rows >= targetRows) {
                close(index)
                start = index
                rows = 0
            }
            rows += segment.liveRows
        }
        close(segments.count)
        return runs
    }

    /// Writes the live rows of `segments` (with their annotations) as one new segment; nil
    /// when none is live.
    private func mergeSegments(_ segments: [Manifest.SegmentEntry], k: Int, dtype: SketchDType, allowNonfinite: Bool) throws -> Manifest.SegmentEntry? {
        let live = segments.reduce(0) { $0 + $1.liveRows }
        guard live > 0 else { return nil }
        let rowBytes = k * dtype.byteWidth
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: live * rowBytes, alignment: 64)
        defer { buffer.deallocate() }
        var annotations = RowAnnotations(ids: [], labels: segments[0].checksums["labels"] == nil ? nil : [],
                                         metadata: segments[0].checksums["metadata"] == nil ? nil : [],
                                         metadataKind: MetadataKind(rawValue: segments[0].metadataKind ?? "text") ?? .text)
        let columnNames = segments[0].checksums.keys.filter { $0.hasPrefix("columns/") }
        var columns: [String: [Double]] = [:]
        var filled = 0
        for segment in segments {
            let file = absolute(segment.file)
            let deleted = try segment.deletions.map { try SegmentFiles.readDeletions(storePath: path, entry: $0, segment: segment) } ?? []
            let storage = try SegmentFiles.loadRows(path: file, entry: segment, k: k, dtype: dtype, allowNonfinite: allowNonfinite)
            var next = 0
            for row in 0..<segment.rows {
                if next < deleted.count && deleted[next] == row { next += 1; continue }
                let source = UnsafeRawBufferPointer(rebasing: storage.bytes[(row * rowBytes)..<((row + 1) * rowBytes)])
                UnsafeMutableRawBufferPointer(rebasing: buffer[(filled * rowBytes)..<((filled + 1) * rowBytes)]).copyMemory(from: source)
                filled += 1
            }
            annotations.ids! += SegmentFiles.live(try segmentIDs(segment), deleted: deleted)
            for name in ["labels", "metadata"] {
                guard let checksum = segment.checksums[name] else { continue }
                let values = SegmentFiles.live(try SegmentFiles.readStrings(path: file, dataset: name, expected: checksum, rows: segment.rows), deleted: deleted)
                if name == "labels" { annotations.labels! += values } else { annotations.metadata! += values }
            }
            for name in columnNames {
                let values = try SegmentFiles.readColumn(path: file, dataset: name, expected: segment.checksums[name]!, rows: segment.rows)
                columns[String(name.dropFirst(8)), default: []] += SegmentFiles.live(values, deleted: deleted)
            }
        }
        annotations.columns = columns
        let rows = try RowInput(bytes: UnsafeRawBufferPointer(buffer), elementType: dtype.elementType, rowCount: live, k: k)
        return try SegmentWriter.write(into: self, rows: rows, dtype: dtype, allowNonfinite: allowNonfinite,
                                       annotations: annotations, progress: nil).entry
    }
}
