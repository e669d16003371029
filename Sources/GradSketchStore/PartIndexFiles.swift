import GradSketchHDF5
import GradSketchInterchange

/// The index kind whose rows live in parts (Spec §10.3).
public enum PartIndexKind {
    public static let name = "ivf-rq4"
}

/// What an `ivf-rq4` quantizer file holds (Spec §10.3): the coarse quantizer's arrays and the
/// 4-bit coder's parameters.
public struct PartQuantizerArrays: Sendable {
    /// `[lists, k]` float32.
    public var centroids: [Float]
    /// `[groups, k]` float32: upper-level centroids; group g owns lists `groupOffsets[g] ..< groupOffsets[g + 1]`.
    public var groupCentroids: [Float]
    /// `[groups + 1]`, rising from 0 to `lists`.
    public var groupOffsets: [Int64]
    /// Seed of the orthogonal rotation applied before coding, nil for none.
    public var rotationSeed: UInt64?

    public init(centroids: [Float], groupCentroids: [Float], groupOffsets: [Int64], rotationSeed: UInt64?) {
        self.centroids = centroids
        self.groupCentroids = groupCentroids
        self.groupOffsets = groupOffsets
        self.rotationSeed = rotationSeed
    }
}

/// The arrays of one part (Spec §10.3), grouped by list: list `l` holds part rows
/// `listOffsets[l] ..< listOffsets[l + 1]`.
public struct IndexPartArrays: Sendable {
    /// `[lists + 1]`, non-decreasing, from 0 to the part's rows.
    public var listOffsets: [Int64]
    /// `[rows, ⌈k/2⌉]` uint8: two 4-bit codes per byte, element 2j in the low nibble of byte j.
    public var codes: [UInt8]
    /// `[rows]` float32: residual ≈ low + step · code.
    public var lows: [Float]
    public var steps: [Float]
    /// `[rows]` int64: physical positions over the whole set's segments (Spec §10.2).
    public var positions: [Int64]

    public init(listOffsets: [Int64], codes: [UInt8], lows: [Float], steps: [Float], positions: [Int64]) {
        self.listOffsets = listOffsets
        self.codes = codes
        self.lows = lows
        self.steps = steps
        self.positions = positions
    }
}

/// A published file not yet committed: what its manifest entry needs.
public struct PublishedIndexFile: Sendable {
    public let file: String
    public let size: Int
    public let fileChecksum: String
    public let checksums: [String: String]

    public init(file: String, size: Int, fileChecksum: String, checksums: [String: String]) {
        self.file = file
        self.size = size
        self.fileChecksum = fileChecksum
        self.checksums = checksums
    }
}

/// A stored `ivf-rq4` quantizer, read and verified whole on open (it is small).
public final class StoredPartQuantizer: Sendable {
    public let k: Int
    public let centroids: [Float]
    public let groupCentroids: [Float]
    public let groupOffsets: [Int]
    public let rotationSeed: UInt64?
    public var lists: Int { groupOffsets.last ?? 0 }

    init(k: Int, centroids: [Float], groupCentroids: [Float], groupOffsets: [Int], rotationSeed: UInt64?) {
        self.k = k
        self.centroids = centroids
        self.groupCentroids = groupCentroids
        self.groupOffsets = groupOffsets
        self.rotationSeed = rotationSeed
    }
}

/// A stored part: list offsets read and verified on open; codes, lows, steps and positions
/// mapped and verified list by list as searches touch them.
public final class StoredIndexPart: Sendable {
    package let entry: Manifest.IndexPartEntry
    public let path: String
    public let listOffsets: [Int]
    public let bytesPerRow: Int
    let codeBytes: CheckedBytes
    let lowBytes: CheckedBytes
    let stepBytes: CheckedBytes
    let positionBytes: CheckedBytes

