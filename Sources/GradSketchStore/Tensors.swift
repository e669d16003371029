import Crypto
import Foundation
public import GradSketchInterchange
import GradSketchHDF5
import Synchronization

/// One named input tensor, borrowed from the caller (e.g. a safetensors or `.npy` mapping).
public struct TensorInput: @unchecked Sendable {
    public let name: String
    public let elementType: ElementType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer

    public init(name: String, elementType: ElementType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        guard [.float16, .bfloat16, .float32, .float64].contains(elementType) else {
            throw StoreError(.invalidInput, "tensor \(name) is \(elementType.rawValue): expected float16, bfloat16, float32 or float64")
        }
        guard !name.isEmpty, !name.utf8.contains(0) else {
            throw StoreError(.invalidInput, "tensor names must be non-empty and without NUL, found \"\(name)\"")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw StoreError(.invalidInput, "tensor \(name) has a negative dimension in shape \(shape)")
        }
        let expected = shape.reduce(1, *) * elementType.byteWidth
        guard bytes.count == expected else {
            throw StoreError(.invalidInput, "tensor \(name) of shape \(shape) \(elementType.rawValue) needs \(expected) bytes, found \(bytes.count)")
        }
        self.name = name
        self.elementType = elementType
        self.shape = shape
        self.bytes = bytes
    }
}

/// One stored tensor: its data verified and, where the layout allows, memory-mapped.
public struct TensorView: @unchecked Sendable {
    public let name: String
    public let dtype: SketchDType
    public let shape: [Int]
    /// Little-endian elements of `dtype`, row-major; valid while this view exists (it keeps
    /// the mapping or buffer alive).
    public let bytes: UnsafeRawBufferPointer
    let owner: RowStorage

    init(name: String, dtype: SketchDType, shape: [Int], storage: RowStorage) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = storage.bytes
        self.owner = storage
    }

    /// Whether `bytes` is a read-only mapping of the store file (zero-copy) rather than a copy
    /// the view owns (the dataset's layout could not be mapped, e.g. chunked or filtered).
    public var isMapped: Bool { owner.notMappedBecause == nil }

    /// The values widened to float32.
    public func floats() throws -> [Float] {
        var values = [Float](repeating: 0, count: shape.reduce(1, *))
        try values.withUnsafeMutableBytes { target in
            _ = try ElementConversion.convert(bytes, from: dtype.elementType, to: .float32, into: target)
        }
        return values
    }
}

/// A tensor set as of one version (Spec §6).
public final class TensorSet: Sendable {
    public let name: String
    public let version: Int
    package let entry: Manifest.TensorSetEntry
    let path: String
    private let loaded = Mutex<[UTF8Key: RowStorage]>([:])  // by name bytes (Spec §2.5)

    init(storePath: String, name: String, version: Int, entry: Manifest.TensorSetEntry) {
        self.name = name
        self.version = version
        self.entry = entry
        self.path = storePath + "/" + entry.file
    }

    public var tensorNames: [String] { entry.tensors.map(\.name) }
    public var contentHash: String { entry.contentHash }
    public var kind: String { entry.kind }

    /// The tensor named `name`, verified against its checksum before it is returned.
    public func tensor(named name: String) throws -> TensorView {
        guard let tensor = entry.tensors.first(where: { $0.name.utf8.elementsEqual(name.utf8) }) else {  // bytes, Spec §2.5
            throw StoreError(.notFound, "tensor set \(self.name) has no tensor \"\(name)\"", path: path)
        }
        guard let dtype = SketchDType(rawValue: tensor.dtype) else {
            throw StoreError(.unsupportedVersion, "tensor \(name) has dtype \(tensor.dtype): expected float16 or float32", path: path)
        }
        if let storage = loaded.withLock({ $0[UTF8Key(name)] }) {
            return TensorView(name: name, dtype: dtype, shape: tensor.shape, storage: storage)
        }
        let storage = try TensorFiles.load(path: path, tensor: tensor, dtype: dtype)
        loaded.withLock { $0[UTF8Key(name)] = storage }
        return TensorView(name: name, dtype: dtype, shape: tensor.shape, storage: storage)
    }
}

