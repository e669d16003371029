import CGradSketchKernels

/// Thin Swift faces of the C kernels the store uses directly.
enum Kernels {
    /// Index of the first NaN or ±Inf element of `bytes` read as `dtype`, or nil.
    static func firstNonFinite(_ bytes: UnsafeRawBufferPointer, dtype: SketchDType) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let index: Int
        switch dtype {
        case .float16:
            index = gsk_first_nonfinite_f16(base.assumingMemoryBound(to: UInt16.self), bytes.count / 2)
        case .float32:
            index = gsk_first_nonfinite_f32(base.assumingMemoryBound(to: Float.self), bytes.count / 4)
        }
        return index < 0 ? nil : index
    }

    /// Sum of all elements, accumulated in float32 lanes and combined in double.
    static func sum(_ bytes: UnsafeRawBufferPointer, dtype: SketchDType) -> Double {
        guard let base = bytes.baseAddress else { return 0 }
        switch dtype {
        case .float16: return gsk_sum_f16(base.assumingMemoryBound(to: UInt16.self), bytes.count / 2)
        case .float32: return gsk_sum_f32(base.assumingMemoryBound(to: Float.self), bytes.count / 4)
        }
    }
}
