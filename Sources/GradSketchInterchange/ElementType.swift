/// Element types of the array files GradSketch reads and writes (`.npy`, `.safetensors`).
public enum ElementType: String, Sendable, CaseIterable {
    case float16, bfloat16, float32, float64, int64, int32, uint8

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .uint8: 1
        case .float16, .bfloat16: 2
        case .float32, .int32: 4
        case .float64, .int64: 8
        }
    }

    /// The bytes an array of `shape` takes, or nil when a dimension is negative or the
    /// product overflows `Int`: shapes come from files and flags, so they are checked before
    /// any size is computed from them.
    ///
    /// A zero dimension does not hide a huge one: `[0, 2^62]` is refused too, because readers
    /// compute row widths (`k × byteWidth`) from the other dimensions even when there are no rows.
    public func byteCount(shape: [Int]) -> Int? {
        var total = byteWidth
        var empty = false
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            empty = empty || dimension == 0
            let (product, overflow) = total.multipliedReportingOverflow(by: max(dimension, 1))
            guard !overflow else { return nil }
            total = product
        }
        return empty ? 0 : total
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float16, .bfloat16, .float32, .float64: true
        case .int64, .int32, .uint8: false
        }
    }
}

/// A file that is not what it should be: says which file, what was expected and what was
/// found.
public struct InterchangeError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String

    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(message) [\(path)]" }
}
