import Foundation
import GradSketchInterchange
public import GradSketchModels
import GradSketchProjection
import GradSketchSelect
public import GradSketchStore

/// SELECT on Fashion-MNIST, built like the paper's setting (notes §9): the base model knows
/// only classes 0–4; the expert is the base finetuned on a hidden set covering all ten classes;
/// the public pool holds the hidden images among in-domain images of the classes the base
/// already knows and pixel-permuted distractors, all pseudo-labelled by the expert. Each
/// strategy picks K pool rows from the expert-checkpoint gradient sketches and the query
/// q = P(θ_base − θ_expert); the base is then trained on them as the expert was trained, and
/// tested on all ten classes.
public struct SelectExperiment: ReportedExperiment {
    public static var defaultConfiguration: Configuration { Configuration() }

    public struct Configuration: Sendable {
        public var hidden = 64
        public var baseExamples = 6000
        public var hiddenExamples = 2000
        public var inDomainPool = 8000
        public var distractors = 30000
        public var budgets = [100, 300, 1000]
        public var expertSteps = 300
        public var batch = 64
        public var learningRate: Float = 1e-3
        public var side = 32
        public var kDense = 64
        public var batchSize = 64
        /// Sketch only the output layer's gradient (the paper's default: SELECT projects the
        /// last layer) rather than every layer. Measured here (k = 384 instead of 1408): more
        /// hidden images picked, but a smaller share of the gap closed at K = 300 and 1000
        /// (23 % and 18 % against 31 % and 35 %), so every layer is the default.
        public var lastLayerOnly = false
        /// Greedy sums unit-normalised rows, as the paper's full-model variant normalises each
        /// per-example gradient. Measured here (mean of seeds 7, 8 and 9): 60 % of the gap closed
        /// at K = 1000 and at K = 300, against 31 % and 10 % with raw rows, whose picks follow
        /// the few largest gradients.
        public var unitRows = true
        /// One trial per seed (base, expert, pool and retraining all change): the gap closed
        /// varies a lot between trials, so the report gives each and their mean.
        public var seeds: [UInt64] = [7, 8, 9]
        public init() {}
    }

    public struct Row: Sendable, Codable {
        public let strategy: String
        public let budget: Int
        public let accuracy: Double
        public let hiddenShare: Double
        public let distractorShare: Double
        public let seconds: Double
    }

    /// One seed's base, expert and selections.
    public struct Trial: Sendable, Codable {
        public let seed: UInt64
        public let baseAccuracy: Double
        public let expertAccuracy: Double
        public let rows: [Row]
        /// Share of the random → expert gap a strategy closes at a budget.
        public func gapClosed(_ strategy: String, budget: Int) -> Double? {
            guard let row = rows.first(where: { $0.strategy == strategy && $0.budget == budget }),
                  let random = rows.first(where: { $0.strategy == "random" && $0.budget == budget }),
                  expertAccuracy > random.accuracy else { return nil }
            return (row.accuracy - random.accuracy) / (expertAccuracy - random.accuracy)
        }
    }

    public struct Outcome: Sendable, Codable {
        public let trials: [Trial]
        public let k: Int
        public let poolSize: Int
        /// The mean over trials of the share of the random → expert gap closed.
        public func meanGapClosed(_ strategy: String, budget: Int) -> Double? {
            let shares = trials.compactMap { $0.gapClosed(strategy, budget: budget) }
            return shares.count == trials.count && !shares.isEmpty ? shares.reduce(0, +) / Double(shares.count) : nil
        }
    }

    static let strategies: [SelectStrategy] = [.random, .topK, .balancedTopK, .greedy, .greedyBatched, .lowestLoss, .highestLoss]

