import Foundation
import GradSketchHDF5
import GradSketchInterchange

/// Writes one segment file (Spec §5.1) and publishes it under `segments/`.
///
/// Rows stream through a bounded buffer: each block is converted to the set's dtype, checked
/// for non-finite values, added to the running CRC-32C and written with one `H5Dwrite`, so
/// memory stays flat however many rows an append has and the bytes are read only once.
struct SegmentWriter {
    /// Bytes of converted rows per block; large enough that HDF5's per-call cost vanishes,
    /// small enough to stay in the last-level cache.
    static let blockBytes = 4 << 20

    struct Written {
        let entry: Manifest.SegmentEntry
        let ids: [String]
        /// The segment's id hash table (Spec §5.1), kept for the commit's segment list.
        let idHashes: IDHashTable
        /// Whether any stored value is NaN or ±Inf (only possible when the caller allowed it).
        let hasNonfinite: Bool
        /// The segment id when the writer generated the ids (`<segment-id>:<row>`, Spec §5.1),
        /// nil when the caller gave them.
        var generatedIDsSegment: String? = nil
    }

    /// Checks every annotation against the row count before any byte is written, so bad
    /// input fails fast and leaves nothing behind.
    static func validate(_ annotations: RowAnnotations, rows: Int) throws {
        if let ids = annotations.ids {
            try Rules.checkCount(ids.count, of: "ids", rows: rows)
            try Rules.checkIDs(ids)
        }
        if let labels = annotations.labels {
            try Rules.checkCount(labels.count, of: "labels", rows: rows)
            if let bad = labels.firstIndex(where: { $0.utf8.contains(0) }) {
                throw StoreError(.invalidInput, "label of row \(bad) contains a NUL byte")
            }
        }
        if let metadata = annotations.metadata {
            try Rules.checkCount(metadata.count, of: "metadata", rows: rows)
            if let bad = metadata.firstIndex(where: { $0.utf8.contains(0) }) {
                throw StoreError(.invalidInput, "metadata of row \(bad) contains a NUL byte")
            }
            if annotations.metadataKind == .json {
                for (index, text) in metadata.enumerated() {
                    guard (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil else {
                        throw StoreError(.invalidInput, "metadata of row \(index) is not one JSON value: \"\(text.prefix(60))\"")
                    }
                }
            }
        }
        for (name, values) in annotations.columns {
            try Rules.checkName(name, what: "column")
            try Rules.checkCount(values.count, of: "column \(name)", rows: rows)
        }
    }

    static func write(
        into store: Store, rows input: RowInput, dtype: SketchDType, allowNonfinite: Bool,
        annotations: RowAnnotations, progress: ((Int, Int) -> Void)?
    ) throws -> Written {
        try validate(annotations, rows: input.rowCount)
        let segmentID = randomIdentifier()
        let temporary = try store.temporaryPath()
        var published = false
        defer { if !published { try? FileSystem.remove(temporary) } }

        var checksums: [String: String] = [:]
        var hasNonfinite = false
        var rowsExtent: MappableExtent?
        var rowsCRC: UInt32 = 0
        let ids = annotations.ids ?? (0..<input.rowCount).map { "\(segmentID):\($0)" }
        let idHashes = IDHashTable(ids: ids)

        try withContext(.io, "cannot write segment", path: temporary) {
            // Spec §2.4: rows under 4096 bytes are not covered by the large-object alignment.
            let small = input.rowCount * input.k * dtype.byteWidth < 4096
            let file = try HDF5File.create(path: temporary, alignment: small ? .everyObject : .largeObjects)
            let root = try file.root()
            try FileHeader.write(on: root, type: .sketchSegment)
            try root.setAttribute("segment-id", segmentID)
            try root.setAttribute("rows", Int64(input.rowCount))
            try root.setAttribute("k", Int64(input.k))
            try root.setAttribute("dtype", dtype.rawValue)

            let rows = try root.createDataset("rows", type: dtype.storageType, shape: [input.rowCount, input.k])
            // Storage is allocated at creation, so the rows' place in the file is known now.
            let writeback: (FileSystem.Writeback, Int)?
            if case .success(let extent) = try rows.mappableExtent(as: dtype.storageType) {
                rowsExtent = extent
                writeback = FileSystem.Writeback(path: temporary).map { ($0, extent.offset) }
            } else {
                writeback = nil
            }
            let checksumBlockRows = BlockChecksums.rowsPerBlock(rowBytes: input.k * dtype.byteWidth)
            var blockCRCs: [UInt32] = []
            rowsCRC = try writeRows(input, to: rows, dtype: dtype, allowNonfinite: allowNonfinite, hasNonfinite: &hasNonfinite,
                                    blockCRCs: &blockCRCs, checksumBlockRows: checksumBlockRows, writeback: writeback, progress: progress)
            let rowsChecksum = CRC32C.formatted(rowsCRC)
            try FileHeader.mark(rows, type: .denseRows, checksum: rowsChecksum)
            try rows.close()
            checksums["rows"] = rowsChecksum
            // Format 1.2 block checksums (Spec §4), so readers verify only what they touch.
            try BlockChecksums.write(blockCRCs, blockRows: checksumBlockRows, for: "rows", in: root)

            checksums["ids"] = try writeStrings(ids, "ids", type: .rowIDs, in: root)
            checksums.merge(try idHashes.write(into: root, hashesName: SegmentFiles.idHashes, positionsName: SegmentFiles.idHashRows,
                                               positionsType: .rowIDHashRows)) { $1 }
            if let labels = annotations.labels {
                checksums["labels"] = try writeStrings(labels, "labels", type: .rowLabels, in: root)
            }
            if let metadata = annotations.metadata {
                checksums["metadata"] = try writeStrings(metadata, "metadata", type: .rowMetadata, in: root,
                                                         kind: annotations.metadataKind.rawValue)
            }
            for (name, values) in annotations.columns.sorted(by: { $0.key < $1.key }) {
                let dataset = try root.createDataset("columns/" + name, type: .float64, shape: [values.count], mappable: false)
                try values.withUnsafeBytes { try dataset.writeBytes($0, as: .float64) }
                let checksum = Checksum.values(values)
                try FileHeader.mark(dataset, type: .rowColumn, checksum: checksum)
                try dataset.close()
                checksums["columns/" + name] = checksum
            }
            try root.close()
            try file.close()
        }
        let relative = "segments/\(segmentID).h5"
        let whole = try store.publish(temporary, as: relative,
                                      known: rowsExtent.map { ($0.offset, $0.length, rowsCRC) })
        published = true
        let entry = Manifest.SegmentEntry(
            file: relative, rows: input.rowCount, checksums: checksums,
            metadataKind: annotations.metadata == nil ? nil : annotations.metadataKind.rawValue, deletions: nil,
            size: whole.size, fileChecksum: whole.checksum)
        store.rememberIDHashes(idHashes, of: relative)
        return Written(entry: entry, ids: ids, idHashes: idHashes, hasNonfinite: hasNonfinite,
                       generatedIDsSegment: annotations.ids == nil ? segmentID : nil)
    }

    private static func writeStrings(_ strings: [String], _ name: String, type: EncodingType,
                                     in root: borrowing Group, kind: String? = nil) throws -> String {
        let dataset = try root.createStringDataset(name, strings: strings)
        let checksum = Checksum.strings(strings)
        try FileHeader.mark(dataset, type: type, checksum: checksum)
        if let kind { try dataset.setAttribute("metadata-kind", kind) }
        try dataset.close()
        let blockRows = BlockChecksums.stringBlockElements
        try BlockChecksums.write(BlockChecksums.strings(strings, blockRows: blockRows), blockRows: blockRows, for: name, in: root)
        return checksum
    }

    /// Streams the rows block by block; returns the CRC-32C of the stored bytes and appends
    /// one CRC per `checksumBlockRows` rows to `blockCRCs` (the whole CRC is combined from them,
    /// so each byte is checksummed once).
    private static func writeRows(
        _ input: RowInput, to dataset: borrowing Dataset, dtype: SketchDType, allowNonfinite: Bool, hasNonfinite: inout Bool,
        blockCRCs: inout [UInt32], checksumBlockRows: Int, writeback: (FileSystem.Writeback, Int)?, progress: ((Int, Int) -> Void)?
    ) throws -> UInt32 {
        let inputRowBytes = input.k * input.elementType.byteWidth
        let storedRowBytes = input.k * dtype.byteWidth
        // A whole number of checksum blocks per write, so no block straddles two writes.
        let blockRows = max(1, blockBytes / storedRowBytes / checksumBlockRows) * checksumBlockRows
        // Input already in the stored type and suitably aligned is checksummed and written
        // straight from the caller's memory; anything else goes through one reused buffer.
        let direct = input.elementType == dtype.elementType
            && Int(bitPattern: input.bytes.baseAddress) % dtype.byteWidth == 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: direct ? 0 : blockRows * storedRowBytes, alignment: 64)
        defer { buffer.deallocate() }

        var crc: UInt32 = 0  // CRC-32C of the rows so far (0 is the CRC of no bytes)
        var start = 0
        while start < input.rowCount {
            let end = min(input.rowCount, start + blockRows)
            let source = UnsafeRawBufferPointer(rebasing: input.bytes[(start * inputRowBytes)..<(end * inputRowBytes)])
            let stored: UnsafeRawBufferPointer
            let firstBad: Int?
            if direct {
                stored = source
                firstBad = Kernels.firstNonFinite(source, dtype: dtype)
            } else {
                let target = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<((end - start) * storedRowBytes)])
                firstBad = try ElementConversion.convert(source, from: input.elementType, to: dtype.elementType, into: target)
                stored = UnsafeRawBufferPointer(target)
            }
            if let firstBad {
                hasNonfinite = true
                if !allowNonfinite {
                    let row = start + firstBad / input.k
                    let column = firstBad % input.k
                    let overflow = input.elementType != dtype.elementType ? " (or overflows \(dtype.rawValue))" : ""
                    throw StoreError(.invalidInput,
                        "row \(row) is not finite: expected finite values, found NaN or ±Inf\(overflow) at column \(column); pass allow-nonfinite when creating the set to store such rows")
                }
            }
            var blockStart = 0
            while blockStart < stored.count {
                let blockEnd = min(stored.count, blockStart + checksumBlockRows * storedRowBytes)
                let block = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: stored[blockStart..<blockEnd]))
                blockCRCs.append(block)
                crc = CRC32C.combine(crc, block, secondLength: blockEnd - blockStart)
                blockStart = blockEnd
            }
            try dataset.writeBytes(stored, as: dtype.storageType, rows: start..<end, rowLength: input.k)
            if let (handle, offset) = writeback {
                handle.start(offset: offset + start * storedRowBytes, length: stored.count)
            }
            start = end
            progress?(start, input.rowCount)
        }
        return crc
    }
}
