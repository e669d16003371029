import ArgumentParser
import Foundation
import GradSketchExperiments
import GradSketchModels
import GradSketchStore

struct Reproduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the selection and attribution experiments on Fashion-MNIST against a new store and write a report.",
        discussion: """
        Every model, sketch set and selection the experiments make is committed to STORE (which must not exist yet), and \
        the report (HTML with tables and SVG charts, plus the numbers as JSON) is written to --out.
        """)

    @OptionGroup var location: StoreArgument
    @Option(help: "Directory for report.html and report.json.") var out: String
    @Option(help: "Directory with the IDX files (Debian's dataset-fashion-mnist).") var dataDirectory: String = FashionMNIST.defaultDirectory
    @Option(help: "Experiments to run, comma-separated: select, density, inrun, gradex, paser.") var only: String = "select,density,inrun,gradex,paser"
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let report: String, numbers: String, store: String }

    func run() throws {
        try reportingErrors {
            let wanted = Set(only.split(separator: ",").map(String.init))
            let known = Experiments.all.map(\.name)
            guard wanted.isSubset(of: known) else { throw ValidationError("--only takes \(known.joined(separator: ", ")), found \(only)") }
            let store = try Store.create(at: location.store)
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
            if output.json { printJSON(Output(report: out + "/report.html", numbers: out + "/report.json", store: location.store)); return }
            print("report: \(out)/report.html (store \(location.store))")
        }
    }
}

/// Type-erased Encodable for the report's JSON.
struct AnyEncodable: Encodable {
    let encodeValue: (Encoder) throws -> Void
    init(_ value: any Encodable) { encodeValue = value.encode }
    func encode(to encoder: Encoder) throws { try encodeValue(encoder) }
}
