import GradSketchHDF5
import GradSketchInterchange

/// The arrays of an IVF index with int8 residual codes (Spec §10), as a builder hands them
/// to the store. Rows are grouped by list: list `l` holds rows `listOffsets[l] ..<
/// listOffsets[l + 1]` of `codes`, `scales` and `positions`.
public struct IVFIndexArrays: Sendable {
    /// `[lists, k]` float32: list centroids (of unit-normalised rows for cosine).
    public var centroids: [Float]
    /// `[lists + 1]`, non-decreasing, from 0 to the number of indexed rows.
    public var listOffsets: [Int64]
    /// `[rows, k]` int8: row − centroid ≈ scale · code.
    public var codes: [Int8]
    /// `[rows]` float32.
    public var scales: [Float]
    /// `[rows]` int64: the row's *physical* position, counting deleted rows, in the covered
    /// segments concatenated in set order; it stays valid when later versions delete rows.
    public var positions: [Int64]

    public init(centroids: [Float], listOffsets: [Int64], codes: [Int8], scales: [Float], positions: [Int64]) {
        self.centroids = centroids
        self.listOffsets = listOffsets
        self.codes = codes
        self.scales = scales
        self.positions = positions
    }
}

/// A stored IVF index: centroids and list offsets read and verified on open (they are small);
/// codes, code scales and positions mapped and verified list by list as searches touch them
/// (whole on first touch for 1.1 files without block checksums).
public final class StoredIndex: Sendable {
    public let name: String
    package let entry: Manifest.IndexEntry
    public let k: Int
    public let centroids: [Float]
    public let listOffsets: [Int]
    let codeBytes: CheckedBytes
    let scaleBytes: CheckedBytes
    let positionBytes: CheckedBytes

    init(name: String, entry: Manifest.IndexEntry, k: Int, centroids: [Float], listOffsets: [Int],
         codes: CheckedBytes, scales: CheckedBytes, positions: CheckedBytes) {
        self.name = name
        self.entry = entry
        self.k = k
        self.centroids = centroids
        self.listOffsets = listOffsets
        self.codeBytes = codes
        self.scaleBytes = scales
        self.positionBytes = positions
    }

    /// Index rows `rows` of codes, scales and positions verified (each block once per process
    /// object); call before reading them through ``unverifiedArrays``.
    public func verify(rows: Range<Int>) throws {
        try codeBytes.ensure(rows: rows)
        try scaleBytes.ensure(rows: rows)
        try positionBytes.ensure(rows: rows)
    }

    /// Verifies list `list`'s rows; see ``verify(rows:)``.
    public func verify(list: Int) throws {
        try verify(rows: listOffsets[list]..<listOffsets[list + 1])
    }

    /// `[rows, k]` int8 codes, `[rows]` scales and `[rows]` positions, list by list, valid while
    /// this object exists. A caller MUST verify the rows it reads first (Spec §4).
    public var unverifiedArrays: (codes: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>, positions: UnsafeBufferPointer<Int64>) {
        (codeBytes.bytes.assumingMemoryBound(to: Int8.self), scaleBytes.bytes.assumingMemoryBound(to: Float.self),
         positionBytes.bytes.assumingMemoryBound(to: Int64.self))
    }

    /// Every code, verified.
    public func codes() throws -> UnsafeBufferPointer<Int8> {
        try codeBytes.ensureAll()
        return codeBytes.bytes.assumingMemoryBound(to: Int8.self)
    }

    /// Every code scale, verified.
    public func scales() throws -> [Float] {
        try scaleBytes.ensureAll()
        return Array(scaleBytes.bytes.assumingMemoryBound(to: Float.self))
    }

    /// Every row position, verified.
    public func positions() throws -> [Int64] {
        try positionBytes.ensureAll()
        return Array(positionBytes.bytes.assumingMemoryBound(to: Int64.self))
    }

    public var isMapped: Bool { codeBytes.storage.notMappedBecause == nil }
    public var lists: Int { entry.lists }
    public var rows: Int { entry.rows }
}

