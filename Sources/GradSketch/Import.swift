import Foundation
public import GradSketchStore
import GradSketchInterchange

/// The on-disk layouts of other tools' gradients that ``Store/importRows(format:from:into:options:progress:)``
/// reads (Spec/import.md).
public enum ImportFormat: String, Sendable, CaseIterable, Codable {
    /// A TRAK `MmapSaver` directory (MadryLab/trak).
    case trak
    /// LESS `collect_grad_reps` output: `torch.save` files (princeton-nlp/LESS).
    case less
    /// A Bergson gradient index: `info.json` + `gradients.bin` (EleutherAI/bergson).
    case bergson
    /// A `.npy` file or a directory of `.npy` shards.
    case npy
    /// A `.safetensors` file or a directory of `.safetensors` shards.
    case safetensors

    /// The format of `path`, from its name and contents (Spec/import.md §1).
    ///
    /// - Throws: `.invalidInput` naming what was looked for when no format matches.
    public static func detect(path: String) throws -> ImportFormat {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw StoreError(.invalidInput, "import source \(path) does not exist")
        }
        if !isDirectory.boolValue {
            switch (path as NSString).pathExtension.lowercased() {
            case "pt": return .less
            case "npy": return .npy
            case "safetensors": return .safetensors
            default: throw StoreError(.invalidInput, "cannot tell the format of \(path): expected a .pt, .npy or .safetensors file, or a TRAK, LESS, Bergson or shard directory")
            }
        }
        let names = (try? manager.contentsOfDirectory(atPath: path)) ?? []
        if names.contains("metadata.json") { return .trak }
        if names.contains("info.json") && names.contains("gradients.bin") { return .bergson }
        if names.contains(where: { LessLayout.chunkNumber($0) != nil }) { return .less }
        if names.contains(where: { name in
            name.hasPrefix("dim") && Int(name.dropFirst(3)) != nil
                && ((try? manager.contentsOfDirectory(atPath: path + "/" + name)) ?? []).contains { LessLayout.chunkNumber($0) != nil }
        }) { return .less }
        if names.contains(where: { $0.hasSuffix(".npy") }) { return .npy }
        if names.contains(where: { $0.hasSuffix(".safetensors") }) { return .safetensors }
        if names.contains(where: { manager.fileExists(atPath: path + "/" + $0 + "/info.json") }) { return .bergson }
        throw StoreError(.invalidInput, "cannot tell the format of directory \(path): expected metadata.json (trak), info.json + gradients.bin (bergson), grads-<n>.pt (less), or .npy / .safetensors shards")
    }
}

/// What an import reads besides the rows, and how it stores them.
public struct ImportOptions: Sendable {
    /// A text file of ids, one per line, one for each row of the source in source order
    /// (for TRAK: one per training example, featurized or not). Default: per format (Spec/import.md).
    public var ids: String?
    /// Stored dtype when the set is created (default: the natural one for the source).
    public var dtype: SketchDType?
    /// Keep rows with NaN or ±Inf (the set must allow them); refused otherwise.
    public var allowNonfinite: Bool
    /// TRAK: the model id (checkpoint) directory to read (default: the lowest one present).
    public var modelID: String?
    /// TRAK: `features` (default) or `grads`.
    public var array: String?
    /// LESS (any format): the checkpoint these gradients were computed at, kept as the set
    /// attribute `checkpoint`.
    public var checkpoint: String?
    /// Bergson: import only this module's columns (default: all modules, concatenated in the
    /// index's order).
    public var module: String?
    /// safetensors: the tensor to read from each file (default: the only 2-D tensor).
    public var tensor: String?
    /// Extra set attributes for a new set (the import's own keys win).
    public var attributes: [String: JSONValue]
    /// The version's detail (default: "import FORMAT from NAME").
    public var detail: String?
    /// Rows are read and appended in batches of about this many bytes.
    public var batchBytes: Int

    public init(ids: String? = nil, dtype: SketchDType? = nil, allowNonfinite: Bool = false, modelID: String? = nil,
                array: String? = nil, checkpoint: String? = nil, module: String? = nil, tensor: String? = nil,
                attributes: [String: JSONValue] = [:], detail: String? = nil, batchBytes: Int = 64 << 20) {
        self.ids = ids
        self.dtype = dtype
        self.allowNonfinite = allowNonfinite
        self.modelID = modelID
        self.array = array
        self.checkpoint = checkpoint
        self.module = module
        self.tensor = tensor
        self.attributes = attributes
        self.detail = detail
        self.batchBytes = batchBytes
    }

