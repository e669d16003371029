import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Synchronization
import Testing

/// Typed transactions of the facade (issue 13 item 1): one version per transaction, every
/// rule checked for a library writer (no CLI), nothing left behind when the body throws.
@Suite struct FacadeTransactionTests {
    /// `count` rows of width `k` whose values are row·10 + column + `offset` (exact in float16).
    static func rows(_ count: Int, k: Int, offset: Float = 0) -> [Float] {
        (0..<count * k).map { Float($0 / k) * 10 + Float($0 % k) + offset }
    }

    static func withRows<R>(_ values: [Float], k: Int, _ body: (RowInput) throws -> R) throws -> R {
        try values.withUnsafeBytes { bytes in
            try body(try RowInput(bytes: bytes, elementType: .float32, rowCount: values.count / k, k: k))
        }
    }

    static func projection(seed: Int) throws -> JSONValue {
        try JSONValue.parse(#"{"version": "1.0", "generator": "philox4x32-10", "seed": \#(seed), "kind": "rademacher", "k_dense": 4, "layout": [{"name": "g", "shape": [8], "kind": "dense"}]}"#)
    }

    /// Files under the store's data directories (relative), for "nothing left behind" checks.
    static func dataFiles(_ store: GradSketch.Store) throws -> Set<String> {
        var files = Set<String>()
        for directory in ["segments", "deletions", "tensors", "indexes", "results", "segment-lists", "tmp"] {
            let full = store.path + "/" + directory
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: full) else { continue }
            for name in names { files.insert(directory + "/" + name) }
        }
        return files
    }

    @Test func appendsToTwoSetsAndADeleteFromAThirdCommitOneVersion() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        try store.transaction { tx in
            try Self.withRows(Self.rows(4, k: 3), k: 3) { rows in
                try tx.append(to: "c", rows: rows, annotations: RowAnnotations(ids: ["c0", "c1", "c2", "c3"]))
            }
        }
        let result = try store.transaction(detail: "two appends and a delete") { tx in
            try Self.withRows(Self.rows(2, k: 3, offset: 0.5), k: 3) { rows in
                try tx.append(to: "a", rows: rows, annotations: RowAnnotations(ids: ["a0", "a1"], labels: ["x", "y"]),
                              options: SketchSetOptions(dtype: .float16))
            }
            try Self.withRows(Self.rows(3, k: 2, offset: 100), k: 2) { rows in
                try tx.append(to: "b", rows: rows, annotations: RowAnnotations(ids: ["b0", "b1", "b2"]))
            }
            try tx.delete(ids: ["c2", "c1"], from: "c")
        }
        #expect(result.version == 2 && result.rowsAdded == 5 && result.rowsDeleted == 2 && result.warnings.isEmpty)
        #expect(try store.versions() == [0, 1, 2])

        // Oracle 1: the lower module reads the committed version back.
        let engine = try GradSketchStore.Store(opening: store.path)
        let manifest = try engine.manifest(at: 2)
        #expect(manifest.change.operation == "transaction" && manifest.change.set == nil)
        #expect(try engine.sketchSet("a").rowCount == 2 && engine.sketchSet("b").rowCount == 3 && engine.sketchSet("c").rowCount == 2)
        #expect(manifest.sketchSets["a"]?.dtype == "float16" && manifest.sketchSets["b"]?.k == 2)
        #expect(try engine.manifest(at: 1).sketchSets.keys.sorted() == ["c"])

