import Foundation
import GradSketchHDF5
import GradSketchInterchange
import Synchronization

/// A set's segments stored in segment-list files (format 1.2, Spec §7.1).
///
/// A 1.1 manifest lists every segment of every set, so each commit rewrites (and each reader
/// parses) the whole list. In 1.2 a set's segments live in immutable files of at most
/// ``maxEntries`` consecutive entries, and the manifest names the files. An append rewrites only
/// the last, partial file; the full ones are shared by every later version. Each file also
/// holds the sorted id hashes of its segments' rows, so an append checks its ids against one
/// table per list file instead of one per segment.
enum SegmentLists {
    static let directory = "segment-lists"
    static let extensionName = "segment-lists"
    /// A list closes once it holds this many segments …
    static let maxEntries = 64
    /// … or this many rows: rewriting the open list copies its hash table, so both bound
    /// what one commit rewrites, whatever the set's size.
    static let maxRows = 1 << 16
    static let entriesDataset = "entries", hashesDataset = "id-hashes", positionsDataset = "id-hash-positions"

    /// Parsed entries of list files, by absolute path: the files never change.
    private static let entryCache = Mutex<[String: [Manifest.SegmentEntry]]>([:])
    /// The JSON text of list files' entries, by absolute path, for the unknown keys of their
    /// segment entries (Spec §7.5), which a writer carries into the lists it writes next.
    static let entryTextCache = Mutex<[String: String]>([:])

    /// How `segments` is cut into lists: greedily, a new list after ``maxEntries`` segments or
    /// once the current one reaches ``maxRows`` rows. The cut of a prefix does not depend on
    /// what follows it, so after an append every list but the last is unchanged.
    static func partition(_ segments: [Manifest.SegmentEntry]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0, rows = 0
        for (index, segment) in segments.enumerated() {
            if index > start && (index - start >= maxEntries || rows >= maxRows) {
                ranges.append(start..<index)
                start = index
                rows = 0
            }
            rows += segment.rows
        }
        if start < segments.count { ranges.append(start..<segments.count) }
        return ranges
    }

    /// Fills in `segments` of every set stored in lists, each list file verified (Spec §4).
    static func expand(_ manifest: inout Manifest, storePath: String, file: String) throws {
        for name in manifest.sketchSets.keys.sorted() {
            guard let lists = manifest.sketchSets[name]?.segmentLists else { continue }
            var segments: [Manifest.SegmentEntry] = []
            for list in lists {
                let entries = try readEntries(storePath: storePath, list: list)
                let rows = entries.reduce(0) { $0 + max(0, $1.rows) }
                guard entries.count == list.count, rows == list.rows else {
                    throw StoreError(.corrupt, "segment list of set \(name) holds \(entries.count) segments of \(rows) rows, the manifest says \(list.count) of \(list.rows)", path: storePath + "/" + list.file)
                }
                segments += entries
            }
            manifest.sketchSets[name]?.segments = segments
        }
        let usesLists = manifest.sketchSets.values.contains { $0.segmentLists != nil }
        if usesLists && !manifest.extensions.contains(where: { $0.name == extensionName }) {
            throw StoreError(.corrupt, "manifest stores segment lists but does not declare extension \"\(extensionName)\"", path: file)
        }
    }

    static func open(_ path: String) throws -> HDF5File {
        try SegmentFiles.open(path, expected: .segmentList)
    }

