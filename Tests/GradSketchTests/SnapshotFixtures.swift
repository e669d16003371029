import GradSketch
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport

/// A store whose rows the test knows: each appended batch becomes one segment, and every
/// row's id, address and values are recorded so oracles can score them independently.
final class KnownRowsStore {
    let directory: TemporaryDirectory
    let path: String
    let engine: GradSketchStore.Store
    let k: Int
    /// Every row ever appended to set "s", by id.
    private(set) var rows: [String: [Float]] = [:]
    private(set) var addresses: [String: RowAddress] = [:]
    private(set) var labels: [String: String] = [:]
    private(set) var metadata: [String: String] = [:]
    /// Live ids in set order.
    private(set) var liveIDs: [String] = []
    private var segments = 0

    init(k: Int) throws {
        directory = try TemporaryDirectory()
        path = directory.path + "/store"
        engine = try GradSketchStore.Store.create(at: path)
        self.k = k
    }

    /// Appends `values` (`count × k`) as one new segment of set `set` with ids `prefix-i`.
    @discardableResult
    func append(_ values: [Float], prefix: String, set: String = "s", attributes: [String: JSONValue] = [:],
                dtype: SketchDType = .float32) throws -> Int {
        let count = values.count / k
        let ids = (0..<count).map { "\(prefix)-\($0)" }
        let labelValues = ids.map { "label of \($0)" }
        let metadataValues = ids.map { "{\"row\": \"\($0)\"}" }
        let result = try values.withUnsafeBytes { bytes in
            try engine.append(to: set, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: count, k: k),
                              annotations: RowAnnotations(ids: ids, labels: labelValues, metadata: metadataValues),
                              options: SketchSetOptions(dtype: dtype, attributes: attributes))
        }
        if set == "s" {
            for (row, id) in ids.enumerated() {
                var stored = Array(values[(row * k)..<((row + 1) * k)])
                if dtype == .float16 { stored = stored.map { Float(Float16($0)) } }
                rows[id] = stored
                addresses[id] = RowAddress(segment: segments, row: row)
                labels[id] = labelValues[row]
                metadata[id] = metadataValues[row]
            }
            liveIDs += ids
            segments += 1
        }
        return result.version
    }

    @discardableResult
    func delete(_ ids: [String]) throws -> Int {
        let version = try engine.delete(ids: ids, from: "s").version
        let gone = Set(ids)
        liveIDs.removeAll { gone.contains($0) }
        return version
    }

    func facade() throws -> GradSketch.Store { try GradSketch.Store(opening: path) }

    /// A snapshot of `version` (latest when nil) through the facade.
    func snapshot(_ version: Int? = nil) throws -> Snapshot { try Snapshot(store: facade(), version: version) }
}

/// Random rows, uniform in [-1, 1), from a seeded generator.
func randomRows(_ count: Int, k: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<(count * k)).map { _ in Float(Double(generator.next() >> 11) / Double(1 << 53)) * 2 - 1 }
}

/// The naive oracle: every live row scored in binary64, sorted best first (ties by set
/// order), the first `k` kept.
func oracleTopK(_ store: KnownRowsStore, query: [Float], metric: SearchMetricName, k: Int, smallest: Bool = false,
                ids: [String]? = nil) -> [(id: String, score: Double)] {
    let queryNorm = query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
    let scored = (ids ?? store.liveIDs).enumerated().map { order, id -> (id: String, score: Double, order: Int) in
        let row = store.rows[id]!
        var dot = 0.0, norm = 0.0
        for j in 0..<row.count {
            dot += Double(row[j]) * Double(query[j])
            norm += Double(row[j]) * Double(row[j])
        }
        let score = metric == .innerProduct ? dot : (norm == 0 ? 0 : dot / (norm.squareRoot() * queryNorm))
        return (id, score, order)
    }
    let sorted = scored.sorted { a, b in
        if a.score != b.score { return smallest ? a.score < b.score : a.score > b.score }
        return a.order < b.order
    }
    return sorted.prefix(k).map { ($0.id, $0.score) }
}

/// Rows gathered around `clusters` well-separated centres, for index tests.
func clusteredRows(_ count: Int, k: Int, clusters: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    func uniform() -> Float { Float(Double(generator.next() >> 11) / Double(1 << 53)) * 2 - 1 }
    let centres = (0..<(clusters * k)).map { _ in uniform() * 4 }
    var values: [Float] = []
    values.reserveCapacity(count * k)
    for row in 0..<count {
        let cluster = row % clusters
        for j in 0..<k { values.append(centres[cluster * k + j] + uniform() * 0.5) }
    }
    return values
}
