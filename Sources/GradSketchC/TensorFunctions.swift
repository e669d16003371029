public import CGradSketchABI
import GradSketch
import GradSketchInterchange
import GradSketchStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Added in ABI 1.1 (Spec/c-api.md §11): projection factors, tensor sets written from caller
// memory, the tensor sets of a snapshot and the version log.

@_cdecl("gs_projection_rademacher")
public func gs_projection_rademacher(
    _ seed: UInt64, _ stream: UnsafePointer<CChar>?, _ rows: Int64, _ cols: Int64,
    _ out: UnsafeMutablePointer<Float>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let stream = try string(stream, "stream")
        guard rows >= 1, rows < 1 << 32, cols >= 1 else {
            throw ABIError.invalid("the matrix must have 1 ≤ rows < 2^32 and cols ≥ 1, found rows = \(rows), cols = \(cols)")
        }
        let (count, overflow) = rows.multipliedReportingOverflow(by: cols)
        guard !overflow, count <= Int64(Int.max / MemoryLayout<Float>.stride) else {
            throw ABIError.invalid("a \(rows) × \(cols) matrix does not fit in memory")
        }
        guard let out else { throw ABIError.invalid("out is NULL") }
        try ProjectionMatrices.rademacher(seed: seed, stream: stream, rows: Int(rows), cols: Int(cols),
                                          into: UnsafeMutableBufferPointer(start: out, count: Int(count)))
    }
}

/// The caller's tensor `index` as an engine input, every field checked.
private func tensorInput(_ tensor: gs_tensor, index: Int) throws -> GradSketch.TensorInput {
    let what = "tensors[\(index)]"
    let name = try string(tensor.name, "\(what).name")
    let elementType: ElementType
    do { elementType = try inputElementType(tensor.dtype) } catch let failure as ABIError {
        throw ABIError.invalid("\(what) (\(name)): \(failure.message)")
    }
    guard tensor.ndim >= 0, tensor.ndim <= 32 else {
        throw ABIError.invalid("\(what) (\(name)): ndim must be in 0...32, found \(tensor.ndim)")
    }
    guard tensor.ndim == 0 || tensor.shape != nil else { throw ABIError.invalid("\(what) (\(name)): shape is NULL") }
    let shape = (0..<Int(tensor.ndim)).map { tensor.shape![$0] }
    guard shape.allSatisfy({ $0 >= 0 }) else {
        throw ABIError.invalid("\(what) (\(name)): every dimension must be ≥ 0, found shape \(shape)")
    }
    var byteCount = Int64(elementType.byteWidth)
    for dimension in shape {
        let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
        guard !overflow else { throw ABIError.invalid("\(what) (\(name)): shape \(shape) does not fit in memory") }
        byteCount = product
    }
    guard byteCount <= Int64(Int.max) else { throw ABIError.invalid("\(what) (\(name)): shape \(shape) does not fit in memory") }
    guard byteCount == 0 || tensor.data != nil else { throw ABIError.invalid("\(what) (\(name)): data is NULL") }
    return try GradSketch.TensorInput(name: name, elementType: elementType, shape: shape.map { Int($0) },
                                      bytes: UnsafeRawBufferPointer(start: tensor.data, count: Int(byteCount)))
}

@_cdecl("gs_store_put_tensors")
public func gs_store_put_tensors(
    _ store: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ kind: UnsafePointer<CChar>?,
    _ tensors: UnsafePointer<gs_tensor>?, _ count: Int64, _ detail: UnsafePointer<CChar>?,
    _ outVersion: UnsafeMutablePointer<Int64>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        let name = try string(name, "name")
        let kind = try string(kind, "kind")
        let detail = try optionalString(detail, "detail")
        guard count >= 1 else { throw ABIError.invalid("count must be ≥ 1 (a tensor set holds at least one tensor), found \(count)") }
        guard let tensors else { throw ABIError.invalid("tensors is NULL") }
        let inputs = try (0..<Int(count)).map { try tensorInput(tensors[$0], index: $0) }
        let result = try handle.store.putTensors(name, kind: kind, tensors: inputs, detail: detail)
        assign(Int64(result.version), to: outVersion)
    }
}

@_cdecl("gs_store_delta")
public func gs_store_delta(
    _ store: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ base: UnsafePointer<CChar>?,
    _ finetuned: UnsafePointer<CChar>?, _ detail: UnsafePointer<CChar>?,
    _ outVersion: UnsafeMutablePointer<Int64>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        let name = try string(name, "name")
        let base = try string(base, "base")
        let finetuned = try string(finetuned, "finetuned")
        let detail = try optionalString(detail, "detail")
        let result = try handle.store.delta(name, from: base, to: finetuned, detail: detail)
        assign(Int64(result.version), to: outVersion)
    }
}