extension Store {
    /// Opens tensor set `name` as of `version` (latest when nil).
    public func tensorSet(_ name: String, at version: Int? = nil) throws -> TensorSet {
        let manifest = try self.manifest(at: version)
        guard let entry = manifest.tensorSets[name] else {
            let known = manifest.tensorSets.keys.sorted()
            throw StoreError(.notFound, "no tensor set \"\(name)\" in version \(manifest.version) (tensor sets: \(known.isEmpty ? "none" : known.joined(separator: ", ")))", path: path)
        }
        return TensorSet(storePath: path, name: name, version: manifest.version, entry: entry)
    }

    /// Stores model tensors as tensor set `name` (kind `weights`) and commits a new version.
    ///
    /// float16 input stays float16 and everything else is stored as float32 unless `dtype`
    /// says otherwise; bfloat16 is widened exactly (Spec §2.3).
    ///
    /// - Throws: `.invalidInput` if the set exists, names repeat or a value is not finite.
    @discardableResult
    public func putTensors(_ name: String, _ tensors: [TensorInput], dtype: SketchDType? = nil, detail: String? = nil) throws -> Int {
        let pin = try pinWriter()
        defer { pin.release() }
        let staged = try stageTensors(name, tensors, dtype: dtype)
        return try commitTensorSet(.putTensors(name: name, tensors: staged), detail: detail)
    }

    /// Writes tensor set `name` (kind `weights`) as a file no version references yet, for
    /// ``commit(changes:detail:)`` (the caller holds a ``claimWrites()`` until then).
    public func stageTensors(_ name: String, _ tensors: [TensorInput], dtype: SketchDType? = nil) throws -> StagedTensorSet {
        try Rules.checkName(name, what: "tensor set")
        if try manifest().tensorSets[name] != nil {
            throw StoreError(.invalidInput, "tensor set \(name) already exists: tensor sets are immutable; choose a new name", path: path)
        }
        let pin = try pinWriter()
        defer { pin.release() }
        let written = try TensorFiles.write(into: self, pin: pin, kind: "weights", tensors: tensors.map { input in
            (input.name, input.shape, input.elementType, dtype ?? .natural(for: input.elementType), input.bytes)
        }, extra: [:])
        return StagedTensorSet(entry: written, sourceHashes: nil)
    }

    /// Records `to − from` between two stored tensor sets as tensor set `name` (kind
    /// `delta`, float32) and commits a new version (Spec §6).
    ///
    /// - Throws: `.invalidInput` naming the first tensor whose name or shape differs.
    @discardableResult
    public func recordDelta(_ name: String, from: String, to: String, detail: String? = nil) throws -> Int {
        let pin = try pinWriter()
        defer { pin.release() }
        let staged = try stageDelta(name, from: from, to: to)
        return try commitTensorSet(.delta(name: name, from: from, to: to, tensors: staged), detail: detail ?? "\(to) − \(from)")
    }

