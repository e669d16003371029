import Foundation
import GradSketchInterchange
import GradSketchHDF5
import Synchronization

/// Datasets whose checksum this process has verified (Spec §4). Published files never change,
/// so one verification per process per dataset is enough.
enum VerifiedDatasets {
    private static let verified = Mutex<Set<String>>([])

    static func contains(_ key: String) -> Bool { verified.withLock { $0.contains(key) } }
    static func insert(_ key: String) { _ = verified.withLock { $0.insert(key) } }
}

/// Row storage of one segment: the file mapped read-only where Spec §2.4 allows, or the rows
/// read with `H5Dread` into memory this object owns.
final class RowStorage: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    /// Why the rows were not mapped, or nil when they are.
    let notMappedBecause: String?
    private let mapping: MappedFile?
    private let owned: UnsafeMutableRawBufferPointer?

    /// - Parameter access: how the bytes will be read first; `.sequential` for data checksummed
    ///   and read whole (tensors), `.random` for data read where queries land (rows, codes).
    init(mapping: MappedFile, access: MappedFile.Access = .sequential) {
        self.mapping = mapping
        self.owned = nil
        self.bytes = mapping.bytes
        self.notMappedBecause = nil
        mapping.advise(access)
    }

    init(owned: UnsafeMutableRawBufferPointer, reason: String) {
        self.mapping = nil
        self.owned = owned
        self.bytes = UnsafeRawBufferPointer(owned)
        self.notMappedBecause = reason
    }

    /// Advice for a coming read of `range` (bytes; all when nil); nothing for owned memory.
    func advise(_ access: MappedFile.Access, range: Range<Int>? = nil) {
        mapping?.advise(access, range: range)
    }

    deinit { owned?.deallocate() }
}

/// One segment of a sketch set as of one version: its rows (mapped on first use, each block
/// verified on first touch), its strings (read by block on demand) and which rows that version
/// has deleted.
public final class SegmentRows: Sendable {
    package let entry: Manifest.SegmentEntry
    public let path: String
    public let k: Int
    public let dtype: SketchDType
    /// Whether the set allows NaN and ±Inf rows; when not, rows are checked as verified.
    let allowNonfinite: Bool
    private let storePath: String
    private let checked = Mutex<CheckedBytes?>(nil)
    private let deleted = Mutex<[Int]?>(nil)
    private let strings = Mutex<[String: SegmentStrings]>([:])

    init(entry: Manifest.SegmentEntry, storePath: String, k: Int, dtype: SketchDType, allowNonfinite: Bool) {
        self.entry = entry
        self.allowNonfinite = allowNonfinite
        self.storePath = storePath
        self.path = storePath + "/" + entry.file
        self.k = k
        self.dtype = dtype
    }

    /// The rows, mapped (or read) but verified only where ``CheckedBytes/ensure(rows:)`` says.
    func checkedRows() throws -> CheckedBytes {
        if let opened = checked.withLock({ $0 }) { return opened }
        let opened = try SegmentFiles.openRows(path: path, entry: entry, k: k, dtype: dtype, allowNonfinite: allowNonfinite)
        return checked.withLock { current in
            if let current { return current }
            current = opened
            return opened
        }
    }

    /// All rows of the file `[entry.rows, k]`, deleted ones included, every block verified;
    /// see ``deletedRows()``.
    func rowStorage() throws -> RowStorage {
        let rows = try checkedRows()
        try rows.ensureAll()
        return rows.storage
    }

    /// The bytes of local row `row` (deleted or not), its block verified first; valid while
    /// this object lives.
    public func verifiedRow(_ row: Int) throws -> UnsafeRawPointer {
        let rows = try checkedRows()
        try rows.ensure(rows: row..<(row + 1))
        return rows.bytes.baseAddress! + row * rows.rowBytes
    }

    /// Local indices of rows this version removed, ascending (read and verified once).
    public func deletedRows() throws -> [Int] {
        guard let deletions = entry.deletions else { return [] }
        if let cached = deleted.withLock({ $0 }) { return cached }
        let rows = try SegmentFiles.readDeletions(storePath: storePath, entry: deletions, segment: entry)
        deleted.withLock { $0 = rows }
        return rows
    }

    /// Rows this version removed, from the manifest alone.
    public var deletedCount: Int { entry.deletions?.count ?? 0 }

