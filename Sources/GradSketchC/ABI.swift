import CGradSketchABI
import GradSketch
import GradSketchStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The plumbing every exported function shares: status codes, the `char **error` out-parameter,
// and turning opaque C handles back into the Swift objects they stand for (Spec/c-api.md §3–§5).

/// The C spelling of `char **error`.
public typealias ErrorOut = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?

/// A failure detected at the C boundary, before the engine is called.
struct ABIError: Error {
    let status: gs_status
    let message: String

    static func invalid(_ message: String) -> ABIError { ABIError(status: gs_status(GS_INVALID_INPUT), message: message) }
    static func state(_ message: String) -> ABIError { ABIError(status: gs_status(GS_INVALID_STATE), message: message) }
}

/// The status a store error is reported with.
func status(for code: GradSketchStore.StoreError.Code) -> gs_status {
    switch code {
    case .invalidInput: gs_status(GS_INVALID_INPUT)
    case .notFound: gs_status(GS_NOT_FOUND)
    case .conflict: gs_status(GS_CONFLICT)
    case .corrupt: gs_status(GS_CORRUPT)
    case .io: gs_status(GS_IO)
    case .unsupportedVersion: gs_status(GS_UNSUPPORTED_VERSION)
    case .notAStore: gs_status(GS_NOT_A_STORE)
    default: gs_status(GS_INTERNAL)
    }
}

/// Copies `text` into memory the caller releases with `gs_free` (plain `malloc`).
func mallocString(_ text: String) -> UnsafeMutablePointer<CChar>? {
    strdup(text)
}

/// Runs one exported function's body and turns what it throws into a status and an owned
/// message; no error escapes into C, and nothing here traps on bad input.
func guarded(_ error: ErrorOut, _ body: () throws -> Void) -> gs_status {
    error?.pointee = nil
    do {
        try body()
        return gs_status(GS_OK)
    } catch let failure as ABIError {
        error?.pointee = mallocString(failure.message)
        return failure.status
    } catch let failure as GradSketchStore.StoreError {
        error?.pointee = mallocString(failure.description)
        return status(for: failure.code)
    } catch let failure {
        error?.pointee = mallocString(String(describing: failure))
        return gs_status(GS_INTERNAL)
    }
}

// MARK: - Handles

/// Hands `object` to C with one retain; the matching release is the handle's free function.
func exportHandle(_ object: AnyObject) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(object).toOpaque())
}

/// The object behind a handle, checked to be of the expected class so that a wrong or NULL
/// handle is an `INVALID_INPUT` rather than a crash.
func object<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type, _ what: String) throws -> T {
    guard let handle else { throw ABIError.invalid("\(what) is NULL") }
    let object = Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    guard let typed = object as? T else { throw ABIError.invalid("\(what) is not a \(what) handle") }
    return typed
}

/// Releases the retain `exportHandle` took, when the handle is of the expected class (a free
/// function cannot report an error, so a wrong handle is left alone rather than released).
func releaseHandle<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type) {
    guard let handle else { return }
    let unmanaged = Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(handle))
    guard unmanaged.takeUnretainedValue() is T else { return }
    unmanaged.release()
}

// MARK: - Arguments

/// A required NUL-terminated UTF-8 argument.
func string(_ pointer: UnsafePointer<CChar>?, _ what: String) throws -> String {
    guard let pointer else { throw ABIError.invalid("\(what) is NULL") }
    guard let text = String(validatingCString: pointer) else {
        throw ABIError.invalid("\(what) is not valid UTF-8")
    }
    return text
}

/// An optional NUL-terminated UTF-8 argument (NULL → nil).
func optionalString(_ pointer: UnsafePointer<CChar>?, _ what: String) throws -> String? {
    guard pointer != nil else { return nil }
    return try string(pointer, what)
}

/// Writes `value` through an optional out-pointer.
func assign<T>(_ value: T, to pointer: UnsafeMutablePointer<T>?) {
    pointer?.pointee = value
}

/// Decodes `count` strings given in the packed `gs_text` form (Spec/c-api.md §4).
func strings(_ text: UnsafePointer<gs_text>?, count: Int, _ what: String) throws -> [String]? {
    guard let text else { return nil }
    guard count >= 0 else { throw ABIError.invalid("\(what): count must be ≥ 0, found \(count)") }
    guard let offsets = text.pointee.offsets else { throw ABIError.invalid("\(what): offsets is NULL") }
    if count > 0, text.pointee.bytes == nil { throw ABIError.invalid("\(what): bytes is NULL") }
    var result: [String] = []
    result.reserveCapacity(count)
    for index in 0..<count {
        let start = offsets[index], end = offsets[index + 1]
        guard start >= 0, end >= start else {
            throw ABIError.invalid("\(what): offsets must be ≥ 0 and non-decreasing, found offsets[\(index)] = \(start), offsets[\(index + 1)] = \(end)")
        }
        let base = UnsafeRawPointer(text.pointee.bytes!).advanced(by: Int(start))
        var bytes = UnsafeRawBufferPointer(start: base, count: Int(end - start))
        if let last = bytes.last, last == 0 { bytes = UnsafeRawBufferPointer(rebasing: bytes.dropLast()) }
        guard !bytes.contains(0) else { throw ABIError.invalid("\(what): string \(index) contains a NUL byte") }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw ABIError.invalid("\(what): string \(index) is not valid UTF-8")
        }
        result.append(decoded)
    }
    return result
}