@_cdecl("gs_snapshot_tensor_set_count")
public func gs_snapshot_tensor_set_count(_ snapshot: OpaquePointer?) -> Int64 {
    guard let handle = try? object(snapshot, as: SnapshotHandle.self, "snapshot") else { return 0 }
    return Int64(handle.tensorSetNames.count)
}

@_cdecl("gs_snapshot_tensor_set_name")
public func gs_snapshot_tensor_set_name(_ snapshot: OpaquePointer?, _ index: Int64) -> UnsafePointer<CChar>? {
    guard let handle = try? object(snapshot, as: SnapshotHandle.self, "snapshot"),
          index >= 0, index < handle.tensorSetNames.count else { return nil }
    return UnsafePointer(handle.tensorSetNames.bytes + Int(handle.tensorSetNames.offsets[Int(index)]))
}

@_cdecl("gs_store_versions_json")
public func gs_store_versions_json(
    _ store: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        guard let out else { throw ABIError.invalid("out_json is NULL") }
        let records = try handle.store.versionRecords()
        let values: [GradSketchStore.JSONValue] = records.map { record in
            .object([
                "version": GradSketchStore.JSONValue(record.version),
                "parent": record.parent.map { GradSketchStore.JSONValue($0) } ?? .null,
                "time": .string(record.time),
                "operation": .string(record.operation),
                "set": record.set.map { .string($0) } ?? .null,
                "rows_added": GradSketchStore.JSONValue(record.rowsAdded),
                "rows_deleted": GradSketchStore.JSONValue(record.rowsDeleted),
                "detail": record.detail.map { .string($0) } ?? .null,
            ])
        }
        out.pointee = mallocString(GradSketchStore.JSONValue.array(values).jsonText)
    }
}

// MARK: - Added in ABI 1.2 (Spec/c-api.md §13): reading stored tensors

/// One stored tensor lent to C: the view (which keeps its mapping or copy alive) plus its
/// name and shape in C memory, released with the snapshot handle.
final class BorrowedTensor: @unchecked Sendable {
    let view: TensorView
    let name: UnsafeMutablePointer<CChar>
    /// At least one element, so the pointer handed out is never NULL for a scalar.
    let shape: UnsafeMutableBufferPointer<Int64>

    init(_ view: TensorView) {
        self.view = view
        name = strdup(view.name)!
        shape = .allocate(capacity: max(view.shape.count, 1))
        shape[0] = 0
        for (index, dimension) in view.shape.enumerated() { shape[index] = Int64(dimension) }
    }

    deinit {
        free(name)
        shape.deallocate()
    }
}

@_cdecl("gs_snapshot_tensor_count")
public func gs_snapshot_tensor_count(
    _ snapshot: OpaquePointer?, _ tensorSet: UnsafePointer<CChar>?, _ outCount: UnsafeMutablePointer<Int64>?,
    _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let name = try string(tensorSet, "tensor_set")
        guard let outCount else { throw ABIError.invalid("out_count is NULL") }
        outCount.pointee = Int64(try handle.snapshot.tensorSet(name).tensorNames.count)
    }
}

@_cdecl("gs_snapshot_tensor_view")
public func gs_snapshot_tensor_view(
    _ snapshot: OpaquePointer?, _ tensorSet: UnsafePointer<CChar>?, _ index: Int64,
    _ out: UnsafeMutablePointer<gs_tensor_view>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let name = try string(tensorSet, "tensor_set")
        guard let out else { throw ABIError.invalid("out_view is NULL") }
        let tensors = try handle.snapshot.tensorSet(name)
        // The manifest lists a set's tensors sorted by name bytes (the writer sorts them).
        let names = tensors.tensorNames
        guard index >= 0, index < names.count else {
            throw GradSketchStore.StoreError(.notFound, "tensor set \"\(name)\" has \(names.count) tensors (0..<\(names.count)), found index \(index)")
        }
        let borrowed = try handle.tensor(set: name, index: Int(index)) { try tensors.tensor(named: names[Int(index)]) }
        let view = borrowed.view
        let count = view.shape.reduce(1, *)
        out.pointee = gs_tensor_view(
            name: UnsafePointer(borrowed.name), dtype: dtypeCode(view.dtype), ndim: Int32(view.shape.count),
            shape: UnsafePointer(borrowed.shape.baseAddress), data: count == 0 ? nil : view.bytes.baseAddress,
            element_count: Int64(count), mapped: view.isMapped ? 1 : 0, reserved: 0)
    }
}
