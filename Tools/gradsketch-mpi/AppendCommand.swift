import ArgumentParser
import Foundation
import GradSketch
import GradSketchDistributed
import GradSketchInterchange
import GradSketchMPI
import GradSketchStore

/// `gradsketch-mpi append`: many writers, one commit (Spec/distributed.md §2).
///
/// Collective (the default): every rank writes its input as segments of an append session and
/// prepares it; the ranks vote; when all succeeded, rank 0 commits every rank's token as ONE
/// version and broadcasts the outcome. When any rank failed, or the commit was refused,
/// nothing is committed and every rank removes the segments it wrote.
///
/// Independent (`--independent`): every rank appends and commits on its own (the store's
/// link(2) protocol orders the commits), one version per rank; a failed rank commits nothing
/// and the others' versions stand.
struct Append: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append",
        abstract: "Append every rank's rows to a set and commit them as one version (all or nothing), or one version per rank with --independent.",
        discussion: """
        Each file option may contain {rank}, replaced by the rank's number (0-based), so one \
        command line gives every rank its own input: --rows 'part-{rank}.npy'. A rank whose rows \
        file holds 0 rows contributes nothing. Rows, ids, labels, metadata and columns are read as \
        `gradsketch append` reads them; ids default to <segment-id>:<row>, unique across ranks.
        """
    )

    @Argument(help: "Path of the store directory (every rank must see the same store).") var store: String
    @Option(help: "Name of the sketch set.") var set: String
    @Option(name: [.customLong("rows"), .customLong("input")], help: "This rank's rows: .npy or .safetensors, shape [N, k]; {rank} is replaced.")
    var rows: String
    @Option(help: "Tensor to read from a .safetensors rows file.") var tensor: String?
    @Option(help: "Ids file, one id per line; {rank} is replaced.") var ids: String?
    @Option(help: "Labels file, one label per line; {rank} is replaced.") var labels: String?
    @Option(help: "Metadata file, one entry per line; {rank} is replaced.") var metadata: String?
    @Option(help: "How to read metadata lines: text or json (one JSON value per line).") var metadataKind: String = "text"
    @Option(name: .customLong("column"), help: ArgumentHelp("A float column, NAME=FILE (.npy or one number per line); {rank} is replaced. Repeatable.", valueName: "name=file"))
    var columns: [String] = []
    @Option(help: "Stored dtype when the set is created: float16 or float32 (default: float16 for float16 input, else float32).") var dtype: String?
    @Flag(help: "When creating the set, allow rows with NaN or ±Inf.") var allowNonfinite = false
    @Option(name: .customLong("attribute"), help: ArgumentHelp("A set attribute KEY=JSON when creating the set. Repeatable.", valueName: "key=json"))
    var attributes: [String] = []
    @Flag(help: "Every rank commits its own version (no vote): the store's concurrent-writer protocol alone.") var independent = false
    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        let set: String
        let mode: String
        let ranks: Int
        /// The one version committed (collective), or nil with --independent.
        let version: Int?
        /// Each rank's version (--independent), in rank order.
        let versions: [Int]?
        let rowsPerRank: [Int]
        let totalRows: Int
        let seconds: Double
        let warnings: [String]
    }

    func validate() throws {
        guard MetadataKind(rawValue: metadataKind) != nil else {
            throw ValidationError("--metadata-kind must be text or json, found \(metadataKind)")
        }
        for column in columns where !column.contains("=") {
            throw ValidationError("--column expects NAME=FILE, found \(column)")
        }
    }

    func run() throws {
        let collective = try MPIRuntime.shared
        let started = Date()
        let result = independent ? try appendIndependently(collective) : try appendCollectively(collective)
        // Every mode ends with a collective that waits for every rank, so this is the job's time.
        let seconds = Date().timeIntervalSince(started)
        let output = Output(set: set, mode: independent ? "independent" : "collective", ranks: collective.size,
                            version: result.version, versions: result.versions, rowsPerRank: result.rowsPerRank,
                            totalRows: result.rowsPerRank.reduce(0, +), seconds: seconds, warnings: result.warnings)
        self.output.emit(output, on: collective) { output in
            var text = independent
                ? "appended \(output.totalRows) rows to \(set) from \(output.ranks) rank(s): versions \(output.versions ?? [])"
                : "appended \(output.totalRows) rows to \(set) from \(output.ranks) rank(s): version \(output.version ?? -1)"
            text += String(format: " (%.2f s)", output.seconds)
            for warning in output.warnings { text += "\nwarning: \(warning)" }
            return text
        }
    }

    struct Outcome {
        var version: Int?
        var versions: [Int]?
        var rowsPerRank: [Int]
        var warnings: [String]
    }

    // MARK: - Collective

    /// What each rank tells the others after its local phase.
    struct Contribution: Codable {
        let rows: Int
        /// The prepared token; nil for a rank with no rows.
        let token: String?
    }

    /// What rank 0 tells the others after the commit.
    struct CommitOutcome: Codable {
        let version: Int?
        let warnings: [String]
        let error: String?
    }

    private func appendCollectively(_ collective: MPICollective) throws -> Outcome {
        let rank = collective.rank
        var session: GradSketch.AppendSession?
        // Whatever fails before rank 0's outcome is known, this rank's own segments go: no
        // version references them (rank 0 commits only after a unanimous vote).
        func removeMySegments() { session?.abort() }

        let contribution: Contribution
        do {
            contribution = try collective.agreeing("write and prepare") {
                let opened = try GradSketch.Store(opening: store)
                let inputs = try RankInputs(command: self, rank: rank)
                guard let rows = inputs.rows.input else { return Contribution(rows: 0, token: nil) }
                let appending = try opened.beginAppend(to: set, options: try inputs.options)
                session = appending
                try appending.append(rows, annotations: inputs.annotations)
                return Contribution(rows: rows.rowCount, token: try appending.prepare().token)
            }
        } catch {
            removeMySegments()
            throw error
        }

        let decoder = JSONDecoder(), encoder = JSONEncoder()
        // From here on, a failed MPI call leaves this rank's files alone: rank 0 may have
        // committed them. Unreferenced ones go with vacuum's grace (Spec/distributed.md §2).
        let contributions = try collective.allGather(Array(try encoder.encode(contribution))).map {
            try decoder.decode(Contribution.self, from: Data($0))
        }
        let tokens = contributions.compactMap(\.token).map(PreparedAppend.init(token:))

        var outcome = CommitOutcome(version: nil, warnings: [], error: nil)
        if rank == 0 {
            do {
                guard !tokens.isEmpty else {
                    throw StoreError(.invalidInput, "nothing to commit: every rank's rows file holds 0 rows")
                }
                let opened = try GradSketch.Store(opening: store)
                let committed = try opened.commit(prepared: tokens, detail: "gradsketch-mpi append from \(collective.size) ranks (\(tokens.count) with rows)")
                outcome = CommitOutcome(version: committed.version, warnings: committed.warnings, error: nil)
            } catch {
                outcome = CommitOutcome(version: nil, warnings: [], error: "\(error)")
            }
        }
        // Only an explicit "not committed" from rank 0 lets a rank remove its segments: if the
        // broadcast itself fails, the version may exist, and its files must stay.
        let shared = try decoder.decode(CommitOutcome.self, from: Data(try collective.broadcast(Array(try encoder.encode(outcome)), root: 0)))
        guard let version = shared.version else {
            removeMySegments()
            throw AgreedFailure(failedRanks: [0], message: "rank 0 (commit): \(shared.error ?? "unknown error"); nothing was committed")
        }
        return Outcome(version: version, versions: nil, rowsPerRank: contributions.map(\.rows), warnings: shared.warnings)
    }

    // MARK: - Independent

    private func appendIndependently(_ collective: MPICollective) throws -> Outcome {
        let rank = collective.rank
        let (version, rows, warnings) = try collective.agreeing("append and commit") { () throws -> (Int, Int, [String]) in
            let opened = try GradSketch.Store(opening: store)
            let inputs = try RankInputs(command: self, rank: rank)
            guard let rows = inputs.rows.input else {
                throw StoreError(.invalidInput, "nothing to append: the rows file holds 0 rows", path: inputs.rowsPath)
            }
            let session = try opened.beginAppend(to: set, options: try inputs.options)
            try session.append(rows, annotations: inputs.annotations)
            let committed = try session.commit(detail: "gradsketch-mpi append --independent, rank \(rank) of \(collective.size)")
            return (committed.version, rows.rowCount, committed.warnings)
        }
        let encoder = JSONEncoder(), decoder = JSONDecoder()
        struct Report: Codable { let version: Int, rows: Int, warnings: [String] }
        let reports = try collective.allGather(Array(try encoder.encode(Report(version: version, rows: rows, warnings: warnings)))).map {
            try decoder.decode(Report.self, from: Data($0))
        }
        return Outcome(version: nil, versions: reports.map(\.version), rowsPerRank: reports.map(\.rows),
                       warnings: reports.enumerated().flatMap { rank, report in report.warnings.map { "rank \(rank): \($0)" } })
    }
}

