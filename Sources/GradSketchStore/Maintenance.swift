import Foundation
import GradSketchHDF5
import GradSketchInterchange

/// One thing `verify` found wrong: where it is, and what was expected against what was found.
public struct VerificationProblem: Codable, Sendable, CustomStringConvertible {
    /// The version whose manifest references the file, when the problem is version-specific.
    public let version: Int?
    /// File relative to the store root.
    public let file: String
    /// Object inside the file (dataset path), if the problem is that precise.
    public let object: String?
    public let message: String

    public var description: String {
        var location = file
        if let object { location += ":/" + object }
        if let version { location = "v\(version) " + location }
        return "\(location): \(message)"
    }
}

/// What `verify` checked and found.
public struct VerificationReport: Codable, Sendable {
    public var versions: [Int] = []
    public var filesChecked = 0
    public var bytesChecked = 0
    public var problems: [VerificationProblem] = []
    public var isClean: Bool { problems.isEmpty }
}

/// One line of `log`.
public struct VersionSummary: Codable, Sendable {
    public let version: Int
    public let parent: Int?
    public let created: String
    package let change: Manifest.Change
}

/// What `vacuum` removed (or would remove, in a dry run).
public struct VacuumReport: Codable, Sendable {
    public var removedVersions: [Int] = []
    public var removedFiles: [String] = []
    public var keptYoungFiles: [String] = []
    /// Unreferenced files older than the grace that a live writer's pin protects (Spec §7.4).
    public var keptPinnedFiles: [String] = []
    public var bytesFreed = 0
}

extension Store {
    /// Every retained version with what it changed, newest first.
    public func log() throws -> [VersionSummary] {
        try versions().reversed().map { version in
            let manifest = try self.manifest(at: version)
            return VersionSummary(version: version, parent: manifest.parent, created: manifest.created, change: manifest.change)
        }
    }

    /// Checks every retained version and every file they reference (Spec §4): manifests,
    /// whole-file checksums and sizes, file headers, every dataset's checksum against both
    /// its attribute and the manifest, the mappable layout of row and tensor data, deletion
    /// lists, id uniqueness and tensor-set content hashes. Never stops at the first problem.
    ///
    /// - Parameter progress: called with (files checked, files in all).
    public func verify(progress: ((Int, Int) -> Void)? = nil) throws -> VerificationReport {
        var report = VerificationReport()
        var manifests: [Manifest] = []
        for version in try versions() {
            report.versions.append(version)
            do {
                manifests.append(try Store.readManifest(file: path + "/versions/" + Store.manifestName(version), expectedVersion: version))
            } catch {
                report.problems.append(.init(version: version, file: "versions/" + Store.manifestName(version), object: "manifest", message: "\(error)"))
            }
        }
        // Each file is checked once, against the entry of the newest manifest naming it, by
        // the rules of its kind (Spec §2.6): the loop knows no kind by name.
        let kinds = FileKinds.all
        var files: [[String: (FileKind.Entry, Int)]] = Array(repeating: [:], count: kinds.count)
        for manifest in manifests {
            for (position, kind) in kinds.enumerated() {
                for entry in kind.entries(manifest) { files[position][entry.file] = (entry, manifest.version) }
            }
        }
        let total = files.reduce(0) { $0 + $1.count }
        var done = 0
        for (position, kind) in kinds.enumerated() {
            for (file, (entry, version)) in files[position].sorted(by: { $0.key < $1.key }) {
                defer { done += 1; progress?(done, total) }
                report.filesChecked += 1
                let (problems, bytes) = checkFile(entry, of: kind)
                report.bytesChecked += bytes
                for problem in problems {
                    report.problems.append(.init(version: version, file: file, object: problem.object, message: problem.message))
                }
            }
        }
        // Ids must be unique within each set of each version.
        for manifest in manifests {
            for (name, set) in manifest.sketchSets.sorted(by: { $0.key < $1.key }) {
                guard let reader = try? SketchSet(store: self, name: name, version: manifest.version, entry: set),
                      let ids = try? reader.ids() else { continue }
                if Set(ids.lazy.map(UTF8Key.init)).count != ids.count {
                    report.problems.append(.init(version: manifest.version, file: "versions/" + Store.manifestName(manifest.version), object: nil,
                                                 message: "set \(name) has duplicate ids among its live rows"))
                }
            }
        }
        return report
    }

