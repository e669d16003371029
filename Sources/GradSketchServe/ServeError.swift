import Foundation
public import GradSketch
public import GradSketchStore
public import HTTPTypes
public import Hummingbird
import Logging

/// A refused or failed request: the HTTP status and a message saying what was expected and
/// what was found. Its response body is `{"error": message, "status": code}` (Spec/serve.md §4).
public struct ServeError: Error, HTTPResponseError, CustomStringConvertible, Sendable {
    public let status: HTTPResponse.Status
    public let message: String

    public init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status.code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try JSONResponse.make(ErrorBody(error: message, status: status.code))
        response.status = status
        if status == .methodNotAllowed, let allowed = allowedMethods {
            response.headers[.allow] = allowed
        }
        return response
    }

    /// The `Allow` header of a 405.
    var allowedMethods: String? = nil

    static func badRequest(_ message: String) -> ServeError { ServeError(.badRequest, message) }

    /// The HTTP status of an engine error: the one place engine codes meet HTTP.
    ///
    /// Names that do not exist are the client's mistake (404), input that breaks a rule too
    /// (400), a concurrent change is a conflict (409); everything else — a corrupt or
    /// unreadable store, an unsupported format — is the server's failure (500).
    public static func status(for code: StoreError.Code) -> HTTPResponse.Status {
        switch code {
        case .notFound: .notFound
        case .invalidInput: .badRequest
        case .conflict: .conflict
        default: .internalServerError
        }
    }
}

struct ErrorBody: Encodable {
    let error: String
    let status: Int
}

/// Turns every error a handler or the router throws into a JSON ``ServeError`` response,
/// and logs the server's own failures (5xx).
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ServeError {
            throw error
        } catch let error as StoreError {
            let status = ServeError.status(for: error.code)
            if status.kind == .serverError {
                logger.error("\(request.method) \(request.uri.path) failed: \(error)")
            }
            throw ServeError(status, error.description)
        } catch let error as any HTTPResponseError {
            // The router's 404 for an unknown path, NIO's 413 for an oversized body.
            throw ServeError(error.status, Self.message(for: error.status, request: request))
        } catch {
            logger.error("\(request.method) \(request.uri.path) failed: \(error)")
            throw ServeError(.internalServerError, "internal error: \(error)")
        }
    }

    static func message(for status: HTTPResponse.Status, request: Request) -> String {
        switch status {
        case .notFound: "no endpoint \(request.method) \(request.uri.path) (see Spec/serve.md)"
        case .contentTooLarge: "the request body is larger than this server accepts (--max-body-bytes)"
        default: status.reasonPhrase
        }
    }
}

/// JSON responses, UTF-8, snake_case keys.
enum JSONResponse {
    static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