    /// Options from a JSON object (the C ABI's `options_json`, Spec/c-api.md): keys `ids`,
    /// `dtype`, `allow_nonfinite`, `model_id`, `array`, `checkpoint`, `module`, `tensor`,
    /// `attributes`, `detail`, `batch_bytes`. Unknown keys are refused, so a typo is not
    /// silently ignored.
    public init(json text: String) throws {
        self.init()
        guard case .object(let members) = try JSONValue.parse(text) else {
            throw StoreError(.invalidInput, "import options must be a JSON object, found \(text.prefix(40))")
        }
        func string(_ key: String, _ value: JSONValue) throws -> String {
            switch value {
            case .string(let text): return text
            case .integer(let number): return String(number)
            default: throw StoreError(.invalidInput, "import option \(key) must be a string, found \(value.jsonText)")
            }
        }
        for (key, value) in members {
            switch key {
            case "ids": ids = try string(key, value)
            case "dtype": dtype = try SketchDType(parsing: try string(key, value))
            case "allow_nonfinite":
                guard case .bool(let flag) = value else { throw StoreError(.invalidInput, "import option allow_nonfinite must be true or false, found \(value.jsonText)") }
                allowNonfinite = flag
            case "model_id": modelID = try string(key, value)
            case "array": array = try string(key, value)
            case "checkpoint": checkpoint = try string(key, value)
            case "module": module = try string(key, value)
            case "tensor": tensor = try string(key, value)
            case "detail": detail = try string(key, value)
            case "attributes":
                guard case .object(let given) = value else { throw StoreError(.invalidInput, "import option attributes must be a JSON object, found \(value.jsonText)") }
                attributes = given
            case "batch_bytes":
                guard case .integer(let bytes) = value, bytes > 0 else { throw StoreError(.invalidInput, "import option batch_bytes must be a positive integer, found \(value.jsonText)") }
                batchBytes = Int(bytes)
            default:
                throw StoreError(.invalidInput, "unknown import option \"\(key)\": expected ids, dtype, allow_nonfinite, model_id, array, checkpoint, module, tensor, attributes, detail or batch_bytes")
            }
        }
    }
}

/// Where an import stands: `done` of `total` rows, in a stage ("read", "append", "commit").
public struct ImportProgress: Sendable {
    public let done: Int
    public let total: Int
    public let stage: String
    /// Bytes of source rows read so far.
    public let bytes: Int
}

/// Thrown when the progress callback asks to stop; nothing was committed.
public struct ImportCancelled: Error, CustomStringConvertible {
    public var description: String { "cancelled" }
}

/// What an import committed.
public struct ImportReport: Sendable, Codable {
    public let set: String
    public let version: Int
    public let rows: Int
    public let k: Int
    public let format: ImportFormat
    /// The files the rows came from, in import order.
    public let sources: [String]
    /// Where the ids came from: a file path, or "row-index".
    public let ids: String
    /// Source rows not imported (TRAK rows that were never featurized).
    public let skippedRows: Int
    /// What the source tool records about its projection (also kept in the set attribute
    /// `source_projection`), or nil when it records nothing. Not a GradSketch projection.
    public let projection: JSONValue?
    /// The set attributes the import gave a new set.
    public let attributes: [String: JSONValue]
    public let bytes: Int
    public let seconds: Double

    enum CodingKeys: String, CodingKey {
        case set, version, rows, k, format, sources, ids, skippedRows = "skipped_rows", projection, attributes, bytes, seconds
    }

    /// `projection` is written as null when absent, so every report has the same keys.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(set, forKey: .set)
        try container.encode(version, forKey: .version)
        try container.encode(rows, forKey: .rows)
        try container.encode(k, forKey: .k)
        try container.encode(format, forKey: .format)
        try container.encode(sources, forKey: .sources)
        try container.encode(ids, forKey: .ids)
        try container.encode(skippedRows, forKey: .skippedRows)
        try container.encode(projection ?? .null, forKey: .projection)
        try container.encode(attributes, forKey: .attributes)
        try container.encode(bytes, forKey: .bytes)
        try container.encode(seconds, forKey: .seconds)
    }
}