    init(entry: Manifest.IndexPartEntry, path: String, listOffsets: [Int], bytesPerRow: Int,
         codes: CheckedBytes, lows: CheckedBytes, steps: CheckedBytes, positions: CheckedBytes) {
        self.entry = entry
        self.path = path
        self.listOffsets = listOffsets
        self.bytesPerRow = bytesPerRow
        self.codeBytes = codes
        self.lowBytes = lows
        self.stepBytes = steps
        self.positionBytes = positions
    }

    public var rows: Int { entry.rows }

    /// Opens part `entry` of an index of `lists` lists over a set of width `k` in the store at
    /// `storePath` (for a builder tuning parts it has just written).
    package static func open(storePath: String, entry: Manifest.IndexPartEntry, k: Int, lists: Int, set: String?) throws -> StoredIndexPart {
        try PartIndexFiles.loadPart(path: storePath + "/" + entry.file, entry: entry, k: k, lists: lists, set: set)
    }

    /// Verifies (each block once per object) the part rows `rows` of every per-row array.
    public func verify(rows: Range<Int>) throws {
        try codeBytes.ensure(rows: rows)
        try lowBytes.ensure(rows: rows)
        try stepBytes.ensure(rows: rows)
        try positionBytes.ensure(rows: rows)
    }

    public func verify(list: Int) throws { try verify(rows: listOffsets[list]..<listOffsets[list + 1]) }

    /// The per-row arrays, valid while this object exists. A caller MUST verify the rows it
    /// reads first (Spec §4).
    public var unverifiedArrays: (codes: UnsafeBufferPointer<UInt8>, lows: UnsafeBufferPointer<Float>,
                                  steps: UnsafeBufferPointer<Float>, positions: UnsafeBufferPointer<Int64>) {
        (codeBytes.bytes.assumingMemoryBound(to: UInt8.self), lowBytes.bytes.assumingMemoryBound(to: Float.self),
         stepBytes.bytes.assumingMemoryBound(to: Float.self), positionBytes.bytes.assumingMemoryBound(to: Int64.self))
    }

    /// Every array verified, as copies (for merging and checks).
    public func verifiedArrays() throws -> IndexPartArrays {
        try verify(rows: 0..<rows)
        let (codes, lows, steps, positions) = unverifiedArrays
        return IndexPartArrays(listOffsets: listOffsets.map(Int64.init), codes: Array(codes.prefix(rows * bytesPerRow)),
                               lows: Array(lows.prefix(rows)), steps: Array(steps.prefix(rows)), positions: Array(positions.prefix(rows)))
    }

    public var isMapped: Bool { codeBytes.storage.notMappedBecause == nil }
}

extension Store {
    /// Writes and publishes an `ivf-rq4` quantizer file for `set` (not committed: the caller
    /// holds a write claim until ``commitPartIndex(_:over:metric:quantizer:parts:lists:parameters:)``).
    public func writePartQuantizer(for set: SketchSet, metric: String, arrays: PartQuantizerArrays) throws -> PublishedIndexFile {
        let k = set.k
        let lists = arrays.centroids.count / max(1, k), groups = arrays.groupOffsets.count - 1
        guard lists >= 1, arrays.centroids.count == lists * k, groups >= 1, arrays.groupCentroids.count == groups * k,
              arrays.groupOffsets.first == 0, arrays.groupOffsets.last == Int64(lists),
              zip(arrays.groupOffsets, arrays.groupOffsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
            throw StoreError(.invalidInput, "quantizer arrays are inconsistent: \(arrays.centroids.count) centroid values for width \(k), \(arrays.groupCentroids.count) group centroid values and group offsets \(arrays.groupOffsets.prefix(4))… (expected from 0 to the lists)")
        }
        return try writeIndexFile(encoding: .ivfRQ4Quantizer, attributes: [
            ("set", .string(set.name)), ("metric", .string(metric)), ("kind", .string(PartIndexKind.name)),
            ("k", .integer(k)), ("lists", .integer(lists)), ("groups", .integer(groups)),
            ("rotation-seed", .string(arrays.rotationSeed.map { String($0) } ?? "none")),
        ]) { root, put in
            try put(root, .float32(arrays.centroids), "centroids", [lists, k], .ivfCentroids, nil)
            try put(root, .float32(arrays.groupCentroids), "group-centroids", [groups, k], .ivfGroupCentroids, nil)
            try put(root, .int64(arrays.groupOffsets), "group-offsets", [groups + 1], .ivfGroupOffsets, nil)
        }
    }

