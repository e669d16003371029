import Foundation
import GradSketch
import GradSketchStore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix

/// The endpoints of Spec/serve.md §3 over a ``SnapshotSource``.
///
/// Handlers decode and check the body on the server's tasks, then run the engine call (and
/// the JSON encoding of its answer) on a dedicated thread pool: a query is CPU-bound and
/// synchronous, and on Swift's cooperative pool one slow query would hold a thread every
/// other request needs.
struct ServeRoutes: Sendable {
    let source: SnapshotSource
    let pool: NIOThreadPool
    let configuration: ServeConfiguration
    let logger: Logger

    /// Every endpoint, with the methods it answers (others get 405).
    static let endpoints: [(path: RouterPath, methods: [HTTPRequest.Method])] = [
        ("/v1/health", [.get]),
        ("/v1/sets", [.get]),
        ("/v1/sets/:set/query", [.post]),
        ("/v1/sets/:set/select", [.post]),
    ]

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: JSONErrorMiddleware(logger: logger))
        router.get("/v1/health") { _, _ in
            try JSONResponse.make(HealthResponse(status: "ok", version: source.snapshot.version))
        }
        router.get("/v1/sets") { _, _ in
            let snapshot = source.snapshot
            return try await pool.runIfActive {
                let sets = try snapshot.sketchSetNames.map { name in
                    let info = try snapshot.sketchSet(name)
                    return SetSummary(name: info.name, k: info.k, dtype: info.dtype.rawValue, rows: info.rows,
                                      segments: info.segments, indexes: info.indexes)
                }
                return try JSONResponse.make(sets)
            }
        }
        router.post("/v1/sets/:set/query") { request, context in
            let set = try Self.setName(context)
            let body = try await decode(QueryBody.self, from: request)
            let snapshot = source.snapshot
            let maxK = configuration.maxK
            return try await pool.runIfActive {
                let width = try snapshot.sketchSet(set).k
                try Self.requireTensorSet(body.delta, in: snapshot)
                let result = try snapshot.query(try body.request(set: set, k: width, maxK: maxK))
                return try JSONResponse.make(QueryResponse(version: snapshot.version, set: set,
                                                           results: result.hits.map { $0.map(HitBody.init) },
                                                           plan: result.plan))
            }
        }
        router.post("/v1/sets/:set/select") { request, context in
            let set = try Self.setName(context)
            let body = try await decode(SelectBody.self, from: request)
            let snapshot = source.snapshot
            return try await pool.runIfActive {
                let width = try snapshot.sketchSet(set).k
                try Self.requireTensorSet(body.delta, in: snapshot)
                let result = try snapshot.select(try body.request(set: set, k: width))
                let picks = zip(result.ids, zip(result.scores, result.addresses)).map { id, rest in
                    PickBody(id: id, score: rest.0, segment: rest.1.segment, row: rest.1.row)
                }
                return try JSONResponse.make(SelectResponse(version: snapshot.version, set: set, method: result.method,
                                                            ids: result.ids, scores: result.scores, picks: picks))
            }
        }
        // Without these, the router answers a known path with the wrong method as an unknown
        // path (404); a client deserves to hear that the path exists.
        let methods: [HTTPRequest.Method] = [.get, .post, .put, .delete, .patch]
        for endpoint in Self.endpoints {
            let allowed = endpoint.methods.map(\.rawValue).joined(separator: ", ")
            for method in methods where !endpoint.methods.contains(method) {
                router.on(endpoint.path, method: method) { request, _ -> Response in
                    var error = ServeError(.methodNotAllowed, "\(request.method) is not allowed on \(request.uri.path): expected \(allowed)")
                    error.allowedMethods = allowed
                    throw error
                }
            }
        }
        return router
    }

    /// Refuses a delta that names no tensor set of the snapshot (404) before the engine would
    /// first check the set's projection.
    static func requireTensorSet(_ name: String?, in snapshot: Snapshot) throws {
        guard let name, !snapshot.tensorSetNames.contains(name) else { return }
        let known = snapshot.tensorSetNames
        throw ServeError(.notFound, "no tensor set \"\(name)\" in version \(snapshot.version) (tensor sets: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
    }

    /// The set named in the path, percent-decoded.
    static func setName(_ context: BasicRequestContext) throws -> String {
        let raw = try context.parameters.require("set")
        guard let name = raw.removingPercentEncoding, !name.isEmpty else {
            throw ServeError.badRequest("the set name in the path is not valid percent-encoded UTF-8: \(raw)")
        }
        return name
    }

    /// The JSON body of `request`, refused with 413 above the configured size and with 400
    /// when it is not JSON of the expected shape.
    func decode<Body: Decodable>(_ type: Body.Type, from request: Request) async throws -> Body {
        let limit = configuration.maxBodyBytes
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > limit {
            throw ServeError(.contentTooLarge, "the request body has \(declared) bytes: expected at most \(limit) (--max-body-bytes)")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw ServeError(.contentTooLarge, "the request body is over \(limit) bytes: expected at most \(limit) (--max-body-bytes)")
        }
        guard buffer.readableBytes > 0 else {
            throw ServeError.badRequest("the request body is empty: expected a JSON object")
        }
        do {
            return try JSONDecoder().decode(Body.self, from: Data(buffer.readableBytesView))
        } catch let error as ServeError {
            throw error
        } catch let error as DecodingError {
            throw ServeError.badRequest(Self.describe(error))
        }
    }

    /// A decoding failure as one line naming the field and what was expected.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            let text = keys.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
            return text.isEmpty ? "the body" : "field " + (text.hasPrefix(".") ? String(text.dropFirst()) : text)
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)): expected \(jsonName(of: type)), found something else (\(context.debugDescription))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)): expected \(jsonName(of: type)), found null"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])) is required"
        case .dataCorrupted(let context):
            let detail = (context.underlyingError.map { "\($0)" }) ?? context.debugDescription
            return context.codingPath.isEmpty ? "the body is not valid JSON: \(detail)" : "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "the body is not the JSON expected: \(error)"
        }
    }

    static func jsonName(of type: Any.Type) -> String {
        switch type {
        case is Bool.Type: "a boolean"
        case is String.Type: "a string"
        case is Int.Type, is UInt64.Type: "an integer"
        case is Double.Type: "a number"
        case is [Double].Type: "an array of numbers"
        case is [[Double]].Type: "an array of arrays of numbers"
        case _ where String(describing: type).hasPrefix("Dictionary"): "a JSON object"
        default: "a \(type)"
        }
    }
}
