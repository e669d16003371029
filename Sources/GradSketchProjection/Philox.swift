/// Philox4x32-10 (Salmon et al., SC 2011; Spec/projection.md §1): a counter-based generator,
/// so any entry of any projection matrix is computed on its own, in any order, anywhere.
public enum Philox4x32 {
    public typealias Block = (UInt32, UInt32, UInt32, UInt32)

    @inlinable @inline(__always)
    static func multiply(_ a: UInt32, _ b: UInt32) -> (high: UInt32, low: UInt32) {
        let product = UInt64(a) &* UInt64(b)
        return (UInt32(truncatingIfNeeded: product >> 32), UInt32(truncatingIfNeeded: product))
    }

    /// The 128 random bits for `counter` under `key`.
    @inlinable
    public static func random(_ counter: Block, key: (UInt32, UInt32)) -> Block {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            let (high0, low0) = multiply(0xD251_1F53, c0)
            let (high1, low1) = multiply(0xCD9E_8D57, c2)
            (c0, c1, c2, c3) = (high1 ^ c1 ^ k0, low1, high0 ^ c3 ^ k1, low0)
            if round < 9 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
        }
        return (c0, c1, c2, c3)
    }
}
