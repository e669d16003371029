import Foundation
import GradSketchInterchange
public import GradSketchModels
import GradSketchProjection
import GradSketchSelect
public import GradSketchStore

/// PASER on Fashion-MNIST: an MLP is magnitude-pruned, every pool row's capability degradation
/// (the Jensen–Shannon divergence of the two models' outputs) is stored as a column beside the
/// row's gradient sketch at the pruned model, and the pruned model is recovered (its zeroed
/// weights kept at zero) on PASER-selected data against random data, equal cluster shares and
/// the top degradation rows, at several budgets, from an i.i.d. and a long-tailed pool.
public struct PASERExperiment: ReportedExperiment {
    public static var defaultConfiguration: Configuration { Configuration() }

    public struct Configuration: Sendable {
        public var hidden = 128
        public var pool = 10_000
        public var pruneFraction = 0.9
        public var budgets = [0.05, 0.1, 0.2]
        public var recoverySteps = 150
        /// Recovery runs per selection (batch order, and the random baseline's rows, change with the trial).
        public var trials = 5
        public var batch = 64
        public var side = 16
        /// The paper's default cluster count, and a finer one for comparison.
        public var clusters = 10
        public var finerClusters = 40
        /// The long-tailed pool: class sizes fall geometrically from `headClassRows` to
        /// `headClassRows / imbalance`, the classes ranked in an order drawn from the seed.
        public var headClassRows = 2_000
        public var imbalance = 50.0
        /// One whole experiment per seed: original model, pruning, pools and class ranking change.
        public var seeds: [UInt64] = [17, 18, 19]
        public init() {}
    }

    public struct Row: Sendable, Codable {
        public let pool: String
        public let method: String
        public let budget: Double
        /// Mean over the trials, and each trial's.
        public let accuracy: Double
        public let trialAccuracies: [Double]
        /// Selected rows (of the first trial, for random) of each true class (Fashion-MNIST order).
        public let classCounts: [Int]
    }

    public struct SeedOutcome: Sendable, Codable {
        public let seed: UInt64
        public let originalAccuracy: Double
        public let prunedAccuracy: Double
        public let rows: [Row]
    }

    public struct Outcome: Sendable, Codable {
        public let seeds: [SeedOutcome]
    }

    public static func run(store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                           log: (String) -> Void) throws -> Outcome {
        Outcome(seeds: try c.seeds.map { try run(seed: $0, store: store, train: train, test: test, configuration: c, log: log) })
    }

