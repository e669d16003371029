import CGradSketchKernels
import Foundation
public import GradSketchInterchange
import COpenBLAS
public import GradSketchStore

/// Density sampling (Sachdeva et al. 2024, Algorithm 2): a kernel-sum sketch from p-stable
/// LSH, then inverse-propensity sampling so dense regions are thinned and rare ones kept.
public enum DensitySampling {
    public struct Options: Sendable {
        /// Hash functions (rows of the counter sketch).
        public var hashes = 200
        /// p-stable projections concatenated per hash (RACE's LSH power): the kernel becomes
        /// p(c)^power, sharper in high dimension. 1 is the plain hash of the paper.
        public var power = 1
        /// Buckets per hash.
        public var buckets = 20_000
        /// Bucket width w of h(x) = ⌊(⟨a, x⟩ + b) / w⌋; nil takes the median distance from a
        /// sample of rows to its nearest other sampled row.
        public var width: Double?
        public var seed: UInt64 = 0
        public init() {}
    }

    /// The sketch's kernel-sum estimate for every live row: (1/R) Σ_r C[r, h_r(x)], which counts
    /// the row itself. Returns the scores and the width used.
    public static func scores(_ set: SketchSet, options: Options = Options(), progress: ProgressHandler? = nil) throws -> (scores: [Double], width: Double) {
        guard options.hashes >= 1, options.buckets >= 1, options.power >= 1 else {
            throw StoreError(.invalidInput, "density needs at least one hash and one bucket, found \(options.hashes) × \(options.buckets)")
        }
        // Sizes from options are multiplied with overflow checks and bounded before allocating
        // (hashes near Int.max trapped here).
        let projectionLimit = 1 << 31
        let (projections, projectionOverflow) = options.hashes.multipliedReportingOverflow(by: options.power)
        let (directionCount, directionOverflow) = projections.multipliedReportingOverflow(by: max(set.k, 1))
        let (counterCount, counterOverflow) = options.hashes.multipliedReportingOverflow(by: options.buckets)
        guard !projectionOverflow, !directionOverflow, !counterOverflow, directionCount <= projectionLimit, counterCount <= projectionLimit else {
            throw StoreError(.invalidInput, "density with \(options.hashes) hashes × \(options.buckets) buckets × power \(options.power) at k = \(set.k) needs more than 2^31 directions or counters: expected smaller --hashes, --buckets or --power")
        }
        let width = try options.width ?? medianNearestNeighbourDistance(set, seed: options.seed)
        guard width > 0, width.isFinite else {
            throw StoreError(.invalidInput, "bucket width must be positive and finite, found \(width)")
        }
        let k = set.k, hashes = options.hashes
        // a ~ N(0, I) as a [k, R·power] matrix and b ~ U[0, w), from a seeded generator.
        var generator = SeededRandom(seed: options.seed)
        var directions = [Float](repeating: 0, count: k * hashes * options.power)
        for index in directions.indices { directions[index] = Float(gaussian(&generator)) }
        let offsets = (0..<(hashes * options.power)).map { _ in generator.nextUnit() * width }
        var counts = [Int32](repeating: 0, count: hashes * options.buckets)
        var buckets = [Int32](repeating: 0, count: 0)
        // Pass 1 counts, pass 2 reads the counts back; the projections are recomputed rather
        // than kept (N × R of them would dwarf the sketch).
        for pass in 0..<2 {
            var position = 0
            var scores = [Double](repeating: 0, count: pass == 1 ? set.rowCount : 0)
            try set.forEachLiveChunk { rows, physical in
                let count = physical.count
                if pass == 0, let bad = firstNonfiniteRow(rows, count: count, k: k) {
                    // Physical position (deleted rows counted) → segment and row.
                    var segment = 0, row = physical[bad]
                    while segment < set.segments.count && row >= set.segments[segment].entry.rows {
                        row -= set.segments[segment].entry.rows
                        segment += 1
                    }
                    throw nonfiniteRowError(set: set.name, segment: segment, row: row)
                }
                buckets = bucketsOf(rows, count: count, k: k, directions: directions, offsets: offsets, width: width, buckets: options.buckets,
                                    power: options.power)
                for i in 0..<count {
                    for r in 0..<hashes {
                        let cell = r * options.buckets + Int(buckets[i * hashes + r])
                        if pass == 0 { counts[cell] += 1 } else { scores[position + i] += Double(counts[cell]) }
                    }
                }
                position += count
                progress?(pass == 0 ? "counting rows" : "scoring rows", position, set.rowCount)
            }
            if pass == 1 { return (scores.map { $0 / Double(hashes) }, width) }
        }
        fatalError("unreachable")
    }

    /// `count` rows sampled without replacement with probability ∝ 1/score (the paper's text
    /// and Theorem A.2; its algorithm box prints score/Σscore, which would favour dense
    /// regions). Efraimidis–Spirakis keys log(u)·score, largest first.
    public static func sample(_ set: SketchSet, count: Int, options: Options = Options(), progress: ProgressHandler? = nil) throws -> SelectionResult {
        guard count >= 1, count <= set.rowCount else {
            throw StoreError(.invalidInput, "cannot sample \(count) of the \(set.rowCount) live rows of set \(set.name)")
        }
        let (scores, width) = try self.scores(set, options: options, progress: progress)
        var generator = SeededRandom(seed: options.seed &+ 0x5EED)
        let keys = scores.map { score -> Double in
            let u = max(generator.nextUnit(), Double.leastNonzeroMagnitude)
            return log(u) * score
        }
        let order = keys.indices.sorted { keys[$0] != keys[$1] ? keys[$0] > keys[$1] : $0 < $1 }.prefix(count)
        let ids = try set.ids()
        return SelectionResult(method: "density", parameters: [
            "hashes": .number(Double(options.hashes)), "buckets": .number(Double(options.buckets)), "width": .number(width),
            "power": .number(Double(options.power)),
            "seed": JSONValue(options.seed), "count": .number(Double(count)), "sampling": .string("inverse-propensity"),
        ], set: set.name, setVersion: set.version, positions: Array(order), ids: order.map { ids[$0] }, scores: order.map { scores[$0] })
    }

