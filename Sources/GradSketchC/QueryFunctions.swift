public import CGradSketchABI
import GradSketch
import GradSketchStore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Queries and selections (Spec/c-api.md §10): the request is built from C parameters, the
// facade plans and answers it, and the hits are laid out in flat C arrays for the caller.

/// What a `gs_result` handle stands for: hits in flat arrays, immutable once built.
final class ResultHandle: @unchecked Sendable {
    let version: Int
    let offsets: UnsafeMutableBufferPointer<Int64>
    let scores: UnsafeMutableBufferPointer<Double>
    let addresses: UnsafeMutableBufferPointer<gs_address>
    let ids: StringList
    let labels: StringList?
    let metadata: StringList?
    let planJSON: UnsafeMutablePointer<CChar>

    /// - Parameter lists: one list of (address, id, score, label, metadata) per query.
    init(version: Int, lists: [[(address: GradSketchStore.RowAddress, id: String, score: Double, label: String?, metadata: String?)]],
         annotations: Bool, planJSON: String) {
        self.version = version
        let hits = lists.joined()
        offsets = .allocate(capacity: lists.count + 1)
        scores = .allocate(capacity: max(hits.count, 1))
        addresses = .allocate(capacity: max(hits.count, 1))
        var position = 0
        for (index, list) in lists.enumerated() {
            offsets[index] = Int64(position)
            for hit in list {
                scores[position] = hit.score
                addresses[position] = gs_address(segment: Int64(hit.address.segment), row: Int64(hit.address.row))
                position += 1
            }
        }
        offsets[lists.count] = Int64(position)
        ids = StringList(hits.map(\.id), ownedByCaller: false)
        labels = annotations ? StringList(hits.map { $0.label ?? "" }, ownedByCaller: false) : nil
        metadata = annotations ? StringList(hits.map { $0.metadata ?? "" }, ownedByCaller: false) : nil
        self.planJSON = strdup(planJSON)!
    }

    var listCount: Int { offsets.count - 1 }

    deinit {
        offsets.deallocate()
        scores.deallocate()
        addresses.deallocate()
        free(planJSON)
    }
}

@_cdecl("gs_query_params_init")
public func gs_query_params_init(_ params: UnsafeMutablePointer<gs_query_params>?) {
    params?.pointee = gs_query_params(
        struct_size: UInt32(MemoryLayout<gs_query_params>.size), metric: gs_metric(GS_METRIC_IP), top_k: 10,
        smallest: 0, index: gs_index_policy(GS_INDEX_AUTO), index_name: nil, nprobe: 0, recall_target: 0,
        rerank: 0, aggregation: gs_aggregation(GS_AGGREGATE_NONE), annotations: 1)
}

@_cdecl("gs_select_params_init")
public func gs_select_params_init(_ params: UnsafeMutablePointer<gs_select_params>?) {
    params?.pointee = gs_select_params(
        struct_size: UInt32(MemoryLayout<gs_select_params>.size), method: gs_select_method(GS_SELECT_GREEDY),
        count: 10, batch: 0, seed: 0)
}

/// The caller's parameters, or the defaults when it passed NULL; a struct_size smaller than
/// this version's struct is refused (Spec/c-api.md §2: fields are only ever appended).
func queryParameters(_ params: UnsafePointer<gs_query_params>?) throws -> gs_query_params {
    var values = gs_query_params()
    gs_query_params_init(&values)
    guard let params else { return values }
    guard params.pointee.struct_size >= UInt32(MemoryLayout<gs_query_params>.size) else {
        throw ABIError.invalid("params->struct_size must be at least \(MemoryLayout<gs_query_params>.size) (call gs_query_params_init), found \(params.pointee.struct_size)")
    }
    values = params.pointee
    return values
}

