import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchProjection
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The facade additions behind C ABI 1.1 (issue 14): projection factors, tensor sets and the
/// version log, each against an independent oracle (the Python references, Double arithmetic).
@Suite struct ABIAdditionsTests {
    static func referenceFloats(_ body: String, in scratch: TemporaryDirectory) throws -> [Float] {
        let script = """
        import sys
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        import projection_ref as ref
        out = sys.argv[2]
        np.save(f'{out}/p.npy', np.ascontiguousarray(\(body), dtype=np.float32))
        """
        let result = try ChildProcess.python(script, [Repository.root + "/Spec/reference", scratch.path])
        try #require(result.status == 0, "\(result.standardError)")
        let file = try NumpyFile(path: scratch.path + "/p.npy")
        return (0..<file.elementCount).map { file.data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
    }

    /// The factors of a Kronecker parameter, bit for bit the reference's Philox/Rademacher
    /// (Spec/projection.md §2, §4), across a column block boundary (cols > 512).
    @Test(arguments: [(UInt64(42), "layers.0.mlp/out", 8, 600), (UInt64(42), "layers.0.mlp/in", 16, 37),
                      (UInt64(0xFFFF_FFFF_FFFF_FFFF), "ü/in", 1, 3), (UInt64(3), "fc", 130, 2)])
    func rademacherFactorsMatchTheReference(seed: UInt64, stream: String, rows: Int, cols: Int) throws {
        let scratch = try TemporaryDirectory()
        let theirs = try Self.referenceFloats("ref.rademacher(\(seed), '\(stream)', \(rows), \(cols))", in: scratch)
        let ours = try ProjectionMatrices.rademacher(seed: seed, stream: stream, rows: rows, cols: cols)
        #expect(ours.count == rows * cols)
        #expect(ours.map(\.bitPattern) == theirs.map(\.bitPattern))
    }

    @Test func rademacherRefusesImpossibleShapes() {
        #expect(throws: StoreError.self) { try ProjectionMatrices.rademacher(seed: 1, stream: "x", rows: 0, cols: 3) }
        #expect(throws: StoreError.self) { try ProjectionMatrices.rademacher(seed: 1, stream: "x", rows: 3, cols: -1) }
        #expect(throws: StoreError.self) { try ProjectionMatrices.rademacher(seed: 1, stream: "x", rows: Int.max / 2, cols: 4) }
    }

    /// `Projector.kronecker` of a one-token example equals (B P_outᵀ)ᵀ (A P_inᵀ) computed in
    /// Double from the factors `rademacher` returns. Tolerance: the float32 engine sums
    /// nIn + nOut + 1 products per entry, so |error| ≤ (nIn + nOut + 1)·2⁻²⁴·|P_out||b|·|P_in||a|
    /// entrywise (the usual γ_n bound of a float32 dot product and one float32 product).
    @Test func kroneckerOfOneTokenEqualsTheFactorsProduct() throws {
        let (nIn, nOut, kIn, kOut, seed) = (70, 45, 6, 5, UInt64(2024))
        var generator = SplitMix64(seed: 9)
        let a = (0..<nIn).map { _ in Float.random(in: -1...1, using: &generator) }
        let b = (0..<nOut).map { _ in Float.random(in: -1...1, using: &generator) }
        let sketch = a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                Projector.kronecker(activations: a, outputGradients: b, tokens: 1, nIn: nIn, nOut: nOut,
                                    name: "blocks.1.proj", seed: seed, kIn: kIn, kOut: kOut)
            }
        }
        let pIn = try ProjectionMatrices.rademacher(seed: seed, stream: "blocks.1.proj/in", rows: kIn, cols: nIn)
        let pOut = try ProjectionMatrices.rademacher(seed: seed, stream: "blocks.1.proj/out", rows: kOut, cols: nOut)
        func apply(_ p: [Float], rows: Int, cols: Int, _ x: [Float]) -> (value: [Double], magnitude: [Double]) {
            let value = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + Double(p[r * cols + $1]) * Double(x[$1]) } }
            let magnitude = (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + abs(Double(p[r * cols + $1]) * Double(x[$1])) } }
            return (value, magnitude)
        }
        let u = apply(pOut, rows: kOut, cols: nOut, b), v = apply(pIn, rows: kIn, cols: nIn, a)
        #expect(sketch.count == kOut * kIn)
        let unit = Double(nIn + nOut + 1) * 0x1p-24
        for i in 0..<kOut {
            for j in 0..<kIn {
                let exact = u.value[i] * v.value[j]
                let bound = unit * u.magnitude[i] * v.magnitude[j] + 1e-30
                #expect(abs(Double(sketch[i * kIn + j]) - exact) <= bound, "entry (\(i), \(j)): \(sketch[i * kIn + j]) vs \(exact), bound \(bound)")
            }
        }
    }

    static func tensor(_ name: String, _ values: [Float], shape: [Int], _ body: (TensorInput) throws -> Void) throws {
        try values.withUnsafeBytes { try body(try TensorInput(name: name, elementType: .float32, shape: shape, bytes: $0)) }
    }

    /// put-tensors and delta through the facade, read back by the Python reference; the version
    /// log lists every version with its detail.
    @Test func putTensorsDeltaAndTheVersionLog() throws {
        let scratch = try TemporaryDirectory()
        let store = try GradSketch.Store.create(at: scratch.path + "/store")
        let base: [Float] = [1.5, -2, 0.25, 8, 3, 1e-3]
        let tuned: [Float] = [1.25, -1, 0.5, 8, -3, 2e-3]
        var versions: [Int] = []
        try Self.tensor("w", base, shape: [2, 3]) { versions.append(try store.putTensors("base", tensors: [$0], detail: "the base").version) }
        try Self.tensor("w", tuned, shape: [2, 3]) { versions.append(try store.putTensors("tuned", kind: "weights", tensors: [$0]).version) }
        #expect(versions == [1, 2])
        #expect(try store.delta("d", from: "base", to: "tuned", detail: "fine-tune").version == 3)
        try Self.tensor("w", base, shape: [2, 3]) { input in
            #expect(throws: StoreError.self) { try store.putTensors("other", kind: "delta", tensors: [input]) }
        }
        #expect(try store.latestVersion() == 3)
        #expect(try store.snapshot().tensorSetNames == ["base", "d", "tuned"])

        let expected = zip(tuned, base).map { $0 - $1 }  // binary32 differences (Spec §6)
        let result = try ChildProcess.reference("""
        t = ref.read_tensors(store, "d")
        print(json.dumps([float(x) for x in np.asarray(t["w"], dtype=np.float32).ravel()]))
        """, work: scratch.path)
        try #require(result.status == 0, "\(result.standardError)")
        let read = try JSONDecoder().decode([Float].self, from: Data(result.standardOutput.utf8))
        #expect(read.map(\.bitPattern) == expected.map(\.bitPattern))

        let log = try store.versionRecords()
        #expect(log.map(\.version) == [0, 1, 2, 3])
        #expect(log.map(\.operation) == ["init", "put-tensors", "put-tensors", "delta"])
        #expect(log.map(\.detail) == [nil, "the base", nil, "fine-tune"])
        #expect(log.map(\.set) == [nil, "base", "tuned", "d"])
        #expect(log.allSatisfy { $0.time.hasSuffix("Z") && $0.time.count == 20 })
    }
}
