import COpenBLAS
import Foundation
import GradSketchInterchange
public import GradSketchStore

/// GradEx (Li et al. 2024): estimate, in sketch space, how fine-tuning on a subset of data
/// sources changes a target loss, from per-example gradient sketches s_i at a
/// meta-initialisation θ* and the sketch v of the target (validation) loss gradient there.
///
/// Two first-order estimates of L_v(θ* + Δ_S):
/// - `linear`: Δ_S = −step · mean_{i∈S} g_i (gradient steps with gradients frozen at θ*), so
///   L̂ = L_v − step · ⟨v, mean_{i∈S} s_i⟩ — only per-source sums are needed;
/// - `logistic` (the paper's): z_S = argmin_z Σ_{i∈S} log(1 + e^{−⟨z, −s_i⟩}) + ‖z‖²/(2C) (every
///   example "positive", features the descent directions −s_i), rescaled to the length of the
///   linear step, and L̂ = L_v + ⟨v, z_S⟩.
public struct GradEx: Sendable {
    public enum Estimator: String, Sendable, Codable { case linear, logistic }

    /// Source names, in order of first appearance.
    public let sources: [String]
    public let width: Int
    /// Rows (float32, row-major) of each source, when kept.
    let rows: [[Float]]?
    /// Σ s_i and row count of each source.
    let sums: [[Double]]
    let counts: [Int]

    /// Reads `set` in one streaming pass, grouping rows by their label (one label per source).
    /// The linear estimator needs only each source's sum; `keepingRows` also keeps the rows
    /// (float32, N·k·4 bytes) for the logistic one.
    ///
    /// `featureScaleColumn` names a per-row factor applied to the kept rows only, i.e. to the
    /// logistic regression's features. The paper's features are gradients of the output margin
    /// f = log(p_y / (1 − p_y)), which for a softmax output equal the loss gradient times
    /// −1/(1 − p_y): store 1/(1 − p_y) (with p_y clipped as the paper does) and name it here.
    public init(_ set: SketchSet, keepingRows: Bool = true, featureScaleColumn: String? = nil) throws {
        let labels = try set.labels()
        let scales = try featureScaleColumn.map { try set.column($0) }
        if let scales, let bad = scales.firstIndex(where: { !$0.isFinite || $0 <= 0 }) {
            throw StoreError(.invalidInput, "column \(featureScaleColumn!) must hold positive finite factors; row \(bad) has \(scales[bad])")
        }
        var index: [UTF8Key: Int] = [:], names: [String] = []  // labels compare as bytes (Spec §2.5)
        var rows: [[Float]] = [], sums: [[Double]] = [], counts: [Int] = []
        let k = set.k
        var position = 0
        try set.forEachLiveChunk(rows: 8192) { chunk, _ in
            for offset in 0..<(chunk.count / k) {
                let label = labels[position]
                guard !label.isEmpty else { throw StoreError(.invalidInput, "row \(position) of set \(set.name) has no label: GradEx groups rows by label (source)") }
                let source: Int
                if let known = index[UTF8Key(label)] { source = known } else {
                    source = names.count
                    index[UTF8Key(label)] = source
                    names.append(label)
                    rows.append([])
                    sums.append([Double](repeating: 0, count: k))
                    counts.append(0)
                }
                let row = UnsafeBufferPointer(rebasing: chunk[(offset * k)..<((offset + 1) * k)])
                if keepingRows {
                    if let scales { let factor = Float(scales[position]); rows[source].append(contentsOf: row.map { $0 * factor }) }
                    else { rows[source].append(contentsOf: row) }
                }
                sums[source].withUnsafeMutableBufferPointer { sum in for j in 0..<k { sum[j] += Double(row[j]) } }
                counts[source] += 1
                position += 1
            }
        }
        self.sources = names
        self.width = k
        self.rows = keepingRows ? rows : nil
        self.sums = sums
        self.counts = counts
    }

