import GradSketchStore
import GradSketchSelect

extension Snapshot {
    /// Selects `request.count` rows of a set against a target direction (SELECT greedy,
    /// greedy-batched, top-k by cosine, or seeded random), returning them in pick order.
    ///
    /// - Throws: `.invalidInput` for a count outside 1 ... live rows, a target of the wrong
    ///   width or with non-finite values, a batch below 1; `.notFound` for unknown names.
    ///
    /// - Parameter progress: called between units of long work with (phase, done, total).
    public func select(_ request: SelectionRequest,
                       progress: ((_ phase: String, _ done: Int, _ total: Int) -> Void)? = nil) throws -> SelectionResult {
        let opened = try openedSet(request.set)
        let target = opened.set
        let query: [Float]
        switch request.target {
        case _ where !request.method.usesTarget:
            query = [Float](repeating: 0, count: target.k)
        case .vector(let values):
            guard values.count == target.k else {
                throw StoreError(.invalidInput, "the selection target must have \(target.k) values for set \(target.name), found \(values.count)")
            }
            query = values
        case .delta(let name, let negate):
            query = try projectedDelta(name, for: target, negate: negate)
        }
        let strategy: SelectStrategy
        var batch = 0, seed: UInt64 = 0, lossColumn = "loss"
        switch request.method {
        case .greedy: strategy = .greedy
        case .greedyBatched(let size): strategy = .greedyBatched; batch = size
        case .topK: strategy = .topK
        case .random(let value): strategy = .random; seed = value
        case .balancedTopK: strategy = .balancedTopK
        case .lowestLoss(let column): strategy = .lowestLoss; lossColumn = column
        case .highestLoss(let column): strategy = .highestLoss; lossColumn = column
        }
        let picked = try Select.run(target, query: query, count: request.count, strategy: strategy, batchSize: batch,
                                    lossColumn: lossColumn, seed: seed, unitRows: request.unitRows, progress: progress)
        let live = try opened.liveRows()
        return SelectionResult(version: version, addresses: picked.positions.map(live.address(ofLive:)), ids: picked.ids,
                               scores: picked.scores, method: picked.method, parameters: picked.parameters,
                               positions: picked.positions)
    }
}

extension SelectionRequest.Method {
    /// Whether the method matches rows against the target (random and loss orders do not).
    var usesTarget: Bool {
        switch self {
        case .random, .lowestLoss, .highestLoss: false
        case .greedy, .greedyBatched, .topK, .balancedTopK: true
        }
    }
}
