import GradSketchHDF5
import GradSketchInterchange

/// What publishing a data file produced: the fields every manifest entry records for it
/// (Spec §4, §7.1).
struct PublishedFile: Sendable {
    /// Relative to the store root: `<kind directory>/<id>.h5`.
    let file: String
    let size: Int
    let fileChecksum: String
    /// CRC-32C of each dataset written, by dataset path, computed while writing.
    let checksums: [String: String]
}

/// Writes one data file of a registered ``FileKind`` and publishes it: the one path from
/// bytes to a published file (Spec §7.2 step 1).
///
/// The file is created under `tmp/` while the caller holds a ``WriterPin`` (so vacuum keeps
/// it however long the write takes); every dataset is marked with the encoding type its kind
/// declares for it and its CRC-32C is computed from the bytes as they are written, never read
/// back; ``publish()`` closes the file, computes the whole-file checksum, fsyncs, renames it
/// into the kind's directory and returns the entry fields. A writer that is dropped before
/// ``publish()`` removes its temporary file.
///
/// Segment and index files do not go through here yet (their writers are being reshaped for
/// block checksums and segment-list files). Moving them: `SegmentWriter` becomes
/// `DataFileWriter(store:kind: FileKinds.segment, pin:alignment:)`, its `segment-id` is
/// ``fileID`` (known before publishing, for the default ids), its rows go through
/// ``stream(dataset:as:shape:mappable:_:)`` (CRC while writing, the rows' bytes not read back
/// when publishing), the rest through ``write(strings:dataset:)`` and ``write(_:dataset:shape:mappable:)``;
/// `commitIndex` likewise with `FileKinds.index`.
final class DataFileWriter {
    let store: Store
    let kind: FileKind
    /// The file's `<id>`: it is published as `<kind directory>/<fileID>.h5`.
    let fileID = randomIdentifier()
    private let temporary: String
    private let file: HDF5File
    private(set) var checksums: [String: String] = [:]
    /// A dataset whose bytes lie contiguously in the file, with the CRC computed while
    /// writing them: publishing reads back only the rest of the file.
    private var knownRegion: (offset: Int, length: Int, crc: UInt32)?
    private var finished = false

    /// Creates the temporary file and writes the root attributes of Spec §2.1 with the kind's
    /// encoding type.
    ///
    /// - Parameter pin: the caller's pin, held until the version naming the file is committed.
    init(store: Store, kind: FileKind, pin: WriterPin, alignment: HDF5File.Alignment = .largeObjects) throws {
        _ = pin
        self.store = store
        self.kind = kind
        let temporary = try store.temporaryPath()
        self.temporary = temporary
        do {
            file = try withContext(.io, "cannot create \(kind.name) file", path: temporary) { try HDF5File.create(path: temporary, alignment: alignment) }
            try withContext(.io, "cannot write \(kind.name) file", path: temporary) {
                let root = try file.root()
                try FileHeader.write(on: root, encoding: kind.encoding)
                try root.close()
            }
        } catch {
            try? FileSystem.remove(temporary)
            throw error
        }
    }

    deinit {
        if !finished {
            try? file.close()
            try? FileSystem.remove(temporary)
        }
    }

    /// Sets a string attribute on the root group.
    func setRootAttribute(_ name: String, _ value: String) throws {
        try withContext(.io, "cannot write \(kind.name) file", path: temporary) {
            let root = try file.root()
            try root.setAttribute(name, value)
            try root.close()
        }
    }

    /// Sets an integer (int64 scalar) attribute on the root group.
    func setRootAttribute(_ name: String, _ value: Int64) throws {
        try withContext(.io, "cannot write \(kind.name) file", path: temporary) {
            let root = try file.root()
            try root.setAttribute(name, value)
            try root.close()
        }
    }

    /// Creates a group (for a kind whose datasets live in one, e.g. `tensors/`), so it exists
    /// even when no dataset goes into it.
    func createGroup(_ name: String) throws {
        try withContext(.io, "cannot write \(kind.name) file", path: temporary) {
            let root = try file.root()
            let group = try root.createGroup(name)
            try group.close()
            try root.close()
        }
    }

    /// The encoding type the kind declares for dataset `name`.
    private func encoding(of name: String) throws -> String {
        guard let declared = kind.dataset(named: name) else {
            throw StoreError(.invalidInput, "a \(kind.name) file holds \(kind.datasets.map(\.name).joined(separator: ", ")); dataset \(name) is not one of them", path: temporary)
        }
        return declared.encoding
    }

    /// Writes little-endian elements stored as `type` as dataset `name` of `shape`; returns
    /// the dataset's checksum (also kept for the entry).
    ///
    /// - Parameter attributes: extra string attributes of the dataset.
    @discardableResult
    func write(bytes: UnsafeRawBufferPointer, as type: StorageType, dataset name: String, shape: [Int],
               mappable: Bool = true, attributes: [(String, String)] = []) throws -> String {
        let encoding = try encoding(of: name)
        let checksum = Checksum.bytes(bytes)
        try withContext(.io, "cannot write \(kind.name) file", path: temporary + ":/" + name) {
            let root = try file.root()
            let dataset = try root.createDataset(name, type: type, shape: shape, mappable: mappable)
            if !bytes.isEmpty { try dataset.writeBytes(bytes, as: type) }
            try FileHeader.mark(dataset, encoding: encoding, checksum: checksum)
            for (key, value) in attributes { try dataset.setAttribute(key, value) }
            try dataset.close()
            try root.close()
        }
        checksums[name] = checksum
        return checksum
    }

