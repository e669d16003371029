import Dispatch
import Foundation
import GradSketchHDF5
import GradSketchInterchange
import Synchronization

/// Block checksums (Spec §4, format 1.2): a CRC-32C per block of elements of a dataset,
/// stored next to it as `<dataset>-block-checksums`, so a reader verifies only the blocks a
/// query touches instead of the whole dataset.
enum BlockChecksums {
    static let suffix = "-block-checksums"
    /// Bytes a block of fixed-width rows aims at: large enough that the checksum array is
    /// 1/4096 of the data and a scan's per-block cost vanishes, small enough that re-ranking
    /// a few hundred random rows checksums a few MB, not the tens of MB 64 KiB blocks would.
    static let targetBlockBytes = 1 << 14
    /// Elements per block of a string dataset (ids, labels, metadata).
    static let stringBlockElements = 256

    static func name(of dataset: String) -> String { dataset + suffix }

    /// Rows per block for rows of `rowBytes` bytes.
    static func rowsPerBlock(rowBytes: Int) -> Int { max(1, targetBlockBytes / max(1, rowBytes)) }

    static func blockCount(elements: Int, blockRows: Int) -> Int { (elements + blockRows - 1) / blockRows }

    /// The CRC of each block of `blockRows` rows of `rowBytes` bytes in `bytes`.
    static func numeric(_ bytes: UnsafeRawBufferPointer, rowBytes: Int, blockRows: Int) -> [UInt32] {
        let rows = rowBytes == 0 ? 0 : bytes.count / rowBytes
        return (0..<blockCount(elements: rows, blockRows: blockRows)).map { block in
            let start = block * blockRows * rowBytes
            let end = min(bytes.count, start + blockRows * rowBytes)
            return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
        }
    }

    /// The CRC of each block of `blockRows` strings, by §4's content rule (UTF-8 then 0x00).
    static func strings<C: Collection<String>>(_ strings: C, blockRows: Int) -> [UInt32] {
        var result: [UInt32] = []
        result.reserveCapacity(blockCount(elements: strings.count, blockRows: blockRows))
        var crc = CRC32C(), inBlock = 0
        for string in strings {
            var copy = string
            copy.withUTF8 { crc.update(UnsafeRawBufferPointer($0)) }
            withUnsafeBytes(of: UInt8(0)) { crc.update($0) }
            inBlock += 1
            if inBlock == blockRows {
                result.append(crc.value)
                crc = CRC32C()
                inBlock = 0
            }
        }
        if inBlock > 0 { result.append(crc.value) }
        return result
    }

    /// Writes `<dataset>-block-checksums`: uint32 `[blocks]`, attribute `block-rows`, and its
    /// own `checksum` over its little-endian bytes.
    static func write(_ crcs: [UInt32], blockRows: Int, for dataset: String, in root: borrowing Group) throws {
        let handle = try root.createDataset(name(of: dataset), type: .uint32, shape: [crcs.count], mappable: false)
        try crcs.withUnsafeBufferPointer { buffer in
            if !buffer.isEmpty { try handle.write(buffer) }
        }
        try handle.setAttribute("block-rows", Int64(blockRows))
        try FileHeader.mark(handle, type: .blockChecksums, checksum: Checksum.values(crcs))
        try handle.close()
    }

    /// The block checksums of `dataset` (`elements` long) in the file at `root`, the array
    /// itself verified against its `checksum` attribute; nil when the file has none (a 1.0
    /// or 1.1 file, whose readers verify the dataset whole).
    static func read(for dataset: String, elements: Int, in root: borrowing Group, path: String) throws -> (blockRows: Int, crcs: [UInt32])? {
        let blockName = name(of: dataset)
        let location = path + ":/" + blockName
        guard try withContext(.corrupt, "cannot list the file's datasets", path: path, { try root.contains(blockName) }) else { return nil }
        return try withContext(.corrupt, "cannot read block checksums", path: location) { () throws -> (Int, [UInt32]) in
            let handle = try root.openDataset(blockName)
            try FileHeader.checkDataset(handle, expected: .blockChecksums, path: path)
            guard let blockRows = try handle.integerAttribute("block-rows"), blockRows >= 1, blockRows <= Int64(Int32.max) else {
                throw StoreError(.corrupt, "block-rows must be a positive integer, found \(try handle.integerAttribute("block-rows").map(String.init) ?? "none")", path: location)
            }
            let blocks = blockCount(elements: elements, blockRows: Int(blockRows))
            guard try handle.shape() == [blocks] else {
                throw StoreError(.corrupt, "expected \(blocks) block checksums for \(elements) elements in blocks of \(blockRows), found shape \(try handle.shape())", path: location)
            }
            try DataFileCheck.fits(handle, in: path, location: location)
            let crcs: [UInt32] = try handle.readAll()
            let attribute = try handle.stringAttribute("checksum")
            try handle.close()
            let computed = Checksum.values(crcs)
            guard attribute == computed else {
                throw SegmentFiles.mismatch(path, blockName, expected: attribute ?? "(none)", found: computed)
            }
            return (Int(blockRows), crcs)
        }
    }
}

