public import GradSketchStore

/// The similarity a query scores rows with.
public enum SearchMetricName: String, Sendable, Codable, CaseIterable {
    /// ⟨row, query⟩.
    case innerProduct = "ip"
    /// ⟨row, query⟩ / (‖row‖ ‖query‖).
    case cosine
}

/// A search of one sketch set of a ``Snapshot``: what to search with, how to score, and how
/// to use the set's indexes.
public struct QueryRequest: Sendable {
    /// Where the query vectors come from.
    public enum Input: Sendable {
        /// `count` queries of width k, row-major.
        case vectors([Float], count: Int)
        /// The stored row with this id, of the set searched.
        case storedRow(id: String)
        /// A stored tensor set (a weight delta) projected with the searched set's projection;
        /// `negate` turns a delta stored as finetuned − base into base − finetuned.
        case delta(tensorSet: String, negate: Bool)
        /// Every live row of another sketch set (same k and projection).
        case querySet(String)
    }

    /// Which index, if any, answers the query.
    public enum IndexPolicy: Sendable, Equatable {
        /// The index named after the metric, else any index for the metric, else exact.
        case auto
        /// Always an exact scan.
        case exact
        /// This index; an error if it does not exist or is for another metric.
        case named(String)
    }

    /// How many lists an indexed query probes.
    public enum Probe: Sendable, Equatable {
        /// The nprobe tuned when the index was built.
        case tuned
        /// Exactly this many lists (at most all of them).
        case nprobe(Int)
        /// The fewest lists whose held-out recall@10 reached this target at build time.
        case recallTarget(Double)
    }

    /// How several queries combine into one score per row.
    public enum Aggregation: Sendable, Equatable {
        case mean, max
        /// Mean within each group of queries, then the max over groups; one group per query.
        case groupMeanThenMax(groups: [Int])
    }

    public var set: String
    public var input: Input
    public var metric: SearchMetricName = .innerProduct
    /// Results per query.
    public var k: Int = 10
    /// The lowest scores instead of the highest.
    public var smallest: Bool = false
    /// Combine several queries into one result list (always searched exactly).
    public var aggregation: Aggregation? = nil
    public var index: IndexPolicy = .auto
    public var probe: Probe = .tuned
    /// Candidates re-scored exactly at k = 10 (scaled with k); nil takes the index's default.
    public var rerank: Int? = nil
    /// Groups of a two-level quantizer (`ivf-rq4`) whose lists are considered when routing;
    /// nil takes the index's default. Ignored by other kinds.
    public var groupProbe: Int? = nil
    /// Fetch the labels and metadata of the hits.
    public var annotations: Bool = true

    public init(set: String, input: Input) {
        self.set = set
        self.input = input
    }
}

/// How a query is (or would be) answered: exact or through which index, with what
/// parameters, over which rows. ``Snapshot/plan(_:)`` computes it without searching.
public struct QueryPlan: Sendable, Codable, CustomStringConvertible {
    public let set: String
    public let version: Int
    public let metric: String
    public let queries: Int
    /// True when every row is scored exactly (no index).
    public let exact: Bool
    /// The index searched through, and its parameters.
    public let index: String?
    public let nprobe: Int?
    public let rerank: Int?
    /// Lists of the index searched through.
    public let lists: Int?
    /// Rows reached through the index, and rows scanned exactly (all live rows when exact,
    /// else the rows of segments appended after the build).
    public let indexedRows: Int
    public let exactRows: Int
    /// The version whose rows the index was built from.
    public let builtOnVersion: Int?
    /// The held-out recall@10 measured at build time for the chosen nprobe, when the build
    /// tuned that nprobe (1 for exact search).
    public let expectedRecall: Double?
    /// Why an index of the set was not used, when one exists.
    public let note: String?
    /// True when the chosen index no longer covers a prefix of the set's segments and the
    /// query falls back to exact search (rebuild the index).
    public let staleIndex: Bool
    /// The plan, step by step, for people.
    public let steps: [String]
    /// The index's kind (`ivf-int8`, `ivf-rq4`), nil for exact search.
    public var kind: String? = nil
    /// `ivf-rq4`: the index's parts and the groups probed when routing.
    public var parts: Int? = nil
    public var groupProbe: Int? = nil

    public var description: String { steps.joined(separator: "\n") }
}

/// One row a query found.
public struct QueryHit: Sendable, Codable, Equatable {
    /// Where the row is stored (stable across deletions of other rows).
    public let address: RowAddress
    public let id: String
    public let score: Float
    /// The row's label and metadata text, when the request asked for annotations and the
    /// set stores them.
    public let label: String?
    public let metadata: String?
}

/// The answer to a ``QueryRequest``: the plan that ran and the hits, best first.
public struct QueryResult: Sendable, Codable {
    public let plan: QueryPlan
    /// One list per query, or one list when the queries were aggregated.
    public let hits: [[QueryHit]]
}

/// A selection of rows of one sketch set against a target direction (SELECT and baselines).
public struct SelectionRequest: Sendable {
    /// The direction rows are matched against.
    public enum Target: Sendable {
        /// A vector of width k.
        case vector([Float])
        /// A stored weight delta, projected with the set's projection.
        case delta(tensorSet: String, negate: Bool)
    }

    public enum Method: Sendable, Equatable {
        /// SELECT greedy: each pick maximises cos(Σ picked + row, target).
        case greedy
        /// As greedy, the running sum reset after every `batch` picks.
        case greedyBatched(batch: Int)
        /// The rows of largest cosine with the target.
        case topK
        /// Uniform without replacement, seeded.
        case random(seed: UInt64)
        /// Top-k by cosine with at most ⌈count / #labels⌉ rows per label.
        case balancedTopK
        /// The rows of lowest or highest value of a stored loss column (the target is not used).
        case lowestLoss(column: String)
        case highestLoss(column: String)
    }

    public var set: String
    public var target: Target
    public var method: Method
    public var count: Int
    /// Greedy strategies sum unit-normalised rows (the paper's full-model variant).
    public var unitRows: Bool = false

    public init(set: String, target: Target, method: Method, count: Int) {
        self.set = set
        self.target = target
        self.method = method
        self.count = count
    }
}

/// The rows a selection picked, in pick order.
public struct SelectionResult: Sendable, Codable {
    public let version: Int
    public let addresses: [RowAddress]
    public let ids: [String]
    public let scores: [Double]
    /// The method as stored with a saved result (e.g. `select/greedy`) and its parameters.
    public let method: String
    public let parameters: [String: JSONValue]
    /// Live positions of the picked rows in this version (a view, for display and export).
    public let positions: [Int]
}