    public static func run(store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                           log: (String) -> Void) throws -> Outcome {
        var trials: [Trial] = []
        var k = 0, poolSize = 0
        for seed in c.seeds {
            let (trial, width, size) = try run(seed: seed, names: seed == c.seeds.first ? "" : "-seed\(seed)", store: store, train: train,
                                               test: test, configuration: c, log: log)
            trials.append(trial)
            (k, poolSize) = (width, size)
        }
        let outcome = Outcome(trials: trials, k: k, poolSize: poolSize)
        for budget in c.budgets {
            let summary = ["greedy", "greedy-batched"].map { name in
                "\(name) " + (outcome.meanGapClosed(name, budget: budget).map { String(format: "%.0f%%", 100 * $0) } ?? "—")
            }
            log("SELECT: K=\(budget) mean gap closed over \(trials.count) seeds: " + summary.joined(separator: ", "))
        }
        return outcome
    }

    /// One trial; store names get `names` appended (empty for the first seed).
    static func run(seed: UInt64, names: String, store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                    log: (String) -> Void) throws -> (Trial, Int, Int) {
        var random = SeededRandom(seed: seed)
        var order = Array(0..<train.count)
        random.shuffle(&order)
        let known = order.filter { train.labels[$0] < 5 }
        let baseIndices = Array(known.prefix(c.baseExamples))
        let inDomainIndices = Array(known.dropFirst(c.baseExamples).prefix(c.inDomainPool))
        let used = Set(baseIndices + inDomainIndices)
        // Reshuffled: the images left early in `order` are all of classes 5–9 (0–4 were used first).
        var rest = order.filter { !used.contains($0) }
        random.shuffle(&rest)
        let hiddenIndices = Array(rest.prefix(c.hiddenExamples))
        let distractorIndices = Array(rest.dropFirst(c.hiddenExamples).prefix(c.distractors))
        let testSet = ImageSubset(test, Array(0..<test.count))

        // Base (classes 0–4) and expert (base finetuned on the hidden set).
        log("SELECT: training the base model on \(baseIndices.count) images of classes 0–4")
        let optimizer = Optimizer.adam(learningRate: c.learningRate)
        let base = Experiments.train(MLP(hidden: c.hidden, seed: seed), on: ImageSubset(train, baseIndices), optimizer: optimizer,
                                     steps: 3 * c.baseExamples / c.batch, batch: c.batch, seed: seed &+ 1)
        let hiddenSet = ImageSubset(train, hiddenIndices)
        let expert = Experiments.train(base, on: hiddenSet, optimizer: optimizer, steps: c.expertSteps, batch: c.batch, seed: seed &+ 2)
        let baseAccuracy = Experiments.accuracy(base, on: testSet), expertAccuracy = Experiments.accuracy(expert, on: testSet)
        log(String(format: "SELECT: base %.3f, expert %.3f test accuracy (all ten classes)", baseAccuracy, expertAccuracy))
        try Experiments.store(base, as: "select-base\(names)", in: store, detail: "SELECT experiment: base, classes 0–4")
        try Experiments.store(expert, as: "select-expert\(names)", in: store, detail: "SELECT experiment: base finetuned on the hidden set")
        try store.recordDelta("select-delta\(names)", from: "select-base\(names)", to: "select-expert\(names)")

        // Pool: hidden + in-domain + pixel-permuted distractors, pseudo-labelled by the expert.
        var permutation = Array(0..<784)
        random.shuffle(&permutation)
        var distractors = ImageSubset(train, distractorIndices)
        for row in 0..<distractors.count {
            let original = Array(distractors.images[(row * 784)..<((row + 1) * 784)])
            for j in 0..<784 { distractors.images[row * 784 + j] = original[permutation[j]] }
        }
        var pool = hiddenSet + ImageSubset(train, inDomainIndices) + distractors
        let sources = [String](repeating: "hidden", count: hiddenIndices.count) + [String](repeating: "in-domain", count: inDomainIndices.count)
            + [String](repeating: "distractor", count: distractorIndices.count)
        let poolTrace = expert.trace(images: pool.images, labels: pool.labels)
        pool.labels = poolTrace.predictions
        // Sketch the pool at the expert with its pseudo-labels.
        var definition = GradientSketcher.definition(for: expert, seed: seed, side: c.side, kDense: c.kDense)
        if c.lastLayerOnly, let last = expert.layers.last {
            definition.layout = definition.layout.filter { $0.name == last.weight || $0.name == last.bias }
        }
        let definitionJSON = try JSONValue.parse(String(decoding: JSONEncoder().encode(definition), as: UTF8.self))
        let expertHash = try store.tensorSet("select-expert\(names)").contentHash
        let session = try store.beginAppend(to: "select-pool\(names)", options: SketchSetOptions(dtype: .float16, attributes: [
            "projection": definitionJSON, "tensor_set": .string("select-expert\(names)"), "tensor_set_hash": .string(expertHash),
            "gradient_kind": .string("per-example-loss-gradient"), "labels": .string("pseudo-labels of the expert"),
        ]), inputType: .float32)
        for start in stride(from: 0, to: pool.count, by: 2048) {
            let end = min(pool.count, start + 2048)
            let part = pool.picking(Array(start..<end))
            let trace = expert.trace(images: part.images, labels: part.labels)
            let sketches = try GradientSketcher.sketch(trace, model: expert, definition: definition)
            var annotations = RowAnnotations(ids: (start..<end).map { "pool/\($0)" }, labels: part.labels.map { FashionMNIST.classNames[$0] },
                                             metadata: Array(sources[start..<end]))
            annotations.columns["loss"] = trace.losses.map(Double.init)
            try sketches.withUnsafeBytes { bytes in
                try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: end - start, k: definition.k), annotations: annotations)
            }
        }
        try session.commit(detail: "SELECT pool: expert-checkpoint sketches with pseudo-labels")
        let set = try store.sketchSet("select-pool\(names)")
        let deltaSet = try store.tensorSet("select-delta\(names)")
        let delta = try deltaSet.entry.tensors.map { (name: $0.name, values: try deltaSet.tensor(named: $0.name).floats()) }
        let query = try Projector.projectTensors(delta, definition: definition).map { -$0 }  // base − expert
        log("SELECT: pool of \(pool.count) rows sketched at k = \(definition.k)")

        var rows: [Row] = []
        for budget in c.budgets {
            // Greedy once more on raw rows, for comparison, when the default sums unit rows.
            let runs = strategies.map { ($0, $0.rawValue, c.unitRows) } + (c.unitRows ? [(SelectStrategy.greedy, "greedy-raw-rows", false)] : [])
            for (strategy, name, unitRows) in runs {
                let started = Date()
                let result = try Select.run(set, query: query, count: budget, strategy: strategy, batchSize: c.batchSize, seed: seed, unitRows: unitRows)
                let seconds = Date().timeIntervalSince(started)
                try store.saveResult("select-\(name)-\(budget)\(names)", method: result.method, set: result.set, setVersion: result.setVersion,
                                     parameters: result.parameters, positions: result.positions, ids: result.ids, scores: result.scores)
                let picked = pool.picking(result.positions)
                let model = Experiments.train(base, on: picked, optimizer: optimizer, steps: c.expertSteps, batch: c.batch, seed: seed &+ 3)
                let accuracy = Experiments.accuracy(model, on: testSet)
                let hiddenShare = Double(result.positions.filter { sources[$0] == "hidden" }.count) / Double(budget)
                let distractorShare = Double(result.positions.filter { sources[$0] == "distractor" }.count) / Double(budget)
                rows.append(Row(strategy: name, budget: budget, accuracy: accuracy, hiddenShare: hiddenShare,
                                distractorShare: distractorShare, seconds: seconds))
                log(String(format: "SELECT: seed \(seed) K=%d %-15@ accuracy %.3f (hidden %.2f, distractors %.2f; selection %.2f s)",
                           budget, name as NSString, accuracy, hiddenShare, distractorShare, seconds))
            }
        }
        return (Trial(seed: seed, baseAccuracy: baseAccuracy, expertAccuracy: expertAccuracy, rows: rows), definition.k, pool.count)
    }

    public static func report(_ outcome: Outcome, configuration c: Configuration, into report: inout HTMLReport) {
        report.heading("SELECT: recovering training data from weights")
        let experts = outcome.trials.map { String(format: "base %.3f, expert %.3f (seed %d)", $0.baseAccuracy, $0.expertAccuracy, $0.seed) }
        report.paragraph("""
        Base: MLP (\(c.hidden) hidden) trained on \(c.baseExamples) images of classes 0–4 only. Expert: the base finetuned \
        (\(c.expertSteps) Adam steps, batch \(c.batch)) on \(c.hiddenExamples) hidden images of all ten classes. Pool of \
        \(outcome.poolSize): the hidden images, \(c.inDomainPool) more images of classes 0–4 and \(c.distractors) \
        pixel-permuted distractors, pseudo-labelled by the expert; per-example gradient sketches at the expert \
        (k = \(outcome.k), Kronecker \(c.side)×\(c.side) per weight); query P(θ_base − θ_expert). \
        \(c.unitRows ? "Greedy strategies sum unit-normalised rows, as the paper's full-model variant normalises each per-example gradient (greedy-raw-rows: the same on raw rows)." : "") Each selection trains \
        the base like the expert was trained; accuracy on the 10 000 test images. \(outcome.trials.count) trials, one per \
        seed (base, expert, pool and retraining all differ): \(experts.joined(separator: "; ")). \
        Paper (AG News): random 65% → SELECT 80% against expert 88%, i.e. 65% of the gap closed.
        """)
        let names = outcome.trials.first?.rows.map(\.strategy).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } } ?? []
        var summary: [[String]] = []
        for budget in c.budgets {
            for name in names where name != "random" {
                summary.append([name, "\(budget)"] + outcome.trials.map { trial in trial.gapClosed(name, budget: budget).map { String(format: "%.0f%%", 100 * $0) } ?? "—" }
                               + [outcome.meanGapClosed(name, budget: budget).map { String(format: "%.0f%%", 100 * $0) } ?? "—"])
            }
        }
        report.table(["strategy", "K"] + outcome.trials.map { "gap closed, seed \($0.seed)" } + ["mean"], summary)
        for trial in outcome.trials {
            var table: [[String]] = []
            for row in trial.rows {
                table.append([row.strategy, "\(row.budget)", String(format: "%.3f", row.accuracy),
                              trial.gapClosed(row.strategy, budget: row.budget).map { String(format: "%.0f%%", 100 * $0) } ?? "—",
                              String(format: "%.2f", row.hiddenShare), String(format: "%.2f", row.distractorShare), String(format: "%.2f", row.seconds)])
            }
            report.table(["seed \(trial.seed): strategy", "K", "test accuracy", "random→expert gap closed", "hidden share", "distractor share", "selection s"], table)
        }
        // One chart per K: each bar the mean test accuracy over the trials (one per seed), ±SE.
        if !outcome.trials.isEmpty {
            for budget in c.budgets {
                let series: [(String, [Double])] = [("expert", outcome.trials.map(\.expertAccuracy)), ("base", outcome.trials.map(\.baseAccuracy))]
                    + names.map { name in (name, outcome.trials.compactMap { trial in trial.rows.first { $0.strategy == name && $0.budget == budget }?.accuracy }) }
                let summaries = series.filter { !$0.1.isEmpty }.map { ($0.0, HTMLReport.meanAndStandardError($0.1)) }
                report.bars("mean test accuracy at K = \(budget) over \(outcome.trials.count) seeds (±SE)",
                            summaries.map { ($0.0, $0.1.mean) }, standardErrors: summaries.map(\.1.standardError), maximum: 1)
            }
        }
    }
}
