import CGradSketchKernels
import GradSketchInterchange
import GradSketchSearch
public import GradSketchStore

/// The strategies of SELECT (Morris et al. 2025) and its baselines.
public enum SelectStrategy: String, CaseIterable, Sendable, Codable {
    /// Uniform without replacement (seeded).
    case random
    /// The K rows of largest cos(s_i, q).
    case topK = "topk"
    /// Top-k by cosine with at most ⌈K / #labels⌉ rows per label.
    case balancedTopK = "topk-balanced"
    /// SELECT: K times, the row maximising cos(S + s_i, q), where S sums the rows picked so far.
    case greedy
    /// As greedy, with S reset to 0 after every `batchSize` picks (each minibatch matches q alone).
    case greedyBatched = "greedy-batched"
    /// Lowest / highest value of a per-row loss column.
    case lowestLoss = "loss-low", highestLoss = "loss-high"
}

/// An ordered selection or valuation of a set's rows.
public struct SelectionResult: Sendable, Codable, Equatable {
    public var method: String
    public var parameters: [String: JSONValue]
    /// The set and version the rows were read from.
    public var set: String
    public var setVersion: Int
    /// Live positions in that version, ids, and per-row scores, in selection order.
    public var positions: [Int]
    public var ids: [String]
    public var scores: [Double]

    public init(method: String, parameters: [String: JSONValue], set: String, setVersion: Int, positions: [Int], ids: [String], scores: [Double]) {
        self.method = method
        self.parameters = parameters
        self.set = set
        self.setVersion = setVersion
        self.positions = positions
        self.ids = ids
        self.scores = scores
    }
}

/// Progress of a long selection: the phase, and how many of its units are done of its total.
/// Called on the calling thread, between units of work.
public typealias ProgressHandler = (_ phase: String, _ done: Int, _ total: Int) -> Void

/// SELECT: recover training data from weights. The query is q = P(θ_base − θ_finetuned) (the
/// direction loss gradients of the training data point to) and the rows are per-example
/// gradient sketches at θ_finetuned, projected with the same P.
public enum Select {
    /// - Parameter unitRows: greedy strategies sum s_i/‖s_i‖ instead of s_i, as the paper's
    ///   full-model variant L2-normalises each per-example gradient (top-k is cosine already).
    public static func run(_ set: SketchSet, query: [Float], count: Int, strategy: SelectStrategy, batchSize: Int = 0,
                           lossColumn: String = "loss", seed: UInt64 = 0, unitRows: Bool = false, threads: Int = 2,
                           progress: ProgressHandler? = nil) throws -> SelectionResult {
        let n = set.rowCount
        guard count >= 1, count <= n else {
            throw StoreError(.invalidInput, "cannot select \(count) of the \(n) live rows of set \(set.name): expected 1 ... \(n)")
        }
        if let bad = query.firstIndex(where: { !$0.isFinite }) {
            throw StoreError(.invalidInput, "the query has a non-finite value at column \(bad)")
        }
        var parameters: [String: JSONValue] = ["strategy": .string(strategy.rawValue), "count": .number(Double(count))]
        var picked: [(position: Int, score: Double)]
        switch strategy {
        case .random:
            parameters["seed"] = JSONValue(seed)
            var generator = SeededRandom(seed: seed)
            var order = Array(0..<n)
            for i in 0..<count { order.swapAt(i, i + generator.next(below: n - i)) }
            picked = order.prefix(count).map { ($0, 0) }
        case .lowestLoss, .highestLoss:
            parameters["column"] = .string(lossColumn)
            let loss = try set.column(lossColumn)
            let sign = strategy == .lowestLoss ? 1.0 : -1.0
            let order = (0..<n).filter { !loss[$0].isNaN }.sorted { sign * loss[$0] != sign * loss[$1] ? sign * loss[$0] < sign * loss[$1] : $0 < $1 }
            guard order.count >= count else {
                throw StoreError(.invalidInput, "column \(lossColumn) has \(order.count) rows with a value, fewer than the \(count) asked for")
            }
            picked = order.prefix(count).map { ($0, loss[$0]) }
        case .topK, .balancedTopK:
            let cosines = try cosineScores(set, query: query, threads: threads)
            let order = (0..<n).sorted { cosines[$0] != cosines[$1] ? cosines[$0] > cosines[$1] : $0 < $1 }
            if strategy == .topK {
                picked = order.prefix(count).map { ($0, cosines[$0]) }
            } else {
                let labels = try set.labels()
                let distinct = Set(labels.lazy.map(UTF8Key.init)).count  // labels compare as bytes (Spec §2.5)
                let quota = (count + distinct - 1) / distinct
                parameters["per_label_quota"] = .number(Double(quota))
                var taken: [UTF8Key: Int] = [:]
                picked = []
                for position in order where picked.count < count {
                    let label = UTF8Key(labels[position])
                    if taken[label, default: 0] < quota {
                        taken[label, default: 0] += 1
                        picked.append((position, cosines[position]))
                    }
                }
            }
        case .greedy, .greedyBatched:
            if strategy == .greedyBatched {
                guard batchSize >= 1 else { throw StoreError(.invalidInput, "greedy-batched needs a batch size of at least 1, found \(batchSize)") }
                parameters["batch_size"] = .number(Double(batchSize))
            }
            if unitRows { parameters["unit_rows"] = .bool(true) }
            picked = try greedy(set, query: query, count: count, resetEvery: strategy == .greedyBatched ? batchSize : 0, unitRows: unitRows, threads: threads, progress: progress)
        }
        let ids = try set.ids()
        return SelectionResult(method: "select/" + strategy.rawValue, parameters: parameters, set: set.name, setVersion: set.version,
                               positions: picked.map(\.position), ids: picked.map { ids[$0.position] }, scores: picked.map(\.score))
    }

