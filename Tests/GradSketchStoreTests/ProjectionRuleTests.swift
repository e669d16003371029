import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Exact JSON integers (issue 12, item 12 and A1) and one projection per set, enforced by the
/// engine for every writer (item 13).
@Suite struct ProjectionRuleTests {
    @Test func jsonIntegersRoundTripExactly() throws {
        // Python's json (arbitrary-precision integers) is the oracle for the text.
        for (text, expected) in [("18446744073709551615", JSONValue.unsigned(.max)), ("9007199254740993", .integer(9_007_199_254_740_993)),
                                 ("-9223372036854775808", .integer(.min)), ("100", .integer(100)), ("0.5", .number(0.5)),
                                 ("1e300", .number(1e300)), ("18446744073709551616", .number(18446744073709551616.0))] {
            let value = try JSONValue.parse(text)
            #expect(value == expected, "\(text)")
            #expect(value.jsonText == (try JSONValue.parse(value.jsonText)).jsonText)
        }
        let object = try JSONValue.parse(#"{"seed": 18446744073709551615, "odd": 9007199254740993, "step": 100}"#)
        let check = try ChildProcess.python("""
        import json, sys
        v = json.loads(sys.argv[1])
        print(v["seed"] == 2**64 - 1, v["odd"] == 2**53 + 1, v["step"] == 100 and isinstance(v["step"], int))
        """, [object.jsonText])
        #expect(check.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "True True True", "\(object.jsonText) \(check.standardError)")
        #expect(object["seed"]?.uint64Value == .max && object["odd"]?.uint64Value == 1 << 53 + 1)
        #expect(object["step"] == .number(100) && object["step"]?.intValue == 100 && object["seed"]?.intValue == nil)
        #expect(JSONValue(UInt64.max) == .unsigned(.max) && JSONValue(-3) == .integer(-3))
    }

    static func projection(seed: UInt64, version: String = "1.0") throws -> JSONValue {
        try JSONValue.parse(#"{"version": "\#(version)", "generator": "philox4x32-10", "seed": \#(seed), "kind": "rademacher", "k_dense": 4, "layout": [{"name": "g", "shape": [8], "kind": "dense"}]}"#)
    }

    static func append(_ store: Store, to set: String, ids: [String], projection: JSONValue?) throws {
        let rows = [Float](repeating: 1, count: ids.count * 4)
        try rows.withUnsafeBytes { bytes in
            try store.append(to: set, rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: ids.count, k: 4),
                             annotations: RowAnnotations(ids: ids),
                             options: SketchSetOptions(attributes: projection.map { ["projection": $0] } ?? [:]))
        }
    }

    /// The engine's JSON-level comparison names the field Spec/projection.md §5 says is first
    /// (hand-picked pairs: alphabetical order would name `k_dense` before `seed`, and `kind`
    /// before `shape`).
    @Test func theFirstDifferenceFollowsTheSpecOrder() throws {
        let a = try JSONValue.parse(#"{"version": "1.0", "generator": "philox4x32-10", "seed": 42, "kind": "rademacher", "k_dense": 4, "layout": [{"name": "w", "shape": [8, 6], "kind": "kronecker", "k_out": 2, "k_in": 2}], "zeta": 1}"#)
        let seedAndWidth = try JSONValue.parse(#"{"version": "1.3", "generator": "philox4x32-10", "seed": 43, "kind": "rademacher", "k_dense": 5, "layout": [{"name": "w", "shape": [8, 6], "kind": "kronecker", "k_out": 2, "k_in": 2}], "zeta": 1}"#)
        #expect(ProjectionRule.firstDifference(a, seedAndWidth) == "seed: 42 here, 43 there")
        let shapeAndKind = try JSONValue.parse(#"{"version": "1.0", "generator": "philox4x32-10", "seed": 42, "kind": "rademacher", "k_dense": 4, "layout": [{"name": "w", "shape": [8, 7], "kind": "dense"}], "zeta": 1}"#)
        #expect(ProjectionRule.firstDifference(a, shapeAndKind) == "layout[0].shape[1]: 6 here, 7 there")
        let extraOnly = try JSONValue.parse(#"{"version": "1.0", "generator": "philox4x32-10", "seed": 42, "kind": "rademacher", "k_dense": 4, "layout": [{"name": "w", "shape": [8, 6], "kind": "kronecker", "k_out": 2, "k_in": 2}], "zeta": 2, "alpha": 1}"#)
        #expect(ProjectionRule.firstDifference(a, extraOnly) == "alpha: absent here, 1 there")
        #expect(ProjectionRule.firstDifference(a, a) == nil)
    }

    @Test func appendsStatingAnotherProjectionAreRefused() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let seed = UInt64(1) << 53 + 1
        try Self.append(store, to: "g", ids: ["a"], projection: try Self.projection(seed: seed))
        #expect(try store.sketchSet("g").attributes["projection"]?["seed"] == .integer(Int64(seed)))

        // 2⁵³ is what a binary64 reader would have made of 2⁵³ + 1: a different projection.
        let version = try store.latestVersion()
        #expect(throws: StoreError.self) { try Self.append(store, to: "g", ids: ["b"], projection: try Self.projection(seed: seed - 1)) }
        do {
            try Self.append(store, to: "g", ids: ["b"], projection: try Self.projection(seed: seed - 1))
        } catch let error as StoreError {
            #expect(error.code == .invalidInput && "\(error)".contains("seed: 9007199254740992 here, 9007199254740993 there"), "\(error)")
        }
        #expect(try store.latestVersion() == version)

        // The same projection (a later minor version of it too) and no stated projection append.
        try Self.append(store, to: "g", ids: ["c"], projection: try Self.projection(seed: seed, version: "1.4"))
        try Self.append(store, to: "g", ids: ["d"], projection: nil)
        #expect(throws: StoreError.self) { try Self.append(store, to: "g", ids: ["e"], projection: try Self.projection(seed: seed, version: "2.0")) }
        #expect(try store.sketchSet("g").rowCount == 3)

        // A set created without a projection cannot acquire one.
        try Self.append(store, to: "plain", ids: ["a"], projection: nil)
        #expect(throws: StoreError.self) { try Self.append(store, to: "plain", ids: ["b"], projection: try Self.projection(seed: 1)) }
    }

    /// The check runs inside the commit: a session begun before the set existed, committing
    /// after another writer created it with another projection, is refused on rebase.
    @Test func concurrentWritersAreCheckedOnRebase() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        let session = try store.beginAppend(to: "g", options: SketchSetOptions(attributes: ["projection": try Self.projection(seed: .max)]))
        let rows = [Float](repeating: 2, count: 4)
        try rows.withUnsafeBytes { try session.append(try RowInput(bytes: $0, elementType: .float32, rowCount: 1, k: 4), annotations: RowAnnotations(ids: ["late"])) }
        try Self.append(store, to: "g", ids: ["first"], projection: try Self.projection(seed: .max - 1))
        #expect(throws: StoreError.self) { try session.commit() }
        let set = try store.sketchSet("g")
        #expect(set.rowCount == 1 && set.attributes["projection"]?["seed"]?.uint64Value == .max - 1)
    }
}
