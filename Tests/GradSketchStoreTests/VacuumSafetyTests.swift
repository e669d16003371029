import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Vacuum against writers that stall and stores whose directories are links (Spec §7.4).
@Suite struct VacuumSafetyTests {
    static let k = 4

    static func rows(_ first: Int, _ count: Int) -> [Float] {
        (first * k..<(first + count) * k).map { Float($0) }
    }

    static func appendBatch(_ session: AppendSession, first: Int, count: Int) throws {
        try rows(first, count).withUnsafeBytes { bytes in
            try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: count, k: k),
                               annotations: RowAnnotations(ids: (first..<(first + count)).map { "r\($0)" }))
        }
    }

    /// Makes every file under `directory` look `seconds` old, as if the writer stalled that long.
    static func age(_ directory: String, by seconds: Double) throws {
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -seconds)], ofItemAtPath: directory + "/" + name)
        }
    }

    /// A session that has run for longer than vacuum's grace keeps its segments: its pin
    /// protects them, and the commit that follows is complete.
    @Test func aStalledSessionKeepsItsSegments() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let session = try store.beginAppend(to: "s")
        try Self.appendBatch(session, first: 0, count: 3)
        try Self.appendBatch(session, first: 3, count: 2)

        // Grace 0: the session has (in effect) stalled longer than vacuum's grace.
        let report = try store.vacuum(grace: 0)
        #expect(report.removedFiles.isEmpty, "vacuum removed a live session's files: \(report.removedFiles)")
        #expect(report.keptPinnedFiles.count == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.path + "/segments").count == 2)
        let result = try session.commit()
        #expect(result.version == 1)
        #expect(try store.sketchSet("s").floatRows() == Self.rows(0, 5))
        #expect(try store.verify().isClean)
        // Once committed the pin is gone, and an unreferenced old file is collected again.
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.path + "/pins").isEmpty)
        let orphan = store.path + "/segments/" + String(repeating: "cd", count: 16) + ".h5"
        try Data("orphan".utf8).write(to: URL(fileURLWithPath: orphan))
        try Self.age(store.path + "/segments", by: 7200)
        #expect(try store.vacuum(grace: 3600).removedFiles == ["segments/" + String(repeating: "cd", count: 16) + ".h5"])
    }

    /// A writer whose pin lapsed (stopped for longer than its lifetime) and whose segment
    /// vacuum removed meanwhile commits nothing, instead of a version naming a missing file.
    @Test func aWriterWhoseSegmentWasVacuumedCommitsNothing() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let session = try store.beginAppend(to: "s")
        try Self.appendBatch(session, first: 0, count: 3)
        try Self.age(store.path + "/pins", by: 7200)   // lapsed: older than any pin lifetime

        let report = try store.vacuum(grace: 0)
        #expect(report.removedFiles.count == 1 && report.removedFiles.allSatisfy { $0.hasPrefix("segments/") })
        let error = #expect(throws: StoreError.self) { try session.commit() }
        #expect(error?.code == .conflict)
        #expect(error?.message.contains("nothing was committed") == true, "\(String(describing: error))")
        #expect(try store.latestVersion() == 0)
        #expect(try store.verify().isClean)
    }

    /// A data directory replaced by a link to somewhere else: vacuum removes nothing there
    /// (nor anywhere) and says why; a writer refuses to write through it.
    @Test(arguments: ["tmp", "segments", "pins"])
    func linkedDirectoriesAreNotFollowed(directory: String) throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try store.append(to: "s", rows: try Self.rows(0, 2).withUnsafeBytes { bytes in
            try RowInput(bytes: bytes, elementType: .float32, rowCount: 2, k: Self.k)
        }, annotations: RowAnnotations(ids: ["a", "b"]))
        let outside = scratch.path + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        let precious = outside + "/" + String(repeating: "ef", count: 16) + ".h5"
        try Data("not the store's".utf8).write(to: URL(fileURLWithPath: precious))
        try Self.age(outside, by: 7200)
        let linked = store.path + "/" + directory
        if directory == "segments" {
            // Keep the store's own segment reachable through the link, as a user moving the
            // data elsewhere would.
            for name in try FileManager.default.contentsOfDirectory(atPath: linked) {
                try FileManager.default.moveItem(atPath: linked + "/" + name, toPath: outside + "/" + name)
            }
        }
        try? FileManager.default.removeItem(atPath: linked)
        try FileManager.default.createSymbolicLink(atPath: linked, withDestinationPath: outside)

        let error = #expect(throws: StoreError.self) { try store.vacuum(grace: 0) }
        #expect(error?.message.contains("symbolic link") == true, "\(String(describing: error))")
        #expect(FileManager.default.fileExists(atPath: precious), "vacuum deleted a file outside the store")
        let before = try FileManager.default.contentsOfDirectory(atPath: outside).sorted()
        let writeError = #expect(throws: StoreError.self) {
            try store.append(to: "s", rows: try Self.rows(2, 1).withUnsafeBytes { bytes in
                try RowInput(bytes: bytes, elementType: .float32, rowCount: 1, k: Self.k)
            }, annotations: RowAnnotations(ids: ["c"]))
        }
        #expect(writeError?.message.contains("symbolic link") == true, "\(String(describing: writeError))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).sorted() == before, "a writer wrote through the link")
        #expect(try store.latestVersion() == 1)
    }
}