extension Store {
    /// Publishes an IVF index over the first `coveredSegments` segments of `set` (the version
    /// `set` was read at) and commits it as index `name` of that set.
    ///
    /// - Throws: `.conflict` if a newer version no longer starts with those segments.
    @discardableResult
    public func commitIndex(_ name: String, over set: SketchSet, coveredSegments: Int, metric: String,
                            arrays: IVFIndexArrays, parameters: [String: JSONValue]) throws -> Int {
        try Rules.checkName(name, what: "index")
        let k = set.k, lists = arrays.listOffsets.count - 1
        let rows = arrays.positions.count
        guard lists >= 1, arrays.centroids.count == lists * k, arrays.codes.count == rows * k, arrays.scales.count == rows,
              arrays.listOffsets.first == 0, arrays.listOffsets.last == Int64(rows),
              zip(arrays.listOffsets, arrays.listOffsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
            throw StoreError(.invalidInput, "index arrays are inconsistent: \(lists) lists of width \(k) need \(lists * k) centroid values (found \(arrays.centroids.count)), \(rows * k) codes (found \(arrays.codes.count)) and \(rows) scales (found \(arrays.scales.count)) with offsets from 0 to \(rows)")
        }
        let covered = Array(set.entry.segments.prefix(coveredSegments).map(\.file))
        let pin = try pinWriter()
        defer { pin.release() }
        let id = randomIdentifier()
        let temporary = try temporaryPath()
        defer { try? FileSystem.remove(temporary) }
        var checksums: [String: String] = [:]
        try withContext(.io, "cannot write index", path: temporary) {
            let file = try HDF5File.create(path: temporary)
            let root = try file.root()
            try FileHeader.write(on: root, type: .ivfIndex)
            try root.setAttribute("index-id", id)
            try root.setAttribute("set", set.name)
            try root.setAttribute("metric", metric)
            try root.setAttribute("kind", "ivf-int8")
            try root.setAttribute("k", Int64(k))
            try root.setAttribute("lists", Int64(lists))
            try root.setAttribute("rows", Int64(rows))
            try root.setAttribute("built-on-version", Int64(set.version))
            func put<E: HDF5Element>(_ root: borrowing Group, _ values: [E], _ dataset: String, shape: [Int], type: EncodingType) throws {
                let handle = try root.createDataset(dataset, type: E.storageType, shape: shape, mappable: true)
                try values.withUnsafeBufferPointer { buffer in
                    if !buffer.isEmpty { try handle.write(buffer) }
                    let checksum = CRC32C.formatted(CRC32C.checksum(UnsafeRawBufferPointer(buffer)))
                    try FileHeader.mark(handle, type: type, checksum: checksum)
                    checksums[dataset] = checksum
                }
                try handle.close()
            }
            try put(root, arrays.centroids, "centroids", shape: [lists, k], type: .ivfCentroids)
            try put(root, arrays.listOffsets, "list-offsets", shape: [lists + 1], type: .ivfListOffsets)
            try put(root, arrays.codes, "codes", shape: [rows, k], type: .ivfCodes)
            try put(root, arrays.scales, "code-scales", shape: [rows], type: .ivfCodeScales)
            try put(root, arrays.positions, "positions", shape: [rows], type: .ivfRowPositions)
            // Format 1.2 block checksums over index rows (Spec §10.2): one block size for the
            // three per-row arrays, so a probed list is verified with the same block numbers.
            let blockRows = BlockChecksums.rowsPerBlock(rowBytes: k)
            try BlockChecksums.write(arrays.codes.withUnsafeBytes { BlockChecksums.numeric($0, rowBytes: k, blockRows: blockRows) },
                                     blockRows: blockRows, for: "codes", in: root)
            try BlockChecksums.write(arrays.scales.withUnsafeBytes { BlockChecksums.numeric($0, rowBytes: 4, blockRows: blockRows) },
                                     blockRows: blockRows, for: "code-scales", in: root)
            try BlockChecksums.write(arrays.positions.withUnsafeBytes { BlockChecksums.numeric($0, rowBytes: 8, blockRows: blockRows) },
                                     blockRows: blockRows, for: "positions", in: root)
            try root.close()
            try file.close()
        }
        let relative = "indexes/\(id).h5"
        let whole = try publish(temporary, as: relative)
        let entry = Manifest.IndexEntry(file: relative, size: whole.size, fileChecksum: whole.checksum, checksums: checksums,
                                        kind: "ivf-int8", metric: metric, lists: lists, rows: rows, builtOnVersion: set.version,
                                        segments: covered, parameters: parameters)
        do {
            return try commit(changes: [.buildIndex(name: name, set: set.name, entry: entry)],
                              detail: "index \(name) (\(metric), \(lists) lists, \(rows) rows)").version
        } catch {
            try? FileSystem.remove(absolute(relative))
            throw error
        }
    }

