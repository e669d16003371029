import Foundation
import GradSketchStore
import GradSketchTestSupport
import Testing

/// `gradsketch compact` (Spec §5.5) through the command line.
@Suite struct CompactCommandTests {
    @Test func compactMergesSegmentsAndTheReferenceReadsBothVersions() throws {
        let fixture = try ToolFixture()
        for batch in 0..<6 {
            let rows = try fixture.makeRows("r\(batch).npy", rows: 5, k: 4, seed: batch)
            let ids = try fixture.writeLines("ids\(batch).txt", (0..<5).map { "x\(batch)-\($0)" })
            try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", "s", "--rows", rows, "--ids", ids))
        }
        try expectSuccess(ChildProcess.tool("delete", fixture.store, "--set", "s", "--ids", try fixture.writeLines("gone.txt", ["x2-2"])))
        let bad = try ChildProcess.tool("compact", fixture.store, "--set", "s", "--max-segments", "1", "--target-rows", "3")
        #expect(bad.status != 0 && bad.standardError.contains("not both"))

        let result = try ChildProcess.tool("compact", fixture.store, "--set", "s", "--max-segments", "1", "--json")
        try expectSuccess(result)
        let output = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any]
        #expect(output?["segments_before"] as? Int == 6 && output?["segments_after"] as? Int == 1 && output?["rows_rewritten"] as? Int == 29)
        try expectSuccess(ChildProcess.tool("verify", fixture.store))
        let check = """
        import sys, numpy as np
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        store = sys.argv[2]
        assert not ref.verify(store), ref.verify(store)
        latest = ref.versions(store)[-1]
        old, new = ref.read_set(store, "s", latest - 1), ref.read_set(store, "s", latest)
        assert np.array_equal(old[0], new[0]) and old[1] == new[1] and len(new[1]) == 29
        expected = np.concatenate([np.random.default_rng(b).standard_normal((5, 4)).astype("float32") for b in range(6)])
        assert np.array_equal(new[0], np.delete(expected, 12, axis=0))
        print("ok")
        """
        try expectSuccess(ChildProcess.python(check, [Repository.root + "/Spec/reference", fixture.store]))
    }
}
