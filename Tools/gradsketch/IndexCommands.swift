import ArgumentParser
import Foundation
import GradSketchSearch
import GradSketchStore

struct Index: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build, describe and drop the ANN indexes stored with a sketch set.",
        discussion: """
        An index is part of the store: built on one version of a set, committed as a new version, and read only with the \
        versions that list it. Rows appended after the build are searched exactly and rows deleted since are skipped, so \
        `gradsketch query` never returns a stale answer; rebuild to bring new rows under the index.
        """,
        subcommands: [BuildIndex.self, IndexInfo.self, DropIndex.self])
}

struct BuildIndex: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build an IVF index (L2 k-means lists, int8 residual codes, exact re-rank) over a set and commit it.",
        discussion: """
        Lists are probed in order of ⟨query, centroid⟩, which suits raw inner product; with --metric cosine the rows are \
        normalised first. nprobe is tuned on rows held out of training so that recall@10 against exact search reaches \
        --recall-target; queries can override it with --nprobe or ask for another target with --recall-target.
        """)

    @OptionGroup var location: StoreArgument
    @Option(help: "Sketch set to index.") var set: String
    @Option(help: "Index name (default: the metric).") var name: String?
    @Option(help: "ip (inner product) or cosine.") var metric: String = "ip"
    @Option(help: "Number of lists (default: the power of two nearest 2·√N).") var lists: Int?
    @Option(help: "Held-out recall@10 the default nprobe must reach.") var recallTarget: Double = 0.95
    @Option(help: "Candidates re-ranked exactly per query (at k = 10; scaled with k).") var rerank: Int = 32
    @Option(help: "Rows k-means trains on (default: 128 per list).") var trainingRows: Int?
    @Option(help: "k-means iterations.") var iterations: Int = 20
    @Option(help: "Seed for sampling and k-means.") var seed: UInt64 = 0
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    /// What --json prints: the build report, and warnings about the index's worth.
    struct BuildOutput: Encodable {
        let version: Int, name: String, metric: String, lists: Int, rows: Int, defaultNprobe: Int, rerank: Int, recallTarget: Double
        let tuning: [TuningPoint], seconds: [String: Double], indexBytes: Int, warnings: [String]
    }

    func validate() throws {
        try requireOption(lists, "--lists", in: 1...OptionLimit.width)
        try requireOption(rerank, "--rerank", in: 1...OptionLimit.perQuery)
        try requireOption(trainingRows, "--training-rows", in: 1...OptionLimit.count)
        try requireOption(iterations, "--iterations", in: 0...OptionLimit.perQuery)
        guard (0.0...1.0).contains(recallTarget) else { throw ValidationError("--recall-target must be between 0 and 1, found \(recallTarget)") }
    }

    func run() throws {
        try reportingErrors {
            guard let metricValue = SearchMetric(rawValue: metric) else { throw ValidationError("--metric must be ip or cosine, found \(metric)") }
            guard rerank >= 1, iterations >= 1 else { throw ValidationError("--rerank and --iterations must be at least 1") }
            let store = try Store(opening: location.store)
            let target = try store.sketchSet(set)
            var options = IVFBuildOptions()
            options.metric = metricValue
            options.lists = lists
            options.recallTarget = recallTarget
            options.rerank = rerank
            options.trainingRows = trainingRows
            options.iterations = iterations
            options.seed = seed
            let start = Date()
            let report = try IVFIndexBuilder.build(target, in: store, name: name ?? metric, options: options) { message in
                FileHandle.standardError.write(Data("index build: \(message)\n".utf8))
            }
            let warnings = indexWarnings(name: report.name, nprobe: report.defaultNprobe, lists: report.lists)
            warnings.forEach(reportWarning)
            if json {
                printJSON(BuildOutput(version: report.version, name: report.name, metric: report.metric, lists: report.lists, rows: report.rows,
                                      defaultNprobe: report.defaultNprobe, rerank: report.rerank, recallTarget: report.recallTarget,
                                      tuning: report.tuning.map { TuningPoint(nprobe: $0.nprobe, recall: $0.recall) },
                                      seconds: report.seconds, indexBytes: report.indexBytes, warnings: warnings))
                return
            }
            print("index \(report.name) over \(set): \(report.rows) rows, \(report.lists) lists, \(report.metric); version \(report.version)")
            print(String(format: "built in %.1f s; %@ (%.0f bytes per row)", Date().timeIntervalSince(start), formatBytes(report.indexBytes) as NSString,
                         Double(report.indexBytes) / Double(max(1, report.rows))))
            print(tuningLine(report.tuning.map { TuningPoint(nprobe: $0.nprobe, recall: $0.recall) }))
            print("default nprobe \(report.defaultNprobe) (target \(report.recallTarget)), re-ranking \(report.rerank) candidates")
        }
    }
}

