import Dispatch
import Foundation
public import GradSketchSearch
public import GradSketchStore

/// SELECT's greedy running sum (`Select.greedy`'s math) over the rows of every shard, one
/// reduction per pick (Spec/distributed.md §3.4). Each rank keeps, for its own rows, a_i, n_i
/// and c_i = ⟨S, s_i⟩; per pick every rank offers its best row, all-gathered with the row's
/// values and scalars, every rank takes the same global best and updates its c_i with the
/// picked row. The per-row values and the order of every sum are those of the one-process
/// greedy, so the picks and their scores are the same bits.
public enum DistributedGreedy {
    /// A picked row.
    /// One pick: the row and the greedy objective cos(S + s_i, q) after adding it.
    public typealias Pick = ShardRowPick

    public struct Statistics: Sendable, Codable {
        public let rowsScanned: Int
        /// Seconds computing a_i and norms before the first pick.
        public let prepareSeconds: Double
        /// Per pick: mean seconds of the local argmax and c_i update, of the allGather, and
        /// bytes this rank received per pick.
        public let localSecondsPerPick: Double
        public let reductionSecondsPerPick: Double
        public let bytesGatheredPerPick: Double
    }

    public struct Result: Sendable {
        public let versions: [Int]
        public let picks: [Pick]
        public let statistics: Statistics
    }

    /// Picks `count` rows of set `set` maximising cos(S + s_i, q) in turn; `resetEvery` > 0
    /// empties S after every that many picks (greedy-batched); `unitRows` sums s_i/‖s_i‖.
    /// Collective.
    public static func run(set: String, query: [Float], count: Int, resetEvery: Int = 0, unitRows: Bool = false,
                           versions: [Int]? = nil, threads: Int = 2, on layout: ShardLayout,
                           collective: some Collective) throws -> Result {
        let work = try WorkAssignment.agree(on: layout, set: set, versions: versions, collective: collective)
        let total = work.shardRows.reduce(0, +)
        guard count >= 1, count <= total else {
            throw AgreedError(StoreError(.invalidInput, "cannot select \(count) of the \(total) live rows of set \(set) across \(layout.shards.count) shard(s): expected 1 ... \(total)"))
        }
        if let bad = query.firstIndex(where: { !$0.isFinite }) {
            throw AgreedError(StoreError(.invalidInput, "the query has a non-finite value at column \(bad)"))
        }
        let started = DispatchTime.now()
        let prepared = attempt { try LocalRows(work: work, query: query, unitRows: unitRows, threads: threads) }
        if case .failure(let error) = prepared { try collective.throwIfAnyFailed(error) }
        try collective.throwIfAnyFailed(nil)
        var rows = try prepared.get()
        let prepareSeconds = FanOutQuery.seconds(since: started)
        var sumDotQuery = 0.0, sumSquaredNorm = 0.0
        var picks: [Pick] = []
        var localSeconds = 0.0, reductionSeconds = 0.0, gatheredBytes = 0
        // A rank whose update failed says so in its next offer (or the final vote), so the
        // ranks keep calling the same collectives.
        var failedUpdate: (any Error)?
        for step in 0..<count {
            if resetEvery > 0, step > 0, step % resetEvery == 0 {
                rows.resetSums()
                sumDotQuery = 0
                sumSquaredNorm = 0
            }
            let localStart = DispatchTime.now()
            let offer = failedUpdate.map { Swift.Result<Offer?, any Error>.failure($0) }
                ?? attempt { try rows.bestOffer(sumDotQuery: sumDotQuery, sumSquaredNorm: sumSquaredNorm) }
            localSeconds += FanOutQuery.seconds(since: localStart)
            let reductionStart = DispatchTime.now()
            let message: Offer.Message
            switch offer {
            case .success(let best): message = Offer.Message(offer: best, failure: nil)
            case .failure(let error): message = Offer.Message(offer: nil, failure: RankFailure(error, rank: collective.rank, host: collective.host))
            }
            let bytes = try collective.allGather(Array(try JSONEncoder().encode(message)))
            gatheredBytes += bytes.reduce(0) { $0 + $1.count }
            let offers = try bytes.map { try JSONDecoder().decode(Offer.Message.self, from: Data($0)) }
            reductionSeconds += FanOutQuery.seconds(since: reductionStart)
            if let failure = offers.compactMap(\.failure).first { throw AgreedError(failure.storeError) }
            guard let best = offers.compactMap(\.offer).min(by: Offer.precedes) else {
                throw AgreedError(StoreError(.invalidInput, "no row left to pick at pick \(step + 1) of \(count)"))
            }
            picks.append(Pick(shard: layout.shards[best.shard].name, shardIndex: best.shard, segment: best.segment, row: best.row,
                              id: best.id, score: best.score))
            sumDotQuery += best.a
            sumSquaredNorm += 2 * best.c + best.norm
            let updateStart = DispatchTime.now()
            let updated = attempt { try rows.add(best) }
            localSeconds += FanOutQuery.seconds(since: updateStart)
            if case .failure(let error) = updated { failedUpdate = error }
        }
        try collective.throwIfAnyFailed(failedUpdate)
        let picksDone = Double(max(count, 1))
        return Result(versions: work.versions, picks: picks, statistics: Statistics(
            rowsScanned: work.localRows, prepareSeconds: prepareSeconds, localSecondsPerPick: localSeconds / picksDone,
            reductionSecondsPerPick: reductionSeconds / picksDone, bytesGatheredPerPick: Double(gatheredBytes) / picksDone))
    }

