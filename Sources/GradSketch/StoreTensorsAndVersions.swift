public import GradSketchStore
import GradSketchProjection

/// One retained version as `log` shows it.
public struct VersionRecord: Sendable, Codable, Equatable {
    public let version: Int
    /// The version this one was committed on top of (nil for version 0).
    public let parent: Int?
    /// When the version was committed (UTC, ISO 8601, as the manifest's `created`).
    public let time: String
    /// `init`, `append`, `delete`, `put-tensors`, `delta`, `transaction`, … (Spec §7.1).
    public let operation: String
    /// The set or tensor set the version changed, when it changed one.
    public let set: String?
    public let rowsAdded: Int
    public let rowsDeleted: Int
    /// The writer's free-form description, when it gave one.
    public let detail: String?
}

extension Store {
    /// Every retained version with what it changed, oldest first.
    public func versionRecords() throws -> [VersionRecord] {
        try engine.log().reversed().map { summary in
            VersionRecord(version: summary.version, parent: summary.parent, time: summary.created,
                          operation: summary.change.operation, set: summary.change.set,
                          rowsAdded: summary.change.rowsAdded, rowsDeleted: summary.change.rowsDeleted,
                          detail: summary.change.detail)
        }
    }

    /// Stores `tensors` as tensor set `name` of kind `kind` and commits it as one version.
    ///
    /// Only kind `weights` is written from caller tensors: a `delta` records the two sets it
    /// was computed from (Spec §6), so it is made by ``delta(_:from:to:detail:)``.
    @discardableResult
    public func putTensors(_ name: String, kind: String = "weights", tensors: [TensorInput], detail: String? = nil) throws -> CommitResult {
        try transaction(detail: detail) { try $0.putTensors(name, kind: kind, tensors: tensors) }
    }

    /// Commits tensor set `name` = `to` − `from` (kind `delta`, Spec §6) as one version.
    @discardableResult
    public func delta(_ name: String, from: String, to: String, detail: String? = nil) throws -> CommitResult {
        try transaction(detail: detail) { try $0.delta(name, from: from, to: to) }
    }
}

/// The projection matrices the engine applies (Spec/projection.md), for callers that project
/// outside the engine (a training-time collector) and must match it bit for bit.
public enum ProjectionMatrices {
    /// The dense Rademacher matrix P [`rows`, `cols`] of stream `stream` under `seed`,
    /// row-major, entries ±1/√rows (Spec/projection.md §2). A Kronecker parameter `NAME`
    /// uses streams `NAME/out` (k_out × n_out) and `NAME/in` (k_in × n_in) (§4).
    ///
    /// - Throws: `.invalidInput` unless 1 ≤ rows < 2³² and cols ≥ 0.
    public static func rademacher(seed: UInt64, stream: String, rows: Int, cols: Int) throws -> [Float] {
        let (count, overflow) = rows.multipliedReportingOverflow(by: max(cols, 0))
        guard !overflow, count <= Int.max / MemoryLayout<Float>.stride else {
            throw StoreError(.invalidInput, "a Rademacher matrix of \(rows) × \(cols) does not fit in memory")
        }
        var matrix = [Float](repeating: 0, count: max(count, 0))
        try matrix.withUnsafeMutableBufferPointer { try rademacher(seed: seed, stream: stream, rows: rows, cols: cols, into: $0) }
        return matrix
    }

    /// As ``rademacher(seed:stream:rows:cols:)``, written into `output` (`rows × cols`
    /// floats) without an intermediate array of the transpose's size beyond one column block.
    public static func rademacher(seed: UInt64, stream: String, rows: Int, cols: Int,
                                  into output: UnsafeMutableBufferPointer<Float>) throws {
        guard rows >= 1, rows < 1 << 32, cols >= 0 else {
            throw StoreError(.invalidInput, "a Rademacher matrix needs 1 ≤ rows < 2^32 and cols ≥ 0, found rows = \(rows), cols = \(cols)")
        }
        let (count, overflow) = rows.multipliedReportingOverflow(by: cols)
        guard !overflow, output.count >= count else {
            throw StoreError(.invalidInput, "a Rademacher matrix of \(rows) × \(cols) needs \(overflow ? "more than Int.max" : String(count)) floats, the output holds \(output.count)")
        }
        let projectionStream = ProjectionStream(seed: seed, name: stream)
        // The engine generates Pᵀ column block by column block (Projector.projectDense); the
        // same generator fills each block here, then it is transposed into P's rows.
        let block = 512
        let transposed = UnsafeMutableBufferPointer<Float>.allocate(capacity: block * rows)
        defer { transposed.deallocate() }
        for start in stride(from: 0, to: cols, by: block) {
            let columns = start..<min(cols, start + block)
            DenseRademacher.fillTransposed(projectionStream, k: rows, columns: columns, into: transposed)
            for (offset, column) in columns.enumerated() {
                for row in 0..<rows { output[row * cols + column] = transposed[offset * rows + row] }
            }
        }
    }
}
