import Foundation

/// A JSON value, for the free-form parts of a manifest (set attributes, projections).
///
/// Integers are kept exactly: a JSON number without a fraction that fits in 64 bits
/// (signed, or unsigned above `Int64.max`) parses to ``integer(_:)`` or ``unsigned(_:)``,
/// never through a binary64 `Double`, so a seed like 2⁵³ + 1 or 2⁶⁴ − 1 survives a
/// manifest round trip bit for bit (Spec/projection.md §5). Equality is by numeric value
/// across the three number cases: `.number(100) == .integer(100)`.
public enum JSONValue: Codable, Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    /// A number that is not an integer in [−2⁶³, 2⁶⁴) (or one built from a `Double`).
    case number(Double)
    /// An integer in [−2⁶³, 2⁶³).
    case integer(Int64)
    /// An integer in [2⁶³, 2⁶⁴); smaller ones are ``integer(_:)``.
    case unsigned(UInt64)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The exact JSON integer `value`.
    public init(_ value: some BinaryInteger) {
        if let small = Int64(exactly: value) { self = .integer(small) }
        else if let large = UInt64(exactly: value) { self = .unsigned(large) }
        else { self = .number(Double(value)) }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        // Foundation reads integer literals exactly (not through Double), and refuses a
        // fraction or a value out of range, so these two see every 64-bit integer exactly.
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode(UInt64.self) { self = .unsigned(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            // Integral doubles stay integers in the text ("training_step": 100, not 100.0);
            // below 2⁵³ every integral double is exactly that integer.
            if value.rounded() == value, abs(value) < 9.0e15 { try container.encode(Int64(value)) }
            else { try container.encode(value) }
        case .integer(let value): try container.encode(value)
        case .unsigned(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x == y
        case (.integer(let x), .integer(let y)): x == y
        case (.unsigned(let x), .unsigned(let y)): x == y
        case (.number(let x), .number(let y)): x == y
        case (.integer(let x), .number(let y)), (.number(let y), .integer(let x)): Int64(exactly: y) == x
        case (.unsigned(let x), .number(let y)), (.number(let y), .unsigned(let x)): UInt64(exactly: y) == x
        // `.integer` and `.unsigned` never hold the same value when built by parsing or
        // `init(_:)`; a hand-built `.unsigned(5)` still equals `.integer(5)`.
        case (.integer(let x), .unsigned(let y)), (.unsigned(let y), .integer(let x)): UInt64(exactly: x) == y
        default: false
        }
    }

    /// Parses JSON text.
    public static func parse(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// Compact JSON text with sorted keys.
    public var jsonText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "null"
    }

    public var description: String { jsonText }

    /// The number, when this is one (the nearest `Double` for integers beyond 2⁵³).
    public var doubleValue: Double? {
        switch self {
        case .number(let value): value
        case .integer(let value): Double(value)
        case .unsigned(let value): Double(value)
        default: nil
        }
    }

    /// The number, when it is an integer that fits in `Int`.
    public var intValue: Int? {
        switch self {
        case .number(let value): Int(exactly: value)
        case .integer(let value): Int(exactly: value)
        case .unsigned(let value): Int(exactly: value)
        default: nil
        }
    }

    /// The number, when it is an integer in [0, 2⁶⁴): exact, never through a `Double`.
    public var uint64Value: UInt64? {
        switch self {
        case .number(let value): UInt64(exactly: value)
        case .integer(let value): UInt64(exactly: value)
        case .unsigned(let value): value
        default: nil
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }
}