    static func readEntries(storePath: String, list: Manifest.SegmentListEntry, cached useCache: Bool = true) throws -> [Manifest.SegmentEntry] {
        let path = storePath + "/" + list.file
        if useCache, let cached = entryCache.withLock({ $0[path] }) { return cached }
        let location = path + ":/" + entriesDataset
        guard let expected = list.checksums[entriesDataset] else {
            throw StoreError(.corrupt, "manifest lists no checksum for the segment list's entries", path: location)
        }
        let file = try open(path)
        let text = try withContext(.corrupt, "cannot read the segment list", path: location) { () throws -> String in
            let root = try file.root()
            let dataset = try root.openDataset(entriesDataset)
            try FileHeader.checkDataset(dataset, expected: .segmentListJSON, path: path)
            try DataFileCheck.fits(dataset, in: path, location: location)
            let strings = try dataset.readStrings()
            try dataset.close()
            try root.close()
            guard strings.count == 1 else {
                throw StoreError(.corrupt, "entries must hold one string, found \(strings.count)", path: location)
            }
            return strings[0]
        }
        try? file.close()
        let computed = Checksum.strings([text])
        guard computed == expected else { throw SegmentFiles.mismatch(path, entriesDataset, expected: expected, found: computed) }
        let entries: [Manifest.SegmentEntry]
        do {
            entries = try JSONDecoder().decode([Manifest.SegmentEntry].self, from: Data(text.utf8))
        } catch {
            throw StoreError(.corrupt, "segment list entries are not a JSON array of segment entries: \(error)", path: location)
        }
        entryCache.withLock { $0[path] = entries }
        entryTextCache.withLock { $0[path] = text }
        return entries
    }

    static func readHashes(storePath: String, list: Manifest.SegmentListEntry) throws -> IDHashTable {
        let path = storePath + "/" + list.file
        let file = try open(path)
        let root = try withContext(.corrupt, "cannot read the segment list", path: path) { try file.root() }
        let table = try IDHashTable.read(from: root, path: path, rows: list.rows, hashesName: hashesDataset, positionsName: positionsDataset,
                                         positionsType: .segmentListPositions, checksums: list.checksums)
        try? root.close()
        try? file.close()
        return table
    }

    static func encodeEntries(_ entries: ArraySlice<Manifest.SegmentEntry>) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(Array(entries)), as: UTF8.self)
    }
}

extension Store {
    /// Remembers the id hash table of a segment this process wrote or read (immutable files).
    func rememberIDHashes(_ table: IDHashTable, of segmentFile: String) {
        idHashCache.withLock { $0[segmentFile] = table }
    }

    /// A segment's id hash table: cached, else from its `id-hashes` datasets, else (a segment
    /// written before format 1.2) computed from its ids.
    func idHashTable(of segment: Manifest.SegmentEntry) throws -> IDHashTable {
        if let cached = idHashCache.withLock({ $0[segment.file] }) { return cached }
        let table = try SegmentFiles.readIDHashes(path: absolute(segment.file), entry: segment)
            ?? IDHashTable(ids: try segmentIDs(segment))
        rememberIDHashes(table, of: segment.file)
        return table
    }

    /// A segment list's id hash table, cached by file.
    func idHashTable(of list: Manifest.SegmentListEntry) throws -> IDHashTable {
        if let cached = idHashCache.withLock({ $0[list.file] }) { return cached }
        let table = try SegmentLists.readHashes(storePath: path, list: list)
        rememberIDHashes(table, of: list.file)
        return table
    }

