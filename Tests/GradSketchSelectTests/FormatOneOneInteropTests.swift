import Foundation
import GradSketchInterchange
import GradSketchSearch
import GradSketchSelect
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Format 1.1 (Spec/format.md §10 indexes, §11 results) both ways through the Python
/// reference (Spec/reference/gradsketch_ref.py), which checks every rule of those sections
/// and computes list membership, probed candidates and result rows itself.
@Suite struct FormatOneOneInteropTests {
    static let k = 12

    static func python(_ body: String, _ work: String) throws -> ChildProcessResult {
        try ChildProcess.reference(body, work: work)
    }

    static func append(_ store: Store, count: Int, prefix: String, seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        let rows = (0..<(count * k)).map { _ in Float.random(in: -1...1, using: &generator) }
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: count, k: k),
                             annotations: RowAnnotations(ids: (0..<count).map { "\(prefix)\($0)" }))
        }
    }

    static func query(seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        return (0..<k).map { _ in Float.random(in: -1...1, using: &generator) }
    }

    /// One probed list, every candidate re-scored: the result depends only on the index's
    /// centroids, lists and positions, which the reference recomputes from the files.
    static let oneList = IVFSearchParameters(nprobe: 1, rerank: 10_000)

    @Test func referenceVerifiesIndexesAndResultsTheEngineWrites() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try Self.append(store, count: 300, prefix: "a", seed: 1)
        for (name, metric) in [("ip", SearchMetric.innerProduct), ("cos", .cosine)] {
            var options = IVFBuildOptions()
            options.metric = metric
            options.lists = 8
            options.tuningQueries = 10
            _ = try IVFIndexBuilder.build(try store.sketchSet("g"), in: store, name: name, options: options)
        }
        // Rows deleted after the build stay in the index; a later segment is the exact tail.
        try store.delete(ids: ["a3", "a100", "a299"], from: "g")
        try Self.append(store, count: 40, prefix: "b", seed: 2)
        let set = try store.sketchSet("g")
        let query = Self.query(seed: 3)
        var found: [String: [String]] = [:]
        for name in ["ip", "cos"] {
            found[name] = try IVFSearcher(set: set, index: name).search(queries: query, count: 1, k: 5, parameters: Self.oneList)[0].map(\.id)
        }
        let selection = try Select.run(set, query: query, count: 10, strategy: .topK)
        try store.saveResult("top", method: selection.method, set: selection.set, setVersion: selection.setVersion,
                             parameters: selection.parameters, positions: selection.positions, ids: selection.ids, scores: selection.scores)
        let inputs = ["query": query.map(Double.init), "found": found] as [String: Any]
        try JSONSerialization.data(withJSONObject: inputs).write(to: URL(fileURLWithPath: scratch.path + "/inputs.json"))

        let check = """
        inputs = json.load(open(f"{work}/inputs.json"))
        problems = ref.verify(store)
        assert not problems, problems
        for name in ("ip", "cos"):
            index = ref.read_index(store, "g", name)
            assert index["membership_checked"] and index["entry"]["rows"] == 300, index["entry"]
            expected = ref.probe_one_list(store, "g", name, inputs["query"], 5)
            assert inputs["found"][name] == expected, (name, inputs["found"][name], expected)
        result = ref.read_result(store, "top")
        assert result["positions_checked"]
        rows, ids, *_ = ref.read_set(store, "g", result["entry"]["set_version"])
        q = np.array(inputs["query"])
        x = rows.astype(np.float64)
        cosines = x @ q / np.linalg.norm(x, axis=1) / np.linalg.norm(q)
        top = sorted(range(len(ids)), key=lambda i: (-cosines[i], i))[:10]
        assert list(result["positions"]) == top, (list(result["positions"]), top)
        assert np.allclose(result["scores"], cosines[top], rtol=1e-5, atol=1e-6), (result["scores"], cosines[top])
        print("ok")
        """
        let result = try Self.python(check, scratch.path)
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("ok"))

        // §11: a result outlives the version it read; positions are then no longer checkable.
        try Self.append(store, count: 5, prefix: "c", seed: 4)
        _ = try store.vacuum(keepLast: 1, grace: 0)
        #expect(try store.result("top").ids == selection.ids)
        let afterVacuum = try Self.python("""
        result = ref.read_result(store, "top")
        assert not result["positions_checked"] and len(result["ids"]) == 10
        assert not ref.verify(store), ref.verify(store)
        print("ok")
        """, scratch.path)
        #expect(afterVacuum.status == 0, "\(afterVacuum.standardError)")
    }

    @Test func engineReadsIndexesAndResultsTheReferenceWrites() throws {
        let scratch = try TemporaryDirectory()
        let write = try Self.python("""
        rng = np.random.default_rng(5)
        ref.create_store(store)
        ref.append(store, "g", rng.standard_normal((200, 12)).astype(np.float32), ids=[f"r{i}" for i in range(200)])
        ref.build_index(store, "g", "ip", 6)
        ref.build_index(store, "g", "cos", 5, metric="cosine")
        ref.delete(store, "g", ["r0", "r7", "r150"])
        ref.append(store, "g", rng.standard_normal((30, 12)).astype(np.float32), ids=[f"t{i}" for i in range(30)])
        ref.save_result(store, "picked", "top-by-column", "g", [4, 0, 196], [3.5, 2.0, -1.0], {"column": "loss", "count": 3})
        q = rng.standard_normal(12)
        json.dump({"query": q.tolist(), "ip": ref.probe_one_list(store, "g", "ip", q, 5),
                   "cos": ref.probe_one_list(store, "g", "cos", q, 5)}, open(f"{work}/expected.json", "w"))
        """, scratch.path)
        try #require(write.status == 0, "\(write.standardError)")
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.path + "/expected.json"))) as? [String: Any])

        let store = try Store(opening: scratch.path + "/store")
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")
        let set = try store.sketchSet("g")
        let query = try #require(expected["query"] as? [Double]).map(Float.init)
        for name in ["ip", "cos"] {
            let hits = try IVFSearcher(set: set, index: name).search(queries: query, count: 1, k: 5, parameters: Self.oneList)[0]
            #expect(hits.map(\.id) == expected[name] as? [String], "index \(name)")
        }
        let picked = try store.result("picked")
        #expect(picked.ids == ["r5", "r1", "r199"])  // live positions 4, 0, 196 after deleting r0 (and r7, r150)
        #expect(picked.positions == [4, 0, 196])
        #expect(picked.scores == [3.5, 2.0, -1.0])
        #expect(picked.entry.method == "top-by-column" && picked.entry.setVersion == 5)
    }
}

