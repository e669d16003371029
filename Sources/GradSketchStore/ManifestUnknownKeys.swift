/// The JSON text a manifest was decoded from, parsed again only when a version is committed
/// on top of it. It compares equal to any other: two manifests are the same when everything
/// this implementation knows of them is.
struct SourceJSON: Sendable, Equatable {
    var text: String?
    static func == (lhs: SourceJSON, rhs: SourceJSON) -> Bool { true }
}

/// Writers MUST preserve manifest keys they do not know: a key added by a newer minor
/// version or another implementation survives every commit made on top of it.
///
/// The typed ``Manifest`` holds only the keys this implementation knows, so on encoding the
/// unknown ones are copied back from the JSON it was read from, level by level: the top
/// object, each sketch set (by name), each of its segments (by file) and deletion lists (by
/// file), each index (by name), each tensor set (by name) and tensor (by name), each result
/// (by name) and each extension (by name). An entry this version removed stays removed; a
/// known key stays as the typed manifest says, even when that means omitted. `change`
/// describes one commit, so its unknown keys are not carried to the next one; free-form
/// objects (`attributes`, `parameters`, `checksums`) are kept whole by the typed manifest.
enum ManifestUnknownKeys {
    /// `known` (the typed manifest's JSON text) with the unknown keys of `source` added.
    static func restore(into known: String, from sourceText: String) throws -> String {
        let source = try JSONValue.parse(sourceText)
        let typed = try JSONValue.parse(known)
        let merged = topLevel(typed, source)
        // Unchanged text when there is nothing to restore, so the common case is encoded
        // exactly as before.
        return merged == typed ? known : merged.jsonText
    }

    private static func keys<K: CaseIterable & RawRepresentable>(_ type: K.Type) -> Set<String> where K.RawValue == String {
        Set(K.allCases.map(\.rawValue))
    }

    private static func topLevel(_ typed: JSONValue, _ source: JSONValue) -> JSONValue {
        merge(typed, source, known: keys(Manifest.CodingKeys.self)) { key, typedValue, sourceValue in
            switch key {
            case "sketch_sets": return byName(typedValue, sourceValue, sketchSet)
            case "tensor_sets": return byName(typedValue, sourceValue, tensorSet)
            case "results": return byName(typedValue, sourceValue) { merge($0, $1, known: keys(Manifest.ResultEntry.CodingKeys.self)) }
            case "extensions": return byField("name", typedValue, sourceValue) { merge($0, $1, known: keys(Manifest.Extension.CodingKeys.self)) }
            default: return typedValue
            }
        }
    }

    private static func sketchSet(_ typed: JSONValue, _ source: JSONValue) -> JSONValue {
        merge(typed, source, known: keys(Manifest.SketchSetEntry.CodingKeys.self)) { key, typedValue, sourceValue in
            switch key {
            case "segments": return byField("file", typedValue, sourceValue, segment)
            case "indexes": return byName(typedValue, sourceValue) { merge($0, $1, known: keys(Manifest.IndexEntry.CodingKeys.self)) }
            default: return typedValue
            }
        }
    }

    /// A segment entry (as encoded) with the unknown keys of its earlier `source` entry: for
    /// segment entries moved into segment-list files (Spec §7.1), which the manifest-level
    /// merge does not see.
    static func restoreSegment(_ typed: JSONValue, from source: JSONValue) -> JSONValue { segment(typed, source) }

    private static func segment(_ typed: JSONValue, _ source: JSONValue) -> JSONValue {
        merge(typed, source, known: keys(Manifest.SegmentEntry.CodingKeys.self)) { key, typedValue, sourceValue in
            guard key == "deletions", typedValue["file"] != nil, typedValue["file"] == sourceValue["file"] else { return typedValue }
            return merge(typedValue, sourceValue, known: keys(Manifest.DeletionEntry.CodingKeys.self))
        }
    }

    private static func tensorSet(_ typed: JSONValue, _ source: JSONValue) -> JSONValue {
        merge(typed, source, known: keys(Manifest.TensorSetEntry.CodingKeys.self)) { key, typedValue, sourceValue in
            guard key == "tensors" else { return typedValue }
            return byField("name", typedValue, sourceValue) { merge($0, $1, known: keys(Manifest.TensorEntry.CodingKeys.self)) }
        }
    }

    /// `typed` with every key of `source` that is not in `known` added (when `typed` does not
    /// already have it), and `child` applied to each known key both objects hold.
    private static func merge(_ typed: JSONValue, _ source: JSONValue, known: Set<String>,
                              child: (String, JSONValue, JSONValue) -> JSONValue = { _, typed, _ in typed }) -> JSONValue {
        guard case .object(var result) = typed, case .object(let original) = source else { return typed }
        for (key, value) in original {
            if let current = result[key] {
                if known.contains(key) { result[key] = child(key, current, value) }
            } else if !known.contains(key) {
                result[key] = value
            }
        }
        return .object(result)
    }

    /// Merges the entries of two objects keyed by name (sets, indexes, results).
    private static func byName(_ typed: JSONValue, _ source: JSONValue, _ entry: (JSONValue, JSONValue) -> JSONValue) -> JSONValue {
        guard case .object(var result) = typed, case .object(let original) = source else { return typed }
        for (name, value) in result {
            if let old = original[name] { result[name] = entry(value, old) }
        }
        return .object(result)
    }

    /// Merges the elements of two arrays matched by the string `field` (segments by file,
    /// tensors and extensions by name).
    private static func byField(_ field: String, _ typed: JSONValue, _ source: JSONValue, _ entry: (JSONValue, JSONValue) -> JSONValue) -> JSONValue {
        guard case .array(let elements) = typed, case .array(let original) = source else { return typed }
        var byKey: [String: JSONValue] = [:]
        for element in original {
            if case .string(let key)? = element[field], byKey[key] == nil { byKey[key] = element }
        }
        return .array(elements.map { element in
            guard case .string(let key)? = element[field], let old = byKey[key] else { return element }
            return entry(element, old)
        })
    }
}
