import GradSketchProjection
import Testing

/// Spec/projection.md §4 (streams of a layout are distinct) and §5 (the order in which
/// definitions are compared).
@Suite struct LayoutRuleTests {
    static func values(_ count: Int, offset: Float) -> [Float] { (0..<count).map { Float($0) * 0.25 + offset } }

    /// A dense tensor named `X/in` would draw from the stream of Kronecker parameter `X`'s
    /// input factor; the layout is refused, naming both.
    @Test func aTensorNamedLikeAKroneckerFactorIsRefused() {
        let definition = ProjectionDefinition(seed: 7, kind: .rademacher, kDense: 8, layout: [
            .init(name: "X", shape: [4, 6], kronecker: (2, 3)), .init(name: "X/in", shape: [6]),
        ])
        let tensors = [(name: "X", values: Self.values(24, offset: 0)), (name: "X/in", values: Self.values(6, offset: 1))]
        #expect(throws: ProjectionError.self) { try Projector.projectTensors(tensors, definition: definition) }
        do {
            try definition.checkStreamsAreDistinct()
            Issue.record("expected a refusal")
        } catch {
            #expect("\(error)".contains("\"X\" and \"X/in\" would both draw from stream \"X/in\""), "\(error)")
        }
        // `X/out` collides the same way; `X/in` as a Kronecker parameter does not (X/in/in, X/in/out).
        var out = definition
        out.layout[1].name = "X/out"
        #expect(throws: ProjectionError.self) { try out.checkStreamsAreDistinct() }
        var nested = definition
        nested.layout[1] = .init(name: "X/in", shape: [4, 6], kronecker: (2, 2))
        #expect(throws: Never.self) { try nested.checkStreamsAreDistinct() }
    }

    @Test func aParameterListedTwiceIsRefused() {
        let definition = ProjectionDefinition(seed: 7, kind: .rademacher, kDense: 8, layout: [.init(name: "b", shape: [3]), .init(name: "b", shape: [3])])
        #expect(throws: ProjectionError.self) { try definition.checkStreamsAreDistinct() }
        let tensors = [(name: "b", values: Self.values(3, offset: 0))]
        #expect(throws: ProjectionError.self) { try Projector.projectTensors(tensors, definition: definition) }
    }

    /// NFC and NFD spellings of a name are two parameters with two streams (format §2.5): the
    /// sketch of both is the sum of each one's sketch alone (§4: a tensor's projection does
    /// not depend on the others), not one tensor projected twice.
    @Test func canonicallyEquivalentTensorNamesAreDifferentParameters() throws {
        let composed = "w\u{E9}", decomposed = "we\u{301}"
        let a = Self.values(5, offset: 0), b = Self.values(5, offset: -3)
        func sketch(_ layout: [(String, [Float])]) throws -> [Float] {
            let definition = ProjectionDefinition(seed: 11, kind: .rademacher, kDense: 16, layout: layout.map { .init(name: $0.0, shape: [5]) })
            return try Projector.projectTensors(layout.map { (name: $0.0, values: $0.1) }, definition: definition)
        }
        let both = try sketch([(composed, a), (decomposed, b)])
        let alone = zip(try sketch([(composed, a)]), try sketch([(decomposed, b)])).map { $0 + $1 }
        for (x, y) in zip(both, alone) { #expect(abs(x - y) <= 1e-5 * max(1, abs(y)), "\(both) vs \(alone)") }
        #expect(try sketch([(decomposed, b)]) != (try sketch([(composed, b)])), "different names must mean different streams")
    }

    /// §5: fields in the order version, generator, seed, kind, k_dense, nonzeros, block, layout
    /// length, then per parameter name, shape, kind, k_out, k_in; names compared as bytes.
    @Test func theFirstDifferenceFollowsTheSpecOrder() {
        let layout = [ProjectionDefinition.Parameter(name: "fc1.weight", shape: [8, 6], kronecker: (2, 3)),
                      ProjectionDefinition.Parameter(name: "fc1.bias", shape: [8])]
        let a = ProjectionDefinition(seed: 42, kind: .rademacher, kDense: 64, layout: layout)
        var b = a
        b.kDense = 32
        b.seed = 43
        #expect(a.firstDifference(from: b) == "seed: 42 here, 43 there")
        b = a
        b.layout[0].kOut = 4
        b.layout[0].shape = [8, 7]
        #expect(a.firstDifference(from: b) == "layout[0].shape (parameter fc1.weight): [8, 6] here, [8, 7] there")
        b = a
        b.layout[1].kind = "kronecker"
        #expect(a.firstDifference(from: b) == "layout[1].kind (parameter fc1.bias): dense here, kronecker there")
        b = a
        b.layout[1].name = "fc1.bia\u{301}s"  // differs only by a combining mark after "a"
        var c = a
        c.layout[1].name = "fc1.bi\u{E1}s"     // NFC of the same text
        #expect(b.firstDifference(from: c)?.hasPrefix("layout[1].name") == true)
    }
}
