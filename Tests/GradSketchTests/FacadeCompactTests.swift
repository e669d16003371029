import GradSketch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Compaction through the facade: the rows a snapshot reads after `compact` are the live rows
/// before it (the test's own record of what it appended and deleted is the oracle), the
/// earlier snapshot keeps reading its version, and vacuum then frees the merged segments.
@Suite struct FacadeCompactTests {
    @Test func compactedRowsAreTheLiveRowsBeforeAndOldSnapshotsStillRead() throws {
        let known = try KnownRowsStore(k: 4)
        for batch in 0..<6 { try known.append(randomRows(5, k: 4, seed: UInt64(60 + batch)), prefix: "b\(batch)") }
        try known.delete(["b1-2", "b4-0"])
        let store = try GradSketch.Store(opening: known.path)
        let before = try store.snapshot()
        #expect(try before.sketchSet("s").segments == 6)

        let compacted = try store.compact(set: "s")
        #expect(compacted.segmentsBefore == 6)
        #expect(compacted.segmentsAfter == 1)
        #expect(compacted.rowsRewritten == 28)
        let after = try store.snapshot()
        let info = try after.sketchSet("s")
        #expect(info.segments == 1)
        #expect(info.rows == 28)
        // Every live row, in set order, with its values, label and metadata.
        let addresses = (0..<28).map { RowAddress(segment: 0, row: $0) }
        let ids = try after.ids(set: "s", at: addresses)
        #expect(ids == known.liveIDs)
        #expect(try after.labels(set: "s", at: addresses) == ids.map { known.labels[$0]! })
        #expect(try after.metadata(set: "s", at: addresses) == ids.map { known.metadata[$0]! })
        try after.withSegmentRows(set: "s", segment: 0) { view in
            #expect(view.rows == 28 && view.k == 4 && view.dtype == .float32 && view.deleted.isEmpty)
            let values = view.base.bindMemory(to: Float.self, capacity: 28 * 4)
            for (row, id) in ids.enumerated() {
                #expect((0..<4).map { values[row * 4 + $0] } == known.rows[id]!, "row \(row) (\(id))")
            }
        }
        // The earlier snapshot still reads its six segments, deletions included.
        #expect(try before.ids(set: "s", at: [RowAddress(segment: 1, row: 3)]) == ["b1-3"])
        #expect(throws: StoreError.self) { try before.ids(set: "s", at: [RowAddress(segment: 1, row: 2)]) }
        #expect(try store.verify().isClean)

        // Once older versions are vacuumed, the merged segments leave the store.
        let report = try store.vacuum(keepLast: 1, grace: 0)
        #expect(report.removedFiles.filter { $0.hasPrefix("segments/") }.count == 6)
        #expect(try store.verify().isClean)
    }
}
