import Foundation
import GradSketchHDF5
import GradSketchInterchange
import Synchronization

/// A GradSketch store: a directory of immutable HDF5 files plus one manifest per version
/// (Spec §1).
///
/// A `Store` value reads any retained version and commits new ones. Several processes may
/// hold the same store open and commit concurrently: each commit is re-validated against the
/// latest version and published with one atomic `link(2)` (Spec §7.2).
public final class Store: Sendable {
    /// The store's directory.
    public let path: String
    /// The store's random identity (Spec §3).
    public let storeID: String
    /// Created time of the store (UTC ISO 8601).
    public let created: String

    private let manifestCache = Mutex<[Int: Manifest]>([:])
    private let commitWarnings = Mutex<[StoreError]>([])
    /// Ids of segment files read so far (segments are immutable).
    let idCache = Mutex<[String: [String]]>([:])
    /// Id hash tables of segment and segment-list files read or written so far, by file.
    let idHashCache = Mutex<[String: IDHashTable]>([:])

    static let identityFile = "gradsketch.h5"
    /// `versions/`, one directory per registered file kind, and `tmp/`.
    static var dataDirectories: [String] { ["versions"] + FileKinds.directories + ["tmp"] }

    /// Opens an existing store.
    ///
    /// - Throws: ``StoreError`` `.notAStore` if `path` is not a store, `.unsupportedVersion`
    ///   if it was written by a newer major format version.
    public init(opening path: String) throws {
        let path = Store.normalize(path)
        self.path = path
        guard FileSystem.isDirectory(path) else {
            let what = FileSystem.exists(path) ? "a file" : "nothing"
            throw StoreError(.notAStore, "not a GradSketch store: expected a directory, found \(what)", path: path)
        }
        let identity = path + "/" + Store.identityFile
        guard FileSystem.exists(identity) else {
            throw StoreError(.notAStore, "not a GradSketch store: expected \(Store.identityFile) in the directory, found none", path: path)
        }
        try DataFileCheck.regularFile(identity)
        (storeID, created) = try withContext(.corrupt, "cannot read the store identity file", path: identity) {
            let file = try HDF5File.open(path: identity)
            let root = try file.root()
            try FileHeader.check(root, expected: .store)
            let id = try root.stringAttribute("store-id") ?? ""
            let created = try root.stringAttribute("created") ?? ""
            try root.close()
            try file.close()
            return (id, created)
        }
        // Only versions/ is needed to read; the data directories are created again when a
        // writer needs one (git, for one, does not keep an empty tmp/).
        guard FileSystem.isDirectory(path + "/versions") else {
            throw StoreError(.corrupt, "store is missing its versions/ directory", path: path)
        }
    }

    /// Creates a new, empty store at `path` (which must not exist, or be an empty directory)
    /// and commits version 0.
    ///
    /// `storeID` (32 lowercase hex digits) is the identity to give it, for a shard that a
    /// shard map named before its store was created; nil draws a fresh random one.
    @discardableResult
    public static func create(at path: String, storeID: String? = nil) throws -> Store {
        let path = normalize(path)
        if let storeID, !ShardMap.isStoreID(storeID) {
            throw StoreError(.invalidInput, "cannot create a store with store-id \"\(storeID)\": expected 32 lowercase hex digits", path: path)
        }
        if FileSystem.exists(path) {
            guard FileSystem.isDirectory(path), try FileSystem.list(path).isEmpty else {
                throw StoreError(.invalidInput, "cannot create a store: expected a new path or an empty directory, found existing content", path: path)
            }
        } else {
            try FileSystem.makeDirectory(path)
        }
        for directory in dataDirectories { try FileSystem.makeDirectory(path + "/" + directory) }
        // The identity file is written last-but-one and published by rename, so a directory
        // with an identity file always has all its subdirectories.
        let temporary = path + "/tmp/" + temporaryName()
        try withContext(.io, "cannot write the store identity file", path: temporary) {
            let file = try HDF5File.create(path: temporary)
            let root = try file.root()
            try FileHeader.write(on: root, type: .store)
            try root.setAttribute("store-id", storeID ?? randomIdentifier())
            try root.setAttribute("created", utcTimestamp())
            try root.close()
            try file.close()
        }
        try FileSystem.fsyncFile(temporary)
        try FileSystem.rename(temporary, path + "/" + identityFile)
        try FileSystem.fsyncDirectory(path)
        let store = try Store(opening: path)
        try store.commit(operation: "init", set: nil, detail: nil) { _ in }
        return store
    }

