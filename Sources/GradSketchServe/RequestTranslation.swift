public import GradSketch

// JSON bodies into the facade's requests. Everything a client can get wrong without the
// store's help — which inputs, their widths, finite values, option names and ranges — is
// checked here with a message naming the field; the engine then checks the rest.

extension QueryBody {
    /// The facade request this body asks for, over `set` of width `k`.
    ///
    /// - Throws: ``ServeError`` 400 naming the field that is missing, of the wrong width or
    ///   non-finite, or out of range.
    public func request(set: String, k setWidth: Int, maxK: Int) throws -> QueryRequest {
        let given = [vector != nil, vectors != nil, rowID != nil, delta != nil].filter { $0 }.count
        guard given == 1 else {
            throw ServeError.badRequest("expected exactly one of \"vector\", \"vectors\", \"row_id\", \"delta\", found \(given)")
        }
        let input: QueryRequest.Input
        if let vector {
            input = .vectors(try finiteFloats(vector, field: "vector", width: setWidth, set: set), count: 1)
        } else if let vectors {
            guard !vectors.isEmpty else { throw ServeError.badRequest("\"vectors\" must hold at least one vector, found none") }
            var values: [Float] = []
            values.reserveCapacity(vectors.count * setWidth)
            for (position, vector) in vectors.enumerated() {
                values += try finiteFloats(vector, field: "vectors[\(position)]", width: setWidth, set: set)
            }
            input = .vectors(values, count: vectors.count)
        } else if let rowID {
            input = .storedRow(id: rowID)
        } else {
            input = .delta(tensorSet: delta!, negate: negate ?? false)
        }
        if negate != nil && delta == nil {
            throw ServeError.badRequest("\"negate\" applies to a \"delta\" query only")
        }
        var request = QueryRequest(set: set, input: input)
        let k = self.k ?? 10
        guard k >= 1 && k <= maxK else { throw ServeError.badRequest("\"k\" must be in 1...\(maxK), found \(k)") }
        request.k = k
        if let metric {
            guard let name = SearchMetricName(rawValue: metric) else {
                throw ServeError.badRequest("\"metric\" must be \"ip\" or \"cosine\", found \"\(metric)\"")
            }
            request.metric = name
        }
        request.smallest = smallest ?? false
        switch index ?? "auto" {
        case "auto": request.index = .auto
        case "exact": request.index = .exact
        case let name: request.index = .named(name)
        }
        switch (nprobe, recall) {
        case (nil, nil): request.probe = .tuned
        case (let lists?, nil):
            guard lists >= 1 else { throw ServeError.badRequest("\"nprobe\" must be at least 1, found \(lists)") }
            request.probe = .nprobe(lists)
        case (nil, let target?):
            guard target > 0 && target <= 1 else { throw ServeError.badRequest("\"recall\" must be in (0, 1], found \(target)") }
            request.probe = .recallTarget(target)
        case (_?, _?):
            throw ServeError.badRequest("give \"nprobe\" or \"recall\", not both")
        }
        if let rerank {
            guard rerank >= 0 else { throw ServeError.badRequest("\"rerank\" must be at least 0, found \(rerank)") }
            request.rerank = rerank
        }
        if let aggregate {
            switch aggregate {
            case "mean": request.aggregation = .mean
            case "max": request.aggregation = .max
            default: throw ServeError.badRequest("\"aggregate\" must be \"mean\" or \"max\", found \"\(aggregate)\"")
            }
        }
        request.annotations = annotations ?? true
        return request
    }
}

extension SelectBody {
    /// The facade selection this body asks for, over `set` of width `k`.
    ///
    /// - Throws: ``ServeError`` 400 naming the field that is missing or wrong.
    public func request(set: String, k setWidth: Int) throws -> SelectionRequest {
        guard let count else { throw ServeError.badRequest("\"count\" is required: how many rows to select") }
        let methodName = method ?? "greedy"
        let method: SelectionRequest.Method
        switch methodName {
        case "greedy": method = .greedy
        case "greedy-batched":
            guard let batch, batch >= 1 else {
                throw ServeError.badRequest("\"greedy-batched\" needs \"batch\" of at least 1, found \(batch.map(String.init) ?? "none")")
            }
            method = .greedyBatched(batch: batch)
        case "topk": method = .topK
        case "topk-balanced": method = .balancedTopK
        case "random": method = .random(seed: seed ?? 0)
        case "loss-low": method = .lowestLoss(column: column ?? "loss")
        case "loss-high": method = .highestLoss(column: column ?? "loss")
        default:
            throw ServeError.badRequest("\"method\" must be one of greedy, greedy-batched, topk, topk-balanced, random, loss-low, loss-high; found \"\(methodName)\"")
        }
        if batch != nil, methodName != "greedy-batched" {
            throw ServeError.badRequest("\"batch\" applies to method greedy-batched only, found method \(methodName)")
        }
        if negate != nil && delta == nil {
            throw ServeError.badRequest("\"negate\" applies to a \"delta\" target only")
        }
        let target: SelectionRequest.Target
        switch (vector, delta) {
        case (let vector?, nil): target = .vector(try finiteFloats(vector, field: "vector", width: setWidth, set: set))
        case (nil, let delta?): target = .delta(tensorSet: delta, negate: negate ?? false)
        case (nil, nil) where !method.usesTarget: target = .vector([Float](repeating: 0, count: setWidth))
        case (nil, nil): throw ServeError.badRequest("method \(methodName) needs a target: \"vector\" or \"delta\"")
        case (_?, _?): throw ServeError.badRequest("give \"vector\" or \"delta\", not both")
        }
        return SelectionRequest(set: set, target: target, method: method, count: count)
    }
}

extension SelectionRequest.Method {
    var usesTarget: Bool {
        switch self {
        case .random, .lowestLoss, .highestLoss: false
        default: true
        }
    }
}

/// `values` as float32, checked to be `width` finite numbers that stay finite in float32.
func finiteFloats(_ values: [Double], field: String, width: Int, set: String) throws -> [Float] {
    guard values.count == width else {
        throw ServeError.badRequest("\"\(field)\" must have \(width) values (the k of set \(set)), found \(values.count)")
    }
    return try values.enumerated().map { position, value in
        let narrowed = Float(value)
        guard narrowed.isFinite else {
            throw ServeError.badRequest("\"\(field)\"[\(position)] is \(value), which is not a finite float32 value")
        }
        return narrowed
    }
}
