import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Spec §2.5: ids, labels and names are compared as exact UTF-8 byte sequences, without
/// Unicode normalisation, as h5py, numpy and C compare them. Swift's `String ==` says the
/// composed and decomposed spellings below are equal; the store must not.
@Suite struct ByteExactNameTests {
    /// "café" in NFC (…C3 A9) and in NFD (…65 CC 81): canonically equivalent, different bytes.
    static let composed = "caf\u{E9}"
    static let decomposed = "cafe\u{301}"

    static func rows(_ count: Int, k: Int = 4) -> [Float] { (0..<(count * k)).map { Float($0) / 8 } }

    static func append(_ store: Store, _ set: String, ids: [String]) throws {
        try rows(ids.count).withUnsafeBytes { bytes in
            try store.append(to: set, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: 4),
                             annotations: RowAnnotations(ids: ids))
        }
    }

    @Test func theTwoSpellingsDifferAsBytesOnly() {
        #expect(Self.composed == Self.decomposed)  // what makes Set<String> unusable for ids
        #expect(Array(Self.composed.utf8) == [0x63, 0x61, 0x66, 0xC3, 0xA9])
        #expect(Array(Self.decomposed.utf8) == [0x63, 0x61, 0x66, 0x65, 0xCC, 0x81])
        #expect(UTF8Key(Self.composed) != UTF8Key(Self.decomposed))
        #expect(Set([UTF8Key(Self.composed), UTF8Key(Self.decomposed), UTF8Key("caf\u{E9}")]).count == 2)
    }

    /// Both spellings are distinct ids in one append, across appends, for delete and lookup;
    /// h5py (through the reference reader) sees the same bytes.
    @Test func canonicallyEquivalentIDsAreDistinctIDs() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        try Self.append(store, "one", ids: [Self.composed, Self.decomposed])
        try Self.append(store, "two", ids: [Self.composed, "x"])
        try Self.append(store, "two", ids: [Self.decomposed])
        let two = try store.sketchSet("two")
        #expect(try two.positions(of: [Self.decomposed, Self.composed]) == [2, 0])
        try store.delete(ids: [Self.decomposed], from: "two")
        let after = try store.sketchSet("two")
        #expect(try after.ids().map { Array($0.utf8) } == [Array(Self.composed.utf8), Array("x".utf8)])
        #expect(throws: StoreError.self) { try after.positions(of: [Self.decomposed]) }
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")

        let check = """
        import sys
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        store = sys.argv[2]
        assert not ref.verify(store), ref.verify(store)
        _, one, *_ = ref.read_set(store, "one")
        assert [i.encode() for i in one] == [b"caf\\xc3\\xa9", b"cafe\\xcc\\x81"], one
        _, two, *_ = ref.read_set(store, "two")
        assert [i.encode() for i in two] == [b"caf\\xc3\\xa9", b"x"], two
        print("ok")
        """
        let result = try ChildProcess.python(check, [Repository.root + "/Spec/reference", scratch.path + "/store"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("ok"))
    }

    /// Tensor names too: both spellings in one tensor set, looked up and subtracted by bytes.
    @Test func canonicallyEquivalentTensorNamesAreDistinctTensors() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        func put(_ name: String, _ values: (Float, Float)) throws {
            let first: [Float] = [values.0], second: [Float] = [values.1]
            try first.withUnsafeBytes { a in
                try second.withUnsafeBytes { b in
                    _ = try store.putTensors(name, [try TensorInput(name: Self.composed, elementType: .float32, shape: [1], bytes: a),
                                                    try TensorInput(name: Self.decomposed, elementType: .float32, shape: [1], bytes: b)])
                }
            }
        }
        try put("w", (1, 2))
        try put("w2", (5, 10))
        try store.recordDelta("d", from: "w", to: "w2")
        let delta = try store.tensorSet("d")
        #expect(delta.entry.tensors.count == 2)
        #expect(try delta.tensor(named: Self.composed).floats() == [4])
        #expect(try delta.tensor(named: Self.decomposed).floats() == [8])
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")
        let check = """
        import sys
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        t = ref.read_tensors(sys.argv[2], "d")
        assert {k.encode(): float(v[0]) for k, v in t.items()} == {b"caf\\xc3\\xa9": 4.0, b"cafe\\xcc\\x81": 8.0}, t
        print("ok")
        """
        let result = try ChildProcess.python(check, [Repository.root + "/Spec/reference", scratch.path + "/store"])
        #expect(result.status == 0, "\(result.standardError)")
    }

    /// A set h5py wrote with both spellings is valid: verify does not call them duplicates.
    @Test func setsWrittenByH5pyWithBothSpellingsVerify() throws {
        let scratch = try TemporaryDirectory()
        let write = """
        import sys, numpy as np
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        store = sys.argv[2]
        ref.create_store(store)
        ref.append(store, "s", np.ones((3, 4), np.float32), ids=["caf\\u00e9", "cafe\\u0301", "x"],
                   labels=["caf\\u00e9", "cafe\\u0301", "x"])
        """
        let written = try ChildProcess.python(write, [Repository.root + "/Spec/reference", scratch.path + "/store"])
        try #require(written.status == 0, "\(written.standardError)")
        let store = try Store(opening: scratch.path + "/store")
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")
        let set = try store.sketchSet("s")
        #expect(try set.positions(of: [Self.decomposed, Self.composed, "x"]) == [1, 0, 2])
        #expect(try set.labels().map { Array($0.utf8) } == [Array(Self.composed.utf8), Array(Self.decomposed.utf8), Array("x".utf8)])
    }
}
