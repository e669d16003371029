import ArgumentParser
import Foundation
import GradSketchInterchange
import GradSketchSearch
import GradSketchStore

@main
struct GradSketchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradsketch",
        abstract: "Create, fill, read and check GradSketch stores of model tensors and gradient sketches.",
        discussion: "A store is a directory of immutable HDF5 files with one manifest per version (see Spec/format.md). Every command that changes a store commits a new version atomically; --at VERSION reads a store as of an earlier version. Every command takes --json: the result as JSON with snake_case keys, and on failure {\"error\": {\"code\", \"message\", \"path\"}} on stdout (the message also on stderr; exit status 1, or 64 for a usage error). Exit status 0 means the command succeeded; a \"warning:\" on stderr after a commit means the version is committed but a step after the commit failed (e.g. the fsync of versions/). A failed command (non-zero) committed nothing. Text inputs (ids, labels, metadata, groups, columns) are UTF-8 with one entry per line; lines end at LF, CRLF or CR.",
        version: StoreFormat.creatorVersion,
        subcommands: [
            Initialize.self, Tensors.self, Append.self, Project.self, Train.self, Sketch.self, Index.self, Query.self, SelectCommand.self, ValueCommand.self, Results.self, Export.self, Delete.self, Shard.self,
            Info.self, Log.self, Verify.self, Pack.self, Vacuum.self, Compact.self, Import.self, Serve.self, ReproduceCommand.self,
        ]
    )

    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        // Every argument after `serve` (--help included) belongs to gradsketch-serve.
        if arguments.first == "serve" {
            do { try Serve.execServer(Array(arguments.dropFirst())) } catch { fail(with: error, json: false) }
        }
        // Likewise every argument after `reproduce` belongs to gradsketch-reproduce.
        if arguments.first == "reproduce" {
            do { try Serve.execSibling("gradsketch-reproduce", for: "reproduce", Array(arguments.dropFirst())) } catch {
                fail(with: error, json: arguments.contains("--json"))
            }
        }
        // Under mpirun/srun, or on a sharded store, query/select/index build run distributed.
        if let distributed = DistributedHook.translated(arguments) {
            do { try Serve.execSibling("gradsketch-mpi", for: distributed[0], distributed) } catch {
                fail(with: error, json: OutputOptions.requested(in: arguments))
            }
        }
        BLASKernels.selectForThisCPU()
        // A failure after a commit's link leaves the version committed: the command says so
        // on stderr and still exits 0 (Spec §7.2).
        Store.setWarningHandler { warning in
            FileHandle.standardError.write(Data("gradsketch: warning: \(warning)\n".utf8))
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            fail(with: error, json: OutputOptions.requested(in: arguments))
        }
    }

    /// Reports `error` (one line on stderr; under --json also one error object on stdout) and
    /// exits with its status: 1 for a failed command, 64 for a usage error.
    static func fail(with error: any Error, json: Bool) -> Never {
        if let failure = error as? CommandFailure {
            FileHandle.standardError.write(Data("gradsketch: error: \(failure)\n".utf8))
            if json { printJSON(ErrorOutput(error: .init(code: failure.code, message: failure.message, path: failure.path))) }
            Foundation.exit(ExitCode.failure.rawValue)
        }
        let status = exitCode(for: error)
        let message = self.message(for: error)
        // Help, --version and a bare exit status (verify's, after its report) are not errors to wrap.
        guard json, status != .success, !message.isEmpty else { exit(withError: error) }
        FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
        printJSON(ErrorOutput(error: .init(code: status == .validationFailure ? "usage" : "failure", message: message, path: nil)))
        Foundation.exit(status.rawValue)
    }
}

/// The store argument every command that names a store takes.
struct StoreArgument: ParsableArguments {
    @Argument(help: "Path of the store directory.")
    var store: String
}

struct Initialize: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Create a new, empty store (version 0).")

    @OptionGroup var location: StoreArgument
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let path: String, storeId: String, version: Int, createdDirectories: [String] }

    func run() throws {
        try reportingErrors {
            let created = try makeParentDirectories(of: location.store)
            let store = try Store.create(at: location.store)
            let result = Output(path: store.path, storeId: store.storeID, version: 0, createdDirectories: created)
            if output.json { printJSON(result); return }
            for directory in created { print("created directory \(directory)") }
            print("created store \(store.path) (id \(store.storeID)) at version 0")
        }
    }

    /// Creates the missing ancestors of `path` (like `mkdir -p` of its parent) and returns
    /// them, outermost first; a component that exists but is not a directory is named.
    private func makeParentDirectories(of path: String) throws -> [String] {
        var missing: [String] = []
        var parent = PathText.parent(of: path)
        var isDirectory: ObjCBool = false
        while !parent.isEmpty, parent != "/" {
            if FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory) {
                guard isDirectory.boolValue else {
                    throw StoreError(.invalidInput, "cannot create a store under \(parent): expected a directory, found a file", path: path)
                }
                break
            }
            missing.insert(parent, at: 0)
            parent = PathText.parent(of: parent)
        }
        for directory in missing {
            guard mkdir(directory, 0o777) == 0 || errno == EEXIST else {
                let reason = String(cString: strerror(errno))
                throw StoreError(.io, "cannot create the missing parent directory \(directory): \(reason)", path: path)
            }
        }
        return missing
    }
}

