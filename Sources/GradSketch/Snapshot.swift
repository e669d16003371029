public import GradSketchStore
import GradSketchInterchange
import GradSketchSearch
import Synchronization

/// One version of a store, opened once: it owns the sets, index searchers and tensor sets it
/// opens (created on first use, then kept with their files and mappings), so many queries
/// pay for opening and verifying each file once.
///
/// A snapshot is immutable and safe to share across threads. It keeps answering for its
/// version after later commits; files it has touched stay readable even if a vacuum unlinks
/// them, because it holds them open.
public final class Snapshot: Sendable {
    /// The version this snapshot reads.
    public let version: Int
    let store: Store
    let manifest: Manifest
    private let openedSets = Mutex<[UTF8Key: OpenedSet]>([:])
    private let openedTensorSets = Mutex<[UTF8Key: TensorSet]>([:])

    /// Opens `version` of `store` (the latest when nil).
    ///
    /// - Throws: `.notFound` if the version does not exist or was vacuumed.
    public init(store: Store, version: Int?) throws {
        let manifest = try store.engine.manifest(at: version)
        self.store = store
        self.manifest = manifest
        self.version = manifest.version
    }

    /// Names of the version's sketch sets, sorted by their UTF-8 bytes.
    public var sketchSetNames: [String] { Self.byteSorted(manifest.sketchSets.keys) }

    /// Names of the version's tensor sets, sorted by their UTF-8 bytes.
    public var tensorSetNames: [String] { Self.byteSorted(manifest.tensorSets.keys) }

    /// What the snapshot holds of sketch set `name`.
    public func sketchSet(_ name: String) throws -> SketchSetInfo {
        let entry = try entry(of: name)
        let dtype = try Self.dtype(of: entry, set: name)
        return SketchSetInfo(name: name, k: entry.k, dtype: dtype, rows: entry.rowCount, segments: entry.segments.count,
                             segmentRows: entry.segments.map(\.rows), attributesJSON: JSONValue.object(entry.attributes).jsonText,
                             indexes: Self.byteSorted(entry.indexes.keys))
    }

    /// Calls `body` with a zero-copy view of every row of segment `segment` of set `set`
    /// (deleted rows included; the view lists them). The pointer is valid only inside `body`.
    ///
    /// - Throws: `.notFound` for an unknown set, `.invalidInput` for a segment out of range,
    ///   `.corrupt` if the segment fails its checksum.
    public func withSegmentRows<R>(set: String, segment: Int, _ body: (SegmentRowsView) throws -> R) throws -> R {
        let opened = try openedSet(set)
        let segments = opened.set.segments
        guard segment >= 0 && segment < segments.count else {
            throw StoreError(.invalidInput, "set \(set) has \(segments.count) segments in version \(version): expected a segment in 0..<\(segments.count), found \(segment)")
        }
        return try segments[segment].withRowBytes { bytes, deleted in
            // An empty segment has no bytes; hand out a valid pointer all the same.
            let base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
            return try body(SegmentRowsView(base: base, rows: segments[segment].entry.rows, k: opened.set.k,
                                            dtype: opened.set.dtype, deleted: deleted))
        }
    }

    /// The ids of the rows at `addresses`, in that order.
    ///
    /// - Throws: `.invalidInput` for an address outside the set or of a deleted row.
    public func ids(set: String, at addresses: [RowAddress]) throws -> [String] {
        try strings(.ids, set: set, at: addresses)
    }

    /// The labels of the rows at `addresses` ("" for rows stored without one).
    public func labels(set: String, at addresses: [RowAddress]) throws -> [String] {
        try strings(.labels, set: set, at: addresses)
    }

    /// The metadata text of the rows at `addresses` ("" for rows stored without it).
    public func metadata(set: String, at addresses: [RowAddress]) throws -> [String] {
        try strings(.metadata, set: set, at: addresses)
    }

    // MARK: - Opened objects (created once, shared by every query of the snapshot)

    func entry(of name: String) throws -> Manifest.SketchSetEntry {
        guard let entry = manifest.sketchSets[name] else {
            let known = sketchSetNames
            throw StoreError(.notFound, "no sketch set \"\(name)\" in version \(version) (sets: \(known.isEmpty ? "none" : known.joined(separator: ", ")))", path: store.path)
        }
        return entry
    }

    /// The set `name`, opened once per snapshot.
    func openedSet(_ name: String) throws -> OpenedSet {
        let key = UTF8Key(name)
        if let opened = openedSets.withLock({ $0[key] }) { return opened }
        _ = try entry(of: name)
        let set = try store.engine.sketchSet(name, at: version)
        let opened = OpenedSet(set: set)
        // Two threads may open the same set at once; the first one stored wins, so every
        // caller shares one object (and its mappings).
        return openedSets.withLock { sets in
            if let existing = sets[key] { return existing }
            sets[key] = opened
            return opened
        }
    }

    /// Tensor set `name` of this version, opened once per snapshot; its tensors (and the
    /// mappings or copies behind them) stay readable as long as the snapshot lives.
    ///
    /// - Throws: `.notFound` naming the version's tensor sets when there is no such set.
    public func tensorSet(_ name: String) throws -> TensorSet {
        let key = UTF8Key(name)
        if let opened = openedTensorSets.withLock({ $0[key] }) { return opened }
        let tensors = try store.engine.tensorSet(name, at: version)
        return openedTensorSets.withLock { sets in
            if let existing = sets[key] { return existing }
            sets[key] = tensors
            return tensors
        }
    }

