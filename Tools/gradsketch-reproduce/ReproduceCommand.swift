import ArgumentParser
import Foundation
import GradSketchExperiments
import GradSketchModels
import GradSketchStore

/// The Fashion-MNIST experiments, kept out of the production tool so `gradsketch` does not
/// depend on the experiments target.
@main
struct Reproduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradsketch-reproduce",
        abstract: "Run the selection and attribution experiments on Fashion-MNIST against a new store and write a report.",
        discussion: """
        Every model, sketch set and selection the experiments make is committed to STORE (which must not exist yet), and \
        the report (HTML with tables and SVG charts, plus the numbers as JSON) is written to --out.
        """)

    @Argument(help: "Path of the new store directory.") var store: String
    @Option(help: "Directory for report.html and report.json.") var out: String
    @Option(help: "Directory with the IDX files (Debian's dataset-fashion-mnist).") var dataDirectory: String = FashionMNIST.defaultDirectory
    @Option(help: "Experiments to run, comma-separated: select, density, inrun, gradex, paser.") var only: String = "select,density,inrun,gradex,paser"
    @Flag(help: "Print the result as JSON (snake_case keys).") var json = false

    struct Output: Encodable { let report: String, numbers: String, store: String }

    func run() throws {
        try Self.reportingErrors {
            let wanted = Set(only.split(separator: ",").map(String.init))
            let known = Experiments.all.map(\.name)
            guard wanted.isSubset(of: known) else { throw ValidationError("--only takes \(known.joined(separator: ", ")), found \(only)") }
            let store = try Store.create(at: self.store)
            let train = try FashionMNIST(split: .train, directory: dataDirectory)
            let test = try FashionMNIST(split: .test, directory: dataDirectory)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            var report = HTMLReport()
            var numbers: [String: AnyEncodable] = [:]
            let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            for (name, experiment) in Experiments.all where wanted.contains(name) {
                numbers[name] = AnyEncodable(try Experiments.runAndReport(experiment, store: store, train: train, test: test, report: &report, log: log))
            }
            try report.html(title: "GradSketch: selection and attribution on Fashion-MNIST").write(toFile: out + "/report.html", atomically: true, encoding: .utf8)
            try makeJSONEncoder().encode(numbers).write(to: URL(fileURLWithPath: out + "/report.json"))
            if json { print(String(decoding: try makeJSONEncoder().encode(Output(report: out + "/report.html", numbers: out + "/report.json", store: self.store)), as: UTF8.self)); return }
            print("report: \(out)/report.html (store \(self.store))")
        }
    }
}

extension Reproduce {
    /// A library error becomes one line on stderr and exit status 1, as in `gradsketch`.
    static func reportingErrors(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as StoreError {
            let detail = error.underlying.map { "\(error.message): \($0)" } ?? error.message
            FileHandle.standardError.write(Data("gradsketch-reproduce: error: \(detail)\(error.path.map { " [\($0)]" } ?? "")\n".utf8))
            throw ExitCode.failure
        } catch let error as DatasetError {
            FileHandle.standardError.write(Data("gradsketch-reproduce: error: \(error.message) [\(error.path)]\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// snake_case keys, as every JSON the tools write.
func makeJSONEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return encoder
}

/// Type-erased Encodable for the report's JSON.
struct AnyEncodable: Encodable {
    let encodeValue: (Encoder) throws -> Void
    init(_ value: any Encodable) { encodeValue = value.encode }
    func encode(to encoder: Encoder) throws { try encodeValue(encoder) }
}