    /// Removes index `name` from `set` in a new version (older versions keep it until vacuum).
    @discardableResult
    public func dropIndex(_ name: String, of set: String) throws -> Int {
        try commit(changes: [.dropIndex(name: name, set: set)], detail: "index \(name)").version
    }
}

extension SketchSet {
    /// Index `name` of this set as of this version, verified once per process.
    public func index(_ name: String) throws -> StoredIndex {
        guard let entry = entry.indexes[name] else {
            let known = entry.indexes.keys.sorted()
            throw StoreError(.notFound, "set \(self.name) has no index \"\(name)\" in version \(version) (indexes: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        return try IndexFiles.load(path: storePath + "/" + entry.file, name: name, entry: entry, k: k, set: self.name)
    }

    /// Of this set's segments, how many an index covers: its segments must be exactly the
    /// first ones of the set. Nil when the set no longer starts with them (the index is stale).
    package func coveredSegmentCount(of index: Manifest.IndexEntry) -> Int? {
        guard index.segments.count <= segments.count,
              zip(segments, index.segments).allSatisfy({ $0.entry.file == $1 }) else { return nil }
        return index.segments.count
    }
}

/// Reading index files (Spec §10).
enum IndexFiles {
    /// Opens an index file: checks its attributes against the entry, reads and verifies the
    /// centroids and list offsets, and maps the per-row arrays without reading them.
    ///
    /// - Parameter set: the set the manifest lists the index under, checked against the file's
    ///   `set` attribute when given.
    /// - Parameter alwaysVerify: `verify`'s mode: every dataset and block checksum computed now.
    static func load(path: String, name: String, entry: Manifest.IndexEntry, k: Int, set: String? = nil, alwaysVerify: Bool = false) throws -> StoredIndex {
        let file = try SegmentFiles.open(path, expected: .ivfIndex)
        defer { try? file.close() }
        let lists = entry.lists, rows = entry.rows
        func checksum(_ dataset: String) throws -> String {
            guard let value = entry.checksums[dataset] else {
                throw StoreError(.corrupt, "manifest lists no checksum for index dataset \(dataset)", path: path)
            }
            return value
        }
        func verify(_ bytes: UnsafeRawBufferPointer, _ dataset: String) throws {
            let expected = try checksum(dataset)
            let key = path + ":/" + dataset + "@" + expected
            guard alwaysVerify || !VerifiedDatasets.contains(key) else { return }
            let computed = CRC32C.formatted(CRC32C.checksum(bytes))
            guard computed == expected else { throw SegmentFiles.mismatch(path, dataset, expected: expected, found: computed) }
            VerifiedDatasets.insert(key)
        }
        return try withContext(.corrupt, "cannot read index", path: path) { () throws -> StoredIndex in
            let root = try file.root()
            let fileName = entry.file.split(separator: "/").last.map(String.init) ?? ""
            let indexID = fileName.hasSuffix(".h5") ? String(fileName.dropLast(3)) : fileName
            try EntryAttributes.require(root, strings: [("index-id", indexID), ("metric", entry.metric), ("kind", entry.kind)] + (set.map { [("set", $0)] } ?? []),
                                        integers: [("k", k), ("lists", lists), ("rows", rows), ("built-on-version", entry.builtOnVersion)], path: path)
            func read<E: HDF5Element>(_ root: borrowing Group, _ dataset: String, shape: [Int], encoding: EncodingType, as type: E.Type) throws -> [E] {
                let handle = try root.openDataset(dataset)
                try FileHeader.checkDataset(handle, expected: encoding, path: path)
                guard try handle.shape() == shape else {
                    throw StoreError(.corrupt, "index dataset \(dataset) has shape \(try handle.shape()), expected \(shape)", path: path)
                }
                try DataFileCheck.fits(handle, in: path, location: path + ":/" + dataset)
                let values: [E] = try handle.readAll()
                try handle.close()
                try values.withUnsafeBytes { try verify($0, dataset) }
                return values
            }
            /// A per-index-row dataset mapped (or read, where §2.4 does not allow mapping),
            /// checked against its entry and block checksums, its data not yet verified.
            func open(_ root: borrowing Group, _ dataset: String, encoding: EncodingType, type: StorageType, width: Int) throws -> CheckedBytes {
                let location = path + ":/" + dataset
                let expected = try checksum(dataset)
                let handle = try root.openDataset(dataset)
                try FileHeader.checkDataset(handle, expected: encoding, path: path)
                let shape = width == 1 && type != .int8 ? [rows] : [rows, width]
                guard try handle.shape() == shape else {
                    throw StoreError(.corrupt, "index dataset \(dataset) has shape \(try handle.shape()), expected \(shape)", path: path)
                }
                let attribute = try handle.stringAttribute("checksum")
                guard attribute == expected else {
                    throw StoreError(.corrupt, "\(dataset) checksum attribute is \(attribute ?? "(none)"), the manifest says \(expected)", path: location)
                }
                let rowBytes = width * type.byteSize
                let storage: RowStorage
                switch rows == 0 ? .failure(MappingRefusalText.empty) : try handle.mappableExtent(as: type).mapError({ MappingRefusalText($0.description) }) {
                case .success(let extent):
                    storage = RowStorage(mapping: try MappedFile(path: path, offset: extent.offset, length: extent.length), access: .random)
                case .failure(let refusal):
                    try DataFileCheck.fits(handle, in: path, location: location)
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, rows * rowBytes), alignment: 64)
                    if rows > 0 {
                        do { try handle.readBytes(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(rows * rowBytes)]), as: type) } catch { buffer.deallocate(); throw error }
                    }
                    storage = RowStorage(owned: buffer, reason: refusal.text)
                }
                try handle.close()
                let blocks = try BlockChecksums.read(for: dataset, elements: rows, in: root, path: path)
                let checked = CheckedBytes(path: path, dataset: dataset, storage: storage, rowBytes: rowBytes, rows: rows,
                                           blocks: blocks, wholeChecksum: expected)
                if alwaysVerify {
                    try verify(UnsafeRawBufferPointer(rebasing: storage.bytes[0..<(rows * rowBytes)]), dataset)
                    try checked.ensureAll()
                }
                return checked
            }
            let centroids = try read(root, "centroids", shape: [lists, k], encoding: .ivfCentroids, as: Float.self)
            let offsets = try read(root, "list-offsets", shape: [lists + 1], encoding: .ivfListOffsets, as: Int64.self).map(Int.init)
            guard offsets.first == 0, offsets.last == rows, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw StoreError(.corrupt, "index list offsets must rise from 0 to \(rows)", path: path)
            }
            let codes = try open(root, "codes", encoding: .ivfCodes, type: .int8, width: k)
            let scales = try open(root, "code-scales", encoding: .ivfCodeScales, type: .float32, width: 1)
            let positions = try open(root, "positions", encoding: .ivfRowPositions, type: .int64, width: 1)
            try root.close()
            return StoredIndex(name: name, entry: entry, k: k, centroids: centroids, listOffsets: offsets,
                               codes: codes, scales: scales, positions: positions)
        }
    }
}