extension Store {
    /// Imports gradients another tool wrote at `path` into sketch set `set` as ONE version,
    /// streaming: rows are read from the mapped source files in batches of about
    /// `options.batchBytes` and appended through one ``AppendSession``.
    ///
    /// Everything that can be checked before reading rows (layout, dtypes, shapes against the
    /// source's metadata and file sizes, widths of all shards, the ids' count) is checked first;
    /// any failure, a refused row (NaN without `allowNonfinite`, a repeated id) or a cancel
    /// from `progress` (return false) commits nothing.
    @discardableResult
    public func importRows(format: ImportFormat, from path: String, into set: String, options: ImportOptions = .init(),
                           progress: ((ImportProgress) -> Bool)? = nil) throws -> ImportReport {
        let started = Date()
        let plan: ImportPlan
        do {
            plan = try ImportPlan.make(format: format, path: path, options: options)
        } catch let error as InterchangeError {
            throw StoreError(.invalidInput, error.description)
        }
        var attributes = options.attributes
        attributes["import_format"] = .string(format.rawValue)
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        attributes["import_source"] = .string((absolute as NSString).standardizingPath)
        if let projection = plan.projection { attributes["source_projection"] = projection }
        if let checkpoint = options.checkpoint { attributes["checkpoint"] = .string(checkpoint) }
        let session = try beginAppend(to: set, options: SketchSetOptions(dtype: options.dtype, allowNonfinite: options.allowNonfinite, attributes: attributes))
        var done = 0, bytes = 0
        let total = plan.totalRows
        func report(_ stage: String) throws {
            if let progress, !progress(ImportProgress(done: done, total: total, stage: stage, bytes: bytes)) { throw ImportCancelled() }
        }
        do {
            try report("append")
            // Batches of about batchBytes, across shard boundaries (a segment per batch, not per
            // small shard): a batch inside one contiguous chunk is appended in place from the
            // mapping, any other is gathered into one reused buffer.
            let width = plan.k * plan.elementType.byteWidth
            let batchRows = max(1, options.batchBytes / max(1, width))
            var buffer: [UInt8] = []
            var chunkIndex = 0, position = 0
            while done < total {
                let count = min(batchRows, total - done)
                let ids = Array(plan.ids[done..<(done + count)])
                let chunk = plan.chunks[chunkIndex]
                if chunk.isContiguous && count <= chunk.rowCount - position {
                    let start = position * width
                    let input = try RowInput(bytes: UnsafeRawBufferPointer(rebasing: chunk.bytes[start..<(start + count * width)]),
                                             elementType: plan.elementType, rowCount: count, k: plan.k)
                    try session.append(input, annotations: RowAnnotations(ids: ids))
                    chunk.release(rows: position..<(position + count))
                    position += count
                } else {
                    buffer.removeAll(keepingCapacity: true)
                    buffer.reserveCapacity(count * width)
                    var gathered = 0
                    while gathered < count {
                        let current = plan.chunks[chunkIndex]
                        let take = min(count - gathered, current.rowCount - position)
                        for index in position..<(position + take) {
                            let start = (current.selectedRows?[index] ?? index) * current.rowStride + current.columnOffset
                            buffer.append(contentsOf: current.bytes[start..<(start + width)])
                        }
                        current.release(rows: position..<(position + take))
                        gathered += take
                        position += take
                        if position == current.rowCount && chunkIndex + 1 < plan.chunks.count { chunkIndex += 1; position = 0 }
                    }
                    try buffer.withUnsafeBytes { raw in
                        let input = try RowInput(bytes: raw, elementType: plan.elementType, rowCount: count, k: plan.k)
                        try session.append(input, annotations: RowAnnotations(ids: ids))
                    }
                }
                if position == plan.chunks[chunkIndex].rowCount && chunkIndex + 1 < plan.chunks.count { chunkIndex += 1; position = 0 }
                done += count
                bytes += count * width
                try report("append")
            }
            try report("commit")
        } catch {
            session.abort()
            throw error
        }
        let committed = try session.commit(detail: options.detail ?? "import \(format.rawValue) from \((path as NSString).lastPathComponent)")
        _ = progress?(ImportProgress(done: done, total: total, stage: "done", bytes: bytes))
        return ImportReport(set: set, version: committed.version, rows: done, k: plan.k, format: format, sources: plan.sources,
                            ids: plan.idsSource, skippedRows: plan.skippedRows, projection: plan.projection, attributes: attributes,
                            bytes: bytes, seconds: Date().timeIntervalSince(started))
    }
}
