import Foundation
import GradSketchInterchange
public import GradSketchModels
import GradSketchProjection
import GradSketchSelect
public import GradSketchStore

/// In-Run Data Shapley / TracIn on Fashion-MNIST with injected label noise. Training logs
/// per-step sketches of every batch example, per-step validation-gradient sketches and
/// Hessian-vector-product sketches into the store; values come back from the store
/// (`InRunValuation`) and are compared with exact values from the materialised gradients.
public struct InRunExperiment: ReportedExperiment {
    public static var defaultConfiguration: Configuration { Configuration() }

    public struct Configuration: Sendable {
        public var hidden = 32
        public var trainExamples = 3000
        public var validationExamples = 500
        public var noise = 0.2
        public var learningRate: Float = 0.05
        public var batch = 32
        public var epochs = 3
        /// Kronecker sides compared (k grows with side²); the first is the one stored.
        public var sides = [16, 4, 8, 32]
        public var seed: UInt64 = 5
        public init() {}
    }

    public struct SketchQuality: Sendable, Codable {
        public let side: Int
        public let k: Int
        public let spearman: Double
        public let auc: Double
    }

    public struct Outcome: Sendable, Codable {
        public let steps: Int
        public let noisyExamples: Int
        public let exactFirstOrderAUC: Double
        public let exactSecondOrderAUC: Double
        public let storedFirstOrderAUC: Double
        public let storedSecondOrderAUC: Double
        public let storedSpearman: Double
        public let efficiencyError: Double
        /// The same with the R-operator's (between-kinks) Hessian instead of the secant one.
        public let efficiencyErrorExactHessian: Double
        public let sketches: [SketchQuality]
        public let negativeShare: Double
        public let noisyShareOfNegative: Double
        public let fullStepsToTarget: Int
        public let prunedStepsToTarget: Int?
        public let targetAccuracy: Double
        public let fullFinalAccuracy: Double
        public let prunedFinalAccuracy: Double
        public let lowestFifthFlipped: Int
        public let trimmedStepsToTarget: Int?
        public let trimmedFinalAccuracy: Double
        /// The paper's measure: steps to the full run's final test loss (nil: never within the run).
        public let targetLoss: Double
        public let fullStepsToLoss: Int?
        public let prunedStepsToLoss: Int?
        public let trimmedStepsToLoss: Int?
        /// Time for the exact values by ghost dot products and by materialised gradients, and
        /// their largest difference relative to the largest value (float32 rounding).
        public let ghostSeconds: Double
        public let materialisedSeconds: Double
        public let ghostRelativeDifference: Double
    }

