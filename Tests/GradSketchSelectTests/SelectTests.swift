import Foundation
import GradSketchInterchange
import GradSketchSearch
import GradSketchSelect
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Selection and valuation against naive Double-precision references computed from the inputs.
@Suite struct SelectTests {
    /// A float16 set of `n` random rows (ids r0…, labels L0…L3, a loss column) plus the rows
    /// as stored (float16-rounded) for the reference.
    static func makeSet(_ scratch: TemporaryDirectory, n: Int, k: Int, seed: UInt64) throws -> (Store, [[Double]], [Double]) {
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: seed)
        let rows = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        let loss = (0..<n).map { _ in Double.random(in: 0...3, using: &generator) }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k),
                             annotations: RowAnnotations(ids: (0..<n).map { "r\($0)" }, labels: (0..<n).map { "L\($0 % 4)" }, columns: ["loss": loss]),
                             options: SketchSetOptions(dtype: .float16))
        }
        let stored = (0..<n).map { i in (0..<k).map { Double(Float(Float16(rows[i * k + $0]))) } }
        return (store, stored, loss)
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
    static func cosine(_ a: [Double], _ b: [Double]) -> Double { dot(a, b) / (dot(a, a) * dot(b, b)).squareRoot() }

    /// Batch 0 is greedy, 7 greedy-batched; `unitRows` sums unit-normalised rows (the oracle
    /// normalises them in Double first).
    @Test(arguments: [(0, false), (7, false), (0, true), (7, true)])
    func greedyIncrementalEqualsBruteForceRecomputation(batch: Int, unitRows: Bool) throws {
        let scratch = try TemporaryDirectory()
        let (store, stored, _) = try Self.makeSet(scratch, n: 300, k: 12, seed: 1)
        let rows = unitRows ? stored.map { row in row.map { $0 / Self.dot(row, row).squareRoot() } } : stored
        var generator = SplitMix64(seed: 2)
        let query = (0..<12).map { _ in Float.random(in: -1...1, using: &generator) }
        let q = query.map(Double.init)
        let result = try Select.run(try store.sketchSet("g"), query: query, count: 20, strategy: batch == 0 ? .greedy : .greedyBatched,
                                    batchSize: batch, unitRows: unitRows)
        // Brute force: recompute cos(S + s_i, q) for every candidate at every step.
        var sum = [Double](repeating: 0, count: 12)
        var taken = Set<Int>()
        var expected: [Int] = [], expectedScores: [Double] = []
        for step in 0..<20 {
            if batch > 0, step > 0, step % batch == 0 { sum = [Double](repeating: 0, count: 12) }
            var best = -1, bestScore = -Double.infinity
            for i in rows.indices where !taken.contains(i) {
                let score = Self.cosine(zip(sum, rows[i]).map { $0 + $1 }, q)
                if score > bestScore { best = i; bestScore = score }
            }
            taken.insert(best)
            expected.append(best)
            expectedScores.append(bestScore)
            sum = zip(sum, rows[best]).map { $0 + $1 }
        }
        #expect(result.positions == expected)
        #expect(result.ids == expected.map { "r\($0)" })
        for (got, want) in zip(result.scores, expectedScores) { #expect(abs(got - want) < 1e-5, "running cosine \(got) vs \(want)") }
        #expect(result.method == (batch == 0 ? "select/greedy" : "select/greedy-batched"))
        if unitRows {  // the rows' norms differ, so normalising must change the picks
            let plain = try Select.run(try store.sketchSet("g"), query: query, count: 20, strategy: batch == 0 ? .greedy : .greedyBatched, batchSize: batch)
            #expect(plain.positions != result.positions)
        }
    }

    @Test func topKBalancedRandomAndLossBaselinesMatchTheReference() throws {
        let scratch = try TemporaryDirectory()
        let (store, rows, loss) = try Self.makeSet(scratch, n: 200, k: 10, seed: 3)
        let set = try store.sketchSet("g")
        let query: [Float] = (0..<10).map { Float($0) / 10 - 0.4 }
        let q = query.map(Double.init)
        let cosines = rows.map { Self.cosine($0, q) }
        let byCosine = cosines.indices.sorted { cosines[$0] != cosines[$1] ? cosines[$0] > cosines[$1] : $0 < $1 }
        #expect(try Select.run(set, query: query, count: 15, strategy: .topK).positions == Array(byCosine.prefix(15)))

        // Balanced: quota ⌈15/4⌉ = 4 per label, filled in cosine order.
        var taken: [Int: Int] = [:], balanced: [Int] = []
        for i in byCosine where balanced.count < 15 && taken[i % 4, default: 0] < 4 { taken[i % 4, default: 0] += 1; balanced.append(i) }
        let balancedResult = try Select.run(set, query: query, count: 15, strategy: .balancedTopK)
        #expect(balancedResult.positions == balanced)

        let low = loss.indices.sorted { loss[$0] < loss[$1] }
        #expect(try Select.run(set, query: query, count: 5, strategy: .lowestLoss).positions == Array(low.prefix(5)))
        #expect(try Select.run(set, query: query, count: 5, strategy: .highestLoss).positions == Array(low.reversed().prefix(5)))

        let first = try Select.run(set, query: query, count: 50, strategy: .random, seed: 9)
        #expect(Set(first.positions).count == 50)
        #expect(try Select.run(set, query: query, count: 50, strategy: .random, seed: 9) == first)
        #expect(try Select.run(set, query: query, count: 50, strategy: .random, seed: 10).positions != first.positions)

        #expect(throws: StoreError.self) { try Select.run(set, query: query, count: 201, strategy: .topK) }
        #expect(throws: StoreError.self) { try Select.run(set, query: [Float](repeating: 0, count: 10), count: 3, strategy: .greedy) }
        #expect(throws: StoreError.self) { try Select.run(set, query: query, count: 3, strategy: .greedyBatched, batchSize: 0) }
    }

    /// The LSH sketch estimates Σ_j p(‖x_i − x_j‖) with the p-stable collision probability of
    /// Datar et al.: p(c) = 1 − 2Φ(−w/c) − (2c / (√(2π) w)) (1 − e^{−w²/(2c²)}).
    @Test func densityScoresTrackTheExactKernelSumAndSamplingFavoursRareRows() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 4)
        let k = 6
        // 450 rows in a tight cluster, 50 spread widely.
        var rows: [Float] = []
        for i in 0..<500 {
            let spread: Float = i < 450 ? 0.3 : 3
            rows += (0..<k).map { _ in Float.random(in: -spread...spread, using: &generator) }
        }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "e", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: 500, k: k),
                             annotations: RowAnnotations(ids: (0..<500).map { "e\($0)" }), options: SketchSetOptions(dtype: .float32))
        }
        let set = try store.sketchSet("e")
        var options = DensitySampling.Options()
        options.hashes = 400
        options.width = 1.0
        let (scores, width) = try DensitySampling.scores(set, options: options)
        #expect(width == 1.0)
        func p(_ c: Double) -> Double {
            if c == 0 { return 1 }
            let phi = 0.5 * erfc((width / c) / 2.0.squareRoot())  // Φ(−w/c)
            return 1 - 2 * phi - 2 * c / ((2 * Double.pi).squareRoot() * width) * (1 - exp(-width * width / (2 * c * c)))
        }
        let exact = (0..<500).map { i in
            (0..<500).reduce(0.0) { sum, j in
                let c = (0..<k).reduce(0.0) { $0 + pow(Double(rows[i * k + $1]) - Double(rows[j * k + $1]), 2) }.squareRoot()
                return sum + p(c)
            }
        }
        func ranks(_ v: [Double]) -> [Double] {
            var r = [Double](repeating: 0, count: v.count)
            for (rank, index) in v.indices.sorted(by: { v[$0] < v[$1] }).enumerated() { r[index] = Double(rank) }
            return r
        }
        let (a, b) = (ranks(scores), ranks(exact))
        let mean = Double(499) / 2
        let spearman = zip(a, b).reduce(0.0) { $0 + ($1.0 - mean) * ($1.1 - mean) } / a.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) }
        #expect(spearman > 0.9, "Spearman(sketch, exact kernel sum) = \(spearman)")
        // Collisions within one hash are correlated (a whole cluster shares a bucket), so single
        // estimates scatter more than independent draws would; the mean error stays small.
        let relativeErrors = zip(scores, exact).map { abs($0 - $1) / $1 }
        #expect(relativeErrors.reduce(0, +) / 500 < 0.08, "mean relative error \(relativeErrors.reduce(0, +) / 500)")
        for (estimate, truth) in zip(scores, exact) { #expect(abs(estimate - truth) < 0.35 * truth + 5, "\(estimate) vs \(truth)") }

        // Inverse propensity: the 50 spread rows are 10 % of the set; a first draw picks one with
        // probability Σ_rare 1/K_i / Σ_all 1/K_i under the exact kernel sums K.
        let firstDraw = exact[450...].reduce(0) { $0 + 1 / $1 } / exact.reduce(0) { $0 + 1 / $1 }
        let sample = try DensitySampling.sample(set, count: 50, options: options)
        let rare = sample.positions.filter { $0 >= 450 }.count
        #expect(Set(sample.positions).count == 50)
        #expect(rare >= 10, "rare rows in the inverse-propensity sample: \(rare) of 50 (random would give 5)")
        #expect(abs(Double(rare) / 50 - firstDraw) < 0.2, "sampled share \(Double(rare) / 50), first-draw share \(firstDraw)")

        // Power 3: three projections per hash, kernel p(c)³.
        options.power = 3
        options.width = 2.0
        let (cubed, _) = try DensitySampling.scores(set, options: options)
        let exactCubed = (0..<500).map { i in
            (0..<500).reduce(0.0) { sum, j in
                let c = (0..<k).reduce(0.0) { $0 + pow(Double(rows[i * k + $1]) - Double(rows[j * k + $1]), 2) }.squareRoot()
                let q = c == 0 ? 1 : 1 - 2 * 0.5 * erfc((2.0 / c) / 2.0.squareRoot()) - 2 * c / ((2 * Double.pi).squareRoot() * 2.0) * (1 - exp(-4.0 / (2 * c * c)))
                return sum + q * q * q
            }
        }
        let (c3, e3) = (ranks(cubed), ranks(exactCubed))
        let spearmanCubed = zip(c3, e3).reduce(0.0) { $0 + ($1.0 - mean) * ($1.1 - mean) } / c3.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) }
        #expect(spearmanCubed > 0.9, "Spearman(sketch with power 3, exact Σ p³) = \(spearmanCubed)")
        options.power = 1

        // A huge width puts everything in one bucket: every score is N.
        options.width = 1e9
        #expect(try DensitySampling.scores(set, options: options).scores.allSatisfy { $0 == 500 })
    }

    @Test func inRunValuesEqualTheNaiveSumsAndTracInCheckpointsMatchByID() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 5)
        let k = 8, steps = 6, batch = 4
        var logRows: [Float] = [], logIDs: [String] = [], stepColumn: [Double] = [], rateColumn: [Double] = []
        var expectedFirst: [String: Double] = [:], expectedSecond: [String: Double] = [:]
        let validation = (0..<(steps * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        let hessian = (0..<(steps * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        for t in 0..<steps {
            let rate = 0.1 / Double(t + 1)
            for slot in 0..<batch {
                let example = "doc\((t * 3 + slot) % 10)"
                let row = (0..<k).map { _ in Float.random(in: -1...1, using: &generator) }
                logRows += row
                logIDs.append("\(example)@\(t)")
                stepColumn.append(Double(t))
                rateColumn.append(rate)
                let v = (0..<k).map { Double(validation[t * k + $0]) }, u = (0..<k).map { Double(hessian[t * k + $0]) }
                let s = row.map(Double.init)
                expectedFirst[example, default: 0] += rate * Self.dot(v, s)
                expectedSecond[example, default: 0] += rate * rate / 2 * Self.dot(u, s)
            }
        }
        _ = try logRows.withUnsafeBytes { bytes in
            try store.append(to: "log", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: logIDs.count, k: k),
                             annotations: RowAnnotations(ids: logIDs, columns: ["step": stepColumn, "learning_rate": rateColumn]),
                             options: SketchSetOptions(dtype: .float32))
        }
        for (name, values) in [("val", validation), ("hvp", hessian)] {
            _ = try values.withUnsafeBytes { bytes in
                try store.append(to: name, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: steps, k: k),
                                 annotations: RowAnnotations(ids: (0..<steps).map(String.init)), options: SketchSetOptions(dtype: .float32))
            }
        }
        let values = try InRunValuation.values(log: try store.sketchSet("log"), validation: try store.sketchSet("val"), hessian: try store.sketchSet("hvp"))
        #expect(Set(values.map(\.example)) == Set(expectedFirst.keys))
        for value in values {
            #expect(abs(value.firstOrder - expectedFirst[value.example]!) < 1e-5)
            #expect(abs(value.secondOrder - expectedSecond[value.example]!) < 1e-5)
            #expect(abs(value.total - (expectedFirst[value.example]! - expectedSecond[value.example]!)) < 1e-5)
        }
        #expect(values.reduce(0) { $0 + $1.appearances } == steps * batch)
        #expect(throws: StoreError.self) { try InRunValuation.values(log: try store.sketchSet("val"), validation: try store.sketchSet("val")) }

        // TracIn-CP: the log and validation sets as two "checkpoints" would need equal ids; use
        // the validation set twice with different weights, queried by a fixed vector.
        let probe: [Float] = (0..<k).map { Float($0) - 3 }
        let tracin = try TracInCheckpoints.values([(try store.sketchSet("val"), probe, 0.5), (try store.sketchSet("val"), probe, 1.5)])
        for (position, entry) in tracin.enumerated() {
            let row = (0..<k).map { Double(validation[position * k + $0]) }
            #expect(entry.id == String(position))
            #expect(abs(entry.value - 2 * Self.dot(row, probe.map(Double.init))) < 1e-4)
        }
    }

    @Test func resultsAreSavedVersionedAndVerified() throws {
        let scratch = try TemporaryDirectory()
        let (store, _, _) = try Self.makeSet(scratch, n: 100, k: 8, seed: 6)
        let set = try store.sketchSet("g")
        let result = try Select.run(set, query: [Float](repeating: 0.5, count: 8), count: 10, strategy: .greedy)
        let version = try store.saveResult("pick", method: result.method, set: result.set, setVersion: result.setVersion,
                                           parameters: result.parameters, positions: result.positions, ids: result.ids, scores: result.scores)
        let loaded = try store.result("pick")
        #expect(loaded.ids == result.ids && loaded.positions == result.positions && loaded.scores == result.scores)
        #expect(loaded.entry.method == "select/greedy" && loaded.entry.setVersion == set.version && loaded.entry.count == 10)
        #expect(throws: StoreError.self) { try store.result("pick", at: version - 1) }
        #expect(throws: StoreError.self) {
            try store.saveResult("pick", method: "x", set: "g", setVersion: 1, parameters: [:], positions: [], ids: [], scores: [])
        }
        // A result's rows lie in the set and version it names (Spec §11): 100 rows in "g".
        let before = try store.latestVersion()
        #expect(throws: StoreError.self) {
            try store.saveResult("nowhere", method: "x", set: "missing", setVersion: set.version, parameters: [:], positions: [0], ids: ["0"], scores: [1])
        }
        #expect(throws: StoreError.self) {
            try store.saveResult("outside", method: "x", set: "g", setVersion: set.version, parameters: [:], positions: [100], ids: ["100"], scores: [1])
        }
        #expect(throws: StoreError.self) {
            try store.saveResult("negative", method: "x", set: "g", setVersion: set.version, parameters: [:], positions: [-1], ids: ["-1"], scores: [1])
        }
        #expect(try store.latestVersion() == before)
        try store.saveResult("last-row", method: "x", set: "g", setVersion: set.version, parameters: [:], positions: [99], ids: ["99"], scores: [1])
        #expect(try store.verify().problems.isEmpty)
        let report = try store.vacuum(keepLast: 1, grace: 0)
        #expect(!report.removedFiles.contains(loaded.entry.file))
        #expect(try store.result("pick").ids == result.ids)
    }

    @Test func gradExEstimatesEnsembleAndForwardSelectionMatchTheirDefinitions() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 8)
        let k = 6, perSource = 15, sourceCount = 5
        let rows = (0..<(perSource * sourceCount * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        let labels = (0..<(perSource * sourceCount)).map { "src\($0 % sourceCount)" }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "meta", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: labels.count, k: k),
                             annotations: RowAnnotations(labels: labels), options: SketchSetOptions(dtype: .float32))
        }
        let gradex = try GradEx(try store.sketchSet("meta"))
        #expect(gradex.sources == (0..<sourceCount).map { "src\($0)" })
        let v: [Float] = [0.5, -1, 0.25, 2, -0.5, 1]

        // Linear estimate: L − step · ⟨v, mean of the subset's rows⟩.
        let subset = [1, 3]
        let members = (0..<labels.count).filter { subset.contains($0 % sourceCount) }
        var mean = [Double](repeating: 0, count: k)
        for i in members { for j in 0..<k { mean[j] += Double(rows[i * k + j]) / Double(members.count) } }
        let expected = 2.0 - 0.3 * zip(v, mean).reduce(0) { $0 + Double($1.0) * $1.1 }
        #expect(abs(try gradex.estimate(subset, validation: v, baseLoss: 2, step: 0.3) - expected) < 1e-9)

        // Logistic regression: the gradient of the objective vanishes at the solution (KKT).
        let features = members.flatMap { i in (0..<k).map { -rows[i * k + $0] } }
        let c = 0.5
        let z = GradEx.positiveLogisticRegression(features: features, count: members.count, width: k, c: c)
        var gradient = z.map { $0 / c }
        for i in 0..<members.count {
            let margin = (0..<k).reduce(0.0) { $0 + Double(features[i * k + $1]) * z[$1] }
            let weight = 1 / (1 + exp(margin))  // σ(−margin)
            for j in 0..<k { gradient[j] -= weight * Double(features[i * k + j]) }
        }
        #expect(gradient.reduce(0) { $0 + $1 * $1 }.squareRoot() < 1e-6, "objective gradient at the solution: \(gradient)")
        let logistic = try gradex.estimate(subset, validation: v, baseLoss: 2, step: 0.3, estimator: .logistic, regularization: c)
        let length = z.reduce(0) { $0 + $1 * $1 }.squareRoot(), target = 0.3 * mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
        #expect(abs(logistic - (2 + zip(v, z).reduce(0) { $0 + Double($1.0) * $1.1 * target / length })) < 1e-9)

        // A feature-scale column multiplies the logistic features only (the margin-gradient form):
        // the fit equals one on the scaled features, the linear estimate is unchanged, and a
        // non-positive factor is refused.
        let scale = (0..<labels.count).map { 0.5 + Double($0 % 4) * 0.5 }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "scaled", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: labels.count, k: k),
                             annotations: RowAnnotations(labels: labels, columns: ["scale": scale, "bad": scale.map { $0 - 1 }]),
                             options: SketchSetOptions(dtype: .float32))
        }
        let scaled = try GradEx(try store.sketchSet("scaled"), featureScaleColumn: "scale")
        let scaledFeatures = members.flatMap { i in (0..<k).map { -rows[i * k + $0] * Float(scale[i]) } }
        let zScaled = GradEx.positiveLogisticRegression(features: scaledFeatures, count: members.count, width: k, c: c)
        let scaledLength = zScaled.reduce(0) { $0 + $1 * $1 }.squareRoot()
        #expect(abs(try scaled.estimate(subset, validation: v, baseLoss: 2, step: 0.3, estimator: .logistic, regularization: c)
                    - (2 + zip(v, zScaled).reduce(0) { $0 + Double($1.0) * $1.1 * target / scaledLength })) < 1e-9)
        #expect(abs(try scaled.estimate(subset, validation: v, baseLoss: 2, step: 0.3) - expected) < 1e-9)
        #expect(throws: StoreError.self) { try GradEx(try store.sketchSet("scaled"), featureScaleColumn: "bad") }

        // Ensemble: each score is the mean estimate of the subsets holding the source.
        let additive: [Double] = [0.3, -0.2, 0.1, -0.4, 0.05]
        let estimate = { (s: [Int]) -> Double in s.reduce(1.0) { $0 + additive[$1] } }
        let ensemble = gradex.randomEnsemble(subsets: 40, fraction: 0.5, seed: 3, estimate: estimate)
        #expect(ensemble.subsets.allSatisfy { $0.count == 3 })
        for source in 0..<sourceCount {
            let holding = ensemble.subsets.indices.filter { ensemble.subsets[$0].contains(source) }
            #expect(abs(ensemble.scores[source] - holding.map { ensemble.estimates[$0] }.reduce(0, +) / Double(holding.count)) < 1e-12)
        }
        // Forward selection on an additive estimate takes exactly the helpful sources, best first.
        #expect(gradex.forwardSelection(estimate: estimate) == [3, 1])
    }

    @Test func paserBudgetsConceptRuleAndSpectralClustersMatchHandComputedCases() throws {
        // Budgets: CDS = mean degradation per cluster (negatives count 0): 1.0, 3.0, 0. The released
        // code floors 10·1/4 and 10·3/4; the filled split gives the spare row to the larger fraction
        // (a tie here, so the lower cluster).
        let degradation6: [Double] = [1, 1, 2, 4, -1, -3], clusters6 = [0, 0, 1, 1, 2, 2]
        #expect(PASER.allocate(budget: 10, degradation: degradation6, clusters: clusters6, allocation: .releasedCode) == [0: 2, 1: 7, 2: 0])
        #expect(PASER.allocate(budget: 3, degradation: degradation6, clusters: clusters6) == [0: 1, 1: 2, 2: 0])
        // A small cluster whose share exceeds its size is capped and the rest re-split: sizes 2, 6,
        // 2 with CDS 10, 1, 1 and 6 rows → shares 5, 0.5, 0.5 → cluster 0 capped at 2, then 2 and 2.
        // The released code spends 2 of the 6 (⌊5⌋ = 5 asked of a 2-row cluster, ⌊0.5⌋ = 0 twice).
        let degradation10: [Double] = [10, 10, 1, 1, 1, 1, 1, 1, 1, 1], clusters10 = [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
        #expect(PASER.allocate(budget: 6, degradation: degradation10, clusters: clusters10) == [0: 2, 1: 2, 2: 2])
        #expect(PASER.allocate(budget: 6, degradation: degradation10, clusters: clusters10, allocation: .releasedCode) == [0: 5, 1: 0, 2: 0])
        // Equal shares of 7 → 7/3 each; clusters 0 and 2 hold 2 rows, so cluster 1 takes the other 3.
        #expect(PASER.allocate(budget: 7, degradation: degradation10, clusters: clusters10, allocation: .uniform) == [0: 2, 1: 3, 2: 2])
        // Clusters with CDS 0 get rows only once the others are full: 5 rows with CDS 5, 1, 0 on
        // clusters of two → 2, 2 and the last to cluster 2; a budget over N stops at N.
        let degradationZero: [Double] = [5, 5, 1, 1, 0, 0]
        #expect(PASER.allocate(budget: 5, degradation: degradationZero, clusters: clusters6) == [0: 2, 1: 2, 2: 1])
        #expect(PASER.allocate(budget: 9, degradation: degradationZero, clusters: clusters6) == [0: 2, 1: 2, 2: 2])
        // Concept rule: with a–b and c–d known but a, c unlinked, {a, b, x} is consistent, {a, c} is
        // not. A lone concept adds no node (the released code grows its graph edge by edge).
        var graph: [String: Set<String>] = [:]
        PASER.addClique(["a", "b"], to: &graph)
        PASER.addClique(["c", "d", "c"], to: &graph)
        PASER.addClique(["z"], to: &graph)
        #expect(graph == ["a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]])
        #expect(PASER.isConsistent(["a", "b", "x"], with: graph))
        #expect(!PASER.isConsistent(["a", "c"], with: graph))
        #expect(PASER.isConsistent(["x", "y"], with: graph))
        #expect(PASER.isConsistent(["a", "z"], with: graph))

        // RAKE on the example of Rose et al. (2010): degree ÷ frequency by hand, e.g. "linear" is in
        // "linear constraints" and "linear diophantine equations" (degree 2 + 3, frequency 2: 2.5),
        // so "linear diophantine equations" scores 2.5 + 3 + 3 = 8.5 and "linear constraints" 4.5, the
        // paper's figures. Ties keep the order of first appearance; a repeated phrase is listed once.
        let abstract = """
        Compatibility of systems of linear constraints over the set of natural numbers. Criteria of compatibility \
        of a system of linear Diophantine equations, strict inequations, and nonstrict inequations are considered.
        """
        let ranked = RAKE.rankedPhrases(abstract)
        #expect(ranked.map(\.phrase) == ["linear diophantine equations", "linear constraints", "natural numbers", "strict inequations",
                                         "nonstrict inequations", "compatibility", "systems", "set", "criteria", "system", "considered"])
        #expect(ranked.map(\.score) == [8.5, 4.5, 4, 4, 4, 1, 1, 1, 1, 1, 1])
        // Tokens as NLTK's wordpunct_tokenize cuts them; every punctuation run ends a phrase.
        #expect(RAKE.candidatePhrases("The model's output—isn't it great?! Yes") == [["model"], ["output"], ["great"], ["yes"]])
        #expect(RAKE.candidatePhrases("red wine and cheese", stopwords: ["wine"]) == [["red"], ["and", "cheese"]])

        // Jensen–Shannon divergence (nats), hand-computed with Python's math.log: disjoint
        // supports give ln 2, identical inputs 0, and it is symmetric.
        #expect(abs(PASER.jensenShannon([1, 0], [0, 1]) - log(2)) < 1e-15)
        #expect(PASER.jensenShannon([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0)
        #expect(abs(PASER.jensenShannon([0.5, 0.5], [1, 0]) - 0.21576155433883565) < 1e-15)
        #expect(abs(PASER.jensenShannon([0.7, 0.2, 0.1], [0.1, 0.3, 0.6]) - 0.23064548790411332) < 1e-15)
        #expect(PASER.jensenShannon([0.1, 0.3, 0.6], [0.7, 0.2, 0.1]) == PASER.jensenShannon([0.7, 0.2, 0.1], [0.1, 0.3, 0.6]))

        // Four planted directions: spectral clusters recover them (purity over 0.95).
        var generator = SplitMix64(seed: 9)
        let k = 12, n = 400
        let centres = (0..<(4 * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        var rows = [Float](), truth = [Int]()
        for i in 0..<n {
            let c = i % 4
            truth.append(c)
            rows += (0..<k).map { centres[c * k + $0] + Float.random(in: -0.15...0.15, using: &generator) }
        }
        var options = PASER.Options()
        options.clusters = 4
        let labels = PASER.spectralClusters(rows: rows, count: n, width: k, options: options)
        var agreeing = 0
        for c in 0..<4 {
            let members = (0..<n).filter { truth[$0] == c }.map { labels[$0] }
            agreeing += Dictionary(grouping: members, by: { $0 }).values.map(\.count).max()!
        }
        #expect(Double(agreeing) / Double(n) > 0.95, "purity \(Double(agreeing) / Double(n))")
        #expect(Set(labels).count == 4)

        // Selection over a store: budgets respected, each cluster in efficiency order, the concept filter applied.
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let degradation = (0..<n).map { Double(($0 * 37) % 101) / 100 }
        let concepts = (0..<n).map { $0 % 10 == 0 ? "[\"shoe\", \"red\"]" : ($0 % 10 == 5 ? "[\"shoe\", \"blue\", \"red\"]" : "[]") }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "pool", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k),
                             annotations: RowAnnotations(metadata: concepts, metadataKind: .json, columns: ["degradation": degradation]),
                             options: SketchSetOptions(dtype: .float32))
        }
        let result = try PASER.select(try store.sketchSet("pool"), budget: 60, degradationColumn: "degradation", concepts: .metadataArrays, options: options)
        #expect(result.positions.count <= 60 && Set(result.positions).count == result.positions.count)
        // Clusters computed once and passed in give the same selection; a wrong count is refused.
        let given = try PASER.select(try store.sketchSet("pool"), budget: 60, degradationColumn: "degradation", concepts: .metadataArrays,
                                     options: options, clusters: labels)
        #expect(given.positions == result.positions)
        #expect(throws: StoreError.self) {
            try PASER.select(try store.sketchSet("pool"), budget: 60, degradationColumn: "degradation", options: options, clusters: [0, 1])
        }
        var perCluster: [Int: [Int]] = [:]
        for position in result.positions { perCluster[labels[position], default: []].append(position) }
        for members in perCluster.values { #expect(members.map { degradation[$0] } == members.map { degradation[$0] }.sorted(by: >)) }
        // The kNN graph: exact and through a cosine IVF index probed in full both equal a naive
        // Double cosine top-10; an inner-product index is refused.
        var naive = [Set<Int>]()
        func norm(_ i: Int) -> Double { (0..<k).reduce(0.0) { $0 + Double(rows[i * k + $1]) * Double(rows[i * k + $1]) }.squareRoot() }
        for i in 0..<n {
            let cosines = (0..<n).map { j in j == i ? -Double.infinity : (0..<k).reduce(0.0) { $0 + Double(rows[i * k + $1]) * Double(rows[j * k + $1]) } / (norm(i) * norm(j)) }
            naive.append(Set((0..<n).sorted { cosines[$0] > cosines[$1] }.prefix(10)))
        }
        var cosine = IVFBuildOptions()
        cosine.metric = .cosine
        _ = try IVFIndexBuilder.build(try store.sketchSet("pool"), in: store, name: "cos", options: cosine)
        _ = try IVFIndexBuilder.build(try store.sketchSet("pool"), in: store, name: "ip")
        let pool = try store.sketchSet("pool")
        let exactGraph = PASER.exactNeighbours(rows: rows, count: n, width: k, neighbours: 10)
        let lists = try IVFSearcher(set: pool, index: "cos").lists
        let indexedGraph = try PASER.indexedNeighbours(pool, index: "cos", neighbours: 10, parameters: IVFSearchParameters(nprobe: lists, rerank: 64))
        var shared = 0
        for i in 0..<n {
            #expect(Set(exactGraph[i].map(\.row)) == naive[i], "row \(i)")
            shared += Set(indexedGraph[i].map(\.row)).intersection(naive[i]).count
        }
        #expect(shared == 10 * n, "indexed neighbours shared with the naive ones: \(shared) of \(10 * n)")
        #expect(throws: StoreError.self) { try PASER.indexedNeighbours(pool, index: "ip", neighbours: 10) }
        var indexed = options
        indexed.index = "cos"
        #expect(try PASER.select(pool, budget: 60, degradationColumn: "degradation", concepts: .metadataArrays, options: indexed).positions.count <= 60)

        // Once "shoe"–"red" is in the graph, a row adding "blue" with both is still consistent only
        // if blue is unknown; never two rows whose known concepts are unlinked.
        var graph2: [String: Set<String>] = [:]
        for position in result.positions {
            let items = position % 10 == 0 ? ["shoe", "red"] : (position % 10 == 5 ? ["shoe", "blue", "red"] : [])
            #expect(PASER.isConsistent(items, with: graph2))
            PASER.addClique(items, to: &graph2)
        }
    }
}

