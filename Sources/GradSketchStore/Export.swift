#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GradSketchHDF5
import GradSketchInterchange

/// What `info` reports about a store as of one version.
public struct StoreSummary: Codable, Sendable {
    public struct SetSummary: Codable, Sendable {
        public let name: String
        public let rows: Int
        public let k: Int
        public let dtype: String
        public let segments: Int
        public let deletedRows: Int
        public let bytes: Int
        public let allowNonfinite: Bool
        public let hasLabels: Bool
        public let hasMetadata: Bool
        public let columns: [String]
        public let attributes: [String: JSONValue]
    }
    public struct TensorSetSummary: Codable, Sendable {
        public let name: String
        public let kind: String
        public let tensors: Int
        public let elements: Int
        public let contentHash: String
        public let from: String?
        public let to: String?
    }
    public let path: String
    public let storeID: String
    public let created: String
    public let formatVersion: String
    public let version: Int
    public let latestVersion: Int
    public let retainedVersions: [Int]
    public let sketchSets: [SetSummary]
    public let tensorSets: [TensorSetSummary]
}

extension Store {
    /// A summary of the store as of `version` (latest when nil).
    public func summary(at version: Int? = nil) throws -> StoreSummary {
        let manifest = try self.manifest(at: version)
        let retained = try versions()
        let sets = manifest.sketchSets.sorted { $0.key < $1.key }.map { name, set in
            StoreSummary.SetSummary(
                name: name, rows: set.rowCount, k: set.k, dtype: set.dtype, segments: set.segments.count,
                deletedRows: set.segments.reduce(0) { $0 + ($1.deletions?.count ?? 0) },
                bytes: set.segments.reduce(0) { $0 + $1.rows } * set.k * (SketchDType(rawValue: set.dtype)?.byteWidth ?? 4),
                allowNonfinite: set.allowNonfinite, hasLabels: set.hasLabels, hasMetadata: set.hasMetadata,
                columns: set.columnNames, attributes: set.attributes)
        }
        let tensors = manifest.tensorSets.sorted { $0.key < $1.key }.map { name, set in
            StoreSummary.TensorSetSummary(
                name: name, kind: set.kind, tensors: set.tensors.count,
                elements: set.tensors.reduce(0) { $0 + $1.shape.reduce(1, *) },
                contentHash: set.contentHash, from: set.from, to: set.to)
        }
        return StoreSummary(path: path, storeID: storeID, created: created, formatVersion: manifest.formatVersion,
                            version: manifest.version, latestVersion: retained.last ?? manifest.version,
                            retainedVersions: retained, sketchSets: sets, tensorSets: tensors)
    }

