import Foundation
import GradSketchInterchange
public import GradSketchModels
import GradSketchSelect
public import GradSketchStore

/// Density sampling on a heavily imbalanced Fashion-MNIST pool: five common classes and five
/// rare ones. Inverse-propensity sampling over stored embeddings (the pixel vectors) against
/// uniform sampling at the same budget: how many rare examples each keeps, and the test
/// accuracy of a model trained on each sample.
public struct DensityExperiment: ReportedExperiment {
    public static var defaultConfiguration: Configuration { Configuration() }

    public struct Configuration: Sendable {
        public var commonPerClass = 4000
        public var rarePerClass = 40
        public var budget = 1000
        public var seeds: [UInt64] = [1, 2, 3]
        public var hashes = 200
        public var buckets = 20_000
        /// Bucket width as a multiple of the median nearest-neighbour distance of a sample.
        public var widthScale = 2.0
        /// Projections per hash (the kernel is p(c)^power).
        public var power = 8
        public init() {}
    }

    public struct Row: Sendable, Codable {
        public let sampler: String
        public let seed: UInt64
        public let rareExamples: Int
        public let rareClassesWithTen: Int
        public let accuracy: Double
        public let rareClassAccuracy: Double
    }

    public struct Outcome: Sendable, Codable {
        public let poolSize: Int
        public let rareShareOfPool: Double
        public let width: Double
        public let rows: [Row]
    }

    public static func run(store: Store, train: FashionMNIST, test: FashionMNIST, configuration c: Configuration,
                           log: (String) -> Void) throws -> Outcome {
        var random = SeededRandom(seed: 11)
        var order = Array(0..<train.count)
        random.shuffle(&order)
        var picked: [Int] = []
        for label in 0..<10 {
            let quota = label < 5 ? c.commonPerClass : c.rarePerClass
            picked += order.filter { train.labels[$0] == label }.prefix(quota)
        }
        random.shuffle(&picked)
        let pool = ImageSubset(train, picked)
        _ = try pool.images.withUnsafeBytes { bytes in
            try store.append(to: "density-pool", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: pool.count, k: 784),
                             annotations: RowAnnotations(ids: picked.map(train.id), labels: pool.labels.map { FashionMNIST.classNames[$0] }),
                             options: SketchSetOptions(dtype: .float16, attributes: ["embedding": .string("pixels / 255")]))
        }
        let set = try store.sketchSet("density-pool")
        let testSet = ImageSubset(test, Array(0..<test.count))
        let rareTest = testSet.picking(testSet.labels.indices.filter { testSet.labels[$0] >= 5 })
        log("density: pool of \(pool.count) (classes 5–9 have \(c.rarePerClass) each)")
        var rows: [Row] = []
        var width = 0.0
        for seed in c.seeds {
            var options = DensitySampling.Options()
            options.hashes = c.hashes
            options.buckets = c.buckets
            options.seed = seed
            options.power = c.power
            options.width = c.widthScale * (try DensitySampling.medianNearestNeighbourDistance(set, seed: seed))
            let density = try DensitySampling.sample(set, count: c.budget, options: options)
            width = options.width!
            try store.saveResult("density-\(seed)", method: density.method, set: density.set, setVersion: density.setVersion,
                                 parameters: density.parameters, positions: density.positions, ids: density.ids, scores: density.scores)
            var uniform = SeededRandom(seed: seed &* 7919)
            var all = Array(0..<pool.count)
            uniform.shuffle(&all)
            for (name, positions) in [("density (1/score)", density.positions), ("uniform", Array(all.prefix(c.budget)))] {
                let sample = pool.picking(positions)
                let rare = sample.labels.filter { $0 >= 5 }
                let classesWithTen = (5..<10).filter { label in rare.filter { $0 == label }.count >= 10 }.count
                let model = Experiments.train(MLP(hidden: 64, seed: seed), on: sample, optimizer: .adam(learningRate: 1e-3),
                                              steps: 400, batch: 64, seed: seed)
                rows.append(Row(sampler: name, seed: seed, rareExamples: rare.count, rareClassesWithTen: classesWithTen,
                                accuracy: Experiments.accuracy(model, on: testSet), rareClassAccuracy: Experiments.accuracy(model, on: rareTest)))
                log(String(format: "density: seed %d %-18@ rare examples %d, test accuracy %.3f (rare classes %.3f)",
                           seed, name as NSString, rare.count, rows.last!.accuracy, rows.last!.rareClassAccuracy))
            }
        }
        let rareShare = Double(5 * c.rarePerClass) / Double(pool.count)
        return Outcome(poolSize: pool.count, rareShareOfPool: rareShare, width: width, rows: rows)
    }

    public static func report(_ outcome: Outcome, configuration c: Configuration, into report: inout HTMLReport) {
        report.heading("Density sampling: coverage of rare classes")
        report.paragraph("""
        Pool: \(c.commonPerClass) images of each of classes 0–4 and \(c.rarePerClass) of each of classes 5–9 \
        (\(outcome.poolSize) rows, rare share \(String(format: "%.1f%%", 100 * outcome.rareShareOfPool))), stored as 784-value \
        embeddings. Density: p-stable LSH kernel-sum sketch (\(c.hashes) × \(c.buckets), bucket width \
        \(String(format: "%.2f", outcome.width)) = \(c.widthScale) × the median nearest-neighbour distance of a sample), sampling \(c.budget) rows \
        with probability ∝ 1/score; uniform sampling at the same budget. A model (MLP, 64 hidden) trained on each sample is \
        tested on all 10 000 test images and on the 5 000 of the rare classes. Seeds \(c.seeds.map(String.init).joined(separator: ", ")).
        """)
        report.table(["sampler", "seed", "rare examples", "rare classes with ≥ 10", "test accuracy", "rare-class accuracy"],
                     outcome.rows.map { [$0.sampler, "\($0.seed)", "\($0.rareExamples)", "\($0.rareClassesWithTen)",
                                         String(format: "%.3f", $0.accuracy), String(format: "%.3f", $0.rareClassAccuracy)] })
        // Each bar is a mean over the seeds, drawn with ±SE whiskers (sample SD with n − 1, / √n).
        func chart(_ title: String, maximum: Double, format: String = "%.3f", _ value: (Row) -> Double) {
            let samplers = ["density (1/score)", "uniform"]
            let summaries = samplers.map { sampler in HTMLReport.meanAndStandardError(outcome.rows.filter { $0.sampler == sampler }.map(value)) }
            report.bars(title, zip(samplers, summaries).map { ($0, $1.mean) }, standardErrors: summaries.map(\.standardError),
                        maximum: maximum, format: format)
        }
        chart("mean rare examples in a sample of \(c.budget) over \(c.seeds.count) seeds (±SE)", maximum: Double(5 * c.rarePerClass), format: "%.0f") {
            Double($0.rareExamples)
        }
        chart("mean rare-class test accuracy over \(c.seeds.count) seeds (±SE)", maximum: 1) { $0.rareClassAccuracy }
    }
}
