import ArgumentParser
import Foundation
import GradSketchStore

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a sketch set's small segments into larger ones and commit a new version.",
        discussion: "The set's live rows, ids, labels, metadata and columns are unchanged and in the same order; deleted rows of merged segments are dropped. Older versions still read the old segments until vacuumed. Indexes that cover a merged segment are dropped (Spec §10.1); rebuild them with `index build`.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Name of the sketch set.") var set: String
    @Option(help: "Leave about this many segments: merges segments of fewer than live rows / N rows.") var maxSegments: Int?
    @Option(help: "Keep segments of at least R live rows; merge the others into segments of about R rows.") var targetRows: Int?
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try requireOption(maxSegments, "--max-segments", in: 1...Int.max)
        try requireOption(targetRows, "--target-rows", in: 1...Int.max)
        if maxSegments != nil && targetRows != nil {
            throw ValidationError("give --max-segments or --target-rows, not both")
        }
    }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            var target = targetRows
            if let maxSegments {
                let rows = try store.manifest().sketchSets[set]?.rowCount ?? 0
                target = max(1, (rows + maxSegments - 1) / maxSegments)
            }
            let result = try store.compact(set: set, targetRows: target, detail: target.map { "target rows \($0)" })
            if output.json { printJSON(result); return }
            print("compacted \(set): \(result.segmentsBefore) → \(result.segmentsAfter) segments, \(result.rowsRewritten) rows rewritten: version \(result.version)"
                  + (result.droppedIndexes.isEmpty ? "" : "; dropped indexes \(result.droppedIndexes.joined(separator: ", "))"))
        }
    }
}
