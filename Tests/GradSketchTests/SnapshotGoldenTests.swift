import Foundation
import GradSketch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The facade reads a format 1.0 store written by the Python reference (Spec/golden/store):
/// query answers against numpy's top-k over the rows the reference reader returns.
@Suite struct SnapshotGoldenTests {
    /// numpy's top-`k` by inner product with `query`, as (id, segment, row, label, score)
    /// records, from the reference reader (rows, deletions and addresses as the Spec says).
    static func numpyTopK(set: String, version: Int?, query: [Float], k: Int) throws -> [[String: Any]] {
        let script = """
        import json, sys
        import numpy as np
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        store, name, version, k = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
        query = np.array(json.loads(sys.argv[6]), dtype=np.float64)
        rows, ids, labels, _, _ = ref.read_set(store, name, version)
        m = ref.manifest(store, version)
        addresses = []
        for s, seg in enumerate(m["sketch_sets"][name]["segments"]):
            deleted = set(int(d) for d in ref._deleted(store, seg))
            addresses += [(s, r) for r in range(seg["rows"]) if r not in deleted]
        scores = rows.astype(np.float64) @ query
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], i))[:k]
        print(json.dumps([{"id": ids[i], "segment": addresses[i][0], "row": addresses[i][1],
                           "label": labels[i], "score": float(scores[i])} for i in order]))
        """
        let result = try ChildProcess.run("/usr/bin/env", [
            "python3", "-c", script, Repository.root + "/Spec/reference", Repository.goldenDirectory + "/store", set,
            version.map(String.init) ?? "null", String(k), "[" + query.map { "\($0)" }.joined(separator: ",") + "]",
        ])
        #expect(result.status == 0, "reference failed: \(result.standardError)")
        return try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [[String: Any]] ?? []
    }

    @Test(arguments: [("train", nil as Int?), ("train", 2), ("valid", nil)])
    func queriesOfTheGoldenStoreEqualNumpy(set: String, version: Int?) throws {
        let store = try GradSketch.Store(opening: Repository.goldenDirectory + "/store")
        let snapshot = try Snapshot(store: store, version: version)
        let k = try snapshot.sketchSet(set).k
        let query = (0..<k).map { Float(($0 * 7) % 5) - 2 }
        var request = QueryRequest(set: set, input: .vectors(query, count: 1))
        request.k = 6
        let hits = try snapshot.query(request).hits[0]
        let expected = try Self.numpyTopK(set: set, version: version, query: query, k: 6)
        #expect(hits.count == expected.count && !expected.isEmpty)
        for (hit, truth) in zip(hits, expected) {
            #expect(hit.id == truth["id"] as? String)
            #expect(hit.address == RowAddress(segment: truth["segment"] as! Int, row: truth["row"] as! Int))
            #expect((hit.label ?? "") == truth["label"] as? String)
            #expect(abs(Double(hit.score) - (truth["score"] as! Double)) <= 1e-4 * max(1, abs(truth["score"] as! Double)))
        }
        #expect(try snapshot.ids(set: set, at: hits.map(\.address)) == hits.map(\.id))
    }
}