    static func run(seed: UInt64, store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                    log: (String) -> Void) throws -> SeedOutcome {
        var random = SeededRandom(seed: seed)
        var order = Array(0..<train.count)
        random.shuffle(&order)
        let original = Experiments.train(MLP(hidden: c.hidden, seed: seed), on: ImageSubset(train, Array(order.prefix(20_000))),
                                         optimizer: .adam(learningRate: 1e-3), steps: 900, batch: c.batch, seed: seed &+ 1)
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
        log(String(format: "paser: seed %llu: original %.3f, %.0f%%-pruned %.3f test accuracy", seed, originalAccuracy, 100 * c.pruneFraction, prunedAccuracy))

        // Two recovery pools from the images not used for training: an i.i.d. one, and a
        // long-tailed one, as recovery corpora are, with the test set still balanced.
        let unused = Array(order.dropFirst(20_000))
        var classOrder = Array(0..<MLP.classes)
        random.shuffle(&classOrder)
        var longTailed: [Int] = []
        for (rank, label) in classOrder.enumerated() {
            let rows = Int((Double(c.headClassRows) * pow(c.imbalance, -Double(rank) / Double(MLP.classes - 1))).rounded())
            longTailed += unused.filter { train.labels[$0] == label }.prefix(rows)
        }
        random.shuffle(&longTailed)
        func recoverPool(_ poolName: String, setName: String, pool: ImageSubset) throws -> [Row] {
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
            let definition = GradientSketcher.definition(for: pruned, seed: seed, side: c.side, kDense: 64)
            let sketches = try GradientSketcher.sketch(prunedTrace, model: pruned, definition: definition)
            let definitionJSON = try JSONValue.parse(String(decoding: JSONEncoder().encode(definition), as: UTF8.self))
            _ = try sketches.withUnsafeBytes { bytes in
                try store.append(to: setName, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: pool.count, k: definition.k),
                                 annotations: RowAnnotations(ids: (0..<pool.count).map { "paser/\($0)" }, labels: pool.labels.map { FashionMNIST.classNames[$0] },
                                                             columns: ["degradation": degradation, "loss_increase": lossIncrease]),
                                 options: SketchSetOptions(dtype: .float16, attributes: ["projection": definitionJSON,
                                                                                       "gradient_kind": .string("per-example-loss-gradient")]))
            }
            let set = try store.sketchSet(setName)

            func recover(_ positions: [Int], trial: Int) -> Double {
                var trainer = Trainer(model: pruned, optimizer: .adam(learningRate: 1e-3))
                var sampler = SeededRandom(seed: seed &+ 5 &+ UInt64(trial))
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
            options.seed = seed
            var finer = options
            finer.clusters = c.finerClusters
            var uniform = options
            uniform.allocation = .uniform
            // One kNN graph, clustered once per cluster count, for every budget and allocation.
            let graph = PASER.exactNeighbours(rows: try set.floatRows(), count: set.rowCount, width: set.k, neighbours: options.neighbours)
            let clusters = PASER.spectralClusters(neighbours: graph, options: options)
            let finerClusters = PASER.spectralClusters(neighbours: graph, options: finer)
            let top = (0..<pool.count).sorted { degradation[$0] > degradation[$1] }
            for fraction in c.budgets {
                let budget = Int(Double(pool.count) * fraction)
                let paser = try PASER.select(set, budget: budget, degradationColumn: "degradation", options: options, clusters: clusters)
                let paserFiner = try PASER.select(set, budget: budget, degradationColumn: "degradation", options: finer, clusters: finerClusters)
                let equalShares = try PASER.select(set, budget: budget, degradationColumn: "degradation", options: uniform, clusters: clusters)
                try store.saveResult("\(setName)-paser-\(Int(fraction * 100))", method: paser.method, set: paser.set, setVersion: paser.setVersion,
                                     parameters: paser.parameters, positions: paser.positions, ids: paser.ids, scores: paser.scores)
                let randomDraws = (0..<c.trials).map { _ in
                    var all = Array(0..<pool.count)
                    random.shuffle(&all)
                    return Array(all.prefix(budget))
                }
                let methods: [(String, (Int) -> [Int])] = [
                    ("PASER", { _ in paser.positions }), ("PASER, \(c.finerClusters) clusters", { _ in paserFiner.positions }),
                    ("clusters, equal shares", { _ in equalShares.positions }), ("random", { randomDraws[$0] }),
                    ("top degradation", { _ in Array(top.prefix(budget)) }),
                ]
                for (method, positions) in methods {
                    let accuracies = (0..<c.trials).map { recover(positions($0), trial: $0) }
                    let accuracy = accuracies.reduce(0, +) / Double(accuracies.count)
                    var classCounts = [Int](repeating: 0, count: MLP.classes)
                    for position in positions(0) { classCounts[pool.labels[position]] += 1 }
                    rows.append(Row(pool: poolName, method: method, budget: fraction, accuracy: accuracy, trialAccuracies: accuracies, classCounts: classCounts))
                    log(String(format: "paser: %@ pool, budget %.0f%% %-24@ recovered accuracy %.3f (%@); rows per class %@", poolName as NSString, 100 * fraction,
                               method as NSString, accuracy, accuracies.map { String(format: "%.3f", $0) }.joined(separator: " ") as NSString,
                               classCounts.map(String.init).joined(separator: " ") as NSString))
                }
            }
            // The whole pool: what recovery on all of it reaches, for scale.
            let everything = Array(0..<pool.count)
            let fullAccuracies = (0..<c.trials).map { recover(everything, trial: $0) }
            var fullCounts = [Int](repeating: 0, count: MLP.classes)
            for label in pool.labels { fullCounts[label] += 1 }
            rows.append(Row(pool: poolName, method: "whole pool", budget: 1, accuracy: fullAccuracies.reduce(0, +) / Double(c.trials),
                            trialAccuracies: fullAccuracies, classCounts: fullCounts))
            log(String(format: "paser: %@ pool, whole pool recovered accuracy %.3f", poolName as NSString, rows.last!.accuracy))
            return rows
        }

        var rows: [Row] = []
        for (poolName, setName, positions) in [("i.i.d.", "paser-pool-\(seed)", Array(unused.prefix(c.pool))), ("long-tailed", "paser-pool-long-tailed-\(seed)", longTailed)] {
            rows += try recoverPool(poolName, setName: setName, pool: ImageSubset(train, positions))
        }
        return SeedOutcome(seed: seed, originalAccuracy: originalAccuracy, prunedAccuracy: prunedAccuracy, rows: rows)
    }

