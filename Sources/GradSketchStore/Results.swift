import GradSketchHDF5
import GradSketchInterchange

/// A row named by its segment file and its row in that file: how a result stores its rows
/// (format 1.2, Spec §11). It stays valid in every version whose set lists the file,
/// whatever is deleted or appended meanwhile.
public struct SegmentRow: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The segment file, relative to the store (`segments/<id>.h5`).
    public let segment: String
    /// The row's index in that file, deleted rows included.
    public let row: Int

    public init(segment: String, row: Int) {
        self.segment = segment
        self.row = row
    }

    public var description: String { "\(segment)#\(row)" }
}

/// A saved selection or valuation as read back from the store.
public struct StoredResult: Sendable, Equatable {
    /// Where a result's addresses came from.
    public enum AddressSource: String, Sendable, Equatable {
        /// Stored in the file (format 1.2).
        case stored
        /// A 1.1 result: its live positions translated while `set_version` is retained.
        case positions
        /// A 1.1 result whose `set_version` was vacuumed: its ids looked up in the version
        /// the result was read at.
        case ids
    }

    public let name: String
    package let entry: Manifest.ResultEntry
    /// Live positions in `entry.set` as of `entry.setVersion`, ids and scores, in result order.
    public let positions: [Int]
    public let ids: [String]
    public let scores: [Double]
    /// Each row's address; nil for a row of a 1.1 result found neither by position nor by
    /// id (its `set_version` vacuumed and its id no longer live).
    public let addresses: [SegmentRow?]
    public let addressSource: AddressSource
}

/// A result row found in one version of its set.
public struct ResolvedResultRow: Sendable, Equatable {
    /// The row's address in that version's segment list.
    public let address: RowAddress
    /// Its live position in that version (shifts when an earlier row is deleted).
    public let position: Int
    /// Its id, read from the segment file.
    public let id: String
}

extension Store {
    /// Saves a result (ids, positions, scores, method, parameters, the set version it read)
    /// as `results/<id>.h5` and commits it under `name` (Spec §11). Results are immutable: a
    /// name already taken is refused.
    ///
    /// `positions` are live positions in `set` as of `setVersion`; the file also stores each
    /// row's address (segment file, row), so later deletions never change what the result
    /// names (format 1.2).
    ///
    /// `ids` are the rows' ids for a selection; a valuation lists the valued example ids,
    /// which need not be the row ids (Spec §11), so they are stored as given.
    ///
    /// - Throws: `.invalidInput` when a position is outside the set at `setVersion`.
    @discardableResult
    public func saveResult(_ name: String, method: String, set: String, setVersion: Int, parameters: [String: JSONValue],
                           positions: [Int], ids: [String], scores: [Double]) throws -> Int {
        try Rules.checkName(name, what: "result")
        guard positions.count == ids.count, ids.count == scores.count else {
            throw StoreError(.invalidInput, "a result needs as many positions, ids and scores: found \(positions.count), \(ids.count) and \(scores.count)")
        }
        if try manifest().results?[name] != nil {
            throw StoreError(.invalidInput, "result \(name) already exists: results are immutable; choose a new name", path: path)
        }
        // The rule readers hold a result to (Spec §11), checked before anything is written:
        // its rows lie in the set and version it names.
        guard let source = try manifest(at: setVersion).sketchSets[set] else {
            throw StoreError(.invalidInput, "cannot save result \(name): expected set \(set) at version \(setVersion), found no such set", path: path)
        }
        if let bad = positions.first(where: { $0 < 0 || $0 >= source.rowCount }) {
            throw StoreError(.invalidInput, "cannot save result \(name): position \(bad) is outside the \(source.rowCount) rows of set \(set) at version \(setVersion)", path: path)
        }
        let live = try liveRows(of: source)
        let addresses = positions.map { live.address(ofLivePosition: $0)! }
        // The segments the rows lie in, each once, in segment-list order.
        let usedOrdinals = Array(Set(addresses.map(\.segment))).sorted()
        let indexOfOrdinal = Dictionary(uniqueKeysWithValues: usedOrdinals.enumerated().map { ($1, $0) })
        let segmentFiles = usedOrdinals.map { source.segments[$0].file }
        let addressValues = addresses.flatMap { [Int64(indexOfOrdinal[$0.segment]!), Int64($0.row)] }

        let pin = try pinWriter()
        defer { pin.release() }
        let writer = try DataFileWriter(store: self, kind: FileKinds.result, pin: pin)
        try writer.setRootAttribute("method", method)
        try writer.setRootAttribute("set", set)
        try writer.setRootAttribute("set-version", Int64(setVersion))
        try writer.setRootAttribute("parameters", JSONValue.object(parameters).jsonText)
        try writer.write(strings: ids, dataset: "ids")
        try writer.write(positions.map(Int64.init), dataset: "positions")
        try writer.write(scores, dataset: "scores")
        try writer.write(strings: segmentFiles, dataset: "segments")
        try writer.write(addressValues, dataset: "addresses", shape: [addresses.count, 2])
        let published = try writer.publish()
        let entry = Manifest.ResultEntry(file: published.file, size: published.size, fileChecksum: published.fileChecksum,
                                         checksums: published.checksums, method: method, set: set, setVersion: setVersion,
                                         count: ids.count, parameters: parameters)
        do {
            return try commit(changes: [.saveResult(name: name, entry: entry)], detail: "result \(name) (\(method), \(ids.count) rows)").version
        } catch {
            try? FileSystem.remove(absolute(published.file))
            throw error
        }
    }