/// PASER's exact neighbour graph at the edges of float32 (issue 12, item 11, applied to the
/// selection side): a row's twin scaled by 1e25 or 1e-25 is still its nearest neighbour.
@Suite struct NeighbourExtremesTests {
    @Test func twinsAtExtremeScalesAreNearestNeighbours() {
        var generator = SplitMix64(seed: 17)
        let half = 30, d = 16
        let base = (0..<(half * d)).map { _ in Float.random(in: -1...1, using: &generator) }
        let huge = base.map { $0 * 1e25 }, tiny = base.map { $0 * 1e-25 }
        let rows = base + huge + tiny
        let graph = PASER.exactNeighbours(rows: rows, count: 3 * half, width: d, neighbours: 2)
        for i in 0..<half {
            for (row, twins) in [(i, [half + i, 2 * half + i]), (half + i, [i, 2 * half + i]), (2 * half + i, [i, half + i])] {
                #expect(Set(graph[row].map(\.row)) == Set(twins), "row \(row): \(graph[row])")
                #expect(graph[row].allSatisfy { abs($0.similarity - 1) <= 1e-5 }, "row \(row): \(graph[row])")
            }
        }
    }
}

/// Greedy selection over rows of norms 1e-20 … 1e20 (issue 12, item 11, on the selection
/// side) against a binary64 brute force: each pick's running cosine is the true one, and no
/// other candidate would have scored more (ties among negligible rows may fall either way).
@Suite struct GreedyExtremesTests {
    @Test(arguments: [false, true])
    func greedyPicksAreOptimalAtExtremeScales(unitRows: Bool) throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 23)
        let n = 90, k = 10
        let scales: [Float] = [1e20, 1e-20, 1]
        let rows = (0..<n).map { i in (0..<k).map { _ in Float.random(in: -1...1, using: &generator) * scales[i % 3] } }
        try rows.flatMap { $0 }.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: n, k: k))
        }
        let query = (0..<k).map { _ in Float.random(in: -1...1, using: &generator) * 1e19 }
        let result = try Select.run(try store.sketchSet("g"), query: query, count: 12, strategy: .greedy, unitRows: unitRows)
        func vector(_ i: Int) -> [Double] {
            let row = rows[i].map(Double.init)
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return unitRows ? row.map { $0 / norm } : row
        }
        func cosine(_ x: [Double]) -> Double {
            let q = query.map(Double.init)
            let dot = zip(x, q).reduce(0) { $0 + $1.0 * $1.1 }
            let norms = x.reduce(0) { $0 + $1 * $1 }.squareRoot() * q.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return norms > 0 ? dot / norms : 0
        }
        var sum = [Double](repeating: 0, count: k)
        var taken = Set<Int>()
        for (position, score) in zip(result.positions, result.scores) {
            let best = (0..<n).filter { !taken.contains($0) }.map { cosine(zip(sum, vector($0)).map(+)) }.max()!
            let picked = cosine(zip(sum, vector(position)).map(+))
            #expect(abs(score - picked) <= 1e-5, "reported \(score), true \(picked)")
            #expect(picked >= best - 1e-5, "picked \(position) scoring \(picked), best \(best)")
            taken.insert(position)
            sum = zip(sum, vector(position)).map(+)
        }
    }
}
