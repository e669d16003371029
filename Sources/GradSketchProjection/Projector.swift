import COpenBLAS
import Dispatch

/// Projecting rows with dense Rademacher matrices (GEMM through OpenBLAS) and linear-layer
/// gradients through the Kronecker path (Spec/projection.md §4).
public enum Projector {
    /// Columns of Pᵀ generated per GEMM call: large enough that sgemm runs at full speed,
    /// small enough that the block (columns × k floats) stays in cache-friendly sizes.
    static let columnBlock = 512

    /// Y [n, k] += X [n, d] · Pᵀ for the dense Rademacher P of `stream`.
    ///
    /// Pᵀ is generated block by block (two threads: one generates the next block while
    /// OpenBLAS multiplies the current one), so memory stays at two blocks whatever d is.
    public static func projectDense(_ x: UnsafeBufferPointer<Float>, rows n: Int, d: Int, stream: ProjectionStream,
                                    k: Int, gaussian: Bool = false, addingInto y: UnsafeMutableBufferPointer<Float>) {
        let fill = gaussian ? DenseGaussian.fillTransposed : DenseRademacher.fillTransposed
        precondition(x.count == n * d && y.count == n * k, "shapes do not match: x \(x.count) vs \(n)×\(d), y \(y.count) vs \(n)×\(k)")
        let blocks = stride(from: 0, to: d, by: columnBlock).map { $0..<min(d, $0 + columnBlock) }
        if blocks.isEmpty || n == 0 || k == 0 { return }
        let buffers = (0..<2).map { _ in UnsafeMutableBufferPointer<Float>.allocate(capacity: columnBlock * k) }
        defer { buffers.forEach { $0.deallocate() } }
        fill(stream, k, blocks[0], buffers[0])
        for (index, columns) in blocks.enumerated() {
            let current = buffers[index % 2]
            let next = buffers[(index + 1) % 2]
            let group = DispatchGroup()
            if index + 1 < blocks.count {
                nonisolated(unsafe) let target = next
                let following = blocks[index + 1]
                DispatchQueue.global().async(group: group) {
                    fill(stream, k, following, target)
                }
            }
            // Y (n×k) += X[:, columns] (n×c, leading dimension d) · Pᵀ[columns] (c×k)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(k), Int32(columns.count),
                        1, x.baseAddress! + columns.lowerBound, Int32(d), current.baseAddress, Int32(k),
                        1, y.baseAddress, Int32(k))
            group.wait()
        }
    }

    /// The Kronecker sketch of one example's linear-layer gradient G = Bᵀ A without forming
    /// G: S = (B P_outᵀ)ᵀ (A P_inᵀ), k_out × k_in, row-major (Spec/projection.md §4).
    ///
    /// - Parameters:
    ///   - activations: A, `tokens × nIn` (row-major).
    ///   - outputGradients: B, `tokens × nOut`.
    public static func kronecker(activations: UnsafeBufferPointer<Float>, outputGradients: UnsafeBufferPointer<Float>,
                                 tokens: Int, nIn: Int, nOut: Int, name: String, seed: UInt64,
                                 kIn: Int, kOut: Int) -> [Float] {
        precondition(activations.count == tokens * nIn && outputGradients.count == tokens * nOut, "shapes do not match")
        var projectedIn = [Float](repeating: 0, count: tokens * kIn)    // A P_inᵀ
        var projectedOut = [Float](repeating: 0, count: tokens * kOut)  // B P_outᵀ
        projectedIn.withUnsafeMutableBufferPointer {
            projectDense(activations, rows: tokens, d: nIn, stream: ProjectionStream(seed: seed, name: name + "/in"), k: kIn, addingInto: $0)
        }
        projectedOut.withUnsafeMutableBufferPointer {
            projectDense(outputGradients, rows: tokens, d: nOut, stream: ProjectionStream(seed: seed, name: name + "/out"), k: kOut, addingInto: $0)
        }
        var sketch = [Float](repeating: 0, count: kOut * kIn)
        // S (kOut×kIn) = (B P_outᵀ)ᵀ (tokens×kOut)ᵀ · (A P_inᵀ) (tokens×kIn)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(kOut), Int32(kIn), Int32(tokens),
                    1, projectedOut, Int32(kOut), projectedIn, Int32(kIn), 0, &sketch, Int32(kIn))
        return sketch
    }
}

