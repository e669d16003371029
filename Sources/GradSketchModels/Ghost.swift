import COpenBLAS
import Foundation

/// Exact gradient dot products for linear layers without materialising per-example gradients
/// (the "ghost" dot product of In-Run Data Shapley, Wang et al. 2024, §4.2).
///
/// For a linear layer s = a W, example i contributes T rows: activations A_i (T × in) and loss
/// gradients with respect to the outputs B_i (T × out), and its weight gradient is
/// G_i = Σ_t b_{i,t} ⊗ a_{i,t}. Then
///
///     ⟨G_i, G'_j⟩ = Σ_{t,s} (a_{i,t} · a'_{j,s}) (b_{i,t} · b'_{j,s})
///
/// which costs T²(in + out) per pair instead of in · out. When 2T² > in · out the gradients
/// are cheaper to materialise, and `linearLayer` does that instead (the switch GhostSuite uses).
/// Products run in float32 GEMMs; sums over tokens and pairs are in Double.
public enum GhostDotProduct {
    /// Which route `linearLayer` takes for these sizes.
    public static func usesGhostPath(tokens: Int, inputs: Int, outputs: Int) -> Bool {
        2 * tokens * tokens <= inputs * outputs
    }

    /// ⟨G_i, G'_j⟩ (weights, plus the bias ⟨Σ_t b_{i,t}, Σ_s b'_{j,s}⟩ when `bias`) for every pair
    /// of n examples and m other examples, row-major n × m.
    ///
    /// - Parameters: `activations` (n·T × in) and `outputGradients` (n·T × out) with each
    ///   example's T rows contiguous; the same for the other examples (m·T rows).
    public static func linearLayer(activations: [Float], outputGradients: [Float], count n: Int,
                                   otherActivations: [Float], otherOutputGradients: [Float], otherCount m: Int,
                                   tokens t: Int = 1, inputs: Int, outputs: Int, bias: Bool) -> [Double] {
        precondition(t >= 1 && activations.count == n * t * inputs && outputGradients.count == n * t * outputs
                     && otherActivations.count == m * t * inputs && otherOutputGradients.count == m * t * outputs,
                     "activations must be (count·tokens) × inputs and output gradients (count·tokens) × outputs")
        var result = [Double](repeating: 0, count: n * m)
        guard n > 0, m > 0 else { return result }
        let rows = n * t, otherRows = m * t
        let ghost = usesGhostPath(tokens: t, inputs: inputs, outputs: outputs)
        // B B'ᵀ serves the ghost path and the bias; the materialised path without bias needs none.
        let outputGram = ghost || bias ? gram(outputGradients, rows, otherOutputGradients, otherRows, width: outputs) : []
        if ghost {
            let inputGram = gram(activations, rows, otherActivations, otherRows, width: inputs)
            for i in 0..<n {
                for j in 0..<m {
                    var sum = 0.0
                    for a in (i * t)..<((i + 1) * t) {
                        for b in (j * t)..<((j + 1) * t) {
                            sum += Double(inputGram[a * otherRows + b]) * Double(outputGram[a * otherRows + b])
                        }
                    }
                    result[i * m + j] = sum
                }
            }
        } else {
            let size = inputs * outputs
            let mine = materialise(activations, outputGradients, count: n, tokens: t, inputs: inputs, outputs: outputs)
            let theirs = materialise(otherActivations, otherOutputGradients, count: m, tokens: t, inputs: inputs, outputs: outputs)
            let products = gram(mine, n, theirs, m, width: size)
            for index in result.indices { result[index] = Double(products[index]) }
        }
        if bias {
            for i in 0..<n {
                for j in 0..<m {
                    var sum = 0.0
                    for a in (i * t)..<((i + 1) * t) {
                        for b in (j * t)..<((j + 1) * t) { sum += Double(outputGram[a * otherRows + b]) }
                    }
                    result[i * m + j] += sum
                }
            }
        }
        return result
    }

