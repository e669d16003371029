import Foundation
import GradSketchTestSupport
import Testing

/// `gradsketch shard create|create-local|list|split`. The split is checked against the Spec's
/// independent Python reader (Spec/reference/gradsketch_ref.py reads the source store and,
/// through the map, every shard) and by querying shard by shard and merging, against a query of
/// the source.
@Suite struct ShardCommandTests {
    struct QueryOutput: Decodable {
        struct Result: Decodable { let rank: Int, id: String, score: Float }
        let results: [[Result]]
    }

    struct SplitOutput: Decodable {
        struct ShardRows: Decodable { let name: String, storeId: String, rows: [String: Int], segments: [String: Int] }
        let shards: [ShardRows]
        let droppedAttributes: [String]
    }

    struct ListOutput: Decodable {
        struct Entry: Decodable { let index: Int, name: String, host: String?, resolvedPath: String, storeId: String, local: Bool, status: String?, sets: [String: Int]? }
        let shards: [Entry]
    }

    @Test func aSplitStoreHoldsExactlyTheSourceRowsAndAnswersTheSameQueries() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        // Four segments of 7, 5, 6 and 4 rows (k = 8); the third has a float column, metadata
        // is JSON in the second; two rows of the first and one of the fourth are deleted.
        let sizes = [7, 5, 6, 4]
        let projection = #"{"version": "1.0", "generator": "philox", "seed": 11, "kind": "gaussian", "k_dense": 8}"#
        for (segment, size) in sizes.enumerated() {
            let rows = try fixture.makeRows("rows\(segment).npy", rows: size, k: 8, seed: segment + 1)
            let ids = try fixture.writeLines("ids\(segment).txt", (0..<size).map { "d\(segment)-\($0)" })
            var arguments = ["append", store, "--set", "s", "--rows", rows, "--ids", ids,
                             "--labels", try fixture.writeLines("labels\(segment).txt", (0..<size).map { "L\(segment)\($0 % 3)" }),
                             "--attribute", "projection=\(projection)"]
            if segment == 1 {
                arguments += ["--metadata", try fixture.writeLines("meta.txt", (0..<size).map { #"{"n": \#($0)}"# }), "--metadata-kind", "json"]
            }
            if segment == 2 {
                arguments += ["--column", "loss=" + (try fixture.writeLines("loss.txt", (0..<size).map { "\(Double($0) * 0.25)" }))]
            }
            try expectSuccess(ChildProcess.tool(arguments: arguments))
        }
        try expectSuccess(ChildProcess.tool("delete", store, "--set", "s", "--ids", try fixture.writeLines("gone.txt", ["d0-1", "d0-4", "d3-0"])))

        let sharded = fixture.path("sharded")
        let split = try expectSuccess(ChildProcess.tool("shard", "split", store, sharded, "--shards", "3", "--json"))
        let output = try toolJSONDecoder().decode(SplitOutput.self, from: Data(split.standardOutput.utf8))
        // Segments 0 and 3 go to shard 0 (5 + 3 live rows), 1 to shard 1, 2 to shard 2.
        #expect(output.shards.map(\.name) == ["shard-0", "shard-1", "shard-2"])
        #expect(output.shards.map { $0.rows["s"] } == [8, 5, 6])
        #expect(output.shards.map { $0.segments["s"] } == [2, 1, 1])
        #expect(output.droppedAttributes.isEmpty)

        // The reference reads both sides and compares row by row, by id.
        let check = try ChildProcess.reference("""
        sharded = f"{work}/sharded"
        def by_id(rows, ids, labels, metadata, columns):
            loss = columns.get("loss")
            return {i: (rows[n].tobytes(), labels[n], metadata[n], None if loss is None or np.isnan(loss[n]) else float(loss[n]))
                    for n, i in enumerate(ids)}
        source = by_id(*ref.read_set(store, "s"))
        merged, shard_of = {}, {}
        for index, name, rows, ids, labels, metadata, columns in ref.read_sharded_set(sharded, "s"):
            part = by_id(rows, ids, labels, metadata, columns)
            assert not (set(part) & set(merged)), "an id is in two shards"
            merged.update(part)
            shard_of.update({i: index for i in part})
        assert merged == source, (sorted(set(source) ^ set(merged)), [i for i in source if merged.get(i) != source[i]][:3])
        assert shard_of["d3-2"] == 0 and shard_of["d1-0"] == 1 and shard_of["d2-5"] == 2
        wanted = ref.manifest(store)["sketch_sets"]["s"]["attributes"]["projection"]
        for shard in ref.read_shard_map(sharded):
            m = ref.manifest(ref.shard_path(sharded, shard))
            assert m["sketch_sets"]["s"]["attributes"]["projection"] == wanted
            assert m["sketch_sets"]["s"]["dtype"] == ref.manifest(store)["sketch_sets"]["s"]["dtype"]
        assert ref.verify(ref.shard_path(sharded, ref.read_shard_map(sharded)[0])) == []
        print(len(merged))
        """, work: fixture.scratch.path)
        #expect(check.status == 0, "\(check.standardError)")
        #expect(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "19")

        // Shard by shard, merged by score (ties by shard index, then rank), equals the source's top 6.
        let query = try fixture.makeRows("q.npy", rows: 1, k: 8, seed: 99, code: "x = x[0]")
        func top(_ path: String) throws -> [QueryOutput.Result] {
            let result = try expectSuccess(ChildProcess.tool("query", path, "--set", "s", "--vector", query, "-k", "6", "--exact", "--json"))
            return try JSONDecoder().decode(QueryOutput.self, from: Data(result.standardOutput.utf8)).results[0]
        }
        let expected = try top(store)
        var candidates: [(score: Float, shard: Int, rank: Int, id: String)] = []
        for shard in 0..<3 {
            candidates += try top(sharded + "/shard-\(shard)").map { (score: $0.score, shard: shard, rank: $0.rank, id: $0.id) }
        }
        candidates.sort { ($0.score, -$0.shard, -$0.rank) > ($1.score, -$1.shard, -$1.rank) }
        #expect(candidates.prefix(6).map(\.id) == expected.map(\.id))
        #expect(candidates.prefix(6).map(\.score) == expected.map(\.score))
    }

    @Test func createListAndCreateLocalFollowTheHosts() throws {
        let scratch = try TemporaryDirectory()
        let map = scratch.path + "/map"
        try expectSuccess(ChildProcess.tool("shard", "create", map, "--shard", "a=a", "--shard", "b=\(scratch.path)/b@far", "--host", "near"))
        #expect(FileManager.default.fileExists(atPath: map + "/a/gradsketch.h5"))
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/b"))

        func list(host: String) throws -> ListOutput {
            let result = try expectSuccess(ChildProcess.tool("shard", "list", map, "--host", host, "--json"))
            return try toolJSONDecoder().decode(ListOutput.self, from: Data(result.standardOutput.utf8))
        }
        let near = try list(host: "near")
        #expect(near.shards.map(\.name) == ["a", "b"])
        #expect(near.shards.map(\.host) == [nil, "far"])
        #expect(near.shards.map(\.local) == [true, false])
        #expect(near.shards[0].resolvedPath == map + "/a")
        #expect(near.shards[0].status == "ok" && near.shards[1].status == nil)
        #expect(near.shards[0].sets == [:])
        #expect(near.shards.allSatisfy { $0.storeId.count == 32 })
        // On host "far" the shard is named but has no store yet; create-local makes it with the map's id.
        let farBefore = try list(host: "far")
        #expect(farBefore.shards[1].status?.contains("shard b on host far is missing") == true)
        try expectSuccess(ChildProcess.tool("shard", "create-local", map, "--host", "far"))
        let farAfter = try list(host: "far")
        #expect(farAfter.shards[1].status == "ok")
        let identity = try ChildProcess.python("""
        import sys, h5py
        v = h5py.File(sys.argv[1] + "/gradsketch.h5", "r").attrs["store-id"]
        print(v.decode() if isinstance(v, bytes) else v)
        """, [scratch.path + "/b"])
        #expect(identity.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == near.shards[1].storeId)

        try expectFailure(["shard", "create", scratch.path + "/other", "--shard", "x=x", "--shard", "x=y"], saying: "shard name \"x\" appears at shards[0] and shards[1]")
        try expectFailure(["shard", "create", map, "--shard", "c=c"], saying: "expected a new path or an empty directory")
        try expectFailure(["shard", "list", scratch.path], saying: "not a sharded store")
    }
}