extension Projector {
    /// Projects rows `[n, d]` of one parameter (stream `name`) with `definition`'s kind,
    /// into `[n, kDense]` (Spec/projection.md §2–§4: a dense parameter adds its projection to
    /// the shared dense block).
    public static func projectRows(_ x: UnsafeBufferPointer<Float>, rows n: Int, d: Int, parameter name: String,
                                   definition: ProjectionDefinition) -> [Float] {
        var y = [Float](repeating: 0, count: n * definition.kDense)
        let stream = ProjectionStream(seed: definition.seed, name: name)
        y.withUnsafeMutableBufferPointer { output in
            switch definition.kind {
            case .rademacher, .gaussian:
                projectDense(x, rows: n, d: d, stream: stream, k: definition.kDense, gaussian: definition.kind == .gaussian, addingInto: output)
            case .sparse:
                SparseJL.project(x, rows: n, d: d, stream: stream, k: definition.kDense,
                                 nonzeros: definition.nonzeros ?? 1, addingInto: output)
            case .srht:
                SRHT.project(x, rows: n, d: d, stream: stream, k: definition.kDense,
                             blockSize: definition.block ?? SRHT.defaultBlock(for: d), addingInto: output)
            }
        }
        return y
    }

    /// The sketch of one whole vector given tensor by tensor (a weight delta, say), laid out
    /// as Spec/projection.md §4 says: one block per Kronecker parameter, then the dense block.
    /// A Kronecker block is `P_out · W · P_inᵀ`, which equals `(P_out ⊗ P_in) vec(W)`.
    ///
    /// - Throws: when a tensor is missing, its element count does not match the layout, or
    ///   two parameters of the layout share a stream.
    public static func projectTensors(_ tensors: [(name: String, values: [Float])], definition: ProjectionDefinition) throws -> [Float] {
        try definition.validate()
        try definition.checkStreamsAreDistinct()
        // Keyed by UTF-8 bytes: NFC and NFD spellings of a name are different tensors (format §2.5).
        let byName = Dictionary(tensors.map { (Array($0.name.utf8), $0.values) }, uniquingKeysWith: { first, _ in first })
        var blocks: [Float] = []
        var dense = [Float](repeating: 0, count: definition.kDense)
        for parameter in definition.layout {
            guard let values = byName[Array(parameter.name.utf8)] else {
                throw ProjectionError("the layout names \(parameter.name), which the tensors do not have")
            }
            guard values.count == parameter.shape.reduce(1, *) else {
                throw ProjectionError("tensor \(parameter.name) has \(values.count) elements, the layout says shape \(parameter.shape)")
            }
            if parameter.kind == "kronecker", let kOut = parameter.kOut, let kIn = parameter.kIn, parameter.shape.count == 2 {
                let (nOut, nIn) = (parameter.shape[0], parameter.shape[1])
                // W P_inᵀ (nOut × kIn), then (P_out (W P_inᵀ))ᵀ = (W P_inᵀ)ᵀ P_outᵀ (kIn × kOut).
                var right = [Float](repeating: 0, count: nOut * kIn)
                values.withUnsafeBufferPointer { w in
                    right.withUnsafeMutableBufferPointer {
                        projectDense(w, rows: nOut, d: nIn, stream: ProjectionStream(seed: definition.seed, name: parameter.name + "/in"), k: kIn, addingInto: $0)
                    }
                }
                var transposed = [Float](repeating: 0, count: kIn * nOut)
                for o in 0..<nOut { for i in 0..<kIn { transposed[i * nOut + o] = right[o * kIn + i] } }
                var both = [Float](repeating: 0, count: kIn * kOut)
                transposed.withUnsafeBufferPointer { t in
                    both.withUnsafeMutableBufferPointer {
                        projectDense(t, rows: kIn, d: nOut, stream: ProjectionStream(seed: definition.seed, name: parameter.name + "/out"), k: kOut, addingInto: $0)
                    }
                }
                for o in 0..<kOut { for i in 0..<kIn { blocks.append(both[i * kOut + o]) } }
            } else {
                let part = values.withUnsafeBufferPointer { projectRows($0, rows: 1, d: values.count, parameter: parameter.name, definition: definition) }
                for index in dense.indices { dense[index] += part[index] }
            }
        }
        return definition.layout.contains { $0.kind == "dense" } ? blocks + dense : blocks
    }
}

/// A projection request that cannot be served, saying what was expected and what was found.
public struct ProjectionError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
