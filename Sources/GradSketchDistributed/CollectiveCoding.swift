import Foundation
public import GradSketchStore

/// Collective operations on Codable values and errors, built from the byte-level ones of
/// ``Collective`` (every rank calls them in the same order, as with the byte ones).
extension Collective {
    /// Every rank's `value`, in rank order, on every rank (JSON on the wire).
    public func allGather<Value: Codable>(value: Value) throws -> [Value] {
        let encoder = JSONEncoder()
        let decoder = JSONDecoder()
        return try allGather(Array(try encoder.encode(value))).map { try decoder.decode(Value.self, from: Data($0)) }
    }

    /// `root`'s `value` on every rank (`value` is ignored on the others, which may pass nil).
    public func broadcast<Value: Codable>(value: Value?, root: Int) throws -> Value {
        let bytes = rank == root ? Array(try JSONEncoder().encode(value)) : []
        let received = try broadcast(bytes, root: root)
        guard let decoded = try JSONDecoder().decode(Value?.self, from: Data(received)) else {
            throw StoreError(.invalidInput, "rank \(root) broadcast no value")
        }
        return decoded
    }

    /// The vote after a phase any rank may fail: every rank passes its own error (nil when it
    /// succeeded) and every rank throws the lowest failing rank's error, worded with its rank
    /// and host, when any failed. One allGather.
    public func throwIfAnyFailed(_ error: (any Error)?) throws {
        let mine = error.map { RankFailure($0, rank: rank, host: host) }
        if let first = try allGather(value: mine).compactMap({ $0 }).first {
            throw AgreedError(first.storeError)
        }
    }
}

/// A rank's error as it travels to the other ranks.
struct RankFailure: Codable, Sendable {
    let code: String
    let message: String
    let path: String?
    let rank: Int
    let host: String

    init(_ error: any Error, rank: Int, host: String) {
        if let error = error as? StoreError {
            code = error.code.description
            message = error.message
            path = error.path
        } else {
            code = StoreError.Code.io.description
            message = "\(error)"
            path = nil
        }
        self.rank = rank
        self.host = host
    }

    var storeError: StoreError {
        let codes: [StoreError.Code] = [.notAStore, .unsupportedVersion, .notFound, .invalidInput, .corrupt, .io, .conflict]
        let known = codes.first { $0.description == code } ?? .io
        return StoreError(known, "rank \(rank) on host \(host): \(message)", path: path)
    }
}

/// Runs `body`, returning its value or the error it threw (so the rank can still take part
/// in the collectives that follow, and vote with the error).
func attempt<T>(_ body: () throws -> T) -> Result<T, any Error> {
    do { return .success(try body()) } catch { return .failure(error) }
}

/// An error every rank of the group throws at the same point (after a vote, or from a check
/// of inputs every rank has): a rank may exit on it without aborting the others.
public struct AgreedError: Error, CustomStringConvertible, Sendable {
    public let error: StoreError
    public init(_ error: StoreError) { self.error = error }
    public var description: String { error.description }
}
