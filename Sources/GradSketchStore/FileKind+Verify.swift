import GradSketchHDF5
import GradSketchInterchange

/// `verify`'s checks of one data file: the rules every kind shares (Spec §4, §2.1), then the
/// kind's own.
extension Store {
    /// Checks `entry`'s file by the generic rules and then by its kind's check; returns the
    /// problems and the bytes read for the whole-file checksum.
    func checkFile(_ entry: FileKind.Entry, of kind: FileKind) -> (problems: [FileKind.KindProblem], bytes: Int) {
        var problems: [FileKind.KindProblem] = []
        var bytes = 0
        func note(_ object: String?, _ message: String) { problems.append(.init(object: object, message: message)) }
        let full = absolute(entry.file)
        guard FileSystem.exists(full) else { return ([.init(object: nil, message: "file is missing")], 0) }
        do { try DataFileCheck.dataFile(full) } catch { return ([.init(object: nil, message: FileKinds.describe(error))], 0) }

        // Size and whole-file checksum: a changed byte anywhere, HDF5 metadata included.
        if let size = entry.size, let checksum = entry.fileChecksum {
            do {
                let mapped = try MappedFile(path: full)
                bytes = mapped.count
                if mapped.count != size {
                    note(nil, "file size is \(mapped.count) bytes, the manifest says \(size) (truncated or extended)")
                } else {
                    let computed = CRC32C.formatted(CRC32C.checksum(mapped.bytes))
                    if computed != checksum { note(nil, "whole-file checksum mismatch: expected \(checksum), computed \(computed)") }
                }
            } catch {
                note(nil, FileKinds.describe(error))
            }
        } else {
            note(nil, "manifest records no file size and checksum for this file")
        }

        // The datasets the kind declares: header, encoding types, checksum attributes, shape
        // and (unless the kind reads the data itself) content checksums.
        do {
            let file = try withContext(.corrupt, "cannot open as HDF5 (truncated or corrupted?)", path: full) { try HDF5File.open(path: full) }
            defer { try? file.close() }
            let root = try withContext(.corrupt, "cannot read the root group", path: full) { try file.root() }
            try FileHeader.check(root, expectedEncoding: kind.encoding)
            for dataset in kind.datasets where dataset.required && !dataset.isFamily
                && !entry.datasetChecksums.contains(where: { $0.name.utf8.elementsEqual(dataset.name.utf8) }) {
                note(dataset.name, "the manifest lists no checksum for dataset \(dataset.name), which every \(kind.name) file holds")
            }
            for (name, checksum) in entry.datasetChecksums.sorted(by: { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }) {
                guard let declared = kind.dataset(named: name) else {
                    note(name, "the manifest lists dataset \(name), which a \(kind.name) file does not hold (expected one of \(kind.datasets.map(\.name).joined(separator: ", ")))")
                    continue
                }
                do {
                    try checkDataset(name, declared, checksum: checksum, rows: entry.rows, in: root, path: full)
                } catch {
                    note(name, FileKinds.describe(error))
                }
            }
            try root.close()
        } catch {
            note(nil, FileKinds.describe(error))
            return (problems, bytes)
        }
        problems += entry.check?(self) ?? []
        return (problems, bytes)
    }