    /// A rank's best untaken row for the next pick, with what every rank needs to add it.
    struct Offer: Codable {
        let shard: Int, segment: Int, row: Int
        let id: String
        let score: Double
        /// a = ⟨w s, q̂⟩, norm = ‖w s‖², c = ⟨S, w s⟩, length = ‖w s‖ (w = 1/‖s‖ with unit rows).
        let a: Double, norm: Double, c: Double, length: Double
        /// The row's stored values widened to float32, as raw little-endian bytes.
        let values: Data

        struct Message: Codable {
            let offer: Offer?
            let failure: RankFailure?
        }

        /// The global order of offers: higher score, then shard, segment, row ascending
        /// (the one-process greedy keeps the first of equal scores in set order).
        static func precedes(_ x: Offer, _ y: Offer) -> Bool {
            if x.score != y.score { return x.score > y.score }
            return (x.shard, x.segment, x.row) < (y.shard, y.segment, y.row)
        }
    }

    /// A rank's rows and their greedy state.
    struct LocalRows {
        struct Part {
            let range: WorkAssignment.Range
            let addresses: [RowAddress]
            let lengths: [Double]
            let a: [Double]
            var c: [Double]
            var taken: [Bool]
        }
        var parts: [Part]
        let threads: Int

        init(work: WorkAssignment, query: [Float], unitRows: Bool, threads: Int) throws {
            self.threads = threads
            parts = try work.local.map { range in
                let cosines = try RowScores.cosines(range.set, segments: range.segments, query: query, threads: threads)
                let norms = try RowScores.norms(range.set, segments: range.segments)
                let lengths = norms.map { unitRows ? ($0 > 0 ? 1 : 0) : $0 }
                var addresses: [RowAddress] = []
                addresses.reserveCapacity(norms.count)
                for segment in range.segments {
                    let deleted = Set(try range.set.segments[segment].deletedRows())
                    for row in 0..<range.set.segments[segment].entry.rows where !deleted.contains(row) {
                        addresses.append(RowAddress(segment: segment, row: row))
                    }
                }
                guard addresses.count == norms.count else {
                    throw StoreError(.corrupt, "shard \(range.shard) segments \(range.segments): \(addresses.count) live addresses for \(norms.count) rows")
                }
                return Part(range: range, addresses: addresses, lengths: lengths,
                            a: lengths.indices.map { Double(cosines[$0]) * lengths[$0] },
                            c: [Double](repeating: 0, count: norms.count), taken: [Bool](repeating: false, count: norms.count))
            }
        }

        mutating func resetSums() {
            for index in parts.indices { parts[index].c = [Double](repeating: 0, count: parts[index].c.count) }
        }

        /// The untaken row of highest cos(S + s_i, q), the first in (shard, address) order on
        /// equal scores; nil when every row here is taken.
        func bestOffer(sumDotQuery: Double, sumSquaredNorm: Double) throws -> Offer? {
            var best: (part: Int, row: Int)?
            var bestScore = -Double.infinity
            for (index, part) in parts.enumerated() {
                for i in part.c.indices where !part.taken[i] {
                    let norm = part.lengths[i] * part.lengths[i]
                    let squared = sumSquaredNorm + 2 * part.c[i] + norm
                    let score = squared > 0 ? (sumDotQuery + part.a[i]) / squared.squareRoot() : 0
                    if score > bestScore || best == nil && !score.isNaN { bestScore = score; best = (index, i) }
                }
            }
            guard let best else { return nil }
            let part = parts[best.part]
            let address = part.addresses[best.row]
            let values = try part.range.set.floatRows(at: [try livePosition(part, best.row)])
            let id = try part.range.set.ids(at: [address])[0]
            return Offer(shard: part.range.shard, segment: address.segment, row: address.row, id: id, score: bestScore,
                         a: part.a[best.row], norm: part.lengths[best.row] * part.lengths[best.row], c: part.c[best.row],
                         length: part.lengths[best.row], values: values.withUnsafeBytes { Data($0) })
        }

        /// The live position in its set of row `row` of `part`.
        func livePosition(_ part: Part, _ row: Int) throws -> Int {
            let set = part.range.set
            let before = set.segments[..<part.range.segments.lowerBound].reduce(0) { $0 + $1.entry.rows - $1.deletedCount }
            return before + row
        }

        /// Marks the picked row taken (on its owner) and adds ⟨w_j s_j, w_i s_i⟩ to every c_i.
        mutating func add(_ picked: Offer) throws {
            for index in parts.indices where parts[index].range.shard == picked.shard {
                if let row = parts[index].addresses.firstIndex(of: RowAddress(segment: picked.segment, row: picked.row)) {
                    parts[index].taken[row] = true
                }
            }
            guard picked.length > 0 else { return }  // a zero row adds nothing to any c_i
            let values = picked.values.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            for index in parts.indices {
                let part = parts[index]
                let cosines = try RowScores.cosines(part.range.set, segments: part.range.segments, query: values, threads: threads)
                for i in parts[index].c.indices {
                    parts[index].c[i] += picked.length * part.lengths[i] * Double(cosines[i])
                }
            }
        }
    }
}
