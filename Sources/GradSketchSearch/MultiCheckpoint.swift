import CGradSketchKernels
import GradSketchInterchange
public import GradSketchStore

extension ExactSearch {
    /// Multi-checkpoint scores Σ_c w_c ⟨g_c, q_c⟩ (TracIn-style) of every document, in the
    /// first set's live order: each term is a sketch set of the same documents' gradients at one
    /// checkpoint, with that checkpoint's query and weight (e.g. its learning rate). Rows are
    /// matched by id, so the sets may store them in any order; a document missing from any set
    /// is an error naming it.
    public static func scoresAcrossCheckpoints(_ terms: [(set: SketchSet, query: [Float], weight: Float)],
                                               threads: Int = 2) throws -> (ids: [String], scores: [Double]) {
        guard let first = terms.first else {
            throw StoreError(.invalidInput, "expected at least one (set, query, weight) term, found none")
        }
        let ids = try first.set.ids()
        var index: [UTF8Key: Int] = [:]  // ids compare as bytes (Spec §2.5)
        index.reserveCapacity(ids.count)
        for (position, id) in ids.enumerated() { index[UTF8Key(id)] = position }
        var total = [Double](repeating: 0, count: ids.count)
        for term in terms {
            guard term.query.count == term.set.k else {
                throw StoreError(.invalidInput, "the query for set \(term.set.name) has \(term.query.count) values, the set has k = \(term.set.k)")
            }
            if let bad = term.query.firstIndex(where: { !$0.isFinite }) {
                throw StoreError(.invalidInput, "the query for set \(term.set.name) has a non-finite value at column \(bad)")
            }
            let termIDs = try term.set.ids()
            guard termIDs.count == ids.count else {
                throw StoreError(.invalidInput, "set \(term.set.name) has \(termIDs.count) rows, set \(first.set.name) has \(ids.count): expected the same documents")
            }
            let scores = try RowScores.dots(term.set, query: term.query, threads: threads).dots
            for (position, id) in termIDs.enumerated() {
                guard let target = index[UTF8Key(id)] else {
                    throw StoreError(.invalidInput, "document \"\(id)\" of set \(term.set.name) is not in set \(first.set.name)")
                }
                total[target] += Double(term.weight) * Double(scores[position])
            }
        }
        return (ids, total)
    }

    /// The best (or, with `smallest`, worst) `k` documents by ``scoresAcrossCheckpoints(_:threads:)``.
    public static func searchAcrossCheckpoints(_ terms: [(set: SketchSet, query: [Float], weight: Float)],
                                               k: Int, smallest: Bool = false) throws -> [SearchHit] {
        let (ids, total) = try scoresAcrossCheckpoints(terms)
        let sign: Double = smallest ? -1 : 1
        var top = TopK(capacity: k)
        for (position, score) in total.enumerated() { top.offer(Float(sign * score), position: position) }
        return top.sorted.map { SearchHit(position: $0.position, id: ids[$0.position], score: Float(sign) * $0.score) }
    }
}
