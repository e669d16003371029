import GradSketchHDF5
import GradSketchInterchange

/// A saved selection or valuation as read back from the store.
public struct StoredResult: Sendable, Equatable {
    public let name: String
    public let entry: Manifest.ResultEntry
    /// Live positions in `entry.set` as of `entry.setVersion`, ids and scores, in result order.
    public let positions: [Int]
    public let ids: [String]
    public let scores: [Double]
}

extension Store {
    /// Saves a result (ids, positions, scores, method, parameters, the set version it read)
    /// as `results/<id>.h5` and commits it under `name` (Spec §11). Results are immutable: a
    /// name already taken is refused.
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
        let pin = try pinWriter()
        defer { pin.release() }
        let id = randomIdentifier()
        let temporary = try temporaryPath()
        defer { try? FileSystem.remove(temporary) }
        var checksums: [String: String] = [:]
        let parametersText = JSONValue.object(parameters).jsonText
        try withContext(.io, "cannot write result", path: temporary) {
            let file = try HDF5File.create(path: temporary)
            let root = try file.root()
            try FileHeader.write(on: root, type: .result)
            try root.setAttribute("method", method)
            try root.setAttribute("set", set)
            try root.setAttribute("set-version", Int64(setVersion))
            try root.setAttribute("parameters", parametersText)
            let idsDataset = try root.createStringDataset("ids", strings: ids)
            checksums["ids"] = Checksum.strings(ids)
            try FileHeader.mark(idsDataset, type: .rowIDs, checksum: checksums["ids"]!)
            try idsDataset.close()
            let positionValues = positions.map(Int64.init)
            let positionsDataset = try root.createDataset("positions", type: .int64, shape: [positions.count])
            if !positionValues.isEmpty { try positionValues.withUnsafeBufferPointer { try positionsDataset.write($0) } }
            checksums["positions"] = Checksum.values(positionValues)
            try FileHeader.mark(positionsDataset, type: .resultPositions, checksum: checksums["positions"]!)
            try positionsDataset.close()
            let scoresDataset = try root.createDataset("scores", type: .float64, shape: [scores.count])
            if !scores.isEmpty { try scores.withUnsafeBufferPointer { try scoresDataset.write($0) } }
            checksums["scores"] = Checksum.values(scores)
            try FileHeader.mark(scoresDataset, type: .resultScores, checksum: checksums["scores"]!)
            try scoresDataset.close()
            try root.close()
            try file.close()
        }
        let relative = "results/\(id).h5"
        let whole = try publish(temporary, as: relative)
        let entry = Manifest.ResultEntry(file: relative, size: whole.size, fileChecksum: whole.checksum, checksums: checksums,
                                         method: method, set: set, setVersion: setVersion, count: ids.count, parameters: parameters)
        do {
            return try commit(changes: [.saveResult(name: name, entry: entry)], detail: "result \(name) (\(method), \(ids.count) rows)").version
        } catch {
            try? FileSystem.remove(absolute(relative))
            throw error
        }
    }

    /// Result `name` as of `version` (latest when nil), verified against its checksums.
    public func result(_ name: String, at version: Int? = nil) throws -> StoredResult {
        let manifest = try self.manifest(at: version)
        guard let entry = manifest.results?[name] else {
            let known = (manifest.results ?? [:]).keys.sorted()
            throw StoreError(.notFound, "no result \"\(name)\" in version \(manifest.version) (results: \(known.isEmpty ? "none" : known.joined(separator: ", ")))", path: path)
        }
        let result = try ResultFiles.load(path: absolute(entry.file), name: name, entry: entry)
        try checkPositions(of: result)
        return result
    }

    /// Refuses a result whose positions lie outside the set it was computed from, when the
    /// version it names is still retained (a vacuumed one cannot be checked).
    func checkPositions(of result: StoredResult) throws {
        let entry = result.entry
        guard (try? versions().contains(entry.setVersion)) == true else { return }
        guard let set = try manifest(at: entry.setVersion).sketchSets[entry.set] else {
            throw StoreError(.corrupt, "result \(result.name) was computed from set \(entry.set) at version \(entry.setVersion), which has no such set", path: absolute(entry.file))
        }
        if let bad = result.positions.first(where: { $0 >= set.rowCount }) {
            throw StoreError(.corrupt, "result \(result.name) holds row position \(bad), outside the \(set.rowCount) rows of set \(entry.set) at version \(entry.setVersion)", path: absolute(entry.file) + ":/positions")
        }
    }
}

enum ResultFiles {
    static func load(path: String, name: String, entry: Manifest.ResultEntry) throws -> StoredResult {
        let file = try SegmentFiles.open(path, expected: .result)
        defer { try? file.close() }
        return try withContext(.corrupt, "cannot read result", path: path) { () throws -> StoredResult in
            let root = try file.root()
            try EntryAttributes.require(root, strings: [("method", entry.method), ("set", entry.set)],
                                        integers: [("set-version", entry.setVersion)], path: path)
            let parametersText = try root.stringAttribute("parameters")
            guard let parametersText, (try? JSONValue.parse(parametersText)) == .object(entry.parameters) else {
                throw StoreError(.corrupt, "root attribute parameters is \(parametersText.map { "\"\($0)\"" } ?? "missing"); the manifest entry says \(JSONValue.object(entry.parameters).jsonText)", path: path)
            }
            // Each dataset is checked (type, encoding, one element per result row, no more
            // bytes than the file holds) before it is read.
            func checked(_ root: borrowing Group, _ name: String, _ encoding: EncodingType) throws -> Dataset {
                let handle = try root.openDataset(name)
                try FileHeader.checkDataset(handle, expected: encoding, path: path)
                guard try handle.shape() == [entry.count] else {
                    throw StoreError(.corrupt, "result dataset \(name) has shape \(try handle.shape()), the manifest says [\(entry.count)]", path: path + ":/" + name)
                }
                try DataFileCheck.fits(handle, in: path, location: path + ":/" + name)
                return handle
            }
            let idsHandle = try checked(root, "ids", .rowIDs)
            let ids = try idsHandle.readStrings()
            try idsHandle.close()
            let positionsHandle = try checked(root, "positions", .resultPositions)
            let positions: [Int64] = try positionsHandle.readAll()
            try positionsHandle.close()
            let scoresHandle = try checked(root, "scores", .resultScores)
            let scores: [Double] = try scoresHandle.readAll()
            try scoresHandle.close()
            try root.close()
            for (dataset, computed) in [("ids", Checksum.strings(ids)), ("positions", Checksum.values(positions)), ("scores", Checksum.values(scores))] {
                guard computed == entry.checksums[dataset] else {
                    throw SegmentFiles.mismatch(path, dataset, expected: entry.checksums[dataset] ?? "(none)", found: computed)
                }
            }
            guard ids.count == entry.count, positions.count == entry.count, scores.count == entry.count else {
                throw StoreError(.corrupt, "result holds \(ids.count) ids, \(positions.count) positions and \(scores.count) scores; the manifest says \(entry.count)", path: path)
            }
            if let bad = positions.first(where: { $0 < 0 }) {
                throw StoreError(.corrupt, "result row position \(bad) is negative, expected a live position in set \(entry.set)", path: path + ":/positions")
            }
            return StoredResult(name: name, entry: entry, positions: positions.map(Int.init), ids: ids, scores: scores)
        }
    }
}