/// One rank's inputs, read as `gradsketch append` reads them, with {rank} substituted.
private struct RankInputs {
    let rows: RowsFile
    let rowsPath: String
    let annotations: RowAnnotations
    let command: Append

    init(command: Append, rank: Int) throws {
        self.command = command
        func path(_ template: String) -> String { template.replacingOccurrences(of: "{rank}", with: String(rank)) }
        rowsPath = path(command.rows)
        rows = try RowsFile(path: rowsPath, tensor: command.tensor)
        var annotations = RowAnnotations()
        annotations.ids = try command.ids.map { try TextLines.read(path($0)) }
        annotations.labels = try command.labels.map { try TextLines.read(path($0)) }
        annotations.metadata = try command.metadata.map { try TextLines.read(path($0)) }
        annotations.metadataKind = MetadataKind(rawValue: command.metadataKind) ?? .text
        for column in command.columns {
            let separator = column.firstIndex(of: "=")!
            annotations.columns[String(column[..<separator])] = try QueryInputs.readColumn(path(String(column[column.index(after: separator)...])))
        }
        self.annotations = annotations
    }

    var options: SketchSetOptions {
        get throws {
            var options = SketchSetOptions(dtype: try command.dtype.map(SketchDType.init(parsing:)), allowNonfinite: command.allowNonfinite)
            for attribute in command.attributes {
                guard let separator = attribute.firstIndex(of: "=") else {
                    throw StoreError(.invalidInput, "--attribute expects KEY=JSON, found \(attribute)")
                }
                let text = String(attribute[attribute.index(after: separator)...])
                options.attributes[String(attribute[..<separator])] = (try? JSONValue.parse(text)) ?? .string(text)
            }
            return options
        }
    }
}