    static func normalize(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }

    static func temporaryName() -> String {
        "\(FileSystem.hostName).\(FileSystem.processID).\(randomIdentifier()).h5"
    }

    /// A fresh path under `tmp/` for a file being written.
    func temporaryPath() throws -> String {
        try FileSystem.makeStoreDirectory(path + "/tmp")
        return path + "/tmp/" + Store.temporaryName()
    }

    /// Identifies this writer in `log` (host and process).
    var writerName: String { "\(FileSystem.hostName):\(FileSystem.processID)" }

    // MARK: - Versions

    static func manifestName(_ version: Int) -> String {
        let digits = String(version)
        return "v" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".h5"
    }

    /// Every retained version number, ascending.
    public func versions() throws -> [Int] {
        try FileSystem.list(path + "/versions").compactMap { name -> Int? in
            guard name.hasPrefix("v"), name.hasSuffix(".h5"), name.count == 16 else { return nil }
            return Int(name.dropFirst().dropLast(3))
        }.sorted()
    }

    /// The greatest version number (Spec §7.3).
    public func latestVersion() throws -> Int {
        guard let latest = try versions().last else {
            throw StoreError(.corrupt, "store has no versions (expected at least version 0 from init)", path: path + "/versions")
        }
        return latest
    }

    /// The manifest of `version` (the latest when nil), verified (Spec §7.1).
    package func manifest(at version: Int? = nil) throws -> Manifest {
        let version = try version ?? latestVersion()
        if let cached = manifestCache.withLock({ $0[version] }) { return cached }
        let file = path + "/versions/" + Store.manifestName(version)
        guard FileSystem.exists(file) else {
            let retained = try versions()
            let range = retained.isEmpty ? "none" : "\(retained.first!)–\(retained.last!)"
            throw StoreError(.notFound, "version \(version) is not in this store (retained versions: \(range))", path: path)
        }
        let manifest = try Store.readManifest(file: file, expectedVersion: version)
        manifestCache.withLock { $0[version] = manifest }
        return manifest
    }

    static func readManifest(file: String, expectedVersion: Int) throws -> Manifest {
        try DataFileCheck.regularFile(file)
        let (text, stored) = try withContext(.corrupt, "cannot read manifest", path: file) { () throws -> (String, String?) in
            let hdf = try HDF5File.open(path: file)
            let root = try hdf.root()
            try FileHeader.check(root, expected: .manifest)
            let dataset = try root.openDataset("manifest")
            try FileHeader.checkDataset(dataset, expected: .manifestJSON, path: file)
            try DataFileCheck.fits(dataset, in: file, location: file + ":/manifest")
            let strings = try dataset.readStrings()
            let checksum = try dataset.stringAttribute("checksum")
            try dataset.close()
            try root.close()
            try hdf.close()
            guard strings.count == 1 else {
                throw StoreError(.corrupt, "manifest dataset must hold one string, found \(strings.count)", path: file)
            }
            return (strings[0], checksum)
        }
        var manifest = try parseManifest(text, checksum: stored, expectedVersion: expectedVersion, file: file)
        if manifest.sketchSets.values.contains(where: { $0.segmentLists != nil }) {
            // `file` is STORE/versions/<name>: segment-list files are named relative to STORE.
            let storePath = String(file[..<(file.range(of: "/versions/", options: .backwards)?.lowerBound ?? file.startIndex)])
            try SegmentLists.expand(&manifest, storePath: storePath, file: file)
            try ManifestValidation.check(manifest, file: file)
        }
        return manifest
    }

    /// The checksum a manifest's text carries (Spec §4: its UTF-8 bytes, then one 0x00).
    public static func manifestChecksum(of text: String) -> String { Checksum.strings([text]) }