    /// Stores every set of `manifest` in segment lists (Spec §7.1), reusing the files of
    /// `base` whose entries are unchanged and writing the others; the files written are
    /// appended to `written` so a commit that does not land can remove them.
    func writeSegmentLists(_ manifest: inout Manifest, base: Manifest, written: inout [String]) throws {
        for name in manifest.sketchSets.keys.sorted() {
            guard let set = manifest.sketchSets[name] else { continue }
            if set.segmentLists != nil, set == base.sketchSets[name] { continue }
            // The lists of the base version, by their first segment, with their entries.
            var previous: [String: (list: Manifest.SegmentListEntry, entries: ArraySlice<Manifest.SegmentEntry>)] = [:]
            if let old = base.sketchSets[name], let lists = old.segmentLists {
                var start = 0
                for list in lists where start + list.count <= old.segments.count {
                    let entries = old.segments[start..<(start + list.count)]
                    if let first = entries.first { previous[first.file] = (list, entries) }
                    start += list.count
                }
            }
            let sources = segmentSources(set: name, base: base)
            var lists: [Manifest.SegmentListEntry] = []
            for range in SegmentLists.partition(set.segments) {
                let entries = set.segments[range]
                let earlier = previous[entries.first!.file]
                if let earlier, earlier.entries.elementsEqual(entries) {
                    lists.append(earlier.list)
                    continue
                }
                // The hash table covers rows, not deletions: a list whose segments start
                // with an earlier list's keeps that table and adds the segments after it.
                var parts: [(table: IDHashTable, offset: Int)] = []
                var offset = 0
                var rest = entries[...]
                if let earlier, entries.count >= earlier.entries.count,
                   zip(earlier.entries, entries).allSatisfy({ $0.file == $1.file && $0.rows == $1.rows }) {
                    parts.append((try idHashTable(of: earlier.list), 0))
                    offset = earlier.list.rows
                    rest = entries.dropFirst(earlier.entries.count)
                }
                for segment in rest {
                    parts.append((try idHashTable(of: segment), offset))
                    offset += segment.rows
                }
                let table = parts.count == 1 && parts[0].offset == 0 ? parts[0].table : IDHashTable.merged(parts)
                let list = try writeSegmentList(entries, set: name, table: table, sources: sources)
                written.append(list.file)
                rememberIDHashes(table, of: list.file)
                lists.append(list)
            }
            manifest.sketchSets[name]?.segmentLists = lists
        }
        manifest.extensions.removeAll { $0.name == SegmentLists.extensionName }
        if !manifest.sketchSets.isEmpty {
            manifest.extensions.append(Manifest.Extension(name: SegmentLists.extensionName, mustUnderstand: true))
        }
    }

    /// Where the JSON objects of set `name`'s segment entries in `base` are: the manifest's
    /// own text (inline segments) or, per segment file, the list file holding it.
    struct SegmentSources {
        var inline: String?
        var listOfFile: [String: String] = [:]

        /// The JSON objects of `entries` in `base`, by file; parses only the texts they are in.
        func objects(for entries: ArraySlice<Manifest.SegmentEntry>, storePath: String, set name: String) -> [String: JSONValue] {
            var texts: [String] = []
            if let inline, let parsed = try? JSONValue.parse(inline), let segments = parsed["sketch_sets"]?[name]?["segments"] {
                texts = [segments.jsonText]
            } else {
                let files = Set(entries.compactMap { listOfFile[$0.file] })
                texts = files.sorted().compactMap { file in SegmentLists.entryTextCache.withLock { $0[storePath + "/" + file] } }
            }
            var objects: [String: JSONValue] = [:]
            for text in texts {
                guard case .array(let elements)? = try? JSONValue.parse(text) else { continue }
                for element in elements {
                    if case .string(let file)? = element["file"] { objects[file] = element }
                }
            }
            return objects
        }
    }

    private func segmentSources(set name: String, base: Manifest) -> SegmentSources {
        guard let old = base.sketchSets[name] else { return SegmentSources() }
        guard let lists = old.segmentLists else { return SegmentSources(inline: base.source.text) }
        var sources = SegmentSources()
        var start = 0
        for list in lists where start + list.count <= old.segments.count {
            for segment in old.segments[start..<(start + list.count)] { sources.listOfFile[segment.file] = list.file }
            start += list.count
        }
        return sources
    }

