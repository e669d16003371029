import Foundation
@testable import GradSketchStore
import GradSketchInterchange
import GradSketchTestSupport
import Testing

/// The file-kind registry (Spec §2.6): a kind declared once is written, verified, counted as
/// referenced and vacuumed by the shared code, and every built-in kind is held to the
/// generic rules.
@Suite struct FileKindTests {
    /// A kind only this test knows: `test-notes/<id>.h5` files with one int64 dataset of one
    /// element per row, listed by a set attribute `test-notes` (an array of entries).
    static let noteKind = FileKind(
        name: "test note", directory: "test-notes", encoding: "test-note",
        datasets: [.init("values", encoding: "test-values")],
        entries: { manifest in
            manifest.sketchSets.values.flatMap { set -> [FileKind.Entry] in
                guard case .array(let notes)? = set.attributes["test-notes"] else { return [] }
                return notes.compactMap { note -> FileKind.Entry? in
                    guard case .object(let fields) = note, case .string(let file)? = fields["file"],
                          case .string(let fileChecksum)? = fields["file_checksum"], case .string(let values)? = fields["values"],
                          let size = fields["size"].flatMap(integer), let rows = fields["rows"].flatMap(integer) else { return nil }
                    return FileKind.Entry(file: file, size: size, fileChecksum: fileChecksum, datasetChecksums: [("values", values)],
                                          rows: rows, check: nil)
                }
            }
        })

    static func integer(_ value: JSONValue) -> Int? {
        switch value {
        case .integer(let number): Int(number)
        case .unsigned(let number): Int(number)
        case .number(let number): Int(exactly: number)
        default: nil
        }
    }

    static let pattern: [Int64] = [0x1122_3344_5566_7788, 0x0102_0304_0506_0708, 0x7A7B_7C7D_7E7F_7071]

    /// Writes one note file through the shared writer and returns its manifest entry.
    static func writeNote(_ store: Store) throws -> PublishedFile {
        let pin = try store.pinWriter()
        defer { pin.release() }
        let writer = try DataFileWriter(store: store, kind: noteKind, pin: pin)
        try writer.write(pattern, dataset: "values")
        return try writer.publish()
    }

