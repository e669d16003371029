import ArgumentParser
import Foundation
import GradSketchInterchange
import GradSketchProjection
import GradSketchStore

struct Project: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Project gradient rows into a sketch set, or a stored weight delta into a query vector.",
        discussion: """
        With --rows, each row [d] of the file is projected to k numbers (dense Rademacher or sparse JL, Spec/projection.md) \
        and appended to --set, whose projection definition is stored with it; appending with a different definition is refused. \
        With --delta, the tensors of a stored tensor set are projected tensor by tensor and summed into one [1, k] .npy row \
        (--negate gives P(base − finetuned) from a delta stored as finetuned − base).
        """)

    @OptionGroup var location: StoreArgument
    @Option(help: "Seed of the projection (64-bit).") var seed: UInt64
    // -k like every other command; --k is still accepted, as earlier releases documented it.
    @Option(name: [.customShort("k"), .customLong("k")], help: "Sketch width k (for --rows and --delta).") var k: Int?
    @Option(help: "rademacher, gaussian, sparse or srht.") var kind: String = "rademacher"
    @Option(help: "SRHT block size, a power of two (default: the smallest power of two ≥ d, at most 2^20).") var block: Int?
    @Option(help: "Nonzeros per input coordinate for sparse projections.") var nonzeros: Int = 4
    @Option(help: "Rows file (.npy or .safetensors) of shape [N, d].") var rows: String?
    @Option(help: "Tensor to read from a .safetensors rows file.") var tensor: String?
    @Option(help: "Parameter (stream) name the rows are gradients of.") var parameter: String = "gradient"
    @Option(help: "Sketch set to append the projected rows to.") var set: String?
    @Option(help: "Ids file for the rows, one per line.") var ids: String?
    @Option(help: "Tensor set (a weight delta) to project into one query row.") var delta: String?
    @Option(help: "Input activations of a linear layer, .npy [N, T, n_in] or [N, n_in] (Kronecker path, with --output-gradients).") var activations: String?
    @Option(help: "Output gradients of the same layer, .npy [N, T, n_out] or [N, n_out].") var outputGradients: String?
    @Option(help: "Kronecker side: the layer's sketch is side_out × side_in (at most n_out × n_in); default 32 for --activations. With --delta, every 2-D tensor is Kronecker-projected with it (as `sketch` does) instead of into the dense block.") var side: Int?
    @Flag(help: "Negate the projected delta.") var negate = false
    @Option(help: "Output .npy for --delta.") var out: String?
    @OptionGroup var output: OutputOptions

    /// What --json prints: `version` for the paths that append to a set, `out` for --delta.
    struct Output: Encodable {
        let rows: Int, k: Int, set: String?, version: Int?, out: String?
    }

    func validate() throws {
        try requireOption(k, "--k", in: 1...OptionLimit.width)
        try requireOption(block, "--block", in: 1...OptionLimit.width)
        if let block, block & (block - 1) != 0 { throw ValidationError("--block must be a power of two, found \(block)") }
        try requireOption(nonzeros, "--nonzeros", in: 1...OptionLimit.perQuery)
        try requireOption(side, "--side", in: 1...OptionLimit.side)
    }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            guard let kindValue = ProjectionDefinition.Kind(rawValue: kind) else {
                throw ValidationError("--kind must be rademacher, gaussian, sparse or srht, found \(kind)")
            }
            if let activations, let outputGradients {
                guard let set else { throw ValidationError("--activations needs --set NAME") }
                try projectLayer(store: store, activations: activations, outputGradients: outputGradients, set: set)
                return
            }
            guard let k, k >= 1 else { throw ValidationError("-k must be given and at least 1 for --rows and --delta") }
            if let block, block <= 0 || block & (block - 1) != 0 {
                throw ValidationError("--block must be a power of two, found \(block)")
            }
            if let side, side < 1 { throw ValidationError("--side must be at least 1, found \(side)") }
            if let delta {
                guard let out else { throw ValidationError("--delta needs --out FILE.npy") }
                try store.refuseOutputInsideStore(out)
                let tensors = try store.tensorSet(delta)
                let values = try tensors.entry.tensors.map { (name: $0.name, values: try tensors.tensor(named: $0.name).floats()) }
                // Every flag that shapes the matrix goes into the definition: --block for
                // SRHT, --side for a Kronecker layout (Spec/projection.md §4, §5).
                let largest = tensors.entry.tensors.map { $0.shape.reduce(1, *) }.max() ?? 1
                let definition = ProjectionDefinition(
                    seed: seed, kind: kindValue, kDense: k, nonzeros: kindValue == .sparse ? nonzeros : nil,
                    block: kindValue == .srht ? (block ?? SRHT.defaultBlock(for: largest)) : nil,
                    layout: tensors.entry.tensors.map { tensor in
                        guard let side, tensor.shape.count == 2 else { return .init(name: tensor.name, shape: tensor.shape) }
                        return .init(name: tensor.name, shape: tensor.shape, kronecker: (min(side, tensor.shape[0]), min(side, tensor.shape[1])))
                    })
                var sketch = try projectionErrors { try Projector.projectTensors(values, definition: definition) }
                if negate { sketch = sketch.map { -$0 } }
                try NumpyWriter.write(sketch, as: .float32, shape: [1, sketch.count], to: out)
                if output.json { printJSON(Output(rows: 1, k: sketch.count, set: nil, version: nil, out: out)); return }
                print("projected \(delta) (\(tensors.entry.tensors.count) tensors) to \(out) with k = \(sketch.count)")
                return
            }
            guard let rows, let set else { throw ValidationError("expected --rows FILE and --set NAME (or --delta NAME --out FILE)") }
            let source = try RowsFile(path: rows, tensor: tensor)
            let input = source.input
            var widened = [Float](repeating: 0, count: input.rowCount * input.k)
            _ = try widened.withUnsafeMutableBytes { try ElementConversion.convert(input.bytes, from: input.elementType, to: .float32, into: $0) }
            let definition = ProjectionDefinition(
                seed: seed, kind: kindValue, kDense: k, nonzeros: kindValue == .sparse ? nonzeros : nil,
                block: kindValue == .srht ? (block ?? SRHT.defaultBlock(for: input.k)) : nil,
                layout: [.init(name: parameter, shape: [input.k])])
            try projectionErrors { try definition.validate() }
            let definitionJSON = try checkedProjection(definition, appendingTo: set, in: store)
            let sketches = widened.withUnsafeBufferPointer {
                Projector.projectRows($0, rows: input.rowCount, d: input.k, parameter: parameter, definition: definition)
            }
            let result = try sketches.withUnsafeBytes { bytes in
                try store.append(to: set, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: input.rowCount, k: k),
                                 annotations: RowAnnotations(ids: try ids.map(TextLines.read)),
                                 options: SketchSetOptions(attributes: ["projection": definitionJSON]),
                                 detail: "projected \((rows as NSString).lastPathComponent), k = \(k)")
            }
            if output.json { printJSON(Output(rows: result.rows, k: k, set: set, version: result.version, out: nil)); return }
            print("projected \(result.rows) rows of d = \(input.k) to k = \(k) into \(set): version \(result.version)")
        }
    }

    /// Per-example sketches of a linear layer's gradients from its activations and output
    /// gradients, through the Kronecker path: the gradient Bᵀ A is never formed.
    private func projectLayer(store: Store, activations: String, outputGradients: String, set: String) throws {
        let a = try NumpyFile(path: activations), b = try NumpyFile(path: outputGradients)
        func dims(_ file: NumpyFile, _ path: String) throws -> (examples: Int, tokens: Int, width: Int) {
            switch file.shape.count {
            case 2: return (file.shape[0], 1, file.shape[1])
            case 3: return (file.shape[0], file.shape[1], file.shape[2])
            default: throw StoreError(.invalidInput, "expected shape [N, T, n] or [N, n], found \(file.shape)", path: path)
            }
        }
        let (n, tokens, nIn) = try dims(a, activations), (nB, tokensB, nOut) = try dims(b, outputGradients)
        guard n == nB, tokens == tokensB else {
            throw StoreError(.invalidInput, "activations are [\(n), \(tokens), \(nIn)] but output gradients are [\(nB), \(tokensB), \(nOut)]: expected the same examples and tokens")
        }
        func floats(_ file: NumpyFile) throws -> [Float] {
            var values = [Float](repeating: 0, count: file.elementCount)
            _ = try values.withUnsafeMutableBytes { try ElementConversion.convert(file.data, from: file.elementType, to: .float32, into: $0) }
            return values
        }
        let x = try floats(a), g = try floats(b)
        let (kOut, kIn) = (min(side ?? 32, nOut), min(side ?? 32, nIn))
        let definition = ProjectionDefinition(seed: seed, kind: .rademacher, kDense: 0,
                                              layout: [.init(name: parameter, shape: [nOut, nIn], kronecker: (kOut, kIn))])
        let definitionJSON = try checkedProjection(definition, appendingTo: set, in: store)
        var sketches: [Float] = []
        sketches.reserveCapacity(n * kOut * kIn)
        for example in 0..<n {
            let sketch = x[(example * tokens * nIn)..<((example + 1) * tokens * nIn)].withUnsafeBufferPointer { input in
                g[(example * tokens * nOut)..<((example + 1) * tokens * nOut)].withUnsafeBufferPointer { gradients in
                    Projector.kronecker(activations: input, outputGradients: gradients, tokens: tokens, nIn: nIn, nOut: nOut,
                                        name: parameter, seed: seed, kIn: kIn, kOut: kOut)
                }
            }
            sketches += sketch
        }
        let result = try sketches.withUnsafeBytes { bytes in
            try store.append(to: set, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: kOut * kIn),
                             annotations: RowAnnotations(ids: try ids.map(TextLines.read)),
                             options: SketchSetOptions(attributes: ["projection": definitionJSON]),
                             detail: "Kronecker sketches of \(parameter), \(kOut)×\(kIn)")
        }
        if output.json { printJSON(Output(rows: n, k: kOut * kIn, set: set, version: result.version, out: nil)); return }
        print("projected \(n) examples of layer \(parameter) (\(nOut)×\(nIn), \(tokens) tokens) to \(kOut)×\(kIn) into \(set): version \(result.version)")
    }

    private func projectionErrors<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ProjectionError {
            throw StoreError(.invalidInput, error.description)
        }
    }
}

/// The definition as the JSON the set stores, after the store's rules (the same the commit
/// applies) refused a set that was made with a different projection, before any row is
/// projected.
func checkedProjection(_ definition: ProjectionDefinition, appendingTo set: String, in store: Store) throws -> JSONValue {
    let json = try JSONValue.parse(String(decoding: JSONEncoder().encode(definition), as: UTF8.self))
    try store.checkAppend(to: set, options: SketchSetOptions(attributes: ["projection": json]))
    return json
}