    /// The `dataset` strings (ids, labels or metadata) of local rows `rows`, in that order,
    /// reading and verifying only the blocks that hold them; nil when the segment has no such
    /// dataset.
    func strings(_ dataset: String, at rows: [Int]) throws -> [String]? {
        guard let expected = entry.checksums[dataset] else { return nil }
        for row in rows where row < 0 || row >= entry.rows {
            throw StoreError(.invalidInput, "row \(row) is out of range: the segment has \(entry.rows) rows", path: path)
        }
        let source: SegmentStrings
        if let cached = strings.withLock({ $0[dataset] }) {
            source = cached
        } else {
            let opened = try SegmentStrings(path: path, dataset: dataset, expected: expected, rows: entry.rows)
            source = strings.withLock { cache in
                if let current = cache[dataset] { return current }
                cache[dataset] = opened
                return opened
            }
        }
        return try source.values(at: rows)
    }

    /// Whether the rows are memory-mapped (after the first access), and why not otherwise.
    public func mappingStatus() throws -> (mapped: Bool, reason: String?) {
        let storage = try checkedRows().storage
        return (storage.notMappedBecause == nil, storage.notMappedBecause)
    }
}

/// One string dataset of a segment, read by block: each block read with one hyperslab read
/// and verified against its block checksum before any of its strings is returned, then kept.
/// Files without block checksums (1.0, 1.1) are read and verified whole on first use.
/// The file stays open, so a lookup costs one hyperslab read, not a file open.
final class SegmentStrings: @unchecked Sendable {
    let path: String
    let dataset: String
    let rows: Int
    private let blocks: (blockRows: Int, crcs: [UInt32])?
    private let expected: String
    private let loaded = Mutex<[Int: [String]]>([:])
    /// The open file; reads through it are one at a time.
    private let file: HDF5File
    private let reading = NSLock()

    init(path: String, dataset: String, expected: String, rows: Int) throws {
        self.path = path
        self.dataset = dataset
        self.rows = rows
        self.expected = expected
        let file = try SegmentFiles.open(path, expected: .sketchSegment)
        self.file = file
        let location = path + ":/" + dataset
        blocks = try withContext(.corrupt, "cannot read strings", path: location) { () throws -> (blockRows: Int, crcs: [UInt32])? in
            let root = try file.root()
            let handle = try root.openDataset(dataset)
            try FileHeader.checkDataset(handle, expected: SegmentFiles.stringEncoding(dataset), path: path)
            guard try handle.shape() == [rows] else {
                throw StoreError(.corrupt, "\(dataset) has shape \(try handle.shape()), expected [\(rows)]", path: location)
            }
            let attribute = try handle.stringAttribute("checksum")
            guard attribute == expected else {
                throw StoreError(.corrupt, "\(dataset) checksum attribute is \(attribute ?? "(none)"), the manifest says \(expected)", path: location)
            }
            try handle.close()
            let blocks = try BlockChecksums.read(for: dataset, elements: rows, in: root, path: path)
            try root.close()
            return blocks
        }
    }

    func values(at wanted: [Int]) throws -> [String] {
        guard let blocks else {
            // Whole-dataset verification (Spec §4 for files without block checksums).
            let all = try cachedBlock(0) { try SegmentFiles.readStrings(path: path, dataset: dataset, expected: expected, rows: rows) }
            return wanted.map { all[$0] }
        }
        var result: [String] = []
        result.reserveCapacity(wanted.count)
        for row in wanted {
            let block = row / blocks.blockRows
            let values = try cachedBlock(block) { try readBlock(block, blocks) }
            result.append(values[row - block * blocks.blockRows])
        }
        return result
    }

    private func cachedBlock(_ block: Int, _ read: () throws -> [String]) throws -> [String] {
        if let cached = loaded.withLock({ $0[block] }) { return cached }
        let values = try read()
        loaded.withLock { $0[block] = values }
        return values
    }

    private func readBlock(_ block: Int, _ blocks: (blockRows: Int, crcs: [UInt32])) throws -> [String] {
        let range = (block * blocks.blockRows)..<min(rows, (block + 1) * blocks.blockRows)
        let location = path + ":/" + dataset
        reading.lock()
        defer { reading.unlock() }
        let values = try withContext(.corrupt, "cannot read strings", path: location) { () throws -> [String] in
            let root = try file.root()
            let handle = try root.openDataset(dataset)
            try DataFileCheck.fits(handle, in: path, location: location)
            let values = try handle.readStrings(rows: range)
            try handle.close()
            try root.close()
            return values
        }
        let computed = BlockChecksums.strings(values, blockRows: max(1, values.count)).first ?? CRC32C().value
        guard values.count == range.count, computed == blocks.crcs[block] else {
            throw StoreError(.corrupt, "block checksum mismatch in dataset \(dataset), block \(block) (rows \(range.lowerBound)..<\(range.upperBound)): expected \(CRC32C.formatted(blocks.crcs[block])), computed \(CRC32C.formatted(computed))", path: location)
        }
        return values
    }
}

