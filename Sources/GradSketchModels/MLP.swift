import COpenBLAS
import Foundation

/// Softmax regression (`hidden == 0`) or a one-hidden-layer ReLU MLP on 784-pixel images
/// with 10 classes, with exact per-example gradients in closed form (no autodiff).
///
/// Parameters are named as a PyTorch `nn.Sequential` would export them (`fc1.weight`
/// [hidden, 784], `fc1.bias`, `fc2.weight` [10, hidden], `fc2.bias`; softmax regression has
/// `fc.weight` [10, 784] and `fc.bias`), row-major float32.
public struct MLP: Sendable {
    public static let inputs = 784, classes = 10
    public let hidden: Int
    public var parameters: [String: [Float]]

    /// One linear layer: its parameter names and sizes.
    public struct Layer: Sendable {
        public let weight: String, bias: String, inputs: Int, outputs: Int
    }

    public var layers: [Layer] {
        hidden == 0
            ? [Layer(weight: "fc.weight", bias: "fc.bias", inputs: Self.inputs, outputs: Self.classes)]
            : [Layer(weight: "fc1.weight", bias: "fc1.bias", inputs: Self.inputs, outputs: hidden),
               Layer(weight: "fc2.weight", bias: "fc2.bias", inputs: hidden, outputs: Self.classes)]
    }

    /// Parameter names and shapes in layout order.
    public var shapes: [(name: String, shape: [Int])] {
        layers.flatMap { [($0.weight, [$0.outputs, $0.inputs]), ($0.bias, [$0.outputs])] }
    }

    /// Weights uniform in ±1/√fan_in from a seeded SplitMix64 stream, biases zero.
    public init(hidden: Int, seed: UInt64) {
        self.hidden = hidden
        parameters = [:]
        var state = seed
        func next() -> Float {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 24) * 2 - 1
        }
        for layer in layers {
            let bound = 1 / Float(layer.inputs).squareRoot()
            parameters[layer.weight] = (0..<(layer.inputs * layer.outputs)).map { _ in next() * bound }
            parameters[layer.bias] = [Float](repeating: 0, count: layer.outputs)
        }
    }

    public init(hidden: Int, parameters: [String: [Float]]) throws {
        self.hidden = hidden
        self.parameters = parameters
        for (name, shape) in shapes {
            guard let values = parameters[name] else {
                throw DatasetError(path: name, message: "checkpoint has no tensor \(name) (expected \(shapes.map(\.name).joined(separator: ", ")))")
            }
            guard values.count == shape.reduce(1, *) else {
                throw DatasetError(path: name, message: "tensor \(name) has \(values.count) elements, expected shape \(shape)")
            }
        }
    }

    /// Everything per-example gradients are made of, for one batch: each layer's input
    /// activations A (n × in) and the loss gradient with respect to its outputs B (n × out).
    /// The per-example gradient of layer l is B_l[i] ⊗ A_l[i] for the weight and B_l[i] for
    /// the bias — a Kronecker product, which is why sketches never need it materialised.
    public struct Trace: Sendable {
        public let count: Int
        public let activations: [[Float]]
        public let outputGradients: [[Float]]
        /// Cross-entropy loss of each example.
        public let losses: [Float]
        /// The softmax output distribution of each example (n × 10).
        public let probabilities: [Float]
        public let predictions: [Int]
    }

    static func linear(_ x: [Float], rows n: Int, weight: [Float], bias: [Float], inputs: Int, outputs: Int) -> [Float] {
        var z = [Float](repeating: 0, count: n * outputs)
        for row in 0..<n { for o in 0..<outputs { z[row * outputs + o] = bias[o] } }
        // Z (n × out) += X (n × in) · Wᵀ (in × out)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outputs), Int32(inputs),
                    1, x, Int32(inputs), weight, Int32(inputs), 1, &z, Int32(outputs))
        return z
    }

    /// Forward and backward pass of a batch (images n × 784, labels 0–9).
    public func trace(images: [Float], labels: [Int]) -> Trace {
        let n = labels.count
        precondition(images.count == n * Self.inputs, "images must be n × 784")
        var activations: [[Float]] = [images]
        var preactivations: [[Float]] = []
        var x = images
        for (index, layer) in layers.enumerated() {
            var z = Self.linear(x, rows: n, weight: parameters[layer.weight]!, bias: parameters[layer.bias]!, inputs: layer.inputs, outputs: layer.outputs)
            preactivations.append(z)
            if index < layers.count - 1 {
                for i in z.indices where z[i] < 0 { z[i] = 0 }
                activations.append(z)
            }
            x = z
        }
        // Softmax cross-entropy: dLoss/dlogits = softmax − onehot, computed stably.
        let logits = x
        var delta = [Float](repeating: 0, count: n * Self.classes)
        var losses = [Float](repeating: 0, count: n)
        var probabilities = [Float](repeating: 0, count: n * Self.classes)
        var predictions = [Int](repeating: 0, count: n)
        for row in 0..<n {
            let slice = logits[(row * Self.classes)..<((row + 1) * Self.classes)]
            let top = slice.max()!
            let exps = slice.map { Foundation.exp(Double($0 - top)) }
            let total = exps.reduce(0, +)
            for c in 0..<Self.classes {
                probabilities[row * Self.classes + c] = Float(exps[c] / total)
                delta[row * Self.classes + c] = Float(exps[c] / total) - (c == labels[row] ? 1 : 0)
            }
            losses[row] = Float(Foundation.log(total) - Double(slice[slice.startIndex + labels[row]] - top))
            predictions[row] = slice.firstIndex(of: top)! - slice.startIndex
        }
        var outputGradients = [delta]
        // Back through the hidden layers: B_{l-1} = (B_l · W_l) ⊙ relu'(z_{l-1}).
        for index in stride(from: layers.count - 1, to: 0, by: -1) {
            let layer = layers[index]
            var previous = [Float](repeating: 0, count: n * layer.inputs)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(layer.inputs), Int32(layer.outputs),
                        1, outputGradients[0], Int32(layer.outputs), parameters[layer.weight]!, Int32(layer.inputs),
                        0, &previous, Int32(layer.inputs))
            let z = preactivations[index - 1]
            for i in previous.indices where z[i] <= 0 { previous[i] = 0 }
            outputGradients.insert(previous, at: 0)
        }
        return Trace(count: n, activations: activations, outputGradients: outputGradients, losses: losses, probabilities: probabilities,
                     predictions: predictions)
    }

    /// The per-example gradient of example `i`, materialised (tests and small models only).
    public func gradient(of trace: Trace, example i: Int) -> [String: [Float]] {
        var result: [String: [Float]] = [:]
        for (l, layer) in layers.enumerated() {
            let a = trace.activations[l][(i * layer.inputs)..<((i + 1) * layer.inputs)]
            let b = Array(trace.outputGradients[l][(i * layer.outputs)..<((i + 1) * layer.outputs)])
            result[layer.weight] = b.flatMap { bo in a.map { bo * $0 } }
            result[layer.bias] = b
        }
        return result
    }

    /// The mean gradient over the batch (for training): Bᵀ A / n and the mean of B.
    public func meanGradient(of trace: Trace) -> [String: [Float]] {
        var result: [String: [Float]] = [:]
        let n = trace.count
        for (l, layer) in layers.enumerated() {
            var weight = [Float](repeating: 0, count: layer.outputs * layer.inputs)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(layer.outputs), Int32(layer.inputs), Int32(n),
                        1 / Float(n), trace.outputGradients[l], Int32(layer.outputs), trace.activations[l], Int32(layer.inputs),
                        0, &weight, Int32(layer.inputs))
            var bias = [Float](repeating: 0, count: layer.outputs)
            for row in 0..<n { for o in 0..<layer.outputs { bias[o] += trace.outputGradients[l][row * layer.outputs + o] / Float(n) } }
            result[layer.weight] = weight
            result[layer.bias] = bias
        }
        return result
    }
}

