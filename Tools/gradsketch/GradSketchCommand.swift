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
        discussion: "A store is a directory of immutable HDF5 files with one manifest per version (see Spec/format.md). Every command that changes a store commits a new version atomically; --at VERSION reads a store as of an earlier version. Text inputs (ids, labels, metadata, groups, columns) are UTF-8 with one entry per line; lines end at LF, CRLF or CR.",
        version: StoreFormat.creatorVersion,
        subcommands: [
            Initialize.self, Tensors.self, Append.self, Project.self, Train.self, Sketch.self, Index.self, Query.self, SelectCommand.self, ValueCommand.self, Results.self, Reproduce.self, Export.self, Delete.self,
            Info.self, Log.self, Verify.self, Pack.self, Vacuum.self,
        ]
    )

    static func main() {
        BLASKernels.selectForThisCPU()
        main(nil)
    }
}

/// Options every command that names a store takes.
struct StoreArgument: ParsableArguments {
    @Argument(help: "Path of the store directory.")
    var store: String
}

struct Initialize: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Create a new, empty store (version 0).")

    @OptionGroup var location: StoreArgument

    func run() throws {
        try reportingErrors {
            let store = try Store.create(at: location.store)
            print("created store \(store.path) (id \(store.storeID)) at version 0")
        }
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
    @Flag(help: "Print the result as JSON.") var json = false

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
                annotations.columns[name] = try ColumnFile.read(file)
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

    func validate() throws { try requireVersion(at) }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let wanted = try ids.map(TextLines.read)
            let exported = try store.exportRows(of: set, at: at, ids: wanted, dtype: try dtype.map(SketchDType.init(parsing:)), to: out)
            if let idsOut { try TextLines.write(exported, to: idsOut) }
            print("exported \(exported.count) rows of \(set) to \(out)")
        }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete rows by id from a sketch set and commit a new version (older versions keep them until vacuumed).")

    @OptionGroup var location: StoreArgument
    @Option(help: "Name of the sketch set.") var set: String
    @Option(help: "File of ids to delete, one per line.") var ids: String

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let result = try store.delete(ids: try TextLines.read(ids), from: set, detail: "ids from \((ids as NSString).lastPathComponent)")
            print("deleted \(result.rows) rows from \(set): version \(result.version)")
        }
    }
}

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the store (as of a version) into one self-contained HDF5 file that h5py reads directly.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Output .h5 file.") var out: String
    @Option(help: "Pack the store as of this version.") var at: Int?

    func validate() throws { try requireVersion(at) }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            try store.pack(at: at, to: out)
            print("packed version \(try store.manifest(at: at).version) of \(store.path) into \(out)")
        }
    }
}
