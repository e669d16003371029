import GradSketchInterchange

/// The one place the Spec's rules for a change are checked. Every commit of every writer goes
/// through ``apply(_:to:store:written:)``, inside the commit closure, so each rule is checked
/// against the version the commit actually lands on, again after each rebase (Spec §7.2
/// step 2) — not by whichever front end happened to make the change.
extension Rules {
    /// Attributes fixed when a set is created: its rows were made with them, so changing them
    /// later would mislabel every row (Spec §7.1).
    static let fixedAttributes: Set<String> = ["projection", "tensor_set", "tensor_set_hash"]

    /// Applies `changes` in order to `manifest`, refusing the first that breaks a rule.
    ///
    /// Later changes see earlier ones: a transaction that appends to a set and then deletes
    /// from it deletes among the rows it appended too. Deletion lists are written here (they
    /// depend on the version committed on); their files are added to `written` as soon as
    /// they exist, so the caller removes those the committed version does not reference.
    static func apply(_ changes: [StoreChange], to manifest: inout Manifest, store: Store, written: inout [String]) throws {
        let before = manifest.sketchSets
        for change in changes {
            switch change {
            case .appendSegments(let set, let segments, let options):
                try applyAppend(set: set, segments: segments, options: options, to: &manifest, store: store)
            case .compact(let set, let runs):
                try applyCompact(set: set, runs: runs, to: &manifest, store: store)
            case .delete(let set, let ids):
                try applyDelete(set: set, ids: ids, to: &manifest, store: store, written: &written)
            case .putTensors(let name, let tensors):
                try checkNewTensorSet(name, in: manifest, store: store)
                guard tensors.entry.kind == "weights", tensors.sourceHashes == nil else {
                    throw StoreError(.invalidInput, "put-tensors adds a tensor set of kind weights, found kind \(tensors.entry.kind)", path: store.path)
                }
                manifest.tensorSets[name] = tensors.entry
            case .delta(let name, let from, let to, let tensors):
                try checkNewTensorSet(name, in: manifest, store: store)
                guard let hashes = tensors.sourceHashes, tensors.entry.kind == "delta" else {
                    throw StoreError(.invalidInput, "a delta needs a tensor set of kind delta computed from two tensor sets, found kind \(tensors.entry.kind)", path: store.path)
                }
                for (role, source, hash) in [("from", from, hashes.from), ("to", to, hashes.to)] {
                    guard let current = manifest.tensorSets[source] else {
                        throw StoreError(.conflict, "tensor set \(source) (the delta's \(role)) is not in version \(manifest.version): dropped while the delta was computed?", path: store.path)
                    }
                    guard current.contentHash == hash else {
                        throw StoreError(.conflict, "tensor set \(source) (the delta's \(role)) changed while the delta was computed: expected content \(hash), found \(current.contentHash)", path: store.path)
                    }
                }
                var entry = tensors.entry
                entry.from = from
                entry.to = to
                manifest.tensorSets[name] = entry
            case .setAttributes(let set, let attributes):
                var entry = try existingSet(set, in: manifest, store: store)
                for (key, value) in attributes.sorted(by: { $0.key < $1.key }) {
                    if fixedAttributes.contains(key), entry.attributes[key] != value.nonNull {
                        throw StoreError(.invalidInput, "attribute \(key) of set \(set) is fixed when the set is created (its rows were made with it): expected \(entry.attributes[key]?.jsonText ?? "it absent"), found \(value.jsonText)", path: store.path)
                    }
                    entry.attributes[key] = value.nonNull
                }
                manifest.sketchSets[set] = entry
            case .dropSet(let set):
                _ = try existingSet(set, in: manifest, store: store)
                manifest.sketchSets[set] = nil
            case .dropTensors(let name):
                guard manifest.tensorSets[name] != nil else {
                    throw StoreError(.notFound, "cannot drop tensor set \(name): expected it in version \(manifest.version), found \(namesList(manifest.tensorSets.keys))", path: store.path)
                }
                manifest.tensorSets[name] = nil
            case .buildIndex(let name, let set, let entry):
                try checkName(name, what: "index")
                var current = try existingSet(set, in: manifest, store: store)
                guard current.segments.count >= entry.segments.count,
                      zip(current.segments, entry.segments).allSatisfy({ $0.file == $1 }) else {
                    throw StoreError(.conflict, "set \(set) no longer starts with the \(entry.segments.count) segments index \(name) was built on (Spec §10.1: the index would be stale)", path: store.path)
                }
                let coveredRows = current.segments.prefix(entry.segments.count).reduce(0) { $0 + $1.rows }
                guard entry.rows <= coveredRows, entry.builtOnVersion <= manifest.version else {
                    throw StoreError(.invalidInput, "index \(name) claims \(entry.rows) rows built on version \(entry.builtOnVersion): expected at most the \(coveredRows) rows of its \(entry.segments.count) segments, built on version \(manifest.version) or earlier", path: store.path)
                }
                current.indexes[name] = entry
                manifest.sketchSets[set] = current
            case .dropIndex(let name, let set):
                var current = try existingSet(set, in: manifest, store: store)
                guard current.indexes.removeValue(forKey: name) != nil else {
                    throw StoreError(.notFound, "set \(set) has no index \"\(name)\" (indexes: \(namesList(current.indexes.keys)))", path: store.path)
                }
                manifest.sketchSets[set] = current
            case .saveResult(let name, let entry):
                try checkName(name, what: "result")
                guard manifest.results?[name] == nil else {
                    throw StoreError(.conflict, "result \(name) already exists in version \(manifest.version): results are immutable; choose a new name", path: store.path)
                }
                guard entry.setVersion <= manifest.version else {
                    throw StoreError(.invalidInput, "result \(name) says it read set \(entry.set) at version \(entry.setVersion): expected a version up to \(manifest.version)", path: store.path)
                }
                var results = manifest.results ?? [:]
                results[name] = entry
                manifest.results = results
            }
        }
        // Spec §10.1: in every version that lists an index, its segments are the first segments
        // of its set. Checked for the sets this commit changed (a writer that reorders or
        // replaces segments must drop the indexes), not for ones it only carries over.
        for (name, entry) in manifest.sketchSets where before[name] != entry {
            for (index, covered) in entry.indexes.sorted(by: { $0.key < $1.key })
            where !(entry.segments.count >= covered.segments.count && zip(entry.segments, covered.segments).allSatisfy({ $0.file == $1 })) {
                throw StoreError(.invalidInput, "this commit leaves index \(index) of set \(name) stale: expected the set to start with the \(covered.segments.count) segments the index covers, found otherwise (drop the index in the same commit)", path: store.path)
            }
        }
        // The structural rules every reader holds a manifest to (names, counts, sizes, no file
        // listed twice): a writer never commits what a reader would refuse.
        try ManifestValidation.check(manifest, file: store.path + "/versions/" + Store.manifestName(manifest.version + 1))
    }