    /// Result `name` as of `version` (latest when nil), verified against its checksums, with
    /// each row's address (Spec §11): stored in a 1.2 result; for a 1.1 result translated
    /// from its live positions while `set_version` is retained, else found by id in
    /// `version`.
    public func result(_ name: String, at version: Int? = nil) throws -> StoredResult {
        let manifest = try self.manifest(at: version)
        guard let entry = manifest.results?[name] else {
            let known = (manifest.results ?? [:]).keys.sorted()
            throw StoreError(.notFound, "no result \"\(name)\" in version \(manifest.version) (results: \(known.isEmpty ? "none" : known.joined(separator: ", ")))", path: path)
        }
        let contents = try ResultFiles.load(path: absolute(entry.file), entry: entry)
        let location = absolute(entry.file)
        func made(_ addresses: [SegmentRow?], _ source: StoredResult.AddressSource) -> StoredResult {
            StoredResult(name: name, entry: entry, positions: contents.positions, ids: contents.ids, scores: contents.scores,
                         addresses: addresses, addressSource: source)
        }
        let sourceSet = try retainedSet(of: entry)
        if let sourceSet {
            let live = try liveRows(of: sourceSet)
            let translated = try contents.positions.map { position -> SegmentRow in
                guard let address = live.address(ofLivePosition: position) else {
                    throw StoreError(.corrupt, "result \(name) holds row position \(position), outside the \(live.liveCount) rows of set \(entry.set) at version \(entry.setVersion)", path: location + ":/positions")
                }
                return SegmentRow(segment: sourceSet.segments[address.segment].file, row: address.row)
            }
            guard let stored = contents.addresses else { return made(translated, .positions) }
            if let index = stored.indices.first(where: { stored[$0] != translated[$0] }) {
                throw StoreError(.corrupt, "result \(name) row \(index) is stored at \(stored[index]), but its position \(contents.positions[index]) in set \(entry.set) at version \(entry.setVersion) is \(translated[index])", path: location + ":/addresses")
            }
            return made(stored, .stored)
        }
        if let addresses = contents.addresses { return made(addresses, .stored) }
        // set_version is gone: its positions mean nothing in any other version (Spec §11).
        guard let current = manifest.sketchSets[entry.set] else { return made(contents.ids.map { _ in nil }, .ids) }
        let live = try liveRows(of: current)
        var byID: [UTF8Key: SegmentRow] = [:]
        for (ordinal, segment) in current.segments.enumerated() {
            for (row, id) in try segmentIDs(segment).enumerated() where live.segments[ordinal].isLive(row) {
                byID[UTF8Key(id)] = SegmentRow(segment: segment.file, row: row)
            }
        }
        return made(contents.ids.map { byID[UTF8Key($0)] }, .ids)
    }