/// A block of stored rows handed to a scan: one segment's rows, zero-copy when mapped.
public struct RowBlock: @unchecked Sendable {
    /// `[rowCount, k]` elements of `dtype`, row-major, deleted rows included.
    public let bytes: UnsafeRawBufferPointer
    public let dtype: SketchDType
    public let k: Int
    public let rowCount: Int
    /// Local indices (ascending) of rows in `bytes` that are not live in this version.
    public let deleted: [Int]
    /// Position in the set (live numbering) of this block's first live row.
    public let firstLiveIndex: Int
    public let isMapped: Bool

    /// The bytes of local row `row`.
    public func row(_ row: Int) -> UnsafeRawBufferPointer {
        let width = k * dtype.byteWidth
        return UnsafeRawBufferPointer(rebasing: bytes[(row * width)..<((row + 1) * width)])
    }

    /// Local indices of live rows, ascending.
    public var liveRows: [Int] {
        if deleted.isEmpty { return Array(0..<rowCount) }
        var result: [Int] = []
        result.reserveCapacity(rowCount - deleted.count)
        var next = 0
        for row in 0..<rowCount {
            if next < deleted.count && deleted[next] == row { next += 1; continue }
            result.append(row)
        }
        return result
    }
}

extension RowBlock {
    /// Copies this block's live rows, converted, into `target` starting at row `slot`, one
    /// conversion per run of consecutive live rows; returns the next free slot.
    func copyLiveRows(as output: SketchDType, into target: UnsafeMutableRawBufferPointer, at slot: Int) throws -> Int {
        let inputWidth = k * dtype.byteWidth, outputWidth = k * output.byteWidth
        var slot = slot
        var start = 0
        for end in deleted + [rowCount] {
            if end > start {
                let source = UnsafeRawBufferPointer(rebasing: bytes[(start * inputWidth)..<(end * inputWidth)])
                let destination = UnsafeMutableRawBufferPointer(rebasing: target[(slot * outputWidth)..<((slot + end - start) * outputWidth)])
                _ = try ElementConversion.convert(source, from: dtype.elementType, to: output.elementType, into: destination)
                slot += end - start
            }
            start = end + 1
        }
        return slot
    }
}

/// Finds the block and local row of a live position, for reads of chosen rows.
struct RowLocator {
    let blocks: [RowBlock]
    /// Live position of each block's first live row, ascending.
    let starts: [Int]
    let rowCount: Int
    let k: Int

    init(_ set: SketchSet) throws {
        var blocks: [RowBlock] = []
        try set.forEachBlock { blocks.append($0) }
        self.blocks = blocks
        starts = blocks.map(\.firstLiveIndex)
        rowCount = set.rowCount
        k = set.k
    }

    /// (block index, local row) of live position `position`.
    func locate(_ position: Int) throws -> (Int, Int) {
        guard position >= 0 && position < rowCount else {
            throw StoreError(.invalidInput, "row position \(position) is out of range: the set has \(rowCount) rows")
        }
        // The last block starting at or before `position` that has live rows left there.
        var low = 0, high = starts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if starts[middle] <= position { low = middle } else { high = middle - 1 }
        }
        var index = low
        while position - starts[index] >= blocks[index].rowCount - blocks[index].deleted.count { index += 1 }
        // Local row: skip the deleted rows before it (deleted is ascending).
        var local = position - starts[index]
        for removed in blocks[index].deleted {
            if removed <= local { local += 1 } else { break }
        }
        return (index, local)
    }

    func copy(_ positions: [Int], as dtype: SketchDType, into target: UnsafeMutableRawBufferPointer) throws {
        let width = k * dtype.byteWidth
        for (slot, position) in positions.enumerated() {
            let (index, local) = try locate(position)
            let destination = UnsafeMutableRawBufferPointer(rebasing: target[(slot * width)..<((slot + 1) * width)])
            let block = blocks[index]
            _ = try ElementConversion.convert(block.row(local), from: block.dtype.elementType, to: dtype.elementType, into: destination)
        }
    }
}

/// A sketch set as of one version (Spec §5): its rows, ids, labels, metadata and columns.
///
/// Opening is cheap: files are opened, verified and mapped on first use of each.
public final class SketchSet: Sendable {
    public let name: String
    public let version: Int
    package let entry: Manifest.SketchSetEntry
    public let segments: [SegmentRows]
    let storePath: String
    private let cachedIDs = Mutex<[String]?>(nil)

