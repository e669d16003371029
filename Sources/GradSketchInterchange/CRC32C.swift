import CGradSketchKernels

/// CRC-32C (Castagnoli), the checksum of Spec §4, computed incrementally.
///
/// Uses the SSE4.2 `crc32` instruction (three interleaved streams) where the CPU has it and
/// slicing-by-8 tables otherwise; both give the same value.
public struct CRC32C: Sendable, Equatable {
    /// The finalized CRC of everything passed to ``update(_:)`` so far.
    public private(set) var value: UInt32 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        value = gsk_crc32c_update(value, base, bytes.count)
    }

    /// The CRC of one buffer.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CRC32C()
        crc.update(bytes)
        return crc.value
    }

    /// The CRC of A‖B from the CRCs of A and B and the length of B, without reading either.
    public static func combine(_ first: UInt32, _ second: UInt32, secondLength: Int) -> UInt32 {
        gsk_crc32c_combine(first, second, UInt64(secondLength))
    }

    /// `crc32c:` and 8 lowercase hex digits, as manifests and attributes write it.
    public static func formatted(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "crc32c:" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// The value of a ``formatted(_:)`` string, or nil when it is not one.
    public static func parse(_ text: String) -> UInt32? {
        guard text.hasPrefix("crc32c:"), text.utf8.count == 15 else { return nil }
        return UInt32(text.dropFirst(7), radix: 16)
    }
}
