// gradsketch-mpi: the distributed commands, run under an MPI launcher (Spec/distributed.md §1):
//     mpirun -np 4 gradsketch-mpi append STORE --set S --input 'part-{rank}.h5'
// Only this binary links MPI; `gradsketch` execs it when it finds itself launched by MPI.
import ArgumentParser
import Foundation
import GradSketchDistributed
import GradSketchMPI
import GradSketchStore

struct GradSketchMPICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradsketch-mpi",
        abstract: "GradSketch commands that run as one MPI job: a collective append, distributed query, selection and index builds.",
        discussion: """
        Launch with mpirun or srun (Spec/distributed.md §1); every rank runs the same command line. \
        Rank 0 alone prints the result (text, or JSON with --json); another rank prints only its own \
        failure, on stderr. When any rank fails, every rank exits with a nonzero status.
        """,
        version: StoreFormat.creatorVersion,
        // The one list of subcommands: each slice adds its line here.
        subcommands: [
            Append.self,
            CollectiveCheck.self,
            Query.self,
            Select.self,
            IndexBuild.self,
        ]
    )
}

GradSketchMPIMain.main()

/// The entry point: parse, run, then report a failure in a way that never leaves a rank waiting.
enum GradSketchMPIMain {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let json = arguments.prefix { $0 != "--" }.contains("--json")
        Store.setWarningHandler { warning in
            FileHandle.standardError.write(Data("gradsketch-mpi: warning: \(warning)\n".utf8))
        }
        var command: any ParsableCommand
        do {
            command = try GradSketchMPICommand.parseAsRoot(arguments)
        } catch {
            // Help, --version and usage errors: MPI is not running yet; the launcher's rank
            // (from its environment) decides who prints, so N ranks do not print N copies.
            if launcherRank() ?? 0 == 0 { GradSketchMPICommand.exit(withError: error) }
            Foundation.exit(GradSketchMPICommand.exitCode(for: error).rawValue)
        }
        do {
            try command.run()
        } catch {
            fail(with: error, json: json)
        }
        MPIRuntime.finalize()
        Foundation.exit(0)
    }

    /// Reports `error` and ends this rank with a failure status.
    ///
    /// An ``AgreedFailure`` is known to every rank: rank 0 prints it, every rank finalises MPI
    /// and exits 1. Any other error is this rank's alone, while the others may be waiting in a
    /// collective: the rank prints it and, in a group of more than one, aborts the job
    /// (MPI_Abort), which ends every rank with a nonzero status.
    static func fail(with error: any Error, json: Bool) -> Never {
        let collective = MPIRuntime.ifInitialized
        let rank = collective?.rank ?? launcherRank() ?? 0
        if let agreed = error as? AgreedFailure {
            if rank == 0 {
                report(agreed.message, code: "failure", path: nil, json: json)
            } else if agreed.failedRanks.contains(rank) {
                // A failing rank also says what failed here, on its own stderr (its host's log).
                let mine = agreed.message.split(separator: "\n").filter { $0.hasPrefix("rank \(rank) ") }
                FileHandle.standardError.write(Data("gradsketch-mpi: error: \(mine.joined(separator: "\n"))\n".utf8))
            }
            MPIRuntime.finalize()
            Foundation.exit(1)
        }
        let status = GradSketchMPICommand.exitCode(for: error)
        if status == .success, collective == nil { GradSketchMPICommand.exit(withError: error) }
        let (code, message, path) = describe(error)
        let prefix = (collective?.size ?? 1) > 1 ? "rank \(rank): " : ""
        // Under --json only rank 0 owns stdout; another rank's failure goes to stderr alone.
        report(prefix + message, code: code, path: path, json: json && rank == 0)
        if let collective, collective.size > 1 { collective.abort(code: 1) }
        MPIRuntime.finalize()
        Foundation.exit(status == .success ? 1 : status.rawValue)
    }

    /// One `gradsketch-mpi: error:` message on stderr; under --json also `{"error": …}` on stdout.
    static func report(_ message: String, code: String, path: String?, json: Bool) {
        let located = message + (path.map { " [\($0)]" } ?? "")
        FileHandle.standardError.write(Data("gradsketch-mpi: error: \(located)\n".utf8))
        if json { printJSON(ErrorOutput(error: .init(code: code, message: message, path: path))) }
    }

    static func describe(_ error: any Error) -> (code: String, message: String, path: String?) {
        if let error = error as? StoreError {
            let detail = error.underlying.map { "\(error.message): \($0)" } ?? error.message
            return (snakeCase(error.code.description), detail, error.path)
        }
        return ("failure", GradSketchMPICommand.message(for: error), nil)
    }

    /// The rank the launcher gave this process, from its environment (OpenMPI, PMIx, MPICH,
    /// Slurm), before MPI is initialised; nil when not launched by one.
    static func launcherRank() -> Int? {
        for name in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
            if let value = ProcessInfo.processInfo.environment[name], let rank = Int(value) { return rank }
        }
        return nil
    }
}