    init(store: Store, name: String, version: Int, entry: Manifest.SketchSetEntry) throws {
        guard let dtype = SketchDType(rawValue: entry.dtype) else {
            throw StoreError(.unsupportedVersion, "set \(name) has dtype \"\(entry.dtype)\": expected float16 or float32", path: store.path)
        }
        // The manifest's row counts size every buffer readers allocate, so they are checked
        // against the files now: each segment a regular file large enough for its rows. (The
        // whole-file size and checksum are `verify`'s to check; readers check datasets.)
        let rowBytes = entry.k * dtype.byteWidth
        for segment in entry.segments {
            let path = store.path + "/" + segment.file
            let actual = try DataFileCheck.dataFile(path)
            guard segment.rows * rowBytes <= actual else {
                throw StoreError(.corrupt, "segment declares \(segment.rows) rows of \(rowBytes) bytes, more than its \(actual)-byte file holds", path: path)
            }
        }
        self.name = name
        self.version = version
        self.entry = entry
        self.storePath = store.path
        self.segments = entry.segments.map {
            SegmentRows(entry: $0, storePath: store.path, k: entry.k, dtype: dtype, allowNonfinite: entry.allowNonfinite)
        }
    }

    public var k: Int { entry.k }
    public var dtype: SketchDType { SketchDType(rawValue: entry.dtype) ?? .float32 }
    /// Live rows in this version.
    public var rowCount: Int { entry.rowCount }
    public var attributes: [String: JSONValue] { entry.attributes }
    public var columnNames: [String] { entry.columnNames }

    /// Calls `body` with each segment's rows in set order, verified, zero-copy when mapped.
    public func forEachBlock(_ body: (RowBlock) throws -> Void) throws {
        try forEachBlock(segments: 0..<segments.count, body)
    }

    /// Calls `body` with the rows of segments `range` (indices into ``segments``) in set order,
    /// verified, zero-copy when mapped; segments outside `range` are not read (their live
    /// counts come from the manifest).
    public func forEachBlock(segments range: Range<Int>, _ body: (RowBlock) throws -> Void) throws {
        var firstLive = segments[..<range.lowerBound].reduce(0) { $0 + $1.entry.rows - $1.deletedCount }
        for segment in segments[range] {
            let storage = try segment.rowStorage()
            let deleted = try segment.deletedRows()
            try body(RowBlock(bytes: storage.bytes, dtype: dtype, k: k, rowCount: segment.entry.rows,
                              deleted: deleted, firstLiveIndex: firstLive, isMapped: storage.notMappedBecause == nil))
            firstLive += segment.entry.rows - deleted.count
        }
    }

    /// Calls `body` with consecutive chunks of at most `rows` live rows widened to float32
    /// (`[count, k]`, row-major) and each row's physical position: its index among all rows of
    /// the set's segments, deleted ones included (Spec §10.2).
    public func forEachLiveChunk(rows chunk: Int = 4096, _ body: (UnsafeBufferPointer<Float>, [Int]) throws -> Void) throws {
        try forEachLiveChunk(segments: 0..<segments.count, rows: chunk, body)
    }

