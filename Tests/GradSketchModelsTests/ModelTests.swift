import Foundation
import GradSketchInterchange
import GradSketchModels
import GradSketchProjection
import GradSketchTestSupport
import Testing

/// Per-example gradients against a naive Double implementation and finite differences, and
/// gradient sketches against the dense projection of the materialised gradient.
@Suite struct ModelTests {
    /// A small batch of random "images" and labels.
    static func batch(_ n: Int, seed: UInt64) -> ([Float], [Int]) {
        var generator = SplitMix64(seed: seed)
        return ((0..<(n * MLP.inputs)).map { _ in Float.random(in: 0...1, using: &generator) },
                (0..<n).map { _ in Int.random(in: 0..<10, using: &generator) })
    }

    /// Loss of one example, in Double, written out plainly (the oracle).
    static func naiveLoss(_ model: MLP, _ parameters: [String: [Double]], image: ArraySlice<Float>, label: Int) -> Double {
        var x = image.map(Double.init)
        for (index, layer) in model.layers.enumerated() {
            let w = parameters[layer.weight]!, b = parameters[layer.bias]!
            var z = [Double](repeating: 0, count: layer.outputs)
            for o in 0..<layer.outputs {
                var sum = b[o]
                for i in 0..<layer.inputs { sum += w[o * layer.inputs + i] * x[i] }
                z[o] = sum
            }
            x = index < model.layers.count - 1 ? z.map { max(0, $0) } : z
        }
        let top = x.max()!
        return log(x.map { exp($0 - top) }.reduce(0, +)) - (x[label] - top)
    }

    @Test(arguments: [0, 12])
    func perExampleGradientsMatchFiniteDifferences(hidden: Int) {
        var model = MLP(hidden: hidden, seed: 3)
        // Non-zero biases so every term of the gradient is exercised.
        for layer in model.layers { model.parameters[layer.bias] = model.parameters[layer.bias]!.indices.map { Float($0 % 3) * 0.1 - 0.1 } }
        let (images, labels) = Self.batch(4, seed: 9)
        let trace = model.trace(images: images, labels: labels)
        let parameters = model.parameters.mapValues { $0.map(Double.init) }
        var generator = SplitMix64(seed: 1)
        for example in 0..<4 {
            let image = images[(example * MLP.inputs)..<((example + 1) * MLP.inputs)]
            let loss = Self.naiveLoss(model, parameters, image: image, label: labels[example])
            #expect(abs(Double(trace.losses[example]) - loss) < 1e-4 * max(1, loss))
            let gradient = model.gradient(of: trace, example: example)
            // Central differences in Double on 12 random coordinates of every tensor.
            for (name, values) in parameters {
                for _ in 0..<12 {
                    let index = Int.random(in: 0..<values.count, using: &generator)
                    let h = 1e-5
                    var plus = parameters, minus = parameters
                    plus[name]![index] += h
                    minus[name]![index] -= h
                    let numeric = (Self.naiveLoss(model, plus, image: image, label: labels[example])
                                 - Self.naiveLoss(model, minus, image: image, label: labels[example])) / (2 * h)
                    let analytic = Double(gradient[name]![index])
                    #expect(abs(analytic - numeric) < 1e-4 + 1e-3 * abs(numeric), "\(name)[\(index)]: \(analytic) vs \(numeric)")
                }
            }
        }
        // The batch mean used for training is the mean of the per-example gradients.
        let mean = model.meanGradient(of: trace)
        for (name, values) in mean {
            let expected = (0..<4).map { model.gradient(of: trace, example: $0)[name]! }
            for index in stride(from: 0, to: values.count, by: 97) {
                let average = expected.reduce(0.0) { $0 + Double($1[index]) } / 4
                #expect(abs(Double(values[index]) - average) < 1e-5)
            }
        }
    }

