import Foundation
import GradSketchInterchange
public import GradSketchModels
import GradSketchProjection
import GradSketchSelect
public import GradSketchStore

/// GradEx on Fashion-MNIST: twenty data sources of 150 images, five of them with 60 % of their
/// labels flipped. From sketches at a meta-initialisation θ* (the model briefly trained on all
/// sources), the validation loss after fine-tuning on a subset of sources is estimated in
/// sketch space and compared with actually fine-tuning; the random-subset ensemble scores the
/// sources, and forward selection on the estimates picks a subset.
public struct GradExExperiment: ReportedExperiment {
    public static var defaultConfiguration: Configuration { Configuration() }

    public struct Configuration: Sendable {
        public var sources = 20
        public var perSource = 150
        public var noisySources = 5
        public var flipRate = 0.6
        public var validationExamples = 1000
        public var hidden = 32
        public var side = 16
        public var fineTuneSteps = 30
        /// Fine-tuning lengths for the sweep of the linear estimate's error against distance.
        public var fineTuneStepsSweep = [10, 30, 100, 300]
        public var learningRate: Float = 0.01
        public var batch = 256
        public var checkedSubsets = 24
        public var calibrationSubsets = 4
        public var logisticSubsets = 12
        public var ensembleSubsets = 200
        public var seed: UInt64 = 13
        public init() {}
    }

    public struct Check: Sendable, Codable {
        public let subset: [Int]
        public let actual: Double
        public let linear: Double
        public let logistic: Double?
        /// The logistic estimate with the paper's output-margin gradients as features.
        public let margin: Double?
    }

    /// The linear estimate's held-out error after fine-tuning for `steps` steps.
    public struct LengthPoint: Sendable, Codable {
        public let steps: Int
        /// Mean |actual − meta-init loss| / actual: the error of predicting no change at all.
        public let noChangeRelativeError: Double
        public let linearRelativeError: Double
        public let linearChangeCorrelation: Double
    }

    public struct Outcome: Sendable, Codable {
        public let baseLoss: Double
        public let linearStep: Double
        public let logisticStep: Double
        public let checks: [Check]
        public let linearRelativeError: Double
        public let logisticRelativeError: Double
        public let linearChangeCorrelation: Double
        public let logisticChangeCorrelation: Double
        public let marginStep: Double
        public let marginRelativeError: Double
        public let marginChangeCorrelation: Double
        public let ensembleScores: [Double]
        public let noisyAUC: Double
        public let forward: [Int]
        public let forwardNoisy: Int
        public let allSourcesLoss: Double
        public let forwardLoss: Double
        public let cleanOnlyLoss: Double
        public let k: Int
        public let sweep: [LengthPoint]
    }

    public static func run(store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                           log: (String) -> Void) throws -> Outcome {
        var random = SeededRandom(seed: c.seed)
        var order = Array(0..<train.count)
        random.shuffle(&order)
        let total = c.sources * c.perSource
        var data = ImageSubset(train, Array(order.prefix(total)))
        let validation = ImageSubset(train, Array(order.dropFirst(total).prefix(c.validationExamples)))
        let sourceOf = (0..<total).map { $0 / c.perSource }
        let isNoisy = { (source: Int) in source >= c.sources - c.noisySources }
        for i in 0..<total where isNoisy(sourceOf[i]) && random.nextUnit() < c.flipRate {
            data.labels[i] = (data.labels[i] + 1 + random.next(below: 9)) % 10
        }
        // Meta-initialisation: a short multitask run on every source.
        let meta = Experiments.train(MLP(hidden: c.hidden, seed: c.seed), on: data, optimizer: .adam(learningRate: 1e-3),
                                     steps: 150, batch: c.batch, seed: c.seed &+ 1)
        let definition = GradientSketcher.definition(for: meta, seed: c.seed, side: c.side, kDense: 64)
        let trace = meta.trace(images: data.images, labels: data.labels)
        let sketches = try GradientSketcher.sketch(trace, model: meta, definition: definition)
        // The paper's features are gradients of the margin log(p_y / (1 − p_y)) with p_y clipped
        // (p > 0.9 → p − 0.01, p < 0.001 → p + 0.01): the loss gradient times −1/(1 − p_y).
        let marginScale = (0..<total).map { row -> Double in
            var p = Double(trace.probabilities[row * MLP.classes + data.labels[row]])
            if p > 0.9 { p -= 0.01 } else if p < 0.001 { p += 0.01 }
            return 1 / (1 - p)
        }
        let definitionJSON = try JSONValue.parse(String(decoding: JSONEncoder().encode(definition), as: UTF8.self))
        _ = try sketches.withUnsafeBytes { bytes in
            try store.append(to: "gradex-meta", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: total, k: definition.k),
                             annotations: RowAnnotations(ids: (0..<total).map { "gradex/\($0)" }, labels: sourceOf.map { String(format: "source%02d", $0) },
                                                         columns: ["margin_scale": marginScale]),
                             options: SketchSetOptions(dtype: .float16, attributes: ["projection": definitionJSON,
                                                                                   "gradient_kind": .string("per-example-loss-gradient")]))
        }
        let validationTrace = meta.trace(images: validation.images, labels: validation.labels)
        let baseLoss = Double(validationTrace.losses.reduce(0, +)) / Double(validation.count)
        let gradient = meta.meanGradient(of: validationTrace)
        let v = try Projector.projectTensors(meta.shapes.map { ($0.name, gradient[$0.name]!) }, definition: definition)
        let gradex = try GradEx(try store.sketchSet("gradex-meta"))
        let marginGradex = try GradEx(try store.sketchSet("gradex-meta"), featureScaleColumn: "margin_scale")
        log(String(format: "gradex: %d sources (%d noisy), meta-init validation loss %.4f, k = %d", c.sources, c.noisySources, baseLoss, definition.k))

