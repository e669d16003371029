public import CGradSketchABI
import GradSketch
import GradSketchStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Version, status names, memory, stores and verification (Spec/c-api.md §2, §3, §7).

@_cdecl("gs_abi_version")
public func gs_abi_version() -> UInt32 {
    UInt32(GS_ABI_VERSION_MAJOR << 16 | GS_ABI_VERSION_MINOR)
}

/// The names `gs_status_name` returns, allocated once for the life of the process so the
/// pointers are static as the header promises.
nonisolated(unsafe) private let statusNames: [UnsafePointer<CChar>] = ([
    "OK", "INVALID_INPUT", "NOT_FOUND", "CONFLICT", "CORRUPT", "IO", "UNSUPPORTED_VERSION",
    "NOT_A_STORE", "INVALID_STATE", "INTERNAL", "UNKNOWN",
] as [String]).map { (name: String) -> UnsafePointer<CChar> in UnsafePointer(strdup(name)!) }

@_cdecl("gs_status_name")
public func gs_status_name(_ status: gs_status) -> UnsafePointer<CChar>? {
    let index = Int(status)
    return statusNames[(0..<statusNames.count - 1).contains(index) ? index : statusNames.count - 1]
}

@_cdecl("gs_free")
public func gs_free(_ pointer: UnsafeMutableRawPointer?) {
    free(pointer)
}

/// What a `gs_store` handle stands for.
final class StoreHandle: Sendable {
    let store: GradSketch.Store
    init(_ store: GradSketch.Store) { self.store = store }
}

@_cdecl("gs_store_create")
public func gs_store_create(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut) -> gs_status {
    guarded(error) {
        let path = try string(path, "path")
        guard let out else { throw ABIError.invalid("out_store is NULL") }
        out.pointee = exportHandle(StoreHandle(try GradSketch.Store.create(at: path)))
    }
}

@_cdecl("gs_store_open")
public func gs_store_open(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut) -> gs_status {
    guarded(error) {
        let path = try string(path, "path")
        guard let out else { throw ABIError.invalid("out_store is NULL") }
        out.pointee = exportHandle(StoreHandle(try GradSketch.Store(opening: path)))
    }
}

@_cdecl("gs_store_close")
public func gs_store_close(_ store: OpaquePointer?) {
    releaseHandle(store, as: StoreHandle.self)
}

@_cdecl("gs_store_latest_version")
public func gs_store_latest_version(_ store: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?, _ error: ErrorOut) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        guard let out else { throw ABIError.invalid("out_version is NULL") }
        out.pointee = Int64(try handle.store.latestVersion())
    }
}

@_cdecl("gs_store_delete")
public func gs_store_delete(
    _ store: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ ids: UnsafePointer<gs_text>?, _ count: Int64,
    _ outVersion: UnsafeMutablePointer<Int64>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        let set = try string(set, "set")
        guard ids != nil else { throw ABIError.invalid("ids is NULL") }
        guard count >= 1 else { throw ABIError.invalid("count must be ≥ 1, found \(count)") }
        let names = try strings(ids, count: Int(count), "ids") ?? []
        let result = try handle.store.transaction(detail: nil) { transaction in
            try transaction.delete(ids: names, from: set)
        }
        assign(Int64(result.version), to: outVersion)
    }
}

// MARK: - Verification

/// What a `gs_verify_report` handle stands for.
final class VerifyReportHandle: Sendable {
    let clean: Bool
    let problems: StringList
    let filesChecked: Int
    let bytesChecked: Int

    init(_ report: GradSketchStore.VerificationReport) {
        clean = report.isClean
        problems = StringList(report.problems.map(\.description), ownedByCaller: false)
        filesChecked = report.filesChecked
        bytesChecked = report.bytesChecked
    }
}

@_cdecl("gs_store_verify")
public func gs_store_verify(_ store: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut) -> gs_status {
    guarded(error) {
        let handle = try object(store, as: StoreHandle.self, "store")
        guard let out else { throw ABIError.invalid("out_report is NULL") }
        out.pointee = exportHandle(VerifyReportHandle(try handle.store.verify()))
    }
}

@_cdecl("gs_verify_report_clean")
public func gs_verify_report_clean(_ report: OpaquePointer?) -> CInt {
    guard let report = try? object(report, as: VerifyReportHandle.self, "report") else { return 0 }
    return report.clean ? 1 : 0
}

@_cdecl("gs_verify_report_problem_count")
public func gs_verify_report_problem_count(_ report: OpaquePointer?) -> Int64 {
    guard let report = try? object(report, as: VerifyReportHandle.self, "report") else { return 0 }
    return Int64(report.problems.count)
}

@_cdecl("gs_verify_report_problem")
public func gs_verify_report_problem(_ report: OpaquePointer?, _ index: Int64) -> UnsafePointer<CChar>? {
    guard let report = try? object(report, as: VerifyReportHandle.self, "report"),
          index >= 0, index < report.problems.count else { return nil }
    return UnsafePointer(report.problems.bytes + Int(report.problems.offsets[Int(index)]))
}

@_cdecl("gs_verify_report_files_checked")
public func gs_verify_report_files_checked(_ report: OpaquePointer?) -> Int64 {
    guard let report = try? object(report, as: VerifyReportHandle.self, "report") else { return 0 }
    return Int64(report.filesChecked)
}

@_cdecl("gs_verify_report_bytes_checked")
public func gs_verify_report_bytes_checked(_ report: OpaquePointer?) -> Int64 {
    guard let report = try? object(report, as: VerifyReportHandle.self, "report") else { return 0 }
    return Int64(report.bytesChecked)
}

@_cdecl("gs_verify_report_free")
public func gs_verify_report_free(_ report: OpaquePointer?) {
    releaseHandle(report, as: VerifyReportHandle.self)
}
