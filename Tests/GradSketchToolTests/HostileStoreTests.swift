import Foundation
import GradSketchStore
import GradSketchTestSupport
import Testing

/// A store with every kind of entry a manifest can hold, built once by the tool and copied
/// for each hostile case: set `s` (two segments, the first with a deletion list, an index
/// `ip`), set `nan` (a NaN row, created with allow_nonfinite), tensor set `base`, result `r`
/// (all 11 live rows of `s`).
private final class HostileBase: Sendable {
    let scratch: TemporaryDirectory
    var store: String { scratch.path + "/store" }
    var query: String { scratch.path + "/q.npy" }

    init() throws {
        scratch = try TemporaryDirectory()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        rng = np.random.default_rng(7)
        np.save(f"{out}/a.npy", rng.standard_normal((6, 4)).astype("float32"))
        np.save(f"{out}/b.npy", rng.standard_normal((6, 4)).astype("float32"))
        n = rng.standard_normal((3, 4)).astype("float32"); n[1, 2] = np.nan
        np.save(f"{out}/n.npy", n)
        np.save(f"{out}/q.npy", rng.standard_normal(4).astype("float32"))
        np.save(f"{out}/w.npy", rng.standard_normal((2, 3)).astype("float32"))
        open(f"{out}/ida.txt", "w").write("".join(f"a{i}\\n" for i in range(6)))
        open(f"{out}/idb.txt", "w").write("".join(f"b{i}\\n" for i in range(6)))
        open(f"{out}/del.txt", "w").write("a1\\n")
        """
        try expectSuccess(ChildProcess.python(script, [scratch.path]))
        let path = scratch.path
        for arguments in [
            ["init", store],
            ["append", store, "--set", "s", "--rows", path + "/a.npy", "--ids", path + "/ida.txt"],
            ["append", store, "--set", "s", "--rows", path + "/b.npy", "--ids", path + "/idb.txt"],
            ["delete", store, "--set", "s", "--ids", path + "/del.txt"],
            ["append", store, "--set", "nan", "--rows", path + "/n.npy", "--allow-nonfinite"],
            ["tensors", "put", store, "--name", "base", path + "/w.npy"],
            ["index", "build", store, "--set", "s", "--lists", "2"],
            ["select", store, "--set", "s", "--vector", query, "-k", "11", "--save", "r"],
        ] {
            try expectSuccess(ChildProcess.tool(arguments: arguments))
        }
    }
}

private let hostileBase = Result { try HostileBase() }

/// One way to damage a store, and what every reading command must then do.
struct HostileCase: Sendable, CustomTestStringConvertible {
    let name: String
    /// Python statements run on the latest manifest (see ``HostileStore``).
    let python: String
    /// Words the error must contain, for the commands that must refuse.
    let message: String
    /// Commands (by name) that must fail; nil means all of them.
    let failing: Set<String>?
    /// The set the commands read.
    var set = "s"

    var testDescription: String { name }

    static let allCommands: Set<String> = ["verify", "export", "query", "pack", "info", "log", "select", "results show", "index info"]
    static let rowReaders: Set<String> = ["verify", "export", "query", "pack", "select"]

    static let all: [HostileCase] = [
        // Issue 12 item 6: numbers in the manifest, checked before anything is indexed or allocated.
        .init(name: "rows 2^63-1 with a deletion list", python: #"seg[0]["rows"] = 2**63 - 1"#, message: "manifest is invalid", failing: nil),
        .init(name: "rows 2^63-1 without a size", python: #"seg[0]["rows"] = 2**63 - 1; del seg[0]["size"]; seg[1]["rows"] = 2**62"#, message: "manifest is invalid", failing: nil),
        .init(name: "negative rows", python: #"seg[1]["rows"] = -3"#, message: "non-negative", failing: nil),
        .init(name: "more deletions than rows", python: #"seg[0]["deletions"]["count"] = 100"#, message: "deletes 100 rows", failing: nil),
        .init(name: "k near Int.max", python: #"m["sketch_sets"]["s"]["k"] = 2**62"#, message: "manifest is invalid", failing: nil),
        .init(name: "index lists 2^63-1", python: #"m["sketch_sets"]["s"]["indexes"]["ip"]["lists"] = 2**63 - 1"#, message: "manifest is invalid", failing: nil),
        .init(name: "tensor shape product overflows", python: #"m["tensor_sets"]["base"]["tensors"][0]["shape"] = [2**40, 2**40]"#, message: "manifest is invalid", failing: nil),
        .init(name: "result count negative", python: #"m["results"]["r"]["count"] = -1"#, message: "non-negative", failing: nil),
        .init(name: "2^32 rows declared for a small file", python: #"seg[1]["rows"] = 2**32; seg[1]["size"] = 2**60"#, message: "4294967296", failing: rowReaders),
        .init(name: "FIFO in place of a segment", python: #"os.unlink(segment_file(1)); os.mkfifo(segment_file(1))"#, message: "found a FIFO", failing: rowReaders),
        // Issue 12 item 7: names that leave the store.
        .init(name: "segment name with ../", python: #"seg[1]["file"] = "segments/../../outside.h5""#, message: "file name must be segments/", failing: nil),
        .init(name: "segment name with a NUL after it", python: #"seg[1]["file"] += "\0../../outside.h5""#, message: "file name must be segments/", failing: nil),
        .init(name: "absolute segment name", python: #"seg[1]["file"] = os.path.abspath(segment_file(1))"#, message: "file name must be segments/", failing: nil),
        .init(name: "deletion list name with ../", python: #"seg[0]["deletions"]["file"] = "deletions/../segments/" + os.path.basename(seg[1]["file"])"#, message: "file name must be deletions/", failing: nil),
        .init(name: "tensor set name with ../", python: #"m["tensor_sets"]["base"]["file"] = "tensors/../" + seg[1]["file"]"#, message: "file name must be tensors/", failing: nil),
        .init(name: "index name with ../", python: #"m["sketch_sets"]["s"]["indexes"]["ip"]["file"] = "indexes/../../outside.h5""#, message: "file name must be indexes/", failing: nil),
        .init(name: "result name with ../", python: #"m["results"]["r"]["file"] = "results/../../outside.h5""#, message: "file name must be results/", failing: nil),
        .init(name: "segment symlinked outside the store", python: #"os.rename(segment_file(1), store + "/../outside.h5"); os.symlink(os.path.abspath(store + "/../outside.h5"), segment_file(1))"#, message: "found a symbolic link", failing: rowReaders),
        .init(name: "segments directory symlinked outside the store", python: #"os.rename(store + "/segments", store + "/../elsewhere"); os.symlink(os.path.abspath(store + "/../elsewhere"), store + "/segments")"#,
              message: "found a symbolic link", failing: rowReaders),
        // Issue 12 item 15: dataset-level encoding attributes.
        .init(name: "rows encoding-version 2.0", python: """
            with h5py.File(segment_file(1), "r+") as f:
                del f["rows"].attrs["encoding-version"]
                ref._set_attr(f["rows"], "encoding-version", "2.0")
            seg[1]["size"], seg[1]["file_checksum"] = ref.file_checksum(segment_file(1))
            """, message: "encoding-version 2.0 is newer", failing: rowReaders),
        .init(name: "unknown ids encoding-type", python: """
            with h5py.File(segment_file(1), "r+") as f:
                del f["ids"].attrs["encoding-type"]
                ref._set_attr(f["ids"], "encoding-type", "row-ids-v9")
            seg[1]["size"], seg[1]["file_checksum"] = ref.file_checksum(segment_file(1))
            """, message: "encoding-type must be \"row-ids\"", failing: rowReaders),
        .init(name: "tensor encoding-version 2.0", python: """
            t = m["tensor_sets"]["base"]
            with h5py.File(os.path.join(store, t["file"]), "r+") as f:
                dataset = f["tensors"][list(f["tensors"].keys())[0]]
                del dataset.attrs["encoding-version"]
                ref._set_attr(dataset, "encoding-version", "2.0")
            t["size"], t["file_checksum"] = ref.file_checksum(os.path.join(store, t["file"]))
            """, message: "encoding-version 2.0 is newer", failing: ["verify", "pack"]),
        .init(name: "index positions of another encoding-type", python: """
            index = m["sketch_sets"]["s"]["indexes"]["ip"]
            with h5py.File(os.path.join(store, index["file"]), "r+") as f:
                del f["positions"].attrs["encoding-type"]
                ref._set_attr(f["positions"], "encoding-type", "result-positions")
            index["size"], index["file_checksum"] = ref.file_checksum(os.path.join(store, index["file"]))
            """, message: "encoding-type must be \"ivf-row-positions\"", failing: ["verify", "query"]),
        .init(name: "result scores encoding-version 9.0", python: """
            result = m["results"]["r"]
            with h5py.File(os.path.join(store, result["file"]), "r+") as f:
                del f["scores"].attrs["encoding-version"]
                ref._set_attr(f["scores"], "encoding-version", "9.0")
            result["size"], result["file_checksum"] = ref.file_checksum(os.path.join(store, result["file"]))
            """, message: "encoding-version 9.0 is newer", failing: ["verify", "results show"]),
        // A dataset whose declared shape needs far more memory than its file holds.
        .init(name: "ids declared as 6 GiB in a small file", python: """
            with h5py.File(segment_file(1), "r+") as f:
                attributes = dict(f["ids"].attrs)
                del f["ids"]
                dataset = f.create_dataset("ids", shape=(6,), dtype="S1073741824", chunks=(1,))
                for key, value in attributes.items(): dataset.attrs[key] = value
            seg[1]["size"], seg[1]["file_checksum"] = ref.file_checksum(segment_file(1))
            """, message: "6442450944 bytes", failing: rowReaders),
        // Issue 12 item 16: duplicated segments, NaN rows, result positions.
        .init(name: "segment listed twice", python: #"seg.append(dict(seg[1]))"#, message: "listed twice", failing: nil),
        .init(name: "NaN rows in a set without allow_nonfinite", python: #"m["sketch_sets"]["nan"]["allow_nonfinite"] = False"#,
              message: "does not allow non-finite", failing: ["verify", "export", "query", "pack", "select"], set: "nan"),
        // The result file's own set-version attribute is changed too (and the whole-file
        // checksum recomputed), so the file agrees with its entry and only the positions are wrong.
        .init(name: "result positions outside the set", python: #"""
            r = m["results"]["r"]
            r["set_version"] = 1
            result_file = os.path.join(store, r["file"])
            with h5py.File(result_file, "r+") as f:
                del f.attrs["set-version"]
                ref._set_attr(f, "set-version", 1)
            r["size"], r["file_checksum"] = ref.file_checksum(result_file)
            """#, message: "outside the 6 rows", failing: ["verify", "results show"]),
    ]
}

@Suite("Hostile and damaged stores")
struct HostileStoreTests {
    /// Every hostile case × every reading command: the commands that meet the damage exit 1
    /// with an error naming it; none crashes, hangs, prints HDF5's diagnostics or reads
    /// outside the store; the store is left as it was.
    @Test(arguments: HostileCase.all)
    func readingCommandsRefuseCleanly(_ hostile: HostileCase) throws {
        let base = try hostileBase.get()
        let scratch = try TemporaryDirectory()
        let store = scratch.path + "/store"
        try HostileStore.copy(base.store, to: store)
        // A real segment outside the store: a name that escapes would find valid data here.
        let segment = try #require(try Store(opening: base.store).manifest().sketchSets["s"]?.segments[1].file)
        try HostileStore.copy(base.store + "/" + segment, to: scratch.path + "/outside.h5")
        try HostileStore.rewriteLatestManifest(of: store, hostile.python)
        let versionsBefore = try FileManager.default.contentsOfDirectory(atPath: store + "/versions").sorted()

        let commands: [(String, [String])] = [
            ("verify", ["verify", store]),
            ("export", ["export", store, "--set", hostile.set, "--out", scratch.path + "/out.npy"]),
            ("query", ["query", store, "--set", hostile.set, "--vector", base.query, "-k", "3"]),
            ("pack", ["pack", store, "--out", scratch.path + "/packed.h5"]),
            ("info", ["info", store]),
            ("log", ["log", store]),
            ("select", ["select", store, "--set", hostile.set, "--vector", base.query, "-k", "2"]),
            ("results show", ["results", "show", store, "--name", "r"]),
            ("index info", ["index", "info", store, "--set", hostile.set]),
        ]
        for (name, arguments) in commands {
            let (result, timedOut) = try HostileStore.run(ChildProcess.gradsketch, arguments, timeout: 30)
            let what = "\(hostile.name) / \(name)"
            #expect(!timedOut, "\(what): hung and was killed")
            #expect(!result.wasSignalled, "\(what): crashed: \(result.standardError)")
            #expect(!result.standardError.contains("HDF5-DIAG"), "\(what): HDF5 printed its own diagnostics")
            #expect(!result.standardError.contains("Fatal error"), "\(what): Swift trap: \(result.standardError)")
            if (hostile.failing ?? HostileCase.allCommands).contains(name) {
                #expect(result.status == 1, "\(what): expected exit 1, found \(result.status): \(result.standardOutput)")
                #expect(result.standardError.contains(hostile.message) || result.standardOutput.contains(hostile.message),
                        "\(what): error lacks \"\(hostile.message)\": \(result.standardError)")
            } else {
                #expect(result.status == 0 || result.status == 1, "\(what): exit \(result.status): \(result.standardError)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/out.npy") || hostile.failing?.contains("export") == false,
                "\(hostile.name): export wrote rows from a damaged store")
        #expect(try FileManager.default.contentsOfDirectory(atPath: store + "/versions").sorted() == versionsBefore)
    }

    /// Issue 12 item 9: `export --out` and `pack --out` never write inside the store, even
    /// through a symbolic link to one of its directories.
    @Test func outputsInsideTheStoreAreRefused() throws {
        let base = try hostileBase.get()
        let scratch = try TemporaryDirectory()
        let store = scratch.path + "/store"
        try HostileStore.copy(base.store, to: store)
        let segment = try #require(try Store(opening: store).manifest().sketchSets["s"]?.segments[1].file)
        let published = try Data(contentsOf: URL(fileURLWithPath: store + "/" + segment))
        try FileManager.default.createSymbolicLink(atPath: scratch.path + "/link", withDestinationPath: store + "/segments")
        let inside = [store + "/" + segment, store + "/segments/new.npy", store + "/out.npy",
                      scratch.path + "/link/" + (segment as NSString).lastPathComponent, store + "/tmp/../segments/x.npy"]
        for output in inside {
            try expectFailure(["export", store, "--set", "s", "--out", output], saying: "cannot write the output inside the store")
            try expectFailure(["pack", store, "--out", output], saying: "cannot write the output inside the store")
            try expectFailure(["export", store, "--set", "s", "--out", scratch.path + "/rows.npy", "--ids-out", output],
                              saying: "cannot write the output inside the store")
            try expectFailure(["results", "show", store, "--name", "r", "--ids-out", output], saying: "cannot write the output inside the store")
            try expectFailure(["results", "export", store, "--name", "r", "--out", output + ".csv"], saying: "cannot write the output inside the store")
            try expectFailure(["project", store, "--delta", "any", "-k", "4", "--seed", "0", "--out", output], saying: "cannot write the output inside the store")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/rows.npy"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: store + "/" + segment)) == published)
        #expect(!FileManager.default.fileExists(atPath: store + "/segments/new.npy"))
        let verify = try ChildProcess.tool("verify", store)
        #expect(verify.status == 0, "\(verify.standardOutput)")
        // Outside the store, next to it, is fine.
        try expectSuccess(ChildProcess.tool("export", store, "--set", "s", "--out", scratch.path + "/out.npy"))
    }

    /// Writers MUST preserve manifest keys they do not know: keys the Python reference adds
    /// at every level survive commits by the engine (an append and a delete), checked with
    /// h5py and json; the commit's own `change` does not inherit the old one's.
    @Test func unknownManifestKeysSurviveCommits() throws {
        let base = try hostileBase.get()
        let scratch = try TemporaryDirectory()
        let store = scratch.path + "/store"
        try HostileStore.copy(base.store, to: store)
        try HostileStore.rewriteLatestManifest(of: store, """
            m["x_top"] = {"nested": [1, "two"]}
            s = m["sketch_sets"]["s"]
            s["x_set"] = "set-level"
            for i, e in enumerate(s["segments"]): e["x_segment"] = i
            s["segments"][0]["deletions"]["x_deletions"] = True
            s["indexes"]["ip"]["x_index"] = "index-level"
            m["tensor_sets"]["base"]["x_tensor_set"] = 1.5
            m["tensor_sets"]["base"]["tensors"][0]["x_tensor"] = None
            m["results"]["r"]["x_result"] = [1, 2]
            m["extensions"].append({"name": "x-ext", "must_understand": False, "x_extension": "e"})
            m["change"]["x_change"] = "not carried"
            """)
        let path = base.scratch.path
        try Data("c0\nc1\nc2\nc3\nc4\nc5\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/idc.txt"))
        try Data("b2\n".utf8).write(to: URL(fileURLWithPath: scratch.path + "/delb.txt"))
        try expectSuccess(ChildProcess.tool("append", store, "--set", "s", "--rows", path + "/b.npy", "--ids", scratch.path + "/idc.txt"))
        try expectSuccess(ChildProcess.tool("delete", store, "--set", "s", "--ids", scratch.path + "/delb.txt"))
        let check = try ChildProcess.python("""
            import sys
            sys.path.insert(0, sys.argv[1])
            import gradsketch_ref as ref
            m = ref.manifest(sys.argv[2])
            s = m["sketch_sets"]["s"]
            found = {
                "top": m.get("x_top"), "set": s.get("x_set"),
                "segments": [e.get("x_segment") for e in s["segments"]],
                "deletions": s["segments"][0]["deletions"].get("x_deletions"),
                "index": s["indexes"]["ip"].get("x_index"),
                "tensor_set": m["tensor_sets"]["base"].get("x_tensor_set"),
                "tensor": "x_tensor" in m["tensor_sets"]["base"]["tensors"][0] and m["tensor_sets"]["base"]["tensors"][0]["x_tensor"] is None,
                "result": m["results"]["r"].get("x_result"),
                "extension": [e.get("x_extension") for e in m["extensions"] if e["name"] == "x-ext"],
                "change": "x_change" in m["change"], "operation": m["change"]["operation"],
                "rows": sum(e["rows"] - (e["deletions"] or {"count": 0})["count"] for e in s["segments"]),
            }
            expected = {
                "top": {"nested": [1, "two"]}, "set": "set-level", "segments": [0, 1, None], "deletions": True,
                "index": "index-level", "tensor_set": 1.5, "tensor": True, "result": [1, 2], "extension": ["e"],
                "change": False, "operation": "delete", "rows": 16,
            }
            for key in expected:
                if found[key] != expected[key]:
                    print(f"{key}: expected {expected[key]!r}, found {found[key]!r}")
                    sys.exit(1)
            """, [Repository.root + "/Spec/reference", store])
        #expect(check.status == 0, "\(check.standardOutput)\(check.standardError)")
        let verify = try ChildProcess.tool("verify", store)
        #expect(verify.status == 0, "\(verify.standardOutput)\(verify.standardError)")
    }
}
