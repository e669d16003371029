import GradSketchStore
import GradSketchSearch

/// One term of a multi-checkpoint query: a sketch set of the same documents' gradients at
/// one checkpoint, that checkpoint's query and its weight (e.g. its learning rate).
public struct CheckpointTerm: Sendable {
    public var set: String
    /// `.vectors` with one query, or `.storedRow` (a row of this term's set).
    public var input: QueryRequest.Input
    public var weight: Float

    public init(set: String, input: QueryRequest.Input, weight: Float = 1) {
        self.set = set
        self.input = input
        self.weight = weight
    }
}

extension Snapshot {
    /// The best (or, with `smallest`, worst) `k` documents by Σ_c w_c ⟨g_c, q_c⟩ over the
    /// terms (TracIn-style), scored exactly; rows are matched by id across the sets, and the
    /// hits are rows of the first term's set.
    ///
    /// - Throws: `.invalidInput` for a term whose input is not one vector or stored row, or
    ///   whose sets do not hold the same documents.
    public func queryAcrossCheckpoints(_ terms: [CheckpointTerm], k: Int, smallest: Bool = false,
                                       annotations: Bool = true) throws -> [QueryHit] {
        guard let first = terms.first else {
            throw StoreError(.invalidInput, "expected at least one checkpoint term, found none")
        }
        guard k >= 1 else { throw StoreError(.invalidInput, "k must be at least 1, found \(k)") }
        let resolved = try terms.map { term -> (set: SketchSet, query: [Float], weight: Float) in
            let set = try openedSet(term.set).set
            switch term.input {
            case .vectors(let values, count: 1):
                return (set, values, term.weight)
            case .storedRow(let id):
                return (set, try set.floatRows(at: try set.positions(of: [id])), term.weight)
            default:
                throw StoreError(.invalidInput, "a checkpoint term takes one query vector or a stored row (set \(term.set))")
            }
        }
        let found = try ExactSearch.searchAcrossCheckpoints(resolved, k: k, smallest: smallest)
        let opened = try openedSet(first.set)
        let entry = opened.set.entry
        let addresses = try opened.set.addresses(ofLive: found.map(\.position))
        let labels = annotations && entry.hasLabels ? try opened.set.labels(at: addresses) : nil
        let metadata = annotations && entry.hasMetadata ? try opened.set.metadata(at: addresses) : nil
        return found.indices.map { rank in
            QueryHit(address: addresses[rank], id: found[rank].id, score: found[rank].score,
                     label: labels?[rank], metadata: metadata?[rank])
        }
    }
}