/// Applies C query parameters to a facade request.
func configure(_ request: inout QueryRequest, _ params: gs_query_params) throws {
    switch Int(params.metric) {
    case Int(GS_METRIC_IP): request.metric = .innerProduct
    case Int(GS_METRIC_COSINE): request.metric = .cosine
    default: throw ABIError.invalid("metric must be GS_METRIC_IP (0) or GS_METRIC_COSINE (1), found \(params.metric)")
    }
    guard params.top_k >= 1 else { throw ABIError.invalid("top_k must be ≥ 1, found \(params.top_k)") }
    request.k = Int(params.top_k)
    request.smallest = params.smallest != 0
    switch Int(params.index) {
    case Int(GS_INDEX_AUTO): request.index = .auto
    case Int(GS_INDEX_EXACT): request.index = .exact
    case Int(GS_INDEX_NAMED):
        request.index = .named(try string(params.index_name, "params->index_name (required by GS_INDEX_NAMED)"))
    default: throw ABIError.invalid("index must be GS_INDEX_AUTO (0), GS_INDEX_EXACT (1) or GS_INDEX_NAMED (2), found \(params.index)")
    }
    guard params.nprobe >= 0 else { throw ABIError.invalid("nprobe must be ≥ 0 (0 = tuned), found \(params.nprobe)") }
    guard params.recall_target.isFinite, params.recall_target >= 0, params.recall_target <= 1 else {
        throw ABIError.invalid("recall_target must be 0 (unused) or in (0, 1], found \(params.recall_target)")
    }
    switch (params.nprobe, params.recall_target) {
    case (0, 0): request.probe = .tuned
    case (let nprobe, 0): request.probe = .nprobe(Int(nprobe))
    case (0, let target): request.probe = .recallTarget(target)
    default: throw ABIError.invalid("give nprobe or recall_target, not both (found nprobe \(params.nprobe), recall_target \(params.recall_target))")
    }
    guard params.rerank >= 0 else { throw ABIError.invalid("rerank must be ≥ 0 (0 = none), found \(params.rerank)") }
    request.rerank = params.rerank == 0 ? nil : Int(params.rerank)
    switch Int(params.aggregation) {
    case Int(GS_AGGREGATE_NONE): request.aggregation = nil
    case Int(GS_AGGREGATE_MEAN): request.aggregation = .mean
    case Int(GS_AGGREGATE_MAX): request.aggregation = .max
    default: throw ABIError.invalid("aggregation must be GS_AGGREGATE_NONE (0), GS_AGGREGATE_MEAN (1) or GS_AGGREGATE_MAX (2), found \(params.aggregation)")
    }
    request.annotations = params.annotations != 0
}

/// Runs a query and lays its answer out for C.
func answer(_ request: QueryRequest, on snapshot: Snapshot) throws -> ResultHandle {
    let result = try snapshot.query(request)
    let lists = result.hits.map { list in
        list.map { (address: $0.address, id: $0.id, score: Double($0.score), label: $0.label, metadata: $0.metadata) }
    }
    return ResultHandle(version: result.plan.version, lists: lists, annotations: request.annotations, planJSON: try json(result.plan))
}

/// A Codable value as compact JSON text.
func json(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    return String(decoding: data, as: UTF8.self)
}

@_cdecl("gs_snapshot_query")
public func gs_snapshot_query(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ vectors: UnsafePointer<Float>?, _ count: Int64,
    _ k: Int64, _ params: UnsafePointer<gs_query_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
    _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let set = try string(set, "set")
        guard let out else { throw ABIError.invalid("out_result is NULL") }
        guard let vectors else { throw ABIError.invalid("vectors is NULL") }
        guard count >= 1, k >= 1 else {
            throw ABIError.invalid("vectors must have shape [count, k] with count ≥ 1 and k ≥ 1, found [\(count), \(k)]")
        }
        let (total, overflow) = count.multipliedReportingOverflow(by: k)
        guard !overflow, total <= Int64(Int.max / 4) else { throw ABIError.invalid("vectors of shape [\(count), \(k)] do not fit in memory") }
        let values = Array(UnsafeBufferPointer(start: vectors, count: Int(total)))
        var request = QueryRequest(set: set, input: .vectors(values, count: Int(count)))
        try configure(&request, try queryParameters(params))
        out.pointee = exportHandle(try answer(request, on: handle.snapshot))
    }
}

@_cdecl("gs_snapshot_query_by")
public func gs_snapshot_query_by(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ source: gs_query_source, _ name: UnsafePointer<CChar>?,
    _ params: UnsafePointer<gs_query_params>?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let set = try string(set, "set")
        guard let out else { throw ABIError.invalid("out_result is NULL") }
        let name = try string(name, "name")
        let input: QueryRequest.Input
        switch Int(source) {
        case Int(GS_SOURCE_ROW): input = .storedRow(id: name)
        case Int(GS_SOURCE_DELTA): input = .delta(tensorSet: name, negate: false)
        case Int(GS_SOURCE_NEGATED_DELTA): input = .delta(tensorSet: name, negate: true)
        case Int(GS_SOURCE_QUERY_SET): input = .querySet(name)
        default: throw ABIError.invalid("source must be GS_SOURCE_ROW (1), GS_SOURCE_DELTA (2), GS_SOURCE_NEGATED_DELTA (3) or GS_SOURCE_QUERY_SET (4), found \(source)")
        }
        var request = QueryRequest(set: set, input: input)
        try configure(&request, try queryParameters(params))
        out.pointee = exportHandle(try answer(request, on: handle.snapshot))
    }
}