    /// Computes `to − from` as of the latest version and writes it as tensor set `name` (kind
    /// `delta`), a file no version references yet, for ``commit(changes:detail:)`` (the
    /// caller holds a ``claimWrites()`` until then). The commit refuses it if `from` or `to`
    /// changed meanwhile.
    public func stageDelta(_ name: String, from: String, to: String) throws -> StagedTensorSet {
        try Rules.checkName(name, what: "tensor set")
        let manifest = try self.manifest()
        if manifest.tensorSets[name] != nil {
            throw StoreError(.invalidInput, "tensor set \(name) already exists: tensor sets are immutable; choose a new name", path: path)
        }
        let base = try tensorSet(from, at: manifest.version)
        let target = try tensorSet(to, at: manifest.version)
        // Names match as bytes (Spec §2.5): an NFC name in one set and its NFD spelling in the
        // other are different tensors.
        func byBytes(_ names: [String]) -> [UTF8Key] {
            names.map(UTF8Key.init).sorted { Array($0.string.utf8).lexicographicallyPrecedes(Array($1.string.utf8)) }
        }
        let baseKeys = byBytes(base.tensorNames), targetKeys = byBytes(target.tensorNames)
        let baseNames = baseKeys.map(\.string)
        guard baseKeys == targetKeys else {
            let (inBase, inTarget) = (Set(baseKeys), Set(targetKeys))
            let onlyBase = baseKeys.first { !inTarget.contains($0) }?.string
            let onlyTarget = targetKeys.first { !inBase.contains($0) }?.string
            let what = onlyBase.map { "\"\($0)\" is in \(from) but not in \(to)" } ?? onlyTarget.map { "\"\($0)\" is in \(to) but not in \(from)" } ?? "names differ"
            throw StoreError(.invalidInput, "cannot take a delta: expected the same tensor names in both sets, but \(what)", path: path)
        }
        // Differences live in buffers this function owns until the file is written.
        var differences: [(name: String, shape: [Int], values: UnsafeMutableBufferPointer<Float>)] = []
        defer { for item in differences { item.values.deallocate() } }
        for tensorName in baseNames {
            let a = try base.tensor(named: tensorName), b = try target.tensor(named: tensorName)
            guard a.shape == b.shape else {
                throw StoreError(.invalidInput, "cannot take a delta: tensor \(tensorName) has shape \(a.shape) in \(from) and \(b.shape) in \(to)", path: path)
            }
            let x = try a.floats(), y = try b.floats()
            let difference = UnsafeMutableBufferPointer<Float>.allocate(capacity: x.count)
            for index in x.indices { difference[index] = y[index] - x[index] }
            differences.append((tensorName, a.shape, difference))
        }
        let pin = try pinWriter()
        defer { pin.release() }
        let written = try TensorFiles.write(into: self, pin: pin, kind: "delta", tensors: differences.map { item in
            (item.name, item.shape, ElementType.float32, SketchDType.float32, UnsafeRawBufferPointer(item.values))
        }, extra: ["from-hash": base.contentHash, "to-hash": target.contentHash])
        return StagedTensorSet(entry: written, sourceHashes: (base.contentHash, target.contentHash))
    }

    private func commitTensorSet(_ change: StoreChange, detail: String?) throws -> Int {
        do {
            return try commit(changes: [change], detail: detail).version
        } catch {
            for file in change.stagedFiles { try? FileSystem.remove(absolute(file)) }
            throw error
        }
    }
}

/// Writing and reading tensor-set files (Spec §6).
enum TensorFiles {
    /// Dataset name of a tensor: `%` → `%25`, `/` → `%2F`, and `.` alone → `%2E`.
    static func datasetName(_ name: String) -> String {
        if name == "." { return "%2E" }
        return name.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
    }

    typealias Source = (name: String, shape: [Int], type: ElementType, dtype: SketchDType, bytes: UnsafeRawBufferPointer)

    /// Writes, publishes and describes a tensor-set file; the content hash is computed over
    /// the stored bytes while they are written.
    static func write(into store: Store, pin: WriterPin, kind: String, tensors: [Source], extra: [String: String]) throws -> Manifest.TensorSetEntry {
        let sorted = tensors.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        for index in sorted.indices.dropFirst() where sorted[index].name.utf8.elementsEqual(sorted[index - 1].name.utf8) {
            throw StoreError(.invalidInput, "tensor name \"\(sorted[index].name)\" appears twice")
        }
        var hash = SHA256()
        var entries: [Manifest.TensorEntry] = []
        // Spec §2.4: small mixed-dtype datasets, each aligned so it can be mapped.
        let writer = try DataFileWriter(store: store, kind: FileKinds.tensors, pin: pin, alignment: .everyObject)
        try writer.setRootAttribute("kind", kind)
        for (key, value) in extra { try writer.setRootAttribute(key, value) }
        try writer.createGroup("tensors")
        for tensor in sorted {
            let count = tensor.shape.reduce(1, *)
            let stored = UnsafeMutableRawBufferPointer.allocate(byteCount: count * tensor.dtype.byteWidth, alignment: 64)
            defer { stored.deallocate() }
            if let bad = try ElementConversion.convert(tensor.bytes, from: tensor.type, to: tensor.dtype.elementType, into: stored) {
                throw StoreError(.invalidInput, "tensor \(tensor.name) has a non-finite value (NaN, ±Inf or overflow of \(tensor.dtype.rawValue)) at flat index \(bad)")
            }
            let sourceDtype = tensor.type == tensor.dtype.elementType ? nil : tensor.type.rawValue
            var attributes = [("name", tensor.name)]
            if let sourceDtype { attributes.append(("source-dtype", sourceDtype)) }
            let checksum = try writer.write(bytes: UnsafeRawBufferPointer(stored), as: tensor.dtype.storageType,
                                            dataset: "tensors/" + datasetName(tensor.name), shape: tensor.shape, attributes: attributes)
            ContentHash.add(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, bytes: UnsafeRawBufferPointer(stored), to: &hash)
            entries.append(.init(name: tensor.name, dtype: tensor.dtype.rawValue, shape: tensor.shape, checksum: checksum, sourceDtype: sourceDtype))
        }
        let contentHash = ContentHash.finish(hash)
        try writer.setRootAttribute("content-hash", contentHash)
        let published = try writer.publish()
        return Manifest.TensorSetEntry(file: published.file, kind: kind, contentHash: contentHash, from: nil, to: nil,
                                       tensors: entries, size: published.size, fileChecksum: published.fileChecksum)
    }