    /// Writes and publishes one part of an `ivf-rq4` index of `set` covering `segments` (not
    /// committed); returns its manifest entry.
    package func writeIndexPart(for set: SketchSet, segments: [String], lists: Int, arrays: IndexPartArrays) throws -> Manifest.IndexPartEntry {
        let k = set.k, bytesPerRow = (k + 1) / 2
        let rows = arrays.positions.count
        guard arrays.listOffsets.count == lists + 1, arrays.listOffsets.first == 0, arrays.listOffsets.last == Int64(rows),
              zip(arrays.listOffsets, arrays.listOffsets.dropFirst()).allSatisfy({ $0 <= $1 }),
              arrays.codes.count == rows * bytesPerRow, arrays.lows.count == rows, arrays.steps.count == rows else {
            throw StoreError(.invalidInput, "part arrays are inconsistent: \(lists) lists over \(rows) rows need \(lists + 1) offsets from 0 to \(rows) (found \(arrays.listOffsets.count)), \(rows * bytesPerRow) code bytes (found \(arrays.codes.count)), \(rows) lows and steps (found \(arrays.lows.count), \(arrays.steps.count))")
        }
        let blockRows = BlockChecksums.rowsPerBlock(rowBytes: bytesPerRow)
        let published = try writeIndexFile(encoding: .ivfRQ4Part, attributes: [
            ("set", .string(set.name)), ("k", .integer(k)), ("lists", .integer(lists)), ("rows", .integer(rows)),
            ("built-on-version", .integer(set.version)),
        ]) { root, put in
            try put(root, .int64(arrays.listOffsets), "list-offsets", [lists + 1], .ivfListOffsets, nil)
            // One block size for the four per-row arrays, so a probed list is verified with the
            // same block numbers in each (as §10.2 does for ivf-int8).
            try put(root, .uint8(arrays.codes), "codes", [rows, bytesPerRow], .ivfRQ4Codes, (bytesPerRow, blockRows))
            try put(root, .float32(arrays.lows), "lows", [rows], .ivfRQ4Lows, (4, blockRows))
            try put(root, .float32(arrays.steps), "steps", [rows], .ivfRQ4Steps, (4, blockRows))
            try put(root, .int64(arrays.positions), "positions", [rows], .ivfRowPositions, (8, blockRows))
        }
        return Manifest.IndexPartEntry(file: published.file, size: published.size, fileChecksum: published.fileChecksum,
                                       checksums: published.checksums, rows: rows, segments: segments, builtOnVersion: set.version)
    }

    /// Commits `ivf-rq4` index `name` of `set` (the version `set` was read at): the quantizer
    /// file and the parts, whose segments concatenated must be the set's first segments.
    ///
    /// - Throws: `.conflict` if a newer version no longer starts with those segments.
    @discardableResult
    package func commitPartIndex(_ name: String, over set: SketchSet, metric: String, quantizer: PublishedIndexFile,
                                parts: [Manifest.IndexPartEntry], lists: Int, parameters: [String: JSONValue]) throws -> Int {
        try Rules.checkName(name, what: "index")
        let segments = parts.flatMap(\.segments)
        guard zip(set.entry.segments, segments).allSatisfy({ $0.file == $1 }), segments.count <= set.entry.segments.count else {
            throw StoreError(.invalidInput, "the parts of index \(name) must cover the first segments of set \(set.name) in order")
        }
        let rows = parts.reduce(0) { $0 + $1.rows }
        let entry = Manifest.IndexEntry(file: quantizer.file, size: quantizer.size, fileChecksum: quantizer.fileChecksum,
                                        checksums: quantizer.checksums, kind: PartIndexKind.name, metric: metric, lists: lists, rows: rows,
                                        builtOnVersion: set.version, segments: segments, parameters: parameters, parts: parts)
        return try commit(changes: [.buildIndex(name: name, set: set.name, entry: entry)],
                          detail: "index \(name) (\(PartIndexKind.name), \(metric), \(lists) lists, \(parts.count) parts, \(rows) rows)").version
    }