    /// The checks on a manifest's text once it is out of its HDF5 file: checksum, JSON shape,
    /// format, version and extensions. Separate from the HDF5 read so the manifest fuzz target
    /// (`Tests/Fuzz`) drives exactly what every reader runs.
    package static func parseManifest(_ text: String, checksum stored: String?, expectedVersion: Int, file: String) throws -> Manifest {
        let computed = Checksum.strings([text])
        guard stored == computed else {
            throw StoreError(.corrupt, "manifest checksum mismatch: expected \(stored ?? "(none)"), computed \(computed)", path: file + ":/manifest")
        }
        let manifest: Manifest
        do {
            manifest = try Manifest.decode(text)
        } catch {
            throw StoreError(.corrupt, "manifest is not valid JSON of the expected shape: \(error)", path: file)
        }
        guard manifest.format == StoreFormat.name else {
            throw StoreError(.notAStore, "manifest format is \"\(manifest.format)\", expected \"gradsketch\"", path: file)
        }
        try FileHeader.checkVersion(manifest.formatVersion, what: "format_version", path: file)
        guard manifest.version == expectedVersion else {
            throw StoreError(.corrupt, "manifest says version \(manifest.version), its file name says \(expectedVersion)", path: file)
        }
        for ext in manifest.extensions where ext.mustUnderstand && !StoreFormat.knownExtensions.contains(ext.name) {
            throw StoreError(.unsupportedVersion, "version \(expectedVersion) uses extension \"\(ext.name)\", which this reader does not implement (must_understand)", path: file)
        }
        try ManifestValidation.check(manifest, file: file)
        return manifest
    }

    // MARK: - Committing

    /// Commits a new version (Spec §7.2).
    ///
    /// `change` is applied to the latest manifest and may throw to refuse the change; when
    /// another writer commits first, it runs again on the newer manifest, so every check it
    /// makes holds against the version actually committed on top of.
    ///
    /// - Returns: the new version number, once its manifest is linked. A failure after the
    ///   link (the `fsync` of `versions/`) does not undo the commit and is not thrown: it is
    ///   a warning, passed to the warning handler and kept for ``takeCommitWarnings()``.
    /// - Throws: only before the link, in which case nothing was committed.
    @discardableResult
    package func commit(operation: String, set: String?, detail: String?, _ change: (inout Manifest) throws -> Void) throws -> Int {
        try commitReturningWarnings(operation: operation, set: set, allSets: false, detail: detail, change).version
    }