    /// L̂_v after fine-tuning on the sources `subset` (indices into `sources`).
    public func estimate(_ subset: [Int], validation v: [Float], baseLoss: Double, step: Double,
                         estimator: Estimator = .linear, regularization c: Double = 1e-2) throws -> Double {
        guard !subset.isEmpty else { return baseLoss }
        guard v.count == width else { throw StoreError(.invalidInput, "validation sketch has \(v.count) values, the sketches have k = \(width)") }
        var mean = [Double](repeating: 0, count: width)
        var total = 0
        for source in subset {
            guard sources.indices.contains(source) else { throw StoreError(.invalidInput, "source index \(source) is out of range 0..<\(sources.count)") }
            for j in 0..<width { mean[j] += sums[source][j] }
            total += counts[source]
        }
        for j in 0..<width { mean[j] /= Double(total) }
        switch estimator {
        case .linear:
            return baseLoss - step * zip(v, mean).reduce(0) { $0 + Double($1.0) * $1.1 }
        case .logistic:
            guard let rows else {
                throw StoreError(.invalidInput, "the logistic estimator needs the rows: read the set with GradEx(set, keepingRows: true)")
            }
            // Built in Double directly: the solver's GEMVs need Double, and one copy is n·d·8 bytes.
            var features: [Double] = []
            features.reserveCapacity(total * width)
            for source in subset { for value in rows[source] { features.append(-Double(value)) } }
            var z = Self.positiveLogisticRegression(features: features, count: total, width: width, c: c)
            // Rescale to the length of the linear step, step · ‖mean s‖.
            let target = step * mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let length = z.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if length > 0 { z = z.map { $0 * target / length } }
            return baseLoss + zip(v, z).reduce(0) { $0 + Double($1.0) * $1.1 }
        }
    }

    /// argmin_z Σ_i log(1 + e^{−⟨z, x_i⟩}) + ‖z‖²/(2C), by Newton's method with conjugate-gradient
    /// solves (Hessian-vector products, never a d × d matrix) and a backtracking line search,
    /// until the gradient norm falls to `tolerance` times its first value (or 1).
    public static func positiveLogisticRegression(features x: [Float], count n: Int, width d: Int, c: Double,
                                                  iterations: Int = 30, tolerance: Double = 1e-10) -> [Double] {
        positiveLogisticRegression(features: x.map(Double.init), count: n, width: d, c: c, iterations: iterations, tolerance: tolerance)
    }

