import CGradSketchKernels

/// Converting arrays between element types as Spec §2.3 defines it.
public enum ElementConversion {
    /// Converts `source` (elements of `from`) into `destination` (elements of `to`, which is
    /// float32 or float16) and returns the index of the first non-finite *converted* value,
    /// or nil. Values that overflow float16 become ±Inf and so count as non-finite.
    ///
    /// float16 → float32 and bfloat16 → float32 are exact; float32 → float16 rounds to
    /// nearest, ties to even; float64 rounds to float32 first (and then to float16 for a
    /// float16 target: two roundings, as the Spec fixes it).
    ///
    /// - Throws: when the types are not convertible or the sizes disagree.
    public static func convert(_ source: UnsafeRawBufferPointer, from: ElementType, to: ElementType,
                               into destination: UnsafeMutableRawBufferPointer) throws -> Int? {
        let count = source.count / from.byteWidth
        guard source.count == count * from.byteWidth, destination.count == count * to.byteWidth else {
            throw InterchangeError(path: "(memory)", "conversion of \(source.count) bytes of \(from.rawValue) needs \(count * to.byteWidth) bytes of \(to.rawValue), found \(destination.count)")
        }
        guard count > 0, let input = source.baseAddress, let output = destination.baseAddress else { return nil }
        switch (from, to) {
        case (.float32, .float32), (.float16, .float16):
            output.copyMemory(from: input, byteCount: source.count)
        case (.float16, .float32):
            gsk_f16_to_f32(input.assumingMemoryBound(to: UInt16.self), output.assumingMemoryBound(to: Float.self), count)
        case (.bfloat16, .float32):
            gsk_bf16_to_f32(input.assumingMemoryBound(to: UInt16.self), output.assumingMemoryBound(to: Float.self), count)
        case (.float64, .float32):
            gsk_f64_to_f32(input.assumingMemoryBound(to: Double.self), output.assumingMemoryBound(to: Float.self), count)
        case (.float32, .float16):
            gsk_f32_to_f16(input.assumingMemoryBound(to: Float.self), output.assumingMemoryBound(to: UInt16.self), count)
        case (.bfloat16, .float16), (.float64, .float16):
            // Through a bounded float32 buffer, so memory stays flat for any size.
            let block = 16384
            let wide = UnsafeMutablePointer<Float>.allocate(capacity: min(block, count))
            defer { wide.deallocate() }
            var start = 0
            while start < count {
                let n = min(block, count - start)
                if from == .bfloat16 {
                    gsk_bf16_to_f32(input.assumingMemoryBound(to: UInt16.self) + start, wide, n)
                } else {
                    gsk_f64_to_f32(input.assumingMemoryBound(to: Double.self) + start, wide, n)
                }
                gsk_f32_to_f16(wide, output.assumingMemoryBound(to: UInt16.self) + start, n)
                start += n
            }
        default:
            throw InterchangeError(path: "(memory)", "cannot convert \(from.rawValue) to \(to.rawValue): expected float16, bfloat16, float32 or float64 into float32 or float16")
        }
        let bad = to == .float16
            ? gsk_first_nonfinite_f16(output.assumingMemoryBound(to: UInt16.self), count)
            : gsk_first_nonfinite_f32(output.assumingMemoryBound(to: Float.self), count)
        return bad < 0 ? nil : bad
    }
}
