public import GradSketchInterchange
import GradSketchHDF5

/// The element types a sketch set stores its rows in (Spec §2.3, §5).
public enum SketchDType: String, Sendable, CaseIterable, Codable {
    case float16, float32

    /// Bytes per element.
    public var byteWidth: Int { self == .float16 ? 2 : 4 }

    /// The matching interchange element type (for conversions and `.npy` files).
    public var elementType: ElementType { self == .float16 ? .float16 : .float32 }

    var storageType: StorageType { self == .float16 ? .float16 : .float32 }

    /// The stored dtype for input of `type` when the user names none: float16 stays float16,
    /// everything else is stored as float32 (bfloat16 widened exactly, float64 rounded).
    public static func natural(for type: ElementType) -> SketchDType {
        type == .float16 ? .float16 : .float32
    }

    /// Parses a dtype name, saying what is accepted when it is not one.
    public init(parsing text: String) throws {
        guard let value = SketchDType(rawValue: text) else {
            throw StoreError(.invalidInput, "unknown dtype \"\(text)\": expected float16 or float32")
        }
        self = value
    }
}

/// A dense block of input rows `[rowCount, k]` in row-major order, borrowed from the caller.
///
/// The bytes must stay valid while the append that reads them runs.
public struct RowInput: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let elementType: ElementType
    public let rowCount: Int
    public let k: Int

    /// - Throws: ``StoreError`` `.invalidInput` when the type is not a float type or the byte
    ///   count does not equal `rowCount · k · width`.
    public init(bytes: UnsafeRawBufferPointer, elementType: ElementType, rowCount: Int, k: Int) throws {
        guard [.float16, .bfloat16, .float32, .float64].contains(elementType) else {
            throw StoreError(.invalidInput, "rows must be float16, bfloat16, float32 or float64, found \(elementType.rawValue)")
        }
        guard rowCount >= 1, k >= 1 else {
            throw StoreError(.invalidInput, "rows must have shape [N, k] with N ≥ 1 and k ≥ 1, found [\(rowCount), \(k)]")
        }
        let expected = rowCount * k * elementType.byteWidth
        guard bytes.count == expected else {
            throw StoreError(.invalidInput, "rows of shape [\(rowCount), \(k)] \(elementType.rawValue) need \(expected) bytes, found \(bytes.count)")
        }
        self.bytes = bytes
        self.elementType = elementType
        self.rowCount = rowCount
        self.k = k
    }
}

/// Per-row metadata kinds (Spec §5.1).
public enum MetadataKind: String, Sendable, Codable {
    case text, json
}

/// Everything one append adds besides the rows: ids, labels, metadata and float columns, each
/// with one entry per row when present.
public struct RowAnnotations: Sendable {
    public var ids: [String]?
    public var labels: [String]?
    public var metadata: [String]?
    public var metadataKind: MetadataKind
    public var columns: [String: [Double]]

    public init(ids: [String]? = nil, labels: [String]? = nil, metadata: [String]? = nil,
                metadataKind: MetadataKind = .text, columns: [String: [Double]] = [:]) {
        self.ids = ids
        self.labels = labels
        self.metadata = metadata
        self.metadataKind = metadataKind
        self.columns = columns
    }
}

/// How a sketch set is created by its first append (ignored for later appends, except that
/// a given dtype or k must match the set's).
public struct SketchSetOptions: Sendable {
    /// The stored dtype; nil takes the natural one for the input (see ``SketchDType/natural(for:)``).
    public var dtype: SketchDType?
    public var allowNonfinite: Bool
    /// Set attributes (Spec §7.1): tensor_set, projection, gradient_kind, training_step, ...
    public var attributes: [String: JSONValue]

    public init(dtype: SketchDType? = nil, allowNonfinite: Bool = false, attributes: [String: JSONValue] = [:]) {
        self.dtype = dtype
        self.allowNonfinite = allowNonfinite
        self.attributes = attributes
    }
}

/// The rules of Spec §5 for names and ids.
enum Rules {
    /// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` for set, tensor set and column names.
    static func checkName(_ name: String, what: String) throws {
        let bytes = Array(name.utf8)
        func allowed(_ byte: UInt8, first: Bool) -> Bool {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"): true
            case UInt8(ascii: "."), UInt8(ascii: "-"): !first
            default: false
            }
        }
        guard !bytes.isEmpty, bytes.count <= 128,
              bytes.enumerated().allSatisfy({ allowed($0.element, first: $0.offset == 0) }) else {
            throw StoreError(.invalidInput, "invalid \(what) name \"\(name)\": expected 1–128 characters from A–Z a–z 0–9 _ . - not starting with . or -")
        }
    }

    /// Ids are non-empty, at most 1024 UTF-8 bytes, without NUL, LF or CR, and unique as
    /// byte sequences (Spec §2.5: no Unicode normalisation).
    static func checkIDs(_ ids: [String]) throws {
        var seen = Set<UTF8Key>()
        seen.reserveCapacity(ids.count)
        for (index, id) in ids.enumerated() {
            let utf8 = id.utf8
            guard !utf8.isEmpty, utf8.count <= 1024, !utf8.contains(0), !utf8.contains(10), !utf8.contains(13) else {
                throw StoreError(.invalidInput, "id of row \(index) is invalid: expected 1–1024 bytes of UTF-8 without NUL, LF or CR, found \(utf8.count) bytes \"\(id.prefix(40))\"")
            }
            guard seen.insert(UTF8Key(id)).inserted else {
                throw StoreError(.invalidInput, "duplicate id \"\(id)\" at row \(index): ids must be unique within a set")
            }
        }
    }

    static func checkCount(_ count: Int, of what: String, rows: Int) throws {
        guard count == rows else {
            throw StoreError(.invalidInput, "\(what) must have one entry per row: expected \(rows), found \(count)")
        }
    }
}
