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
    public let change: Manifest.Change
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
        // Each file is checked once, against the entry of the newest manifest naming it.
        var segments: [String: (Manifest.SegmentEntry, Int, Int, SketchDType, Bool)] = [:]
        var deletionFiles: [String: (Manifest.DeletionEntry, Manifest.SegmentEntry, Int)] = [:]
        var tensorFiles: [String: (Manifest.TensorSetEntry, Int)] = [:]
        var indexFiles: [String: (String, Manifest.IndexEntry, Int, Int, Int)] = [:]
        for manifest in manifests {
            for set in manifest.sketchSets.values {
                for segment in set.segments {
                    segments[segment.file] = (segment, manifest.version, set.k, SketchDType(rawValue: set.dtype) ?? .float32, set.allowNonfinite)
                    if let deletions = segment.deletions { deletionFiles[deletions.file] = (deletions, segment, manifest.version) }
                }
            }
            for set in manifest.tensorSets.values { tensorFiles[set.file] = (set, manifest.version) }
            for set in manifest.sketchSets.values {
                for (name, index) in set.indexes {
                    let physicalRows = set.segments.filter { index.segments.contains($0.file) }.reduce(0) { $0 + $1.rows }
                    indexFiles[index.file] = (name, index, manifest.version, set.k, physicalRows)
                }
            }
        }
        // Segment lists (format 1.2) with the segments each covers.
        var listFiles: [String: (Manifest.SegmentListEntry, [Manifest.SegmentEntry], Int)] = [:]
        for manifest in manifests {
            for set in manifest.sketchSets.values {
                var start = 0
                for list in set.segmentLists ?? [] {
                    let end = min(set.segments.count, start + list.count)
                    listFiles[list.file] = (list, Array(set.segments[start..<end]), manifest.version)
                    start = end
                }
            }
        }
        var resultFiles: [String: (String, Manifest.ResultEntry, Int)] = [:]
        for manifest in manifests {
            for (name, entry) in manifest.results ?? [:] { resultFiles[entry.file] = (name, entry, manifest.version) }
        }
        let total = segments.count + listFiles.count + deletionFiles.count + tensorFiles.count + indexFiles.count + resultFiles.count
        func note(_ version: Int?, _ file: String, _ object: String?, _ message: String) {
            report.problems.append(.init(version: version, file: file, object: object, message: message))
        }
        func describe(_ error: any Error) -> String {
            (error as? StoreError)?.message ?? "\(error)"
        }
        func checkWhole(_ file: String, size: Int?, checksum: String?, version: Int) -> Bool {
            let full = absolute(file)
            guard FileSystem.exists(full) else { note(version, file, nil, "file is missing"); return false }
            do { try DataFileCheck.dataFile(full) } catch { note(version, file, nil, describe(error)); return false }
            guard let size, let checksum else {
                note(version, file, nil, "manifest records no file size and checksum for this file")
                return true
            }
            do {
                let mapped = try MappedFile(path: full)
                report.bytesChecked += mapped.count
                guard mapped.count == size else {
                    note(version, file, nil, "file size is \(mapped.count) bytes, the manifest says \(size) (truncated or extended)")
                    return true
                }
                let computed = CRC32C.formatted(CRC32C.checksum(mapped.bytes))
                if computed != checksum {
                    note(version, file, nil, "whole-file checksum mismatch: expected \(checksum), computed \(computed)")
                }
            } catch {
                note(version, file, nil, describe(error))
            }
            return true
        }

        var done = 0
        for (file, (segment, version, k, dtype, allowNonfinite)) in segments.sorted(by: { $0.key < $1.key }) {
            defer { done += 1; progress?(done, total) }
            report.filesChecked += 1
            guard checkWhole(file, size: segment.size, checksum: segment.fileChecksum, version: version) else { continue }
            let full = absolute(file)
            do {
                let storage = try SegmentFiles.loadRows(path: full, entry: segment, k: k, dtype: dtype, allowNonfinite: allowNonfinite, alwaysVerify: true)
                if let reason = storage.notMappedBecause {
                    note(version, file, "rows", "rows dataset is not mappable as Spec §2.4 requires: \(reason)")
                }
            } catch {
                note(version, file, "rows", describe(error))
            }
            let hashNames: Set<String> = [SegmentFiles.idHashes, SegmentFiles.idHashRows]
            for (name, checksum) in segment.checksums.sorted(by: { $0.key < $1.key }) where name != "rows" && !hashNames.contains(name) {
                do {
                    if name.hasPrefix("columns/") {
                        _ = try SegmentFiles.readColumn(path: full, dataset: name, expected: checksum, rows: segment.rows)
                    } else {
                        let strings = try SegmentFiles.readStrings(path: full, dataset: name, expected: checksum, rows: segment.rows)
                        if name == "ids" {
                            do { try Rules.checkIDs(strings) } catch { note(version, file, name, describe(error)) }
                            do {
                                if let table = try SegmentFiles.readIDHashes(path: full, entry: segment), table != IDHashTable(ids: strings) {
                                    note(version, file, SegmentFiles.idHashes, "id hash table does not match the segment's ids (Spec §5.1)")
                                }
                            } catch { note(version, file, SegmentFiles.idHashes, describe(error)) }
                        }
                    }
                } catch {
                    note(version, file, name, describe(error))
                }
            }
        }
        for (file, (list, covered, version)) in listFiles.sorted(by: { $0.key < $1.key }) {
            defer { done += 1; progress?(done, total) }
            report.filesChecked += 1
            guard checkWhole(file, size: list.size, checksum: list.fileChecksum, version: version) else { continue }
            do {
                let entries = try SegmentLists.readEntries(storePath: path, list: list, cached: false)
                if entries != covered { note(version, file, SegmentLists.entriesDataset, "segment list entries differ from the set's segments") }
                let table = try SegmentLists.readHashes(storePath: path, list: list)
                var parts: [(table: IDHashTable, offset: Int)] = []
                var offset = 0
                for segment in covered {
                    guard let checksum = segment.checksums["ids"] else { continue }
                    let ids = try SegmentFiles.readStrings(path: absolute(segment.file), dataset: "ids", expected: checksum, rows: segment.rows)
                    parts.append((IDHashTable(ids: ids), offset))
                    offset += segment.rows
                }
                if table != IDHashTable.merged(parts) {
                    note(version, file, SegmentLists.hashesDataset, "id hash table does not match the ids of the list's segments (Spec §7.1)")
                }
            } catch {
                note(version, file, nil, describe(error))
            }
        }
        for (file, (entry, segment, version)) in deletionFiles.sorted(by: { $0.key < $1.key }) {
            defer { done += 1; progress?(done, total) }
            report.filesChecked += 1
            guard checkWhole(file, size: entry.size, checksum: entry.fileChecksum, version: version) else { continue }
            do { _ = try SegmentFiles.readDeletions(storePath: path, entry: entry, segment: segment) } catch {
                note(version, file, "rows", describe(error))
            }
        }
        for (file, (entry, version)) in tensorFiles.sorted(by: { $0.key < $1.key }) {
            defer { done += 1; progress?(done, total) }
            report.filesChecked += 1
            guard checkWhole(file, size: entry.size, checksum: entry.fileChecksum, version: version) else { continue }
            var hash = ContentHashBuilder()
            var complete = true
            for tensor in entry.tensors.sorted(by: { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }) {
                do {
                    guard let dtype = SketchDType(rawValue: tensor.dtype) else {
                        throw StoreError(.corrupt, "dtype \(tensor.dtype) is not float16 or float32")
                    }
                    let storage = try TensorFiles.load(path: absolute(file), tensor: tensor, dtype: dtype, alwaysVerify: true)
                    if let reason = storage.notMappedBecause, tensor.shape.reduce(1, *) > 0 {
                        note(version, file, "tensors/" + TensorFiles.datasetName(tensor.name), "tensor is not mappable as Spec §2.4 requires: \(reason)")
                    }
                    hash.add(name: tensor.name, dtype: dtype, shape: tensor.shape, bytes: storage.bytes)
                } catch {
                    complete = false
                    note(version, file, "tensors/" + TensorFiles.datasetName(tensor.name), describe(error))
                }
            }
            if complete, hash.finish() != entry.contentHash {
                note(version, file, nil, "content hash mismatch: expected \(entry.contentHash), computed \(hash.finish())")
            }
        }
        for (file, (name, entry, version, k, physicalRows)) in indexFiles.sorted(by: { $0.key < $1.key }) {
            defer { done += 1; progress?(done, total) }
            report.filesChecked += 1
            guard checkWhole(file, size: entry.size, checksum: entry.fileChecksum, version: version) else { continue }
            do {
                let index = try IndexFiles.load(path: absolute(file), name: name, entry: entry, k: k, alwaysVerify: true)
                if !index.isMapped { note(version, file, "codes", "index codes are not mappable as Spec §2.4 requires") }
                if let bad = index.positions.first(where: { $0 < 0 || $0 >= Int64(physicalRows) }) {
                    note(version, file, "positions", "row position \(bad) is outside the \(physicalRows) rows of the covered segments")
                }
                if Set(index.positions).count != index.positions.count {
                    note(version, file, "positions", "a row position appears twice")
                }
            } catch {
                note(version, file, nil, describe(error))
            }
        }
        for (file, (name, entry, version)) in resultFiles.sorted(by: { $0.key < $1.key }) {
            defer { done += 1; progress?(done, total) }
            report.filesChecked += 1
            guard checkWhole(file, size: entry.size, checksum: entry.fileChecksum, version: version) else { continue }
            do { try checkPositions(of: try ResultFiles.load(path: absolute(file), name: name, entry: entry)) } catch { note(version, file, nil, describe(error)) }
        }
        // Ids must be unique within each set of each version.
        for manifest in manifests {
            for (name, set) in manifest.sketchSets.sorted(by: { $0.key < $1.key }) {
                guard let reader = try? SketchSet(store: self, name: name, version: manifest.version, entry: set),
                      let ids = try? reader.ids() else { continue }
                if Set(ids.lazy.map(UTF8Key.init)).count != ids.count {
                    note(manifest.version, "versions/" + Store.manifestName(manifest.version), nil, "set \(name) has duplicate ids among its live rows")
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
        let dataDirectories = ["segments", "tensors", "deletions", "indexes", "results", SegmentLists.directory, "tmp"]
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
            referenced.formUnion(try manifest(at: version).referencedFiles)
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
