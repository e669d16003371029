public import Foundation

/// Tools for tests that attack a store the way a hostile or buggy writer would: manifests
/// rewritten with valid checksums, data files replaced, commands run with a time limit.
public enum HostileStore {
    /// Rewrites the latest manifest of `store` with a valid checksum after running `python`
    /// (statements) on it. The statements see `m` (the manifest as a dict), `store` (its
    /// path), `ref` (the Python reference, `Spec/reference/gradsketch_ref.py`), `h5py`,
    /// `np`, `os` and helpers `seg` (the segments of set `s`) and `segment_file(i)` (the
    /// absolute path of segment `i` of set `s`). The manifest is written as the reference
    /// writes one (Spec §7.1), so every reader check before the JSON's content passes.
    public static func rewriteLatestManifest(of store: String, _ python: String) throws {
        let indented = python.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n")
        let script = """
        import sys, os, json
        sys.path.insert(0, sys.argv[1])
        import numpy as np, h5py
        import gradsketch_ref as ref
        store = sys.argv[2]
        version = ref.versions(store)[-1]
        path = os.path.join(store, "versions", f"v{version:012d}.h5")
        with h5py.File(path, "r") as f:
            raw = f["manifest"][()]
        m = json.loads(raw.split(b"\\0", 1)[0].decode("utf-8"))
        # Format 1.2 stores keep segment entries in segment-list files (Spec §7.1): list them
        # inline again, as a 1.1 manifest does, so the statements edit them in the manifest.
        for set_entry in m["sketch_sets"].values():
            if "segment_lists" in set_entry:
                set_entry["segments"] = ref._read_segment_lists(store, set_entry.pop("segment_lists"))
        m["extensions"] = [e for e in m.get("extensions", []) if e.get("name") != "segment-lists"]
        seg = m["sketch_sets"]["s"]["segments"] if "s" in m["sketch_sets"] else []
        def segment_file(i):
            return os.path.join(store, seg[i]["file"])
        def mutate():
        \(indented)
            pass
        mutate()
        text = json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        os.unlink(path)
        with ref._new_file(path) as f:
            ref._root_attrs(f, "manifest")
            ref._set_attr(f, "version", version)
            dataset = ref._write_strings(f, "manifest", [text], scalar=True)
            ref._mark(dataset, "manifest-json", ref.checksum_strings([text]))
        """
        let result = try ChildProcess.python(script, [Repository.root + "/Spec/reference", store])
        guard result.status == 0 else {
            throw HostileStoreError(message: "rewriting the manifest failed: \(result.standardError)")
        }
    }

    /// Runs `executable`, killing it after `timeout` seconds; `timedOut` says whether it had
    /// to be killed (a hang, e.g. on a FIFO).
    public static func run(_ executable: String, _ arguments: [String], timeout: Double) throws -> (result: ChildProcessResult, timedOut: Bool) {
        let process = try ChildProcess.start(executable, arguments)
        let killer = DispatchWorkItem { process.killHard() }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let result = process.wait()
        killer.cancel()
        return (result, result.wasSignalled && result.status == SIGKILL)
    }

    /// Copies a directory tree (a store) to `destination`.
    public static func copy(_ source: String, to destination: String) throws {
        try FileManager.default.copyItem(atPath: source, toPath: destination)
    }
}

public struct HostileStoreError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