@_cdecl("gs_snapshot_select")
public func gs_snapshot_select(
    _ snapshot: OpaquePointer?, _ set: UnsafePointer<CChar>?, _ target: UnsafePointer<Float>?, _ k: Int64,
    _ delta: UnsafePointer<CChar>?, _ negate: CInt, _ params: UnsafePointer<gs_select_params>?,
    _ out: UnsafeMutablePointer<OpaquePointer?>?, _ error: ErrorOut
) -> gs_status {
    guarded(error) {
        let handle = try object(snapshot, as: SnapshotHandle.self, "snapshot")
        let set = try string(set, "set")
        guard let out else { throw ABIError.invalid("out_result is NULL") }
        var values = gs_select_params()
        gs_select_params_init(&values)
        if let params {
            guard params.pointee.struct_size >= UInt32(MemoryLayout<gs_select_params>.size) else {
                throw ABIError.invalid("params->struct_size must be at least \(MemoryLayout<gs_select_params>.size) (call gs_select_params_init), found \(params.pointee.struct_size)")
            }
            values = params.pointee
        }
        let goal: SelectionRequest.Target
        switch (target, try optionalString(delta, "delta")) {
        case (let target?, nil):
            guard k >= 1 else { throw ABIError.invalid("target must have k ≥ 1 values, found k = \(k)") }
            goal = .vector(Array(UnsafeBufferPointer(start: target, count: Int(k))))
        case (nil, let tensorSet?):
            goal = .delta(tensorSet: tensorSet, negate: negate != 0)
        case (nil, nil): throw ABIError.invalid("give a target vector or a delta tensor set, found neither")
        case (_?, _?): throw ABIError.invalid("give a target vector or a delta tensor set, not both")
        }
        let method: SelectionRequest.Method
        switch Int(values.method) {
        case Int(GS_SELECT_GREEDY): method = .greedy
        case Int(GS_SELECT_GREEDY_BATCHED):
            guard values.batch >= 1 else { throw ABIError.invalid("batch must be ≥ 1 for GS_SELECT_GREEDY_BATCHED, found \(values.batch)") }
            method = .greedyBatched(batch: Int(values.batch))
        case Int(GS_SELECT_TOP_K): method = .topK
        case Int(GS_SELECT_RANDOM): method = .random(seed: values.seed)
        default: throw ABIError.invalid("method must be GS_SELECT_GREEDY (0), GS_SELECT_GREEDY_BATCHED (1), GS_SELECT_TOP_K (2) or GS_SELECT_RANDOM (3), found \(values.method)")
        }
        guard values.count >= 1 else { throw ABIError.invalid("count must be ≥ 1, found \(values.count)") }
        let result = try handle.snapshot.select(SelectionRequest(set: set, target: goal, method: method, count: Int(values.count)))
        let hits = zip(result.addresses, zip(result.ids, result.scores)).map {
            (address: $0.0, id: $0.1.0, score: $0.1.1, label: String?.none, metadata: String?.none)
        }
        out.pointee = exportHandle(ResultHandle(version: result.version, lists: [hits], annotations: false, planJSON: "{}"))
    }
}

@_cdecl("gs_result_list_count")
public func gs_result_list_count(_ result: OpaquePointer?) -> Int64 {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return 0 }
    return Int64(handle.listCount)
}

@_cdecl("gs_result_offsets")
public func gs_result_offsets(_ result: OpaquePointer?) -> UnsafePointer<Int64>? {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return nil }
    return UnsafePointer(handle.offsets.baseAddress)
}

@_cdecl("gs_result_hit_count")
public func gs_result_hit_count(_ result: OpaquePointer?) -> Int64 {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return 0 }
    return handle.offsets[handle.listCount]
}

@_cdecl("gs_result_scores")
public func gs_result_scores(_ result: OpaquePointer?) -> UnsafePointer<Double>? {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return nil }
    return UnsafePointer(handle.scores.baseAddress)
}

@_cdecl("gs_result_addresses")
public func gs_result_addresses(_ result: OpaquePointer?) -> UnsafePointer<gs_address>? {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return nil }
    return UnsafePointer(handle.addresses.baseAddress)
}

@_cdecl("gs_result_ids")
public func gs_result_ids(_ result: OpaquePointer?) -> OpaquePointer? {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(handle.ids).toOpaque())
}

@_cdecl("gs_result_labels")
public func gs_result_labels(_ result: OpaquePointer?) -> OpaquePointer? {
    guard let handle = try? object(result, as: ResultHandle.self, "result"), let labels = handle.labels else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(labels).toOpaque())
}

@_cdecl("gs_result_metadata")
public func gs_result_metadata(_ result: OpaquePointer?) -> OpaquePointer? {
    guard let handle = try? object(result, as: ResultHandle.self, "result"), let metadata = handle.metadata else { return nil }
    return OpaquePointer(Unmanaged.passUnretained(metadata).toOpaque())
}

@_cdecl("gs_result_version")
public func gs_result_version(_ result: OpaquePointer?) -> Int64 {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return -1 }
    return Int64(handle.version)
}

@_cdecl("gs_result_plan_json")
public func gs_result_plan_json(_ result: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let handle = try? object(result, as: ResultHandle.self, "result") else { return nil }
    return UnsafePointer(handle.planJSON)
}

@_cdecl("gs_result_free")
public func gs_result_free(_ result: OpaquePointer?) {
    releaseHandle(result, as: ResultHandle.self)
}
