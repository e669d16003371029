public import CGradSketchABI
import GradSketch
import GradSketchStore

// Prepared appends (Spec/c-api.md §12): many writers, one commit.

@_cdecl("gs_append_prepare")
public func gs_append_prepare(
    _ session: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(session, as: AppendHandle.self, "session")
        guard let out else { throw ABIError.invalid("out_token is NULL") }
        let active = try handle.open()
        let prepared = try active.prepare()
        handle.session = nil
        handle.prepared = active
        out.pointee = mallocString(prepared.token)
    }
}

@_cdecl("gs_store_commit_prepared")
public func gs_store_commit_prepared(
    _ store: OpaquePointer?, _ tokens: UnsafePointer<gs_text>?, _ count: Int64, _ detail: UnsafePointer<CChar>?,
    _ outVersion: UnsafeMutablePointer<Int64>?, _ outRows: UnsafeMutablePointer<Int64>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        guard tokens != nil else { throw ABIError.invalid("tokens is NULL") }
        guard count >= 1 else { throw ABIError.invalid("count must be ≥ 1 (at least one token), found \(count)") }
        let detail = try optionalString(detail, "detail")
        let texts = try strings(tokens, count: Int(count), "tokens") ?? []
        let result = try handle.store.commit(prepared: texts.map { PreparedAppend(token: $0) }, detail: detail)
        assign(Int64(result.version), to: outVersion)
        assign(Int64(result.rowsAdded), to: outRows)
    }
}
