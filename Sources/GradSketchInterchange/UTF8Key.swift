/// A string that compares and hashes by its UTF-8 bytes.
///
/// Swift's `String ==` and `String.hash(into:)` use Unicode canonical equivalence, so the
/// NFC "é" (C3 A9) and the NFD "é" (65 CC 81) are one key in a `Set<String>`. The store
/// format compares ids, labels and names as exact byte sequences (Spec/format.md §2.5), as
/// h5py, numpy and C do; every set or dictionary keyed by such a value uses this type so the
/// engine agrees with them.
public struct UTF8Key: Hashable, Sendable, CustomStringConvertible {
    public let string: String

    public init(_ string: String) { self.string = string }

    public static func == (a: Self, b: Self) -> Bool {
        var (left, right) = (a.string, b.string)
        return left.withUTF8 { x in right.withUTF8 { y in x.elementsEqual(y) } }
    }

    public func hash(into hasher: inout Hasher) {
        var bytes = string
        bytes.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    public var description: String { string }
}
