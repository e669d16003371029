import Dispatch
import Foundation
import GradSketchInterchange
public import GradSketchSelect
public import GradSketchStore

/// Density sampling (`DensitySampling`'s definition) over the rows of every shard, with an
/// answer that does not depend on how rows are split among ranks (Spec/distributed.md §3.5):
///
/// - bucket width (when not given): the median distance to the nearest other row over the
///   1000 rows of smallest hash key u(seed ⊕ 0xD15, shard, segment, row), gathered from all
///   ranks;
/// - the p-stable directions and offsets from `SeededRandom(seed)` as in one process;
/// - the counter sketch: each rank counts its rows, counters summed with one allReduceSum;
/// - inverse-propensity keys log(u)·score with u = u(seed + 0x5EED, shard, segment, row)
///   instead of a sequential generator; each rank offers its best `count` keys, the global
///   top `count` (ties by shard, segment, row) is the sample.
public enum DistributedDensity {
    /// One sampled row; its score is the kernel-sum estimate (1/R) Σ_r C[r, h_r(x)].
    public typealias Pick = ShardRowPick

    public struct Statistics: Sendable, Codable {
        public let rowsScanned: Int
        public let localSeconds: Double
        /// Bytes of the counter reduction (8 per counter) and of the gathers.
        public let counterBytes: Int
        public let bytesGathered: Int
        public let reductionSeconds: Double
    }

    public struct Result: Sendable {
        public let versions: [Int]
        public let picks: [Pick]
        public let width: Double
        public let statistics: Statistics
    }

