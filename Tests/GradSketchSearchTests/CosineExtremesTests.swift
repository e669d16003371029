import Foundation
import GradSketchInterchange
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Cosine at the edges of float32 (issue 12, item 11): rows and queries of norm 1e-30 … 1e30
/// against a naive binary64 reference computed from the inputs.
@Suite struct CosineExtremesTests {
    static let k = 24
    /// The stated accuracy (`CosineScore`): (k + 4)·2⁻²³.
    static let tolerance = Double(k + 4) * 0x1p-23

    /// Rows of random directions at magnitudes 1e-30 … 1e30, plus the reported cases: a row of
    /// norm 1e20 parallel to the query, its negation, a tiny row parallel to the query, a
    /// row of largest-float components, and a zero row.
    static func rows(query: [Float]) -> [[Float]] {
        var generator = SplitMix64(seed: 7)
        var rows: [[Float]] = []
        for exponent in stride(from: -30, through: 30, by: 3) {
            for _ in 0..<4 {
                let direction = (0..<k).map { _ in Float.random(in: -1...1, using: &generator) }
                let norm = direction.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                rows.append(direction.map { Float(Double($0) / norm * pow(10, Double(exponent))) })
            }
        }
        let unit = query.map { Double($0) / query.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        rows.append(unit.map { Float($0 * 1e20) })
        rows.append(unit.map { Float(-$0 * 1e20) })
        rows.append(unit.map { Float($0 * 1e-25) })
        rows.append((0..<k).map { $0 % 2 == 0 ? Float.greatestFiniteMagnitude : -Float.greatestFiniteMagnitude })
        rows.append([Float](repeating: 0, count: k))
        return rows
    }

    static func reference(_ row: [Float], _ query: [Float]) -> Double {
        var dot = 0.0, rowSquares = 0.0, querySquares = 0.0
        for j in row.indices {
            dot += Double(row[j]) * Double(query[j])
            rowSquares += Double(row[j]) * Double(row[j])
            querySquares += Double(query[j]) * Double(query[j])
        }
        return rowSquares == 0 ? 0 : dot / (rowSquares.squareRoot() * querySquares.squareRoot())
    }

    @Test(arguments: [Float(1e19), 1e30, 1, 1e-30])
    func scoresStayInRangeAndMatchTheReference(queryScale: Float) throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 3)
        let queries = (0..<2).map { _ in (0..<Self.k).map { _ in Float.random(in: -1...1, using: &generator) * queryScale } }
        let rows = Self.rows(query: queries[0])
        let flat = rows.flatMap { $0 }
        try flat.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: rows.count, k: Self.k),
                             annotations: RowAnnotations(ids: rows.indices.map { "r\($0)" }))
        }
        let set = try store.sketchSet("g")
        func check(_ hits: [SearchHit], _ query: [Float], _ path: String) {
            #expect(hits.count == rows.count, "\(path)")
            for hit in hits {
                let expected = Self.reference(rows[hit.position], query)
                #expect(hit.score >= -1 && hit.score <= 1, "\(path): row \(hit.position) scores \(hit.score)")
                #expect(abs(Double(hit.score) - expected) <= Self.tolerance,
                        "\(path): row \(hit.position) scores \(hit.score), reference \(expected)")
            }
        }
        // One query: the streaming kernel; two: the GEMM path; and the selection pass.
        check(try ExactSearch.search(set, queries: queries[0], count: 1, metric: .cosine, k: rows.count)[0], queries[0], "single")
        let batched = try ExactSearch.search(set, queries: queries.flatMap { $0 }, count: 2, metric: .cosine, k: rows.count)
        check(batched[0], queries[0], "batched 0")
        check(batched[1], queries[1], "batched 1")
        let cosines = try RowScores.cosines(set, query: queries[0])
        for (position, score) in cosines.enumerated() {
            #expect(abs(Double(score) - Self.reference(rows[position], queries[0])) <= Self.tolerance, "cosines: row \(position)")
        }
        // The reported cases by name: parallel rows of norm 1e20 and 1e-25 score 1, the
        // negated one −1, whatever the query's magnitude.
        let byID = Dictionary(uniqueKeysWithValues: try ExactSearch.search(set, queries: queries[0], count: 1, metric: .cosine, k: rows.count)[0].map { ($0.id, $0.score) })
        let parallel = rows.count - 5
        for (offset, expected) in [(0, Float(1)), (1, -1), (2, 1)] {
            let score = try #require(byID["r\(parallel + offset)"])
            #expect(abs(Double(score - expected)) <= Self.tolerance, "reported case \(offset): \(score)")
        }
    }

    /// The IVF re-rank scores with the same rule (and the build normalises rows in binary64).
    @Test func ivfRerankScoresHugeAndTinyRows() throws {
        let scratch = try TemporaryDirectory()
        let store = try Store.create(at: scratch.path + "/store")
        var generator = SplitMix64(seed: 5)
        let count = 600
        var flat = (0..<(count * Self.k)).map { _ in Float.random(in: -1...1, using: &generator) }
        for row in 0..<count {
            let scale: Float = row % 3 == 0 ? 1e25 : row % 3 == 1 ? 1e-25 : 1
            for j in 0..<Self.k { flat[row * Self.k + j] *= scale }
        }
        try flat.withUnsafeBytes { bytes in
            try store.append(to: "g", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: count, k: Self.k))
        }
        var options = IVFBuildOptions()
        options.metric = .cosine
        options.lists = 4
        try IVFIndexBuilder.build(try store.sketchSet("g"), in: store, name: "cos", options: options)
        let searcher = try IVFSearcher(set: try store.sketchSet("g"), index: "cos")
        let query = Array(flat[0..<Self.k]).map { $0 * 1e10 }
        let hits = try searcher.search(queries: query, count: 1, k: 20, parameters: IVFSearchParameters(nprobe: 4, rerank: count))[0]
        #expect(hits.first?.position == 0)
        #expect(abs(Double(hits.first?.score ?? 0) - 1) <= Self.tolerance)
        for hit in hits {
            let row = Array(flat[(hit.position * Self.k)..<((hit.position + 1) * Self.k)])
            #expect(abs(Double(hit.score) - Self.reference(row, query)) <= Self.tolerance, "row \(hit.position)")
        }
    }
}