    /// The Kronecker sketch of each example equals (P_out ⊗ P_in) · vec(G) for its
    /// materialised gradient G, and the bias block equals Σ_bias P_bias · g_bias, in Double.
    @Test func sketchesEqualDenseProjectionOfMaterialisedGradients() throws {
        let model = MLP(hidden: 12, seed: 5)
        let (images, labels) = Self.batch(3, seed: 2)
        let trace = model.trace(images: images, labels: labels)
        let definition = GradientSketcher.definition(for: model, seed: 77, side: 4, kDense: 16)
        #expect(definition.k == 4 * 4 + 4 * 4 + 16)
        let sketches = try GradientSketcher.sketch(trace, model: model, definition: definition)
        for example in 0..<3 {
            let gradient = model.gradient(of: trace, example: example)
            var expected: [Double] = []
            var dense = [Double](repeating: 0, count: 16)
            for parameter in definition.layout {
                let g = gradient[parameter.name]!.map(Double.init)
                if let kOut = parameter.kOut, let kIn = parameter.kIn {
                    let (nOut, nIn) = (parameter.shape[0], parameter.shape[1])
                    let pOut = DenseRademacher.matrix(ProjectionStream(seed: 77, name: parameter.name + "/out"), k: kOut, d: nOut)
                    let pIn = DenseRademacher.matrix(ProjectionStream(seed: 77, name: parameter.name + "/in"), k: kIn, d: nIn)
                    for ro in 0..<kOut {
                        for ri in 0..<kIn {
                            var sum = 0.0
                            for o in 0..<nOut {
                                for i in 0..<nIn { sum += Double(pOut[ro * nOut + o]) * Double(pIn[ri * nIn + i]) * g[o * nIn + i] }
                            }
                            expected.append(sum)
                        }
                    }
                } else {
                    let p = DenseRademacher.matrix(ProjectionStream(seed: 77, name: parameter.name), k: 16, d: g.count)
                    for r in 0..<16 { dense[r] += (0..<g.count).reduce(0.0) { $0 + Double(p[r * g.count + $1]) * g[$1] } }
                }
            }
            expected += dense
            let row = sketches[(example * definition.k)..<((example + 1) * definition.k)]
            let worst = zip(row, expected).map { abs(Double($0) - $1) / max(1e-3, abs($1)) }.max()!
            #expect(worst < 1e-3, "example \(example): worst relative error \(worst)")
        }
    }

