import GradSketchHDF5
import GradSketchInterchange

/// The id hash of Spec §5.2 (format 1.2): 64-bit FNV-1a of the id's UTF-8 bytes, stored as
/// the two's-complement `int64` with the same bits.
///
/// FNV-1a rather than a cryptographic hash: a hash only narrows the search, every match is
/// confirmed against the id itself, so collisions cost a read and never a wrong answer, and
/// FNV-1a is a few lines in any language (the reference computes it in pure Python).
enum IDHash {
    static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    static let prime: UInt64 = 0x0000_0100_0000_01b3

    static func hash(_ id: String) -> Int64 {
        var value = offsetBasis
        var copy = id
        copy.withUTF8 { bytes in
            for byte in bytes {
                value ^= UInt64(byte)
                value &*= prime
            }
        }
        return Int64(bitPattern: value)
    }
}

/// A sorted table of id hashes with the position of each: what a segment's `id-hashes` and
/// `id-hash-rows` datasets hold (positions = rows of the segment), and what a segment list's
/// hold (positions = rows of the list's segments concatenated, Spec §7.1).
struct IDHashTable: Sendable, Equatable {
    /// Ascending as signed integers; equal hashes in ascending position.
    var hashes: [Int64]
    var positions: [Int64]

    init(hashes: [Int64], positions: [Int64]) {
        self.hashes = hashes
        self.positions = positions
    }

    /// The table of `ids`, positions counted from `offset`.
    init(ids: [String], offset: Int = 0) {
        let pairs = ids.enumerated().map { (IDHash.hash($0.element), Int64(offset + $0.offset)) }.sorted { $0 < $1 }
        hashes = pairs.map(\.0)
        positions = pairs.map(\.1)
    }

    var count: Int { hashes.count }

    /// The tables merged, each `tables[i]`'s positions shifted by `offsets[i]`.
    static func merged(_ parts: [(table: IDHashTable, offset: Int)]) -> IDHashTable {
        var pairs: [(Int64, Int64)] = []
        pairs.reserveCapacity(parts.reduce(0) { $0 + $1.table.count })
        for (table, offset) in parts {
            for index in 0..<table.count { pairs.append((table.hashes[index], table.positions[index] + Int64(offset))) }
        }
        pairs.sort { $0 < $1 }
        return IDHashTable(hashes: pairs.map(\.0), positions: pairs.map(\.1))
    }

    /// Positions whose hash equals `hash` (binary search).
    func positions(of hash: Int64) -> ArraySlice<Int64> {
        var low = 0, high = hashes.count
        while low < high {
            let middle = (low + high) / 2
            if hashes[middle] < hash { low = middle + 1 } else { high = middle }
        }
        var end = low
        while end < hashes.count && hashes[end] == hash { end += 1 }
        return positions[low..<end]
    }

    /// Checks the table against its Spec shape: `rows` entries, hashes ascending, positions a
    /// permutation of `0..<rows`, ties in ascending position.
    func check(rows: Int, path: String) throws {
        guard hashes.count == rows, positions.count == rows else {
            throw StoreError(.corrupt, "id hash table has \(hashes.count) hashes and \(positions.count) positions, expected \(rows) of each", path: path)
        }
        var seen = [Bool](repeating: false, count: rows)
        for index in 0..<rows {
            let position = positions[index]
            guard position >= 0, position < Int64(rows), !seen[Int(position)] else {
                throw StoreError(.corrupt, "id hash positions must be a permutation of 0..<\(rows), found \(position) at \(index)", path: path)
            }
            seen[Int(position)] = true
            if index > 0, (hashes[index - 1], positions[index - 1]) >= (hashes[index], position) {
                throw StoreError(.corrupt, "id hashes must ascend (ties by position), found \(hashes[index]) at \(index) after \(hashes[index - 1])", path: path)
            }
        }
    }

    /// Writes the two datasets into `root`; returns their checksums by dataset name.
    func write(into root: borrowing Group, hashesName: String, positionsName: String, positionsType: EncodingType) throws -> [String: String] {
        let hashesChecksum = Checksum.values(hashes)
        let hashesDataset = try root.createDataset(hashesName, type: .int64, shape: [count], mappable: false)
        try hashes.withUnsafeBytes { try hashesDataset.writeBytes($0, as: .int64) }
        try FileHeader.mark(hashesDataset, type: .rowIDHashes, checksum: hashesChecksum)
        try hashesDataset.close()
        let positionsChecksum = Checksum.values(positions)
        let positionsDataset = try root.createDataset(positionsName, type: .int64, shape: [count], mappable: false)
        try positions.withUnsafeBytes { try positionsDataset.writeBytes($0, as: .int64) }
        try FileHeader.mark(positionsDataset, type: positionsType, checksum: positionsChecksum)
        try positionsDataset.close()
        return [hashesName: hashesChecksum, positionsName: positionsChecksum]
    }

    /// Reads and verifies the two datasets of an open file.
    static func read(from root: borrowing Group, path: String, rows: Int, hashesName: String, positionsName: String,
                     positionsType: EncodingType, checksums: [String: String]) throws -> IDHashTable {
        func load(_ name: String, _ type: EncodingType) throws -> [Int64] {
            let location = path + ":/" + name
            guard let expected = checksums[name] else {
                throw StoreError(.corrupt, "manifest lists no checksum for dataset \(name)", path: location)
            }
            return try withContext(.corrupt, "cannot read \(name)", path: location) { () throws -> [Int64] in
                let dataset = try root.openDataset(name)
                try FileHeader.checkDataset(dataset, expected: type, path: path)
                guard try dataset.shape() == [rows] else {
                    throw StoreError(.corrupt, "\(name) has shape \(try dataset.shape()), expected [\(rows)]", path: location)
                }
                try DataFileCheck.fits(dataset, in: path, location: location)
                let values: [Int64] = try dataset.readAll()
                try dataset.close()
                let computed = Checksum.values(values)
                guard computed == expected else { throw SegmentFiles.mismatch(path, name, expected: expected, found: computed) }
                return values
            }
        }
        let table = IDHashTable(hashes: try load(hashesName, .rowIDHashes), positions: try load(positionsName, positionsType))
        try table.check(rows: rows, path: path)
        return table
    }
}

extension SegmentFiles {
    /// Dataset names of a segment's id hash table (Spec §5.1, format 1.2).
    static let idHashes = "id-hashes", idHashRows = "id-hash-rows"

    /// A segment's id hash table from its own datasets, or nil for a segment written before
    /// format 1.2 (no `id-hashes` checksum in its entry).
    static func readIDHashes(path: String, entry: Manifest.SegmentEntry) throws -> IDHashTable? {
        guard entry.checksums[idHashes] != nil else { return nil }
        let file = try open(path, expected: .sketchSegment)
        let root = try withContext(.corrupt, "cannot read the segment", path: path) { try file.root() }
        let table = try IDHashTable.read(from: root, path: path, rows: entry.rows, hashesName: idHashes, positionsName: idHashRows,
                                         positionsType: .rowIDHashRows, checksums: entry.checksums)
        try? root.close()
        try? file.close()
        return table
    }
}
