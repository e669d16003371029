import Foundation
import GradSketchInterchange
public import GradSketchModels
import GradSketchProjection
import GradSketchSelect
public import GradSketchStore

/// PASER on Fashion-MNIST: an MLP is magnitude-pruned, every pool row's capability degradation
/// (the pruned model's loss minus the original's) is stored as a column beside the row's
/// gradient sketch at the pruned model, and the pruned model is recovered (its zeroed weights
/// kept at zero) on PASER-selected data against random data and against the top degradation
/// rows, at several budgets.
public struct PASERExperiment: ReportedExperiment {
    public static var defaultConfiguration: Configuration { Configuration() }

    public struct Configuration: Sendable {
        public var hidden = 128
        public var pool = 10_000
        public var pruneFraction = 0.9
        public var budgets = [0.05, 0.1, 0.2]
        public var recoverySteps = 150
        public var batch = 64
        public var side = 16
        /// The paper's default cluster count, and a finer one for comparison.
        public var clusters = 10
        public var finerClusters = 40
        public var seed: UInt64 = 17
        public init() {}
    }

    public struct Row: Sendable, Codable {
        public let method: String
        public let budget: Double
        public let accuracy: Double
        /// Selected rows of each true class (Fashion-MNIST order).
        public let classCounts: [Int]
    }

    public struct Outcome: Sendable, Codable {
        public let originalAccuracy: Double
        public let prunedAccuracy: Double
        public let rows: [Row]
    }

    public static func run(store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                           log: (String) -> Void) throws -> Outcome {
        var random = SeededRandom(seed: c.seed)
        var order = Array(0..<train.count)
        random.shuffle(&order)
        let original = Experiments.train(MLP(hidden: c.hidden, seed: c.seed), on: ImageSubset(train, Array(order.prefix(20_000))),
                                         optimizer: .adam(learningRate: 1e-3), steps: 900, batch: c.batch, seed: c.seed &+ 1)
        // Magnitude pruning of every weight matrix (biases kept).
        var mask: [String: [Bool]] = [:]
        var pruned = original
        for layer in original.layers {
            let weights = original.parameters[layer.weight]!
            let threshold = weights.map(abs).sorted()[Int(Double(weights.count) * c.pruneFraction)]
            mask[layer.weight] = weights.map { abs($0) >= threshold }
            pruned.parameters[layer.weight] = zip(weights, mask[layer.weight]!).map { $1 ? $0 : 0 }
        }
        let testSet = ImageSubset(test, Array(0..<test.count))
        let originalAccuracy = Experiments.accuracy(original, on: testSet), prunedAccuracy = Experiments.accuracy(pruned, on: testSet)
        log(String(format: "paser: original %.3f, %.0f%%-pruned %.3f test accuracy", originalAccuracy, 100 * c.pruneFraction, prunedAccuracy))

        // Pool rows: sketches at the pruned model, degradation = loss increase from pruning.
        let pool = ImageSubset(train, Array(order.dropFirst(20_000).prefix(c.pool)))
        let prunedTrace = pruned.trace(images: pool.images, labels: pool.labels)
        let originalTrace = original.trace(images: pool.images, labels: pool.labels)
        // Capability degradation as in PASER: the Jensen–Shannon divergence between the original
        // and the pruned model's output distributions (the loss increase is kept as a second column).
        let classes = MLP.classes
        let degradation = (0..<pool.count).map { row in
            PASER.jensenShannon(originalTrace.probabilities[(row * classes)..<((row + 1) * classes)].map(Double.init),
                                prunedTrace.probabilities[(row * classes)..<((row + 1) * classes)].map(Double.init))
        }
        let lossIncrease = zip(prunedTrace.losses, originalTrace.losses).map { Double($0 - $1) }
        let definition = GradientSketcher.definition(for: pruned, seed: c.seed, side: c.side, kDense: 64)
        let sketches = try GradientSketcher.sketch(prunedTrace, model: pruned, definition: definition)
        let definitionJSON = try JSONValue.parse(String(decoding: JSONEncoder().encode(definition), as: UTF8.self))
        _ = try sketches.withUnsafeBytes { bytes in
            try store.append(to: "paser-pool", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: pool.count, k: definition.k),
                             annotations: RowAnnotations(ids: (0..<pool.count).map { "paser/\($0)" }, labels: pool.labels.map { FashionMNIST.classNames[$0] },
                                                         columns: ["degradation": degradation, "loss_increase": lossIncrease]),
                             options: SketchSetOptions(dtype: .float16, attributes: ["projection": definitionJSON,
                                                                                   "gradient_kind": .string("per-example-loss-gradient")]))
        }
        let set = try store.sketchSet("paser-pool")

