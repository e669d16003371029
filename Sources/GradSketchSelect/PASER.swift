import COpenBLAS
import Foundation
import GradSketchInterchange
public import GradSketchSearch
public import GradSketchStore

/// PASER (He et al. 2025): recovery data for a pruned model. Rows (embeddings or gradient
/// sketches) are clustered spectrally on a kNN graph; each cluster's budget is proportional to
/// its mean capability degradation (a stored per-row column, e.g. the pruned model's loss
/// increase); within a cluster rows go by degradation per unit of log cost; a row is accepted
/// only if its concepts are consistent with the concept graph built from the rows accepted so
/// far (every pair of its concepts already in the graph must already be linked).
public enum PASER {
    public struct Options: Sendable {
        public var clusters = 10
        public var neighbours = 10
        public var iterations = 200
        /// A cosine IVF index of the set for the kNN graph. Without one the graph is exact,
        /// which costs O(N²·d) and holds the rows in memory: fine to about 10⁵ rows.
        public var index: String?
        public var allocation = Allocation.proportional
        public var seed: UInt64 = 0
        public init() {}
    }

    /// Each row's nearest neighbours by cosine similarity: (row, similarity) lists.
    public typealias Neighbours = [[(row: Int, similarity: Float)]]

    /// Cluster labels from spectral clustering of rows given in memory (exact kNN graph).
    public static func spectralClusters(rows: [Float], count n: Int, width d: Int, options: Options = Options()) -> [Int] {
        spectralClusters(neighbours: exactNeighbours(rows: rows, count: n, width: d, neighbours: options.neighbours), options: options)
    }

