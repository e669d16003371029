import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The shard map file (Spec "Sharded stores"): its round trip, every validation rule, the
/// store-id check on open, path resolution and the projection consistency check. Expected
/// values are written by hand (JSON text, paths, ids), never read back from the code under test.
@Suite struct ShardMapTests {
    static let idA = String(repeating: "a", count: 32)
    static let idB = String(repeating: "0", count: 31) + "b"

    /// Writes `text` as the map file of a new directory and returns the directory.
    func mapDirectory(_ text: String, in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/map"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try text.write(toFile: path + "/" + ShardMap.fileName, atomically: false, encoding: .utf8)
        return path
    }

    func readError(_ text: String) throws -> StoreError {
        let directory = try TemporaryDirectory()
        let path = try mapDirectory(text, in: directory)
        do {
            _ = try ShardMap.read(directory: path)
        } catch let error as StoreError {
            return error
        }
        Issue.record("expected the map to be refused: \(text)")
        return StoreError(.io, "no error")
    }

    @Test func aWrittenMapReadsBackAndIsTheSpecJSON() throws {
        let directory = try TemporaryDirectory()
        let map = ShardMap(shards: [
            .init(name: "s0", host: nil, path: "/data/s0", storeID: Self.idA),
            .init(name: "s1", host: "node-2", path: "rel/s1", storeID: Self.idB),
        ])
        try map.write(directory: directory.path + "/m")
        #expect(ShardMap.isSharded(directory: directory.path + "/m"))
        #expect(!ShardMap.isSharded(directory: directory.path))
        #expect(try ShardMap.read(directory: directory.path + "/m") == map)
        // The file as any JSON reader sees it: the keys and JSON types of the Spec.
        let data = try Data(contentsOf: URL(fileURLWithPath: directory.path + "/m/gradsketch-shards.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["format"] as? String == "gradsketch-shards")
        #expect(object["version"] as? Int == 1)
        let shards = try #require(object["shards"] as? [[String: Any]])
        #expect(shards.count == 2)
        #expect(shards[0]["name"] as? String == "s0")
        #expect(shards[0]["host"] is NSNull)
        #expect(shards[0]["path"] as? String == "/data/s0")
        #expect(shards[0]["store_id"] as? String == Self.idA)
        #expect(shards[1]["host"] as? String == "node-2")
        // No temporary file is left next to the published map.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path + "/m") == ["gradsketch-shards.json"])
    }

    @Test func unknownKeysSurviveARewrite() throws {
        let directory = try TemporaryDirectory()
        let path = try mapDirectory("""
        {"format": "gradsketch-shards", "version": 1, "owner": {"team": "x"},
         "shards": [{"name": "a", "host": null, "path": "a", "store_id": "\(Self.idA)", "tier": "ssd"}]}
        """, in: directory)
        var map = try ShardMap.read(directory: path)
        map.shards.append(.init(name: "b", host: "h2", path: "/b", storeID: Self.idB))
        try map.write(directory: path)
        let data = try Data(contentsOf: URL(fileURLWithPath: path + "/gradsketch-shards.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect((object["owner"] as? [String: Any])?["team"] as? String == "x")
        let shards = try #require(object["shards"] as? [[String: Any]])
        #expect(shards[0]["tier"] as? String == "ssd")
        #expect(shards[1]["tier"] == nil)
        #expect(shards.map { $0["name"] as? String } == ["a", "b"])
    }

    @Test(arguments: [
        // (map text, expected code, a phrase the message must contain)
        (#"{"format": "gradsketch-shards", "version": 1, "shards": []}"#, "invalidInput", "at least one shard"),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": "a", "host": null, "path": "x", "store_id": "IDA"}, {"name": "a", "host": null, "path": "y", "store_id": "IDB"}]}"#, "invalidInput", "shard name \"a\" appears at shards[0] and shards[1]"),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": "a", "host": null, "path": "x", "store_id": "ABC"}]}"#, "invalidInput", "store_id \"ABC\", expected 32 lowercase hex digits"),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": "a", "host": null, "path": "x", "store_id": "IDA"}, {"name": "b", "host": null, "path": "y", "store_id": "IDA"}]}"#, "invalidInput", "both have store_id"),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": ".a", "host": null, "path": "x", "store_id": "IDA"}]}"#, "invalidInput", "invalid shard name"),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": "a", "host": null, "path": "", "store_id": "IDA"}]}"#, "invalidInput", "empty path"),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": "a", "host": "", "path": "x", "store_id": "IDA"}]}"#, "invalidInput", "has host \"\""),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": "a", "host": 3, "path": "x", "store_id": "IDA"}]}"#, "corrupt", "host must be a string or null"),
        (#"{"format": "gradsketch-shards", "version": 1, "shards": [{"name": "a", "host": null, "store_id": "IDA"}]}"#, "corrupt", "shards[0].path must be a string"),
        (#"{"format": "lance", "version": 1, "shards": []}"#, "unsupportedVersion", "expected format \"gradsketch-shards\", found \"lance\""),
        (#"{"format": "gradsketch-shards", "version": 2, "shards": []}"#, "unsupportedVersion", "version 2 is newer than this reader (1)"),
        (#"{"format": "gradsketch-shards", "version": "1", "shards": []}"#, "corrupt", "expected an integer \"version\""),
        (#"{"version": 1, "shards": []}"#, "corrupt", "no format key"),
        (#"{"format": "gradsketch-shards", "version": 1}"#, "corrupt", "\"shards\" array"),
        (#"[1, 2]"#, "corrupt", "expected a JSON object"),
        (#"{"format": "gradsketch-shards", "#, "corrupt", "not valid JSON"),
    ])
    func everyBrokenRuleIsRefusedClearly(text: String, code: String, phrase: String) throws {
        let text = text.replacingOccurrences(of: "IDA", with: Self.idA).replacingOccurrences(of: "IDB", with: Self.idB)
        let error = try readError(text)
        #expect(error.code.description == code, "\(error)")
        #expect(error.message.contains(phrase), "\(error)")
        #expect(error.path?.hasSuffix("/map/gradsketch-shards.json") == true)
    }

    @Test func aMissingMapIsNotFoundAndWriteRefusesAnInvalidMap() throws {
        let directory = try TemporaryDirectory()
        #expect(throws: StoreError.self) { try ShardMap.read(directory: directory.path) }
        do {
            _ = try ShardMap.read(directory: directory.path)
        } catch let error as StoreError {
            #expect(error.code == .notFound)
            #expect(error.message.contains("expected gradsketch-shards.json"))
        }
        let invalid = ShardMap(shards: [.init(name: "a", host: nil, path: "x", storeID: "not-hex")])
        #expect(throws: StoreError.self) { try invalid.write(directory: directory.path + "/m") }
        #expect(!ShardMap.isSharded(directory: directory.path + "/m"))
    }

    @Test func relativePathsResolveAgainstTheMapDirectoryAndAbsoluteOnesStay() throws {
        let directory = try TemporaryDirectory()
        let root = directory.path
        // The sibling store exists before the map and is adopted with its own store-id; the
        // other two are made (with their parent directories).
        try FileManager.default.createDirectory(atPath: root + "/elsewhere", withIntermediateDirectories: true)
        let sibling = try GradSketch.Store.create(at: root + "/elsewhere/sib")
        let sharded = try ShardedStore.create(at: root + "/map", shards: [
            (name: "inner", host: nil, path: "inner"),
            (name: "sibling", host: nil, path: "../elsewhere/sib"),
            (name: "absolute", host: nil, path: root + "/abs/a"),
        ], host: "here")
        #expect(sharded.path(of: 0) == root + "/map/inner")
        #expect(sharded.path(of: 1) == root + "/map/../elsewhere/sib")
        #expect(sharded.path(of: 2) == root + "/abs/a")
        let reopened = try ShardedStore.open(at: root + "/map/")
        #expect(reopened.directory == root + "/map")
        #expect(try reopened.openShard(0).path == root + "/map/inner")
        #expect(FileManager.default.fileExists(atPath: root + "/abs/a/gradsketch.h5"))
        #expect(reopened.map.shards[1].storeID == (try GradSketchStore.Store(opening: sibling.path).storeID))
        _ = try reopened.openShard(1)
        // The map stores the path as given, not resolved.
        let text = try String(contentsOfFile: root + "/map/gradsketch-shards.json", encoding: .utf8)
        #expect(text.contains("\"path\" : \"../elsewhere/sib\"") || text.contains("\"path\":\"../elsewhere/sib\""))
    }

    @Test func aShardWithAnotherStoreIDOrNoStoreIsRefusedNamingIt() throws {
        let directory = try TemporaryDirectory()
        let root = directory.path
        _ = try GradSketch.Store.create(at: root + "/real")
        let map = ShardMap(shards: [
            .init(name: "wrong", host: nil, path: root + "/real", storeID: Self.idA),
            .init(name: "gone", host: "h9", path: root + "/gone", storeID: Self.idB),
        ])
        try map.write(directory: root + "/m")
        let sharded = try ShardedStore.open(at: root + "/m")
        do {
            _ = try sharded.openShard(0)
            Issue.record("expected a store-id mismatch")
        } catch let error as StoreError {
            #expect(error.code == .conflict)
            #expect(error.message.hasPrefix("shard wrong at \(root)/real is store "))
            #expect(error.message.hasSuffix(", the map expects \(Self.idA)"))
        }
        do {
            _ = try sharded.openShard(1)
            Issue.record("expected a missing shard")
        } catch let error as StoreError {
            #expect(error.code == .notFound)
            #expect(error.message.contains("shard gone on host h9 is missing"))
        }
    }

    @Test func remoteShardsAreCreatedOnTheirHostWithTheMapsStoreID() throws {
        let directory = try TemporaryDirectory()
        let root = directory.path
        let sharded = try ShardedStore.create(at: root + "/m", shards: [
            (name: "here", host: "h1", path: "here"), (name: "there", host: "h2", path: "there"),
        ], host: "h1")
        #expect(sharded.isLocal(0, host: "h1") && !sharded.isLocal(1, host: "h1"))
        #expect(FileManager.default.fileExists(atPath: root + "/m/here/gradsketch.h5"))
        #expect(!FileManager.default.fileExists(atPath: root + "/m/there"))
        let onH2 = try ShardedStore.open(at: root + "/m")
        #expect(try onH2.createLocalShards(host: "h2") == [1])
        #expect(try onH2.createLocalShards(host: "h2") == [])
        _ = try onH2.openShard(1)
        // Creating over a non-empty directory is refused.
        #expect(throws: StoreError.self) {
            try ShardedStore.create(at: root + "/m", shards: [(name: "x", host: nil, path: "x")], host: "h1")
        }
    }

    /// Appends `count` rows of width `k` to set "s" of `store`.
    func append(to store: GradSketch.Store, k: Int, count: Int, dtype: SketchDType = .float32, projection: JSONValue? = nil) throws {
        let values = (0..<(count * k)).map { Float($0 % 7) - 3 }
        var attributes: [String: JSONValue] = [:]
        if let projection { attributes["projection"] = projection }
        try values.withUnsafeBytes { bytes in
            try store.transaction { transaction in
                try transaction.append(to: "s", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: count, k: k),
                                       annotations: RowAnnotations(ids: (0..<count).map { "r\($0)" }),
                                       options: SketchSetOptions(dtype: dtype, attributes: attributes))
            }
        }
    }

    @Test func aSetMustHaveOneKDtypeAndProjectionAcrossShards() throws {
        let directory = try TemporaryDirectory()
        let sharded = try ShardedStore.create(at: directory.path + "/m", shards: [
            (name: "a", host: nil, path: "a"), (name: "b", host: nil, path: "b"),
            (name: "c", host: nil, path: "c"), (name: "d", host: "far", path: "d"),
        ], host: "near")
        let projection = try JSONValue.parse(#"{"version": "1.0", "generator": "philox", "seed": 7, "kind": "gaussian", "k_dense": 4}"#)
        try append(to: sharded.openShard(0), k: 4, count: 3, projection: projection)
        try append(to: sharded.openShard(1), k: 4, count: 2, projection: projection)
        // Shard c lacks the set: it is not checked. Shard d is not reachable from "near".
        let agreed = try sharded.checkConsistency(set: "s", host: "near")
        #expect(agreed.k == 4 && agreed.dtype == .float32 && agreed.shardsWithSet == [0, 1])
        #expect(agreed.projectionJSON?.contains("\"seed\":7") == true)

        try append(to: sharded.openShard(2), k: 4, count: 2, projection: try JSONValue.parse(#"{"version": "1.0", "generator": "philox", "seed": 8, "kind": "gaussian", "k_dense": 4}"#))
        do {
            try sharded.checkConsistency(set: "s", host: "near")
            Issue.record("expected a projection mismatch")
        } catch let error as StoreError {
            #expect(error.code == .invalidInput)
            #expect(error.message.contains("shard c was sketched with a different projection than shard a (seed: 8 here, 7 there)"), "\(error)")
        }
        #expect(throws: StoreError.self) { try sharded.checkConsistency(set: "missing", host: "near") }
    }

    @Test func aDifferentKAcrossShardsIsRefused() throws {
        let directory = try TemporaryDirectory()
        let sharded = try ShardedStore.create(at: directory.path + "/m", shards: [
            (name: "a", host: nil, path: "a"), (name: "b", host: nil, path: "b"),
        ], host: "near")
        try append(to: sharded.openShard(0), k: 4, count: 2)
        try append(to: sharded.openShard(1), k: 3, count: 2)
        do {
            try sharded.checkConsistency(set: "s", host: "near")
            Issue.record("expected a k mismatch")
        } catch let error as StoreError {
            #expect(error.message.contains("shard b has k = 3, dtype float32; shard a has k = 4, dtype float32"), "\(error)")
        }
    }
}