    /// ``forEachLiveChunk(rows:_:)`` over segments `range` only; positions stay physical
    /// positions in the whole set.
    public func forEachLiveChunk(segments range: Range<Int>, rows chunk: Int = 4096,
                                 _ body: (UnsafeBufferPointer<Float>, [Int]) throws -> Void) throws {
        var buffer = [Float](repeating: 0, count: chunk * k)
        var physicalStart = segments[..<range.lowerBound].reduce(0) { $0 + $1.entry.rows }
        try forEachBlock(segments: range) { block in
            let live = block.liveRows
            var start = 0
            while start < live.count {
                let n = min(chunk, live.count - start)
                try buffer.withUnsafeMutableBytes { target in
                    for i in 0..<n {
                        let destination = UnsafeMutableRawBufferPointer(rebasing: target[(i * k * 4)..<((i + 1) * k * 4)])
                        _ = try ElementConversion.convert(block.row(live[start + i]), from: block.dtype.elementType, to: .float32, into: destination)
                    }
                }
                let physical = live[start..<(start + n)].map { physicalStart + $0 }
                try buffer.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[0..<(n * k)]), physical) }
                start += n
            }
            physicalStart += block.rowCount
        }
    }

    /// Ids of the live rows, in set order (read and verified once per set object).
    public func ids() throws -> [String] {
        if let cached = cachedIDs.withLock({ $0 }) { return cached }
        let ids = try liveStrings("ids", fallback: nil)
        cachedIDs.withLock { $0 = ids }
        return ids
    }

    /// Labels of the live rows ("" for rows of segments without labels).
    public func labels() throws -> [String] {
        try liveStrings("labels", fallback: "")
    }

    /// Metadata of the live rows ("" for rows of segments without metadata).
    public func metadata() throws -> [String] {
        try liveStrings("metadata", fallback: "")
    }

    /// A float column of the live rows (NaN for rows of segments without it).
    public func column(_ name: String) throws -> [Double] {
        guard entry.columnNames.contains(name) else {
            throw StoreError(.notFound, "set \(self.name) has no column \"\(name)\" (columns: \(entry.columnNames.joined(separator: ", ")))")
        }
        var values: [Double] = []
        values.reserveCapacity(rowCount)
        for segment in segments {
            let deleted = try segment.deletedRows()
            let key = "columns/" + name
            let column: [Double]
            if let checksum = segment.entry.checksums[key] {
                column = try SegmentFiles.readColumn(path: segment.path, dataset: key, expected: checksum, rows: segment.entry.rows)
            } else {
                column = Array(repeating: .nan, count: segment.entry.rows)
            }
            values += SegmentFiles.live(column, deleted: deleted)
        }
        return values
    }

    private func liveStrings(_ dataset: String, fallback: String?) throws -> [String] {
        var values: [String] = []
        values.reserveCapacity(rowCount)
        for segment in segments {
            let deleted = try segment.deletedRows()
            let strings: [String]
            if let checksum = segment.entry.checksums[dataset] {
                strings = try SegmentFiles.readStrings(path: segment.path, dataset: dataset, expected: checksum, rows: segment.entry.rows)
            } else if let fallback {
                strings = Array(repeating: fallback, count: segment.entry.rows)
            } else {
                throw StoreError(.corrupt, "segment has no \(dataset) checksum in the manifest (expected one, found none)", path: segment.path)
            }
            values += SegmentFiles.live(strings, deleted: deleted)
        }
        return values
    }

    /// The address of each live position (Spec §5: the set's rows are its segments' rows in
    /// order minus deleted ones), reading only the deletion lists of the segments they land in.
    public func addresses(ofLive positions: [Int]) throws -> [RowAddress] {
        var starts: [Int] = []  // live position of each segment's first live row
        starts.reserveCapacity(segments.count)
        var live = 0
        for segment in segments {
            starts.append(live)
            live += segment.entry.rows - segment.deletedCount
        }
        return try positions.map { position in
            guard position >= 0 && position < live else {
                throw StoreError(.invalidInput, "row position \(position) is out of range: set \(name) has \(live) rows in version \(version)")
            }
            // The last segment starting at or before `position` that has live rows.
            var low = 0, high = starts.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if starts[middle] <= position { low = middle } else { high = middle - 1 }
            }
            while position - starts[low] >= segments[low].entry.rows - segments[low].deletedCount { low += 1 }
            var local = position - starts[low]
            for removed in try segments[low].deletedRows() {
                if removed <= local { local += 1 } else { break }
            }
            return RowAddress(segment: low, row: local)
        }
    }

    /// Ids of the rows at `addresses`, in that order, reading only the id blocks that hold them.
    public func ids(at addresses: [RowAddress]) throws -> [String] {
        try strings("ids", at: addresses, fallback: nil)
    }

    /// Labels of the rows at `addresses` ("" for rows of segments without labels).
    public func labels(at addresses: [RowAddress]) throws -> [String] {
        try strings("labels", at: addresses, fallback: "")
    }

    /// Metadata of the rows at `addresses` ("" for rows of segments without metadata).
    public func metadata(at addresses: [RowAddress]) throws -> [String] {
        try strings("metadata", at: addresses, fallback: "")
    }

    /// Ids of the rows at live positions `positions`, in that order.
    public func ids(atLive positions: [Int]) throws -> [String] { try ids(at: try addresses(ofLive: positions)) }

    private func strings(_ dataset: String, at addresses: [RowAddress], fallback: String?) throws -> [String] {
        var result = [String](repeating: "", count: addresses.count)
        // One request per segment, so each block is looked up once per call.
        var bySegment: [Int: [Int]] = [:]
        for (slot, address) in addresses.enumerated() {
            guard address.segment >= 0 && address.segment < segments.count else {
                throw StoreError(.invalidInput, "row address \(address) names segment \(address.segment), but set \(name) has \(segments.count) segments in version \(version)")
            }
            bySegment[address.segment, default: []].append(slot)
        }
        for (segment, slots) in bySegment {
            let rows = slots.map { addresses[$0].row }
            if let values = try segments[segment].strings(dataset, at: rows) {
                for (slot, value) in zip(slots, values) { result[slot] = value }
            } else if let fallback {
                for slot in slots { result[slot] = fallback }
            } else {
                throw StoreError(.corrupt, "segment has no \(dataset) checksum in the manifest (expected one, found none)", path: segments[segment].path)
            }
        }
        return result
    }

    /// Copies live rows as float32, in set order (or the rows at `positions`, live
    /// numbering, in that order), into a new array `[count, k]`.
    public func floatRows(at positions: [Int]? = nil) throws -> [Float] {
        var output = [Float](repeating: 0, count: (positions?.count ?? rowCount) * k)
        try output.withUnsafeMutableBytes { target in
            try copyRows(at: positions, as: .float32, into: target)
        }
        return output
    }

    /// Copies live rows (all, or those at `positions` in live numbering) converted to `dtype`
    /// into `target`, which must hold exactly that many rows.
    public func copyRows(at positions: [Int]?, as dtype: SketchDType, into target: UnsafeMutableRawBufferPointer) throws {
        let count = positions?.count ?? rowCount
        precondition(target.count == count * k * dtype.byteWidth, "target must hold exactly the selected rows")
        if let positions {
            // Only the blocks holding the chosen rows are verified (Spec §4.1).
            let width = k * dtype.byteWidth, sourceWidth = k * self.dtype.byteWidth
            for (slot, address) in try addresses(ofLive: positions).enumerated() {
                let row = try segments[address.segment].verifiedRow(address.row)
                let destination = UnsafeMutableRawBufferPointer(rebasing: target[(slot * width)..<((slot + 1) * width)])
                _ = try ElementConversion.convert(UnsafeRawBufferPointer(start: row, count: sourceWidth),
                                                  from: self.dtype.elementType, to: dtype.elementType, into: destination)
            }
            return
        }
        var slot = 0
        try forEachBlock { block in
            slot = try block.copyLiveRows(as: dtype, into: target, at: slot)
        }
    }

    /// Live positions of `ids`, in the order given.
    ///
    /// - Throws: `.notFound` naming the first id the set does not have.
    public func positions(of wanted: [String]) throws -> [Int] {
        let all = try ids()
        var index: [UTF8Key: Int] = [:]  // byte-exact, as ids are compared (Spec §2.5)
        index.reserveCapacity(all.count)
        for (position, id) in all.enumerated() { index[UTF8Key(id)] = position }
        return try wanted.map { id in
            guard let position = index[UTF8Key(id)] else {
                throw StoreError(.notFound, "set \(name) has no row with id \"\(id)\" in version \(version)")
            }
            return position
        }
    }
}