    /// A uniform in (0, 1] from (seed, shard, segment, row): SplitMix64's finaliser applied
    /// to the seed and then to each coordinate in turn, the top 53 bits plus one over 2⁵³.
    public static func rowUniform(seed: UInt64, shard: Int, segment: Int, row: Int) -> Double {
        var h = mix(seed)
        h = mix(h ^ UInt64(truncatingIfNeeded: shard))
        h = mix(h ^ UInt64(truncatingIfNeeded: segment))
        h = mix(h ^ UInt64(truncatingIfNeeded: row))
        return (Double(h >> 11) + 1) / Double(UInt64(1) << 53)
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Rows in the width sample.
    public static let widthSampleRows = 1000

    /// Samples `count` rows of set `set` across the layout. Collective.
    public static func run(set: String, count: Int, options: DensitySampling.Options = .init(), versions: [Int]? = nil,
                           on layout: ShardLayout, collective: some Collective) throws -> Result {
        guard options.hashes >= 1, options.buckets >= 1, options.power >= 1 else {
            throw AgreedError(StoreError(.invalidInput, "density needs at least one hash and one bucket, found \(options.hashes) × \(options.buckets)"))
        }
        let (counters, overflow) = options.hashes.multipliedReportingOverflow(by: options.buckets)
        guard !overflow, counters <= 1 << 28, options.hashes * options.power <= 1 << 20 else {
            throw AgreedError(StoreError(.invalidInput, "distributed density with \(options.hashes) hashes × \(options.buckets) buckets × power \(options.power) is too large: expected at most 2^28 counters"))
        }
        let work = try WorkAssignment.agree(on: layout, set: set, versions: versions, collective: collective)
        let total = work.shardRows.reduce(0, +)
        guard count >= 1, count <= total else {
            throw AgreedError(StoreError(.invalidInput, "cannot sample \(count) of the \(total) live rows of set \(set)"))
        }
        let k = work.local.first?.set.k ?? 0
        let started = DispatchTime.now()
        var reductionSeconds = 0.0, gathered = 0
        // The width, from a sample every split of the rows agrees on.
        var width = options.width ?? 0
        if options.width == nil {
            guard total >= 2 else { throw AgreedError(StoreError(.invalidInput, "density needs at least 2 rows, set \(set) has \(total)")) }
            let local = attempt { try widthCandidates(work: work, seed: options.seed ^ 0xD15) }
            if case .failure(let error) = local { try collective.throwIfAnyFailed(error) }
            try collective.throwIfAnyFailed(nil)
            let reduceStart = DispatchTime.now()
            let bytes = try collective.allGather(Array(try JSONEncoder().encode(try local.get())))
            gathered += bytes.reduce(0) { $0 + $1.count }
            let sample = try bytes.flatMap { try JSONDecoder().decode([Candidate].self, from: Data($0)) }
                .sorted(by: Candidate.precedes).prefix(widthSampleRows)
            reductionSeconds += FanOutQuery.seconds(since: reduceStart)
            width = medianNearestDistance(Array(sample))
        }
        guard width > 0, width.isFinite else {
            throw AgreedError(StoreError(.invalidInput, "bucket width must be positive and finite, found \(width)"))
        }
        // Directions and offsets as the one-process sampler draws them.
        let hashes = options.hashes
        var generator = SeededRandom(seed: options.seed)
        let width0 = width
        var directions = [Float](repeating: 0, count: work.local.isEmpty ? 0 : k * hashes * options.power)
        if !work.local.isEmpty {
            for index in directions.indices { directions[index] = Float(DensitySampling.gaussian(&generator)) }
        }
        let offsets = work.local.isEmpty ? [] : (0..<(hashes * options.power)).map { _ in generator.nextUnit() * width0 }
        let sketch = Sketch(directions: directions, offsets: offsets, width: width, buckets: options.buckets, power: options.power, hashes: hashes, k: k)
        // Pass 1: local counters, summed across ranks.
        let counted = attempt { () throws -> [Int64] in
            var counts = [Int64](repeating: 0, count: counters)
            try forEachLiveChunk(work, sketch: sketch) { _, _, buckets, n in
                for i in 0..<n { for r in 0..<hashes { counts[r * options.buckets + Int(buckets[i * hashes + r])] += 1 } }
            }
            return counts
        }
        if case .failure(let error) = counted { try collective.throwIfAnyFailed(error) }
        try collective.throwIfAnyFailed(nil)
        let reduceStart = DispatchTime.now()
        let counts = try collective.allReduceSum(try counted.get())
        reductionSeconds += FanOutQuery.seconds(since: reduceStart)
        // Pass 2: scores and keys of the local rows; the best `count` keys are offered.
        let offered = attempt { () throws -> [Key] in
            var keys: [Key] = []
            try forEachLiveChunk(work, sketch: sketch) { shard, addresses, buckets, n in
                for i in 0..<n {
                    var sum = 0.0
                    for r in 0..<hashes { sum += Double(counts[r * options.buckets + Int(buckets[i * hashes + r])]) }
                    let score = sum / Double(hashes)
                    let u = rowUniform(seed: options.seed &+ 0x5EED, shard: shard, segment: addresses[i].segment, row: addresses[i].row)
                    keys.append(Key(key: log(u) * score, score: score, shard: shard, segment: addresses[i].segment, row: addresses[i].row, id: ""))
                }
            }
            var best = Array(keys.sorted(by: Key.precedes).prefix(count))
            for range in work.local {
                let slots = best.indices.filter { best[$0].shard == range.shard && range.segments.contains(best[$0].segment) }
                let ids = try range.set.ids(at: slots.map { RowAddress(segment: best[$0].segment, row: best[$0].row) })
                for (slot, id) in zip(slots, ids) { best[slot].id = id }
            }
            return best
        }
        let localSeconds = FanOutQuery.seconds(since: started) - reductionSeconds
        if case .failure(let error) = offered { try collective.throwIfAnyFailed(error) }
        try collective.throwIfAnyFailed(nil)
        let gatherStart = DispatchTime.now()
        let bytes = try collective.allGather(Array(try JSONEncoder().encode(try offered.get())))
        gathered += bytes.reduce(0) { $0 + $1.count }
        let chosen = try bytes.flatMap { try JSONDecoder().decode([Key].self, from: Data($0)) }.sorted(by: Key.precedes).prefix(count)
        reductionSeconds += FanOutQuery.seconds(since: gatherStart)
        let picks = chosen.map { Pick(shard: layout.shards[$0.shard].name, shardIndex: $0.shard, segment: $0.segment, row: $0.row, id: $0.id, score: $0.score) }
        return Result(versions: work.versions, picks: picks, width: width, statistics: Statistics(
            rowsScanned: work.localRows, localSeconds: localSeconds, counterBytes: counters * 8, bytesGathered: gathered,
            reductionSeconds: reductionSeconds))
    }

    struct Sketch {
        let directions: [Float], offsets: [Double], width: Double, buckets: Int, power: Int, hashes: Int, k: Int
    }

    /// A row's sampling key. Key and score travel as their bit patterns (as ``WireHits`` does
    /// with scores), so every value, NaN and infinities included, crosses the wire exactly.
    struct Key: Codable {
        let keyBits: UInt64, scoreBits: UInt64, shard: Int, segment: Int, row: Int
        var id: String
        var key: Double { Double(bitPattern: keyBits) }
        var score: Double { Double(bitPattern: scoreBits) }

        init(key: Double, score: Double, shard: Int, segment: Int, row: Int, id: String) {
            keyBits = key.bitPattern
            scoreBits = score.bitPattern
            self.shard = shard
            self.segment = segment
            self.row = row
            self.id = id
        }
        static func precedes(_ x: Key, _ y: Key) -> Bool {
            if x.key != y.key { return x.key > y.key }
            return (x.shard, x.segment, x.row) < (y.shard, y.segment, y.row)
        }
    }

    /// A row offered for the width sample: its hash, place and values, the floats as bit
    /// patterns so that they travel exactly (JSON has no NaN).
    struct Candidate: Codable {
        let hashBits: UInt64, shard: Int, segment: Int, row: Int
        let valueBits: [UInt32]
        var hash: Double { Double(bitPattern: hashBits) }
        var values: [Float] { valueBits.map(Float.init(bitPattern:)) }

        init(hash: Double, shard: Int, segment: Int, row: Int, values: [Float]) {
            hashBits = hash.bitPattern
            self.shard = shard
            self.segment = segment
            self.row = row
            valueBits = values.map(\.bitPattern)
        }
        static func precedes(_ x: Candidate, _ y: Candidate) -> Bool {
            if x.hash != y.hash { return x.hash < y.hash }
            return (x.shard, x.segment, x.row) < (y.shard, y.segment, y.row)
        }
    }

    /// Calls `body` with chunks of this rank's live rows: shard, addresses, buckets
    /// `[n, hashes]`, n.
    static func forEachLiveChunk(_ work: WorkAssignment, sketch: Sketch, _ body: (Int, [RowAddress], [Int32], Int) throws -> Void) throws {
        let chunk = 4096
        for range in work.local {
            var rows = [Float](repeating: 0, count: chunk * sketch.k)
            var addresses: [RowAddress] = []
            func flush() throws {
                guard !addresses.isEmpty else { return }
                let n = addresses.count
                let bad = rows.withUnsafeBufferPointer { DensitySampling.firstNonfiniteRow($0, count: n, k: sketch.k) }
                if let bad {
                    throw DensitySampling.nonfiniteRowError(set: range.set.name, segment: addresses[bad].segment, row: addresses[bad].row)
                }
                let buckets = rows.withUnsafeBufferPointer { pointer in
                    DensitySampling.bucketsOf(UnsafeBufferPointer(rebasing: pointer[0..<(n * sketch.k)]), count: n, k: sketch.k,
                                              directions: sketch.directions, offsets: sketch.offsets, width: sketch.width,
                                              buckets: sketch.buckets, power: sketch.power)
                }
                try body(range.shard, addresses, buckets, n)
                addresses.removeAll(keepingCapacity: true)
            }
            var segment = range.segments.lowerBound
            try range.set.forEachBlock(segments: range.segments) { block in
                for row in block.liveRows {
                    let slot = addresses.count
                    try rows.withUnsafeMutableBytes { target in
                        let destination = UnsafeMutableRawBufferPointer(rebasing: target[(slot * sketch.k * 4)..<((slot + 1) * sketch.k * 4)])
                        _ = try ElementConversion.convert(block.row(row), from: block.dtype.elementType, to: .float32, into: destination)
                    }
                    addresses.append(RowAddress(segment: segment, row: row))
                    if addresses.count == chunk { try flush() }
                }
                segment += 1
            }
            try flush()
        }
    }

    /// This rank's rows of smallest width-sample hash (at most ``widthSampleRows``).
    static func widthCandidates(work: WorkAssignment, seed: UInt64) throws -> [Candidate] {
        var hashed: [(hash: Double, shard: Int, address: RowAddress, position: Int, range: Int)] = []
        for (index, range) in work.local.enumerated() {
            var position = range.set.segments[..<range.segments.lowerBound].reduce(0) { $0 + $1.entry.rows - $1.deletedCount }
            for segment in range.segments {
                let deleted = Set(try range.set.segments[segment].deletedRows())
                for row in 0..<range.set.segments[segment].entry.rows where !deleted.contains(row) {
                    hashed.append((rowUniform(seed: seed, shard: range.shard, segment: segment, row: row), range.shard,
                                   RowAddress(segment: segment, row: row), position, index))
                    position += 1
                }
            }
        }
        hashed.sort { $0.hash != $1.hash ? $0.hash < $1.hash : ($0.shard, $0.address) < ($1.shard, $1.address) }
        let kept = hashed.prefix(widthSampleRows)
        var candidates: [Candidate] = []
        for entry in kept {
            let range = work.local[entry.range]
            let values = try range.set.floatRows(at: [entry.position])
            candidates.append(Candidate(hash: entry.hash, shard: entry.shard, segment: entry.address.segment, row: entry.address.row, values: values))
        }
        return candidates
    }

    /// Median over the sample of the distance to the nearest other sampled row, in binary64.
    static func medianNearestDistance(_ sample: [Candidate]) -> Double {
        let m = sample.count
        let values = sample.map(\.values)
        var nearest: [Double] = []
        for i in 0..<m {
            var best = Double.infinity
            for j in 0..<m where j != i {
                var sum = 0.0
                for t in values[i].indices { let d = Double(values[i][t]) - Double(values[j][t]); sum += d * d }
                best = min(best, sum)
            }
            nearest.append(best.squareRoot())
        }
        nearest.sort()
        return nearest[m / 2]
    }
}
