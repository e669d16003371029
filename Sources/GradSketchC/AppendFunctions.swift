public import CGradSketchABI
import GradSketch
import GradSketchStore
import GradSketchInterchange

// Append sessions (Spec/c-api.md §8): rows are read in place from caller memory while
// gs_append_rows runs; ids, labels and metadata are decoded into the engine's strings.

/// What a `gs_append` handle stands for. Used by one thread at a time (Spec/c-api.md §6).
final class AppendHandle {
    let set: String
    /// nil once the session is committed, aborted or prepared.
    var session: GradSketch.AppendSession?
    /// A prepared session (gs_append_prepare): kept for its pin until the handle is freed,
    /// and so that gs_append_abort can still remove its segments.
    var prepared: GradSketch.AppendSession?

    init(set: String, session: GradSketch.AppendSession) {
        self.set = set
        self.session = session
    }

    func open() throws -> GradSketch.AppendSession {
        guard let session else {
            if prepared != nil {
                throw ABIError.state("the append session to \"\(set)\" is prepared: commit its token with gs_store_commit_prepared")
            }
            throw ABIError.state("the append session to \"\(set)\" is finished (committed or aborted); begin a new one")
        }
        return session
    }

    deinit { session?.abort() }
}

/// The stored dtype a `gs_append_begin` code names.
func storedDType(_ code: gs_dtype) throws -> GradSketchStore.SketchDType? {
    switch Int(code) {
    case Int(GS_DTYPE_AUTO): nil
    case Int(GS_DTYPE_FLOAT16): .float16
    case Int(GS_DTYPE_FLOAT32): .float32
    default: throw ABIError.invalid("stored_dtype must be GS_DTYPE_AUTO (0), GS_DTYPE_FLOAT16 (1) or GS_DTYPE_FLOAT32 (2), found \(code)")
    }
}

/// The input element type a `gs_append_rows` code names.
func inputElementType(_ code: gs_dtype) throws -> ElementType {
    switch Int(code) {
    case Int(GS_DTYPE_FLOAT16): .float16
    case Int(GS_DTYPE_FLOAT32): .float32
    case Int(GS_DTYPE_BFLOAT16): .bfloat16
    case Int(GS_DTYPE_FLOAT64): .float64
    default: throw ABIError.invalid("dtype must be GS_DTYPE_FLOAT16 (1), GS_DTYPE_FLOAT32 (2), GS_DTYPE_BFLOAT16 (3) or GS_DTYPE_FLOAT64 (4), found \(code)")
    }
}

@_cdecl("gs_append_begin")
public func gs_append_begin(
    _ store: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ storedDTypeCode: gs_dtype,
    _ attributesJSON: UnsafePointer<CChar>?, _ flags: UInt32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        let set = try string(set, "set")
        guard let out else { throw ABIError.invalid("out_session is NULL") }
        guard flags & ~UInt32(GS_APPEND_ALLOW_NONFINITE) == 0 else {
            throw ABIError.invalid("flags may only contain GS_APPEND_ALLOW_NONFINITE (1), found \(flags)")
        }
        var attributes: [String: GradSketchStore.JSONValue] = [:]
        if let text = try optionalString(attributesJSON, "attributes_json") {
            let parsed: GradSketchStore.JSONValue
            do { parsed = try GradSketchStore.JSONValue.parse(text) } catch {
                throw ABIError.invalid("attributes_json is not valid JSON: \(error)")
            }
            guard case .object(let members) = parsed else {
                throw ABIError.invalid("attributes_json must be a JSON object, found \(parsed.jsonText.prefix(40))")
            }
            attributes = members
        }
        let options = GradSketchStore.SketchSetOptions(
            dtype: try storedDType(storedDTypeCode),
            allowNonfinite: flags & UInt32(GS_APPEND_ALLOW_NONFINITE) != 0,
            attributes: attributes)
        let session = try handle.store.beginAppend(to: set, options: options)
        out.pointee = exportHandle(AppendHandle(set: set, session: session))
    }
}

@_cdecl("gs_append_rows")
public func gs_append_rows(
    _ session: OpaquePointer?, _ rows: UnsafeRawPointer?, _ dtype: gs_dtype, _ rowCount: Int64, _ k: Int64,
    _ ids: UnsafePointer<gs_text>?, _ labels: UnsafePointer<gs_text>?, _ metadata: UnsafePointer<gs_text>?,
    _ flags: UInt32, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(session, as: AppendHandle.self, "session")
        let active = try handle.open()
        guard let rows else { throw ABIError.invalid("rows is NULL") }
        let elementType = try inputElementType(dtype)
        guard rowCount >= 1, k >= 1 else {
            throw ABIError.invalid("rows must have shape [row_count, k] with row_count ≥ 1 and k ≥ 1, found [\(rowCount), \(k)]")
        }
        guard flags & ~UInt32(GS_METADATA_JSON) == 0 else {
            throw ABIError.invalid("flags may only contain GS_METADATA_JSON (1), found \(flags)")
        }
        let (elements, overflowA) = rowCount.multipliedReportingOverflow(by: k)
        let (byteCount, overflowB) = elements.multipliedReportingOverflow(by: Int64(elementType.byteWidth))
        guard !overflowA, !overflowB, byteCount <= Int64(Int.max) else {
            throw ABIError.invalid("rows of shape [\(rowCount), \(k)] do not fit in memory")
        }
        let input = try GradSketchStore.RowInput(
            bytes: UnsafeRawBufferPointer(start: rows, count: Int(byteCount)),
            elementType: elementType, rowCount: Int(rowCount), k: Int(k))
        let annotations = GradSketchStore.RowAnnotations(
            ids: try strings(ids, count: Int(rowCount), "ids"),
            labels: try strings(labels, count: Int(rowCount), "labels"),
            metadata: try strings(metadata, count: Int(rowCount), "metadata"),
            metadataKind: flags & UInt32(GS_METADATA_JSON) != 0 ? .json : .text)
        try active.append(input, annotations: annotations)
    }
}

@_cdecl("gs_append_commit")
public func gs_append_commit(
    _ session: OpaquePointer?, _ detail: UnsafePointer<CChar>?, _ outVersion: UnsafeMutablePointer<Int64>?,
    _ outRows: UnsafeMutablePointer<Int64>?, _ outWarnings: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(session, as: AppendHandle.self, "session")
        let active = try handle.open()
        let detail = try optionalString(detail, "detail")
        // The session is finished whatever the commit does: a failed commit has already
        // removed (or never published) what it wrote.
        handle.session = nil
        let result = try active.commit(detail: detail)
        assign(Int64(result.version), to: outVersion)
        assign(Int64(result.rowsAdded), to: outRows)
        outWarnings?.pointee = exportHandle(StringList(result.warnings, ownedByCaller: true))
    }
}

@_cdecl("gs_append_abort")
public func gs_append_abort(_ session: OpaquePointer?) {
    guard let handle = try? object(session, as: AppendHandle.self, "session") else { return }
    handle.session?.abort()
    handle.session = nil
    handle.prepared?.abort()
    handle.prepared = nil
}

@_cdecl("gs_append_free")
public func gs_append_free(_ session: OpaquePointer?) {
    // A prepared session's segments belong to its token: freeing releases only the pin.
    if let handle = try? object(session, as: AppendHandle.self, "session") {
        handle.session?.abort()
        handle.session = nil
    }
    releaseHandle(session, as: AppendHandle.self)
}