    /// Compaction's rebase rule (Spec §5.5): every replaced segment is still in the set, in
    /// the same run, with the same deletions — anything else changed what the merged segments
    /// should hold. Indexes covering a replaced segment are dropped (Spec §10.1).
    private static func applyCompact(set name: String, runs: [CompactionRun], to manifest: inout Manifest, store: Store) throws {
        guard var current = manifest.sketchSets[name] else {
            throw StoreError(.conflict, "set \(name) was dropped meanwhile; nothing compacted", path: store.path)
        }
        var segments: [Manifest.SegmentEntry] = []
        var next = 0
        var replaced = Set<String>()
        for run in runs {
            let old = run.replaced
            guard let first = old.first, let start = current.segments.firstIndex(where: { $0.file == first.file }), start >= next,
                  start + old.count <= current.segments.count, Array(current.segments[start..<(start + old.count)]) == old else {
                throw StoreError(.conflict, "set \(name) changed meanwhile in segments this compaction merges (rows deleted or segments replaced); nothing compacted", path: store.path)
            }
            segments += current.segments[next..<start]
            if let merged = run.merged { segments.append(merged) }
            replaced.formUnion(old.map(\.file))
            next = start + old.count
        }
        segments += current.segments[next...]
        current.segments = segments
        for index in current.indexes.keys where !replaced.isDisjoint(with: current.indexes[index]!.segments) {
            current.indexes[index] = nil
        }
        manifest.sketchSets[name] = current
    }

