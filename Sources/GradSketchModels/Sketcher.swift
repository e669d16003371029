public import GradSketchProjection

/// Per-example gradient sketches of an MLP batch (Spec/projection.md §4): every weight goes
/// through the Kronecker path — (B P_outᵀ)ᵀ(A P_inᵀ), an outer product per example since
/// each example is one token — and every bias adds its dense projection to the shared block.
/// No per-example gradient is ever formed.
public enum GradientSketcher {
    /// The projection definition for `model`: each weight Kronecker-factored with
    /// `side × side`, biases dense into `kDense`.
    public static func definition(for model: MLP, seed: UInt64, side: Int, kDense: Int) -> ProjectionDefinition {
        ProjectionDefinition(seed: seed, kind: .rademacher, kDense: kDense, layout: model.shapes.map { name, shape in
            shape.count == 2 ? .init(name: name, shape: shape, kronecker: (min(side, shape[0]), min(side, shape[1])))
                             : .init(name: name, shape: shape)
        })
    }

    /// Sketches `[n, definition.k]` of the per-example gradients in `trace`.
    public static func sketch(_ trace: MLP.Trace, model: MLP, definition: ProjectionDefinition) throws -> [Float] {
        try definition.checkStreamsAreDistinct()
        let n = trace.count, k = definition.k
        var sketches = [Float](repeating: 0, count: n * k)
        var offset = 0
        var dense = [Float](repeating: 0, count: n * definition.kDense)
        for parameter in definition.layout {
            guard let (index, layer) = model.layers.enumerated().first(where: { $0.element.weight == parameter.name || $0.element.bias == parameter.name }) else {
                throw ProjectionError("the projection's layout names \(parameter.name), which the model does not have")
            }
            let isWeight = layer.weight == parameter.name
            let expectedShape = isWeight ? [layer.outputs, layer.inputs] : [layer.outputs]
            guard parameter.shape == expectedShape else {
                throw ProjectionError("parameter \(parameter.name) has shape \(expectedShape) in the model, \(parameter.shape) in the projection")
            }
            let a = trace.activations[index], b = trace.outputGradients[index]
            if parameter.kind == "kronecker", let kOut = parameter.kOut, let kIn = parameter.kIn {
                var projectedIn = [Float](repeating: 0, count: n * kIn)
                var projectedOut = [Float](repeating: 0, count: n * kOut)
                a.withUnsafeBufferPointer { input in
                    projectedIn.withUnsafeMutableBufferPointer {
                        Projector.projectDense(input, rows: n, d: layer.inputs, stream: ProjectionStream(seed: definition.seed, name: parameter.name + "/in"), k: kIn, addingInto: $0)
                    }
                }
                b.withUnsafeBufferPointer { input in
                    projectedOut.withUnsafeMutableBufferPointer {
                        Projector.projectDense(input, rows: n, d: layer.outputs, stream: ProjectionStream(seed: definition.seed, name: parameter.name + "/out"), k: kOut, addingInto: $0)
                    }
                }
                for example in 0..<n {
                    let row = example * k + offset
                    for o in 0..<kOut {
                        let left = projectedOut[example * kOut + o]
                        for i in 0..<kIn { sketches[row + o * kIn + i] = left * projectedIn[example * kIn + i] }
                    }
                }
                offset += kOut * kIn
            } else {
                // Dense parameter: its per-example gradient is available as a row (a bias's is
                // B itself; a weight's would be materialised here, which layouts avoid).
                guard !isWeight else {
                    throw ProjectionError("weight \(parameter.name) must be Kronecker-factored in a gradient sketch")
                }
                let part = b.withUnsafeBufferPointer {
                    Projector.projectRows($0, rows: n, d: layer.outputs, parameter: parameter.name, definition: definition)
                }
                for i in dense.indices { dense[i] += part[i] }
            }
        }
        if definition.layout.contains(where: { $0.kind == "dense" }) {
            for example in 0..<n {
                for j in 0..<definition.kDense { sketches[example * k + offset + j] = dense[example * definition.kDense + j] }
            }
        }
        return sketches
    }
}
