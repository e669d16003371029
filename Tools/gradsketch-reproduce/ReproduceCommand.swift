import ArgumentParser
import Foundation
import GradSketchExperiments
import GradSketchModels
import GradSketchStore

/// The reproductions, kept out of the production tool so `gradsketch` does not depend on the
/// experiments target: the Fashion-MNIST suite (Swift, here) and the LM suite (Python, run as
/// `python3 -m gradsketch reproduce --suite lm`).
@main
struct Reproduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradsketch-reproduce",
        abstract: "Run the selection and attribution experiments against a new store and write a report.",
        discussion: """
        --suite fashion-mnist (default): every model, sketch set and selection the Fashion-MNIST experiments make is \
        committed to STORE (which must not exist yet), and the report (HTML with tables and SVG charts, plus the numbers \
        as JSON) is written to --out. --suite lm runs the language-model suite of the Python package \
        (python3 -m gradsketch reproduce --suite lm --store STORE --out OUT --size SIZE; the interpreter is \
        $GRADSKETCH_PYTHON or python3, which needs the gradsketch package and torch: pip install ./python, or \
        Tools/setup.sh). --suite all runs Fashion-MNIST into STORE and OUT, the LM suite into STORE-lm and OUT/lm, and \
        embeds the LM report's section into OUT/report.html.
        """)

    enum Suite: String, ExpressibleByArgument, CaseIterable {
        case fashionMNIST = "fashion-mnist", lm, all
    }

    enum Size: String, ExpressibleByArgument, CaseIterable {
        case small, `default`, full
    }

    @Argument(help: "Path of the new store directory.") var store: String
    @Option(help: "Directory for report.html and report.json.") var out: String
    @Option(help: "Which experiments: fashion-mnist, lm or all.") var suite: Suite = .fashionMNIST
    @Option(help: "Size of the LM suite: small (CI, minutes), default or full (about an hour).") var size: Size = .default
    @Option(help: "Directory with the IDX files (Debian's dataset-fashion-mnist).") var dataDirectory: String = FashionMNIST.defaultDirectory
    @Option(help: "Fashion-MNIST experiments to run, comma-separated: select, density, inrun, gradex, paser.") var only: String = "select,density,inrun,gradex,paser"
    @Flag(help: "Print the result as JSON (snake_case keys).") var json = false

    struct Output: Encodable { let report: String, numbers: String, store: String, lmStore: String?, lmReport: String? }

    func run() throws {
        try Self.reportingErrors {
            let started = Date()
            let provenance = Provenance(gradsketchVersion: StoreFormat.creatorVersion, commit: Provenance.resolveCommit(),
                                        commandLine: Provenance.commandLine(CommandLine.arguments),
                                        started: Provenance.utcTimestamp(secondsSince1970: started.timeIntervalSince1970))
            let report = out + "/report.html", numbers = out + "/report.json"
            switch suite {
            case .fashionMNIST:
                var run = try runFashionMNIST(provenance: provenance)
                try write(&run, started: started)
                finish(Output(report: report, numbers: numbers, store: self.store, lmStore: nil, lmReport: nil))
            case .lm:
                try checkPythonSuite()
                try runLM(store: self.store, out: out, provenance: provenance)
                finish(Output(report: report, numbers: numbers, store: self.store, lmStore: nil, lmReport: nil))
            case .all:
                let lmStore = self.store + "-lm", lmOut = out + "/lm"
                // Checked before the long Fashion-MNIST run, so a missing torch fails in seconds.
                try checkPythonSuite()
                guard !FileManager.default.fileExists(atPath: lmStore) else {
                    throw Failure("the LM suite's store \(lmStore) already exists: expected a new path", path: lmStore)
                }
                var run = try runFashionMNIST(provenance: provenance)
                try write(&run, started: started)  // the Fashion-MNIST report stands even if the LM suite fails
                let lmStarted = Date()
                try runLM(store: lmStore, out: lmOut, provenance: provenance)
                let sectionPath = lmOut + "/lm-section.html"
                guard let section = try? String(contentsOfFile: sectionPath, encoding: .utf8) else {
                    throw Failure("the LM suite finished but wrote no \(sectionPath) to embed", path: sectionPath)
                }
                run.provenance.experiments.append(.init(name: "lm suite (\(size.rawValue))", seconds: Date().timeIntervalSince(lmStarted)))
                run.report.heading("Language-model suite (\(size.rawValue)): store \(lmStore), full report \(lmOut)/report.html")
                run.report.embed(html: section)
                try write(&run, started: started)
                finish(Output(report: report, numbers: numbers, store: self.store, lmStore: lmStore, lmReport: lmOut + "/report.html"))
            }
        }
    }

    private func finish(_ output: Output) {
        if json {
            print(String(decoding: (try? makeJSONEncoder().encode(output)) ?? Data(), as: UTF8.self))
        } else {
            print("report: \(output.report) (store \(output.store))" + (output.lmReport.map { "; LM suite: \($0) (store \(output.lmStore ?? ""))" } ?? ""))
        }
    }

    /// The Fashion-MNIST suite's outcome: its report sections, numbers and provenance.
    struct FashionRun {
        var report: HTMLReport
        var numbers: [String: AnyEncodable]
        var provenance: Provenance
    }

    /// Runs the selected Fashion-MNIST experiments into a new store, timing each.
    private func runFashionMNIST(provenance: Provenance) throws -> FashionRun {
        let wanted = Set(only.split(separator: ",").map(String.init))
        let known = Experiments.all.map(\.name)
        guard wanted.isSubset(of: known) else { throw ValidationError("--only takes \(known.joined(separator: ", ")), found \(only)") }
        let store = try Store.create(at: self.store)
        let train = try FashionMNIST(split: .train, directory: dataDirectory)
        let test = try FashionMNIST(split: .test, directory: dataDirectory)
        var run = FashionRun(report: HTMLReport(), numbers: [:], provenance: provenance)
        let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        for (name, experiment) in Experiments.all where wanted.contains(name) {
            let start = Date()
            run.numbers[name] = AnyEncodable(try Experiments.runAndReport(experiment, store: store, train: train, test: test, report: &run.report, log: log))
            run.provenance.experiments.append(.init(name: name, seconds: Date().timeIntervalSince(start)))
        }
        return run
    }

    /// Writes report.html and report.json (the numbers plus a "provenance" entry), with the
    /// total run time up to now.
    private func write(_ run: inout FashionRun, started: Date) throws {
        run.provenance.totalSeconds = Date().timeIntervalSince(started)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try run.report.html(title: "GradSketch: selection and attribution on Fashion-MNIST", provenance: run.provenance)
            .write(toFile: out + "/report.html", atomically: true, encoding: .utf8)
        var numbers = run.numbers
        numbers["provenance"] = AnyEncodable(run.provenance)
        try makeJSONEncoder().encode(numbers).write(to: URL(fileURLWithPath: out + "/report.json"))
    }
}

