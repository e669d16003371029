import Crypto

/// A seed and a stream name: everything that decides a projection matrix's entries
/// (Spec/projection.md §1). Different streams (tensors, or the two Kronecker factors of one)
/// never share random numbers.
public struct ProjectionStream: Sendable, Hashable {
    public let seed: UInt64
    public let name: String
    /// The stream id's halves: the first 8 bytes of SHA-256(name), little-endian.
    public let id: (UInt32, UInt32)

    public init(seed: UInt64, name: String) {
        self.seed = seed
        self.name = name
        let digest = Array(SHA256.hash(data: Array(name.utf8)))
        let value = (0..<8).reduce(UInt64(0)) { $0 | UInt64(digest[$1]) << (8 * UInt64($1)) }
        id = (UInt32(truncatingIfNeeded: value), UInt32(truncatingIfNeeded: value >> 32))
    }

    @inlinable var key: (UInt32, UInt32) { (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)) }

    public static func == (a: Self, b: Self) -> Bool { a.seed == b.seed && a.name == b.name }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(seed)
        hasher.combine(name)
    }
}

/// binary64 1/√n rounded to binary32, the entry scale of §2 and §3.
@inlinable func inverseSquareRootScale(_ n: Int) -> Float { Float(1.0 / Double(n).squareRoot()) }