    /// The `m` most cosine-similar other rows of every row, exactly: unit rows, similarities
    /// block by block with GEMM. O(N²·d): for large sets use a cosine IVF index instead.
    public static func exactNeighbours(rows: [Float], count n: Int, width d: Int, neighbours m: Int, progress: ProgressHandler? = nil) -> Neighbours {
        // Norms in binary64: a float32 ‖row‖² overflows above ~1.8e19 and underflows below
        // ~1e-19, which turned such rows into zero rows with no neighbours.
        var unit = rows
        for i in 0..<n {
            var squares = 0.0
            for j in 0..<d { squares += Double(unit[i * d + j]) * Double(unit[i * d + j]) }
            let norm = squares.squareRoot()
            for j in 0..<d { unit[i * d + j] = squares > 0 ? Float(Double(unit[i * d + j]) / norm) : 0 }
        }
        let m = min(m, n - 1)
        var neighbours = Neighbours(repeating: [], count: n)
        let block = 1024
        var similarities = [Float](repeating: 0, count: block * n)
        var start = 0
        while start < n {
            let rowsInBlock = min(block, n - start)
            unit.withUnsafeBufferPointer { u in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rowsInBlock), Int32(n), Int32(d), 1,
                            u.baseAddress! + start * d, Int32(d), u.baseAddress, Int32(d), 0, &similarities, Int32(n))
            }
            for r in 0..<rowsInBlock {
                let i = start + r
                var top: [(row: Int, similarity: Float)] = []
                for j in 0..<n where j != i {
                    let s = similarities[r * n + j]
                    if top.count < m { top.append((j, s)); if top.count == m { top.sort { $0.similarity > $1.similarity } } }
                    else if s > top[m - 1].similarity {
                        top[m - 1] = (j, s)
                        var t = m - 1
                        while t > 0 && top[t].similarity > top[t - 1].similarity { top.swapAt(t, t - 1); t -= 1 }
                    }
                }
                neighbours[i] = top
            }
            start += rowsInBlock
            progress?("kNN graph rows", start, n)
        }
        return neighbours
    }

    /// The `m` nearest other rows of every live row of `set` through its cosine IVF index
    /// `index`: every row is a query, in chunks, on `threads` threads.
    public static func indexedNeighbours(_ set: SketchSet, index: String, neighbours m: Int, threads: Int = 2,
                                         parameters: IVFSearchParameters? = nil, progress: ProgressHandler? = nil) throws -> Neighbours {
        let searcher = try IVFSearcher(set: set, index: index)
        guard searcher.metric == .cosine else {
            throw StoreError(.invalidInput, "PASER needs a cosine index for its kNN graph; index \(index) of set \(set.name) is \(searcher.metric)")
        }
        var neighbours = Neighbours(repeating: [], count: set.rowCount)
        var row = 0
        try set.forEachLiveChunk(rows: 8192) { chunk, _ in
            let count = chunk.count / set.k
            let hits = try searcher.search(queries: Array(chunk), count: count, k: m + 1, parameters: parameters, threads: threads)
            for (offset, found) in hits.enumerated() {
                let me = row + offset
                neighbours[me] = found.filter { $0.position != me }.prefix(m).map { ($0.position, $0.score) }
            }
            row += count
            progress?("kNN graph rows", row, set.rowCount)
        }
        return neighbours
    }

    /// Spectral clustering from a kNN graph: symmetric Gaussian weights on the unit-sphere
    /// distance (σ = median neighbour distance), the `clusters` leading eigenvectors of
    /// D^{-1/2} W D^{-1/2} by subspace iteration, rows normalised, then L2 k-means.
    public static func spectralClusters(neighbours: Neighbours, options: Options = Options(), progress: ProgressHandler? = nil) -> [Int] {
        let n = neighbours.count
        let k = min(options.clusters, n)
        guard k > 1 else { return [Int](repeating: 0, count: n) }
        // Distances on the unit sphere: ‖a − b‖² = 2 − 2 cos.
        let distances = neighbours.flatMap { $0.map { Double(max(0, 2 - 2 * $0.similarity)).squareRoot() } }.sorted()
        let sigma = max(distances.isEmpty ? 0 : distances[distances.count / 2], 1e-12)
        // Symmetric graph in compressed rows: an edge i–j when either lists the other, with the
        // larger weight.
        var edges: [(Int, Int, Double)] = []
        edges.reserveCapacity(2 * n * options.neighbours)
        for i in 0..<n {
            for (j, s) in neighbours[i] {
                let weight = exp(-Double(max(0, 2 - 2 * s)) / (2 * sigma * sigma))
                edges.append((i, j, weight))
                edges.append((j, i, weight))
            }
        }
        edges.sort { $0.0 != $1.0 ? $0.0 < $1.0 : ($0.1 != $1.1 ? $0.1 < $1.1 : $0.2 > $1.2) }
        var rowStart = [Int](repeating: 0, count: n + 1), columns: [Int] = [], weights: [Double] = []
        columns.reserveCapacity(edges.count)
        weights.reserveCapacity(edges.count)
        for (index, edge) in edges.enumerated() where index == 0 || edges[index - 1].0 != edge.0 || edges[index - 1].1 != edge.1 {
            columns.append(edge.1)
            weights.append(edge.2)
            rowStart[edge.0 + 1] += 1
        }
        edges = []
        for i in 0..<n { rowStart[i + 1] += rowStart[i] }
        var degree = [Double](repeating: 0, count: n)
        for i in 0..<n { for e in rowStart[i]..<rowStart[i + 1] { degree[i] += weights[e] } }
        let scale = degree.map { $0 > 0 ? 1 / $0.squareRoot() : 0 }
        // Subspace iteration on (I + D^{-1/2} W D^{-1/2}) / 2, whose top eigenvectors are the
        // normalised Laplacian's bottom ones, until the subspace stops moving.
        var random = SeededRandom(seed: options.seed)
        var basis = (0..<(n * k)).map { _ in random.nextUnit() - 0.5 }
        orthonormaliseColumns(&basis, rows: n, columns: k)
        var next = [Double](repeating: 0, count: n * k)
        let threads = 2
        let offsets = rowStart, neighbourRows = columns, edgeWeights = weights
        for iteration in 0..<options.iterations {
            progress?("spectral iterations (at most)", iteration, options.iterations)
            basis.withUnsafeBufferPointer { b in
                next.withUnsafeMutableBufferPointer { out in
                    nonisolated(unsafe) let b = b, out = out
                    DispatchQueue.concurrentPerform(iterations: threads) { part in
                        for i in stride(from: part, to: n, by: threads) {
                            for c in 0..<k { out[i * k + c] = 0.5 * b[i * k + c] }
                            for e in offsets[i]..<offsets[i + 1] {
                                let j = neighbourRows[e]
                                let factor = 0.5 * scale[i] * edgeWeights[e] * scale[j]
                                for c in 0..<k { out[i * k + c] += factor * b[j * k + c] }
                            }
                        }
                    }
                }
            }
            orthonormaliseColumns(&next, rows: n, columns: k)
            // ‖Bᵀ B'‖²_F = k exactly when the two orthonormal bases span the same subspace.
            var overlap = [Double](repeating: 0, count: k * k)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(k), Int32(n), 1, basis, Int32(k), next, Int32(k), 0, &overlap, Int32(k))
            swap(&basis, &next)
            let sharedSquared = overlap.reduce(0) { $0 + $1 * $1 }
            if Double(k) - sharedSquared < 1e-10 * Double(k) { break }
        }
        // Row-normalised spectral coordinates, clustered with L2 k-means.
        var coordinates = [Float](repeating: 0, count: n * k)
        for i in 0..<n {
            var norm = 0.0
            for c in 0..<k { norm += basis[i * k + c] * basis[i * k + c] }
            let inverse = norm > 0 ? 1 / norm.squareRoot() : 0
            for c in 0..<k { coordinates[i * k + c] = Float(basis[i * k + c] * inverse) }
        }
        return kMeans(coordinates, count: n, width: k, clusters: k, seed: options.seed)
    }

    /// Jensen–Shannon divergence of two discrete distributions in nats, ½ KL(p‖m) + ½ KL(q‖m)
    /// with m = (p + q)/2: PASER's per-example capability degradation between the original and
    /// the pruned model's outputs. Symmetric, 0 for equal inputs, at most ln 2.
    public static func jensenShannon(_ p: some Collection<Double>, _ q: some Collection<Double>) -> Double {
        precondition(p.count == q.count, "distributions of different lengths")
        var divergence = 0.0
        for (a, b) in zip(p, q) {
            let m = (a + b) / 2
            if a > 0 { divergence += 0.5 * a * log(a / m) }
            if b > 0 { divergence += 0.5 * b * log(b / m) }
        }
        return max(0, divergence)
    }

    /// How the budget is split across clusters. CDS_c is the mean degradation of cluster c
    /// (negative degradations count as 0).
    public enum Allocation: String, Sendable, CaseIterable {
        /// n_c ∝ CDS_c, each capped at its cluster's size; what a cap frees goes to the other
        /// clusters in the same proportion and the rounding remainders to the largest fractions,
        /// so exactly min(B, N) rows are allotted (clusters with CDS 0 get rows only when the
        /// others are exhausted). The concept filter skips rejected rows within a cluster, so it
        /// leaves a cluster short only when it rejects every remaining row there.
        case proportional
        /// The released code: n_c = ⌊B · CDS_c / Σ CDS⌋, uncapped. The floors, and any cluster
        /// smaller than its share, leave part of the budget unspent.
        case releasedCode = "released-code"
        /// Equal shares, capped and refilled as in `proportional`: the ablation without
        /// degradation weighting.
        case uniform
    }

    /// Rows per cluster for `budget` rows; see `Allocation`.
    public static func allocate(budget: Int, degradation: [Double], clusters: [Int], allocation: Allocation = .proportional) -> [Int: Int] {
        var sums: [Int: (total: Double, size: Int)] = [:]
        for (row, cluster) in clusters.enumerated() {
            let value = sums[cluster] ?? (0, 0)
            sums[cluster] = (value.total + max(0, degradation[row]), value.size + 1)
        }
        let scores = sums.mapValues { $0.total / Double($0.size) }
        switch allocation {
        case .releasedCode:
            let total = scores.values.reduce(0, +)
            return scores.mapValues { total > 0 ? Int(Double(budget) * $0 / total) : 0 }
        case .proportional, .uniform:
            let sizes = sums.mapValues(\.size)
            var quota = waterFill(budget: budget, weights: allocation == .uniform ? sizes.mapValues { _ in 1 } : scores, capacity: sizes)
            let spent = quota.values.reduce(0, +)
            if spent < budget {
                // Every cluster with weight is full: the rest by remaining size.
                let room = sizes.mapValues { Double($0) }.merging(quota.mapValues { -Double($0) }, uniquingKeysWith: +)
                let extra = waterFill(budget: budget - spent, weights: room, capacity: room.mapValues { Int($0) })
                quota.merge(extra, uniquingKeysWith: +)
            }
            return quota
        }
    }

    /// Splits `budget` in proportion to `weights`, no share above `capacity`: capped shares are
    /// fixed and the rest re-split until none exceeds its capacity, then the floors are topped up
    /// by largest fractional part (ties to the lower key).
    static func waterFill(budget: Int, weights: [Int: Double], capacity: [Int: Int]) -> [Int: Int] {
        var quota = weights.mapValues { _ in 0 }
        var open = Set(weights.keys.filter { weights[$0]! > 0 && capacity[$0]! > 0 })
        var remaining = min(budget, open.reduce(0) { $0 + capacity[$1]! })
        while remaining > 0, !open.isEmpty {
            let total = open.reduce(0) { $0 + weights[$1]! }
            let shares = Dictionary(uniqueKeysWithValues: open.map { ($0, Double(remaining) * weights[$0]! / total) })
            let full = open.filter { shares[$0]! >= Double(capacity[$0]!) }
            if full.isEmpty {
                for (cluster, share) in shares { quota[cluster] = Int(share) }
                let leftover = remaining - shares.values.reduce(0) { $0 + Int($1) }
                let byFraction = shares.keys.sorted {
                    let a = shares[$0]! - shares[$0]!.rounded(.down), b = shares[$1]! - shares[$1]!.rounded(.down)
                    return a != b ? a > b : $0 < $1
                }
                for cluster in byFraction.prefix(leftover) { quota[cluster]! += 1 }
                break
            }
            for cluster in full {
                quota[cluster] = capacity[cluster]!
                remaining -= capacity[cluster]!
                open.remove(cluster)
            }
        }
        return quota
    }

    /// The concept-consistency rule: every pair of `concepts` whose two concepts are both
    /// already in `graph` must already be an edge.
    public static func isConsistent(_ concepts: [String], with graph: [String: Set<String>]) -> Bool {
        let known = concepts.filter { graph[$0] != nil }
        for a in 0..<known.count { for b in (a + 1)..<known.count where !(graph[known[a]]!.contains(known[b])) { return false } }
        return true
    }

    /// Links every pair of distinct `concepts`. As in the released code (a networkx graph grown
    /// edge by edge), a concept becomes a node only with an edge: a row with one concept adds nothing.
    public static func addClique(_ concepts: [String], to graph: inout [String: Set<String>]) {
        let distinct = Set(concepts)
        guard distinct.count >= 2 else { return }
        for a in distinct { graph[a, default: []].formUnion(distinct.subtracting([a])) }
    }

    /// Where each row's concepts come from, for the concept-consistency filter.
    public enum ConceptSource: Sendable {
        /// No filter.
        case none
        /// Row metadata holds a JSON array of concept strings.
        case metadataArrays
        /// The RAKE phrases of each row's metadata text, as the released code takes them. Metadata
        /// that is a JSON object contributes its "instruction", "input" and "output" strings in that
        /// order (an Alpaca record), or else all its string values in key order.
        case rakePhrases(stopwords: Set<String> = RAKE.englishStopwords)

        /// How a result records the source: RAKE's stopwords are listed when they are not the built-in list.
        var parameter: JSONValue {
            switch self {
            case .none: .string("none")
            case .metadataArrays: .string("metadata-arrays")
            case .rakePhrases(let stopwords) where stopwords == RAKE.englishStopwords: .string("rake-phrases")
            case .rakePhrases(let stopwords):
                .object(["source": .string("rake-phrases"), "stopwords": .array(stopwords.sorted().map(JSONValue.string))])
            }
        }
    }

    /// The cluster of every live row of `set`: its kNN graph (exact, or through `options.index`)
    /// clustered spectrally. `select` does this itself; call it to share the clusters between
    /// several budgets or allocations.
    public static func clusters(_ set: SketchSet, options: Options = Options(), progress: ProgressHandler? = nil) throws -> [Int] {
        let neighbours = try options.index.map { try indexedNeighbours(set, index: $0, neighbours: options.neighbours, progress: progress) }
            ?? exactNeighbours(rows: try set.floatRows(), count: set.rowCount, width: set.k, neighbours: options.neighbours, progress: progress)
        return spectralClusters(neighbours: neighbours, options: options, progress: progress)
    }

    /// PASER selection over a set: rows clustered from the set's own rows (or `clusters` from
    /// `PASER.clusters` with the same options), `degradationColumn` per row, optional `costColumn`
    /// (≥ 2 tokens or units; 2 when absent) and concept sets from the rows' metadata (see
    /// `ConceptSource`).
    public static func select(_ set: SketchSet, budget: Int, degradationColumn: String, costColumn: String? = nil,
                              concepts conceptSource: ConceptSource = .none, options: Options = Options(), clusters given: [Int]? = nil,
                              progress: ProgressHandler? = nil) throws -> SelectionResult {
        let n = set.rowCount
        guard budget >= 1, budget <= n else {
            throw StoreError(.invalidInput, "cannot select \(budget) of the \(n) live rows of set \(set.name)")
        }
        let degradation = try set.column(degradationColumn)
        if let bad = degradation.firstIndex(where: { !$0.isFinite }) {
            throw StoreError(.invalidInput, "column \(degradationColumn) has no finite value for row \(bad)")
        }
        let cost = try costColumn.map { try set.column($0) } ?? [Double](repeating: 2, count: n)
        let concepts = try rowConcepts(set, source: conceptSource)
        if let given, given.count != n {
            throw StoreError(.invalidInput, "expected a cluster for each of the \(n) live rows of set \(set.name), found \(given.count)")
        }
        let clusters = try given ?? self.clusters(set, options: options, progress: progress)
        let quota = allocate(budget: budget, degradation: degradation, clusters: clusters, allocation: options.allocation)
        let efficiency = (0..<n).map { degradation[$0] / log(max(cost[$0], 1.000001)) }
        var graph: [String: Set<String>] = [:]
        var picked: [(Int, Double)] = []
        for cluster in quota.keys.sorted() {
            let members = (0..<n).filter { clusters[$0] == cluster }.sorted { efficiency[$0] != efficiency[$1] ? efficiency[$0] > efficiency[$1] : $0 < $1 }
            var accepted = 0
            for row in members where accepted < quota[cluster]! {
                if !isConsistent(concepts[row], with: graph) { continue }
                addClique(concepts[row], to: &graph)
                picked.append((row, efficiency[row]))
                accepted += 1
            }
        }
        let ids = try set.ids()
        return SelectionResult(method: "paser", parameters: [
            "budget": .number(Double(budget)), "clusters": .number(Double(options.clusters)), "neighbours": .number(Double(options.neighbours)),
            "degradation_column": .string(degradationColumn), "cost_column": costColumn.map(JSONValue.string) ?? .null,
            "concepts": conceptSource.parameter, "allocation": .string(options.allocation.rawValue), "neighbour_index": options.index.map(JSONValue.string) ?? .null, "cluster_budgets": .object(Dictionary(uniqueKeysWithValues: quota.map { (String($0.key), JSONValue.number(Double($0.value))) })),
        ], set: set.name, setVersion: set.version, positions: picked.map(\.0), ids: picked.map { ids[$0.0] }, scores: picked.map(\.1))
    }

    /// Each row's concepts (empty lists without a source, which the filter always accepts).
    static func rowConcepts(_ set: SketchSet, source: ConceptSource) throws -> [[String]] {
        switch source {
        case .none:
            return [[String]](repeating: [], count: set.rowCount)
        case .metadataArrays:
            return try set.metadata().enumerated().map { row, text in
                guard !text.isEmpty else { return [] }
                guard case .array(let items)? = try? JSONValue.parse(text) else {
                    throw StoreError(.invalidInput, "row \(row) metadata is not a JSON array of concept strings: \"\(text.prefix(60))\"")
                }
                return items.compactMap { if case .string(let s) = $0 { s } else { nil } }
            }
        case .rakePhrases(let stopwords):
            return try set.metadata().map { text in
                var document = text
                if text.first == "{", case .object(let fields)? = try? JSONValue.parse(text) {
                    let named = ["instruction", "input", "output"].filter { fields[$0] != nil }
                    let keys = named.isEmpty ? fields.keys.sorted() : named
                    document = keys.compactMap { if case .string(let s)? = fields[$0] { s } else { nil } }.joined(separator: " ")
                }
                return RAKE.rankedPhrases(document, stopwords: stopwords).map(\.phrase)
            }
        }
    }

    /// Makes the columns of the row-major `rows × columns` matrix orthonormal (its Q factor) by
    /// Cholesky QR applied twice: G = XᵀX = LLᵀ, X ← X L⁻ᵀ; the second pass restores the
    /// orthogonality the first loses when X is ill-conditioned. Columns that are (numerically)
    /// dependent are replaced by zeros.
    static func orthonormaliseColumns(_ x: inout [Double], rows n: Int, columns k: Int) {
        for _ in 0..<2 {
            var gram = [Double](repeating: 0, count: k * k)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(k), Int32(n), 1, x, Int32(k), x, Int32(k), 0, &gram, Int32(k))
            // Cholesky: gram = L Lᵀ, L lower triangular (row-major).
            var l = [Double](repeating: 0, count: k * k)
            for i in 0..<k {
                for j in 0...i {
                    var sum = gram[i * k + j]
                    for p in 0..<j { sum -= l[i * k + p] * l[j * k + p] }
                    if i == j { l[i * k + i] = sum > 1e-300 ? sum.squareRoot() : 0 } else { l[i * k + j] = l[j * k + j] > 0 ? sum / l[j * k + j] : 0 }
                }
            }
            // L⁻¹ by forward substitution, then X ← X (L⁻¹)ᵀ.
            var inverse = [Double](repeating: 0, count: k * k)
            for column in 0..<k {
                for i in column..<k {
                    guard l[i * k + i] > 0 else { continue }
                    var sum = i == column ? 1.0 : 0
                    for p in column..<i { sum -= l[i * k + p] * inverse[p * k + column] }
                    inverse[i * k + column] = sum / l[i * k + i]
                }
            }
            let product = x
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(k), Int32(k), 1, product, Int32(k), inverse, Int32(k), 0, &x, Int32(k))
        }
    }

    /// Plain L2 k-means (k-means++ seeding) for the spectral coordinates.
    static func kMeans(_ points: [Float], count n: Int, width d: Int, clusters k: Int, seed: UInt64) -> [Int] {
        var random = SeededRandom(seed: seed ^ 0xC1)
        let first = random.next(below: n)
        var centres: [[Float]] = [Array(points[(first * d)..<((first + 1) * d)])]
        var nearest = [Double](repeating: .infinity, count: n)
        while centres.count < k {
            let last = centres.last!
            for i in 0..<n {
                var s = 0.0
                for j in 0..<d { let x = Double(points[i * d + j] - last[j]); s += x * x }
                nearest[i] = min(nearest[i], s)
            }
            let total = nearest.reduce(0, +)
            var target = random.nextUnit() * total
            var chosen = n - 1
            for i in 0..<n { target -= nearest[i]; if target <= 0 { chosen = i; break } }
            centres.append(Array(points[(chosen * d)..<((chosen + 1) * d)]))
        }
        var labels = [Int](repeating: 0, count: n)
        for _ in 0..<50 {
            var changed = false
            for i in 0..<n {
                var best = 0, bestDistance = Double.infinity
                for (c, centre) in centres.enumerated() {
                    var s = 0.0
                    for j in 0..<d { let x = Double(points[i * d + j] - centre[j]); s += x * x }
                    if s < bestDistance { bestDistance = s; best = c }
                }
                if labels[i] != best { labels[i] = best; changed = true }
            }
            var sums = [[Double]](repeating: [Double](repeating: 0, count: d), count: k), sizes = [Int](repeating: 0, count: k)
            for i in 0..<n { sizes[labels[i]] += 1; for j in 0..<d { sums[labels[i]][j] += Double(points[i * d + j]) } }
            for c in 0..<k where sizes[c] > 0 { centres[c] = sums[c].map { Float($0 / Double(sizes[c])) } }
            if !changed { break }
        }
        return labels
    }
}