    /// The same on features already in Double. Every product is a Double GEMV: Newton's quadratic
    /// convergence to a small gradient needs Hessian products at that precision.
    public static func positiveLogisticRegression(features: [Double], count n: Int, width d: Int, c: Double,
                                                  iterations: Int = 30, tolerance: Double = 1e-10) -> [Double] {
        var z = [Double](repeating: 0, count: d)
        func margins(_ z: [Double]) -> [Double] {
            var m = [Double](repeating: 0, count: n)
            cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(d), 1, features, Int32(d), z, 1, 0, &m, 1)
            return m
        }
        func objective(_ z: [Double], _ m: [Double]) -> Double {
            m.reduce(0) { $0 + softplus(-$1) } + z.reduce(0) { $0 + $1 * $1 } / (2 * c)
        }
        var m = margins(z)
        var initialNorm: Double?
        for _ in 0..<iterations {
            // gradient: −Σ σ(−m_i) x_i + z/C ; Hessian: Σ σ(m_i)σ(−m_i) x_i x_iᵀ + I/C
            let p = m.map { sigmoid(-$0) }
            var gradient = z.map { $0 / c }
            cblas_dgemv(CblasRowMajor, CblasTrans, Int32(n), Int32(d), -1, features, Int32(d), p, 1, 1, &gradient, 1)
            let norm = gradient.reduce(0) { $0 + $1 * $1 }.squareRoot()
            // Relative to the first gradient: a sum of n·d products cannot get below its own rounding.
            if initialNorm == nil { initialNorm = norm }
            if norm <= tolerance * max(1, initialNorm!) { break }
            let weights = m.map { sigmoid($0) * sigmoid(-$0) }
            var dots = [Double](repeating: 0, count: n)
            func hessianTimes(_ v: [Double]) -> [Double] {
                cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(d), 1, features, Int32(d), v, 1, 0, &dots, 1)
                for i in 0..<n { dots[i] *= weights[i] }
                var result = v.map { $0 / c }
                cblas_dgemv(CblasRowMajor, CblasTrans, Int32(n), Int32(d), 1, features, Int32(d), dots, 1, 1, &result, 1)
                return result
            }
            // Conjugate gradients on H δ = −gradient.
            var delta = [Double](repeating: 0, count: d)
            var residual = gradient.map { -$0 }
            var direction = residual
            var rr = residual.reduce(0) { $0 + $1 * $1 }
            for _ in 0..<min(d, 50) {
                let hd = hessianTimes(direction)
                let alpha = rr / max(zip(direction, hd).reduce(0) { $0 + $1.0 * $1.1 }, 1e-300)
                for j in 0..<d { delta[j] += alpha * direction[j]; residual[j] -= alpha * hd[j] }
                let next = residual.reduce(0) { $0 + $1 * $1 }
                if next.squareRoot() < 1e-3 * norm { break }
                for j in 0..<d { direction[j] = residual[j] + next / rr * direction[j] }
                rr = next
            }
            // Backtracking line search on the objective.
            let current = objective(z, m)
            let slope = zip(gradient, delta).reduce(0) { $0 + $1.0 * $1.1 }
            var t = 1.0
            while t > 1e-8 {
                let candidate = zip(z, delta).map { $0 + t * $1 }
                let candidateMargins = margins(candidate)
                if objective(candidate, candidateMargins) <= current + 1e-4 * t * slope {
                    z = candidate
                    m = candidateMargins
                    break
                }
                t /= 2
            }
            if t <= 1e-8 { break }
        }
        return z
    }

    /// Random-subset ensemble: `subsets` subsets of ⌈fraction · sources⌉ sources, each estimated;
    /// a source's score is the mean estimate over the subsets that contain it (lower = better).
    public func randomEnsemble(subsets: Int, fraction: Double, seed: UInt64, estimate: ([Int]) throws -> Double) rethrows
        -> (scores: [Double], subsets: [[Int]], estimates: [Double]) {
        var random = SeededRandom(seed: seed)
        let size = max(1, Int((fraction * Double(sources.count)).rounded(.up)))
        var drawn: [[Int]] = [], estimates: [Double] = []
        var totals = [Double](repeating: 0, count: sources.count), appearances = [Int](repeating: 0, count: sources.count)
        for _ in 0..<subsets {
            var order = Array(sources.indices)
            random.shuffle(&order)
            let subset = Array(order.prefix(size)).sorted()
            let value = try estimate(subset)
            drawn.append(subset)
            estimates.append(value)
            for source in subset { totals[source] += value; appearances[source] += 1 }
        }
        let scores = sources.indices.map { appearances[$0] > 0 ? totals[$0] / Double(appearances[$0]) : .nan }
        return (scores, drawn, estimates)
    }

    /// Forward stepwise selection on the estimates: add the source that lowers the estimate
    /// most, while it still does.
    public func forwardSelection(estimate: ([Int]) throws -> Double) rethrows -> [Int] {
        var chosen: [Int] = []
        var best = Double.infinity
        while chosen.count < sources.count {
            var candidate = -1, candidateValue = Double.infinity
            for source in sources.indices where !chosen.contains(source) {
                let value = try estimate((chosen + [source]).sorted())
                if value < candidateValue { candidateValue = value; candidate = source }
            }
            guard candidateValue < best else { break }
            best = candidateValue
            chosen.append(candidate)
        }
        return chosen
    }

    static func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
    static func softplus(_ x: Double) -> Double { x > 30 ? x : log1p(exp(x)) }
}
