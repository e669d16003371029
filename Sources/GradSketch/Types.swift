public import GradSketchInterchange
public import GradSketchStore

// The lower modules' value types the facade's API speaks in. Declared here as typealiases
// (Swift cannot re-export single declarations), so a program that embeds the engine imports
// only `GradSketch`.

/// The element type a sketch set stores its rows in: `.float16` or `.float32`.
public typealias SketchDType = GradSketchStore.SketchDType
/// Rows `[rowCount, k]` in caller memory, read without a copy by the append that takes them.
public typealias RowInput = GradSketchStore.RowInput
/// Ids, labels, metadata and float columns of appended rows, one entry per row each.
public typealias RowAnnotations = GradSketchStore.RowAnnotations
/// How an append creates a set it does not find: dtype, non-finite rows, attributes.
public typealias SketchSetOptions = GradSketchStore.SketchSetOptions
/// A JSON value (set attributes, result parameters), integers kept exact.
public typealias JSONValue = GradSketchStore.JSONValue
/// A row's (segment, row in segment file) address, stable under deletions.
public typealias RowAddress = GradSketchStore.RowAddress
/// Every error the engine throws: a code, a message saying what was expected and found,
/// and the path involved.
public typealias StoreError = GradSketchStore.StoreError
/// What `verify` checked and found.
public typealias VerificationReport = GradSketchStore.VerificationReport
public typealias VacuumReport = GradSketchStore.VacuumReport
public typealias CompactResult = GradSketchStore.CompactResult
public typealias LiveRows = GradSketchStore.LiveRows
/// The element type of caller memory (`RowInput`, `TensorInput`): float16, bfloat16, float32, ….
public typealias ElementType = GradSketchInterchange.ElementType
/// One named tensor in caller memory, for `putTensors`.
public typealias TensorInput = GradSketchStore.TensorInput

/// What a commit produced.
public struct CommitResult: Sendable, Codable {
    public let version: Int
    /// Rows the version added and deleted, over all sketch sets.
    public let rowsAdded: Int
    public let rowsDeleted: Int
    /// Post-link warnings (Spec §7.2 step 4): the version IS committed.
    public let warnings: [String]

    public init(version: Int, rowsAdded: Int, rowsDeleted: Int, warnings: [String]) {
        self.version = version
        self.rowsAdded = rowsAdded
        self.rowsDeleted = rowsDeleted
        self.warnings = warnings
    }

    init(_ committed: ChangesCommitted) {
        self.init(version: committed.version, rowsAdded: committed.rowsAdded, rowsDeleted: committed.rowsDeleted,
                  warnings: committed.warnings.map(\.description))
    }
}