    /// ``commit(operation:set:detail:_:)``, also returning this commit's post-link warnings;
    /// `allSets` counts the rows added and deleted over every sketch set (for a commit that
    /// changes several).
    func commitReturningWarnings(operation: String, set: String?, allSets: Bool, detail: String?,
                                 _ change: (inout Manifest) throws -> Void) throws -> (version: Int, warnings: [StoreError]) {
        var attempt = 0
        while true {
            attempt += 1
            let base = try versions().last
            var manifest: Manifest
            if let base {
                manifest = try self.manifest(at: base)
            } else {
                manifest = Manifest(version: 0, parent: nil, created: "", change: .init(operation: "init", writer: ""))
            }
            let before = manifest
            try change(&manifest)
            let next = base.map { $0 + 1 } ?? 0
            manifest.version = next
            manifest.parent = base
            manifest.created = utcTimestamp()
            manifest.format = StoreFormat.name
            manifest.formatVersion = StoreFormat.versionString
            manifest.creator = StoreFormat.creator
            manifest.creatorVersion = StoreFormat.creatorVersion
            let rows = allSets
                ? Set(before.sketchSets.keys).union(manifest.sketchSets.keys).reduce((added: 0, deleted: 0)) { sum, name in
                    let delta = Store.rowsDelta(before, manifest, set: name)
                    return (sum.added + delta.added, sum.deleted + delta.deleted)
                }
                : Store.rowsDelta(before, manifest, set: set)
            manifest.change = Manifest.Change(
                // A compaction rewrites live rows without adding or removing any (Spec §5.5).
                operation: operation, set: set,
                rowsAdded: operation == "compact" ? 0 : rows.added, rowsDeleted: operation == "compact" ? 0 : rows.deleted,
                writer: writerName, detail: detail)
            // Segment lists (Spec §7.1) this attempt writes: removed unless it commits.
            var listFiles: [String] = []
            var linked = false
            defer { if !linked { for file in listFiles { try? FileSystem.remove(absolute(file)) } } }
            try writeSegmentLists(&manifest, base: before, written: &listFiles)
            let temporary = try temporaryPath()
            // Set before the write, so a manifest that fails half-written leaves nothing in tmp/.
            defer { try? FileSystem.remove(temporary) }
            try writeManifest(manifest, to: temporary)
            try checkPublished(manifest.referencedFiles.subtracting(before.referencedFiles))
            try FileSystem.makeStoreDirectory(path + "/versions")
            let final = path + "/versions/" + Store.manifestName(next)
            if try FileSystem.linkIfAbsent(temporary, final) {
                linked = true
                // The version is live from here on: whatever fails now is reported as a
                // warning, never thrown, so no caller's error path removes a file the new
                // version references (Spec §7.2 step 4).
                var warnings: [StoreError] = []
                do { try FileSystem.remove(temporary) } catch { warnings.append(warn(committed: next, error)) }
                do { try FileSystem.fsyncDirectory(path + "/versions") } catch { warnings.append(warn(committed: next, error)) }
                manifestCache.withLock { $0[next] = manifest }
                return (next, warnings)
            }
            // Another writer committed `next` first: back off a little (randomised, so
            // writers that collided do not collide again in lockstep) and rebase.
            if attempt > 10_000 {
                throw StoreError(.conflict, "gave up committing after \(attempt) attempts: other writers keep committing first", path: path)
            }
            usleep(UInt32.random(in: 0...UInt32(min(attempt, 50) * 200)))
        }
    }

    /// Records a failure that happened after version `version` was linked.
    @discardableResult
    private func warn(committed version: Int, _ error: any Error) -> StoreError {
        let cause = error as? StoreError
        let warning = StoreError(.io, "version \(version) is committed, but a step after the commit failed: \(cause.map { "\($0)" } ?? "\(error)")",
                                 path: cause?.path == nil ? path : nil)
        commitWarnings.withLock { $0.append(warning) }
        Store.warningHandler.withLock { $0 }?(warning)
        return warning
    }

    /// Failures after a commit's link (Spec §7.2 step 4) since the last call, oldest first:
    /// the versions they name are committed and readable, but a temporary name may be left
    /// in `tmp/` or the new directory entry may not yet be durable.
    public func takeCommitWarnings() -> [StoreError] {
        commitWarnings.withLock { warnings in
            defer { warnings.removeAll() }
            return warnings
        }
    }

    /// Called (on the committing thread) with each post-commit warning of any store in this
    /// process, as it happens; the CLI prints them.
    public static func setWarningHandler(_ handler: (@Sendable (StoreError) -> Void)?) {
        warningHandler.withLock { $0 = handler }
    }

    private static let warningHandler = Mutex<(@Sendable (StoreError) -> Void)?>(nil)

    /// Checks, right before the link, that every file the new manifest adds is still in
    /// place, so a version whose file a vacuum removed meanwhile is never committed.
    private func checkPublished(_ files: Set<String>) throws {
        for file in files.sorted() where !FileSystem.exists(absolute(file)) {
            throw StoreError(.conflict, "a file this commit adds disappeared before the commit (removed by vacuum while the writer stalled?): expected \(file), found nothing; nothing was committed", path: absolute(file))
        }
    }

