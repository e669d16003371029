import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Prepared appends (issue 14): sessions of several store handles prepare, one commit makes
/// their rows one version; forged, stale and repeated tokens commit nothing. (Tokens from two
/// processes: Tests/C/test_gradsketch.c, which runs a second copy of itself.)
@Suite struct PreparedAppendTests {
    /// A session of `store` that appended `count` rows of width 4 with ids `prefix0`…; values
    /// are row·10 + column + offset, exact in float32.
    static func session(_ store: GradSketch.Store, set: String = "g", prefix: String, count: Int, offset: Float,
                        options: SketchSetOptions = .init()) throws -> GradSketch.AppendSession {
        let session = try store.beginAppend(to: set, options: options)
        let values = Self.values(count, offset: offset)
        try values.withUnsafeBytes { bytes in
            try session.append(try RowInput(bytes: bytes, elementType: .float32, rowCount: count, k: 4),
                               annotations: RowAnnotations(ids: (0..<count).map { "\(prefix)\($0)" }))
        }
        return session
    }

    static func values(_ count: Int, offset: Float) -> [Float] {
        (0..<count * 4).map { Float($0 / 4) * 10 + Float($0 % 4) + offset }
    }

    /// The live rows and ids of `set` in the latest version, read by the Python reference.
    static func readBack(_ store: GradSketch.Store, set: String = "g") throws -> (rows: [Float], ids: [String]) {
        let result = try ChildProcess.reference("""
        rows, ids, _, _, _ = ref.read_set(store, "\(set)")
        print(json.dumps({"rows": [float(x) for x in rows.ravel()], "ids": ids}))
        """, work: URL(fileURLWithPath: store.path).deletingLastPathComponent().path)
        try #require(result.status == 0, "\(result.standardError)")
        struct Read: Decodable { let rows: [Float]; let ids: [String] }
        let read = try JSONDecoder().decode(Read.self, from: Data(result.standardOutput.utf8))
        return (read.rows, read.ids)
    }

    /// Replaces the token's JSON member path by `value` (a forgery for the refusal tests).
    static func forged(_ prepared: PreparedAppend, _ edit: (inout [String: Any]) -> Void) throws -> PreparedAppend {
        var object = try #require(JSONSerialization.jsonObject(with: Data(prepared.token.utf8)) as? [String: Any])
        edit(&object)
        return PreparedAppend(token: String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
    }

    static func firstSegment(_ object: inout [String: Any], _ edit: (inout [String: Any]) -> Void) {
        var segments = object["segments"] as! [[String: Any]]
        var entry = segments[0]["entry"] as! [String: Any]
        edit(&entry)
        segments[0]["entry"] = entry
        object["segments"] = segments
    }

    @Test func twoHandlesPrepareAndOneCommitMakesOneVersion() throws {
        let scratch = try TemporaryDirectory()
        let first = try GradSketch.Store.create(at: scratch.path + "/store")
        let second = try GradSketch.Store(opening: first.path)
        let a = try Self.session(first, prefix: "a", count: 3, offset: 0)
        let b = try Self.session(second, prefix: "b", count: 2, offset: 0.5)
        let tokens = [try a.prepare(), try b.prepare()]
        // A prepared session appends and commits no more.
        #expect(throws: StoreError.self) { try a.commit() }
        #expect(try first.latestVersion() == 0)

        let result = try second.commit(prepared: tokens, detail: "two ranks")
        #expect(result.version == 1 && result.rowsAdded == 5 && result.warnings.isEmpty)
        #expect(try first.versions() == [0, 1])
        let read = try Self.readBack(first)
        #expect(read.ids == ["a0", "a1", "a2", "b0", "b1"])  // token order
        #expect(read.rows == Self.values(3, offset: 0) + Self.values(2, offset: 0.5))
        #expect(try first.versionRecords().last?.detail == "two ranks")

        // The same tokens again: their segments are in version 1 already.
        #expect(throws: StoreError.self) { try first.commit(prepared: [tokens[1]]) }
        #expect(try first.latestVersion() == 1)
    }

    @Test func duplicateIdsAcrossTokensCommitNothing() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let a = try Self.session(store, prefix: "x", count: 3, offset: 0)
        let b = try Self.session(store, prefix: "x", count: 2, offset: 1)  // x0, x1 again
        let tokens = [try a.prepare(), try b.prepare()]
        do {
            try store.commit(prepared: tokens)
            Issue.record("a commit with an id in two tokens succeeded")
        } catch let error as StoreError {
            #expect(error.code == .invalidInput && error.description.contains("x0"), "\(error)")
        }
        #expect(try store.latestVersion() == 0)
        // Each token alone is fine: nothing was half-committed.
        #expect(try store.commit(prepared: [tokens[0]]).rowsAdded == 3)
    }

    @Test func forgedTokensAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let session = try Self.session(store, prefix: "r", count: 3, offset: 0)
        let token = try session.prepare()
        let outside = scratch.path + "/elsewhere.h5"
        FileManager.default.createFile(atPath: outside, contents: Data("x".utf8))

        let cases: [(String, PreparedAppend, StoreError.Code)] = [
            ("row count", try Self.forged(token) { Self.firstSegment(&$0) { $0["rows"] = 2 } }, .corrupt),
            ("file outside the store", try Self.forged(token) { Self.firstSegment(&$0) { $0["file"] = "segments/../../elsewhere.h5" } }, .invalidInput),
            ("absolute file", try Self.forged(token) { Self.firstSegment(&$0) { $0["file"] = outside } }, .invalidInput),
            ("file checksum", try Self.forged(token) { Self.firstSegment(&$0) { $0["file_checksum"] = "crc32c:00000000" } }, .corrupt),
            ("missing file", try Self.forged(token) { Self.firstSegment(&$0) { $0["file"] = "segments/" + String(repeating: "a", count: 32) + ".h5" } }, .corrupt),
            ("k", try Self.forged(token) { $0["k"] = 5 }, .corrupt),
            ("store", try Self.forged(token) { $0["store_id"] = "0123" }, .invalidInput),
            ("not a token", PreparedAppend(token: "{\"kind\": 1}"), .invalidInput),
        ]
        for (what, forged, code) in cases {
            do {
                try store.commit(prepared: [forged])
                Issue.record("a token with a forged \(what) was committed")
            } catch let error as StoreError {
                #expect(error.code == code, "\(what): \(error)")
            }
        }
        #expect(try store.latestVersion() == 0)
        #expect(try store.commit(prepared: [token]).rowsAdded == 3)
    }

    /// Vacuum with no grace between prepare and commit keeps the segments: the prepared
    /// session still holds its pin (Spec §7.4).
    @Test func vacuumKeepsPreparedSegmentsWhileTheSessionLives() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let session = try Self.session(store, prefix: "v", count: 4, offset: 2)
        let token = try session.prepare()
        let report = try store.vacuum(grace: 0)
        #expect(report.removedFiles.isEmpty && !report.keptPinnedFiles.isEmpty, "\(report)")
        #expect(try store.commit(prepared: [token]).rowsAdded == 4)
        #expect(try Self.readBack(store).rows == Self.values(4, offset: 2))
        withExtendedLifetime(session) {}
    }

    @Test func abortAfterPrepareRemovesTheSegments() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let session = try Self.session(store, prefix: "z", count: 2, offset: 0)
        let token = try session.prepare()
        session.abort()
        #expect(throws: StoreError.self) { try store.commit(prepared: [token]) }
        #expect(try store.latestVersion() == 0)
    }
}
