import GradSketchHDF5

/// The `encoding-type` values of Spec §2.1 and §5–§9.
enum EncodingType: String {
    case store, manifest, sketchSegment = "sketch-segment", tensorSet = "tensor-set"
    case rowDeletions = "row-deletions", packedStore = "packed-store"
    case denseRows = "dense-rows", rowIDs = "row-ids", rowLabels = "row-labels"
    case rowMetadata = "row-metadata", rowColumn = "row-column", tensor
    case deletedRows = "deleted-rows", manifestJSON = "manifest-json"
    case ivfIndex = "ivf-index", ivfCentroids = "ivf-centroids", ivfListOffsets = "ivf-list-offsets"
    case ivfCodes = "ivf-codes", ivfCodeScales = "ivf-code-scales", ivfRowPositions = "ivf-row-positions"
    case result, resultPositions = "result-positions", resultScores = "result-scores"
    case resultSegments = "result-segments", resultAddresses = "result-addresses"
    case blockChecksums = "block-checksums"
    // Format 1.2: id hash tables (§5.1) and segment lists (§7.1).
    case rowIDHashes = "row-id-hashes", rowIDHashRows = "row-id-hash-rows"
    case segmentList = "segment-list", segmentListJSON = "segment-list-json", segmentListPositions = "segment-list-positions"
    // Partitioned 4-bit indexes (§10.3): one quantizer file and part files.
    case ivfRQ4Quantizer = "ivf-rq4-quantizer", ivfGroupCentroids = "ivf-group-centroids", ivfGroupOffsets = "ivf-group-offsets"
    case ivfRQ4Part = "ivf-rq4-part", ivfRQ4Codes = "ivf-rq4-codes", ivfRQ4Lows = "ivf-rq4-lows", ivfRQ4Steps = "ivf-rq4-steps"
}

/// Writing and checking the attributes every store file and dataset carries (Spec §2.1).
enum FileHeader {
    static let encodingVersion = "1.0"

    /// Writes the root attributes of Spec §2.1 on `root`.
    static func write<G: HDF5Object & ~Copyable>(on root: borrowing G, type: EncodingType) throws {
        try write(on: root, encoding: type.rawValue)
    }

    /// ``write(on:type:)`` for an encoding type given by name (a registered file kind's).
    static func write<G: HDF5Object & ~Copyable>(on root: borrowing G, encoding type: String) throws {
        try root.setAttribute("format", StoreFormat.name)
        try root.setAttribute("format-version", StoreFormat.versionString)
        try root.setAttribute("encoding-type", type)
        try root.setAttribute("encoding-version", encodingVersion)
        try root.setAttribute("creator", StoreFormat.creator)
        try root.setAttribute("creator-version", StoreFormat.creatorVersion)
        try root.setAttribute("hdf5-version", HDF5File.libraryVersion)
    }

    /// Marks a dataset with its encoding type, version and checksum.
    static func mark(_ dataset: borrowing Dataset, type: EncodingType, checksum: String) throws {
        try mark(dataset, encoding: type.rawValue, checksum: checksum)
    }

    static func mark(_ dataset: borrowing Dataset, encoding type: String, checksum: String) throws {
        try dataset.setAttribute("encoding-type", type)
        try dataset.setAttribute("encoding-version", encodingVersion)
        try dataset.setAttribute("checksum", checksum)
    }

    /// Checks a file's root attributes: the format name, a major version this code reads,
    /// and the expected encoding type (Spec §2.2).
    static func check(_ root: borrowing Group, expected type: EncodingType) throws {
        try check(root, expectedEncoding: type.rawValue)
    }

    /// ``check(_:expected:)`` for an encoding type given by name (a registered file kind's).
    static func check(_ root: borrowing Group, expectedEncoding type: String) throws {
        let path = root.file.path
        guard let format = try root.stringAttribute("format") else {
            throw StoreError(.notAStore, "not a GradSketch file: expected a root attribute format=\"gradsketch\", found none", path: path)
        }
        guard format == StoreFormat.name else {
            throw StoreError(.notAStore, "not a GradSketch file: expected format \"gradsketch\", found \"\(format)\"", path: path)
        }
        try checkVersion(try root.stringAttribute("format-version"), what: "format-version", path: path)
        let found = try root.stringAttribute("encoding-type") ?? "(none)"
        guard found == type else {
            throw StoreError(.corrupt, "expected encoding-type \"\(type)\", found \"\(found)\"", path: path)
        }
        try checkVersion(try root.stringAttribute("encoding-version"), what: "encoding-version", path: path)
    }

    /// Checks a dataset's own `encoding-type` and `encoding-version` (Spec §2.1): readers
    /// dispatch on them, so a dataset of another type, or of an encoding whose MAJOR is newer
    /// than this reader's, is refused rather than read as if it were the expected one.
    static func checkDataset(_ dataset: borrowing Dataset, expected type: EncodingType, path: String) throws {
        try checkDataset(dataset, expectedEncoding: type.rawValue, path: path)
    }

    static func checkDataset(_ dataset: borrowing Dataset, expectedEncoding type: String, path: String) throws {
        let location = path + ":" + dataset.objectPath
        let found = try withContext(.corrupt, "cannot read the dataset's encoding-type", path: location) {
            try dataset.stringAttribute("encoding-type")
        }
        guard found == type else {
            throw StoreError(.corrupt, "dataset encoding-type must be \"\(type)\", found \(found.map { "\"\($0)\"" } ?? "none")", path: location)
        }
        let version = try withContext(.corrupt, "cannot read the dataset's encoding-version", path: location) {
            try dataset.stringAttribute("encoding-version")
        }
        try checkVersion(version, what: "dataset encoding-version", path: location)
    }

    /// Refuses a version whose major number is greater than the one implemented.
    static func checkVersion(_ text: String?, what: String, path: String) throws {
        guard let text else {
            throw StoreError(.corrupt, "missing \(what) attribute", path: path)
        }
        let parts = text.split(separator: ".")
        guard parts.count >= 2, let major = Int(parts[0]), Int(parts[1]) != nil else {
            throw StoreError(.corrupt, "\(what) must be MAJOR.MINOR, found \"\(text)\"", path: path)
        }
        guard major <= StoreFormat.major else {
            throw StoreError(.unsupportedVersion,
                "\(what) \(text) is newer than this reader supports (\(StoreFormat.versionString)); upgrade gradsketch", path: path)
        }
    }
}