    private static func applyAppend(set: String, segments: StagedSegments, options: SketchSetOptions,
                                     to manifest: inout Manifest, store: Store) throws {
        try checkName(set, what: "set")
        let entries = segments.written.map(\.entry)
        // A segment file joins a version once: a prepared token committed a second time (or
        // listing one file twice) names files the version already holds.
        let adding = Set(entries.map(\.file))
        guard adding.count == entries.count else {
            throw StoreError(.invalidInput, "the append lists segment file \(entries.map(\.file).first { file in entries.filter { $0.file == file }.count > 1 } ?? "") twice", path: store.path)
        }
        for (owner, existing) in manifest.sketchSets {
            if let file = existing.segments.first(where: { adding.contains($0.file) })?.file {
                throw StoreError(.invalidInput, "segment \(file) is already in set \(owner) of version \(manifest.version): these rows are committed (a prepared token is committed once)", path: store.path)
            }
        }
        let hasNonfinite = segments.written.contains { $0.hasNonfinite }
        guard var entry = manifest.sketchSets[set] else {
            if let given = options.dtype, given != segments.dtype {
                throw StoreError(.invalidInput, "set \(set) is created with dtype \(given.rawValue), its segments store \(segments.dtype.rawValue)", path: store.path)
            }
            if hasNonfinite && !segments.allowNonfinite {
                throw StoreError(.invalidInput, "set \(set) does not allow non-finite rows, and this append has some", path: store.path)
            }
            try checkCheckpoint(stated: options.attributes, in: manifest, set: set, store: store)
            manifest.sketchSets[set] = Manifest.SketchSetEntry(
                k: segments.k, dtype: segments.dtype.rawValue, allowNonfinite: segments.allowNonfinite,
                attributes: options.attributes.filter { $0.value != .null }, segments: entries)
            return
        }
        // k, dtype and allow_nonfinite never change once a set is created (Spec §7.1).
        guard entry.k == segments.k, entry.dtype == segments.dtype.rawValue else {
            throw StoreError(.conflict, "set \(set) has k = \(entry.k), dtype \(entry.dtype) in version \(manifest.version); this append has k = \(segments.k), dtype \(segments.dtype.rawValue)", path: store.path)
        }
        try checkAppend(options, to: entry, set: set, storePath: store.path)
        if hasNonfinite && !entry.allowNonfinite {
            throw StoreError(.invalidInput, "set \(set) does not allow non-finite rows, and this append has some", path: store.path)
        }
        // Through the set's id hash tables (Spec §5.2): never reads the ids of the whole set.
        try store.checkNewIDs(segments.written.flatMap(\.ids), against: entry, setName: set)
        entry.segments += entries
        manifest.sketchSets[set] = entry
    }

    /// The rules an append's options must meet to add rows to an existing set: the dtype it
    /// asks for, the projection (``ProjectionRule``) and the checkpoint it states are the
    /// set's own. Checked before rows are written and again by the commit.
    static func checkAppend(_ options: SketchSetOptions, to entry: Manifest.SketchSetEntry, set: String, storePath: String) throws {
        if let given = options.dtype, given.rawValue != entry.dtype {
            throw StoreError(.invalidInput, "set \(set) stores \(entry.dtype), the append asks for \(given.rawValue)", path: storePath)
        }
        try ProjectionRule.checkAppend(stating: options.attributes["projection"], to: entry, set: set, storePath: storePath)
        // The checkpoint is named by its content hash when both sides have one (a tensor set
        // of the same content under another name is the same checkpoint), else by its name.
        let stated = (name: options.attributes["tensor_set"]?.nonNull, hash: options.attributes["tensor_set_hash"]?.nonNull)
        let recorded = (name: entry.attributes["tensor_set"], hash: entry.attributes["tensor_set_hash"])
        let differs = if let mine = stated.hash, let theirs = recorded.hash { mine != theirs }
            else if let mine = stated.name, let theirs = recorded.name { mine != theirs }
            else { false }
        if differs {
            func plain(_ value: JSONValue) -> String { if case .string(let text) = value { text } else { value.jsonText } }
            func describe(_ name: JSONValue?, _ hash: JSONValue?) -> String {
                let text = name.map(plain) ?? "(unnamed)"
                return hash.map { "\(text) (\(plain($0)))" } ?? text
            }
            throw StoreError(.invalidInput, "set \(set) holds gradients at checkpoint \(describe(recorded.name, recorded.hash)), not \(describe(stated.name, stated.hash)): the rows of a set are taken at one checkpoint", path: storePath)
        }
    }

