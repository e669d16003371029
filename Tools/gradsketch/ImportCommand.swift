import ArgumentParser
import Foundation
import GradSketch
import GradSketchStore

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import gradients written by another tool into a sketch set, as one version.",
        discussion: """
            FORMAT is trak, less, bergson, npy, safetensors or auto (Spec/import.md lists each layout). Rows are read \
            in batches from the mapped source files and committed together; a bad file, a NaN row (unless \
            --allow-nonfinite) or a repeated id commits nothing. Progress goes to stderr.
            """)

    @OptionGroup var location: StoreArgument
    @Argument(help: "Source format: trak, less, bergson, npy, safetensors or auto.") var format: String
    @Argument(help: "Source file or directory.") var path: String
    @Option(help: "Name of the sketch set to append to (created by the import if new).") var set: String
    @Option(help: "Ids file, one id per source row (default: per format, see Spec/import.md).") var ids: String?
    @Option(help: "Stored dtype when the set is created: float16 or float32.") var dtype: String?
    @Flag(help: "Keep rows with NaN or ±Inf (the set must allow them).") var allowNonfinite = false
    @Option(help: "TRAK: model id directory to read (default: the lowest).") var modelId: String?
    @Option(help: "TRAK: features (default) or grads.") var array: String?
    @Option(help: "The checkpoint these gradients were computed at (set attribute checkpoint).") var checkpoint: String?
    @Option(help: "Bergson: import only this module's columns.") var module: String?
    @Option(help: "safetensors: tensor to read from each file (default: the only 2-D one).") var tensor: String?
    @Option(name: .customLong("attribute"), help: ArgumentHelp("A set attribute KEY=JSON for a new set. Repeatable.", valueName: "key=json"))
    var attributes: [String] = []
    @Option(help: "Rows are read and appended in batches of about this many MB.") var batchMb: Int = 64
    @Flag(help: "Print progress lines on stderr even when it is not a terminal.") var progress = false
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard format == "auto" || ImportFormat(rawValue: format) != nil else {
            throw ValidationError("unknown format \"\(format)\": expected trak, less, bergson, npy, safetensors or auto")
        }
        guard batchMb > 0 else { throw ValidationError("--batch-mb must be positive, found \(batchMb)") }
    }

    func run() throws {
        try reportingErrors {
            let opened = try GradSketch.Store(opening: location.store)
            let resolved = format == "auto" ? try ImportFormat.detect(path: path) : ImportFormat(rawValue: format)!
            var options = ImportOptions(ids: ids, dtype: try dtype.map(SketchDType.init(parsing:)), allowNonfinite: allowNonfinite,
                                        modelID: modelId, array: array, checkpoint: checkpoint, module: module, tensor: tensor,
                                        batchBytes: batchMb << 20)
            for attribute in attributes {
                let (key, text) = try splitPair(attribute, option: "--attribute")
                options.attributes[key] = (try? JSONValue.parse(text)) ?? .string(text)
            }
            let printer = ImportProgressPrinter(label: "import \(resolved.rawValue) → \(set)", forced: progress)
            let report = try opened.importRows(format: resolved, from: path, into: set, options: options) { step in
                printer.update(step)
                return true
            }
            printer.finish()
            if output.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                let skipped = report.skippedRows > 0 ? ", skipped \(report.skippedRows) unfeaturized" : ""
                print("imported \(report.rows) rows (k = \(report.k)) from \(report.sources.count) \(resolved.rawValue) file(s) into \(set)\(skipped): version \(report.version)")
            }
        }
    }
}

/// Import progress on stderr: rows done/total and MB/s, at most every 0.5 s; redrawn in place
/// on a terminal, one line per update when forced onto a pipe.
final class ImportProgressPrinter {
    let label: String
    private let terminal = isatty(2) == 1
    private let enabled: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false

    init(label: String, forced: Bool) {
        self.label = label
        enabled = forced || isatty(2) == 1
    }

    func update(_ step: ImportProgress) {
        guard enabled else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.5 || step.stage == "done" else { return }
        lastDraw = now
        let elapsed = max(now.timeIntervalSince(start), 1e-9)
        let percent = step.total > 0 ? step.done * 100 / step.total : 100
        let line = "\(label): \(step.stage) \(step.done)/\(step.total) rows (\(percent)%), " + String(format: "%.1f MB/s", Double(step.bytes) / elapsed / 1e6)
        if terminal {
            FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
            drawn = true
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
    }
}