/// Rows from a `.npy` or `.safetensors` file, mapped; `input` stays valid while this lives.
private final class RowsFile {
    /// nil for a file of shape [0, k]: a rank with nothing to add.
    let input: RowInput?
    /// The mapped file `input` points into.
    private let owner: AnyObject

    init(path: String, tensor: String?) throws {
        let bytes: UnsafeRawBufferPointer
        let elementType: ElementType
        let shape: [Int]
        let name: String
        if path.hasSuffix(".safetensors") {
            let file = try SafetensorsFile(path: path)
            owner = file
            let candidates = tensor.map { wanted in file.tensors.filter { $0.name == wanted } } ?? file.tensors
            guard candidates.count == 1 else {
                let names = file.tensors.map(\.name).prefix(10).joined(separator: ", ")
                throw StoreError(tensor == nil ? .invalidInput : .notFound,
                                 tensor.map { "no tensor \"\($0)\" in the file (tensors: \(names))" } ?? "expected one tensor or --tensor NAME, found \(file.tensors.count) tensors: \(names)",
                                 path: path)
            }
            let chosen = candidates[0]
            bytes = chosen.data
            elementType = chosen.elementType
            shape = chosen.shape
            name = "tensor \(chosen.name)"
        } else {
            let file = try NumpyFile(path: path)
            owner = file
            bytes = file.data
            elementType = file.elementType
            shape = file.shape
            name = "the array"
        }
        guard shape.count == 2 else {
            throw StoreError(.invalidInput, "rows must have shape [N, k], \(name) has shape \(shape)", path: path)
        }
        guard shape[0] > 0 else { input = nil; return }
        do {
            input = try RowInput(bytes: bytes, elementType: elementType, rowCount: shape[0], k: shape[1])
        } catch let error as StoreError {
            throw StoreError(error.code, error.message, path: path)
        }
    }
}
