import Foundation
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The CLI's side of issue 12's numerics items: exact 64-bit seeds (item 12), one projection
/// per set and `project --delta` honouring every flag (item 13), aligned tensors (item 14),
/// and int8 index codes as Spec §2.3 names them.
@Suite struct NumericsCommandTests {
    static let reference = """
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import projection_ref as ref
    out = sys.argv[2]

    """

    func python(_ fixture: ToolFixture, _ body: String) throws -> String {
        let result = try ChildProcess.python(Self.reference + body, [Repository.root + "/Spec/reference", fixture.scratch.path])
        try #require(result.status == 0, "\(result.standardError)")
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Seeds that binary64 cannot hold reach the stored definition exactly, so appending with
    /// the same seed works, a seed one apart is refused, and `query --delta` projects with the
    /// set's real matrix.
    @Test(arguments: [UInt64.max, UInt64(1) << 53 + 1])
    func seedsAbove2To53StayExact(seed: UInt64) throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        _ = try python(fixture, """
        rng = np.random.default_rng(4)
        x = rng.standard_normal((20, 30)).astype(np.float32)
        np.save(f"{out}/grads.npy", x)
        delta = rng.standard_normal(30).astype(np.float32)
        np.save(f"{out}/gradient.npy", delta)
        p = ref.rademacher(\(seed), "gradient", 16, 30).astype(np.float64)
        np.save(f"{out}/expected.npy", (x.astype(np.float64) @ p.T).astype(np.float32))
        q = (p @ delta.astype(np.float64)).astype(np.float32)
        s = (x.astype(np.float64) @ p.T) @ q.astype(np.float64)
        np.save(f"{out}/scores.npy", s)
        """)
        let rows = fixture.path("grads.npy")
        try expectSuccess(ChildProcess.tool("project", store, "--rows", rows, "--set", "g", "--seed", "\(seed)", "--k", "16"))
        try expectSuccess(ChildProcess.tool("project", store, "--rows", rows, "--set", "g", "--seed", "\(seed)", "--k", "16",
                                            "--ids", try fixture.writeLines("ids.txt", (0..<20).map { "again-\($0)" })))
        try expectFailure(["project", store, "--rows", rows, "--set", "g", "--seed", "\(seed - 1)", "--k", "16"],
                          saying: "seed: \(seed - 1) here, \(seed) there")
        let set = try Store(opening: store).sketchSet("g")
        #expect(set.rowCount == 40 && set.attributes["projection"]?["seed"]?.uint64Value == seed)

        // The delta (one tensor named like the rows' parameter) projected with the set's matrix.
        try expectSuccess(ChildProcess.tool("tensors", "put", store, "--name", "d", fixture.path("gradient.npy")))
        try expectSuccess(ChildProcess.tool("export", store, "--set", "g", "--out", fixture.path("rows.npy")))
        let query = try expectSuccess(ChildProcess.tool("query", store, "--set", "g", "--delta", "d", "-k", "3", "--json"))
        let verdict = try ChildProcess.run("/usr/bin/env", ["python3", "-c", Self.reference + """
        import json
        rows, expected = np.load(f"{out}/rows.npy"), np.load(f"{out}/expected.npy")
        scores = np.load(f"{out}/scores.npy")
        text = sys.argv[3]
        found = sorted((float(v) for v in __import__("re").findall(r'"score"\\s*:\\s*([-0-9.eE+]+)', text)), reverse=True)
        top = np.sort(np.concatenate([scores, scores]))[::-1][:3]  # every row was appended twice
        print(np.abs(rows[:20] - expected).max() < 1e-4, len(found) == 3 and np.allclose(found, top, rtol=1e-4))
        """, Repository.root + "/Spec/reference", fixture.scratch.path, query.standardOutput])
        #expect(verdict.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "True True",
                "\(verdict.standardOutput) \(verdict.standardError) \(query.standardOutput)")
    }

    /// `append --attribute projection=…` onto a set with another projection is refused by the
    /// engine (nothing committed); the same projection is accepted.
    @Test func appendAttributeCannotChangeTheProjection() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        let rows = try fixture.makeRows("rows.npy", rows: 4, k: 8)
        try expectSuccess(ChildProcess.tool("project", store, "--rows", rows, "--set", "g", "--seed", "7", "--k", "8"))
        let stored = try Store(opening: store).sketchSet("g").attributes["projection"]!
        let version = try fixture.latestVersion()
        var other = stored.jsonText.replacingOccurrences(of: "\"seed\":7", with: "\"seed\":8")
        #expect(other != stored.jsonText)
        let more = try fixture.makeRows("more.npy", rows: 2, k: 8, seed: 2)
        try expectFailure(["append", store, "--set", "g", "--rows", more, "--attribute", "projection=\(other)"],
                          saying: "different projection (seed: 8 here, 7 there)")
        #expect(try fixture.latestVersion() == version)
        other = stored.jsonText
        try expectSuccess(ChildProcess.tool("append", store, "--set", "g", "--rows", more, "--attribute", "projection=\(other)"))
        // A set created without a projection cannot acquire one.
        try expectSuccess(ChildProcess.tool("append", store, "--set", "plain", "--rows", more))
        try expectFailure(["append", store, "--set", "plain", "--rows", more, "--ids", try fixture.writeLines("ids.txt", ["x", "y"]),
                           "--attribute", "projection=\(other)"], saying: "records no projection")
    }

    /// `query --query-set` compares projections by the Spec's equality: a later minor version
    /// is the same projection, another seed is not (and is named).
    @Test func querySetsCompareProjectionsByMajorVersion() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        let rows = try fixture.makeRows("rows.npy", rows: 4, k: 8)
        try expectSuccess(ChildProcess.tool("project", store, "--rows", rows, "--set", "g", "--seed", "5", "--k", "8"))
        try expectSuccess(ChildProcess.tool("project", store, "--rows", rows, "--set", "other", "--seed", "6", "--k", "8"))
        let stored = try Store(opening: store).sketchSet("g").attributes["projection"]!.jsonText
        let minor = stored.replacingOccurrences(of: "\"version\":\"1.0\"", with: "\"version\":\"1.3\"")
        #expect(minor != stored)
        let queries = try fixture.makeRows("queries.npy", rows: 2, k: 8, seed: 3)
        try expectSuccess(ChildProcess.tool("append", store, "--set", "later", "--rows", queries, "--attribute", "projection=\(minor)"))
        try expectSuccess(ChildProcess.tool("query", store, "--set", "g", "--query-set", "later", "-k", "2"))
        try expectFailure(["query", store, "--set", "g", "--query-set", "other", "-k", "2"], saying: "seed: 6 here, 5 there")
    }

    /// `project --delta` puts `--block` (SRHT) and `--side` (Kronecker layout) into the
    /// definition it projects with, matching the numpy reference.
    @Test func projectDeltaHonoursBlockAndSide() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        _ = try python(fixture, """
        rng = np.random.default_rng(9)
        w = rng.standard_normal((6, 5)).astype(np.float32)
        b = rng.standard_normal(6).astype(np.float32)
        np.save(f"{out}/w.npy", w); np.save(f"{out}/b.npy", b)
        for block in (4, 16):
            q = ref.srht(3, "w", 8, w.ravel()[None, :], block)[0] + ref.srht(3, "b", 8, b[None, :], block)[0]
            np.save(f"{out}/srht{block}.npy", q.astype(np.float32))
        pw_out, pw_in = ref.rademacher(3, "w/out", 2, 6).astype(np.float64), ref.rademacher(3, "w/in", 2, 5).astype(np.float64)
        kron = (pw_out @ w.astype(np.float64) @ pw_in.T).ravel()
        dense = ref.rademacher(3, "b", 8, 6).astype(np.float64) @ b
        np.save(f"{out}/side.npy", np.concatenate([kron, dense]).astype(np.float32))
        """)
        try expectSuccess(ChildProcess.tool("tensors", "put", store, "--name", "t", fixture.path("w.npy"), fixture.path("b.npy")))
        for block in [4, 16] {
            try expectSuccess(ChildProcess.tool("project", store, "--delta", "t", "--seed", "3", "--k", "8", "--kind", "srht",
                                                "--block", "\(block)", "--out", fixture.path("ours\(block).npy")))
        }
        try expectSuccess(ChildProcess.tool("project", store, "--delta", "t", "--seed", "3", "--k", "8", "--side", "2",
                                            "--out", fixture.path("oursSide.npy")))
        let check = try python(fixture, """
        a = [bool(np.abs(np.load(f"{out}/ours{b}.npy")[0] - np.load(f"{out}/srht{b}.npy")).max() < 1e-5) for b in (4, 16)]
        different = np.abs(np.load(f"{out}/ours4.npy") - np.load(f"{out}/ours16.npy")).max() > 1e-3
        side = np.load(f"{out}/oursSide.npy")
        print(a, different, side.shape, np.abs(side[0] - np.load(f"{out}/side.npy")).max() < 1e-5)
        """)
        #expect(check == "[True, True] True (1, 12) True", "\(check)")
    }

    /// A tensor set of float16[5] then float32 tensors, and a packed store, are mappable
    /// throughout: `verify` passes and h5py sees every dataset at a multiple of its element size.
    @Test func smallMixedTensorsAreAligned() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        _ = try python(fixture, """
        np.save(f"{out}/a.npy", np.arange(5, dtype=np.float16))
        np.save(f"{out}/b.npy", np.arange(3, dtype=np.float32))
        np.save(f"{out}/c.npy", np.arange(7, dtype=np.float16))
        np.save(f"{out}/d.npy", np.arange(11, dtype=np.float32))
        np.save(f"{out}/rows.npy", np.ones((3, 5), dtype=np.float16))
        np.save(f"{out}/rows32.npy", np.ones((3, 3), dtype=np.float32))
        """)
        try expectSuccess(ChildProcess.tool("tensors", "put", store, "--name", "mixed", fixture.path("a.npy"), fixture.path("b.npy"),
                                            fixture.path("c.npy"), fixture.path("d.npy")))
        try expectSuccess(ChildProcess.tool("append", store, "--set", "half", "--rows", fixture.path("rows.npy")))
        try expectSuccess(ChildProcess.tool("append", store, "--set", "single", "--rows", fixture.path("rows32.npy")))
        try expectSuccess(ChildProcess.tool("verify", store))
        try expectSuccess(ChildProcess.tool("pack", store, "--out", fixture.path("packed.h5")))
        let check = try python(fixture, """
        import glob, h5py
        bad = []
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and obj.size > 0:
                offset = obj.id.get_offset()
                if offset is None or offset % obj.dtype.itemsize: bad.append((obj.file.filename, name, offset))
        for path in glob.glob(f"{out}/store/tensors/*.h5") + glob.glob(f"{out}/store/segments/*.h5") + [f"{out}/packed.h5"]:
            with h5py.File(path, "r") as f: f.visititems(visit)
        print(bad)
        """)
        #expect(check == "[]")
    }

    /// Spec §2.3: index codes are `H5T_STD_I8LE`.
    @Test func indexCodesAreInt8LittleEndian() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        let rows = try fixture.makeRows("rows.npy", rows: 400, k: 8)
        try expectSuccess(ChildProcess.tool("append", store, "--set", "g", "--rows", rows))
        try expectSuccess(ChildProcess.tool("index", "build", store, "--set", "g", "--name", "main", "--lists", "4"))
        let check = try python(fixture, """
        import glob, h5py
        (path,) = glob.glob(f"{out}/store/indexes/*.h5")
        with h5py.File(path, "r") as f:
            t = f["codes"].id.get_type()
            print(t.equal(h5py.h5t.STD_I8LE), f["codes"].dtype == np.dtype("<i1"))
        """)
        #expect(check == "True True")
    }
}