    // MARK: - Annotations of chosen rows

    enum StringDataset { case ids, labels, metadata }

    /// Strings of the rows at `addresses`, which must be live in this version.
    ///
    /// Reads only the blocks holding those rows (block checksums verified on first touch);
    /// the segment's string dataset stays open with the set, so later lookups and vacuum of
    /// newer versions do not reopen it.
    func strings(_ dataset: StringDataset, set name: String, at addresses: [RowAddress]) throws -> [String] {
        let opened = try openedSet(name)
        let live = try opened.liveRows()
        for address in addresses { _ = try live.livePosition(of: address, set: name) }
        switch dataset {
        case .ids: return try opened.set.ids(at: addresses)
        case .labels: return try opened.set.labels(at: addresses)
        case .metadata: return try opened.set.metadata(at: addresses)
        }
    }

    static func byteSorted<S: Sequence>(_ names: S) -> [String] where S.Element == String {
        names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    static func dtype(of entry: Manifest.SketchSetEntry, set: String) throws -> SketchDType {
        guard let dtype = SketchDType(rawValue: entry.dtype) else {
            throw StoreError(.unsupportedVersion, "set \(set) has dtype \"\(entry.dtype)\": expected float16 or float32")
        }
        return dtype
    }
}

/// A sketch set opened by a snapshot, with what queries derive from it once: its live-row
/// map, and index searchers.
final class OpenedSet: Sendable {
    let set: SketchSet
    private let live = Mutex<LiveRows?>(nil)
    private let searchers = Mutex<[UTF8Key: IVFSearcher]>([:])
    private let partSearchers = Mutex<[UTF8Key: PartIndexSearcher]>([:])

    init(set: SketchSet) { self.set = set }

    func liveRows() throws -> LiveRows {
        if let map = live.withLock({ $0 }) { return map }
        let map = try LiveRows(set)
        live.withLock { $0 = map }
        return map
    }

    /// The searcher of `ivf-rq4` index `name`, opened once.
    func partSearcher(_ name: String) throws -> PartIndexSearcher {
        let key = UTF8Key(name)
        if let opened = partSearchers.withLock({ $0[key] }) { return opened }
        let searcher = try PartIndexSearcher(set: set, index: name)
        return partSearchers.withLock { all in
            if let existing = all[key] { return existing }
            all[key] = searcher
            return searcher
        }
    }

    /// The searcher of index `name`, opened once.
    func searcher(_ name: String) throws -> IVFSearcher {
        let key = UTF8Key(name)
        if let opened = searchers.withLock({ $0[key] }) { return opened }
        let searcher = try IVFSearcher(set: set, index: name)
        return searchers.withLock { all in
            if let existing = all[key] { return existing }
            all[key] = searcher
            return searcher
        }
    }
}

extension LiveRows {
    /// The live rows of an opened set: one bitmap per segment, from the deletion lists the
    /// set reads (once, verified).
    init(_ set: SketchSet) throws {
        self.init(segments: try set.segments.map { segment in
            LiveRows.Segment(rows: segment.entry.rows, deleted: try segment.deletedRows())
        })
    }

    /// The live position of the row at `address`.
    ///
    /// - Throws: `.invalidInput` if the address is outside the set or names a deleted row.
    func livePosition(of address: RowAddress, set: String) throws -> Int {
        guard address.segment >= 0 && address.segment < segments.count,
              address.row >= 0 && address.row < segments[address.segment].rows else {
            throw StoreError(.invalidInput, "row address \(address) is outside set \(set): expected a segment in 0..<\(segments.count) and a row within it")
        }
        guard let position = livePosition(of: address) else {
            throw StoreError(.invalidInput, "row address \(address) of set \(set) names a deleted row")
        }
        return position
    }

    /// The address of the row at live position `position` (which the caller took from this
    /// version's search, so it is in range).
    func address(ofLive position: Int) -> RowAddress {
        guard let address = address(ofLivePosition: position) else {
            preconditionFailure("live position \(position) is outside 0..<\(liveCount)")
        }
        return address
    }
}

/// What a snapshot holds of one sketch set.
public struct SketchSetInfo: Sendable, Codable, Equatable {
    public let name: String
    public let k: Int
    public let dtype: SketchDType
    /// Live rows in this version.
    public let rows: Int
    public let segments: Int
    /// Rows in each segment file, deleted rows included.
    public let segmentRows: [Int]
    /// The set's attributes as JSON text.
    public let attributesJSON: String
    /// Names of the set's indexes, sorted by bytes.
    public let indexes: [String]
}

/// A zero-copy view of one segment's rows, valid only inside the closure that receives it.
public struct SegmentRowsView {
    /// `rows × k` elements of `dtype`, row-major.
    public let base: UnsafeRawPointer
    public let rows: Int
    public let k: Int
    public let dtype: SketchDType
    /// Sorted local rows removed in this snapshot.
    public let deleted: [Int]
}
