public import CGradSketchABI
import GradSketch
import GradSketchStore
import Synchronization

// Snapshots (Spec/c-api.md §9): one version opened once; every function here may run on many
// threads at once, except gs_snapshot_close.

/// What a `gs_snapshot` handle stands for: the facade's snapshot plus the C-side memory the
/// header lends out (set names, deleted-row lists of views), released with the handle.
final class SnapshotHandle: Sendable {
    let snapshot: Snapshot
    let setNames: StringList
    let tensorSetNames: StringList
    /// Deleted-row lists handed out by gs_snapshot_segment_view, one per (set, segment), kept
    /// so the borrowed pointer lives as long as the snapshot.
    private let deletedLists = Mutex<[String: DeletedRows]>([:])
    /// Tensors handed out by gs_snapshot_tensor_view, one per (tensor set, index), kept so
    /// the borrowed name, shape and data live as long as the snapshot.
    private let tensorViews = Mutex<[String: BorrowedTensor]>([:])

    init(_ snapshot: Snapshot) {
        self.snapshot = snapshot
        setNames = StringList(snapshot.sketchSetNames, ownedByCaller: false)
        tensorSetNames = StringList(snapshot.tensorSetNames, ownedByCaller: false)
    }

    /// The tensor kept for (`tensorSet`, `index`), loaded by `load` the first time; when two
    /// threads race, both get the one that was kept.
    func tensor(set tensorSet: String, index: Int, load: () throws -> TensorView) throws -> BorrowedTensor {
        let key = "\(tensorSet)\u{0}\(index)"
        if let existing = tensorViews.withLock({ $0[key] }) { return existing }
        let loaded = BorrowedTensor(try load())
        return tensorViews.withLock { views in
            if let existing = views[key] { return existing }
            views[key] = loaded
            return loaded
        }
    }

    func deletedRows(set: String, segment: Int, _ rows: [Int]) -> DeletedRows {
        deletedLists.withLock { lists in
            let key = "\(set)\u{0}\(segment)"
            if let existing = lists[key] { return existing }
            let list = DeletedRows(rows)
            lists[key] = list
            return list
        }
    }
}

/// A sorted list of deleted local rows in C memory.
final class DeletedRows: @unchecked Sendable {
    /// At least one element, so the pointer handed out is never NULL; `count` may be 0.
    let rows: UnsafeMutableBufferPointer<Int64>
    let count: Int

    init(_ values: [Int]) {
        rows = .allocate(capacity: max(values.count, 1))
        for (index, value) in values.enumerated() { rows[index] = Int64(value) }
        count = values.count
    }

    deinit { rows.deallocate() }
}

@_cdecl("gs_snapshot_open")
public func gs_snapshot_open(_ store: OpaquePointer?, _ version: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        guard let out else { throw ABIError.invalid("out_snapshot is NULL") }
        guard version >= -1 else { throw ABIError.invalid("version must be ≥ 0, or -1 for the latest, found \(version)") }
        let snapshot = try Snapshot(store: handle.store, version: version == -1 ? nil : Int(version))
        out.pointee = exportHandle(SnapshotHandle(snapshot))
    }
}

@_cdecl("gs_snapshot_close")
public func gs_snapshot_close(_ snapshot: OpaquePointer?) {
    releaseHandle(snapshot, as: SnapshotHandle.self)
}

@_cdecl("gs_snapshot_version")
public func gs_snapshot_version(_ snapshot: OpaquePointer?) -> Int64 {
    guard let handle = try? object(snapshot, as: SnapshotHandle.self, "snapshot") else { return -1 }
    return Int64(handle.snapshot.version)
}

@_cdecl("gs_snapshot_set_count")
public func gs_snapshot_set_count(_ snapshot: OpaquePointer?) -> Int64 {
    guard let handle = try? object(snapshot, as: SnapshotHandle.self, "snapshot") else { return 0 }
    return Int64(handle.setNames.count)
}

@_cdecl("gs_snapshot_set_name")
public func gs_snapshot_set_name(_ snapshot: OpaquePointer?, _ index: Int64) -> UnsafePointer<CChar>? {
    guard let handle = try? object(snapshot, as: SnapshotHandle.self, "snapshot"),
          index >= 0, index < handle.setNames.count else { return nil }
    return UnsafePointer(handle.setNames.bytes + Int(handle.setNames.offsets[Int(index)]))
}