    static func load(path: String, tensor: Manifest.TensorEntry, dtype: SketchDType, alwaysVerify: Bool = false) throws -> RowStorage {
        let name = datasetName(tensor.name)
        let location = path + ":/tensors/" + name
        let file = try SegmentFiles.open(path, expected: .tensorSet)
        let count = tensor.shape.reduce(1, *)
        let storage = try withContext(.corrupt, "cannot read tensor", path: location) { () throws -> RowStorage in
            let root = try file.root()
            let dataset = try root.openDataset("tensors/" + name)
            try FileHeader.checkDataset(dataset, expected: .tensor, path: path)
            guard try dataset.shape() == tensor.shape else {
                throw StoreError(.corrupt, "tensor has shape \(try dataset.shape()), the manifest says \(tensor.shape)", path: location)
            }
            let attribute = try dataset.stringAttribute("checksum")
            guard attribute == tensor.checksum else {
                throw StoreError(.corrupt, "tensor checksum attribute is \(attribute ?? "(none)"), the manifest says \(tensor.checksum)", path: location)
            }
            let storage: RowStorage
            switch count == 0 ? .failure(MappingRefusalText.empty) : try dataset.mappableExtent(as: dtype.storageType).mapError({ MappingRefusalText($0.description) }) {
            case .success(let extent):
                storage = RowStorage(mapping: try MappedFile(path: path, offset: extent.offset, length: extent.length))
            case .failure(let refusal):
                try DataFileCheck.fits(dataset, in: path, location: location)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count * dtype.byteWidth, alignment: 64)
                if count > 0 {
                    do { try dataset.readBytes(into: buffer, as: dtype.storageType) } catch { buffer.deallocate(); throw error }
                }
                storage = RowStorage(owned: buffer, reason: refusal.text)
            }
            try dataset.close()
            try root.close()
            return storage
        }
        try? file.close()
        let key = location + "@" + tensor.checksum
        if alwaysVerify || !VerifiedDatasets.contains(key) {
            let computed = CRC32C.formatted(CRC32C.checksum(storage.bytes))
            guard computed == tensor.checksum else {
                throw SegmentFiles.mismatch(path, "tensors/" + name, expected: tensor.checksum, found: computed)
            }
            VerifiedDatasets.insert(key)
        }
        return storage
    }
}

struct MappingRefusalText: Error {
    let text: String
    init(_ text: String) { self.text = text }
    static let empty = MappingRefusalText("the tensor has no elements")
}

/// The content hash of Spec §6.
enum ContentHash {
    static func start() -> SHA256 { SHA256() }

    static func add(name: String, dtype: SketchDType, shape: [Int], bytes: UnsafeRawBufferPointer, to hash: inout SHA256) {
        var header: [UInt8] = Array(name.utf8) + [0] + Array(dtype.rawValue.utf8) + [0]
        func append(_ value: Int) { withUnsafeBytes(of: UInt64(value).littleEndian) { header += $0 } }
        append(shape.count)
        shape.forEach(append)
        append(bytes.count)
        hash.update(data: header)
        hash.update(bufferPointer: bytes)
    }

    static func finish(_ hash: SHA256) -> String {
        "sha256:" + hash.finalize().map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }
}