        func recover(_ positions: [Int]) -> Double {
            var trainer = Trainer(model: pruned, optimizer: .adam(learningRate: 1e-3))
            var sampler = SeededRandom(seed: c.seed &+ 5)
            let data = pool.picking(positions)
            for _ in 0..<c.recoverySteps {
                var images: [Float] = [], labels: [Int] = []
                for _ in 0..<min(c.batch, data.count) {
                    let index = sampler.next(below: data.count)
                    images += data.images[(index * 784)..<((index + 1) * 784)]
                    labels.append(data.labels[index])
                }
                _ = trainer.step(images: images, labels: labels)
                for (name, keep) in mask { trainer.model.parameters[name] = zip(trainer.model.parameters[name]!, keep).map { $1 ? $0 : 0 } }
            }
            return Experiments.accuracy(trainer.model, on: testSet)
        }

        var rows: [Row] = []
        var options = PASER.Options()
        options.clusters = c.clusters
        options.seed = c.seed
        var finer = options
        finer.clusters = c.finerClusters
        for fraction in c.budgets {
            let budget = Int(Double(c.pool) * fraction)
            let paser = try PASER.select(set, budget: budget, degradationColumn: "degradation", options: options)
            let paserFiner = try PASER.select(set, budget: budget, degradationColumn: "degradation", options: finer)
            try store.saveResult("paser-\(Int(fraction * 100))", method: paser.method, set: paser.set, setVersion: paser.setVersion,
                                 parameters: paser.parameters, positions: paser.positions, ids: paser.ids, scores: paser.scores)
            var all = Array(0..<c.pool)
            random.shuffle(&all)
            let top = (0..<c.pool).sorted { degradation[$0] > degradation[$1] }
            for (method, positions) in [("PASER", paser.positions), ("PASER, \(c.finerClusters) clusters", paserFiner.positions), ("random", Array(all.prefix(budget))), ("top degradation", Array(top.prefix(budget)))] {
                let accuracy = recover(positions)
                var classCounts = [Int](repeating: 0, count: MLP.classes)
                for position in positions { classCounts[pool.labels[position]] += 1 }
                rows.append(Row(method: method, budget: fraction, accuracy: accuracy, classCounts: classCounts))
                log(String(format: "paser: budget %.0f%% %-20@ recovered accuracy %.3f; rows per class %@", 100 * fraction, method as NSString, accuracy,
                           classCounts.map(String.init).joined(separator: " ") as NSString))
            }
        }
        return Outcome(originalAccuracy: originalAccuracy, prunedAccuracy: prunedAccuracy, rows: rows)
    }

    public static func report(_ o: Outcome, configuration c: Configuration, into report: inout HTMLReport) {
        report.heading("PASER: recovering a pruned model")
        report.paragraph("""
        MLP (\(c.hidden) hidden) trained on 20 000 images (test accuracy \(String(format: "%.3f", o.originalAccuracy))), then \
        \(Int(c.pruneFraction * 100)) % of each weight matrix zeroed by magnitude (\(String(format: "%.3f", o.prunedAccuracy))). \
        Pool: \(c.pool) other images with gradient sketches at the pruned model and a degradation column: the \
        Jensen–Shannon divergence between the original and the pruned model's outputs, as in PASER (the loss increase is \
        stored too, as loss_increase). PASER: spectral clustering (\(c.clusters) clusters, 10-NN graph) of the sketches, budgets ∝ mean \
        cluster degradation, rows by degradation within a cluster (images have equal cost; no concept sets here). Recovery: \
        \(c.recoverySteps) Adam steps on the selection with the pruned weights held at zero. The last column counts the \
        selected rows of each class: budgets proportional to degradation leave classes the pruned model still gets right \
        with few or no rows, and recovery on the rest makes the model forget them. With \(c.finerClusters) clusters every \
        class gets rows and PASER comes close to random data; random data, which covers every class evenly, still recovers \
        the most here. (Also measured: 50 % and 70 % magnitude pruning and structured pruning of 75 % or 90 % of the hidden units give the same order; 200 clusters match random.)
        """)
        report.table(["budget", "method", "recovered test accuracy", "rows per class (0–9)"],
                     o.rows.map { [String(format: "%.0f%%", 100 * $0.budget), $0.method, String(format: "%.3f", $0.accuracy),
                                   $0.classCounts.map(String.init).joined(separator: " ")] })
        for budget in c.budgets {
            report.bars(String(format: "recovered accuracy at a %.0f%% budget (original %.3f, pruned %.3f)", 100 * budget, o.originalAccuracy, o.prunedAccuracy),
                        o.rows.filter { $0.budget == budget }.map { ($0.method, $0.accuracy) }, maximum: 1)
        }
    }
}