extension Store {
    /// Opens sketch set `name` as of `version` (the latest when nil).
    public func sketchSet(_ name: String, at version: Int? = nil) throws -> SketchSet {
        let manifest = try self.manifest(at: version)
        guard let entry = manifest.sketchSets[name] else {
            let known = manifest.sketchSets.keys.sorted()
            throw StoreError(.notFound, "no sketch set \"\(name)\" in version \(manifest.version) (sets: \(known.isEmpty ? "none" : known.joined(separator: ", ")))", path: path)
        }
        return try SketchSet(store: self, name: name, version: manifest.version, entry: entry)
    }
}

/// Reading the datasets of segment and deletion files, each verified against the checksum
/// the manifest records before anything is returned (Spec §4).
enum SegmentFiles {
    static func open(_ path: String, expected type: EncodingType) throws -> HDF5File {
        try DataFileCheck.dataFile(path)
        let file = try withContext(.corrupt, "cannot open as HDF5 (truncated or corrupted?)", path: path) {
            try HDF5File.open(path: path)
        }
        let root = try withContext(.corrupt, "cannot read the root group", path: path) { try file.root() }
        try FileHeader.check(root, expected: type)
        try root.close()
        return file
    }

    static func mismatch(_ path: String, _ dataset: String, expected: String, found: String) -> StoreError {
        StoreError(.corrupt, "checksum mismatch in dataset \(dataset): expected \(expected), computed \(found)", path: path + ":/" + dataset)
    }