// MARK: - Output shared by the subcommands

/// The `--json` flag every subcommand takes.
struct OutputOptions: ParsableArguments {
    @Flag(help: """
        Print the result as JSON (snake_case keys), on rank 0. On failure rank 0 prints \
        {"error": {"code", "message", "path"}} on stdout instead; the message goes to stderr.
        """)
    var json = false

    /// Prints `value` on rank 0 only: as JSON under --json, else the text `text` makes.
    func emit<T: Encodable>(_ value: T, on collective: any Collective, text: (T) -> String) {
        guard collective.rank == 0 else { return }
        if json { printJSON(value) } else { print(text(value)) }
    }
}

struct ErrorOutput: Encodable {
    struct Detail: Encodable { let code: String, message: String, path: String? }
    let error: Detail
}

/// The JSON every command writes: snake_case keys, sorted, as `gradsketch` writes them.
func makeJSONEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return encoder
}

func printJSON<T: Encodable>(_ value: T) {
    let data = (try? makeJSONEncoder().encode(value)) ?? Data("null".utf8)
    print(String(decoding: data, as: UTF8.self))
}

/// `invalidInput` → `invalid_input`.
func snakeCase(_ name: String) -> String {
    var result = ""
    for character in name {
        if character.isUppercase {
            if !result.isEmpty { result += "_" }
            result += character.lowercased()
        } else {
            result.append(character)
        }
    }
    return result
}

// MARK: - collective-check

/// `gradsketch-mpi collective-check`: exercises every operation of the transport with values
/// whose results each rank can compute on its own (sums of rank numbers, a rank-dependent
/// byte pattern), so a launch, network or MPI library problem shows up before real work.
struct CollectiveCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collective-check",
        abstract: "Check the MPI transport: allGather of varying lengths, broadcast, allReduceSum, barrier."
    )

    @Option(help: "Bytes rank r contributes to the allGather is r × this (rank 0 sends none).")
    var bytesPerRank: Int = 1000
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let ranks: Int, hosts: [String], checks: [String] }

    func run() throws {
        let collective = try MPIRuntime.shared
        let rank = collective.rank, size = collective.size
        var checks: [String] = []
        func pattern(_ r: Int) -> [UInt8] { (0 ..< r * bytesPerRank).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ r) } }
        func require(_ condition: Bool, _ what: String) throws {
            if !condition { throw StoreError(.corrupt, "collective-check: \(what)") }
        }

        let gathered = try collective.allGather(pattern(rank))
        try require(gathered.count == size && gathered.indices.allSatisfy { gathered[$0] == pattern($0) },
                    "allGather returned lengths \(gathered.map(\.count)), expected \((0 ..< size).map { $0 * bytesPerRank }) with each rank's pattern")
        checks.append("allGather of \(size) messages of 0…\((size - 1) * bytesPerRank) bytes")

        let root = size - 1
        let broadcast = try collective.broadcast(rank == root ? pattern(root + 1) : [], root: root)
        try require(broadcast == pattern(root + 1), "broadcast from rank \(root) gave \(broadcast.count) bytes, expected \(pattern(root + 1).count)")
        checks.append("broadcast of \((root + 1) * bytesPerRank) bytes from rank \(root)")

        let doubles = try collective.allReduceSum([Double(rank), 0.5, Double(rank * rank)])
        let n = Double(size)
        try require(doubles == [n * (n - 1) / 2, 0.5 * n, (n - 1) * n * (2 * n - 1) / 6],
                    "allReduceSum(Double) gave \(doubles)")
        let integers = try collective.allReduceSum([Int64(rank), Int64(1) << 40])
        try require(integers == [Int64(size * (size - 1) / 2), Int64(size) << 40], "allReduceSum(Int64) gave \(integers)")
        checks.append("allReduceSum of Double and Int64 (sums of ranks and of squares)")

        let vote = try collective.allSucceeded(true)
        let veto = try collective.allSucceeded(rank != root)
        try require(vote && !veto, "allSucceeded gave \(vote) for all true, \(veto) with rank \(root) false")
        checks.append("allSucceeded all-true and one-false")

        try collective.barrier()
        checks.append("barrier")
        let hosts = try collective.allGather(Array(collective.host.utf8)).map { String(decoding: $0, as: UTF8.self) }
        output.emit(Output(ranks: size, hosts: hosts, checks: checks), on: collective) { result in
            "collective-check: \(result.ranks) rank(s) on \(Set(result.hosts).sorted().joined(separator: ", ")): ok\n"
                + result.checks.map { "  \($0)" }.joined(separator: "\n")
        }
    }
}