        // Oracle 2: the Python reference (h5py, checksums verified) reads the same store.
        let script = """
        import sys, json
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        out = {}
        for name in ("a", "b", "c"):
            rows, ids, labels, _, _ = ref.read_set(sys.argv[2], name)
            out[name] = {"rows": rows.astype(float).tolist(), "ids": ids, "labels": labels}
        out["versions"] = ref.versions(sys.argv[2])
        print(json.dumps(out))
        """
        let run = try ChildProcess.python(script, [Repository.root + "/Spec/reference", store.path])
        try #require(run.status == 0, "\(run.standardError)")
        let read = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as! [String: Any]
        func set(_ name: String) -> [String: Any] { read[name] as! [String: Any] }
        #expect(set("a")["ids"] as? [String] == ["a0", "a1"] && set("a")["labels"] as? [String] == ["x", "y"])
        #expect(set("a")["rows"] as? [[Double]] == [[0.5, 1.5, 2.5], [10.5, 11.5, 12.5]])
        #expect(set("b")["rows"] as? [[Double]] == [[100, 101], [110, 111], [120, 121]])
        #expect(set("c")["ids"] as? [String] == ["c0", "c3"])
        #expect(set("c")["rows"] as? [[Double]] == [[0, 1, 2], [30, 31, 32]])
        #expect(read["versions"] as? [Int] == [0, 1, 2])
    }

    /// A transaction commits on top of the golden store (format 1.0, written by the Python
    /// reference), and the reference reads the result: old stores stay writable and readable.
    @Test func aTransactionCommitsOnTopOfAFormatOneZeroStore() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        try FileManager.default.copyItem(atPath: Repository.goldenDirectory + "/store", toPath: path)
        let store = try GradSketch.Store(opening: path)
        let before = try store.latestVersion()
        let result = try store.transaction { tx in
            try Self.withRows(Self.rows(2, k: 16, offset: 0.25), k: 16) { rows in
                try tx.append(to: "train", rows: rows, annotations: RowAnnotations(ids: ["new-0", "new-1"]))
            }
            try tx.delete(ids: ["train-001"], from: "train")
        }
        #expect(result.version == before + 1 && result.rowsAdded == 2 && result.rowsDeleted == 1)
        let script = """
        import sys, json
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        rows, ids, _, _, _ = ref.read_set(sys.argv[2], "train")
        before, _, _, _, _ = ref.read_set(sys.argv[2], "train", int(sys.argv[3]))
        print(json.dumps({"ids": ids, "count": len(ids), "before": len(before), "last": rows[-1].astype(float).tolist()}))
        """
        let run = try ChildProcess.python(script, [Repository.root + "/Spec/reference", path, String(before)])
        try #require(run.status == 0, "\(run.standardError)")
        let read = try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as! [String: Any]
        let ids = read["ids"] as! [String]
        #expect(read["count"] as? Int == (read["before"] as! Int) + 1)
        #expect(!ids.contains("train-001") && ids.suffix(2) == ["new-0", "new-1"])
        #expect(read["last"] as? [Double] == (0..<16).map { 10 + Double($0) + 0.25 })  // row 1 of rows(2, k: 16, offset: 0.25)
    }

    @Test func aDeleteAfterAnAppendInOneTransactionSeesTheAppendedRows() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let result = try store.transaction { tx in
            try Self.withRows(Self.rows(3, k: 2), k: 2) { rows in
                try tx.append(to: "s", rows: rows, annotations: RowAnnotations(ids: ["p", "q", "r"]))
            }
            try Self.withRows(Self.rows(1, k: 2, offset: 7), k: 2) { rows in
                try tx.append(to: "s", rows: rows, annotations: RowAnnotations(ids: ["t"]))
            }
            try tx.delete(ids: ["q"], from: "s")
        }
        #expect(result.version == 1 && result.rowsAdded == 4 && result.rowsDeleted == 1)
        let set = try GradSketchStore.Store(opening: store.path).sketchSet("s")
        #expect(try set.ids() == ["p", "r", "t"])
    }

    @Test func anIdAppendedTwiceInOneTransactionIsRefused() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        #expect(throws: StoreError.self) {
            try store.transaction { tx in
                for _ in 0..<2 {
                    try Self.withRows(Self.rows(1, k: 2), k: 2) { rows in
                        try tx.append(to: "s", rows: rows, annotations: RowAnnotations(ids: ["same"]))
                    }
                }
            }
        }
        #expect(try store.versions() == [0])
        #expect(try Self.dataFiles(store).isEmpty)
    }

    @Test func aProjectionMismatchIsRefusedForALibraryWriter() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        try store.transaction { tx in
            try Self.withRows(Self.rows(1, k: 4), k: 4) { rows in
                try tx.append(to: "g", rows: rows, annotations: RowAnnotations(ids: ["a"]),
                              options: SketchSetOptions(attributes: ["projection": try Self.projection(seed: 1)]))
            }
        }
        let before = try Self.dataFiles(store)
        do {
            try store.transaction { tx in
                try Self.withRows(Self.rows(1, k: 4), k: 4) { rows in
                    try tx.append(to: "g", rows: rows, annotations: RowAnnotations(ids: ["b"]),
                                  options: SketchSetOptions(attributes: ["projection": try Self.projection(seed: 2)]))
                }
            }
            Issue.record("an append stating another projection was committed")
        } catch let error as StoreError {
            #expect(error.code == .invalidInput && "\(error)".contains("seed: 2 here, 1 there"), "\(error)")
        }
        // The streaming session is held to the same rule.
        #expect(throws: StoreError.self) {
            _ = try store.beginAppend(to: "g", options: SketchSetOptions(attributes: ["projection": try Self.projection(seed: 3)]))
        }
        #expect(try store.versions() == [0, 1])
        #expect(try Self.dataFiles(store) == before)
    }

    /// The body writes its rows against a store without `g`; before it commits, another writer
    /// creates `g` with a different projection. The rebase re-applies the rules and refuses.
    @Test func aRebaseOntoASetCreatedMeanwhileWithAnotherProjectionIsRefused() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let other = try GradSketch.Store(opening: store.path)
        var concurrentVersion = 0
        do {
            try store.transaction { tx in
                try Self.withRows(Self.rows(2, k: 4), k: 4) { rows in
                    try tx.append(to: "g", rows: rows, annotations: RowAnnotations(ids: ["mine0", "mine1"]),
                                  options: SketchSetOptions(attributes: ["projection": try Self.projection(seed: 11)]))
                }
                // The concurrent writer commits between the body's writes and its commit.
                concurrentVersion = try other.transaction { concurrent in
                    try Self.withRows(Self.rows(1, k: 4), k: 4) { rows in
                        try concurrent.append(to: "g", rows: rows, annotations: RowAnnotations(ids: ["theirs"]),
                                              options: SketchSetOptions(attributes: ["projection": try Self.projection(seed: 12)]))
                    }
                }.version
            }
            Issue.record("the rebased transaction mixed two projections in one set")
        } catch let error as StoreError {
            #expect(error.code == .invalidInput && "\(error)".contains("seed: 11 here, 12 there"), "\(error)")
        }
        #expect(try concurrentVersion == 1 && store.versions() == [0, 1])
        let engine = try GradSketchStore.Store(opening: store.path)
        #expect(try engine.sketchSet("g").ids() == ["theirs"])
        // Only the concurrent writer's segment is left.
        #expect(try Self.dataFiles(store) == Set(engine.manifest().referencedFiles))
    }

    /// Writers racing for the same id: each transaction appends its own row to its own set
    /// and the contested id to `shared`. Every commit is re-checked on the version it lands on,
    /// so exactly one transaction gets the id, and a refused one commits nothing at all (its
    /// own set does not appear either).
    @Test func racingTransactionsAreRecheckedOnEachRebaseAndStayAtomic() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        _ = try GradSketch.Store.create(at: path)
        let writers = 4
        let outcomes = Mutex<[Int: Bool]>([:])
        DispatchQueue.concurrentPerform(iterations: writers) { writer in
            let committed = (try? GradSketch.Store(opening: path).transaction { tx in
                try Self.withRows(Self.rows(1, k: 2, offset: Float(writer)), k: 2) { rows in
                    try tx.append(to: "own\(writer)", rows: rows, annotations: RowAnnotations(ids: ["mine"]))
                    try tx.append(to: "shared", rows: rows, annotations: RowAnnotations(ids: ["contested"]))
                }
            }) != nil
            outcomes.withLock { $0[writer] = committed }
        }
        let results = outcomes.withLock { $0 }
        let winners = results.filter(\.value).map(\.key)
        try #require(winners.count == 1, "\(results)")
        let engine = try GradSketchStore.Store(opening: path)
        let latest = try engine.manifest()
        #expect(latest.version == 1 && latest.sketchSets.keys.sorted() == ["own\(winners[0])", "shared"])
        #expect(try engine.sketchSet("shared").floatRows() == [Float(winners[0]), 1 + Float(winners[0])])
        #expect(try Self.dataFiles(GradSketch.Store(opening: path)) == latest.referencedFiles)
    }

    @Test func aThrowingBodyCommitsNothingAndLeavesNoFiles() throws {
        struct Stop: Error {}
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let weights: [Float] = [1, 2, 3, 4]
        #expect(throws: Stop.self) {
            try store.transaction { tx in
                try Self.withRows(Self.rows(5, k: 3), k: 3) { rows in
                    try tx.append(to: "s", rows: rows, annotations: RowAnnotations(ids: (0..<5).map { "r\($0)" }))
                }
                try weights.withUnsafeBytes { bytes in
                    try tx.putTensors("w", kind: "weights", tensors: [try TensorInput(name: "x", elementType: .float32, shape: [2, 2], bytes: bytes)])
                }
                #expect(try Self.dataFiles(store).count == 2)  // the segment and the tensor set were written
                throw Stop()
            }
        }
        #expect(try store.versions() == [0])
        #expect(try Self.dataFiles(store).isEmpty)
        let vacuum = try GradSketchStore.Store(opening: store.path).vacuum(grace: 0)
        #expect(vacuum.removedFiles.isEmpty && vacuum.keptPinnedFiles.isEmpty)
        // No pin outlives the transaction.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: store.path + "/pins"))?.isEmpty ?? true)
    }

    @Test func tensorsDeltasAttributesAndDropsCommitThroughTransactions() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let base: [Float] = [1, 2, 3, 4], tuned: [Float] = [1.5, 2, 2, 8]
        try store.transaction { tx in
            for (name, values) in [("base", base), ("tuned", tuned)] {
                try values.withUnsafeBytes { bytes in
                    try tx.putTensors(name, kind: "weights", tensors: [try TensorInput(name: "w", elementType: .float32, shape: [4], bytes: bytes)])
                }
            }
        }
        try store.transaction { tx in try tx.delta("d", from: "base", to: "tuned") }
        let engine = try GradSketchStore.Store(opening: store.path)
        #expect(try engine.tensorSet("d").tensor(named: "w").floats() == [0.5, 0, -1, 4])  // hand-computed tuned − base
        #expect(try engine.manifest().tensorSets["d"]?.from == "base")

        let hash = try engine.tensorSet("base").contentHash
        try store.transaction { tx in
            try Self.withRows(Self.rows(1, k: 2), k: 2) { rows in
                try tx.append(to: "g", rows: rows, annotations: RowAnnotations(ids: ["a"]),
                              options: SketchSetOptions(attributes: ["tensor_set": .string("base"), "tensor_set_hash": .string(hash)]))
            }
            try tx.setAttributes(of: "g", ["training_step": .integer(100)])
        }
        #expect(try engine.manifest().sketchSets["g"]?.attributes["training_step"] == .integer(100))
        // The checkpoint a set was sketched at is fixed: another one is refused, for appends and attributes.
        #expect(throws: StoreError.self) {
            try store.transaction { tx in
                try Self.withRows(Self.rows(1, k: 2), k: 2) { rows in
                    try tx.append(to: "g", rows: rows, annotations: RowAnnotations(ids: ["b"]),
                                  options: SketchSetOptions(attributes: ["tensor_set_hash": .string("sha256:00")]))
                }
            }
        }
        #expect(throws: StoreError.self) { try store.transaction { tx in try tx.setAttributes(of: "g", ["tensor_set": .string("tuned")]) } }
        // A new set stating a checkpoint hash that is not the tensor set's is refused.
        #expect(throws: StoreError.self) {
            try store.transaction { tx in
                try Self.withRows(Self.rows(1, k: 2), k: 2) { rows in
                    try tx.append(to: "h", rows: rows, annotations: RowAnnotations(ids: ["a"]),
                                  options: SketchSetOptions(attributes: ["tensor_set": .string("base"), "tensor_set_hash": .string("sha256:00")]))
                }
            }
        }
        let version = try store.latestVersion()
        let dropped = try store.transaction { tx in
            try tx.dropSet("g")
            try tx.dropTensors("tuned")
        }
        #expect(dropped.version == version + 1 && dropped.rowsDeleted == 1)
        let latest = try engine.manifest()
        #expect(latest.sketchSets.isEmpty && latest.tensorSets.keys.sorted() == ["base", "d"])
        #expect(throws: StoreError.self) { try store.transaction { tx in try tx.dropSet("g") } }
        #expect(try store.latestVersion() == version + 1)
    }

    @Test func anAppendSessionCommitsItsBatchesAsOneVersion() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let session = try store.beginAppend(to: "s")
        for batch in 0..<3 {
            try Self.withRows(Self.rows(2, k: 2, offset: Float(batch)), k: 2) { rows in
                try session.append(rows, annotations: RowAnnotations(ids: ["\(batch)a", "\(batch)b"]))
            }
        }
        let result = try session.commit(detail: "three batches")
        #expect(result.version == 1 && result.rowsAdded == 6 && result.rowsDeleted == 0)
        let engine = try GradSketchStore.Store(opening: store.path)
        #expect(try engine.sketchSet("s").ids() == ["0a", "0b", "1a", "1b", "2a", "2b"])
        #expect(try engine.manifest().sketchSets["s"]?.segments.count == 3)

        let aborted = try store.beginAppend(to: "s")
        try Self.withRows(Self.rows(1, k: 2), k: 2) { rows in try aborted.append(rows, annotations: RowAnnotations(ids: ["x"])) }
        aborted.abort()
        #expect(throws: StoreError.self) { try aborted.commit() }
        #expect(try store.versions() == [0, 1])
        #expect(try Self.dataFiles(store) == Set(engine.manifest().referencedFiles))
    }
}
