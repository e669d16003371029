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
        subcommands: [BuildIndex.self, UpdateIndex.self, MergeIndex.self, IndexInfo.self, DropIndex.self])
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
    @Option(help: "Candidates re-ranked exactly per query (at k = 10; scaled with k; default 32 for ivf-int8; for ivf-rq4 the smallest of 16…64 that keeps the recall target).") var rerank: Int?
    @Option(help: "Rows k-means trains on (default: 128 per list).") var trainingRows: Int?
    @Option(help: "k-means iterations.") var iterations: Int = 20
    @Option(help: "Seed for sampling and k-means.") var seed: UInt64 = 0
    @Option(help: "Index kind: ivf-int8 (one file, int8 codes) or ivf-rq4 (parts of 4-bit codes, two-level quantizer; updatable).")
    var kind: String = "ivf-int8"
    @Option(help: "ivf-rq4: upper-level groups of lists (default ⌈√lists⌉).") var groups: Int?
    @Option(help: "ivf-rq4: groups probed when routing by default (default ⌈groups/4⌉).") var groupProbe: Int?
    @Option(help: "ivf-rq4: rows a part covers at most (whole segments; bounds the build's memory).") var partRows: Int = 1 << 22
    @Flag(inversion: .prefixedNo, help: "ivf-rq4: rotate residuals (seeded orthogonal rotation) before 4-bit coding.") var rotation = true
    @Option(help: "ivf-rq4: code each row into the nearest list of its N nearest groups (default 8; all groups when fewer than 16).")
    var assignGroupProbe: Int?
    @Option(help: "ivf-rq4: train lists flat (all lists at once) or two-level (groups first, then lists within each); default two-level from 4096 lists.")
    var training: String?
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
        try requireOption(groups, "--groups", in: 1...OptionLimit.width)
        try requireOption(groupProbe, "--group-probe", in: 1...OptionLimit.width)
        try requireOption(assignGroupProbe, "--assign-group-probe", in: 1...OptionLimit.width)
        if let training, training != "flat" && training != "two-level" {
            throw ValidationError("--training must be flat or two-level, found \(training)")
        }
        try requireOption(partRows, "--part-rows", in: 1...OptionLimit.count)
        try requireOption(trainingRows, "--training-rows", in: 1...OptionLimit.count)
        try requireOption(iterations, "--iterations", in: 0...OptionLimit.perQuery)
        guard (0.0...1.0).contains(recallTarget) else { throw ValidationError("--recall-target must be between 0 and 1, found \(recallTarget)") }
    }

    func run() throws {
        try reportingErrors {
            guard let metricValue = SearchMetric(rawValue: metric) else { throw ValidationError("--metric must be ip or cosine, found \(metric)") }
            guard (rerank ?? 1) >= 1, iterations >= 1 else { throw ValidationError("--rerank and --iterations must be at least 1") }
            let store = try Store(opening: location.store)
            let target = try store.sketchSet(set)
            if kind == PartIndexKind.name {
                var options = PartIndexOptions()
                options.metric = metricValue
                options.lists = lists
                options.groups = groups
                options.groupProbe = groupProbe
                options.partRows = partRows
                options.rotation = rotation
                options.assignGroupProbe = assignGroupProbe
                options.twoLevelTraining = training.map { $0 == "two-level" }
                options.recallTarget = recallTarget
                options.rerank = rerank
                options.trainingRows = trainingRows
                options.iterations = iterations
                options.seed = seed
                let report = try PartIndexBuilder.build(target, in: store, name: name ?? metric, options: options) { message in
                    FileHandle.standardError.write(Data("index build: \(message)\n".utf8))
                }
                printPartReport(report, json: json)
                return
            }
            guard kind == "ivf-int8" else { throw ValidationError("--kind must be ivf-int8 or \(PartIndexKind.name), found \(kind)") }
            let rerank = rerank ?? 32
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
        /// ivf-rq4 only.
        var groups: Int? = nil, groupProbe: Int? = nil, parts: [PartDescription]? = nil
    }
    struct PartDescription: Encodable { let file: String, rows: Int, segments: Int, builtOnVersion: Int, bytes: Int? }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let target = try store.sketchSet(set, at: at)
            var descriptions: [Description] = []
            for (name, entry) in target.entry.indexes.sorted(by: { $0.key < $1.key }) {
                if entry.parts != nil {
                    let searcher = try? PartIndexSearcher(set: target, index: name)
                    let tuning = searcher?.tuning.map { TuningPoint(nprobe: $0.nprobe, recall: $0.recall) } ?? []
                    descriptions.append(Description(
                        name: name, metric: entry.metric, kind: entry.kind, lists: entry.lists, rows: entry.rows, builtOnVersion: entry.builtOnVersion,
                        file: entry.file, bytes: (entry.size ?? 0) + (entry.parts ?? []).reduce(0) { $0 + ($1.size ?? 0) },
                        indexedRows: searcher?.indexedRows, exactRows: searcher?.exactRows, stale: searcher == nil,
                        defaultNprobe: searcher?.defaults.nprobe, rerank: searcher?.defaults.rerank, tuning: tuning,
                        warnings: searcher.map { indexWarnings(name: name, nprobe: $0.defaults.nprobe, lists: entry.lists) } ?? [],
                        groups: searcher?.groups, groupProbe: searcher?.defaults.groupProbe,
                        parts: entry.parts?.map { PartDescription(file: $0.file, rows: $0.rows, segments: $0.segments.count, builtOnVersion: $0.builtOnVersion, bytes: $0.size) }))
                    continue
                }
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
                    if let parts = d.parts {
                        print("  \(d.groups ?? 0) groups, \(d.groupProbe ?? 0) probed by default; \(parts.count) \(parts.count == 1 ? "part" : "parts"):")
                        for part in parts {
                            print("    \(part.file): \(part.rows) rows of \(part.segments) segments, built on version \(part.builtOnVersion), \(part.bytes.map(formatBytes) ?? "?")")
                        }
                    }
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

/// Prints an ivf-rq4 build, update or merge report (contract §6: seconds per phase, peak RSS,
/// index bytes, rows).
func printPartReport(_ report: PartIndexReport, json: Bool) {
    let warnings = report.operation == "build" ? indexWarnings(name: report.name, nprobe: report.defaultNprobe, lists: report.lists) : []
    warnings.forEach(reportWarning)
    if json { printJSON(report); return }
    print("index \(report.name) (\(report.kind), \(report.metric)): \(report.operation) committed version \(report.version)")
    print("\(report.rows) rows in \(report.parts) parts (\(report.partsWritten) written now, \(report.rowsCoded) rows coded), \(report.lists) lists in \(report.groups) groups")
    print(String(format: "%@ (%.1f bytes per row); peak RSS %@ (bound %@)", formatBytes(report.indexBytes) as NSString,
                 Double(report.indexBytes) / Double(max(1, report.rows)), formatBytes(report.peakRSSBytes) as NSString,
                 formatBytes(report.memoryBoundBytes) as NSString))
    print("seconds: " + report.seconds.sorted { $0.key < $1.key }.map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", "))
    if !report.tuning.isEmpty { print(tuningLine(report.tuning.map { TuningPoint(nprobe: $0.nprobe, recall: $0.recall) })) }
    print("default nprobe \(report.defaultNprobe), group probe \(report.groupProbe), re-ranking \(report.rerank) candidates")
    if report.assignment != "exact" && report.rowsCoded > 0 {
        print(String(format: "rows coded through the nearest %@; %.2f %% of the rows checked got another list than the nearest of all",
                     report.assignment as NSString, 100 * report.misassignedShare))
    }
}

struct UpdateIndex: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Index the segments appended since an ivf-rq4 index was built, as new parts (quantizer reused; cost ∝ new rows).")

    @OptionGroup var location: StoreArgument
    @Option(help: "Sketch set.") var set: String
    @Option(help: "Index name.") var name: String
    @OptionGroup var output: OutputOptions

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let target = try store.sketchSet(set)
            let report = try PartIndexBuilder.update(target, in: store, name: name) { message in
                FileHandle.standardError.write(Data("index update: \(message)\n".utf8))
            }
            printPartReport(report, json: output.json)
        }
    }
}

struct MergeIndex: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Combine the parts of an ivf-rq4 index list by list, without re-coding, and commit.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Sketch set.") var set: String
    @Option(help: "Index name.") var name: String
    @Option(help: "Merge only consecutive parts with fewer rows than this (default: all parts into one).") var smallerThan: Int?
    @OptionGroup var output: OutputOptions

    func validate() throws { try requireOption(smallerThan, "--smaller-than", in: 1...OptionLimit.count) }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let target = try store.sketchSet(set)
            let report = try PartIndexBuilder.merge(target, in: store, name: name, smallerThan: smallerThan) { message in
                FileHandle.standardError.write(Data("index merge: \(message)\n".utf8))
            }
            printPartReport(report, json: output.json)
        }
    }
}