/// One dataset's bytes (mapped, or read into memory) whose content a reader may hand out only
/// after verifying it (Spec §4): block by block on first touch when the file has block
/// checksums, or whole on first touch when it has only the dataset checksum (1.0, 1.1).
///
/// Safe to share across threads: the verified-block bitmap is behind a lock held only to read
/// or set bits; two threads touching the same new block may both checksum it, which costs time
/// and nothing else.
final class CheckedBytes: @unchecked Sendable {
    /// `path:/dataset`, for errors.
    let location: String
    let path: String
    let dataset: String
    let storage: RowStorage
    /// Bytes per element row (a row of `rows`, one code row, one scale, one position).
    let rowBytes: Int
    let rows: Int
    /// Rows per verified unit: the file's `block-rows`, or all rows when verified whole.
    let blockRows: Int
    private let expected: [UInt32]
    private let hasBlocks: Bool
    /// The whole-dataset checksum, which keys the process-wide cache in whole mode.
    private let wholeChecksum: String
    /// Extra check on each verified unit's bytes (the non-finite rule of §5.3), given the
    /// unit's first row.
    private let extraCheck: (@Sendable (UnsafeRawBufferPointer, Int) throws -> Void)?
    private let verified: Mutex<[UInt64]>
    private let allVerified = Atomic<Bool>(false)

    init(path: String, dataset: String, storage: RowStorage, rowBytes: Int, rows: Int,
         blocks: (blockRows: Int, crcs: [UInt32])?, wholeChecksum: String,
         extraCheck: (@Sendable (UnsafeRawBufferPointer, Int) throws -> Void)? = nil) {
        self.path = path
        self.dataset = dataset
        self.location = path + ":/" + dataset
        self.storage = storage
        self.rowBytes = rowBytes
        self.rows = rows
        self.wholeChecksum = wholeChecksum
        self.extraCheck = extraCheck
        if let blocks {
            hasBlocks = true
            blockRows = blocks.blockRows
            expected = blocks.crcs
        } else {
            hasBlocks = false
            blockRows = max(1, rows)
            expected = CRC32C.parse(wholeChecksum).map { [$0] } ?? []
        }
        let units = BlockChecksums.blockCount(elements: rows, blockRows: blockRows)
        verified = Mutex([UInt64](repeating: 0, count: (units + 63) / 64))
        if rows == 0 { allVerified.store(true, ordering: .releasing) }
    }

    var bytes: UnsafeRawBufferPointer { storage.bytes }
    var verifiesByBlock: Bool { hasBlocks }

    /// Verifies (once) every block holding a row of `range`.
    func ensure(rows range: Range<Int>) throws {
        if range.isEmpty || allVerified.load(ordering: .acquiring) { return }
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows out of range")
        if !hasBlocks {
            let key = location + "@" + wholeChecksum
            if VerifiedDatasets.contains(key) { allVerified.store(true, ordering: .releasing); return }
            try verifyUnit(0)
            VerifiedDatasets.insert(key)
            allVerified.store(true, ordering: .releasing)
            return
        }
        let first = range.lowerBound / blockRows, last = (range.upperBound - 1) / blockRows
        // Allocates only when something is left to verify (the warm path is a bit test).
        let missing: [Int] = verified.withLock { bits in
            var missing: [Int] = []
            for block in first...last where bits[block >> 6] & (1 << UInt64(block & 63)) == 0 { missing.append(block) }
            return missing
        }
        if missing.isEmpty { return }
        if missing.count < 256 {
            for block in missing { try verifyUnit(block) }
        } else {
            // A whole scan's worth (16 MiB and more at 64 KiB blocks): checksum on every core,
            // as a cold exact scan would otherwise wait on one.
            let parts = min(missing.count / 128, max(1, ProcessInfo.processInfo.activeProcessorCount))
            let failure = Mutex<(any Error)?>(nil)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                var index = part * missing.count / parts
                let end = (part + 1) * missing.count / parts
                while index < end {
                    do { try verifyUnit(missing[index]) } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                        return
                    }
                    index += 1
                }
            }
            if let error = failure.withLock({ $0 }) { throw error }
        }
        let complete = verified.withLock { bits in
            for block in missing { bits[block >> 6] |= 1 << UInt64(block & 63) }
            let units = BlockChecksums.blockCount(elements: rows, blockRows: blockRows)
            return (0..<bits.count).allSatisfy { word in
                let width = min(64, units - word * 64)
                let full: UInt64 = width == 64 ? .max : (1 << UInt64(width)) - 1
                return bits[word] & full == full
            }
        }
        if complete { allVerified.store(true, ordering: .releasing) }
    }

    /// Verifies everything, advising the kernel of a front-to-back read first.
    func ensureAll() throws {
        if allVerified.load(ordering: .acquiring) { return }
        storage.advise(.sequential)
        try ensure(rows: 0..<rows)
    }

    private func verifyUnit(_ block: Int) throws {
        let start = block * blockRows, end = min(rows, start + blockRows)
        let bytes = UnsafeRawBufferPointer(rebasing: storage.bytes[(start * rowBytes)..<(end * rowBytes)])
        let computed = CRC32C.checksum(bytes)
        guard block < expected.count, computed == expected[block] else {
            let wanted = block < expected.count ? CRC32C.formatted(expected[block]) : wholeChecksum
            if hasBlocks {
                throw StoreError(.corrupt, "block checksum mismatch in dataset \(dataset), block \(block) (rows \(start)..<\(end)): expected \(wanted), computed \(CRC32C.formatted(computed))", path: location)
            }
            throw SegmentFiles.mismatch(path, dataset, expected: wanted, found: CRC32C.formatted(computed))
        }
        try extraCheck?(bytes, start)
    }
}