struct IndexInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Describe a set's indexes and how much of the set each covers.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Sketch set.") var set: String
    @Option(help: "Read the store as of this version.") var at: Int?
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws { try requireVersion(at) }

    struct Description: Encodable {
        let name: String, metric: String, kind: String, lists: Int, rows: Int, builtOnVersion: Int, file: String, bytes: Int?
        let indexedRows: Int?, exactRows: Int?, stale: Bool, defaultNprobe: Int?, rerank: Int?, tuning: [TuningPoint]
        let warnings: [String]
    }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let target = try store.sketchSet(set, at: at)
            var descriptions: [Description] = []
            for (name, entry) in target.entry.indexes.sorted(by: { $0.key < $1.key }) {
                let searcher = try? IVFSearcher(set: target, index: name)
                let tuning = searcher?.tuning.map { TuningPoint(nprobe: $0.nprobe, recall: $0.recall) } ?? []
                let warnings = searcher.map { indexWarnings(name: name, nprobe: $0.defaults.nprobe, lists: entry.lists) } ?? []
                descriptions.append(Description(
                    name: name, metric: entry.metric, kind: entry.kind, lists: entry.lists, rows: entry.rows, builtOnVersion: entry.builtOnVersion,
                    file: entry.file, bytes: entry.size, indexedRows: searcher?.indexedRows, exactRows: searcher?.exactRows, stale: searcher == nil,
                    defaultNprobe: searcher?.defaults.nprobe, rerank: searcher?.defaults.rerank, tuning: tuning, warnings: warnings))
            }
            struct Listing: Encodable { let set: String, version: Int, indexes: [Description] }
            if json { printJSON(Listing(set: set, version: target.version, indexes: descriptions)); return }
            if descriptions.isEmpty { print("set \(set) has no index in version \(target.version)"); return }
            for d in descriptions {
                print("\(d.name): \(d.kind), \(d.metric), \(d.lists) lists, built on version \(d.builtOnVersion), \(d.bytes.map(formatBytes) ?? "?")")
                if d.stale {
                    print("  stale: the set no longer starts with the segments it was built on; queries search exactly until it is rebuilt")
                } else {
                    print("  \(d.indexedRows!) rows through the index, \(d.exactRows!) appended since and searched exactly; default nprobe \(d.defaultNprobe!), re-rank \(d.rerank!)")
                    print("  " + tuningLine(d.tuning))
                    d.warnings.forEach(reportWarning)
                }
            }
        }
    }
}

/// The held-out tuning curve, printed alike by `index build` and `index info`.
func tuningLine(_ tuning: [TuningPoint]) -> String {
    "held-out recall@10 by nprobe: " + tuning.map { String(format: "%d→%.3f", $0.nprobe, $0.recall) }.joined(separator: "  ")
}

/// Share of the lists above which an index's default probe scans so much of the set that it
/// gains little over exact search (which also needs no re-rank).
let uselessIndexShare = 0.5

/// Warns when the tuned nprobe makes the index scan at least `uselessIndexShare` of its lists:
/// rows without cluster structure (isotropic data) need nearly every list for the recall target.
func indexWarnings(name: String, nprobe: Int, lists: Int) -> [String] {
    guard lists > 0, Double(nprobe) >= uselessIndexShare * Double(lists) else { return [] }
    return ["index \(name) probes \(nprobe) of \(lists) lists by default (\(nprobe * 100 / lists)% of the rows) to reach its recall target, "
            + "so it gains little over exact search; the rows may lack cluster structure. Query with --exact, or drop the index (`gradsketch index drop`)"]
}

/// One point of an index's held-out tuning curve, as `index build` and `index info` print it.
struct TuningPoint: Encodable { let nprobe: Int, recall: Double }

struct DropIndex: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drop", abstract: "Remove an index from a set in a new version (vacuum frees its file later).")

    @OptionGroup var location: StoreArgument
    @Option(help: "Sketch set.") var set: String
    @Option(help: "Index name.") var name: String
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let set: String, name: String, version: Int }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let version = try store.dropIndex(name, of: set)
            if output.json { printJSON(Output(set: set, name: name, version: version)); return }
            print("dropped index \(name) of \(set): version \(version)")
        }
    }
}
