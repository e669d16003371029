import ArgumentParser
import Foundation
import GradSketchInterchange
import GradSketchModels
import GradSketchProjection
import GradSketchStore

/// Shared options naming a Fashion-MNIST split.
struct DatasetOptions: ParsableArguments {
    @Option(help: "Fashion-MNIST split: train or test.") var split: String = "train"
    @Option(help: "Use only the first N examples of the split.") var limit: Int?
    @Option(help: "Directory with the IDX files (Debian's dataset-fashion-mnist).") var dataDirectory: String = FashionMNIST.defaultDirectory

    func validate() throws { try requireOption(limit, "--limit", in: 1...OptionLimit.count) }

    func load() throws -> (FashionMNIST, Int) {
        guard let split = FashionMNIST.Split(rawValue: split) else {
            throw ValidationError("--split must be train or test, found \(self.split)")
        }
        let data = try modelErrors { try FashionMNIST(split: split, directory: dataDirectory) }
        return (data, min(limit ?? data.count, data.count))
    }
}

func modelErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as DatasetError {
        throw StoreError(.invalidInput, error.message, path: error.path)
    } catch let error as ProjectionError {
        throw StoreError(.invalidInput, error.description)
    }
}

/// Stores `model`'s parameters (float32) as tensor set `name` and commits a new version.
func storeCheckpoint(_ model: MLP, as name: String, in store: Store, detail: String) throws -> Int {
    // Copies with their own lifetime, so the inputs' bytes stay valid until the commit.
    let copies = model.shapes.map { (name: $0.name, shape: $0.shape, values: model.parameters[$0.name]!) }
    func commit(_ index: Int, _ inputs: [TensorInput]) throws -> Int {
        guard index < copies.count else { return try store.putTensors(name, inputs, detail: detail) }
        return try copies[index].values.withUnsafeBytes { bytes in
            try commit(index + 1, inputs + [try TensorInput(name: copies[index].name, elementType: .float32, shape: copies[index].shape, bytes: bytes)])
        }
    }
    return try commit(0, [])
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train softmax regression or a one-hidden-layer MLP on Fashion-MNIST; store checkpoints as tensor sets.",
        discussion: "Checkpoints are named NAME-step<S> after every --checkpoint-every steps and at the end; the model's hidden width is recorded in the tensor set's name-independent shapes.")

    @OptionGroup var location: StoreArgument
    @OptionGroup var dataset: DatasetOptions
    @Option(help: "Hidden units (0 = softmax regression).") var hidden: Int = 128
    @Option(help: "sgd or adam.") var optimizer: String = "adam"
    @Option(help: "Learning rate.") var learningRate: Float = 1e-3
    @Option(help: "Minibatch size.") var batch: Int = 128
    @Option(help: "Passes over the data.") var epochs: Int = 1
    @Option(help: "Seed for the initial weights.") var seed: UInt64 = 0
    @Option(help: "Checkpoint name prefix.") var name: String = "mlp"
    @Option(help: "Store a checkpoint every N steps (0: only the first and last).") var checkpointEvery: Int = 0
    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        struct Checkpoint: Encodable { let name: String, step: Int, version: Int }
        let checkpoints: [Checkpoint], steps: Int, lastBatchLoss: Float, examples: Int, accuracy: Double
    }

    func validate() throws {
        try requireOption(hidden, "--hidden", in: 0...OptionLimit.perQuery)
        try requireOption(batch, "--batch", in: 1...OptionLimit.perQuery)
        try requireOption(epochs, "--epochs", in: 1...OptionLimit.perQuery)
        try requireOption(checkpointEvery, "--checkpoint-every", in: 0...Int.max)
        guard learningRate.isFinite, learningRate > 0 else { throw ValidationError("--learning-rate must be a finite number > 0, found \(learningRate)") }
    }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let (data, count) = try dataset.load()
            let choice: Optimizer
            switch optimizer {
            case "sgd": choice = .sgd(learningRate: learningRate)
            case "adam": choice = .adam(learningRate: learningRate)
            default: throw ValidationError("--optimizer must be sgd or adam, found \(optimizer)")
            }
            var trainer = Trainer(model: MLP(hidden: hidden, seed: seed), optimizer: choice)
            var step = 0
            var checkpoints: [Output.Checkpoint] = []
            func checkpoint() throws {
                let version = try storeCheckpoint(trainer.model, as: "\(name)-step\(step)", in: store,
                                                    detail: "Fashion-MNIST \(data.split.rawValue), \(optimizer), step \(step)")
                checkpoints.append(.init(name: "\(name)-step\(step)", step: step, version: version))
                if !output.json { print("checkpoint \(name)-step\(step): version \(version)") }
            }
            try checkpoint()
            let progress = ProgressLine(label: "train", unit: "steps", bytesPerUnit: nil)
            let stepsPerEpoch = (count + batch - 1) / batch
            var lastLoss: Float = 0
            for _ in 0..<epochs {
                for start in stride(from: 0, to: count, by: batch) {
                    let end = min(count, start + batch)
                    lastLoss = trainer.step(images: Array(data.images[(start * 784)..<(end * 784)]), labels: Array(data.labels[start..<end]))
                    step += 1
                    progress.update(step, stepsPerEpoch * epochs)
                    if checkpointEvery > 0 && step % checkpointEvery == 0 { try checkpoint() }
                }
            }
            progress.finish()
            if checkpointEvery == 0 || step % checkpointEvery != 0 { try checkpoint() }
            let evaluation = trainer.model.trace(images: Array(data.images[0..<(count * 784)]), labels: Array(data.labels[0..<count]))
            let accuracy = Double(zip(evaluation.predictions, data.labels).filter { $0 == $1 }.count) / Double(count)
            if output.json {
                printJSON(Output(checkpoints: checkpoints, steps: step, lastBatchLoss: lastLoss, examples: count, accuracy: accuracy))
                return
            }
            print(String(format: "trained %d steps: last batch loss %.4f, accuracy on the %d examples %.3f", step, lastLoss, count, accuracy))
        }
    }
}

