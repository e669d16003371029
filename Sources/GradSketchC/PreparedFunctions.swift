public import CGradSketchABI
import GradSketch
import GradSketchStore

// Prepared appends (Spec/c-api.md §13): many writers, one commit.

@_cdecl("gs_append_prepare")
public func gs_append_prepare(
    _ session: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        _ = try object(session, as: AppendHandle.self, "session")
        guard out != nil else { throw ABIError.invalid("out_token is NULL") }
        throw ABIError(status: gs_status(GS_INTERNAL), message: "gs_append_prepare is not implemented yet in this build")
    }
}

@_cdecl("gs_store_commit_prepared")
public func gs_store_commit_prepared(
    _ store: OpaquePointer?, _ tokens: UnsafePointer<gs_text>?, _ count: Int64, _ detail: UnsafePointer<CChar>?,
    _ outVersion: UnsafeMutablePointer<Int64>?, _ outRows: UnsafeMutablePointer<Int64>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        _ = try object(store, as: StoreHandle.self, "store")
        throw ABIError(status: gs_status(GS_INTERNAL), message: "gs_store_commit_prepared is not implemented yet in this build")
    }
}
