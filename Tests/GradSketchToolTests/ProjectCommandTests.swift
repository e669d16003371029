import Foundation
import GradSketchTestSupport
import Testing

/// `gradsketch project` against the numpy reference of Spec/projection.md.
@Suite struct ProjectCommandTests {
    @Test func projectsRowsAndDeltasAndRefusesAnotherProjection() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        import projection_ref as ref
        out = sys.argv[2]
        rng = np.random.default_rng(12)
        x = rng.standard_normal((50, 300)).astype(np.float32)
        np.save(f"{out}/grads.npy", x)
        p = ref.rademacher(5, "gradient", 64, 300).astype(np.float64)
        np.save(f"{out}/expected_rows.npy", (x.astype(np.float64) @ p.T).astype(np.float32))
        base = {"w": rng.standard_normal((6, 7)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
        for name, v in base.items(): np.save(f"{out}/base_{name}.npy", v)
        tuned = {n: (v * 1.5).astype(np.float32) for n, v in base.items()}
        for name, v in tuned.items(): np.save(f"{out}/tuned_{name}.npy", v)
        q = sum(ref.rademacher(5, n, 32, base[n].size).astype(np.float64) @ (tuned[n] - base[n]).astype(np.float64).ravel() for n in base)
        np.save(f"{out}/expected_query.npy", (-q).astype(np.float32)[None, :])
        """
        let made = try ChildProcess.python(script, [Repository.root + "/Spec/reference", fixture.scratch.path])
        try #require(made.status == 0, "\(made.standardError)")
        let store = fixture.store
        try expectSuccess(ChildProcess.tool("project", store, "--rows", fixture.path("grads.npy"), "--set", "g", "--seed", "5", "--k", "64"))
        try expectSuccess(ChildProcess.tool("export", store, "--set", "g", "--out", fixture.path("rows.npy")))
        try expectFailure(["project", store, "--rows", fixture.path("grads.npy"), "--set", "g", "--seed", "6", "--k", "64"],
                          saying: "different projection (seed: 6 here, 5 there)")
        try expectFailure(["project", store, "--rows", fixture.path("grads.npy"), "--set", "g", "--seed", "5", "--k", "64",
                           "--kind", "sparse"], saying: #"kind: "sparse" here, "rademacher" there"#)

        // Two checkpoints stored as tensor sets (one .npy per tensor), their delta, its query.
        func put(_ name: String) throws {
            for tensor in ["w", "b"] {
                try FileManager.default.copyItem(atPath: fixture.path("\(name)_\(tensor).npy"), toPath: fixture.path("\(name)/\(tensor).npy"))
            }
        }
        for name in ["base", "tuned"] {
            try FileManager.default.createDirectory(atPath: fixture.path(name), withIntermediateDirectories: true)
            try put(name)
            try expectSuccess(ChildProcess.tool("tensors", "put", store, "--name", name, fixture.path("\(name)/w.npy"), fixture.path("\(name)/b.npy")))
        }
        try expectSuccess(ChildProcess.tool("tensors", "delta", store, "--name", "d", "--from", "base", "--to", "tuned"))
        try expectSuccess(ChildProcess.tool("project", store, "--delta", "d", "--seed", "5", "--k", "32", "--negate", "--out", fixture.path("query.npy")))

        let check = try ChildProcess.python("""
        import sys, numpy as np
        out = sys.argv[1]
        rows, expected = np.load(f"{out}/rows.npy"), np.load(f"{out}/expected_rows.npy")
        query, expected_query = np.load(f"{out}/query.npy"), np.load(f"{out}/expected_query.npy")
        print(rows.shape, np.abs(rows - expected).max() < 1e-4, query.shape, np.abs(query - expected_query).max() < 1e-5)
        """, [fixture.scratch.path])
        #expect(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "(50, 64) True (1, 32) True", "\(check.standardOutput)\(check.standardError)")
        let info = try expectSuccess(ChildProcess.tool("info", store, "--json"))
        #expect(info.standardOutput.contains("\"generator\" : \"philox4x32-10\""))
    }

    /// Per-example layer gradients from activation / output-gradient files: each sketch
    /// equals numpy's (P_out ⊗ P_in) · vec(Bᵀ A) of the materialised gradient.
    @Test func projectsLayerGradientsThroughTheKroneckerPath() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        import projection_ref as ref
        out = sys.argv[2]
        rng = np.random.default_rng(3)
        a = rng.standard_normal((6, 5, 40)).astype(np.float32)   # N, T, n_in
        b = rng.standard_normal((6, 5, 24)).astype(np.float32)   # N, T, n_out
        np.save(f"{out}/a.npy", a); np.save(f"{out}/b.npy", b)
        p_in = ref.rademacher(8, "mlp.up/in", 8, 40).astype(np.float64)
        p_out = ref.rademacher(8, "mlp.up/out", 8, 24).astype(np.float64)
        rows = [np.kron(p_out, p_in) @ (b[i].astype(np.float64).T @ a[i].astype(np.float64)).ravel() for i in range(6)]
        np.save(f"{out}/expected.npy", np.array(rows, dtype=np.float32))
        """
        let made = try ChildProcess.python(script, [Repository.root + "/Spec/reference", fixture.scratch.path])
        try #require(made.status == 0, "\(made.standardError)")
        try expectSuccess(ChildProcess.tool("project", fixture.store, "--activations", fixture.path("a.npy"), "--output-gradients", fixture.path("b.npy"),
                                            "--parameter", "mlp.up", "--side", "8", "--seed", "8", "--set", "layer"))
        try expectSuccess(ChildProcess.tool("export", fixture.store, "--set", "layer", "--out", fixture.path("got.npy")))
        let check = try ChildProcess.python("""
        import sys, numpy as np
        got, expected = np.load(sys.argv[1] + "/got.npy"), np.load(sys.argv[1] + "/expected.npy")
        print(got.shape, bool(np.allclose(got, expected, rtol=1e-4, atol=1e-3)))
        """, [fixture.scratch.path])
        #expect(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "(6, 64) True", "\(check.standardOutput)\(check.standardError)")
        try expectFailure(["project", fixture.store, "--activations", fixture.path("a.npy"), "--output-gradients", fixture.path("got.npy"),
                           "--parameter", "mlp.up", "--set", "layer", "--seed", "8"], saying: "expected the same examples and tokens")
    }
}
