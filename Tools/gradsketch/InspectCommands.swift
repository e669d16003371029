import ArgumentParser
import Foundation
import GradSketchStore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a store: its sets, tensor sets and versions.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Describe the store as of this version.") var at: Int?
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws { try requireVersion(at) }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let summary = try store.summary(at: at)
            if json { printJSON(summary); return }
            print("store \(summary.path)  id \(summary.storeID)  format \(summary.formatVersion)")
            print("version \(summary.version) of \(summary.retainedVersions.first ?? 0)–\(summary.latestVersion) retained")
            if summary.sketchSets.isEmpty { print("no sketch sets") }
            for set in summary.sketchSets {
                var extras: [String] = []
                if set.hasLabels { extras.append("labels") }
                if set.hasMetadata { extras.append("metadata") }
                if !set.columns.isEmpty { extras.append("columns: " + set.columns.joined(separator: ", ")) }
                print("sketch set \(set.name): \(set.rows) rows × k=\(set.k) \(set.dtype), \(set.segments) segments, \(set.deletedRows) deleted, \(formatBytes(set.bytes))" + (extras.isEmpty ? "" : "; " + extras.joined(separator: "; ")))
            }
            for set in summary.tensorSets {
                let delta = set.kind == "delta" ? " (\(set.to ?? "?") − \(set.from ?? "?"))" : ""
                print("tensor set \(set.name): \(set.kind)\(delta), \(set.tensors) tensors, \(set.elements) elements, \(set.contentHash)")
            }
        }
    }
}

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the retained versions, newest first, with what each changed.")

    @OptionGroup var location: StoreArgument
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func run() throws {
        try reportingErrors {
            let entries = try Store(opening: location.store).log()
            if json { printJSON(entries); return }
            for entry in entries {
                let change = entry.change
                var line = "v\(entry.version)  \(entry.created)  \(change.operation)"
                if let set = change.set { line += " \(set)" }
                if change.rowsAdded > 0 { line += " +\(change.rowsAdded) rows" }
                if change.rowsDeleted > 0 { line += " -\(change.rowsDeleted) rows" }
                if let detail = change.detail { line += "  (\(detail))" }
                line += "  by \(change.writer)"
                print(line)
            }
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every retained version and every byte of every file they reference.",
        discussion: "Exits 0 when the store is intact and 1 with one line per problem (file, object, expected and found) otherwise.")

    @OptionGroup var location: StoreArgument
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let progress = ProgressLine(label: "verify", unit: "files", bytesPerUnit: nil)
            let report = try store.verify(progress: progress.update)
            progress.finish()
            if json {
                printJSON(report)
            } else {
                for problem in report.problems { print("problem: \(problem)") }
                print("\(report.isClean ? "ok" : "FAILED"): \(report.versions.count) versions, \(report.filesChecked) files, \(formatBytes(report.bytesChecked)) checked, \(report.problems.count) problems")
            }
            if !report.isClean { throw ExitCode.failure }
        }
    }
}

struct Vacuum: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove old versions and the files no retained version references.",
        discussion: "Files younger than --grace seconds are kept, since a concurrent writer may be about to commit them, and so are files a running writer has pinned (Spec §7.4). Symbolic links are never followed: a store directory that is a link is refused.")

    @OptionGroup var location: StoreArgument
    @Option(help: "Keep only the newest N versions (default: keep all versions).") var keepLast: Int?
    @Option(help: "Keep unreferenced files modified less than this many seconds ago.") var grace: Double = 3600
    @Flag(help: "Report what would be removed without removing it.") var dryRun = false
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws {
        try requireOption(keepLast, "--keep-last", in: 1...Int.max)
        guard grace.isFinite, grace >= 0 else { throw ValidationError("--grace must be a finite number of seconds ≥ 0, found \(grace)") }
    }

    func run() throws {
        try reportingErrors {
            let store = try Store(opening: location.store)
            let report = try store.vacuum(keepLast: keepLast, grace: grace, dryRun: dryRun)
            if json { printJSON(report); return }
            let verb = dryRun ? "would remove" : "removed"
            print("\(verb) \(report.removedVersions.count) versions and \(report.removedFiles.count) files (\(formatBytes(report.bytesFreed))); kept \(report.keptYoungFiles.count) unreferenced files younger than \(Int(grace)) s" + (report.keptPinnedFiles.isEmpty ? "" : " and \(report.keptPinnedFiles.count) a running writer has pinned"))
        }
    }
}
