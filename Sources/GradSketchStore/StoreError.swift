/// An error from the store: what went wrong, where, and what was expected against what was
/// found.
///
/// `Code` wraps a private enum so new codes can be added without breaking callers' switches.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case notAStore, unsupportedVersion, notFound, invalidInput, corrupt, io, conflict }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The path is not a GradSketch store (or not a file of one).
        public static let notAStore = Code(.notAStore)
        /// A format or encoding version this reader does not implement.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// A set, tensor set, version or row id that does not exist.
        public static let notFound = Code(.notFound)
        /// Input that breaks a rule: shape, dtype, non-finite values, duplicate ids, names.
        public static let invalidInput = Code(.invalidInput)
        /// Stored data that fails a checksum or a structural check.
        public static let corrupt = Code(.corrupt)
        /// The operating system or HDF5 failed.
        public static let io = Code(.io)
        /// A concurrent change made this one impossible (e.g. the set was dropped meanwhile).
        public static let conflict = Code(.conflict)

        public var description: String { value.rawValue }
    }

    public let code: Code
    /// What happened, saying what was expected and what was found.
    public let message: String
    /// The file (and object inside it) concerned, if any.
    public let path: String?
    /// The lower-level error, if any.
    public let underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, path: String? = nil, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.underlying = underlying
    }

    public var description: String {
        var text = message
        if let path { text += " [\(path)]" }
        if let underlying { text += ": \(underlying)" }
        return text
    }
}

/// Runs `body`, wrapping a lower-level error as a ``StoreError`` with context.
func withContext<T: ~Copyable>(_ code: StoreError.Code, _ message: @autoclosure () -> String, path: String? = nil, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as StoreError {
        throw error
    } catch {
        throw StoreError(code, message(), path: path, underlying: error as (any Error & Sendable))
    }
}