    static func flipByte(of pattern: [Int64], in path: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let needle = pattern.withUnsafeBytes { Array($0) }
        let start = try #require((0...(bytes.count - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) })
        bytes[start + 9] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test func aKindRegisteredInATestIsVerifiedReferencedAndVacuumed() throws {
        FileKinds.register(Self.noteKind)
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let note = try Self.writeNote(store)
        // Its CRC is the one of the bytes written (an independent CRC-32C of the pattern).
        #expect(note.checksums["values"] == CRC32C.formatted(Self.pattern.withUnsafeBytes { CRC32C.checksum($0) }))
        let entry: JSONValue = .object(["file": .string(note.file), "size": .integer(Int64(note.size)), "file_checksum": .string(note.fileChecksum),
                                        "values": .string(note.checksums["values"]!), "rows": .integer(3)])
        let rows = [Float](repeating: 0.5, count: 3 * 2)
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: 3, k: 2),
                             annotations: RowAnnotations(ids: ["a", "b", "c"]),
                             options: SketchSetOptions(attributes: ["test-notes": .array([entry])]))
        }
        #expect(note.file.hasPrefix("test-notes/"))
        #expect(try store.manifest().referencedFiles.contains(note.file))
        let clean = try store.verify()
        #expect(clean.isClean, "\(clean.problems)")
        #expect(clean.filesChecked == 3)  // the segment, the segment list naming it (1.2) and the note

        // An unreferenced note past the grace is vacuumed; the referenced one stays.
        let stray = try Self.writeNote(store)
        let old = Date(timeIntervalSinceNow: -7200)
        try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: store.path + "/" + stray.file)
        let vacuumed = try store.vacuum(grace: 3600)
        #expect(vacuumed.removedFiles == [stray.file])
        #expect(FileManager.default.fileExists(atPath: store.path + "/" + note.file))
        #expect(!FileManager.default.fileExists(atPath: store.path + "/" + stray.file))

        // A changed byte in its data is found by the generic checks.
        try Self.flipByte(of: Self.pattern, in: store.path + "/" + note.file)
        let problems = try store.verify().problems
        #expect(problems.allSatisfy { $0.file == note.file }, "\(problems)")
        #expect(problems.contains { $0.message.contains("whole-file checksum mismatch") }, "\(problems)")
        #expect(problems.contains { $0.object == "values" && $0.message.contains("checksum mismatch in dataset values") }, "\(problems)")
    }

    /// Streamed blocks: the dataset's CRC is the one of all its bytes, and the whole-file
    /// checksum (combined from the CRC kept while writing and the rest of the file read back)
    /// is the one of the published file's bytes, both computed here independently.
    @Test func aStreamedDatasetHasTheChecksumsOfItsBytes() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let pin = try store.pinWriter()
        defer { pin.release() }
        let rows = 300, width = 4
        let values = (0..<(rows * width)).map { Int64($0 * 7919 - 5000) }
        let writer = try DataFileWriter(store: store, kind: Self.noteKind, pin: pin)
        let checksum = try values.withUnsafeBytes { bytes in
            try writer.stream(dataset: "values", of: Int64.self, shape: [rows, width]) { write in
                for block in [0..<100, 100..<250, 250..<300] {
                    try write(UnsafeRawBufferPointer(rebasing: bytes[(block.lowerBound * width * 8)..<(block.upperBound * width * 8)]), block)
                }
            }
        }
        let published = try writer.publish()
        #expect(published.file == "test-notes/\(writer.fileID).h5")
        #expect(checksum == CRC32C.formatted(values.withUnsafeBytes { CRC32C.checksum($0) }))
        let fileBytes = try Data(contentsOf: URL(fileURLWithPath: store.path + "/" + published.file))
        #expect(published.size == fileBytes.count)
        #expect(published.fileChecksum == CRC32C.formatted(fileBytes.withUnsafeBytes { CRC32C.checksum($0) }))
        // The values are in the file as written (h5py reads them back).
        let check = try ChildProcess.python("""
        import sys, h5py, numpy as np
        with h5py.File(sys.argv[1], "r") as f:
            d = f["values"][()]
            assert f["values"].attrs["encoding-type"].decode() == "test-values"
        assert d.shape == (300, 4) and (d.ravel() == np.arange(1200) * 7919 - 5000).all()
        print("ok")
        """, [store.path + "/" + published.file])
        #expect(check.standardOutput.contains("ok"), "\(check.standardError)")

        let unordered = try DataFileWriter(store: store, kind: Self.noteKind, pin: pin)
        #expect(throws: StoreError.self) {
            try values.withUnsafeBytes { bytes in
                try unordered.stream(dataset: "values", of: Int64.self, shape: [rows, width]) { write in
                    try write(UnsafeRawBufferPointer(rebasing: bytes[(100 * width * 8)..<(200 * width * 8)]), 100..<200)
                }
            }
        }
    }

    @Test func theWriterRefusesADatasetItsKindDoesNotDeclare() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let pin = try store.pinWriter()
        defer { pin.release() }
        do {
            let writer = try DataFileWriter(store: store, kind: FileKinds.deletions, pin: pin)
            #expect(throws: StoreError.self) { try writer.write([Int64(1)], dataset: "positions") }
        }
        // Dropped unpublished: nothing is left under tmp/.
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.path + "/tmp").isEmpty)
    }

    /// Every built-in kind: a store holding one file of each, a byte flipped in each file in
    /// turn is reported against that file and no other, and an unreferenced copy in its
    /// directory is vacuumed.
    @Test func everyBuiltInKindIsVerifiedAndVacuumedByTheSharedCode() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 9)
        let k = 8, count = 64
        let rows = (0..<(count * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: count, k: k),
                             annotations: RowAnnotations(ids: (0..<count).map { "r\($0)" }))
        }
        _ = try rows.withUnsafeBytes { bytes in
            try store.putTensors("w", [try TensorInput(name: "layer", elementType: .float32, shape: [count, k], bytes: bytes)])
        }
        try store.delete(ids: ["r3"], from: "g")
        try store.saveResult("picked", method: "select/test", set: "g", setVersion: try store.latestVersion(), parameters: [:],
                             positions: [0, 5], ids: ["r0", "r6"], scores: [1, 0.5])
        let arrays = IVFIndexArrays(centroids: [Float](repeating: 0, count: k), listOffsets: [0, Int64(count - 1)],
                                    codes: [Int8](repeating: 1, count: (count - 1) * k), scales: [Float](repeating: 0.01, count: count - 1),
                                    positions: (0..<Int64(count)).filter { $0 != 3 })
        try store.commitIndex("flat", over: try store.sketchSet("g"), coveredSegments: 1, metric: "ip", arrays: arrays, parameters: [:])
        // An ivf-rq4 index: its quantizer file and one part (one list, one group).
        let indexed = try store.sketchSet("g")
        let quantizer = try store.writePartQuantizer(for: indexed, metric: "ip", arrays: PartQuantizerArrays(
            centroids: [Float](repeating: 0, count: k), groupCentroids: [Float](repeating: 0, count: k), groupOffsets: [0, 1], rotationSeed: nil))
        let part = try store.writeIndexPart(for: indexed, segments: indexed.entry.segments.map(\.file), lists: 1, arrays: IndexPartArrays(
            listOffsets: [0, Int64(count - 1)], codes: [UInt8](repeating: 0x37, count: (count - 1) * ((k + 1) / 2)),
            lows: [Float](repeating: -0.5, count: count - 1), steps: [Float](repeating: 0.07, count: count - 1),
            positions: (0..<Int64(count)).filter { $0 != 3 }))
        try store.commitPartIndex("parts", over: indexed, metric: "ip", quantizer: quantizer, parts: [part], lists: 1, parameters: [:])
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")

        let manifest = try store.manifest()
        for kind in FileKinds.builtIn {
            let files = kind.entries(manifest).map(\.file)
            try #require(files.count == 1, "kind \(kind.name) has \(files.count) files")
            let file = store.path + "/" + files[0]
            let original = try Data(contentsOf: URL(fileURLWithPath: file))
            var changed = original
            changed[changed.count / 2] ^= 0x01
            try changed.write(to: URL(fileURLWithPath: file))
            let problems = try store.verify().problems
            // (Another file's check may also fail when it reads this one, e.g. a result's
            // through the deletion list; the changed file itself is always named.)
            #expect(problems.contains { $0.file == files[0] }, "kind \(kind.name): \(problems)")
            try original.write(to: URL(fileURLWithPath: file))

            // An unreferenced copy in the kind's directory, older than the grace, is removed.
            let stray = kind.directory + "/" + String(repeating: "0", count: 32) + ".h5"
            try original.write(to: URL(fileURLWithPath: store.path + "/" + stray))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -7200)], ofItemAtPath: store.path + "/" + stray)
            #expect(try store.vacuum(grace: 3600).removedFiles == [stray], "kind \(kind.name)")
        }
        #expect(try store.verify().isClean)
    }
}