struct Append: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Append rows [N, k] to a sketch set (created by the first append) and commit a new version.",
        discussion: "Rows come from a .npy file (float16, float32, float64) or a .safetensors file (F16, BF16, F32, F64; --tensor picks one when it holds several). Text files (ids, labels, metadata) hold one entry per line, in UTF-8; lines end at LF, CRLF or CR (no entry keeps a line-ending character). Rows with NaN or ±Inf are refused unless the set was created with --allow-nonfinite.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Name of the sketch set.") var set: String
    @Option(help: "Rows file: .npy or .safetensors, shape [N, k].") var rows: String
    @Option(help: "Tensor to read from a .safetensors rows file.") var tensor: String?
    @Option(help: "Ids file, one id per line (default: <segment-id>:<row>).") var ids: String?
    @Option(help: "Labels file, one label per line.") var labels: String?
    @Option(help: "Metadata file, one entry per line.") var metadata: String?
    @Option(help: "How to read metadata lines: text or json (one JSON value per line).") var metadataKind: String = "text"
    @Option(name: .customLong("column"), help: ArgumentHelp("A float column, NAME=FILE (.npy or one number per line). Repeatable.", valueName: "name=file"))
    var columns: [String] = []
    @Option(help: "Stored dtype when the set is created: float16 or float32 (default: float16 for float16 input, else float32).") var dtype: String?
    @Flag(help: "When creating the set, allow rows with NaN or ±Inf.") var allowNonfinite = false
    @Option(name: .customLong("attribute"), help: ArgumentHelp("A set attribute KEY=JSON when creating the set (e.g. training_step=100, tensor_set='\"base\"'). Repeatable.", valueName: "key=json"))
    var attributes: [String] = []
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let source = try RowsFile(path: rows, tensor: tensor)
            var annotations = RowAnnotations()
            annotations.ids = try ids.map(TextLines.read)
            annotations.labels = try labels.map(TextLines.read)
            annotations.metadata = try metadata.map(TextLines.read)
            guard let kind = MetadataKind(rawValue: metadataKind) else {
                throw ValidationError("--metadata-kind must be text or json, found \(metadataKind)")
            }
            annotations.metadataKind = kind
            for column in columns {
                let (name, file) = try splitPair(column, option: "--column")
                annotations.columns[name] = try QueryInputs.readColumn(file)
            }
            var options = SketchSetOptions(dtype: try dtype.map(SketchDType.init(parsing:)), allowNonfinite: allowNonfinite)
            for attribute in attributes {
                let (key, text) = try splitPair(attribute, option: "--attribute")
                options.attributes[key] = (try? JSONValue.parse(text)) ?? .string(text)
            }
            let progress = ProgressLine(label: "append \(set)", unit: "rows", bytesPerUnit: source.input.k * source.input.elementType.byteWidth)
            let result = try store.append(to: set, rows: source.input, annotations: annotations, options: options,
                                          detail: "from \((rows as NSString).lastPathComponent)", progress: progress.update)
            progress.finish()
            if json {
                printJSON(result)
            } else {
                print("appended \(result.rows) rows to \(set): version \(result.version)")
            }
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Export the live rows of a sketch set (all, or chosen ids) to a .npy file.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Name of the sketch set.") var set: String
    @Option(help: "Output .npy file, shape [N, k].") var out: String
    @Option(help: "Export only the rows with these ids (one per line), in that order.") var ids: String?
    @Option(help: "Also write the exported rows' ids to this file, one per line.") var idsOut: String?
    @Option(help: "Output dtype: float16 or float32 (default: the set's).") var dtype: String?
    @Option(help: "Read the store as of this version.") var at: Int?
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let set: String, rows: Int, out: String, idsOut: String? }

    func validate() throws { try requireVersion(at) }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let wanted = try ids.map(TextLines.read)
            if let idsOut { try store.refuseOutputInsideStore(idsOut) }
            let exported = try store.exportRows(of: set, at: at, ids: wanted, dtype: try dtype.map(SketchDType.init(parsing:)), to: out)
            if let idsOut { try TextLines.write(exported, to: idsOut) }
            if output.json { printJSON(Output(set: set, rows: exported.count, out: out, idsOut: idsOut)); return }
            print("exported \(exported.count) rows of \(set) to \(out)")
        }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete rows by id from a sketch set and commit a new version (older versions keep them until vacuumed).")

    @OptionGroup var location: StoreArgument
    @Option(help: "Name of the sketch set.") var set: String
    @Option(help: "File of ids to delete, one per line.") var ids: String
    @OptionGroup var output: OutputOptions

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let result = try store.delete(ids: try TextLines.read(ids), from: set, detail: "ids from \((ids as NSString).lastPathComponent)")
            if output.json { printJSON(result); return }
            print("deleted \(result.rows) rows from \(set): version \(result.version)")
        }
    }
}

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the store (as of a version) into one self-contained HDF5 file that h5py reads directly.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Output .h5 file.") var out: String
    @Option(help: "Pack the store as of this version.") var at: Int?
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let version: Int, store: String, out: String }

    func validate() throws { try requireVersion(at) }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            try store.pack(at: at, to: out)
            let version = try store.manifest(at: at).version
            if output.json { printJSON(Output(version: version, store: store.path, out: out)); return }
            print("packed version \(version) of \(store.path) into \(out)")
        }
    }
}