/// The C code of a stored dtype.
func dtypeCode(_ dtype: GradSketchStore.SketchDType) -> gs_dtype {
    dtype == .float16 ? gs_dtype(GS_DTYPE_FLOAT16) : gs_dtype(GS_DTYPE_FLOAT32)
}

@_cdecl("gs_snapshot_set_info")
public func gs_snapshot_set_info(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ outK: UnsafeMutablePointer<Int64>?,
    _ outDType: UnsafeMutablePointer<gs_dtype>?, _ outRows: UnsafeMutablePointer<Int64>?,
    _ outSegments: UnsafeMutablePointer<Int64>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let info = try handle.snapshot.sketchSet(try string(set, "set"))
        assign(Int64(info.k), to: outK)
        assign(dtypeCode(info.dtype), to: outDType)
        assign(Int64(info.rows), to: outRows)
        assign(Int64(info.segments), to: outSegments)
    }
}

@_cdecl("gs_snapshot_segment_rows")
public func gs_snapshot_segment_rows(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<Int64>?,
    _ capacity: Int64, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let info = try handle.snapshot.sketchSet(try string(set, "set"))
        guard capacity >= 0 else { throw ABIError.invalid("capacity must be ≥ 0, found \(capacity)") }
        guard capacity == 0 || out != nil else { throw ABIError.invalid("out_rows_per_segment is NULL") }
        for (index, rows) in info.segmentRows.prefix(Int(capacity)).enumerated() { out![index] = Int64(rows) }
    }
}

@_cdecl("gs_snapshot_set_attributes")
public func gs_snapshot_set_attributes(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let info = try handle.snapshot.sketchSet(try string(set, "set"))
        guard let out else { throw ABIError.invalid("out_json is NULL") }
        out.pointee = mallocString(info.attributesJSON)
    }
}

@_cdecl("gs_snapshot_segment_view")
public func gs_snapshot_segment_view(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ segment: Int64,
    _ out: UnsafeMutablePointer<gs_segment_view>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let set = try string(set, "set")
        guard let out else { throw ABIError.invalid("out_view is NULL") }
        let info = try handle.snapshot.sketchSet(set)
        guard segment >= 0, segment < info.segments else {
            throw GradSketchStore.StoreError(.notFound, "set \"\(set)\" has \(info.segments) segments (0..<\(info.segments)), found segment \(segment)")
        }
        // The snapshot owns its segment mappings for its whole life (facade contract), so the
        // base pointer stays valid after the closure returns and until the snapshot is closed.
        let view = try handle.snapshot.withSegmentRows(set: set, segment: Int(segment)) { rows in
            (base: rows.base, rows: rows.rows, k: rows.k, dtype: rows.dtype, deleted: rows.deleted)
        }
        let deleted = handle.deletedRows(set: set, segment: Int(segment), view.deleted)
        out.pointee = gs_segment_view(
            data: view.base, rows: Int64(view.rows), k: Int64(view.k), dtype: dtypeCode(view.dtype), reserved: 0,
            deleted: UnsafePointer(deleted.rows.baseAddress), deleted_count: Int64(deleted.count))
    }
}

@_cdecl("gs_snapshot_strings")
public func gs_snapshot_strings(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ what: gs_annotation,
    _ addresses: UnsafePointer<gs_address>?, _ count: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let set = try string(set, "set")
        guard let out else { throw ABIError.invalid("out_strings is NULL") }
        guard count >= 0 else { throw ABIError.invalid("count must be ≥ 0, found \(count)") }
        guard count == 0 || addresses != nil else { throw ABIError.invalid("addresses is NULL") }
        let wanted = (0..<Int(count)).map { GradSketchStore.RowAddress(segment: Int(addresses![$0].segment), row: Int(addresses![$0].row)) }
        let values: [String]
        switch Int(what) {
        case Int(GS_IDS): values = try handle.snapshot.ids(set: set, at: wanted)
        case Int(GS_LABELS): values = try handle.snapshot.labels(set: set, at: wanted)
        case Int(GS_METADATA): values = try handle.snapshot.metadata(set: set, at: wanted)
        default: throw ABIError.invalid("what must be GS_IDS (1), GS_LABELS (2) or GS_METADATA (3), found \(what)")
        }
        out.pointee = exportHandle(StringList(values, ownedByCaller: true))
    }
}
