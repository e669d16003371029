import Foundation
import GradSketchInterchange

/// What a prepared append session hands to the process that commits it (Spec/c-api.md §12,
/// Spec/format.md §7.2 "Prepared appends"): the set, the options the session was begun with,
/// and the manifest entry of every segment it wrote (published, in no version yet).
///
/// The token is an API artifact, never stored. Nothing in it is trusted at the commit: every
/// segment is checked against the file it names (``Store/stagePrepared(_:index:)``).
package struct PreparedAppendToken: Codable, Sendable {
    package static let kindName = "gradsketch-prepared-append"
    package static let currentVersion = 1

    package var kind = PreparedAppendToken.kindName
    package var tokenVersion = PreparedAppendToken.currentVersion
    /// The store the segments were written into (Spec §3 `store-id`).
    package var storeID: String
    package var set: String
    package var k: Int
    package var dtype: String
    package var allowNonfinite: Bool
    /// The options the session was begun with: they create the set when the commit does not
    /// find it, and are checked against it when it does.
    package var options: Options
    package var segments: [Segment]

    package struct Options: Codable, Sendable {
        package var dtype: String?
        package var allowNonfinite: Bool
        package var attributes: [String: JSONValue]
        enum CodingKeys: String, CodingKey { case dtype, attributes, allowNonfinite = "allow_nonfinite" }
    }

    package struct Segment: Codable, Sendable {
        /// The segment's manifest entry as the commit will record it.
        package var entry: Manifest.SegmentEntry
        /// Whether the segment holds NaN or ±Inf (the commit checks the rows say the same).
        package var hasNonfinite: Bool
        enum CodingKeys: String, CodingKey { case entry, hasNonfinite = "has_nonfinite" }
    }

    enum CodingKeys: String, CodingKey {
        case kind, set, k, dtype, options, segments
        case tokenVersion = "token_version", storeID = "store_id", allowNonfinite = "allow_nonfinite"
    }

    /// The token as JSON text (keys sorted, so equal tokens are equal text).
    package func jsonText() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Parses a token's JSON text.
    ///
    /// - Throws: `.invalidInput` saying what is wrong with the text.
    package static func parse(_ text: String, index: Int) throws -> PreparedAppendToken {
        let token: PreparedAppendToken
        do {
            token = try JSONDecoder().decode(PreparedAppendToken.self, from: Data(text.utf8))
        } catch {
            throw StoreError(.invalidInput, "token \(index) is not a prepared-append token (JSON from gs_append_prepare / AppendSession.prepare): \(error)")
        }
        guard token.kind == kindName else {
            throw StoreError(.invalidInput, "token \(index) has kind \"\(token.kind)\", expected \"\(kindName)\"")
        }
        guard token.tokenVersion == currentVersion else {
            throw StoreError(.invalidInput, "token \(index) has token_version \(token.tokenVersion); this library reads version \(currentVersion)")
        }
        return token
    }
}

