@testable import GradSketchSearch
import GradSketchInterchange
import GradSketchTestSupport
import Testing

/// FourBitCoder against naive Double-precision arithmetic: reconstruction, the rotation's
/// orthogonality, the estimate formula, its error bound, and the SIMD kernel against the
/// portable one.
@Suite struct FourBitCodesTests {
    /// Widths around the kernel's 32-byte (64-element) chunks, odd ones included.
    static let widths = [1, 2, 7, 63, 64, 65, 127, 128, 129, 256, 257]

    static func randomRows(_ count: Int, width: Int, seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        // Uneven component scales, as residuals have.
        let scales = (0..<width).map { _ in Float.random(in: 0.05...2, using: &generator) }
        return (0..<(count * width)).map { i in scales[i % width] * Float.random(in: -1...1, using: &generator) }
    }

    static func nibble(_ codes: [UInt8], row: Int, bytesPerRow: Int, element j: Int) -> Int {
        Int((codes[row * bytesPerRow + j / 2] >> UInt8(4 * (j % 2))) & 0x0F)
    }

    struct Coded {
        var codes: [UInt8]
        var lows: [Float]
        var steps: [Float]
    }

    static func encode(_ coder: FourBitCoder, _ rows: [Float], count: Int) -> Coded {
        var coded = Coded(codes: [UInt8](repeating: 0xFF, count: count * coder.bytesPerRow),
                          lows: [Float](repeating: 0, count: count), steps: [Float](repeating: 0, count: count))
        rows.withUnsafeBufferPointer { r in
            coded.codes.withUnsafeMutableBufferPointer { c in
                for i in 0..<count {
                    (coded.lows[i], coded.steps[i]) = coder.encode(r.baseAddress! + i * coder.width,
                                                                   into: c.baseAddress! + i * coder.bytesPerRow)
                }
            }
        }
        return coded
    }

    @Test("without rotation every component is within step/2 of low + step·code", arguments: widths)
    func reconstruction(width: Int) {
        let count = 20
        let rows = Self.randomRows(count, width: width, seed: UInt64(width))
        let coder = FourBitCoder(width: width, rotationSeed: nil)
        let coded = Self.encode(coder, rows, count: count)
        for i in 0..<count {
            let row = rows[(i * width)..<((i + 1) * width)].map(Double.init)
            let low = Double(coded.lows[i]), step = Double(coded.steps[i])
            #expect(low == row.min()!)
            if width > 1 {
                #expect(abs(low + 15 * step - row.max()!) <= 1e-6 * max(1, abs(row.max()!)))
            }
            for j in 0..<width {
                let code = Self.nibble(coded.codes, row: i, bytesPerRow: coder.bytesPerRow, element: j)
                // step/2 plus float32 rounding of (y − low)/step.
                #expect(abs(row[j] - (low + step * Double(code))) <= step / 2 * (1 + 1e-5) + 1e-7)
            }
            if width % 2 == 1 {
                // The unused high nibble of the last byte is zero.
                #expect(coded.codes[i * coder.bytesPerRow + coder.bytesPerRow - 1] >> 4 == 0)
            }
        }
    }

    @Test("a constant row codes as step 0 and all-zero codes")
    func constantRow() {
        let coder = FourBitCoder(width: 9, rotationSeed: nil)
        let row = [Float](repeating: 0.75, count: 9)
        var codes = [UInt8](repeating: 0xAA, count: coder.bytesPerRow)
        let (low, step) = coder.encode(row, into: &codes)
        #expect(low == 0.75 && step == 0)
        #expect(codes == [0, 0, 0, 0, 0])
    }