    enum IndexAttribute { case string(String), integer(Int) }
    enum IndexValues {
        case float32([Float]), int64([Int64]), uint8([UInt8])
    }
    typealias IndexPut = (borrowing Group, IndexValues, String, [Int], EncodingType, (rowBytes: Int, blockRows: Int)?) throws -> Void

    /// Writes a new file under `indexes/` with the root attributes of §2.1, `attributes` and
    /// an `index-id`, the datasets `body` puts (each checksummed, with block checksums when
    /// asked), and publishes it.
    private func writeIndexFile(encoding: EncodingType, attributes: [(String, IndexAttribute)],
                                body: (borrowing Group, IndexPut) throws -> Void) throws -> PublishedIndexFile {
        let id = randomIdentifier()
        let temporary = try temporaryPath()
        defer { try? FileSystem.remove(temporary) }
        var checksums: [String: String] = [:]
        try withContext(.io, "cannot write index file", path: temporary) {
            let file = try HDF5File.create(path: temporary)
            let root = try file.root()
            try FileHeader.write(on: root, type: encoding)
            try root.setAttribute("index-id", id)
            for (name, value) in attributes {
                switch value {
                case .string(let text): try root.setAttribute(name, text)
                case .integer(let number): try root.setAttribute(name, Int64(number))
                }
            }
            func write<E: HDF5Element>(_ root: borrowing Group, _ values: [E], _ dataset: String, _ shape: [Int], _ type: EncodingType,
                                       _ blocks: (rowBytes: Int, blockRows: Int)?) throws {
                let handle = try root.createDataset(dataset, type: E.storageType, shape: shape, mappable: true)
                try values.withUnsafeBufferPointer { buffer in
                    if !buffer.isEmpty { try handle.write(buffer) }
                    let checksum = CRC32C.formatted(CRC32C.checksum(UnsafeRawBufferPointer(buffer)))
                    try FileHeader.mark(handle, type: type, checksum: checksum)
                    checksums[dataset] = checksum
                }
                try handle.close()
                if let blocks {
                    try BlockChecksums.write(values.withUnsafeBytes { BlockChecksums.numeric($0, rowBytes: blocks.rowBytes, blockRows: blocks.blockRows) },
                                             blockRows: blocks.blockRows, for: dataset, in: root)
                }
            }
            try body(root) { root, values, dataset, shape, type, blocks in
                switch values {
                case .float32(let v): try write(root, v, dataset, shape, type, blocks)
                case .int64(let v): try write(root, v, dataset, shape, type, blocks)
                case .uint8(let v): try write(root, v, dataset, shape, type, blocks)
                }
            }
            try root.close()
            try file.close()
        }
        let relative = "indexes/\(id).h5"
        let whole = try publish(temporary, as: relative)
        return PublishedIndexFile(file: relative, size: whole.size, fileChecksum: whole.checksum, checksums: checksums)
    }
}

extension SketchSet {
    /// The quantizer and parts of `ivf-rq4` index `name` as of this version.
    package func partIndex(_ name: String) throws -> (entry: Manifest.IndexEntry, quantizer: StoredPartQuantizer, parts: [StoredIndexPart]) {
        guard let entry = entry.indexes[name] else {
            let known = entry.indexes.keys.sorted()
            throw StoreError(.notFound, "set \(self.name) has no index \"\(name)\" in version \(version) (indexes: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        guard entry.kind == PartIndexKind.name, let parts = entry.parts else {
            throw StoreError(.invalidInput, "index \(name) is of kind \(entry.kind), not \(PartIndexKind.name)")
        }
        let quantizer = try PartIndexFiles.loadQuantizer(path: storePath + "/" + entry.file, entry: entry, k: k, set: self.name)
        let loaded = try parts.map { try PartIndexFiles.loadPart(path: storePath + "/" + $0.file, entry: $0, k: k, lists: entry.lists, set: self.name) }
        return (entry, quantizer, loaded)
    }
}

/// Reading `ivf-rq4` files (Spec §10.3).
enum PartIndexFiles {
    static func indexID(of file: String) -> String {
        let name = file.split(separator: "/").last.map(String.init) ?? ""
        return name.hasSuffix(".h5") ? String(name.dropLast(3)) : name
    }