    /// A set created stating the checkpoint it was sketched at (`tensor_set` and
    /// `tensor_set_hash`) must name a tensor set of this version with that content.
    private static func checkCheckpoint(stated attributes: [String: JSONValue], in manifest: Manifest, set: String, store: Store) throws {
        guard case .string(let name)? = attributes["tensor_set"], case .string(let hash)? = attributes["tensor_set_hash"] else { return }
        guard let tensors = manifest.tensorSets[name] else {
            throw StoreError(.invalidInput, "set \(set) states it was sketched at tensor set \(name), which is not in version \(manifest.version) (tensor sets: \(namesList(manifest.tensorSets.keys)))", path: store.path)
        }
        guard tensors.contentHash == hash else {
            throw StoreError(.invalidInput, "set \(set) states tensor_set_hash \(hash) for tensor set \(name), whose content hash is \(tensors.contentHash) in version \(manifest.version)", path: store.path)
        }
    }

    private static func applyDelete(set name: String, ids: [String], to manifest: inout Manifest, store: Store, written: inout [String]) throws {
        let wanted = Set(ids.lazy.map(UTF8Key.init))
        guard wanted.count == ids.count else {
            throw StoreError(.invalidInput, "the ids to delete repeat themselves: \(ids.count) given, \(wanted.count) distinct", path: store.path)
        }
        var set = try existingSet(name, in: manifest, store: store)
        var found = 0
        for index in set.segments.indices {
            let segment = set.segments[index]
            let segmentIDs = try store.segmentIDs(segment)
            var deleted = Set(try segment.deletions.map { try SegmentFiles.readDeletions(storePath: store.path, entry: $0, segment: segment) } ?? [])
            let before = deleted.count
            for (local, id) in segmentIDs.enumerated() where wanted.contains(UTF8Key(id)) && !deleted.contains(local) {
                deleted.insert(local)
            }
            guard deleted.count > before else { continue }
            found += deleted.count - before
            let file = try store.writeDeletions(deleted.sorted(), segment: segment)
            written.append(file.file)
            set.segments[index].deletions = file
        }
        guard found == wanted.count else {
            let live = try store.liveIDs(of: manifest.sketchSets[name]!)
            let missing = ids.first { !live.contains(UTF8Key($0)) } ?? "?"
            throw StoreError(.notFound, "cannot delete id \"\(missing)\": it is not a live row of set \(name) in version \(manifest.version) (\(wanted.count - found) of \(wanted.count) ids not found; nothing deleted)", path: store.path)
        }
        manifest.sketchSets[name] = set
    }

    private static func existingSet(_ name: String, in manifest: Manifest, store: Store) throws -> Manifest.SketchSetEntry {
        guard let entry = manifest.sketchSets[name] else {
            throw StoreError(.notFound, "no sketch set \"\(name)\" in version \(manifest.version) (sets: \(namesList(manifest.sketchSets.keys)))", path: store.path)
        }
        return entry
    }

    private static func checkNewTensorSet(_ name: String, in manifest: Manifest, store: Store) throws {
        try checkName(name, what: "tensor set")
        guard manifest.tensorSets[name] == nil else {
            throw StoreError(.conflict, "tensor set \(name) already exists in version \(manifest.version): tensor sets are immutable; choose a new name", path: store.path)
        }
    }

    private static func namesList(_ names: some Collection<String>) -> String {
        names.isEmpty ? "none" : names.sorted().joined(separator: ", ")
    }
}

extension JSONValue {
    /// Nil for `.null` (an attribute set to null is removed).
    var nonNull: JSONValue? { self == .null ? nil : self }
}