    /// Writes `values` as dataset `name` of `shape` (the element count by default).
    @discardableResult
    func write<E: HDF5Element>(_ values: [E], dataset name: String, shape: [Int]? = nil, mappable: Bool = true) throws -> String {
        try values.withUnsafeBytes { bytes in
            try write(bytes: bytes, as: E.storageType, dataset: name, shape: shape ?? [values.count], mappable: mappable)
        }
    }

    /// Writes `strings` as a fixed-length UTF-8 string dataset; its checksum is over each
    /// string's bytes and one 0x00 (Spec §4).
    @discardableResult
    func write(strings: [String], dataset name: String) throws -> String {
        let encoding = try encoding(of: name)
        let checksum = Checksum.strings(strings)
        try withContext(.io, "cannot write \(kind.name) file", path: temporary + ":/" + name) {
            let root = try file.root()
            let dataset = try root.createStringDataset(name, strings: strings)
            try FileHeader.mark(dataset, encoding: encoding, checksum: checksum)
            try dataset.close()
            try root.close()
        }
        checksums[name] = checksum
        return checksum
    }

    /// Creates dataset `name` (`[rows, …]` of `type`) and lets `body` fill it in blocks of
    /// whole rows, in order, through the function it is given (`write(bytes, rows)`); the CRC
    /// is accumulated as the blocks are written, so no block is kept or read back. Returns the
    /// dataset's checksum.
    ///
    /// - Throws: `.invalidInput` when the blocks do not cover the rows in order, exactly.
    @discardableResult
    func stream(dataset name: String, as type: StorageType, shape: [Int], mappable: Bool = true,
                _ body: (_ write: (UnsafeRawBufferPointer, Range<Int>) throws -> Void) throws -> Void) throws -> String {
        precondition(!shape.isEmpty, "a streamed dataset has at least one dimension")
        let encoding = try encoding(of: name)
        let rowLength = shape.dropFirst().reduce(1, *)
        var crc = CRC32C()
        var next = 0
        var extent: MappableExtent?
        let location = temporary + ":/" + name
        try withContext(.io, "cannot write \(kind.name) file", path: location) {
            let root = try file.root()
            let dataset = try root.createDataset(name, type: type, shape: shape, mappable: mappable)
            // Storage is allocated at creation, so where the bytes go is known now.
            if case .success(let found) = try dataset.mappableExtent(as: type) { extent = found }
            try body { bytes, rows in
                guard rows.lowerBound == next, rows.upperBound <= shape[0], bytes.count == rows.count * rowLength * type.byteSize else {
                    throw StoreError(.invalidInput, "expected rows from \(next) of \(shape[0]) as \(rowLength * type.byteSize) bytes each, found rows \(rows) in \(bytes.count) bytes", path: location)
                }
                if !rows.isEmpty {
                    try dataset.writeBytes(bytes, as: type, rows: rows, rowLength: shape.count > 1 ? rowLength : nil)
                }
                crc.update(bytes)
                next = rows.upperBound
            }
            guard next == shape[0] else {
                throw StoreError(.invalidInput, "dataset \(name) has \(shape[0]) rows, \(next) were written", path: location)
            }
            let checksum = CRC32C.formatted(crc.value)
            try FileHeader.mark(dataset, encoding: encoding, checksum: checksum)
            try dataset.close()
            try root.close()
        }
        let checksum = CRC32C.formatted(crc.value)
        checksums[name] = checksum
        if let extent, knownRegion == nil || extent.length > knownRegion!.length {
            knownRegion = (extent.offset, extent.length, crc.value)
        }
        return checksum
    }

    /// ``stream(dataset:as:shape:mappable:_:)`` for elements of a Swift type (its storage type).
    @discardableResult
    func stream<E: HDF5Element>(dataset name: String, of element: E.Type, shape: [Int], mappable: Bool = true,
                                _ body: (_ write: (UnsafeRawBufferPointer, Range<Int>) throws -> Void) throws -> Void) throws -> String {
        try stream(dataset: name, as: E.storageType, shape: shape, mappable: mappable, body)
    }

    /// Closes the file and publishes it as `<kind directory>/<fileID>.h5`.
    func publish() throws -> PublishedFile {
        precondition(!finished, "a data file is published once")
        finished = true
        defer { try? FileSystem.remove(temporary) }  // only left behind when publishing failed
        try withContext(.io, "cannot write \(kind.name) file", path: temporary) { try file.close() }
        let relative = kind.directory + "/" + fileID + ".h5"
        let whole = try store.publish(temporary, as: relative, known: knownRegion)
        return PublishedFile(file: relative, size: whole.size, fileChecksum: whole.checksum, checksums: checksums)
    }
}