    /// Reads a small dataset whole and verifies it against `expected` (once per process
    /// unless `alwaysVerify`).
    static func readSmall<E: HDF5Element>(_ root: borrowing Group, _ dataset: String, shape: [Int], encoding: EncodingType, expected: String?,
                                          path: String, alwaysVerify: Bool, as type: E.Type) throws -> [E] {
        guard let expected else { throw StoreError(.corrupt, "manifest lists no checksum for index dataset \(dataset)", path: path) }
        let handle = try root.openDataset(dataset)
        try FileHeader.checkDataset(handle, expected: encoding, path: path)
        guard try handle.shape() == shape else {
            throw StoreError(.corrupt, "index dataset \(dataset) has shape \(try handle.shape()), expected \(shape)", path: path)
        }
        try DataFileCheck.fits(handle, in: path, location: path + ":/" + dataset)
        let values: [E] = try handle.readAll()
        try handle.close()
        let key = path + ":/" + dataset + "@" + expected
        if alwaysVerify || !VerifiedDatasets.contains(key) {
            let computed = values.withUnsafeBytes { CRC32C.formatted(CRC32C.checksum($0)) }
            guard computed == expected else { throw SegmentFiles.mismatch(path, dataset, expected: expected, found: computed) }
            VerifiedDatasets.insert(key)
        }
        return values
    }