    public static func report(_ o: Outcome, configuration c: Configuration, into report: inout HTMLReport) {
        report.heading("PASER: recovering a pruned model")
        let headRows = c.headClassRows, tailRows = Int((Double(c.headClassRows) / c.imbalance).rounded())
        func accuracies(_ pick: (SeedOutcome) -> Double) -> String { o.seeds.map { String(format: "%.3f", pick($0)) }.joined(separator: ", ") }
        report.paragraph("""
        For each of the seeds \(c.seeds.map(String.init).joined(separator: ", ")): an MLP (\(c.hidden) hidden) trained on 20 000 \
        images (test accuracy \(accuracies(\.originalAccuracy))), then \(Int(c.pruneFraction * 100)) % of each weight matrix \
        zeroed by magnitude (\(accuracies(\.prunedAccuracy))). Two recovery pools from other training images: an i.i.d. one of \
        \(c.pool) images, and a long-tailed one whose class sizes fall geometrically from \(headRows) to \(tailRows) (class ranks \
        drawn from the seed), as recovery corpora are uneven while the evaluation, the balanced test set, is not. Every pool \
        row has a gradient sketch at the pruned model and a degradation column: the Jensen–Shannon divergence between the \
        original and the pruned model's outputs, as in PASER (the loss increase is stored too, as loss_increase). PASER: \
        spectral clustering (\(c.clusters) clusters, 10-NN graph) of the sketches, budgets ∝ mean cluster degradation (capped \
        at a cluster's size, exactly the budget in all), rows by degradation within a cluster (images have equal cost; no \
        concept sets here). "Clusters, equal shares" is the same with equal budgets per cluster: the ablation without \
        degradation weighting. Recovery: \(c.recoverySteps) Adam steps on the selection with the pruned weights held at zero, \
        \(c.trials) runs each (batch order and random's rows change per run).
        """)
        func row(_ seed: SeedOutcome, _ pool: String, _ method: String, _ budget: Double) -> Row? {
            seed.rows.first { $0.pool == pool && $0.method == method && $0.budget == budget }
        }
        func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }
        // Per seed, the difference of run means to random (± its standard error over the runs).
        func gaps(_ pool: String, _ method: String) -> String {
            c.budgets.map { budget in
                let perSeed = o.seeds.compactMap { seed -> (Double, Double)? in
                    guard let ours = row(seed, pool, method, budget), let random = row(seed, pool, "random", budget) else { return nil }
                    return (100 * (ours.accuracy - random.accuracy),
                            100 * (pow(standardError(ours.trialAccuracies), 2) + pow(standardError(random.trialAccuracies), 2)).squareRoot())
                }
                return String(format: "%+.1f", mean(perSeed.map(\.0))) + " (" + perSeed.map { String(format: "%+.1f ± %.1f", $0.0, $0.1) }.joined(separator: ", ") + ")"
            }.joined(separator: " / ")
        }
        func standardError(_ values: [Double]) -> Double {
            guard values.count > 1 else { return .nan }
            let average = mean(values)
            return (values.reduce(0) { $0 + ($1 - average) * ($1 - average) } / Double(values.count - 1) / Double(values.count)).squareRoot()
        }
        func whole(_ pool: String) -> String { accuracies { row($0, pool, "whole pool", 1)?.accuracy ?? .nan } }
        let budgetNames = c.budgets.map { String(format: "%.0f", 100 * $0) }.joined(separator: " / ")
        let finer = "PASER, \(c.finerClusters) clusters"
        report.paragraph("""
        Accuracy points over random data at \(budgetNames) % budgets: the mean over the seeds, then each seed's difference \
        ± its standard error over the runs. I.i.d. pool: PASER \(gaps("i.i.d.", "PASER")); with \(c.finerClusters) clusters \
        \(gaps("i.i.d.", finer)). Long-tailed pool: PASER \(gaps("long-tailed", "PASER")); with \(c.finerClusters) clusters \
        \(gaps("long-tailed", finer)); equal shares \(gaps("long-tailed", "clusters, equal shares")).
        """)
        report.paragraph("""
        PASER's headline, recovery beating random data at 4–20 % budgets, does not reproduce here as a rule. On the i.i.d. \
        pool random data is a balanced sample of the test distribution and recovers the most at every seed: budgets \
        proportional to degradation leave the classes the pruned model still gets right with few or no rows (the last \
        column), and recovery on the rest makes the model forget them. On the long-tailed pool, where random data inherits \
        the pool's imbalance, cluster budgets (which do not follow cluster size) can gain a lot or lose a lot depending on \
        the seed, that is, on which classes are rare and which the pruning damaged; the finer clustering gains on average. \
        Recovery on the whole pool reaches \(whole("i.i.d.")) (i.i.d.) and \(whole("long-tailed")) (long-tailed). Taking the \
        top-degradation rows alone fails: they come from the one or two classes the pruned model has collapsed on. (Also \
        measured on the i.i.d. pool of seed 17 in earlier runs: 50 %, 70 % and 85 % magnitude pruning, structured pruning \
        of 75 % or 90 % of the hidden units, clustering hidden activations instead of sketches and the loss increase instead \
        of the JSD give the same order; 200 clusters match random.)
        """)
        var seen = Set<String>()
        let methods = (o.seeds.first?.rows ?? []).map(\.method).filter { seen.insert($0).inserted }
        var table: [[String]] = []
        for pool in ["i.i.d.", "long-tailed"] {
            for budget in c.budgets + [1] {
                for method in methods {
                    let perSeed = o.seeds.compactMap { row($0, pool, method, budget) }
                    guard !perSeed.isEmpty else { continue }
                    table.append([pool, String(format: "%.0f%%", 100 * budget), method,
                                  String(format: "%.3f", mean(perSeed.map(\.accuracy))) + " (" + perSeed.map { String(format: "%.3f", $0.accuracy) }.joined(separator: ", ") + ")",
                                  perSeed[0].classCounts.map(String.init).joined(separator: " ")])
                }
            }
        }
        report.table(["pool", "budget", "method", "recovered test accuracy: mean (each seed's mean of \(c.trials) runs)",
                      "rows per class (0–9), seed \(c.seeds.first.map(String.init) ?? "")"], table)
        for pool in ["i.i.d.", "long-tailed"] {
            for budget in c.budgets {
                // Each bar: the mean over the seeds of each seed's mean accuracy, ±SE over the seeds.
                let bars = methods.compactMap { method -> (String, Double, Double?)? in
                    let perSeed = o.seeds.compactMap { row($0, pool, method, budget)?.accuracy }
                    guard !perSeed.isEmpty else { return nil }
                    let summary = HTMLReport.meanAndStandardError(perSeed)
                    return (method, summary.mean, summary.standardError)
                }
                report.bars(String(format: "%@ pool, mean recovered accuracy over %d seeds at a %.0f%% budget (±SE)", pool as NSString, o.seeds.count, 100 * budget),
                            bars.map { ($0.0, $0.1) }, standardErrors: bars.map(\.2), maximum: 1)
            }
        }
    }
}