    /// Where each row of `result` is in `version` (latest when nil) of its set: its address,
    /// live position and id; nil for a row that is not live there (deleted, its segment no
    /// longer listed, or the set gone).
    public func resolve(_ result: StoredResult, at version: Int? = nil) throws -> [ResolvedResultRow?] {
        let manifest = try self.manifest(at: version)
        guard let set = manifest.sketchSets[result.entry.set] else { return result.addresses.map { _ in nil } }
        let ordinals = Dictionary(set.segments.enumerated().map { ($1.file, $0) }, uniquingKeysWith: { first, _ in first })
        let live = try liveRows(of: set)
        return try result.addresses.map { stored in
            guard let stored, let ordinal = ordinals[stored.segment] else { return nil }
            let address = RowAddress(segment: ordinal, row: stored.row)
            guard let position = live.livePosition(of: address) else { return nil }
            return ResolvedResultRow(address: address, position: position, id: try segmentIDs(set.segments[ordinal])[stored.row])
        }
    }

    /// The set a result was computed from, when its `set_version` is still retained.
    ///
    /// - Throws: `.corrupt` when that version is retained but has no such set.
    private func retainedSet(of entry: Manifest.ResultEntry) throws -> Manifest.SketchSetEntry? {
        guard try versions().contains(entry.setVersion) else { return nil }
        guard let set = try manifest(at: entry.setVersion).sketchSets[entry.set] else {
            throw StoreError(.corrupt, "the result was computed from set \(entry.set) at version \(entry.setVersion), which has no such set", path: absolute(entry.file))
        }
        return set
    }

    /// A result's own rules for `verify` (Spec §11): its file against the entry and, while
    /// `set_version` is retained, each row against that version: its position is a live
    /// position there and, for a 1.2 result, its stored address lies in a segment the set
    /// lists there, inside the file, and is the row at that position.
    func checkResult(_ name: String, _ entry: Manifest.ResultEntry) -> [FileKind.KindProblem] {
        do {
            let contents = try ResultFiles.load(path: absolute(entry.file), entry: entry)
            guard let set = try retainedSet(of: entry) else { return [] }
            let live = try liveRows(of: set)
            let ordinals = Dictionary(set.segments.enumerated().map { ($1.file, $0) }, uniquingKeysWith: { first, _ in first })
            let at = "set \(entry.set) at version \(entry.setVersion)"
            for (index, position) in contents.positions.enumerated() {
                guard let address = live.address(ofLivePosition: position) else {
                    return [.init(object: "positions", message: "row position \(position) is outside the \(live.liveCount) rows of \(at)")]
                }
                guard let stored = contents.addresses?[index] else { continue }
                guard let ordinal = ordinals[stored.segment] else {
                    return [.init(object: "addresses", message: "row \(index) lies in segment \(stored.segment), which \(at) does not list")]
                }
                guard stored.row < set.segments[ordinal].rows else {
                    return [.init(object: "addresses", message: "row \(index) is row \(stored.row) of \(stored.segment), which has \(set.segments[ordinal].rows) rows")]
                }
                guard RowAddress(segment: ordinal, row: stored.row) == address else {
                    let what = live.livePosition(of: RowAddress(segment: ordinal, row: stored.row)).map { "live position \($0)" } ?? "a deleted row"
                    return [.init(object: "addresses", message: "row \(index) is stored at \(stored), \(what) of \(at); its position says \(position)")]
                }
            }
            return []
        } catch {
            return [.init(object: nil, message: FileKinds.describe(error))]
        }
    }
}

enum ResultFiles {
    /// A result file's datasets, checked against the entry.
    struct Contents {
        let ids: [String]
        let positions: [Int]
        let scores: [Double]
        /// Stored addresses (format 1.2); nil for a 1.1 result.
        let addresses: [SegmentRow]?
    }