    /// Maps a per-row dataset (reads it where §2.4 does not allow mapping) with its block
    /// checksums; its data is verified where touched (all now when `alwaysVerify`).
    static func mapRows(_ root: borrowing Group, _ dataset: String, encoding: EncodingType, type: StorageType, shape: [Int], rows: Int,
                        expected: String?, path: String, alwaysVerify: Bool) throws -> CheckedBytes {
        let location = path + ":/" + dataset
        guard let expected else { throw StoreError(.corrupt, "manifest lists no checksum for index dataset \(dataset)", path: path) }
        let handle = try root.openDataset(dataset)
        try FileHeader.checkDataset(handle, expected: encoding, path: path)
        guard try handle.shape() == shape else {
            throw StoreError(.corrupt, "index dataset \(dataset) has shape \(try handle.shape()), expected \(shape)", path: path)
        }
        let attribute = try handle.stringAttribute("checksum")
        guard attribute == expected else {
            throw StoreError(.corrupt, "\(dataset) checksum attribute is \(attribute ?? "(none)"), the manifest says \(expected)", path: location)
        }
        let rowBytes = shape.dropFirst().reduce(1, *) * type.byteSize
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
        let checked = CheckedBytes(path: path, dataset: dataset, storage: storage, rowBytes: rowBytes, rows: rows, blocks: blocks, wholeChecksum: expected)
        if alwaysVerify {
            let computed = CRC32C.formatted(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: storage.bytes[0..<(rows * rowBytes)])))
            guard computed == expected else { throw SegmentFiles.mismatch(path, dataset, expected: expected, found: computed) }
            try checked.ensureAll()
        }
        return checked
    }

    static func loadQuantizer(path: String, entry: Manifest.IndexEntry, k: Int, set: String?, alwaysVerify: Bool = false) throws -> StoredPartQuantizer {
        let file = try SegmentFiles.open(path, expected: .ivfRQ4Quantizer)
        defer { try? file.close() }
        return try withContext(.corrupt, "cannot read index quantizer", path: path) { () throws -> StoredPartQuantizer in
            let root = try file.root()
            try EntryAttributes.require(root, strings: [("index-id", indexID(of: entry.file)), ("metric", entry.metric), ("kind", entry.kind)] + (set.map { [("set", $0)] } ?? []),
                                        integers: [("k", k), ("lists", entry.lists)], path: path)
            guard let groups = try root.integerAttribute("groups").map(Int.init), groups >= 1, groups <= entry.lists else {
                throw StoreError(.corrupt, "root attribute groups must be between 1 and the \(entry.lists) lists", path: path)
            }
            let seedText = try root.stringAttribute("rotation-seed") ?? ""
            let seed: UInt64?
            if seedText == "none" { seed = nil } else if let value = UInt64(seedText) { seed = value } else {
                throw StoreError(.corrupt, "root attribute rotation-seed is \"\(seedText)\": expected \"none\" or a decimal 64-bit seed", path: path)
            }
            let centroids = try readSmall(root, "centroids", shape: [entry.lists, k], encoding: .ivfCentroids, expected: entry.checksums["centroids"],
                                          path: path, alwaysVerify: alwaysVerify, as: Float.self)
            let groupCentroids = try readSmall(root, "group-centroids", shape: [groups, k], encoding: .ivfGroupCentroids,
                                               expected: entry.checksums["group-centroids"], path: path, alwaysVerify: alwaysVerify, as: Float.self)
            let offsets = try readSmall(root, "group-offsets", shape: [groups + 1], encoding: .ivfGroupOffsets,
                                        expected: entry.checksums["group-offsets"], path: path, alwaysVerify: alwaysVerify, as: Int64.self).map(Int.init)
            guard offsets.first == 0, offsets.last == entry.lists, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw StoreError(.corrupt, "group offsets must rise from 0 to the \(entry.lists) lists", path: path)
            }
            try root.close()
            return StoredPartQuantizer(k: k, centroids: centroids, groupCentroids: groupCentroids, groupOffsets: offsets, rotationSeed: seed)
        }
    }

    static func loadPart(path: String, entry: Manifest.IndexPartEntry, k: Int, lists: Int, set: String?, alwaysVerify: Bool = false) throws -> StoredIndexPart {
        let file = try SegmentFiles.open(path, expected: .ivfRQ4Part)
        defer { try? file.close() }
        let rows = entry.rows, bytesPerRow = (k + 1) / 2
        return try withContext(.corrupt, "cannot read index part", path: path) { () throws -> StoredIndexPart in
            let root = try file.root()
            try EntryAttributes.require(root, strings: [("index-id", indexID(of: entry.file))] + (set.map { [("set", $0)] } ?? []),
                                        integers: [("k", k), ("lists", lists), ("rows", rows), ("built-on-version", entry.builtOnVersion)], path: path)
            let offsets = try readSmall(root, "list-offsets", shape: [lists + 1], encoding: .ivfListOffsets, expected: entry.checksums["list-offsets"],
                                        path: path, alwaysVerify: alwaysVerify, as: Int64.self).map(Int.init)
            guard offsets.first == 0, offsets.last == rows, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw StoreError(.corrupt, "part list offsets must rise from 0 to \(rows)", path: path)
            }
            func map(_ root: borrowing Group, _ dataset: String, _ encoding: EncodingType, _ type: StorageType, _ shape: [Int]) throws -> CheckedBytes {
                try mapRows(root, dataset, encoding: encoding, type: type, shape: shape, rows: rows, expected: entry.checksums[dataset],
                            path: path, alwaysVerify: alwaysVerify)
            }
            let codes = try map(root, "codes", .ivfRQ4Codes, .uint8, [rows, bytesPerRow])
            let lows = try map(root, "lows", .ivfRQ4Lows, .float32, [rows])
            let steps = try map(root, "steps", .ivfRQ4Steps, .float32, [rows])
            let positions = try map(root, "positions", .ivfRowPositions, .int64, [rows])
            try root.close()
            return StoredIndexPart(entry: entry, path: path, listOffsets: offsets, bytesPerRow: bytesPerRow,
                                   codes: codes, lows: lows, steps: steps, positions: positions)
        }
    }
}