    public static func run(store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                           log: (String) -> Void) throws -> Outcome {
        var random = SeededRandom(seed: c.seed)
        var order = Array(0..<train.count)
        random.shuffle(&order)
        var data = ImageSubset(train, Array(order.prefix(c.trainExamples)))
        let validation = ImageSubset(train, Array(order.dropFirst(c.trainExamples).prefix(c.validationExamples)))
        var noisy = [Bool](repeating: false, count: data.count)
        for i in 0..<data.count where Double(random.next() % 1_000_000) / 1_000_000 < c.noise {
            data.labels[i] = (data.labels[i] + 1 + random.next(below: 9)) % 10
            noisy[i] = true
        }
        let exampleIDs = (0..<data.count).map { "ex\($0)" }
        let rate = c.learningRate / Float(c.batch)  // per-example step of a mean-loss SGD update

        var model = MLP(hidden: c.hidden, seed: c.seed)
        let definitions = c.sides.map { GradientSketcher.definition(for: model, seed: c.seed, side: $0, kDense: 64) }
        let stored = definitions[0]
        let storedJSON = try JSONValue.parse(String(decoding: JSONEncoder().encode(stored), as: UTF8.self))
        let attributes: [String: JSONValue] = ["projection": storedJSON, "gradient_kind": .string("per-example-loss-gradient")]
        let logSession = try store.beginAppend(to: "inrun-log", options: SketchSetOptions(dtype: .float32, attributes: attributes), inputType: .float32)
        var validationRows: [Float] = [], hessianRows: [Float] = []

        var exactFirst = [Double](repeating: 0, count: data.count), exactSecond = [Double](repeating: 0, count: data.count)
        var sketchedFirst = [[Double]](repeating: [Double](repeating: 0, count: data.count), count: c.sides.count)
        var materialisedFirst = [Double](repeating: 0, count: data.count), materialisedSecond = [Double](repeating: 0, count: data.count)
        var ghostTime = Duration.zero, materialisedTime = Duration.zero
        var predictedChange = 0.0, actualChange = 0.0, predictedChangeExactHessian = 0.0
        var step = 0
        log("in-run: \(data.count) examples (\(noisy.filter { $0 }.count) with flipped labels), SGD lr \(c.learningRate), batch \(c.batch), \(c.epochs) epochs")
        for _ in 0..<c.epochs {
            var epochOrder = Array(0..<data.count)
            random.shuffle(&epochOrder)
            for start in stride(from: 0, to: data.count, by: c.batch) {
                let batch = Array(epochOrder[start..<min(data.count, start + c.batch)])
                let part = data.picking(batch)
                let trace = model.trace(images: part.images, labels: part.labels)
                // Validation gradient at w_t and the validation Hessian times the batch's summed
                // gradient: the secant product is stored (it predicts the loss change far better on
                // a ReLU network); the R-operator's is kept for the efficiency comparison.
                let validationTrace = model.trace(images: validation.images, labels: validation.labels)
                let validationGradient = model.meanGradient(of: validationTrace)
                var summed: [String: [Float]] = [:]
                for (name, values) in model.meanGradient(of: trace) { summed[name] = values.map { $0 * Float(batch.count) } }
                let hvp = model.secantHessianVectorProduct(images: validation.images, labels: validation.labels, direction: summed)
                let exactHVP = model.hessianVectorProduct(of: validationTrace, direction: summed)
                let validationLossBefore = validationTrace.losses.reduce(0, +) / Float(validationTrace.count)
                // Exact values by the ghost dot product: the batch against every validation example
                // (the Gram form In-Run uses), and the contraction with the HVP.
                var started = ContinuousClock.now
                let gram = model.ghostDotProducts(trace, validationTrace)
                let curvature = model.ghostDotProducts(trace, with: hvp)
                ghostTime += ContinuousClock.now - started
                let exactCurvature = model.ghostDotProducts(trace, with: exactHVP)
                let m = validationTrace.count
                for (slot, example) in batch.enumerated() {
                    let first = Double(rate) * gram[(slot * m)..<((slot + 1) * m)].reduce(0, +) / Double(m)
                    let second = Double(rate * rate) / 2 * curvature[slot]
                    exactFirst[example] += first
                    exactSecond[example] += second
                    predictedChange += first - second
                    predictedChangeExactHessian += first - Double(rate * rate) / 2 * exactCurvature[slot]
                }
                // The same dot products from materialised per-example gradients, timed and compared.
                started = ContinuousClock.now
                for (slot, example) in batch.enumerated() {
                    let g = model.gradient(of: trace, example: slot)
                    let first = Double(rate) * dot(g, validationGradient), second = Double(rate * rate) / 2 * dot(g, hvp)
                    materialisedFirst[example] += first
                    materialisedSecond[example] += second
                }
                materialisedTime += ContinuousClock.now - started
                // Sketches: every side for the k sweep; the first is logged to the store.
                let v = try definitions.map { try Projector.projectTensors(tensorList(validationGradient, model), definition: $0) }
                for (index, definition) in definitions.enumerated() {
                    let sketches = try GradientSketcher.sketch(trace, model: model, definition: definition)
                    for slot in 0..<batch.count {
                        var sum = 0.0
                        for j in 0..<definition.k { sum += Double(sketches[slot * definition.k + j]) * Double(v[index][j]) }
                        sketchedFirst[index][batch[slot]] += Double(rate) * sum
                    }
                    if index == 0 {
                        var annotations = RowAnnotations(ids: batch.map { "\(exampleIDs[$0])@\(step)" })
                        annotations.columns["step"] = [Double](repeating: Double(step), count: batch.count)
                        annotations.columns["learning_rate"] = [Double](repeating: Double(rate), count: batch.count)
                        _ = try sketches.withUnsafeBytes { bytes in
                            try logSession.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: batch.count, k: definition.k), annotations: annotations)
                        }
                    }
                }
                validationRows += v[0]
                hessianRows += try Projector.projectTensors(tensorList(hvp, model), definition: stored)
                // The SGD step itself (mean loss), then the validation loss change it caused:
                // efficiency says the values of the step sum to it (to second order).
                for (name, values) in summed {
                    model.parameters[name] = zip(model.parameters[name]!, values).map { $0 - rate * $1 }
                }
                actualChange += Double(validationLossBefore - meanLoss(model, validation))
                step += 1
            }
        }
        try logSession.commit(detail: "in-run log: per-step per-example sketches")
        for (name, rows) in [("inrun-validation", validationRows), ("inrun-hessian", hessianRows)] {
            _ = try rows.withUnsafeBytes { bytes in
                try store.append(to: name, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: step, k: stored.k),
                                 annotations: RowAnnotations(ids: (0..<step).map(String.init)), options: SketchSetOptions(dtype: .float32, attributes: attributes))
            }
        }
        // Values from the store.
        let values = try InRunValuation.values(log: try store.sketchSet("inrun-log"), validation: try store.sketchSet("inrun-validation"),
                                               hessian: try store.sketchSet("inrun-hessian"))
        var storedFirst = [Double](repeating: 0, count: data.count), storedTotal = [Double](repeating: 0, count: data.count)
        for value in values {
            let index = Int(value.example.dropFirst(2))!
            storedFirst[index] = value.firstOrder
            storedTotal[index] = value.total
        }
        try store.saveResult("inrun-values", method: "in-run-shapley/second-order", set: "inrun-log", setVersion: try store.latestVersion(),
                             parameters: ["validation": .string("inrun-validation"), "hessian": .string("inrun-hessian")],
                             positions: Array(0..<values.count), ids: values.map(\.example), scores: values.map(\.total))
        let exactTotal = zip(exactFirst, exactSecond).map { $0 - $1 }
        let sketches = c.sides.indices.map { index in
            SketchQuality(side: c.sides[index], k: definitions[index].k, spearman: spearman(sketchedFirst[index], exactFirst),
                          auc: auc(sketchedFirst[index], noisy))
        }.sorted { $0.k < $1.k }
        let efficiencyError = abs(predictedChange - actualChange) / abs(actualChange)
        let efficiencyErrorExactHessian = abs(predictedChangeExactHessian - actualChange) / abs(actualChange)
        log(String(format: "in-run: efficiency error with the R-operator's Hessian %.3f", efficiencyErrorExactHessian))
        log(String(format: "in-run: exact AUC %.3f (first order) %.3f (second); stored AUC %.3f / %.3f; efficiency error %.3f",
                   auc(exactFirst, noisy), auc(exactTotal, noisy), auc(storedFirst, noisy), auc(storedTotal, noisy),
                   efficiencyError))

        let materialisedTotal = zip(materialisedFirst, materialisedSecond).map { $0 - $1 }
        let ghostDifference = zip(exactTotal, materialisedTotal).map { abs($0 - $1) }.max()! / materialisedTotal.map(abs).max()!
        let ghostSeconds = Double(ghostTime.components.seconds) + Double(ghostTime.components.attoseconds) * 1e-18
        let materialisedSeconds = Double(materialisedTime.components.seconds) + Double(materialisedTime.components.attoseconds) * 1e-18
        log(String(format: "in-run: ghost dot products %.2f s (%.0f examples/s), materialised gradients %.2f s (%.0f examples/s); largest difference %.1e of the largest value",
                   ghostSeconds, Double(step * c.batch) / ghostSeconds, materialisedSeconds, Double(step * c.batch) / materialisedSeconds, ghostDifference))

        // Drop negatively valued data and retrain from the same start.
        let keep = (0..<data.count).filter { storedTotal[$0] >= 0 }
        let negative = data.count - keep.count
        let noisyNegative = (0..<data.count).filter { storedTotal[$0] < 0 && noisy[$0] }.count
        let testSet = ImageSubset(test, Array(0..<2000))
        let full = curve(MLP(hidden: c.hidden, seed: c.seed), data, testSet, c: c, steps: step)
        let pruned = curve(MLP(hidden: c.hidden, seed: c.seed), data.picking(keep), testSet, c: c, steps: step)
        // Also the lowest-valued 20 % only (about the injected noise rate).
        let lowest = Set((0..<data.count).sorted { storedTotal[$0] < storedTotal[$1] }.prefix(data.count / 5))
        let trimmed = curve(MLP(hidden: c.hidden, seed: c.seed), data.picking((0..<data.count).filter { !lowest.contains($0) }), testSet, c: c, steps: step)
        let lowestNoisy = lowest.filter { noisy[$0] }.count
        let target = full.last!.1
        let fullSteps = full.first { $0.1 >= target }!.0
        let prunedSteps = pruned.first { $0.1 >= target }?.0
        let trimmedSteps = trimmed.first { $0.1 >= target }?.0
        // The paper measures the speed-up in test loss: the steps to reach the full run's final loss.
        let targetLoss = full.last!.2
        let lossSteps = [full, pruned, trimmed].map { run in run.first { $0.2 <= targetLoss }?.0 }
        log(String(format: "in-run: test loss %.4f reached at step %@ with all data, %@ without the negatively valued, %@ without the lowest 20%%",
                   targetLoss, (lossSteps[0].map(String.init) ?? "never") as NSString, (lossSteps[1].map(String.init) ?? "never") as NSString,
                   (lossSteps[2].map(String.init) ?? "never") as NSString))
        log(String(format: "in-run: all data reaches %.3f at step %d; without the %d negatively valued examples (%d flipped) at step %@ (final %.3f); without the lowest 20%% (%d flipped) at step %@ (final %.3f)",
                   target, fullSteps, negative, noisyNegative, (prunedSteps.map(String.init) ?? "never") as NSString, pruned.last!.1,
                   lowestNoisy, (trimmedSteps.map(String.init) ?? "never") as NSString, trimmed.last!.1))
        return Outcome(steps: step, noisyExamples: noisy.filter { $0 }.count, exactFirstOrderAUC: auc(exactFirst, noisy),
                       exactSecondOrderAUC: auc(exactTotal, noisy), storedFirstOrderAUC: auc(storedFirst, noisy),
                       storedSecondOrderAUC: auc(storedTotal, noisy), storedSpearman: spearman(storedTotal, exactTotal),
                       efficiencyError: efficiencyError, efficiencyErrorExactHessian: efficiencyErrorExactHessian, sketches: sketches,
                       negativeShare: Double(negative) / Double(data.count),
                       noisyShareOfNegative: Double(noisyNegative) / Double(max(1, negative)),
                       fullStepsToTarget: fullSteps, prunedStepsToTarget: prunedSteps, targetAccuracy: target,
                       fullFinalAccuracy: target, prunedFinalAccuracy: pruned.last!.1,
                       lowestFifthFlipped: lowestNoisy, trimmedStepsToTarget: trimmedSteps, trimmedFinalAccuracy: trimmed.last!.1,
                       targetLoss: targetLoss, fullStepsToLoss: lossSteps[0], prunedStepsToLoss: lossSteps[1], trimmedStepsToLoss: lossSteps[2],
                       ghostSeconds: ghostSeconds, materialisedSeconds: materialisedSeconds, ghostRelativeDifference: ghostDifference)
    }

    public static func report(_ o: Outcome, configuration c: Configuration, into report: inout HTMLReport) {
        report.heading("In-Run Data Shapley / TracIn: finding flipped labels")
        report.paragraph("""
        MLP (\(c.hidden) hidden) trained by SGD (lr \(c.learningRate), batch \(c.batch), mean loss, \(o.steps) steps) on \
        \(c.trainExamples) images, \(o.noisyExamples) of them with a flipped label. Every step logs the batch's per-example \
        gradient sketches, the sketch of the validation-loss gradient (\(c.validationExamples) clean images) and the sketch of \
        the validation Hessian times the batch gradient (central differences over a displacement of norm 0.01) into the store; values \
        Σ_t η_t⟨v_t, s_t,z⟩ − (η_t²/2)⟨u_t, s_t,z⟩ (positive = helpful) are read back from it. Exact values come from \
        ghost dot products (per layer (a_i·a_j)(b_i·b_j) against every validation example, and b_iᵀ M a_i against the \
        HVP), which took \(String(format: "%.2f", o.ghostSeconds)) s for all steps against \
        \(String(format: "%.2f", o.materialisedSeconds)) s with materialised per-example gradients \
        (\(String(format: "%.1f", o.materialisedSeconds / o.ghostSeconds))× faster; they differ by at most \
        \(String(format: "%.0e", o.ghostRelativeDifference)) of the largest value). AUC: probability that a flipped example has a lower value than a clean one. \
        Efficiency: the values of a step sum to the validation-loss decrease it caused, here within \
        \(String(format: "%.1f%%", 100 * o.efficiencyError)) over the run. With the R-operator's Hessian-vector product, \
        exact between ReLU kinks, the error is \(String(format: "%.1f%%", 100 * o.efficiencyErrorExactHessian)): averaged \
        over 500 images the kinks add curvature that only the secant product sees, so it is the one stored.
        """)
        report.table(["values", "AUC (flipped labels have low value)"], [
            ["exact, first order (TracIn-ideal)", String(format: "%.3f", o.exactFirstOrderAUC)],
            ["exact, second order", String(format: "%.3f", o.exactSecondOrderAUC)],
            ["from the store, first order (k = \(c.sides.first.map { $0 * $0 } ?? 0)+…)", String(format: "%.3f", o.storedFirstOrderAUC)],
            ["from the store, second order", String(format: "%.3f", o.storedSecondOrderAUC)],
        ])
        report.table(["Kronecker side", "k", "Spearman(sketched, exact) first order", "AUC"],
                     o.sketches.map { ["\($0.side)", "\($0.k)", String(format: "%.3f", $0.spearman), String(format: "%.3f", $0.auc)] })
        report.bars("rank correlation of sketched with exact values as k grows (single run, seed \(c.seed))", o.sketches.map { ("k = \($0.k)", $0.spearman) }, maximum: 1)
        report.paragraph(String(format: """
        Retraining from the same start with the same SGD schedule (test accuracy on 2 000 test images every 20 steps): all \
        data reaches %.3f at step %d. Without the %.1f%% of examples with negative value (%.0f%% of them flipped): final \
        %.3f, the target reached at step %@. Without the lowest-valued 20%% (%d of them flipped, against %d flipped in all): \
        final %.3f, the target reached at step %@.
        """, o.targetAccuracy, o.fullStepsToTarget, 100 * o.negativeShare, 100 * o.noisyShareOfNegative, o.prunedFinalAccuracy,
                                    (o.prunedStepsToTarget.map(String.init) ?? "never") as NSString, o.lowestFifthFlipped, o.noisyExamples,
                                    o.trimmedFinalAccuracy, (o.trimmedStepsToTarget.map(String.init) ?? "never") as NSString))
        func steps(_ value: Int?) -> String { value.map { "step \($0)" } ?? "never" }
        report.paragraph("""
        In test loss, the paper's measure (it reports about 25 % fewer iterations without the negatively valued data): the \
        full run's final loss \(String(format: "%.4f", o.targetLoss)) is first reached at \(steps(o.fullStepsToLoss)) with all \
        data, at \(steps(o.prunedStepsToLoss)) without the negatively valued examples and at \(steps(o.trimmedStepsToLoss)) \
        without the lowest-valued 20 %. Dropping every negatively valued example lowers the loss sooner but costs accuracy: \
        it removes many clean examples with the flipped ones.
        """)
    }

    // MARK: - Helpers

    static func meanLoss(_ model: MLP, _ data: ImageSubset) -> Float {
        let trace = model.trace(images: data.images, labels: data.labels)
        return trace.losses.reduce(0, +) / Float(trace.count)
    }

    static func dot(_ a: [String: [Float]], _ b: [String: [Float]]) -> Double {
        a.reduce(0.0) { sum, entry in sum + zip(entry.value, b[entry.key]!).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }
    }

    static func tensorList(_ values: [String: [Float]], _ model: MLP) -> [(name: String, values: [Float])] {
        model.shapes.map { ($0.name, values[$0.name]!) }
    }

    /// (step, test accuracy) every 20 steps of SGD training on `data`.
    /// (step, test accuracy, test loss) every 20 steps of SGD training on `data`.
    static func curve(_ start: MLP, _ data: ImageSubset, _ test: ImageSubset, c: Configuration, steps: Int) -> [(Int, Double, Double)] {
        var points: [(Int, Double, Double)] = []
        var model = start
        var done = 0
        while done < steps {
            let chunk = min(20, steps - done)
            model = Experiments.train(model, on: data, optimizer: .sgd(learningRate: c.learningRate), steps: chunk, batch: c.batch, seed: c.seed &+ UInt64(done))
            done += chunk
            points.append((done, Experiments.accuracy(model, on: test), Double(meanLoss(model, test))))
        }
        return points
    }

    /// P(score of a positive < score of a negative): low values flag the positives.
    static func auc(_ scores: [Double], _ positive: [Bool]) -> Double {
        let ranked = scores.indices.sorted { scores[$0] < scores[$1] }
        var positivesSeen = 0.0, pairs = 0.0
        let positives = Double(positive.filter { $0 }.count), negatives = Double(positive.count) - positives
        for index in ranked.reversed() {  // from highest score down
            if positive[index] { positivesSeen += 1 } else { pairs += positivesSeen }
        }
        // pairs counts (positive above negative); we want positive below negative.
        return 1 - pairs / max(1, positives * negatives)
    }

    static func spearman(_ a: [Double], _ b: [Double]) -> Double {
        func ranks(_ v: [Double]) -> [Double] {
            var r = [Double](repeating: 0, count: v.count)
            for (rank, index) in v.indices.sorted(by: { v[$0] < v[$1] }).enumerated() { r[index] = Double(rank) }
            return r
        }
        let x = ranks(a), y = ranks(b)
        let mean = Double(a.count - 1) / 2
        let numerator = zip(x, y).reduce(0.0) { $0 + ($1.0 - mean) * ($1.1 - mean) }
        let denominator = x.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) }
        return numerator / denominator
    }
}
