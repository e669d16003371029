import CGradSketchKernels

/// Which OpenBLAS kernels GEMM runs on.
public enum BLASKernels {
    /// Switches a DYNAMIC_ARCH OpenBLAS that fell back to SSE kernels on a CPU it does not
    /// recognise to its AVX2 or AVX-512 kernels (unless OPENBLAS_CORETYPE is set), and
    /// returns the core name in use. Programs call it first thing, before any BLAS call.
    @discardableResult
    public static func selectForThisCPU() -> String {
        String(cString: gsk_select_blas_kernels())
    }
}