    static func rowsDelta(_ before: Manifest, _ after: Manifest, set: String?) -> (added: Int, deleted: Int) {
        guard let set else { return (0, 0) }
        let old = before.sketchSets[set]
        let new = after.sketchSets[set]
        let oldFiles = Set(old?.segments.map(\.file) ?? [])
        let added = new?.segments.filter { !oldFiles.contains($0.file) }.reduce(0) { $0 + $1.rows } ?? 0
        let oldDeleted = old?.segments.reduce(0) { $0 + ($1.deletions?.count ?? 0) } ?? 0
        // Rows a commit both appended and deleted (one transaction) count as added and deleted.
        let newDeleted = new?.segments.reduce(0) { $0 + ($1.deletions?.count ?? 0) } ?? 0
        let dropped = new == nil ? (old?.rowCount ?? 0) : 0
        return (added, max(0, newDeleted - oldDeleted) + dropped)
    }

    private func writeManifest(_ manifest: Manifest, to temporary: String) throws {
        let text = try manifest.encoded()
        try withContext(.io, "cannot write manifest", path: temporary) {
            let file = try HDF5File.create(path: temporary)
            let root = try file.root()
            try FileHeader.write(on: root, type: .manifest)
            try root.setAttribute("version", Int64(manifest.version))
            let dataset = try root.createStringDataset("manifest", strings: [text], scalar: true)
            try FileHeader.mark(dataset, type: .manifestJSON, checksum: Checksum.strings([text]))
            try dataset.close()
            try root.close()
            try file.close()
        }
        try FileSystem.fsyncFile(temporary)
    }

    /// Publishes a finished temporary file under `directory/` (Spec §7.2 step 1) and returns
    /// its size and whole-file checksum, which the manifest records so `verify` catches a
    /// changed byte anywhere in the file, HDF5 metadata and padding included.
    ///
    /// `known` names a byte range whose CRC the caller computed while writing it (the rows):
    /// only the rest of the file is read back, and the CRCs are combined.
    @discardableResult
    func publish(_ temporary: String, as relativePath: String, known: (offset: Int, length: Int, crc: UInt32)? = nil) throws -> (size: Int, checksum: String) {
        guard let size = FileSystem.size(temporary) else {
            throw StoreError(.io, "the file just written is missing", path: temporary)
        }
        let region = known ?? (offset: 0, length: 0, crc: 0)
        let crc = try withContext(.io, "cannot read back the file just written", path: temporary) { () throws -> UInt32 in
            let head = try MappedFile(path: temporary, offset: 0, length: region.offset)
            let tailStart = region.offset + region.length
            let tail = try MappedFile(path: temporary, offset: tailStart, length: size - tailStart)
            var crc = CRC32C.checksum(head.bytes)
            crc = CRC32C.combine(crc, region.crc, secondLength: region.length)
            return CRC32C.combine(crc, CRC32C.checksum(tail.bytes), secondLength: tail.count)
        }
        try FileSystem.fsyncFile(temporary)
        let directory = relativePath.split(separator: "/").dropLast().joined(separator: "/")
        try FileSystem.makeStoreDirectory(path + "/" + directory)
        try FileSystem.rename(temporary, path + "/" + relativePath)
        do {
            try FileSystem.fsyncDirectory(path + "/" + directory)
        } catch {
            // Not yet referenced by any version: the caller's error path cannot know the
            // file is under its final name, so it goes here.
            try? FileSystem.remove(path + "/" + relativePath)
            throw error
        }
        return (size, CRC32C.formatted(crc))
    }

    /// Absolute path of a file named relative to the store.
    func absolute(_ relativePath: String) -> String { path + "/" + relativePath }
}

/// Checksums as Spec §4 defines them.
enum Checksum {
    static func bytes(_ buffer: UnsafeRawBufferPointer) -> String {
        CRC32C.formatted(CRC32C.checksum(buffer))
    }

    /// Each string's UTF-8 bytes followed by one 0x00 byte.
    static func strings(_ strings: [String]) -> String {
        var crc = CRC32C()
        for string in strings {
            var copy = string
            copy.withUTF8 { crc.update(UnsafeRawBufferPointer($0)) }
            withUnsafeBytes(of: UInt8(0)) { crc.update($0) }
        }
        return CRC32C.formatted(crc.value)
    }

    static func values<T: BitwiseCopyable>(_ values: [T]) -> String {
        values.withUnsafeBytes { bytes($0) }
    }
}
