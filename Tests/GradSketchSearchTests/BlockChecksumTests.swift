import Foundation
import GradSketchInterchange
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Format 1.2 block checksums (Spec §4.1) and the read path that verifies only what it reads:
/// a corrupted block fails the first read that touches it and no other, `verify` finds it
/// anyway, 1.1 stores are verified whole, and reads by address agree with h5py.
@Suite struct BlockChecksumTests {
    static let k = 64  // float32 rows of 256 bytes: 64 rows per 16 KiB block

    /// Rows near ±10·e_(row mod 8), so eight lists of an index each hold one direction.
    static func rows(_ count: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        var rows = [Float](repeating: 0, count: count * k)
        for row in 0..<count {
            for j in 0..<k { rows[row * k + j] = Float.random(in: -0.1...0.1, using: &generator) }
            rows[row * k + row % 8] += 10
        }
        return rows
    }

    static func append(_ store: Store, _ rows: [Float], ids: [String], labels: [String]? = nil, metadata: [String]? = nil) throws {
        _ = try rows.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: k),
                             annotations: RowAnnotations(ids: ids, labels: labels, metadata: metadata))
        }
    }

    /// Runs Python with the reference module importable and `work` set; returns stdout.
    static func python(_ body: String, _ work: String) throws -> String {
        let script = """
        import json, sys
        import numpy as np, h5py
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        work = sys.argv[2]

        """ + body
        let result = try ChildProcess.python(script, [Repository.root + "/Spec/reference", work])
        try #require(result.status == 0, "\(result.standardError)")
        return result.standardOutput
    }

    /// Flips one byte at `offset` of `path` (published files are read-only, so it is made
    /// writable first), as a disk error would.
    static func flipByte(_ path: String, at offset: Int) throws {
        chmod(path, 0o644)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(offset))
        let byte = try #require(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data([byte ^ 0x5A]))
        try handle.close()
    }

    static func message(of body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    @Test func aCorruptedRowBlockFailsOnlyTheReadsThatTouchIt() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let count = 2000
        let rows = Self.rows(count, seed: 1)
        try Self.append(store, rows, ids: (0..<count).map { "r\($0)" })
        let segment = try store.sketchSet("g").segments[0].path
        // Where row 1500 lies in the file, from h5py (block 1500 / 64 = 23: rows 1472..<1536).
        let offset = Int(try Self.python("""
            with h5py.File("\(segment)", "r") as f:
                assert int(f["rows-block-checksums"].attrs["block-rows"]) == 64
                print(f["rows"].id.get_offset() + 1500 * \(Self.k) * 4 + 17)
            """, scratch.path).trimmingCharacters(in: .whitespacesAndNewlines))!
        try Self.flipByte(segment, at: offset)

        let set = try store.sketchSet("g")
        // Rows in untouched blocks read back exactly.
        let chosen = [3, 1471, 1536, 1999]
        let read = try set.floatRows(at: chosen)
        var expected: [Float] = []
        for row in chosen { expected += rows[(row * Self.k)..<((row + 1) * Self.k)] }
        #expect(read == expected)
        #expect(try set.ids(at: [RowAddress(segment: 0, row: 1500)]) == ["r1500"])
        // Another row of block 23 is refused, naming the file, dataset and block.
        let error = try #require(Self.message { _ = try set.floatRows(at: [1472]) })
        #expect(error.contains(segment) && error.contains("rows") && error.contains("block 23"), "\(error)")
        // An exact search reads every block, so it fails too, with the same block.
        let exact = try #require(Self.message {
            _ = try ExactSearch.search(try store.sketchSet("g"), queries: Array(rows[0..<Self.k]), count: 1, k: 3)
        })
        #expect(exact.contains("block 23"), "\(exact)")
        // verify finds it without any query having touched it.
        let report = try store.verify()
        #expect(report.problems.contains { $0.message.contains("block 23") || $0.message.contains("checksum mismatch") })
    }

    @Test func aCorruptedIDBlockFailsOnlyLookupsInIt() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let count = 1000  // ids in blocks of 256: rows 512..<768 are block 2
        try Self.append(store, Self.rows(count, seed: 2), ids: (0..<count).map { "id-\($0)-" + String(repeating: "x", count: 20) })
        let segment = try store.sketchSet("g").segments[0].path
        // The byte offset of id 600's text in the fixed-length string dataset.
        let offset = Int(try Self.python("""
            with h5py.File("\(segment)", "r") as f:
                d = f["ids"]
                print(d.id.get_offset() + 600 * d.dtype.itemsize + 3)
            """, scratch.path).trimmingCharacters(in: .whitespacesAndNewlines))!
        try Self.flipByte(segment, at: offset)
        let set = try store.sketchSet("g")
        #expect(try set.ids(at: [RowAddress(segment: 0, row: 5), RowAddress(segment: 0, row: 999)]) == ["id-5-", "id-999-"].map { $0 + String(repeating: "x", count: 20) })
        let error = try #require(Self.message { _ = try set.ids(at: [RowAddress(segment: 0, row: 513)]) })
        #expect(error.contains("ids") && error.contains("block 2") && error.contains(segment), "\(error)")
        #expect(try !store.verify().isClean)
    }

    @Test func aCorruptedCodesBlockFailsOnlyQueriesProbingItsList() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let count = 4000
        let rows = Self.rows(count, seed: 3)
        try Self.append(store, rows, ids: (0..<count).map { "r\($0)" })
        var options = IVFBuildOptions()
        options.lists = 8
        options.tuningQueries = 20
        _ = try IVFIndexBuilder.build(try store.sketchSet("g"), in: store, name: "ivf", options: options)
        let index = try store.sketchSet("g").entry.indexes["ivf"]!
        let path = store.path + "/" + index.file
        // The list holding direction 0 and another list; flip a code byte of the first's first row.
        let found = try Self.python("""
            with h5py.File("\(path)", "r") as f:
                centroids, offsets = f["centroids"][()], f["list-offsets"][()]
                hit = int(np.argmax(centroids[:, 0])); other = int(np.argmax(centroids[:, 1]))
                assert hit != other
                print(hit, other, f["codes"].id.get_offset() + int(offsets[hit]) * \(Self.k) + 5)
            """, scratch.path).split(separator: " ").map { Int($0.trimmingCharacters(in: .whitespacesAndNewlines))! }
        try Self.flipByte(path, at: found[2])

        let searcher = try IVFSearcher(set: try store.sketchSet("g"), index: "ivf")
        let one = IVFSearchParameters(nprobe: 1, rerank: 50)
        var toward = [Float](repeating: 0, count: Self.k)
        toward[1] = 1  // routes to the list of direction 1, whose codes are intact
        let hits = try searcher.search(queries: toward, count: 1, k: 5, parameters: one)[0]
        // Oracle: the rows of direction 1 score about 10, every other row about 0.
        #expect(hits.count == 5 && hits.allSatisfy { Int($0.id.dropFirst())! % 8 == 1 })
        toward = [Float](repeating: 0, count: Self.k)
        toward[0] = 1
        let error = try #require(Self.message { _ = try searcher.search(queries: toward, count: 1, k: 5, parameters: one) })
        #expect(error.contains("codes") && error.contains("block") && error.contains(path), "\(error)")
        #expect(try !store.verify().isClean)
    }

    @Test func indexedSearchStillMatchesTheExactOracle() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let count = 3000
        let rows = Self.rows(count, seed: 4)
        try Self.append(store, Array(rows[0..<(2000 * Self.k)]), ids: (0..<2000).map { "r\($0)" })
        try Self.append(store, Array(rows[(2000 * Self.k)...]), ids: (2000..<count).map { "r\($0)" })
        try store.delete(ids: ["r7", "r2001"], from: "g")
        var options = IVFBuildOptions()
        options.lists = 8
        options.tuningQueries = 20
        _ = try IVFIndexBuilder.build(try store.sketchSet("g"), in: store, name: "ivf", options: options)
        let searcher = try IVFSearcher(set: try store.sketchSet("g"), index: "ivf")
        var generator = SplitMix64(seed: 9)
        for _ in 0..<5 {
            let query = (0..<Self.k).map { _ in Float.random(in: -1...1, using: &generator) }
            // All lists probed and every candidate re-ranked: exact, so equal to a naive Double scan.
            let hits = try searcher.search(queries: query, count: 1, k: 10, parameters: IVFSearchParameters(nprobe: 8, rerank: 4000))[0]
            let naive = (0..<count).filter { $0 != 7 && $0 != 2001 }.map { row -> (Double, String) in
                var dot = 0.0
                for j in 0..<Self.k { dot += Double(rows[row * Self.k + j]) * Double(query[j]) }
                return (dot, "r\(row)")
            }.sorted { $0.0 > $1.0 }.prefix(10).map(\.1)
            #expect(hits.map(\.id) == naive)
        }
    }

    @Test func idsLabelsAndMetadataByAddressEqualH5py() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        for part in 0..<3 {
            let count = 700
            try Self.append(store, Self.rows(count, seed: UInt64(10 + part)), ids: (0..<count).map { "s\(part)-ü\($0)" },
                            labels: part == 1 ? nil : (0..<count).map { "L\($0 % 7)" },
                            metadata: (0..<count).map { "{\"p\": \(part), \"r\": \($0)}" })
        }
        try store.delete(ids: ["s0-ü3", "s2-ü600"], from: "g")
        let set = try store.sketchSet("g")
        let addresses = [RowAddress(segment: 2, row: 699), RowAddress(segment: 0, row: 0), RowAddress(segment: 1, row: 300),
                         RowAddress(segment: 0, row: 257), RowAddress(segment: 2, row: 3)]
        let files = set.segments.map(\.path)
        let expected = try Self.python("""
            files = [\(files.map { "\"\($0)\"" }.joined(separator: ", "))]
            wanted = \(addresses.map { [$0.segment, $0.row] })
            out = {"ids": [], "labels": [], "metadata": []}
            for s, r in wanted:
                with h5py.File(files[s], "r") as f:
                    for name in out:
                        out[name].append(f[name].asstr()[r] if name in f else "")
            print(json.dumps(out))
            """, scratch.path)
        let oracle = try JSONDecoder().decode([String: [String]].self, from: Data(expected.utf8))
        #expect(try set.ids(at: addresses) == oracle["ids"])
        #expect(try set.labels(at: addresses) == oracle["labels"])
        #expect(try set.metadata(at: addresses) == oracle["metadata"])
        // Live positions (699 + 700 + 699 rows live): position 3 is row 4 of segment 0 (row 3 is
        // deleted), 1398 the last row of segment 1, 1999 row 601 of segment 2 (row 600 deleted).
        #expect(try set.addresses(ofLive: [0, 3, 699, 1398, 1399, 1999]) ==
                [RowAddress(segment: 0, row: 0), RowAddress(segment: 0, row: 4), RowAddress(segment: 1, row: 0),
                 RowAddress(segment: 1, row: 699), RowAddress(segment: 2, row: 0), RowAddress(segment: 2, row: 601)])
        #expect(try set.ids(atLive: [0, 3, 1999]) == ["s0-ü0", "s0-ü4", "s2-ü601"])
        #expect(throws: StoreError.self) { try set.addresses(ofLive: [2098]) }
    }

    @Test func storesWrittenAtOneOneAreReadAndVerifiedWhole() throws {
        let scratch = try TemporaryDirectory()
        // The reference writing format 1.1: no block-checksum datasets.
        let out = try Self.python("""
            ref.FORMAT_MINOR = 1
            store = f"{work}/store"
            ref.create_store(store)
            rows = np.zeros((600, \(Self.k)), np.float32)
            rows[np.arange(600), np.arange(600) % 8] = 10
            ref.append(store, "g", rows, ids=[f"o{i}" for i in range(600)], labels=[f"l{i % 3}" for i in range(600)])
            ref.build_index(store, "g", "ivf", 8)
            m = ref.manifest(store)
            seg = m["sketch_sets"]["g"]["segments"][0]
            # A copy to corrupt: this process caches whole-dataset verification per file.
            import shutil
            shutil.copytree(store, f"{work}/copy")
            with h5py.File(f"{store}/{seg['file']}", "r") as f:
                assert not [n for n in f if n.endswith("-block-checksums")], list(f)
                assert f.attrs["format-version"] in (b"1.1", "1.1")
                print(f"{work}/copy/{seg['file']}", f["rows"].id.get_offset() + 599 * \(Self.k) * 4 + 9)
            """, scratch.path).split(separator: " ")
        let segment = String(out[0]), offset = Int(out[1].trimmingCharacters(in: .whitespacesAndNewlines))!
        let store = try Store(opening: scratch.path + "/store")
        let set = try store.sketchSet("g")
        #expect(try set.ids(at: [RowAddress(segment: 0, row: 598)]) == ["o598"])
        #expect(try set.labels(at: [RowAddress(segment: 0, row: 4)]) == ["l1"])
        var query = [Float](repeating: 0, count: Self.k)
        query[2] = 1
        let hits = try IVFSearcher(set: set, index: "ivf").search(queries: query, count: 1, k: 3, parameters: IVFSearchParameters(nprobe: 8, rerank: 600))[0]
        #expect(hits.map(\.id) == ["o2", "o10", "o18"])  // score 10 each; ties by position
        #expect(try store.verify().isClean)
        // Without blocks, one flipped byte fails every read of the rows (the whole dataset is the unit).
        try Self.flipByte(segment, at: offset)
        let fresh = try Store(opening: scratch.path + "/copy").sketchSet("g")
        let error = try #require(Self.message { _ = try fresh.floatRows(at: [0]) })
        #expect(error.contains("checksum mismatch in dataset rows"), "\(error)")
    }
}
