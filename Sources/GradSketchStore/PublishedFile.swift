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
/// block checksums and segment-list files); moving them is a matter of replacing their
/// `HDF5File.create` … `store.publish` with this type, as tensors, deletions and results do.
final class DataFileWriter {
    let store: Store
    let kind: FileKind
    private let temporary: String
    private let file: HDF5File
    private(set) var checksums: [String: String] = [:]
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

    /// Closes the file and publishes it under the kind's directory with a fresh id.
    func publish() throws -> PublishedFile {
        precondition(!finished, "a data file is published once")
        finished = true
        defer { try? FileSystem.remove(temporary) }  // only left behind when publishing failed
        try withContext(.io, "cannot write \(kind.name) file", path: temporary) { try file.close() }
        let relative = kind.directory + "/" + randomIdentifier() + ".h5"
        let whole = try store.publish(temporary, as: relative)
        return PublishedFile(file: relative, size: whole.size, fileChecksum: whole.checksum, checksums: checksums)
    }
}