    /// cos(s_i, q) for every live row (0 for rows of norm 0).
    public static func cosineScores(_ set: SketchSet, query: [Float], threads: Int = 2) throws -> [Double] {
        try RowScores.cosines(set, query: query, threads: threads).map(Double.init)
    }

    /// Greedy running sum, updated incrementally: with q̂ = q/‖q‖, a_i = ⟨s_i, q̂⟩, n_i = ‖s_i‖²,
    /// c_i = ⟨S, s_i⟩, cos(S + s_i, q) = (⟨S, q̂⟩ + a_i) / √(‖S‖² + 2c_i + n_i). Picking j adds
    /// ⟨s_j, s_i⟩ to every c_i: one streaming pass over the rows per pick, O(N·k). With
    /// `unitRows` every s_i is scaled by w_i = 1/‖s_i‖ first.
    ///
    /// Every inner product is taken as ‖x‖‖y‖·cos(x, y), with norms in binary64 and the cosine
    /// from `RowScores.cosines` (valid over the whole float32 range): a float32 ⟨s_j, s_i⟩ or
    /// ‖s_i‖² overflows for rows beyond ~1.8e19 and underflows below ~1e-19. The error stays
    /// that of a float32 inner product, (k + 4)·2⁻²³ relative to ‖x‖‖y‖.
    static func greedy(_ set: SketchSet, query: [Float], count: Int, resetEvery: Int, unitRows: Bool = false,
                       threads: Int, progress: ProgressHandler?) throws -> [(position: Int, score: Double)] {
        let n = set.rowCount
        let cosinesWithQuery = try RowScores.cosines(set, query: query, threads: threads)  // refuses a zero query
        let rowNorms = try RowScores.norms(set)
        // ‖w_i s_i‖: the row's own norm, or 1 (0 for a zero row) with unit rows.
        let lengths = rowNorms.map { unitRows ? ($0 > 0 ? 1 : 0) : $0 }
        let a = (0..<n).map { Double(cosinesWithQuery[$0]) * lengths[$0] }
        let norms = lengths.map { $0 * $0 }
        var c = [Double](repeating: 0, count: n)
        var sumDotQuery = 0.0, sumSquaredNorm = 0.0
        var taken = [Bool](repeating: false, count: n)
        var picked: [(position: Int, score: Double)] = []
        picked.reserveCapacity(count)
        for step in 0..<count {
            if resetEvery > 0, step > 0, step % resetEvery == 0 {
                for i in 0..<n { c[i] = 0 }
                sumDotQuery = 0
                sumSquaredNorm = 0
            }
            var best = -1
            var bestScore = -Double.infinity
            for i in 0..<n where !taken[i] {
                let squared = sumSquaredNorm + 2 * c[i] + norms[i]
                let score = squared > 0 ? (sumDotQuery + a[i]) / squared.squareRoot() : 0
                if score > bestScore { bestScore = score; best = i }
            }
            taken[best] = true
            picked.append((best, bestScore))
            sumDotQuery += a[best]
            sumSquaredNorm += 2 * c[best] + norms[best]
            if lengths[best] > 0 {  // a zero row adds nothing to any c_i
                let cosines = try RowScores.cosines(set, query: try set.floatRows(at: [best]), threads: threads)
                for i in 0..<n { c[i] += lengths[best] * lengths[i] * Double(cosines[i]) }
            }
            progress?("greedy picks", step + 1, count)
        }
        return picked
    }
}
