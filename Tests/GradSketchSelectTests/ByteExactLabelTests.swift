import GradSketchInterchange
import GradSketchSelect
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Spec §2.5: labels compare as bytes, so "café" in NFC and in NFD are two labels (two
/// sources) for the label-balanced selection, though Swift's `String ==` calls them equal.
@Suite struct ByteExactLabelTests {
    @Test func balancedTopKCountsCanonicallyEquivalentLabelsApart() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        // Cosines with q = (1, 0): row 0 → 1, row 1 → 0.447, row 2 → 0.995, row 3 → 0.
        let rows: [Float] = [1, 0, 0.5, 1, 1, 0.1, 0, 1]
        try rows.withUnsafeBytes { bytes in
            _ = try store.append(to: "s", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: 4, k: 2),
                                 annotations: RowAnnotations(ids: ["r0", "r1", "r2", "r3"], labels: [composed, decomposed, composed, decomposed]))
        }
        let result = try Select.run(try store.sketchSet("s"), query: [1, 0], count: 2, strategy: .balancedTopK)
        // Two labels, quota 1 each: the best row of each label, not the two best rows overall.
        #expect(result.positions == [0, 1])
        #expect(result.parameters["per_label_quota"] == .number(1))
    }
}