    /// ⟨G_i, M⟩ + ⟨Σ_t b_{i,t}, v⟩ for a fixed weight-shaped M (out × in) and bias-shaped v:
    /// Σ_t b_{i,t}ᵀ M a_{i,t}, the contraction that scores every example against one vector
    /// (a validation gradient, a Hessian-vector product) without forming G_i.
    public static func contract(activations: [Float], outputGradients: [Float], count n: Int, tokens t: Int = 1,
                                inputs: Int, outputs: Int, weight: [Float], bias: [Float]?) -> [Double] {
        precondition(activations.count == n * t * inputs && outputGradients.count == n * t * outputs && weight.count == outputs * inputs,
                     "activations must be (count·tokens) × inputs, output gradients (count·tokens) × outputs, weight outputs × inputs")
        var projected = [Float](repeating: 0, count: n * t * inputs)  // B M: (n·T × out)(out × in)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n * t), Int32(inputs), Int32(outputs),
                    1, outputGradients, Int32(outputs), weight, Int32(inputs), 0, &projected, Int32(inputs))
        var result = [Double](repeating: 0, count: n)
        for i in 0..<n {
            var sum = 0.0
            for row in (i * t)..<((i + 1) * t) {
                for c in 0..<inputs { sum += Double(projected[row * inputs + c]) * Double(activations[row * inputs + c]) }
                if let bias { for o in 0..<outputs { sum += Double(outputGradients[row * outputs + o]) * Double(bias[o]) } }
            }
            result[i] = sum
        }
        return result
    }

    /// X Yᵀ for X (r × width) and Y (s × width), row-major r × s.
    static func gram(_ x: [Float], _ r: Int, _ y: [Float], _ s: Int, width: Int) -> [Float] {
        var out = [Float](repeating: 0, count: r * s)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(r), Int32(s), Int32(width),
                    1, x, Int32(width), y, Int32(width), 0, &out, Int32(s))
        return out
    }

    /// Per-example weight gradients Σ_t b_{i,t} ⊗ a_{i,t}, n × (out · in).
    static func materialise(_ a: [Float], _ b: [Float], count n: Int, tokens t: Int, inputs: Int, outputs: Int) -> [Float] {
        var gradients = [Float](repeating: 0, count: n * outputs * inputs)
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                gradients.withUnsafeMutableBufferPointer { g in
                    for i in 0..<n {
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outputs), Int32(inputs), Int32(t),
                                    1, b.baseAddress! + i * t * outputs, Int32(outputs), a.baseAddress! + i * t * inputs, Int32(inputs),
                                    0, g.baseAddress! + i * outputs * inputs, Int32(inputs))
                    }
                }
            }
        }
        return gradients
    }
}

extension MLP {
    /// ⟨g_i, g'_j⟩ over all parameters for every example i of `trace` and j of `other`
    /// (row-major trace.count × other.count), by the ghost dot product layer by layer.
    public func ghostDotProducts(_ trace: Trace, _ other: Trace) -> [Double] {
        var total = [Double](repeating: 0, count: trace.count * other.count)
        for (l, layer) in layers.enumerated() {
            let products = GhostDotProduct.linearLayer(activations: trace.activations[l], outputGradients: trace.outputGradients[l], count: trace.count,
                                                       otherActivations: other.activations[l], otherOutputGradients: other.outputGradients[l],
                                                       otherCount: other.count, inputs: layer.inputs, outputs: layer.outputs, bias: true)
            for index in total.indices { total[index] += products[index] }
        }
        return total
    }

    /// ⟨g_i, v⟩ for every example of `trace` against one parameter-shaped vector `v`.
    public func ghostDotProducts(_ trace: Trace, with v: [String: [Float]]) -> [Double] {
        var total = [Double](repeating: 0, count: trace.count)
        for (l, layer) in layers.enumerated() {
            let products = GhostDotProduct.contract(activations: trace.activations[l], outputGradients: trace.outputGradients[l], count: trace.count,
                                                    inputs: layer.inputs, outputs: layer.outputs, weight: v[layer.weight]!, bias: v[layer.bias]!)
            for index in total.indices { total[index] += products[index] }
        }
        return total
    }

    /// (∇L(θ + εv̂) − ∇L(θ − εv̂)) / 2ε · ‖v‖ for the mean loss over a batch, v̂ = v/‖v‖: the
    /// Hessian-vector product by central differences over a parameter displacement of norm
    /// `displacement`. Over a batch of many examples the ReLU kinks crossed within ±ε add
    /// curvature that the R-operator misses. On the In-Run experiment's validation set the
    /// second-order loss change predicted with this product (ε from 1e-4 to the SGD step's own
    /// size) was within 4–13 % of the actual change, against 41 % with the R-operator.
    public func secantHessianVectorProduct(images: [Float], labels: [Int], direction v: [String: [Float]],
                                           displacement: Double = 1e-2) -> [String: [Float]] {
        let norm = v.values.reduce(0.0) { $0 + $1.reduce(0.0) { $0 + Double($1) * Double($1) } }.squareRoot()
        guard norm > 0 else { return v.mapValues { $0.map { _ in 0 } } }
        let epsilon = Float(displacement / norm)
        var plus = self, minus = self
        for (name, values) in v {
            plus.parameters[name] = zip(parameters[name]!, values).map { $0 + epsilon * $1 }
            minus.parameters[name] = zip(parameters[name]!, values).map { $0 - epsilon * $1 }
        }
        let high = plus.meanGradient(of: plus.trace(images: images, labels: labels))
        let low = minus.meanGradient(of: minus.trace(images: images, labels: labels))
        return Dictionary(uniqueKeysWithValues: high.map { name, values in
            (name, zip(values, low[name]!).map { ($0 - $1) / (2 * epsilon) })
        })
    }