/// A failure of this tool itself (not of the store): one line on stderr, exit status 1.
struct Failure: Error {
    let message: String
    let path: String?
    init(_ message: String, path: String? = nil) {
        self.message = message
        self.path = path
    }
}

// MARK: - The LM suite (Python)

extension Reproduce {
    /// The interpreter that runs the LM suite: $GRADSKETCH_PYTHON, else python3.
    static var python: String {
        let given = ProcessInfo.processInfo.environment["GRADSKETCH_PYTHON"] ?? ""
        return given.isEmpty ? "python3" : given
    }

    static let installHint = "install it with `pip install ./python` (with torch: `pip install torch`) from the GradSketch checkout, or run Tools/setup.sh"

    /// Fails with a message saying what to install unless the interpreter imports the
    /// gradsketch package, its LM suite and torch.
    func checkPythonSuite() throws {
        let probe = """
        import importlib.util, sys
        for name in ("gradsketch", "torch", "gradsketch.lm.reproduce"):
            try:
                found = importlib.util.find_spec(name) is not None
            except ImportError:
                found = False
            if not found:
                print(name); sys.exit(3)
        """
        let (status, output) = try Self.runProcess(Self.python, ["-c", probe], capture: true)
        guard status != 0 else { return }
        let missing = output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 3, !missing.isEmpty else {
            throw Failure("the LM suite needs Python with the gradsketch package and torch: \(Self.python) -c <import check> exited with status \(status) (\(missing)); \(Self.installHint)")
        }
        let what = missing == "torch" ? "torch" : missing == "gradsketch" ? "the gradsketch Python package" : "the gradsketch package's LM suite (gradsketch.lm)"
        throw Failure("the LM suite needs \(what), which \(Self.python) cannot import: \(Self.installHint)")
    }

    /// Runs `python3 -m gradsketch reproduce --suite lm` with the store, output directory and
    /// size; its progress goes straight to this process's stderr. The LM report names this run's
    /// commit and command line (GRADSKETCH_COMMIT, GRADSKETCH_COMMAND_LINE): an installed Python
    /// package cannot find its checkout, and the command the user typed is this one.
    /// The caller has run `checkPythonSuite()`.
    func runLM(store: String, out: String, provenance: Provenance) throws {
        let arguments = ["-m", "gradsketch", "reproduce", "--suite", "lm", "--store", store, "--out", out, "--size", size.rawValue]
        FileHandle.standardError.write(Data("gradsketch-reproduce: running \(Self.python) \(arguments.joined(separator: " "))\n".utf8))
        let environment = ["GRADSKETCH_COMMIT": provenance.commit, "GRADSKETCH_COMMAND_LINE": provenance.commandLine]
        let (status, _) = try Self.runProcess(Self.python, arguments, capture: false, environment: environment)
        guard status == 0 else {
            throw Failure("the LM suite (\(Self.python) -m gradsketch reproduce --suite lm) exited with status \(status); its messages are above", path: out)
        }
    }

    /// Runs `executable` (looked up in PATH) with `arguments`; returns its exit status and,
    /// when `capture` is set, its standard output (else it inherits this process's).
    /// `environment` is added to this process's environment.
    static func runProcess(_ executable: String, _ arguments: [String], capture: Bool,
                           environment: [String: String] = [:]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let pipe = Pipe()
        if capture { process.standardOutput = pipe }
        do { try process.run() } catch {
            throw Failure("cannot run \(executable): \(error); \(installHint)")
        }
        let data = capture ? pipe.fileHandleForReading.readDataToEndOfFile() : Data()
        process.waitUntilExit()
        // /usr/bin/env exits 127 when the interpreter is not found.
        if process.terminationStatus == 127 {
            throw Failure("cannot run \(executable): not found in PATH (set GRADSKETCH_PYTHON to a Python 3 interpreter); \(installHint)")
        }
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
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
        } catch let error as Failure {
            FileHandle.standardError.write(Data("gradsketch-reproduce: error: \(error.message)\(error.path.map { " [\($0)]" } ?? "")\n".utf8))
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
