public import GradSketchDistributed
import GradSketchStore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's one ``MPICollective``: initialised on first use, finalised at exit.
///
/// Every `gradsketch-mpi` subcommand takes its collective from here, so MPI is initialised
/// only by commands that need it (`--help` never starts MPI) and exactly once.
public enum MPIRuntime {
    private static let state = Mutex<MPICollective?>(nil)

    /// The collective over MPI_COMM_WORLD, initialising MPI on first use.
    public static var shared: MPICollective {
        get throws {
            try state.withLock { current in
                if let current { return current }
                let collective = try MPICollective.initialize()
                current = collective
                // Every exit path of the tool (ArgumentParser's exit, a plain return from
                // main) then finalises; finalize is idempotent.
                atexit { MPIRuntime.finalize() }
                return collective
            }
        }
    }

    /// Finalises MPI if this process initialised it; safe to call more than once.
    public static func finalize() {
        let collective = state.withLock { $0 }
        collective?.finalize()
    }

    /// The collective if MPI was initialised, without initialising it.
    public static var ifInitialized: MPICollective? { state.withLock { $0 } }
}

/// A failure every rank of the group already knows about (they voted, or the outcome was
/// broadcast): each rank may exit normally with a failure status, none must abort the job.
public struct AgreedFailure: Error, CustomStringConvertible, Sendable {
    /// The ranks that failed, ascending.
    public let failedRanks: [Int]
    /// What went wrong, one line per failing rank (or the shared outcome).
    public let message: String
    public init(failedRanks: [Int], message: String) {
        self.failedRanks = failedRanks
        self.message = message
    }
    public var description: String { message }
}

extension Collective {
    /// Runs `body` on every rank, then votes: when every rank succeeded, returns this rank's
    /// result; when any failed, every rank throws the same ``AgreedFailure`` naming each
    /// failing rank and its error (`phase` says what was being done). A collective call inside
    /// `body` must not be skipped by a failing rank, so `body` should be local work.
    public func agreeing<T>(_ phase: String, _ body: () throws -> T) throws -> T {
        var outcome: Result<T, any Error>
        do { outcome = .success(try body()) } catch { outcome = .failure(error) }
        let mine: [UInt8]
        switch outcome {
        case .success: mine = []
        case .failure(let error):
            // A failure is never empty text, so an empty message means success.
            let text = "\(error)"
            mine = Array((text.isEmpty ? "unknown error" : text).utf8)
        }
        let all = try allGather(mine)
        let failed = all.indices.filter { !all[$0].isEmpty }
        if failed.isEmpty, case .success(let value) = outcome { return value }
        let lines = failed.map { "rank \($0) (\(phase)): \(String(decoding: all[$0], as: UTF8.self))" }
        throw AgreedFailure(failedRanks: failed, message: lines.joined(separator: "\n"))
    }
}
