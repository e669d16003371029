import GradSketchHDF5

/// The root attributes an index (Spec §10.2) or result (§11) file repeats from its manifest
/// entry. A reader refuses a file that disagrees with its entry: the manifest's checksums
/// cover the datasets, not the attributes, so a swapped or hand-edited file would otherwise
/// be read under the wrong metric, set version or parameters.
enum EntryAttributes {
    static func require(_ root: borrowing Group, strings: [(name: String, expected: String)],
                        integers: [(name: String, expected: Int)], path: String) throws {
        for (name, expected) in strings {
            let found = try withContext(.corrupt, "cannot read root attribute \(name)", path: path) { try root.stringAttribute(name) }
            guard let found, found.utf8.elementsEqual(expected.utf8) else {
                throw StoreError(.corrupt, "root attribute \(name) is \(found.map { "\"\($0)\"" } ?? "missing"); the manifest entry says \"\(expected)\"", path: path)
            }
        }
        for (name, expected) in integers {
            let found = try withContext(.corrupt, "cannot read root attribute \(name)", path: path) { try root.integerAttribute(name) }
            guard let found, found == Int64(expected) else {
                throw StoreError(.corrupt, "root attribute \(name) is \(found.map(String.init) ?? "missing"); the manifest entry says \(expected)", path: path)
            }
        }
    }
}