    @Test("the rotation keeps norms and inner products and mixes components", arguments: [1, 7, 64, 100, 128, 129, 256])
    func rotationIsOrthogonal(width: Int) {
        let coder = FourBitCoder(width: width, rotationSeed: 42)
        let rows = Self.randomRows(2, width: width, seed: 7)
        let x = Array(rows[0..<width]), y = Array(rows[width...])
        let rx = coder.rotated(x), ry = coder.rotated(y)
        func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
        let scale = dot(x, x).squareRoot() * dot(y, y).squareRoot()
        #expect(abs(dot(rx, rx) - dot(x, x)) <= 1e-5 * dot(x, x))
        #expect(abs(dot(rx, ry) - dot(x, y)) <= 1e-5 * scale)
        // Undoing the rotation gives x back.
        var back = rx
        back.withUnsafeMutableBufferPointer { coder.unrotate($0.baseAddress!) }
        for j in 0..<width { #expect(abs(back[j] - x[j]) <= 1e-5 * Float(scale.squareRoot())) }
        if width >= 7 {
            // Not the identity (nor a signed permutation): a unit vector spreads over components.
            var unit = [Float](repeating: 0, count: width)
            unit[0] = 1
            let spread = coder.rotated(unit).filter { abs($0) > 1e-6 }.count
            #expect(spread >= min(width, 8))
        }
        // The same seed gives the same rotation; another seed another one.
        #expect(FourBitCoder(width: width, rotationSeed: 42).rotated(x) == rx)
        if width >= 7 { #expect(FourBitCoder(width: width, rotationSeed: 43).rotated(x) != rx) }
    }

    @Test("with rotation the decoded residual is within √width·step/2 of the residual", arguments: [7, 128, 129])
    func rotatedReconstruction(width: Int) {
        let count = 10
        let rows = Self.randomRows(count, width: width, seed: 3)
        let coder = FourBitCoder(width: width, rotationSeed: 9)
        let coded = Self.encode(coder, rows, count: count)
        for i in 0..<count {
            var decoded = coded.codes.withUnsafeBufferPointer {
                coder.decodeRotated($0.baseAddress! + i * coder.bytesPerRow, low: coded.lows[i], step: coded.steps[i])
            }
            decoded.withUnsafeMutableBufferPointer { coder.unrotate($0.baseAddress!) }
            var error = 0.0
            for j in 0..<width { error += pow2(Double(decoded[j]) - Double(rows[i * width + j])) }
            #expect(error.squareRoot() <= Double(width).squareRoot() * Double(coded.steps[i]) / 2 * (1 + 1e-4) + 1e-6)
        }
    }

    func pow2(_ x: Double) -> Double { x * x }

    @Test("estimates follow the quantised formula and stay within the derived bound of ⟨q, r⟩",
          arguments: [(1, false), (7, true), (64, false), (65, true), (128, true), (129, false), (256, true)])
    func estimates(width: Int, rotate: Bool) {
        let count = 37  // not a multiple of the kernel's 4 rows
        let rows = Self.randomRows(count, width: width, seed: 11)
        let query = Self.randomRows(1, width: width, seed: 12)
        let coder = FourBitCoder(width: width, rotationSeed: rotate ? 5 : nil)
        let coded = Self.encode(coder, rows, count: count)
        let prepared = coder.prepare(query: query)
        var estimates = [Float](repeating: .nan, count: count)
        var reference = [Float](repeating: .nan, count: count)
        coded.codes.withUnsafeBufferPointer { c in
            coder.estimate(prepared, codes: c.baseAddress!, lows: coded.lows, steps: coded.steps, count: count, into: &estimates)
            coder.referenceEstimate(prepared, codes: c.baseAddress!, lows: coded.lows, steps: coded.steps, count: count, into: &reference)
        }
        // The C kernel and the Swift reference round the same: bit for bit.
        #expect(estimates.map(\.bitPattern) == reference.map(\.bitPattern))

        // Independent Double oracle: q8 from the rotated query, the formula in Double.
        let rotatedQuery = prepared.rotated.map(Double.init)
        let largest = rotatedQuery.map(abs).max()!
        let qscale = largest / 127
        let q8 = rotatedQuery.map { largest == 0 ? 0 : ($0 / qscale).rounded(.toNearestOrEven) }
        let qsum = rotatedQuery.reduce(0, +)
        let l1 = rotatedQuery.map(abs).reduce(0, +)
        for i in 0..<count {
            var dot = 0.0, codeSum = 0.0, exact = 0.0
            for j in 0..<width {
                let code = Double(Self.nibble(coded.codes, row: i, bytesPerRow: coder.bytesPerRow, element: j))
                dot += q8[j] * code
                codeSum += code
                exact += Double(query[j]) * Double(rows[i * width + j])
            }
            let low = Double(coded.lows[i]), step = Double(coded.steps[i])
            let formula = low * qsum + step * qscale * dot
            // float32: a few roundings of terms of magnitude |low·Σq| and |step·qscale·dot|.
            let rounding = 4e-7 * (abs(low * qsum) + abs(step * qscale * dot)) + 1e-30
            #expect(abs(Double(estimates[i]) - formula) <= rounding * 4, "row \(i): \(estimates[i]) vs \(formula)")
            // Coding r costs ≤ ‖q‖₁·step/2, coding q ≤ qscale/2·step·Σc; the rotation adds its
            // float32 error (≈ 1e-6 relative to ‖q‖·‖r‖).
            let rowNorm = (0..<width).reduce(0.0) { $0 + pow2(Double(rows[i * width + $1])) }.squareRoot()
            let queryNorm = rotatedQuery.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
            let bound = l1 * step / 2 + qscale / 2 * step * codeSum + rounding * 4 + 1e-5 * rowNorm * queryNorm
            #expect(abs(Double(estimates[i]) - exact) <= bound, "row \(i): \(estimates[i]) vs ⟨q, r⟩ = \(exact), bound \(bound)")
        }
    }

    @Test("the AVX2 kernel equals the portable kernel bit for bit", arguments: widths)
    func simdMatchesPortable(width: Int) {
        let coder = FourBitCoder(width: width, rotationSeed: nil)
        var generator = SplitMix64(seed: UInt64(1000 + width))
        for count in [1, 3, 4, 5, 8, 37] {
            let codes = (0..<(count * coder.bytesPerRow)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            let query = (0..<width).map { _ in Float.random(in: -3...3, using: &generator) }
            let prepared = coder.prepare(query: query)
            let simd = codes.withUnsafeBufferPointer { coder.dots(prepared, codes: $0.baseAddress!, count: count, portable: false) }
            let portable = codes.withUnsafeBufferPointer { coder.dots(prepared, codes: $0.baseAddress!, count: count, portable: true) }
            #expect(simd == portable)
            // And both equal an Int oracle over the unpacked nibbles.
            let q8 = (0..<width).map { j in Int(j % 2 == 0 ? prepared.even[j / 2] : prepared.odd[j / 2]) }
            let oracle = (0..<count).map { i in
                (0..<width).reduce(0) { $0 + Self.nibble(codes, row: i, bytesPerRow: coder.bytesPerRow, element: $1) * q8[$1] }
            }
            #expect(simd.map(Int.init) == oracle)
        }
    }

    @Test("extreme codes and query do not saturate", arguments: [64, 129, 4096])
    func noSaturation(width: Int) {
        let coder = FourBitCoder(width: width, rotationSeed: nil)
        let codes = [UInt8](repeating: 0xFF, count: 5 * coder.bytesPerRow)
        for sign: Float in [1, -1] {
            let prepared = coder.prepare(query: [Float](repeating: sign, count: width))
            let dots = codes.withUnsafeBufferPointer { coder.dots(prepared, codes: $0.baseAddress!, count: 5, portable: false) }
            #expect(dots == [Int32](repeating: Int32(sign) * 15 * 127 * Int32(width), count: 5))
        }
    }
}