    @Test func fashionMNISTLoadsAndMalformedFilesAreRefused() throws {
        let test = try FashionMNIST(split: .test)
        #expect(test.count == 10_000)
        #expect(test.images.count == 10_000 * 784)
        // Class counts are 1000 each in the test split (Xiao et al. 2017).
        #expect((0..<10).allSatisfy { c in test.labels.filter { $0 == c }.count == 1000 })
        #expect(test.images.allSatisfy { $0 >= 0 && $0 <= 1 })
        #expect(test.id(42) == "fashion-mnist/test/00042")

        let scratch = try TemporaryDirectory()
        let script = """
        import gzip, shutil, sys
        out = sys.argv[1]
        data = gzip.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").read()
        raw = open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", "rb").read()
        open(f"{out}/t10k-labels-idx1-ubyte.gz", "wb").write(raw[: len(raw) // 2])          # truncated gzip
        gzip.open(f"{out}/t10k-images-idx3-ubyte.gz", "wb").write(b"\\x00\\x00\\x08\\x01" + data[4:])  # wrong magic
        """
        try #require(try ChildProcess.python(script, [scratch.path]).status == 0)
        let error = #expect(throws: DatasetError.self) { _ = try FashionMNIST(split: .test, directory: scratch.path) }
        #expect(error?.message.contains("expected IDX magic 0x00000803") == true, "\(String(describing: error))")
        try FileManager.default.copyItem(atPath: "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                                         toPath: scratch.path + "/images.gz")
        try FileManager.default.removeItem(atPath: scratch.path + "/t10k-images-idx3-ubyte.gz")
        try FileManager.default.moveItem(atPath: scratch.path + "/images.gz", toPath: scratch.path + "/t10k-images-idx3-ubyte.gz")
        let truncated = #expect(throws: DatasetError.self) { _ = try FashionMNIST(split: .test, directory: scratch.path) }
        #expect(truncated?.path.hasSuffix("labels-idx1-ubyte.gz") == true, "\(String(describing: truncated))")
    }

    @Test func trainingReducesTheLoss() throws {
        let data = try FashionMNIST(split: .test)
        var trainer = Trainer(model: MLP(hidden: 32, seed: 1), optimizer: .adam(learningRate: 3e-3))
        let n = 2000
        let images = Array(data.images[0..<(n * 784)]), labels = Array(data.labels[0..<n])
        let before = trainer.model.trace(images: images, labels: labels).losses.reduce(0, +) / Float(n)
        for epoch in 0..<3 {
            for start in stride(from: 0, to: n, by: 100) {
                _ = trainer.step(images: Array(images[(start * 784)..<((start + 100) * 784)]), labels: Array(labels[start..<(start + 100)]))
            }
            _ = epoch
        }
        let after = trainer.model.trace(images: images, labels: labels)
        let loss = after.losses.reduce(0, +) / Float(n)
        let accuracy = Float(zip(after.predictions, labels).filter { $0 == $1 }.count) / Float(n)
        #expect(loss < before * 0.5, "loss \(before) → \(loss)")
        #expect(accuracy > 0.7, "accuracy \(accuracy)")
    }

    /// Ghost dot products of one linear layer against gradients materialised in Double, on
    /// both routes: T = 1 and T = 2 take the ghost path (2T² ≤ in·out = 20), T = 4 materialises.
    @Test(arguments: [1, 2, 4])
    func ghostLayerDotProductsEqualMaterialisedGradients(tokens: Int) {
        let inputs = 4, outputs = 5, n = 3, m = 2
        var generator = SplitMix64(seed: UInt64(tokens))
        func values(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -1...1, using: &generator) } }
        let a = values(n * tokens * inputs), b = values(n * tokens * outputs)
        let otherA = values(m * tokens * inputs), otherB = values(m * tokens * outputs)
        func gradient(_ a: [Float], _ b: [Float], _ i: Int) -> [Double] {  // Σ_t b_t ⊗ a_t, then the bias Σ_t b_t
            var g = [Double](repeating: 0, count: outputs * inputs + outputs)
            for t in 0..<tokens {
                let row = i * tokens + t
                for o in 0..<outputs {
                    for c in 0..<inputs { g[o * inputs + c] += Double(b[row * outputs + o]) * Double(a[row * inputs + c]) }
                    g[outputs * inputs + o] += Double(b[row * outputs + o])
                }
            }
            return g
        }
        let ghost = GhostDotProduct.linearLayer(activations: a, outputGradients: b, count: n, otherActivations: otherA,
                                                otherOutputGradients: otherB, otherCount: m, tokens: tokens, inputs: inputs, outputs: outputs, bias: true)
        #expect(GhostDotProduct.usesGhostPath(tokens: tokens, inputs: inputs, outputs: outputs) == (tokens < 4))
        let weight = values(outputs * inputs), bias = values(outputs)
        let contracted = GhostDotProduct.contract(activations: a, outputGradients: b, count: n, tokens: tokens, inputs: inputs, outputs: outputs,
                                                  weight: weight, bias: bias)
        for i in 0..<n {
            let g = gradient(a, b, i)
            for j in 0..<m {
                let expected = zip(g, gradient(otherA, otherB, j)).reduce(0.0) { $0 + $1.0 * $1.1 }
                #expect(abs(ghost[i * m + j] - expected) < 1e-5 * max(1, abs(expected)), "pair \(i),\(j): \(ghost[i * m + j]) vs \(expected)")
            }
            let expected = zip(g, (weight + bias).map(Double.init)).reduce(0.0) { $0 + $1.0 * $1.1 }
            #expect(abs(contracted[i] - expected) < 1e-5 * max(1, abs(expected)))
        }
    }

    /// Whole-model ghost dot products equal the dot products of materialised per-example gradients.
    @Test func modelGhostDotProductsEqualMaterialisedGradients() {
        let model = MLP(hidden: 12, seed: 4)
        let (images, labels) = Self.batch(3, seed: 5), (otherImages, otherLabels) = Self.batch(4, seed: 6)
        let trace = model.trace(images: images, labels: labels), other = model.trace(images: otherImages, labels: otherLabels)
        let ghost = model.ghostDotProducts(trace, other)
        let direction = model.meanGradient(of: other)
        let contracted = model.ghostDotProducts(trace, with: direction)
        func dot(_ x: [String: [Float]], _ y: [String: [Float]]) -> Double {
            x.reduce(0.0) { sum, entry in sum + zip(entry.value, y[entry.key]!).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }
        }
        for i in 0..<3 {
            let g = model.gradient(of: trace, example: i)
            for j in 0..<4 {
                let expected = dot(g, model.gradient(of: other, example: j))
                #expect(abs(ghost[i * 4 + j] - expected) < 1e-4 * max(1, abs(expected)), "pair \(i),\(j)")
            }
            let expected = dot(g, direction)
            #expect(abs(contracted[i] - expected) < 1e-4 * max(1, abs(expected)))
        }
    }

    /// uᵀ H v from the R-operator against a four-point second difference of the naive Double
    /// mean loss, (L(+u+v) − L(+u−v) − L(−u+v) + L(−u−v)) / 4ε², for random u and v.
    @Test(arguments: [0, 12])
    func exactHessianVectorProductsMatchSecondDifferences(hidden: Int) {
        var model = MLP(hidden: hidden, seed: 8)
        for layer in model.layers { model.parameters[layer.bias] = model.parameters[layer.bias]!.indices.map { Float($0 % 3) * 0.1 - 0.1 } }
        let (images, labels) = Self.batch(4, seed: 3)
        var generator = SplitMix64(seed: 21)
        func direction() -> [String: [Float]] { model.parameters.mapValues { $0.map { _ in Float.random(in: -1...1, using: &generator) } } }
        let parameters = model.parameters.mapValues { $0.map(Double.init) }
        func meanLoss(_ shift: [String: [Double]]) -> Double {
            let moved = parameters.merging(shift) { zip($0, $1).map { $0 + $1 } }
            return (0..<4).reduce(0.0) { $0 + Self.naiveLoss(model, moved, image: images[($1 * MLP.inputs)..<(($1 + 1) * MLP.inputs)], label: labels[$1]) } / 4
        }
        for _ in 0..<3 {
            let u = direction(), v = direction()
            let hv = model.hessianVectorProduct(of: model.trace(images: images, labels: labels), direction: v)
            let analytic = u.reduce(0.0) { sum, entry in sum + zip(entry.value, hv[entry.key]!).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }
            let epsilon = 1e-5  // small enough that no ReLU changes sign, large enough for Double rounding (≈ 1e-5 absolute)
            func shift(_ su: Double, _ sv: Double) -> [String: [Double]] {
                var moved: [String: [Double]] = [:]
                for (name, values) in u {
                    let other = v[name]!
                    moved[name] = values.indices.map { su * epsilon * Double(values[$0]) + sv * epsilon * Double(other[$0]) }
                }
                return moved
            }
            let corners: Double = meanLoss(shift(1, 1)) - meanLoss(shift(1, -1)) - meanLoss(shift(-1, 1)) + meanLoss(shift(-1, -1))
            let numeric = corners / (4 * epsilon * epsilon)
            #expect(abs(analytic - numeric) < 1e-3 * max(1, abs(numeric)), "uᵀHv \(analytic) vs second difference \(numeric)")
        }
    }
}