    /// H v for the mean cross-entropy loss over the batch `trace` was taken on (at these
    /// parameters; its activations and output gradients are reused), exactly, by Pearlmutter's
    /// R-operator: one forward and one backward pass of the directional derivatives of the
    /// activations and output gradients (ReLU's second derivative is zero almost everywhere).
    ///
    /// This is the Hessian of the loss between ReLU kinks. Averaged over many examples, the kinks
    /// add curvature it does not see; `secantHessianVectorProduct` includes them.
    public func hessianVectorProduct(of trace: Trace, direction v: [String: [Float]]) -> [String: [Float]] {
        let n = trace.count
        // R-forward: R(z_l) = R(a_l) W_lᵀ + a_l V_lᵀ + v_l and R(a_{l+1}) = relu'(z_l) ⊙ R(z_l).
        var rActivations: [[Float]] = [[Float](repeating: 0, count: n * Self.inputs)]
        var rLogits: [Float] = []
        for (l, layer) in layers.enumerated() {
            var rz = Self.linear(trace.activations[l], rows: n, weight: v[layer.weight]!, bias: v[layer.bias]!, inputs: layer.inputs, outputs: layer.outputs)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(layer.outputs), Int32(layer.inputs),
                        1, rActivations[l], Int32(layer.inputs), parameters[layer.weight]!, Int32(layer.inputs), 1, &rz, Int32(layer.outputs))
            if l < layers.count - 1 {
                let next = trace.activations[l + 1]
                for index in rz.indices where next[index] <= 0 { rz[index] = 0 }
                rActivations.append(rz)
            } else {
                rLogits = rz
            }
        }
        // R(p − y) = (diag p − p pᵀ) R(z) per example.
        var rDelta = [Float](repeating: 0, count: n * Self.classes)
        for row in 0..<n {
            let p = trace.probabilities[(row * Self.classes)..<((row + 1) * Self.classes)]
            let r = rLogits[(row * Self.classes)..<((row + 1) * Self.classes)]
            let mean = zip(p, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            for c in 0..<Self.classes {
                rDelta[row * Self.classes + c] = Float(Double(p[p.startIndex + c]) * (Double(r[r.startIndex + c]) - mean))
            }
        }
        // R-backward: R(B_{l−1}) = (R(B_l) W_l + B_l V_l) ⊙ relu'(z_{l−1}); the gradient's
        // derivative per layer is (R(B_l)ᵀ A_l + B_lᵀ R(A_l)) / n and mean R(B_l) for the bias.
        var result: [String: [Float]] = [:]
        var rB = rDelta
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[l]
            let b = trace.outputGradients[l], a = trace.activations[l]
            var weight = [Float](repeating: 0, count: layer.outputs * layer.inputs)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(layer.outputs), Int32(layer.inputs), Int32(n),
                        1 / Float(n), rB, Int32(layer.outputs), a, Int32(layer.inputs), 0, &weight, Int32(layer.inputs))
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(layer.outputs), Int32(layer.inputs), Int32(n),
                        1 / Float(n), b, Int32(layer.outputs), rActivations[l], Int32(layer.inputs), 1, &weight, Int32(layer.inputs))
            var bias = [Float](repeating: 0, count: layer.outputs)
            for row in 0..<n { for o in 0..<layer.outputs { bias[o] += rB[row * layer.outputs + o] / Float(n) } }
            result[layer.weight] = weight
            result[layer.bias] = bias
            if l > 0 {
                var previous = [Float](repeating: 0, count: n * layer.inputs)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(layer.inputs), Int32(layer.outputs),
                            1, rB, Int32(layer.outputs), parameters[layer.weight]!, Int32(layer.inputs), 0, &previous, Int32(layer.inputs))
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(layer.inputs), Int32(layer.outputs),
                            1, b, Int32(layer.outputs), v[layer.weight]!, Int32(layer.inputs), 1, &previous, Int32(layer.inputs))
                let gate = trace.activations[l]
                for index in previous.indices where gate[index] <= 0 { previous[index] = 0 }
                rB = previous
            }
        }
        return result
    }
}