extension Store {
    /// The append a prepared token describes, every claim in it checked against the files
    /// (Spec/c-api.md §12): the store is this one; the set name, dtype and k are valid; every
    /// segment is `segments/<32 hex>.h5`, a regular file in the store's real `segments/`
    /// directory, whose size, whole-file checksum, header, dataset checksums and row count
    /// are the token's, whose rows are finite unless the token says otherwise, and whose ids
    /// are valid and unique across the token. Reads every segment once.
    ///
    /// - Throws: `.invalidInput` for a token that does not describe an append to this store,
    ///   `.corrupt` for a segment that does not match it. Nothing is committed or removed.
    package func stagePrepared(_ token: PreparedAppendToken, index: Int) throws -> StoreChange {
        let what = "token \(index) (set \(token.set))"
        guard token.storeID == storeID else {
            throw StoreError(.invalidInput, "\(what) was prepared in store \(token.storeID), this store is \(storeID)", path: path)
        }
        try Rules.checkName(token.set, what: "set")
        guard let dtype = SketchDType(rawValue: token.dtype) else {
            throw StoreError(.invalidInput, "\(what) has dtype \"\(token.dtype)\", expected float16 or float32", path: path)
        }
        let optionDType = try token.options.dtype.map { name in
            guard let value = SketchDType(rawValue: name) else {
                throw StoreError(.invalidInput, "\(what) asks for dtype \"\(name)\", expected float16 or float32", path: path)
            }
            return value
        }
        guard token.k >= 1 else { throw StoreError(.invalidInput, "\(what) has k = \(token.k), expected k ≥ 1", path: path) }
        guard !token.segments.isEmpty else { throw StoreError(.invalidInput, "\(what) lists no segment", path: path) }
        var written: [SegmentWriter.Written] = []
        var seenIDs = Set<UTF8Key>()
        for (position, segment) in token.segments.enumerated() {
            let entry = segment.entry
            guard ManifestValidation.isDataFileName(entry.file, directory: FileKinds.segment.directory) else {
                throw StoreError(.invalidInput, "\(what) segment \(position) is \"\(entry.file)\", expected segments/<32 lowercase hex digits>.h5 inside the store", path: path)
            }
            guard entry.rows >= 1, entry.size != nil, entry.fileChecksum != nil, entry.checksums["ids"] != nil else {
                throw StoreError(.invalidInput, "\(what) segment \(entry.file) lacks its rows, size, file checksum or ids checksum", path: path)
            }
            guard FileSystem.exists(absolute(entry.file)) || FileSystem.isSymbolicLink(absolute(entry.file)) else {
                throw StoreError(.corrupt, "\(what) names segment \(entry.file), which does not exist (its session aborted, or it was vacuumed after the session ended)", path: path)
            }
            try DataFileCheck.dataFile(absolute(entry.file))
            // The rows are checked finite unless the writer recorded non-finite values, so a
            // token cannot slip NaN into a set that refuses them.
            let (k, allowNonfinite) = (token.k, segment.hasNonfinite)
            let fileEntry = FileKind.Entry(file: entry.file, size: entry.size, fileChecksum: entry.fileChecksum,
                                           datasetChecksums: entry.checksums.map { ($0.key, $0.value) }, rows: entry.rows) { store in
                store.checkSegment(entry, k: k, dtype: dtype, allowNonfinite: allowNonfinite)
            }
            let (problems, _) = checkFile(fileEntry, of: FileKinds.segment)
            if let problem = problems.first {
                let location = problem.object.map { ":/" + $0 } ?? ""
                throw StoreError(.corrupt, "\(what) does not match segment \(entry.file)\(location): \(problem.message)\(problems.count > 1 ? " (and \(problems.count - 1) more problems)" : "")", path: path)
            }
            let ids = try segmentIDs(entry)
            for id in ids where !seenIDs.insert(UTF8Key(id)).inserted {
                throw StoreError(.invalidInput, "\(what) holds id \"\(id)\" twice: ids must be unique within a set", path: path)
            }
            written.append(SegmentWriter.Written(entry: entry, ids: ids, idHashes: try idHashTable(of: entry), hasNonfinite: segment.hasNonfinite))
        }
        let options = SketchSetOptions(dtype: optionDType, allowNonfinite: token.options.allowNonfinite, attributes: token.options.attributes)
        let segments = StagedSegments(written: written, k: token.k, dtype: dtype, allowNonfinite: token.allowNonfinite)
        return .appendSegments(set: token.set, segments: segments, options: options)
    }

    /// Commits the appends of prepared tokens (from any sessions, in any processes) as ONE
    /// version (Spec/c-api.md §12): every token is checked against its files first, then the
    /// appends apply in token order through ``Rules/apply(_:to:store:written:)`` as any commit
    /// does (ids unique across all of them and the set, one projection, equal k and dtype),
    /// again on every rebase. All or nothing; the segments are never removed here (their
    /// sessions own them).
    package func commitPrepared(_ tokens: [PreparedAppendToken], detail: String?) throws -> ChangesCommitted {
        guard !tokens.isEmpty else {
            throw StoreError(.invalidInput, "nothing to commit: expected at least one prepared token", path: path)
        }
        let changes = try tokens.enumerated().map { try stagePrepared($1, index: $0) }
        return try commit(changes: changes, detail: detail)
    }
}
