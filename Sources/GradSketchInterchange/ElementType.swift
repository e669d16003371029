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