    private func checkDataset(_ name: String, _ declared: FileKind.Dataset, checksum: String, rows: Int?,
                              in root: borrowing Group, path: String) throws {
        let location = path + ":/" + name
        try withContext(.corrupt, "cannot read dataset", path: location) {
            let dataset = try root.openDataset(name)
            try FileHeader.checkDataset(dataset, expectedEncoding: declared.encoding, path: path)
            let attribute = try dataset.stringAttribute("checksum")
            guard attribute == checksum else {
                throw StoreError(.corrupt, "checksum attribute is \(attribute ?? "(none)"), the manifest says \(checksum)", path: location)
            }
            let shape = try dataset.shape()
            if declared.oneElementPerRow, let rows, shape.first != rows {
                throw StoreError(.corrupt, "dataset has shape \(shape), expected \(rows) elements along its first dimension (one per row)", path: location)
            }
            if !declared.contentCheckedByKind {
                try DataFileCheck.fits(dataset, in: path, location: location)
                let computed: String
                // A numeric type of §2.3, or else strings (fixed or variable length; reading
                // them refuses any other type).
                if let type = try dataset.storageType(), type != .string {
                    let count = shape.reduce(1, *)
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, count * type.byteSize), alignment: 16)
                    defer { buffer.deallocate() }
                    let data = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(count * type.byteSize)])
                    if count > 0 { try dataset.readBytes(into: data, as: type) }
                    computed = Checksum.bytes(UnsafeRawBufferPointer(data))
                } else {
                    computed = Checksum.strings(try dataset.readStrings())
                }
                guard computed == checksum else { throw SegmentFiles.mismatch(path, name, expected: checksum, found: computed) }
            }
            try dataset.close()
        }
    }

    /// A segment's own rules: its rows' shape, mappable layout (Spec §2.4), checksum and
    /// finiteness, and unique, valid ids.
    func checkSegment(_ segment: Manifest.SegmentEntry, k: Int, dtype: SketchDType, allowNonfinite: Bool) -> [FileKind.KindProblem] {
        var problems: [FileKind.KindProblem] = []
        let full = absolute(segment.file)
        do {
            let storage = try SegmentFiles.loadRows(path: full, entry: segment, k: k, dtype: dtype, allowNonfinite: allowNonfinite, alwaysVerify: true)
            if let reason = storage.notMappedBecause {
                problems.append(.init(object: "rows", message: "rows dataset is not mappable as Spec §2.4 requires: \(reason)"))
            }
        } catch {
            problems.append(.init(object: "rows", message: FileKinds.describe(error)))
        }
        if let checksum = segment.checksums["ids"] {
            do {
                let ids = try SegmentFiles.readStrings(path: full, dataset: "ids", expected: checksum, rows: segment.rows)
                do { try Rules.checkIDs(ids) } catch { problems.append(.init(object: "ids", message: FileKinds.describe(error))) }
                do {
                    if let table = try SegmentFiles.readIDHashes(path: full, entry: segment), table != IDHashTable(ids: ids) {
                        problems.append(.init(object: SegmentFiles.idHashes, message: "id hash table does not match the segment's ids (Spec §5.1)"))
                    }
                } catch {
                    problems.append(.init(object: SegmentFiles.idHashes, message: FileKinds.describe(error)))
                }
            } catch {
                problems.append(.init(object: "ids", message: FileKinds.describe(error)))
            }
        }
        return problems
    }

    /// A segment list's own rules (Spec §7.1): its entries are the set's segments it covers,
    /// and its hash table is the merged table of those segments' ids.
    func checkSegmentList(_ list: Manifest.SegmentListEntry, covering covered: [Manifest.SegmentEntry]) -> [FileKind.KindProblem] {
        do {
            var problems: [FileKind.KindProblem] = []
            let entries = try SegmentLists.readEntries(storePath: path, list: list, cached: false)
            if entries != covered {
                problems.append(.init(object: SegmentLists.entriesDataset, message: "segment list entries differ from the set's segments"))
            }
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
                problems.append(.init(object: SegmentLists.hashesDataset, message: "id hash table does not match the ids of the list's segments (Spec §7.1)"))
            }
            return problems
        } catch {
            return [.init(object: nil, message: FileKinds.describe(error))]
        }
    }

    /// A tensor set's own rules: each tensor's layout and checksum, and the content hash
    /// over all of them (Spec §6).
    func checkTensorSet(_ entry: Manifest.TensorSetEntry) -> [FileKind.KindProblem] {
        var problems: [FileKind.KindProblem] = []
        var hash = ContentHashBuilder()
        var complete = true
        for tensor in entry.tensors.sorted(by: { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }) {
            let object = "tensors/" + TensorFiles.datasetName(tensor.name)
            do {
                guard let dtype = SketchDType(rawValue: tensor.dtype) else {
                    throw StoreError(.corrupt, "dtype \(tensor.dtype) is not float16 or float32")
                }
                let storage = try TensorFiles.load(path: absolute(entry.file), tensor: tensor, dtype: dtype, alwaysVerify: true)
                if let reason = storage.notMappedBecause, tensor.shape.reduce(1, *) > 0 {
                    problems.append(.init(object: object, message: "tensor is not mappable as Spec §2.4 requires: \(reason)"))
                }
                hash.add(name: tensor.name, dtype: dtype, shape: tensor.shape, bytes: storage.bytes)
            } catch {
                complete = false
                problems.append(.init(object: object, message: FileKinds.describe(error)))
            }
        }
        if complete, hash.finish() != entry.contentHash {
            problems.append(.init(object: nil, message: "content hash mismatch: expected \(entry.contentHash), computed \(hash.finish())"))
        }
        return problems
    }

    /// An index's own rules (Spec §10.2): every dataset against its checksum, mappable codes,
    /// and row positions inside the covered segments, none twice.
    func checkIndex(_ name: String, _ entry: Manifest.IndexEntry, k: Int, physicalRows: Int) -> [FileKind.KindProblem] {
        do {
            let index = try IndexFiles.load(path: absolute(entry.file), name: name, entry: entry, k: k, alwaysVerify: true)
            var problems: [FileKind.KindProblem] = []
            if !index.isMapped { problems.append(.init(object: "codes", message: "index codes are not mappable as Spec §2.4 requires")) }
            let positions = try index.positions()
            if let bad = positions.first(where: { $0 < 0 || $0 >= Int64(physicalRows) }) {
                problems.append(.init(object: "positions", message: "row position \(bad) is outside the \(physicalRows) rows of the covered segments"))
            }
            if Set(positions).count != positions.count {
                problems.append(.init(object: "positions", message: "a row position appears twice"))
            }
            return problems
        } catch {
            return [.init(object: nil, message: FileKinds.describe(error))]
        }
    }

    /// An `ivf-rq4` quantizer's own rules (Spec §10.3): its datasets against their checksums,
    /// and no row position in two parts.
    func checkPartQuantizer(_ name: String, _ entry: Manifest.IndexEntry, k: Int) -> [FileKind.KindProblem] {
        do {
            _ = try PartIndexFiles.loadQuantizer(path: absolute(entry.file), entry: entry, k: k, set: nil, alwaysVerify: true)
        } catch {
            return [.init(object: nil, message: FileKinds.describe(error))]
        }
        var seen = Set<Int64>()
        for part in entry.parts ?? [] {
            // Unreadable parts are reported by their own check.
            guard let loaded = try? PartIndexFiles.loadPart(path: absolute(part.file), entry: part, k: k, lists: entry.lists, set: nil),
                  let arrays = try? loaded.verifiedArrays() else { continue }
            for position in arrays.positions where !seen.insert(position).inserted {
                return [.init(object: nil, message: "row position \(position) appears in two parts of index \(name)")]
            }
        }
        return []
    }

    /// A part's own rules: every dataset against its checksum, mappable codes, row positions
    /// inside the covered segments, none twice.
    func checkIndexPart(_ part: Manifest.IndexPartEntry, k: Int, lists: Int, physicalRows: Int) -> [FileKind.KindProblem] {
        do {
            let loaded = try PartIndexFiles.loadPart(path: absolute(part.file), entry: part, k: k, lists: lists, set: nil, alwaysVerify: true)
            var problems: [FileKind.KindProblem] = []
            if !loaded.isMapped && part.rows > 0 { problems.append(.init(object: "codes", message: "part codes are not mappable as Spec §2.4 requires")) }
            let positions = try loaded.verifiedArrays().positions
            if let bad = positions.first(where: { $0 < 0 || $0 >= Int64(physicalRows) }) {
                problems.append(.init(object: "positions", message: "row position \(bad) is outside the \(physicalRows) rows of the covered segments"))
            }
            if Set(positions).count != positions.count {
                problems.append(.init(object: "positions", message: "a row position appears twice"))
            }
            return problems
        } catch {
            return [.init(object: nil, message: FileKinds.describe(error))]
        }
    }
}