    static func load(path: String, entry: Manifest.ResultEntry) throws -> Contents {
        let file = try SegmentFiles.open(path, expected: .result)
        defer { try? file.close() }
        let hasAddresses = entry.checksums["segments"] != nil || entry.checksums["addresses"] != nil
        let expectedKeys: Set<String> = hasAddresses ? ["ids", "positions", "scores", "segments", "addresses"] : ["ids", "positions", "scores"]
        guard Set(entry.checksums.keys) == expectedKeys else {
            throw StoreError(.corrupt, "result checksums must have the keys \(expectedKeys.sorted().joined(separator: ", ")), found \(entry.checksums.keys.sorted().joined(separator: ", "))", path: path)
        }
        return try withContext(.corrupt, "cannot read result", path: path) { () throws -> Contents in
            let root = try file.root()
            try EntryAttributes.require(root, strings: [("method", entry.method), ("set", entry.set)],
                                        integers: [("set-version", entry.setVersion)], path: path)
            let parametersText = try root.stringAttribute("parameters")
            guard let parametersText, (try? JSONValue.parse(parametersText)) == .object(entry.parameters) else {
                throw StoreError(.corrupt, "root attribute parameters is \(parametersText.map { "\"\($0)\"" } ?? "missing"); the manifest entry says \(JSONValue.object(entry.parameters).jsonText)", path: path)
            }
            // Each dataset is checked (type, encoding, shape, no more bytes than the file
            // holds) before it is read.
            func checked(_ root: borrowing Group, _ name: String, _ encoding: EncodingType, shape: [Int]?) throws -> Dataset {
                let handle = try root.openDataset(name)
                try FileHeader.checkDataset(handle, expected: encoding, path: path)
                let found = try handle.shape()
                guard found == shape ?? found, found.count == (shape?.count ?? 1) else {
                    throw StoreError(.corrupt, "result dataset \(name) has shape \(found), expected \(shape.map { "\($0)" } ?? "one dimension")", path: path + ":/" + name)
                }
                try DataFileCheck.fits(handle, in: path, location: path + ":/" + name)
                return handle
            }
            func verified(_ dataset: String, _ computed: String) throws {
                guard computed == entry.checksums[dataset] else {
                    throw SegmentFiles.mismatch(path, dataset, expected: entry.checksums[dataset] ?? "(none)", found: computed)
                }
            }
            let idsHandle = try checked(root, "ids", .rowIDs, shape: [entry.count])
            let ids = try idsHandle.readStrings()
            try idsHandle.close()
            let positionsHandle = try checked(root, "positions", .resultPositions, shape: [entry.count])
            let positions: [Int64] = try positionsHandle.readAll()
            try positionsHandle.close()
            let scoresHandle = try checked(root, "scores", .resultScores, shape: [entry.count])
            let scores: [Double] = try scoresHandle.readAll()
            try scoresHandle.close()
            try verified("ids", Checksum.strings(ids))
            try verified("positions", Checksum.values(positions))
            try verified("scores", Checksum.values(scores))
            guard ids.count == entry.count, positions.count == entry.count, scores.count == entry.count else {
                throw StoreError(.corrupt, "result holds \(ids.count) ids, \(positions.count) positions and \(scores.count) scores; the manifest says \(entry.count)", path: path)
            }
            if let bad = positions.first(where: { $0 < 0 }) {
                throw StoreError(.corrupt, "result row position \(bad) is negative, expected a live position in set \(entry.set)", path: path + ":/positions")
            }
            var addresses: [SegmentRow]?
            if hasAddresses {
                let segmentsHandle = try checked(root, "segments", .resultSegments, shape: nil)
                let segments = try segmentsHandle.readStrings()
                try segmentsHandle.close()
                let addressesHandle = try checked(root, "addresses", .resultAddresses, shape: [entry.count, 2])
                let pairs: [Int64] = try addressesHandle.readAll()
                try addressesHandle.close()
                try verified("segments", Checksum.strings(segments))
                try verified("addresses", Checksum.values(pairs))
                for segment in segments where !ManifestValidation.isDataFileName(segment, directory: "segments") {
                    throw StoreError(.corrupt, "result segment \"\(segment)\" is not segments/<32 lowercase hex digits>.h5", path: path + ":/segments")
                }
                guard Set(segments).count == segments.count else {
                    throw StoreError(.corrupt, "result lists a segment twice", path: path + ":/segments")
                }
                guard pairs.count == entry.count * 2 else {
                    throw StoreError(.corrupt, "result holds \(pairs.count / 2) addresses; the manifest says \(entry.count)", path: path + ":/addresses")
                }
                addresses = try (0..<entry.count).map { index in
                    let (segment, row) = (pairs[2 * index], pairs[2 * index + 1])
                    guard segment >= 0, segment < Int64(segments.count), row >= 0 else {
                        throw StoreError(.corrupt, "result row \(index) has address (\(segment), \(row)): expected a segment in [0, \(segments.count)) and a non-negative row", path: path + ":/addresses")
                    }
                    return SegmentRow(segment: segments[Int(segment)], row: Int(row))
                }
            }
            try root.close()
            return Contents(ids: ids, positions: positions.map(Int.init), scores: scores, addresses: addresses)
        }
    }
}
