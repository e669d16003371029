import Foundation

/// The JSON content of one version's manifest (Spec §7.1).
///
/// Field names follow the Spec's JSON keys exactly. Keys this implementation does not know
/// (from a newer minor version or another writer) are ignored when reading and written back
/// unchanged when a version is committed on top of this one (``ManifestUnknownKeys``).
package struct Manifest: Codable, Sendable, Equatable {
    public var format: String = StoreFormat.name
    public var formatVersion: String = StoreFormat.versionString
    public var version: Int
    public var parent: Int?
    public var created: String
    public var creator: String = StoreFormat.creator
    public var creatorVersion: String = StoreFormat.creatorVersion
    public var change: Change
    public var extensions: [Extension] = []
    public var tensorSets: [String: TensorSetEntry] = [:]
    public var sketchSets: [String: SketchSetEntry] = [:]
    /// Saved selections and valuations, by name (format 1.1, Spec §11); absent when none.
    public var results: [String: ResultEntry]?
    /// The JSON this manifest was read from, for the keys it holds that this implementation
    /// does not know; not part of the JSON encoding or of equality.
    var source = SourceJSON()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format, version, parent, created, creator, change, extensions, results
        case formatVersion = "format_version", creatorVersion = "creator_version"
        case tensorSets = "tensor_sets", sketchSets = "sketch_sets"
    }

    /// A saved selection or valuation of a set's rows (Spec §11).
    public struct ResultEntry: Codable, Sendable, Equatable {
        public var file: String
        public var size: Int?
        public var fileChecksum: String?
        public var checksums: [String: String]
        /// e.g. `select/greedy`, `density`, `in-run-shapley`.
        public var method: String
        /// The set and version the result was computed from.
        public var set: String
        public var setVersion: Int
        public var count: Int
        public var parameters: [String: JSONValue]
        enum CodingKeys: String, CodingKey, CaseIterable {
            case file, size, checksums, method, set, count, parameters
            case fileChecksum = "file_checksum", setVersion = "set_version"
        }
    }

    /// What a version changed, for `log`.
    public struct Change: Codable, Sendable, Equatable {
        public var operation: String
        public var set: String?
        public var rowsAdded: Int = 0
        public var rowsDeleted: Int = 0
        public var writer: String
        public var detail: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case operation, set, writer, detail
            case rowsAdded = "rows_added", rowsDeleted = "rows_deleted"
        }

        public init(operation: String, set: String? = nil, rowsAdded: Int = 0, rowsDeleted: Int = 0, writer: String, detail: String? = nil) {
            self.operation = operation
            self.set = set
            self.rowsAdded = rowsAdded
            self.rowsDeleted = rowsDeleted
            self.writer = writer
            self.detail = detail
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            operation = try c.decode(String.self, forKey: .operation)
            set = try c.decodeIfPresent(String.self, forKey: .set)
            rowsAdded = try c.decodeIfPresent(Int.self, forKey: .rowsAdded) ?? 0
            rowsDeleted = try c.decodeIfPresent(Int.self, forKey: .rowsDeleted) ?? 0
            writer = try c.decodeIfPresent(String.self, forKey: .writer) ?? ""
            detail = try c.decodeIfPresent(String.self, forKey: .detail)
        }
    }

    /// An optional feature a version uses (Spec §2.2).
    public struct Extension: Codable, Sendable, Equatable {
        public var name: String
        public var mustUnderstand: Bool
        enum CodingKeys: String, CodingKey, CaseIterable { case name, mustUnderstand = "must_understand" }
    }

    public struct TensorEntry: Codable, Sendable, Equatable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var checksum: String
        public var sourceDtype: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case name, dtype, shape, checksum, sourceDtype = "source_dtype" }
    }

    public struct TensorSetEntry: Codable, Sendable, Equatable {
        public var file: String
        public var kind: String
        public var contentHash: String
        public var from: String?
        public var to: String?
        public var tensors: [TensorEntry]
        public var size: Int?
        public var fileChecksum: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case file, kind, from, to, tensors, size, contentHash = "content_hash", fileChecksum = "file_checksum" }
    }

    public struct DeletionEntry: Codable, Sendable, Equatable {
        public var file: String
        public var count: Int
        public var checksum: String
        public var size: Int?
        public var fileChecksum: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case file, count, checksum, size, fileChecksum = "file_checksum" }
    }

    public struct SegmentEntry: Codable, Sendable, Equatable {
        public var file: String
        public var rows: Int
        public var checksums: [String: String]
        public var metadataKind: String?
        public var deletions: DeletionEntry?
        public var size: Int?
        public var fileChecksum: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case file, rows, checksums, deletions, size, metadataKind = "metadata_kind", fileChecksum = "file_checksum" }

        public init(file: String, rows: Int, checksums: [String: String], metadataKind: String?, deletions: DeletionEntry?,
                    size: Int? = nil, fileChecksum: String? = nil) {
            self.file = file
            self.rows = rows
            self.checksums = checksums
            self.metadataKind = metadataKind
            self.deletions = deletions
            self.size = size
            self.fileChecksum = fileChecksum
        }

        // `deletions` and `metadata_kind` are written as explicit nulls (Spec §7.1).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(file, forKey: .file)
            try c.encode(rows, forKey: .rows)
            try c.encode(checksums, forKey: .checksums)
            try c.encode(metadataKind, forKey: .metadataKind)
            try c.encode(deletions, forKey: .deletions)
            try c.encodeIfPresent(size, forKey: .size)
            try c.encodeIfPresent(fileChecksum, forKey: .fileChecksum)
        }

        /// Rows of this segment still live in this version.
        public var liveRows: Int { rows - (deletions?.count ?? 0) }
        /// The segment's id (its file name without directory and extension).
        public var segmentID: String { String(file.split(separator: "/").last ?? "").replacingOccurrences(of: ".h5", with: "") }
    }

    /// A search index over a prefix of a set's segments (Spec §10).
    public struct IndexEntry: Codable, Sendable, Equatable {
        public var file: String
        public var size: Int?
        public var fileChecksum: String?
        /// CRC-32C of each dataset of the index file.
        public var checksums: [String: String]
        /// `ivf-int8`: L2 k-means lists, residuals coded as int8 with one scale per row.
        public var kind: String
        /// `ip` or `cosine`.
        public var metric: String
        public var lists: Int
        /// Rows the index holds (the live rows of `segments` when it was built).
        public var rows: Int
        /// The version whose rows the index was built from.
        public var builtOnVersion: Int
        /// Files of the segments the index covers: always the first segments of the set, in order.
        public var segments: [String]
        /// Search parameters chosen at build time (`default_nprobe`, `rerank`, `recall_target`, `tuning`, …).
        public var parameters: [String: JSONValue]
        /// Kind `ivf-rq4` (Spec §10.3): the index's parts in order; their segments concatenated
        /// are `segments`, their rows summed are `rows`. Nil for `ivf-int8`, whose `file` holds
        /// every row; for `ivf-rq4`, `file` is the quantizer file.
        public var parts: [IndexPartEntry]?
        enum CodingKeys: String, CodingKey, CaseIterable {
            case file, size, checksums, kind, metric, lists, rows, segments, parameters, parts
            case fileChecksum = "file_checksum", builtOnVersion = "built_on_version"
        }

        public init(file: String, size: Int?, fileChecksum: String?, checksums: [String: String], kind: String, metric: String,
                    lists: Int, rows: Int, builtOnVersion: Int, segments: [String], parameters: [String: JSONValue],
                    parts: [IndexPartEntry]? = nil) {
            self.file = file
            self.size = size
            self.fileChecksum = fileChecksum
            self.checksums = checksums
            self.kind = kind
            self.metric = metric
            self.lists = lists
            self.rows = rows
            self.builtOnVersion = builtOnVersion
            self.segments = segments
            self.parameters = parameters
            self.parts = parts
        }
    }

    /// One part of an `ivf-rq4` index (Spec §10.3): the 4-bit codes of the rows of a contiguous
    /// run of the set's segments, grouped by the index's lists.
    public struct IndexPartEntry: Codable, Sendable, Equatable {
        public var file: String
        public var size: Int?
        public var fileChecksum: String?
        /// CRC-32C of each dataset of the part file.
        public var checksums: [String: String]
        /// Rows the part holds (the live rows of its segments when it was built).
        public var rows: Int
        /// Files of the segments the part covers, in set order.
        public var segments: [String]
        /// The version whose rows the part was built from.
        public var builtOnVersion: Int
        enum CodingKeys: String, CodingKey, CaseIterable {
            case file, size, checksums, rows, segments
            case fileChecksum = "file_checksum", builtOnVersion = "built_on_version"
        }

        public init(file: String, size: Int?, fileChecksum: String?, checksums: [String: String], rows: Int, segments: [String], builtOnVersion: Int) {
            self.file = file
            self.size = size
            self.fileChecksum = fileChecksum
            self.checksums = checksums
            self.rows = rows
            self.segments = segments
            self.builtOnVersion = builtOnVersion
        }
    }

    /// One file of a set's segment list (format 1.2, Spec §7.1): `count` consecutive segment
    /// entries of the set, and the id hash table of their rows.
    public struct SegmentListEntry: Codable, Sendable, Equatable {
        public var file: String
        /// Segment entries the file holds.
        public var count: Int
        /// Rows of those segments, deleted ones included (the length of the hash table).
        public var rows: Int
        /// `entries`, `id-hashes`, `id-hash-positions`.
        public var checksums: [String: String]
        public var size: Int?
        public var fileChecksum: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case file, count, rows, checksums, size, fileChecksum = "file_checksum" }
    }

    public struct SketchSetEntry: Codable, Sendable, Equatable {
        public var k: Int
        public var dtype: String
        public var allowNonfinite: Bool
        public var attributes: [String: JSONValue]
        /// Every segment of the set in order, however the manifest stores them: inline
        /// (formats 1.0, 1.1) or in segment-list files (1.2), which the reader expands.
        public var segments: [SegmentEntry]
        /// The segment-list files `segments` was read from or written to (format 1.2); nil
        /// for a set whose segments are listed inline. Set by the store when it reads and
        /// commits manifests; a change to `segments` makes the commit write new lists.
        public var segmentLists: [SegmentListEntry]?
        /// Search indexes over this set, by name (format 1.1, Spec §10); absent when empty.
        public var indexes: [String: IndexEntry] = [:]
        enum CodingKeys: String, CodingKey, CaseIterable {
            case k, dtype, attributes, segments, indexes, allowNonfinite = "allow_nonfinite", segmentLists = "segment_lists"
        }

        public init(k: Int, dtype: String, allowNonfinite: Bool, attributes: [String: JSONValue], segments: [SegmentEntry]) {
            self.k = k
            self.dtype = dtype
            self.allowNonfinite = allowNonfinite
            self.attributes = attributes
            self.segments = segments
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(k, forKey: .k)
            try c.encode(dtype, forKey: .dtype)
            try c.encode(allowNonfinite, forKey: .allowNonfinite)
            try c.encode(attributes, forKey: .attributes)
            // A set in segment lists does not repeat its segments inline: that is what keeps
            // a commit's manifest small however many segments the set has.
            if let segmentLists {
                try c.encode(segmentLists, forKey: .segmentLists)
            } else {
                try c.encode(segments, forKey: .segments)
            }
            // Written only when there is an index, so stores without one stay 1.0-identical.
            if !indexes.isEmpty { try c.encode(indexes, forKey: .indexes) }
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            k = try c.decode(Int.self, forKey: .k)
            dtype = try c.decode(String.self, forKey: .dtype)
            allowNonfinite = try c.decodeIfPresent(Bool.self, forKey: .allowNonfinite) ?? false
            attributes = try c.decodeIfPresent([String: JSONValue].self, forKey: .attributes) ?? [:]
            segmentLists = try c.decodeIfPresent([SegmentListEntry].self, forKey: .segmentLists)
            // With segment lists the segments are filled in from the list files (Store.readManifest).
            segments = segmentLists == nil ? try c.decode([SegmentEntry].self, forKey: .segments) : []
            indexes = try c.decodeIfPresent([String: IndexEntry].self, forKey: .indexes) ?? [:]
        }

        /// Live rows in this version.
        public var rowCount: Int { segments.reduce(0) { $0 + $1.liveRows } }
        /// Names of the per-row float columns any segment has, sorted.
        public var columnNames: [String] {
            Set(segments.flatMap { $0.checksums.keys.filter { $0.hasPrefix("columns/") } }.map { String($0.dropFirst(8)) }).sorted()
        }
        public var hasLabels: Bool { segments.contains { $0.checksums["labels"] != nil } }
        public var hasMetadata: Bool { segments.contains { $0.checksums["metadata"] != nil } }
    }

    /// Every data file this version references, relative to the store root: the files of
    /// every registered kind (``FileKinds``).
    public var referencedFiles: Set<String> { FileKinds.referencedFiles(in: self) }

    /// Sorted-key compact JSON, as written into manifest files.
    func encoded() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let known = String(decoding: try encoder.encode(self), as: UTF8.self)
        guard let source = source.text else { return known }
        return try ManifestUnknownKeys.restore(into: known, from: source)
    }

    static func decode(_ text: String) throws -> Manifest {
        var manifest = try JSONDecoder().decode(Manifest.self, from: Data(text.utf8))
        manifest.source = SourceJSON(text: text)
        return manifest
    }
}

/// Constants of the format this code implements (Spec §2).
public enum StoreFormat {
    public static let name = "gradsketch"
    public static let major = 1
    public static let minor = 2
    public static var versionString: String { "\(major).\(minor)" }
    public static let creator = "gradsketch"
    public static let creatorVersion = "0.1.0"
    /// Extensions this implementation understands: `segment-lists` (Spec §7.1), which a
    /// 1.2 writer declares with `must_understand` so that 1.0/1.1 readers, which expect every
    /// set's segments inline, refuse the version instead of reading a set as empty.
    public static let knownExtensions: Set<String> = [SegmentLists.extensionName]
}
