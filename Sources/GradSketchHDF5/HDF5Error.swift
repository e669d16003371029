internal import CHDF5
import Synchronization

/// A failed HDF5 call, with the library's error stack for that call.
///
/// This is the only error type the HDF5 layer throws. `stack` is HDF5's own account of the
/// failure, innermost frame last, so a message such as "unable to open file" keeps the
/// reason HDF5 gave ("file signature not found").
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// The C function that failed, e.g. `H5Dopen2`.
    public let call: String
    /// What the caller was doing, e.g. the file and object path.
    public var context: String
    /// HDF5's error stack lines for this failure.
    public let stack: [String]

    public var description: String {
        var text = "HDF5 \(call) failed"
        if !context.isEmpty { text += " (\(context))" }
        if let reason = stack.last(where: { !$0.isEmpty }) { text += ": \(reason)" }
        return text
    }

    /// The full error stack, one frame per line, for logs and `--verbose`.
    public var detailedDescription: String {
        ([description] + stack.map { "  " + $0 }).joined(separator: "\n")
    }

    init(call: String, context: String = "", stack: [String]) {
        self.call = call
        self.context = context
        self.stack = stack
    }
}

/// HDF5 is initialised exactly once per process; reading this global forces it.
///
/// HDF5's exit handler is not installed. When `H5Fclose`'s final flush fails (a full disk),
/// HDF5 1.10 leaves the file's identifier registered over a half-destroyed file object, and
/// the exit handler's second close of it dereferences a null pointer (SIGSEGV in
/// `H5F__close_cb`), turning a clean "No space left on device" into a crash. Every object
/// is closed by its owner here, so the handler would have nothing else to do.
private let libraryOpened: Bool = {
    _ = H5dont_atexit()
    _ = H5open()
    return true
}()

/// Opens the library before any other HDF5 call, including the macros that read HDF5's
/// globals (`H5P_FILE_ACCESS`, ...) and would open it without the set-up above.
func openLibrary() { _ = libraryOpened }

/// Debian's HDF5 is built thread-safe (one global lock inside the library). If a build is
/// not, every call is serialised here instead; the lock is only taken around leaf C calls.
private let libraryIsThreadSafe: Bool = {
    var threadSafe: hbool_t = false
    _ = H5is_library_threadsafe(&threadSafe)
    return threadSafe
}()
private let serialLock = Mutex<Void>(())

/// The one seam between Swift and HDF5: every C call in this module goes through here.
///
/// It opens the library once, silences HDF5's own printing on the calling thread, and turns
/// a negative result into an ``HDF5Error`` carrying the error stack.
@discardableResult
func hdf5<T: BinaryInteger>(_ call: StaticString, _ context: @autoclosure () -> String = "", _ body: () -> T) throws(HDF5Error) -> T {
    let result = callHDF5(body)
    guard result >= 0 else {
        throw HDF5Error(call: "\(call)", context: context(), stack: takeErrorStack())
    }
    return result
}

/// Runs a C call under the seam's set-up without interpreting its result (for calls whose
/// failure value is not negative, such as `H5Dget_offset`).
func callHDF5<T>(_ body: () -> T) -> T {
    _ = libraryOpened
    chdf5_silence_errors_on_this_thread()
    if libraryIsThreadSafe { return body() }
    return serialLock.withLock { _ in body() }
}

/// Takes (and clears) the calling thread's HDF5 error stack.
func takeErrorStack() -> [String] {
    guard let text = chdf5_take_error_stack() else { return [] }
    defer { free(text) }
    return String(cString: text).split(separator: "\n").map(String.init)
}

/// Throws an ``HDF5Error`` for a failure the C call did not signal with a negative value.
func hdf5Failure(_ call: StaticString, _ context: String, _ reason: String) -> HDF5Error {
    var stack = takeErrorStack()
    stack.append(reason)
    return HDF5Error(call: "\(call)", context: context, stack: stack)
}