    /// The `count` rows with the largest (or smallest) value of a stored score column, e.g.
    /// Ask-LLM scores computed elsewhere.
    public static func topByColumn(_ set: SketchSet, column: String, count: Int, smallest: Bool = false) throws -> SelectionResult {
        let values = try set.column(column)
        let valid = values.indices.filter { !values[$0].isNaN }
        guard count >= 1, count <= valid.count else {
            throw StoreError(.invalidInput, "cannot take \(count) rows by column \(column): \(valid.count) rows have a value")
        }
        let sign = smallest ? -1.0 : 1.0
        let order = valid.sorted { sign * values[$0] != sign * values[$1] ? sign * values[$0] > sign * values[$1] : $0 < $1 }.prefix(count)
        let ids = try set.ids()
        return SelectionResult(method: "top-by-column", parameters: ["column": .string(column), "smallest": .bool(smallest), "count": .number(Double(count))],
                               set: set.name, setVersion: set.version, positions: Array(order), ids: order.map { ids[$0] }, scores: order.map { values[$0] })
    }

    // MARK: - Helpers

    /// h_r(x) = ⌊(⟨a_r, x⟩ + b_r) / w⌋ mod B for each row and hash, `[count, R]`; with power
    /// p > 1, the p cells of hash r are mixed into one bucket.
    public static func bucketsOf(_ rows: UnsafeBufferPointer<Float>, count: Int, k: Int, directions: [Float], offsets: [Double],
                          width: Double, buckets: Int, power: Int = 1) -> [Int32] {
        let projectionsPerRow = offsets.count, hashes = projectionsPerRow / power
        var projections = [Float](repeating: 0, count: count * projectionsPerRow)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(count), Int32(projectionsPerRow), Int32(k), 1,
                    rows.baseAddress, Int32(k), directions, Int32(projectionsPerRow), 0, &projections, Int32(projectionsPerRow))
        var result = [Int32](repeating: 0, count: count * hashes)
        for i in 0..<count {
            for r in 0..<hashes {
                var combined: Int64 = 0
                var mixed: UInt64 = 0x9E37_79B9_7F4A_7C15
                for part in 0..<power {
                    let index = r * power + part
                    let cell = Int64(((Double(projections[i * projectionsPerRow + index]) + offsets[index]) / width).rounded(.down))
                    combined = cell
                    mixed = (mixed ^ UInt64(bitPattern: cell)) &* 0xBF58_476D_1CE4_E5B9
                    mixed ^= mixed >> 31
                }
                var bucket = power == 1 ? combined % Int64(buckets) : Int64(mixed % UInt64(buckets))
                if bucket < 0 { bucket += Int64(buckets) }
                result[i * hashes + r] = Int32(bucket)
            }
        }
        return result
    }

    /// The first of `count` rows (`[count, k]`) holding a NaN or ±Inf, or nil: such a row has
    /// no bucket (its projections are not finite), so density sampling refuses it.
    public static func firstNonfiniteRow(_ rows: UnsafeBufferPointer<Float>, count: Int, k: Int) -> Int? {
        for i in 0..<count where !rows[(i * k)..<((i + 1) * k)].allSatisfy(\.isFinite) { return i }
        return nil
    }

    /// The error of density sampling (one process or distributed) over a row with NaN or ±Inf,
    /// which a set created with `--allow-nonfinite` may hold.
    public static func nonfiniteRowError(set: String, segment: Int, row: Int) -> StoreError {
        StoreError(.invalidInput, "density sampling needs finite rows: set \(set) has NaN or ±Inf in row \(row) of segment \(segment) (the set allows non-finite rows); delete that row or select with another method")
    }

    /// Median, over up to 1000 sampled rows, of the distance to the nearest other sampled row.
    public static func medianNearestNeighbourDistance(_ set: SketchSet, seed: UInt64) throws -> Double {
        let n = set.rowCount
        guard n >= 2 else { throw StoreError(.invalidInput, "density needs at least 2 rows, set \(set.name) has \(n)") }
        var generator = SeededRandom(seed: seed ^ 0xD15)
        var order = Array(0..<n)
        let m = min(n, 1000)
        for i in 0..<m { order.swapAt(i, i + generator.next(below: n - i)) }
        let positions = Array(order.prefix(m)).sorted()
        let rows = try set.floatRows(at: positions)
        let k = set.k
        var nearest: [Double] = []
        for i in 0..<m {
            var best = Double.infinity
            for j in 0..<m where j != i {
                var sum = 0.0
                for t in 0..<k { let d = Double(rows[i * k + t]) - Double(rows[j * k + t]); sum += d * d }
                best = min(best, sum)
            }
            nearest.append(best.squareRoot())
        }
        nearest.sort()
        return nearest[m / 2]
    }

    public static func gaussian(_ generator: inout SeededRandom) -> Double {
        // Box–Muller on two open-interval uniforms.
        let u = max(generator.nextUnit(), Double.leastNonzeroMagnitude), v = generator.nextUnit()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