/// First-order optimisers over named parameters.
public enum Optimizer: Sendable {
    case sgd(learningRate: Float)
    case adam(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8)
}

/// Trains a model with minibatches in a fixed, seeded order.
public struct Trainer {
    public var model: MLP
    public let optimizer: Optimizer
    private var moments: [String: ([Float], [Float])] = [:]
    private var step = 0

    public init(model: MLP, optimizer: Optimizer) {
        self.model = model
        self.optimizer = optimizer
    }

    /// One optimiser step on a batch; returns the batch's mean loss.
    public mutating func step(images: [Float], labels: [Int]) -> Float {
        let trace = model.trace(images: images, labels: labels)
        let gradient = model.meanGradient(of: trace)
        step += 1
        for (name, g) in gradient {
            var values = model.parameters[name]!
            switch optimizer {
            case .sgd(let rate):
                for i in values.indices { values[i] -= rate * g[i] }
            case .adam(let rate, let beta1, let beta2, let epsilon):
                var (m, v) = moments[name] ?? ([Float](repeating: 0, count: g.count), [Float](repeating: 0, count: g.count))
                let correction1 = 1 - Foundation.pow(beta1, Float(step)), correction2 = 1 - Foundation.pow(beta2, Float(step))
                for i in values.indices {
                    m[i] = beta1 * m[i] + (1 - beta1) * g[i]
                    v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
                    values[i] -= rate * (m[i] / correction1) / ((v[i] / correction2).squareRoot() + epsilon)
                }
                moments[name] = (m, v)
            }
            model.parameters[name] = values
        }
        return trace.losses.reduce(0, +) / Float(trace.count)
    }
}