        func fineTuned(_ sources: [Int], steps: Int? = nil) -> (model: MLP, loss: Double) {
            let members = (0..<total).filter { sources.contains(sourceOf[$0]) }
            let model = Experiments.train(meta, on: data.picking(members), optimizer: .sgd(learningRate: c.learningRate),
                                          steps: steps ?? c.fineTuneSteps, batch: c.batch, seed: c.seed &+ 2)
            let t = model.trace(images: validation.images, labels: validation.labels)
            return (model, Double(t.losses.reduce(0, +)) / Double(validation.count))
        }
        func linear(_ subset: [Int]) throws -> Double { try gradex.estimate(subset, validation: v, baseLoss: baseLoss, step: step) }

        // Estimates against actual fine-tuning on random half-subsets. The step length is the
        // estimators' one free scale (the paper sweeps it too): fitted by least squares on the
        // first `calibrationSubsets` subsets, errors reported on the others.
        var raw: [(subset: [Int], actual: Double, linear: Double, logistic: Double?, margin: Double?)] = []
        for index in 0..<c.checkedSubsets {
            var sources = Array(0..<c.sources)
            random.shuffle(&sources)
            let subset = Array(sources.prefix(c.sources / 2)).sorted()
            let logistic = index < c.logisticSubsets
                ? baseLoss - (try gradex.estimate(subset, validation: v, baseLoss: baseLoss, step: 1, estimator: .logistic, regularization: 1e-2)) : nil
            let margin = index < c.logisticSubsets
                ? baseLoss - (try marginGradex.estimate(subset, validation: v, baseLoss: baseLoss, step: 1, estimator: .logistic, regularization: 1e-2)) : nil
            raw.append((subset, fineTuned(subset).loss, baseLoss - (try gradex.estimate(subset, validation: v, baseLoss: baseLoss, step: 1)), logistic, margin))
        }
        /// Least-squares step through the origin: loss decrease ≈ step · estimate on the calibration subsets.
        func fit(_ pick: (Int) -> Double?, actual: [Double]) -> Double {
            var xy = 0.0, xx = 0.0
            for i in 0..<c.calibrationSubsets { if let x = pick(i) { xy += x * (baseLoss - actual[i]); xx += x * x } }
            return xx > 0 ? xy / xx : 0
        }
        let actual = raw.map(\.actual)
        let linearStep = fit({ raw[$0].linear }, actual: actual), logisticStep = fit({ raw[$0].logistic }, actual: actual)
        let marginStep = fit({ raw[$0].margin }, actual: actual)
        let checks = raw.dropFirst(c.calibrationSubsets).map { entry in
            Check(subset: entry.subset, actual: entry.actual, linear: baseLoss - linearStep * entry.linear,
                  logistic: entry.logistic.map { baseLoss - logisticStep * $0 }, margin: entry.margin.map { baseLoss - marginStep * $0 })
        }
        let step = linearStep
        func relativeError(_ pick: (Check) -> Double?) -> Double {
            let errors = checks.compactMap { check in pick(check).map { abs($0 - check.actual) / check.actual } }
            return errors.reduce(0, +) / Double(max(1, errors.count))
        }
        func changeCorrelation(_ pick: (Check) -> Double?) -> Double {
            let pairs = checks.compactMap { check in pick(check).map { ($0 - baseLoss, check.actual - baseLoss) } }
            return pearson(pairs.map(\.0), pairs.map(\.1))
        }
        // The same subsets fine-tuned for other lengths: a first-order estimate is only as good as
        // the fine-tuning run is short, so the error grows with the distance travelled.
        let sweep = c.fineTuneStepsSweep.map { steps -> LengthPoint in
            let actual = raw.map { fineTuned($0.subset, steps: steps).loss }
            let fitted = fit({ raw[$0].linear }, actual: actual)
            let held = c.calibrationSubsets..<raw.count
            let errors = held.map { abs(baseLoss - fitted * raw[$0].linear - actual[$0]) / actual[$0] }
            return LengthPoint(steps: steps, noChangeRelativeError: held.map { abs(baseLoss - actual[$0]) / actual[$0] }.reduce(0, +) / Double(held.count),
                               linearRelativeError: errors.reduce(0, +) / Double(errors.count),
                               linearChangeCorrelation: pearson(held.map { -fitted * raw[$0].linear }, held.map { actual[$0] - baseLoss }))
        }
        for point in sweep {
            log(String(format: "gradex: %d fine-tuning steps: relative error %.4f (no-change prediction %.4f), change correlation %.3f",
                       point.steps, point.linearRelativeError, point.noChangeRelativeError, point.linearChangeCorrelation))
        }
        let ensemble = try gradex.randomEnsemble(subsets: c.ensembleSubsets, fraction: 0.5, seed: c.seed, estimate: linear)
        // Higher estimated loss = worse source; AUC that noisy sources score worse than clean ones.
        var above = 0.0, pairs = 0.0
        for a in 0..<c.sources where isNoisy(a) { for b in 0..<c.sources where !isNoisy(b) { pairs += 1; if ensemble.scores[a] > ensemble.scores[b] { above += 1 } } }
        let forward = try gradex.forwardSelection(estimate: linear)
        try store.saveResult("gradex-ensemble", method: "gradex/random-ensemble", set: "gradex-meta", setVersion: try store.latestVersion(),
                             parameters: ["subsets": .number(Double(c.ensembleSubsets)), "fraction": .number(0.5), "estimator": .string("linear")],
                             positions: Array(0..<c.sources), ids: gradex.sources, scores: ensemble.scores)
        let outcome = Outcome(
            baseLoss: baseLoss, linearStep: linearStep, logisticStep: logisticStep, checks: checks,
            linearRelativeError: relativeError { $0.linear }, logisticRelativeError: relativeError { $0.logistic },
            linearChangeCorrelation: changeCorrelation { $0.linear }, logisticChangeCorrelation: changeCorrelation { $0.logistic },
            marginStep: marginStep, marginRelativeError: relativeError { $0.margin }, marginChangeCorrelation: changeCorrelation { $0.margin },
            ensembleScores: ensemble.scores, noisyAUC: above / pairs, forward: forward, forwardNoisy: forward.filter(isNoisy).count,
            allSourcesLoss: fineTuned(Array(0..<c.sources)).loss, forwardLoss: fineTuned(forward).loss,
            cleanOnlyLoss: fineTuned((0..<c.sources).filter { !isNoisy($0) }).loss, k: definition.k, sweep: sweep)
        log(String(format: "gradex: margin-gradient features: relative error %.4f, change correlation %.3f", outcome.marginRelativeError, outcome.marginChangeCorrelation))
        log(String(format: "gradex: relative error %.4f (linear) %.4f (logistic); change correlation %.3f / %.3f; noisy-source AUC %.3f; forward picked %d sources (%d noisy): loss %.4f vs all %.4f, clean only %.4f",
                   outcome.linearRelativeError, outcome.logisticRelativeError, outcome.linearChangeCorrelation, outcome.logisticChangeCorrelation,
                   outcome.noisyAUC, forward.count, outcome.forwardNoisy, outcome.forwardLoss, outcome.allSourcesLoss, outcome.cleanOnlyLoss))
        return outcome
    }

    public static func report(_ o: Outcome, configuration c: Configuration, into report: inout HTMLReport) {
        report.heading("GradEx: estimating fine-tuning on subsets of data sources")
        report.paragraph("""
        \(c.sources) sources of \(c.perSource) images; sources \(c.sources - c.noisySources)–\(c.sources - 1) have \
        \(Int(c.flipRate * 100)) % of their labels flipped. Meta-initialisation: MLP (\(c.hidden) hidden) after 150 Adam steps on \
        all sources; per-example loss-gradient sketches there (k = \(o.k)) and the sketch v of the validation-loss gradient \
        (\(c.validationExamples) clean images; loss \(String(format: "%.4f", o.baseLoss))). Fine-tuning = \(c.fineTuneSteps) SGD steps \
        (lr \(c.learningRate), batch \(c.batch)) from θ* on the chosen sources. Estimates: linear L − ηT⟨v, mean s⟩ and the paper's \
        logistic-regression direction (C = 0.01, rescaled to the linear step's length); the step length is fitted on \
        \(c.calibrationSubsets) calibration subsets (linear \(String(format: "%.3f", o.linearStep)), logistic \
        \(String(format: "%.3f", o.logisticStep)); ηT = \(String(format: "%.2f", Double(c.learningRate) * Double(c.fineTuneSteps)))) and \
        the errors below are on the other subsets. Paper: about 1 % relative error.
        """)
        report.table(["estimator", "mean relative error of the validation loss", "correlation of estimated and actual loss change"], [
            ["linear (\(c.checkedSubsets - c.calibrationSubsets) held-out subsets)", String(format: "%.2f%%", 100 * o.linearRelativeError), String(format: "%.3f", o.linearChangeCorrelation)],
            ["logistic (\(c.logisticSubsets - c.calibrationSubsets) held-out subsets)", String(format: "%.2f%%", 100 * o.logisticRelativeError), String(format: "%.3f", o.logisticChangeCorrelation)],
            ["logistic on output-margin gradients, as the paper's code", String(format: "%.2f%%", 100 * o.marginRelativeError), String(format: "%.3f", o.marginChangeCorrelation)],
        ])
        report.table(["fine-tuning steps", "predicting no change: mean relative error", "linear estimate: mean relative error", "change correlation"],
                     o.sweep.map { ["\($0.steps)", String(format: "%.2f%%", 100 * $0.noChangeRelativeError), String(format: "%.2f%%", 100 * $0.linearRelativeError),
                                    String(format: "%.3f", $0.linearChangeCorrelation)] })
        report.paragraph("""
        The same subsets fine-tuned for other lengths (step length refitted on the calibration subsets each time): the \
        first-order estimate holds while fine-tuning stays near θ*, and its error grows with the distance travelled.
        """)
        report.bars("random-ensemble score per source (mean estimated loss over \(c.ensembleSubsets) half-subsets; last \(c.noisySources) noisy; single run, seed \(c.seed))",
                    o.ensembleScores.enumerated().map { (String(format: "source %02d%@", $0.offset, ($0.offset >= c.sources - c.noisySources ? " (noisy)" : "") as NSString), $0.element) },
                    maximum: o.ensembleScores.max() ?? 1, format: "%.4f")
        report.paragraph(String(format: """
        Noisy sources score worse than clean ones with AUC %.3f. Forward selection on the estimates picked %d sources \
        (%d noisy); fine-tuning on them gives validation loss %.4f, against %.4f on all sources and %.4f on the clean ones only.
        """, o.noisyAUC, o.forward.count, o.forwardNoisy, o.forwardLoss, o.allSourcesLoss, o.cleanOnlyLoss))
    }

    static func pearson(_ a: [Double], _ b: [Double]) -> Double {
        guard a.count > 1 else { return .nan }
        let ma = a.reduce(0, +) / Double(a.count), mb = b.reduce(0, +) / Double(b.count)
        let cov = zip(a, b).reduce(0) { $0 + ($1.0 - ma) * ($1.1 - mb) }
        let va = a.reduce(0) { $0 + ($1 - ma) * ($1 - ma) }, vb = b.reduce(0) { $0 + ($1 - mb) * ($1 - mb) }
        return cov / (va * vb).squareRoot()
    }
}
