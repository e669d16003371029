import Foundation
public import GradSketch
import GradSketchStore

// The JSON bodies of Spec/serve.md §3. Request fields are snake_case on the wire; a field the
// endpoint does not know is refused (400), so a misspelt option never goes silently unused.

/// The body of `POST /v1/sets/{set}/query`.
public struct QueryBody: Decodable, Sendable {
    public var vector: [Double]?
    public var vectors: [[Double]]?
    public var rowID: String?
    public var delta: String?
    public var negate: Bool?
    public var k: Int?
    public var metric: String?
    public var smallest: Bool?
    public var index: String?
    public var nprobe: Int?
    public var recall: Double?
    public var rerank: Int?
    public var aggregate: String?
    public var annotations: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vector, vectors, rowID = "row_id", delta, negate, k, metric, smallest, index, nprobe, recall, rerank,
             aggregate, annotations
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownFields(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        vector = try fields.decodeIfPresent([Double].self, forKey: .vector)
        vectors = try fields.decodeIfPresent([[Double]].self, forKey: .vectors)
        rowID = try fields.decodeIfPresent(String.self, forKey: .rowID)
        delta = try fields.decodeIfPresent(String.self, forKey: .delta)
        negate = try fields.decodeIfPresent(Bool.self, forKey: .negate)
        k = try fields.decodeIfPresent(Int.self, forKey: .k)
        metric = try fields.decodeIfPresent(String.self, forKey: .metric)
        smallest = try fields.decodeIfPresent(Bool.self, forKey: .smallest)
        index = try fields.decodeIfPresent(String.self, forKey: .index)
        nprobe = try fields.decodeIfPresent(Int.self, forKey: .nprobe)
        recall = try fields.decodeIfPresent(Double.self, forKey: .recall)
        rerank = try fields.decodeIfPresent(Int.self, forKey: .rerank)
        aggregate = try fields.decodeIfPresent(String.self, forKey: .aggregate)
        annotations = try fields.decodeIfPresent(Bool.self, forKey: .annotations)
    }
}

/// The body of `POST /v1/sets/{set}/select`.
public struct SelectBody: Decodable, Sendable {
    public var vector: [Double]?
    public var delta: String?
    public var negate: Bool?
    public var count: Int?
    public var method: String?
    public var batch: Int?
    public var seed: UInt64?
    public var column: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vector, delta, negate, count, method, batch, seed, column
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownFields(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        vector = try fields.decodeIfPresent([Double].self, forKey: .vector)
        delta = try fields.decodeIfPresent(String.self, forKey: .delta)
        negate = try fields.decodeIfPresent(Bool.self, forKey: .negate)
        count = try fields.decodeIfPresent(Int.self, forKey: .count)
        method = try fields.decodeIfPresent(String.self, forKey: .method)
        batch = try fields.decodeIfPresent(Int.self, forKey: .batch)
        seed = try fields.decodeIfPresent(UInt64.self, forKey: .seed)
        column = try fields.decodeIfPresent(String.self, forKey: .column)
    }
}

/// Any key of a JSON object, to list the fields a client sent.
private struct AnyFieldKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func rejectUnknownFields(_ decoder: any Decoder, known: [String]) throws {
    let sent = try decoder.container(keyedBy: AnyFieldKey.self).allKeys.map(\.stringValue)
    let unknown = sent.filter { !known.contains($0) }.sorted()
    guard unknown.isEmpty else {
        throw ServeError.badRequest("unknown field\(unknown.count == 1 ? "" : "s") \(unknown.map { "\"\($0)\"" }.joined(separator: ", ")): expected fields among \(known.joined(separator: ", "))")
    }
}

/// `GET /v1/health`.
struct HealthResponse: Encodable {
    let status: String
    let version: Int
}

/// One entry of `GET /v1/sets`.
struct SetSummary: Encodable {
    let name: String
    let k: Int
    let dtype: String
    let rows: Int
    let segments: Int
    let indexes: [String]
}

/// One hit of a query.
struct HitBody: Encodable {
    let id: String
    let score: Float
    let segment: Int
    let row: Int
    let label: String?
    let metadata: String?

    init(_ hit: QueryHit) {
        id = hit.id
        score = hit.score
        segment = hit.address.segment
        row = hit.address.row
        label = hit.label
        metadata = hit.metadata
    }
}

/// `POST /v1/sets/{set}/query`.
struct QueryResponse: Encodable {
    let version: Int
    let set: String
    /// One list per query (one list when aggregated), best first.
    let results: [[HitBody]]
    let plan: QueryPlan
}

/// One pick of a selection.
struct PickBody: Encodable {
    let id: String
    let score: Double
    let segment: Int
    let row: Int
}

/// `POST /v1/sets/{set}/select`.
struct SelectResponse: Encodable {
    let version: Int
    let set: String
    let method: String
    /// The picks in pick order, and the same ids and scores as plain arrays.
    let ids: [String]
    let scores: [Double]
    let picks: [PickBody]
}