    /// Writes the live rows of set `name` (all, or those with `ids`, in that order) to a
    /// `.npy` file of shape `[N, k]` in `dtype` (the set's when nil). Atomic: the file appears
    /// complete or not at all.
    ///
    /// - Returns: the ids of the exported rows, in file order.
    @discardableResult
    public func exportRows(of name: String, at version: Int? = nil, ids wanted: [String]? = nil,
                           dtype: SketchDType? = nil, to output: String) throws -> [String] {
        try refuseOutputInsideStore(output)
        let set = try sketchSet(name, at: version)
        let dtype = dtype ?? set.dtype
        let positions = try wanted.map { try set.positions(of: $0) }
        let allIDs = try set.ids()
        let count = positions?.count ?? set.rowCount
        let writer = try withContext(.io, "cannot create output file", path: output) {
            try NumpyWriter(path: output, elementType: dtype.elementType, shape: [count, set.k])
        }
        // Rows go out in bounded batches so memory does not grow with the set.
        let rowBytes = set.k * dtype.byteWidth
        let batch = max(1, (8 << 20) / rowBytes)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * rowBytes, alignment: 64)
        defer { buffer.deallocate() }
        func emit(_ rows: Int) throws {
            let filled = UnsafeRawBufferPointer(rebasing: buffer[0..<(rows * rowBytes)])
            try withContext(.io, "cannot write output file", path: output) { try writer.append(filled) }
        }
        if let positions {
            let locator = try RowLocator(set)
            var start = 0
            while start < count {
                let end = min(count, start + batch)
                try locator.copy(Array(positions[start..<end]), as: dtype,
                                 into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<((end - start) * rowBytes)]))
                try emit(end - start)
                start = end
            }
        } else {
            try set.forEachBlock { block in
                // One block at a time, in batch-sized pieces of its rows.
                var first = 0
                while first < block.rowCount {
                    let last = min(block.rowCount, first + batch)
                    let piece = RowBlock(bytes: UnsafeRawBufferPointer(rebasing: block.bytes[(first * block.k * block.dtype.byteWidth)..<(last * block.k * block.dtype.byteWidth)]),
                                         dtype: block.dtype, k: block.k, rowCount: last - first,
                                         deleted: block.deleted.filter { $0 >= first && $0 < last }.map { $0 - first },
                                         firstLiveIndex: 0, isMapped: block.isMapped)
                    try emit(try piece.copyLiveRows(as: dtype, into: buffer, at: 0))
                    first = last
                }
            }
        }
        try withContext(.io, "cannot finish output file", path: output) { try writer.finish() }
        return positions.map { $0.map { allIDs[$0] } } ?? allIDs
    }

    /// Writes the store as of `version` into one self-contained HDF5 file (Spec §9).
    public func pack(at version: Int? = nil, to output: String) throws {
        try refuseOutputInsideStore(output)
        let manifest = try self.manifest(at: version)
        // The temporary name says which process writes it, so a later pack to the same
        // output removes what a killed one left behind.
        let temporaryPrefix = output + ".tmp-" + FileSystem.hostName + "."
        FileSystem.removeOrphans(prefix: temporaryPrefix)
        let temporary = temporaryPrefix + "\(FileSystem.processID)." + randomIdentifier()
        defer { try? FileSystem.remove(temporary) }
        try withContext(.io, "cannot write packed file", path: temporary) {
            let file = try HDF5File.create(path: temporary, alignment: .everyObject)  // Spec §2.4: small mixed-dtype datasets
            let root = try file.root()
            try FileHeader.write(on: root, type: .packedStore)
            try root.setAttribute("store-id", storeID)
            try root.setAttribute("version", Int64(manifest.version))
            for name in manifest.sketchSets.keys.sorted() {
                let set = try sketchSet(name, at: manifest.version)
                let group = try root.createGroup("sketch_sets/" + name)
                try group.setAttribute("k", Int64(set.k))
                try group.setAttribute("dtype", set.dtype.rawValue)
                try group.setAttribute("attributes", JSONValue.object(set.attributes).jsonText)
                let rows = try group.createDataset("rows", type: set.dtype.storageType, shape: [set.rowCount, set.k])
                var crc = CRC32C()
                var written = 0
                try set.forEachBlock { block in
                    // Runs of consecutive live rows go out in one write each.
                    let live = block.liveRows
                    var index = 0
                    while index < live.count {
                        var end = index + 1
                        while end < live.count && live[end] == live[end - 1] + 1 { end += 1 }
                        let width = set.k * set.dtype.byteWidth
                        let bytes = UnsafeRawBufferPointer(rebasing: block.bytes[(live[index] * width)..<((live[end - 1] + 1) * width)])
                        crc.update(bytes)
                        try rows.writeBytes(bytes, as: set.dtype.storageType, rows: written..<(written + end - index), rowLength: set.k)
                        written += end - index
                        index = end
                    }
                }
                try FileHeader.mark(rows, type: .denseRows, checksum: CRC32C.formatted(crc.value))
                try rows.close()
                try writePacked(try set.ids(), "ids", .rowIDs, in: group)
                if set.entry.hasLabels { try writePacked(try set.labels(), "labels", .rowLabels, in: group) }
                if set.entry.hasMetadata {
                    try writePacked(try set.metadata(), "metadata", .rowMetadata, in: group)
                }
                for column in set.columnNames {
                    let values = try set.column(column)
                    let dataset = try group.createDataset("columns/" + column, type: .float64, shape: [values.count], mappable: false)
                    try values.withUnsafeBytes { try dataset.writeBytes($0, as: .float64) }
                    try FileHeader.mark(dataset, type: .rowColumn, checksum: Checksum.values(values))
                    try dataset.close()
                }
                try group.close()
            }
            for name in manifest.tensorSets.keys.sorted() {
                let set = try tensorSet(name, at: manifest.version)
                let group = try root.createGroup("tensor_sets/" + name)
                try group.setAttribute("kind", set.kind)
                try group.setAttribute("content-hash", set.contentHash)
                for entry in set.entry.tensors {
                    let tensor = try set.tensor(named: entry.name)
                    let dataset = try group.createDataset(TensorFiles.datasetName(entry.name), type: tensor.dtype.storageType, shape: tensor.shape)
                    if !tensor.bytes.isEmpty { try dataset.writeBytes(tensor.bytes, as: tensor.dtype.storageType) }
                    try FileHeader.mark(dataset, type: .tensor, checksum: entry.checksum)
                    try dataset.setAttribute("name", entry.name)
                    if let source = entry.sourceDtype { try dataset.setAttribute("source-dtype", source) }
                    try dataset.close()
                }
                try group.close()
            }
            try root.close()
            try file.close()
        }
        try FileSystem.fsyncFile(temporary)
        try FileSystem.rename(temporary, output)
        try FileSystem.fsyncDirectory(FileSystem.parentDirectory(of: output))
    }

    /// Refuses an output file inside the store's directory (after resolving symbolic links
    /// and `..`): it could replace a published file, which Spec §1 makes immutable, or leave
    /// a stray file among the data directories.
    public func refuseOutputInsideStore(_ output: String) throws {
        func resolved(_ path: String) -> String? {
            guard let pointer = realpath(path, nil) else { return nil }
            defer { free(pointer) }
            return String(cString: pointer)
        }
        guard let storeDirectory = resolved(path) else { return }
        let components = output.split(separator: "/", omittingEmptySubsequences: false)
        let parent = components.count > 1 ? components.dropLast().joined(separator: "/") : "."
        // The parent may not exist yet; writing then fails on its own, outside the store.
        guard let parentDirectory = resolved(parent.isEmpty ? "/" : parent) else { return }
        let target = (parentDirectory == "/" ? "" : parentDirectory) + "/" + (components.last.map(String.init) ?? "")
        if target == storeDirectory || target.hasPrefix(storeDirectory + "/") {
            throw StoreError(.invalidInput, "cannot write the output inside the store: expected a path outside \(path), found \(output) (resolved to \(target))", path: output)
        }
    }

    private func writePacked(_ strings: [String], _ name: String, _ type: EncodingType, in group: borrowing Group) throws {
        let dataset = try group.createStringDataset(name, strings: strings)
        try FileHeader.mark(dataset, type: type, checksum: Checksum.strings(strings))
        try dataset.close()
    }
}