    /// Opens a segment's rows: checks the file against the manifest entry, maps the rows
    /// (read into memory where §2.4 does not allow mapping) and reads the block checksums;
    /// verifies no row data (``CheckedBytes`` does that where it is touched).
    static func openRows(path: String, entry: Manifest.SegmentEntry, k: Int, dtype: SketchDType, allowNonfinite: Bool) throws -> CheckedBytes {
        let location = path + ":/rows"
        guard let expected = entry.checksums["rows"] else {
            throw StoreError(.corrupt, "manifest lists no checksum for the rows dataset", path: location)
        }
        let file = try open(path, expected: .sketchSegment)
        defer { try? file.close() }
        let root = try withContext(.corrupt, "cannot read the segment", path: path) { try file.root() }
        let fileRows = try withContext(.corrupt, "cannot read segment attributes", path: path) { try root.integerAttribute("rows") }
        let fileK = try withContext(.corrupt, "cannot read segment attributes", path: path) { try root.integerAttribute("k") }
        guard fileRows == Int64(entry.rows), fileK == Int64(k) else {
            throw StoreError(.corrupt, "segment shape disagrees with the manifest: expected [\(entry.rows), \(k)], found [\(fileRows.map(String.init) ?? "?"), \(fileK.map(String.init) ?? "?")]", path: path)
        }
        let dataset = try withContext(.corrupt, "cannot open the rows dataset", path: location) { try root.openDataset("rows") }
        try FileHeader.checkDataset(dataset, expected: .denseRows, path: path)
        let shape = try withContext(.corrupt, "cannot read the rows shape", path: location) { try dataset.shape() }
        guard shape == [entry.rows, k] else {
            throw StoreError(.corrupt, "rows dataset has shape \(shape), expected [\(entry.rows), \(k)]", path: location)
        }
        let attribute = try withContext(.corrupt, "cannot read the rows checksum", path: location) { try dataset.stringAttribute("checksum") }
        guard attribute == expected else {
            throw StoreError(.corrupt, "rows checksum attribute is \(attribute ?? "(none)"), the manifest says \(expected)", path: location)
        }
        let extent = try withContext(.corrupt, "cannot inspect the rows layout", path: location) { try dataset.mappableExtent(as: dtype.storageType) }
        let storage: RowStorage
        switch extent {
        case .success(let extent):
            storage = RowStorage(mapping: try withContext(.io, "cannot map rows", path: location) {
                try MappedFile(path: path, offset: extent.offset, length: extent.length)
            }, access: .random)
        case .failure(let refusal):
            try DataFileCheck.fits(dataset, in: path, location: location)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: entry.rows * k * dtype.byteWidth, alignment: 64)
            do {
                try withContext(.corrupt, "cannot read rows", path: location) { try dataset.readBytes(into: buffer, as: dtype.storageType) }
            } catch {
                buffer.deallocate()
                throw error
            }
            storage = RowStorage(owned: buffer, reason: refusal.description)
        }
        try? dataset.close()
        let blocks = try BlockChecksums.read(for: "rows", elements: entry.rows, in: root, path: path)
        try? root.close()
        // A set created without allow_nonfinite never holds NaN or ±Inf (Spec §5.3): a row
        // that does was not written by a conforming writer, and is refused when verified.
        var nonfiniteCheck: (@Sendable (UnsafeRawBufferPointer, Int) throws -> Void)?
        if !allowNonfinite {
            nonfiniteCheck = { (bytes: UnsafeRawBufferPointer, firstRow: Int) throws -> Void in
                if let bad = Kernels.firstNonFinite(bytes, dtype: dtype) {
                    let row = firstRow + bad / k, column = bad % k
                    throw StoreError(.corrupt, "row \(row) holds NaN or ±Inf at column \(column), but the set does not allow non-finite values", path: location)
                }
            }
        }
        return CheckedBytes(path: path, dataset: "rows", storage: storage, rowBytes: k * dtype.byteWidth, rows: entry.rows,
                            blocks: blocks, wholeChecksum: expected, extraCheck: nonfiniteCheck)
    }

    /// A segment's rows verified whole, for `verify`: the dataset checksum, then (1.2 files)
    /// every block checksum, then the non-finite rule, each computed afresh.
    static func loadRows(path: String, entry: Manifest.SegmentEntry, k: Int, dtype: SketchDType, allowNonfinite: Bool,
                         alwaysVerify: Bool = true) throws -> RowStorage {
        let rows = try openRows(path: path, entry: entry, k: k, dtype: dtype, allowNonfinite: allowNonfinite)
        rows.storage.advise(.sequential)
        let expected = entry.checksums["rows"] ?? ""
        let computed = CRC32C.formatted(CRC32C.checksum(rows.bytes))
        guard computed == expected else { throw mismatch(path, "rows", expected: expected, found: computed) }
        try rows.ensureAll()
        // Again here: ensureAll skips a dataset this process verified before (whole mode).
        if !allowNonfinite, let bad = Kernels.firstNonFinite(rows.bytes, dtype: dtype) {
            throw StoreError(.corrupt, "row \(bad / k) holds NaN or ±Inf at column \(bad % k), but the set does not allow non-finite values", path: path + ":/rows")
        }
        return rows.storage
    }

    static func readStrings(path: String, dataset name: String, expected: String, rows: Int) throws -> [String] {
        let file = try open(path, expected: .sketchSegment)
        let strings = try withContext(.corrupt, "cannot read strings", path: path + ":/" + name) { () throws -> [String] in
            let root = try file.root()
            let dataset = try root.openDataset(name)
            try FileHeader.checkDataset(dataset, expected: stringEncoding(name), path: path)
            guard try dataset.shape() == [rows] else {
                throw StoreError(.corrupt, "\(name) has shape \(try dataset.shape()), expected [\(rows)]", path: path + ":/" + name)
            }
            try DataFileCheck.fits(dataset, in: path, location: path + ":/" + name)
            let values = try dataset.readStrings()
            let attribute = try dataset.stringAttribute("checksum")
            try dataset.close()
            guard attribute == expected else {
                throw StoreError(.corrupt, "\(name) checksum attribute is \(attribute ?? "(none)"), the manifest says \(expected)", path: path + ":/" + name)
            }
            // Read whole, so its block checksums (1.2) are all checked too: a block reader
            // trusts them, so `verify` must find one that disagrees with the data.
            if values.count == rows, let blocks = try BlockChecksums.read(for: name, elements: rows, in: root, path: path) {
                let computed = BlockChecksums.strings(values, blockRows: blocks.blockRows)
                if let bad = zip(computed, blocks.crcs).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
                    throw StoreError(.corrupt, "block checksum mismatch in dataset \(name), block \(bad.offset): expected \(CRC32C.formatted(bad.element.1)), computed \(CRC32C.formatted(bad.element.0))", path: path + ":/" + name)
                }
            }
            try root.close()
            return values
        }
        try? file.close()
        guard strings.count == rows else {
            throw StoreError(.corrupt, "\(name) has \(strings.count) entries, expected \(rows)", path: path + ":/" + name)
        }
        let computed = Checksum.strings(strings)
        guard computed == expected else { throw mismatch(path, name, expected: expected, found: computed) }
        return strings
    }

    static func readColumn(path: String, dataset name: String, expected: String, rows: Int) throws -> [Double] {
        let file = try open(path, expected: .sketchSegment)
        let values = try withContext(.corrupt, "cannot read column", path: path + ":/" + name) { () throws -> [Double] in
            let root = try file.root()
            let dataset = try root.openDataset(name)
            try FileHeader.checkDataset(dataset, expected: .rowColumn, path: path)
            guard try dataset.shape() == [rows] else {
                throw StoreError(.corrupt, "\(name) has shape \(try dataset.shape()), expected [\(rows)]", path: path + ":/" + name)
            }
            try DataFileCheck.fits(dataset, in: path, location: path + ":/" + name)
            let values: [Double] = try dataset.readAll()
            try dataset.close()
            try root.close()
            return values
        }
        try? file.close()
        let computed = Checksum.values(values)
        guard computed == expected else { throw mismatch(path, name, expected: expected, found: computed) }
        return values
    }

    static func readDeletions(storePath: String, entry: Manifest.DeletionEntry, segment: Manifest.SegmentEntry) throws -> [Int] {
        let path = storePath + "/" + entry.file
        let file = try open(path, expected: .rowDeletions)
        let values = try withContext(.corrupt, "cannot read deletions", path: path + ":/rows") { () throws -> [Int64] in
            let root = try file.root()
            let dataset = try root.openDataset("rows")
            try FileHeader.checkDataset(dataset, expected: .deletedRows, path: path)
            guard try dataset.shape() == [entry.count] else {
                throw StoreError(.corrupt, "deletion list has shape \(try dataset.shape()), the manifest says [\(entry.count)]", path: path + ":/rows")
            }
            try DataFileCheck.fits(dataset, in: path, location: path + ":/rows")
            let values: [Int64] = try dataset.readAll()
            try dataset.close()
            try root.close()
            return values
        }
        try? file.close()
        let computed = Checksum.values(values)
        guard computed == entry.checksum else { throw mismatch(path, "rows", expected: entry.checksum, found: computed) }
        guard values.count == entry.count else {
            throw StoreError(.corrupt, "deletion list has \(values.count) rows, the manifest says \(entry.count)", path: path)
        }
        var previous: Int64 = -1
        for value in values {
            guard value > previous, value < Int64(segment.rows) else {
                throw StoreError(.corrupt, "deletion list must be strictly increasing indices in [0, \(segment.rows)), found \(value) after \(previous)", path: path)
            }
            previous = value
        }
        return values.map { Int($0) }
    }

    /// The encoding type of a segment's string dataset (Spec §5.1).
    static func stringEncoding(_ name: String) -> EncodingType {
        switch name {
        case "labels": return .rowLabels
        case "metadata": return .rowMetadata
        default: return .rowIDs
        }
    }

    /// The elements of `values` whose indices are not in `deleted` (ascending).
    static func live<T>(_ values: [T], deleted: [Int]) -> [T] {
        if deleted.isEmpty { return values }
        var result: [T] = []
        result.reserveCapacity(values.count - deleted.count)
        var next = 0
        for (index, value) in values.enumerated() {
            if next < deleted.count && deleted[next] == index { next += 1; continue }
            result.append(value)
        }
        return result
    }
}