/// Spec §10.2 and §11: the root attributes of index and result files repeat their manifest
/// entry, and a reader refuses a file that disagrees (here: rewritten by h5py and re-committed
/// with matching whole-file checksums, so only the attribute check can catch it).
@Suite struct EntryAttributeTests {
    @Test func filesWhoseAttributesDisagreeWithTheirEntryAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let write = try FormatOneOneInteropTests.python("""
        import h5py, os
        rng = np.random.default_rng(8)
        ref.create_store(store)
        ref.append(store, "g", rng.standard_normal((40, 12)).astype(np.float32), ids=[f"r{i}" for i in range(40)])
        ref.build_index(store, "g", "ivf", 3)
        ref.build_index(store, "g", "elsewhere", 3)
        ref.save_result(store, "r", "manual", "g", [1, 2], [0.5, 0.25], {"count": 2})
        m = ref.manifest(store)
        index = m["sketch_sets"]["g"]["indexes"]["ivf"]
        result = m["results"]["r"]
        with h5py.File(os.path.join(store, index["file"]), "r+") as f:
            del f.attrs["metric"]
            ref._set_attr(f, "metric", "cosine")
        with h5py.File(os.path.join(store, m["sketch_sets"]["g"]["indexes"]["elsewhere"]["file"]), "r+") as f:
            del f.attrs["set"]
            ref._set_attr(f, "set", "other")
        with h5py.File(os.path.join(store, result["file"]), "r+") as f:
            del f.attrs["set-version"]
            f.attrs.create("set-version", np.int64(1))

        def refresh(latest):
            indexes = latest["sketch_sets"]["g"]["indexes"]
            for entry in (indexes["ivf"], indexes["elsewhere"], latest["results"]["r"]):
                entry["size"], entry["file_checksum"] = ref.file_checksum(os.path.join(store, entry["file"]))
            return 0, 0
        ref._commit(store, "set-attributes", "g", refresh)
        """, scratch.path)
        try #require(write.status == 0, "\(write.standardError)")
        let store = try Store(opening: scratch.path + "/store")
        let set = try store.sketchSet("g")
        do {
            _ = try IVFSearcher(set: set, index: "ivf")
            Issue.record("expected the index to be refused")
        } catch let error as StoreError {
            #expect(error.message.contains("metric is \"cosine\"") && error.message.contains("\"ip\""), "\(error.message)")
        }
        do {
            _ = try IVFSearcher(set: set, index: "elsewhere")
            Issue.record("expected an index file of another set to be refused")
        } catch let error as StoreError {
            #expect(error.message.contains("set is \"other\"") && error.message.contains("\"g\""), "\(error.message)")
        }
        do {
            _ = try store.result("r")
            Issue.record("expected the result to be refused")
        } catch let error as StoreError {
            #expect(error.message.contains("set-version is 1") && error.message.contains("says 3"), "\(error.message)")
        }
        let problems = try store.verify().problems.map(\.message)
        #expect(problems.contains { $0.contains("metric") } && problems.contains { $0.contains("set-version") }, "\(problems)")
    }
}