    /// Removes versions older than the newest `keepLast` (never the latest), then every data
    /// file no retained version references and every temporary file, except files modified
    /// less than `grace` seconds ago, which a concurrent writer may be about to commit, and
    /// files a live writer's pin protects (Spec §7.4). Symbolic links are never followed.
    public func vacuum(keepLast: Int? = nil, grace: Double = 3600, dryRun: Bool = false) throws -> VacuumReport {
        var report = VacuumReport()
        let dataDirectories = FileKinds.directories + ["tmp"]
        // Checked before anything is removed: a data directory that is a link would make
        // vacuum delete files outside the store.
        for directory in ["versions"] + dataDirectories + [WriterPin.directory] {
            let full = path + "/" + directory
            if FileSystem.isSymbolicLink(full) || (FileSystem.exists(full) && !FileSystem.isRealDirectory(full)) {
                throw StoreError(.corrupt, "expected \(directory)/ to be a directory of the store, found \(FileSystem.isSymbolicLink(full) ? "a symbolic link" : "a file"); vacuum does not follow links out of the store and removed nothing", path: full)
            }
        }
        let all = try versions()
        if let keepLast {
            guard keepLast >= 1 else {
                throw StoreError(.invalidInput, "keep-last must be at least 1 (the latest version is always kept), found \(keepLast)")
            }
            report.removedVersions = Array(all.dropLast(keepLast))
        }
        if !dryRun {
            // Oldest first, so the retained versions always form one contiguous range.
            for version in report.removedVersions {
                try FileSystem.remove(path + "/versions/" + Store.manifestName(version))
            }
            try FileSystem.fsyncDirectory(path + "/versions")
        }
        // Order matters against concurrent writers: list the files, then read the pins,
        // then the versions. A file listed here was written either before every pin read
        // next (so no live writer needs it unless it is committed, and then a version read
        // after it names it) or by a writer whose pin is read next.
        var candidates: [String] = []
        for directory in dataDirectories where FileSystem.isRealDirectory(path + "/" + directory) {
            candidates += try FileSystem.list(path + "/" + directory).sorted().map { directory + "/" + $0 }
        }
        let oldestPin = try WriterPin.oldestLiveCreation(in: self, removeLapsed: !dryRun)
        let removed = Set(report.removedVersions)
        var referenced = Set<String>()
        for version in try versions() where !removed.contains(version) {
            referenced.formUnion(FileKinds.referencedFiles(in: try manifest(at: version)))
        }
        var touchedDirectories = Set<String>()
        for relative in candidates where !referenced.contains(relative) {
            let full = absolute(relative)
            guard let modified = FileSystem.modificationTime(full), !FileSystem.isRealDirectory(full) else { continue }
            let age = FileSystem.now() - modified
            // One second of slack: the pin's `created` is truncated to whole seconds.
            let pinned = oldestPin.map { modified >= Double($0) - 1 } ?? false
            if age < grace {
                report.keptYoungFiles.append(relative)
                continue
            }
            if pinned {
                report.keptPinnedFiles.append(relative)
                continue
            }
            report.bytesFreed += FileSystem.size(full) ?? 0
            report.removedFiles.append(relative)
            if !dryRun {
                try FileSystem.remove(full)
                touchedDirectories.insert(String(relative.prefix { $0 != "/" }))
            }
        }
        for directory in touchedDirectories.sorted() { try FileSystem.fsyncDirectory(path + "/" + directory) }
        return report
    }
}

/// Builds a content hash (Spec §6) incrementally.
struct ContentHashBuilder {
    private var hash = ContentHash.start()
    mutating func add(name: String, dtype: SketchDType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        ContentHash.add(name: name, dtype: dtype, shape: shape, bytes: bytes, to: &hash)
    }
    func finish() -> String { ContentHash.finish(hash) }
}