struct Sketch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sketch per-example gradients of Fashion-MNIST at a stored checkpoint into a sketch set.",
        discussion: "Each weight goes through the Kronecker path (side × side entries), biases into a shared dense block; no per-example gradient is formed. Rows get ids fashion-mnist/<split>/<index>, class-name labels and a loss column; the set records the checkpoint, its content hash and the projection.")

    @OptionGroup var location: StoreArgument
    @OptionGroup var dataset: DatasetOptions
    @Option(help: "Checkpoint (tensor set) the gradients are taken at.") var checkpoint: String
    @Option(help: "Sketch set to append to.") var set: String
    @Option(help: "Projection seed.") var seed: UInt64 = 0
    @Option(help: "Kronecker side: each weight's sketch is side × side.") var side: Int = 32
    @Option(help: "Width of the shared block for biases.") var kDense: Int = 64
    @Option(help: "Examples per batch.") var batch: Int = 512
    @Option(help: "Stored dtype: float16 or float32.") var dtype: String = "float16"
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let set: String, checkpoint: String, examples: Int, k: Int, version: Int, seconds: Double }

    func validate() throws {
        try requireOption(side, "--side", in: 1...OptionLimit.side)
        try requireOption(kDense, "--k-dense", in: 1...OptionLimit.width)
        try requireOption(batch, "--batch", in: 1...OptionLimit.perQuery)
    }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let tensors = try store.tensorSet(checkpoint)
            var parameters: [String: [Float]] = [:]
            for entry in tensors.entry.tensors { parameters[entry.name] = try tensors.tensor(named: entry.name).floats() }
            let hidden = tensors.entry.tensors.first { $0.name == "fc1.weight" }?.shape[0] ?? 0
            let model = try modelErrors { try MLP(hidden: hidden, parameters: parameters) }
            let (data, count) = try dataset.load()
            let definition = GradientSketcher.definition(for: model, seed: seed, side: side, kDense: kDense)
            let definitionJSON = try JSONValue.parse(String(decoding: JSONEncoder().encode(definition), as: UTF8.self))
            let options = SketchSetOptions(dtype: try SketchDType(parsing: dtype), attributes: [
                "projection": definitionJSON, "tensor_set": .string(checkpoint), "tensor_set_hash": .string(tensors.contentHash),
                "gradient_kind": .string("per-example-loss-gradient"), "dataset": .string("fashion-mnist/\(data.split.rawValue)"),
            ])
            let progress = ProgressLine(label: "sketch \(set)", unit: "examples", bytesPerUnit: nil)
            let started = Date()
            // One segment per batch, one version for the whole job.
            let session = try store.beginAppend(to: set, options: options, inputType: .float32)
            for start in stride(from: 0, to: count, by: batch) {
                let end = min(count, start + batch)
                let trace = model.trace(images: Array(data.images[(start * 784)..<(end * 784)]), labels: Array(data.labels[start..<end]))
                let sketches = try modelErrors { try GradientSketcher.sketch(trace, model: model, definition: definition) }
                var annotations = RowAnnotations(ids: (start..<end).map(data.id), labels: (start..<end).map { FashionMNIST.classNames[data.labels[$0]] })
                annotations.columns["loss"] = trace.losses.map(Double.init)
                try sketches.withUnsafeBytes { bytes in
                    try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: end - start, k: definition.k), annotations: annotations)
                }
                progress.update(end, count)
            }
            let lastVersion = try session.commit(detail: "gradients at \(checkpoint), \(count) examples of fashion-mnist/\(data.split.rawValue)").version
            progress.finish()
            let seconds = Date().timeIntervalSince(started)
            if output.json {
                printJSON(Output(set: set, checkpoint: checkpoint, examples: count, k: definition.k, version: lastVersion, seconds: seconds))
                return
            }
            print(String(format: "sketched %d examples at %@ into %@ (k = %d): version %d, %.0f sketches/s", count, checkpoint, set, definition.k, lastVersion, Double(count) / seconds))
        }
    }
}
