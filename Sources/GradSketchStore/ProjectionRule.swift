/// The rule that a sketch set holds exactly one projection (Spec §7.1, Spec/projection.md §5),
/// checked inside the commit closure so every writer — the CLI, a library caller, a
/// concurrent appender rebased onto a newer version — is held to it.
public enum ProjectionRule {
    /// Refuses an append to `set` (as it is in the version being committed on) whose stated
    /// `projection` attribute is not the projection the set records.
    ///
    /// An append that states no projection adds rows to the set's own. An append that states
    /// one needs the set to record the same one: a set created without a projection cannot
    /// acquire one later, since its earlier rows were made by an unknown matrix.
    static func checkAppend(stating appended: JSONValue?, to entry: Manifest.SketchSetEntry, set: String, storePath: String) throws {
        guard let appended else { return }
        guard let stored = entry.attributes["projection"] else {
            throw StoreError(.invalidInput, "set \(set) records no projection, and this append states one: a set's projection is fixed when the set is created", path: storePath)
        }
        if let difference = firstDifference(appended, stored) {
            throw StoreError(.invalidInput, "set \(set) was sketched with a different projection (\(difference)); refusing to mix them", path: storePath)
        }
    }

    /// Nil when `a` and `b` are the same projection by Spec/projection.md §5: equal JSON values
    /// (numbers by exact value) except that `version` compares only its MAJOR part. Otherwise
    /// the first differing field in the order Spec/projection.md §5 fixes ("Which field is
    /// first"), depth first, with both values.
    public static func firstDifference(_ a: JSONValue, _ b: JSONValue, path: String = "") -> String? {
        switch (a, b) {
        case (.object(let x), .object(let y)):
            for key in specOrder(Set(x.keys).union(y.keys), layoutEntry: path.hasPrefix("layout[")) {
                let name = path.isEmpty ? key : "\(path).\(key)"
                switch (x[key], y[key]) {
                case (nil, let theirs?): return "\(name): absent here, \(theirs.jsonText) there"
                case (let mine?, nil): return "\(name): \(mine.jsonText) here, absent there"
                case (let mine?, let theirs?):
                    if path.isEmpty, key == "version", case .string(let v) = mine, case .string(let w) = theirs {
                        if major(v) != major(w) { return "version: \(v) here, \(w) there" }
                        continue
                    }
                    if let difference = firstDifference(mine, theirs, path: name) { return difference }
                case (nil, nil): continue
                }
            }
            return nil
        case (.array(let x), .array(let y)):
            if x.count != y.count { return "\(path): \(x.count) elements here, \(y.count) there" }
            for (index, (mine, theirs)) in zip(x, y).enumerated() {
                if let difference = firstDifference(mine, theirs, path: "\(path)[\(index)]") { return difference }
            }
            return nil
        default:
            return a == b ? nil : "\(path): \(a.jsonText) here, \(b.jsonText) there"
        }
    }

    /// The keys of a definition (or of one layout entry) in the order of Spec/projection.md §5:
    /// the defined fields first, in the Spec's order, then any other key in ascending byte order.
    static func specOrder(_ keys: Set<String>, layoutEntry: Bool) -> [String] {
        let defined = layoutEntry
            ? ["name", "shape", "kind", "k_out", "k_in"]
            : ["version", "generator", "seed", "kind", "k_dense", "nonzeros", "block", "layout"]
        let others = keys.subtracting(defined).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        return defined.filter(keys.contains) + others
    }

    /// "1" of "1.0"; a version without a dot is all MAJOR.
    static func major(_ version: String) -> Substring { version.split(separator: ".", omittingEmptySubsequences: false).first ?? "" }
}