    private func writeSegmentList(_ entries: ArraySlice<Manifest.SegmentEntry>, set: String, table: IDHashTable,
                                  sources: SegmentSources) throws -> Manifest.SegmentListEntry {
        var text = try SegmentLists.encodeEntries(entries)
        let sources = sources.objects(for: entries, storePath: path, set: set)
        // Unknown keys of the entries survive the move into (or between) lists (Spec §7.5).
        if entries.contains(where: { sources[$0.file] != nil }), case .array(let typed) = try JSONValue.parse(text) {
            let merged = typed.map { element -> JSONValue in
                guard case .string(let file)? = element["file"], let source = sources[file] else { return element }
                return ManifestUnknownKeys.restoreSegment(element, from: source)
            }
            text = JSONValue.array(merged).jsonText
        }
        let id = randomIdentifier()
        let temporary = try temporaryPath()
        defer { try? FileSystem.remove(temporary) }
        var checksums: [String: String] = [:]
        try withContext(.io, "cannot write segment list", path: temporary) {
            let file = try HDF5File.create(path: temporary)
            let root = try file.root()
            try FileHeader.write(on: root, type: .segmentList)
            try root.setAttribute("set", set)
            try root.setAttribute("count", Int64(entries.count))
            try root.setAttribute("rows", Int64(table.count))
            let dataset = try root.createStringDataset(SegmentLists.entriesDataset, strings: [text], scalar: true)
            checksums[SegmentLists.entriesDataset] = Checksum.strings([text])
            try FileHeader.mark(dataset, type: .segmentListJSON, checksum: checksums[SegmentLists.entriesDataset]!)
            try dataset.close()
            checksums.merge(try table.write(into: root, hashesName: SegmentLists.hashesDataset, positionsName: SegmentLists.positionsDataset,
                                            positionsType: .segmentListPositions)) { $1 }
            try root.close()
            try file.close()
        }
        let relative = SegmentLists.directory + "/" + id + ".h5"
        let whole = try publish(temporary, as: relative)
        SegmentLists.entryTextCache.withLock { $0[path + "/" + relative] = text }
        return Manifest.SegmentListEntry(file: relative, count: entries.count, rows: table.count, checksums: checksums,
                                         size: whole.size, fileChecksum: whole.checksum)
    }

    /// Refuses `ids` when one of them is a live id of `set` (Spec §5.2), reporting the first
    /// such id in `ids` order.
    ///
    /// Each id's hash is looked up in the set's hash tables (one per segment list, or one per
    /// segment for a set still listed inline); a hit is confirmed against the deletion list
    /// and the id itself, so a hash collision costs one read and never a wrong answer. Never
    /// reads the ids of segments that have no hit.
    func checkNewIDs(_ ids: [String], against set: Manifest.SketchSetEntry, setName: String) throws {
        let hashes = ids.map(IDHash.hash)
        // (position in `ids`, segment index, row) of every hash hit.
        var hits: [(id: Int, segment: Int, row: Int)] = []
        func probe(_ table: IDHashTable, firstSegment: Int, segmentCount: Int) {
            // Row offsets of the segments the table covers, for position → (segment, row).
            var starts: [Int] = []
            var offset = 0
            for index in firstSegment..<(firstSegment + segmentCount) {
                starts.append(offset)
                offset += set.segments[index].rows
            }
            for (idIndex, hash) in hashes.enumerated() {
                for position in table.positions(of: hash) {
                    let local = Int(position)
                    var low = 0, high = starts.count - 1
                    while low < high {
                        let middle = (low + high + 1) / 2
                        if starts[middle] <= local { low = middle } else { high = middle - 1 }
                    }
                    hits.append((idIndex, firstSegment + low, local - starts[low]))
                }
            }
        }
        if let lists = set.segmentLists, lists.reduce(0, { $0 + $1.count }) == set.segments.count {
            var first = 0
            for list in lists {
                probe(try idHashTable(of: list), firstSegment: first, segmentCount: list.count)
                first += list.count
            }
        } else {
            for index in set.segments.indices {
                probe(try idHashTable(of: set.segments[index]), firstSegment: index, segmentCount: 1)
            }
        }
        var duplicate: Int?
        for hit in hits.sorted(by: { $0.id < $1.id }) where duplicate.map({ hit.id < $0 }) ?? true {
            let segment = set.segments[hit.segment]
            if let deletions = segment.deletions,
               try SegmentFiles.readDeletions(storePath: path, entry: deletions, segment: segment).contains(hit.row) {
                continue  // a deleted id may be appended again
            }
            let existing = try segmentIDs(segment)
            guard hit.row < existing.count else { continue }
            if existing[hit.row].utf8.elementsEqual(ids[hit.id].utf8) { duplicate = hit.id }
        }
        if let duplicate {
            throw StoreError(.invalidInput, "id \"\(ids[duplicate])\" is already in set \(setName): ids must be unique within a set", path: path)
        }
    }
}
