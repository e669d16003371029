import CGradSketchKernels
import Foundation
import GradSketchInterchange
import GradSketchTestSupport
import Testing

/// CRC-32C and float conversions against published vectors and numpy, bit for bit.
@Suite struct KernelTests {
    @Test func crc32cKnownVectors() {
        // RFC 3720 (iSCSI) appendix B.4 and the common check value.
        let vectors: [([UInt8], UInt32)] = [
            (Array("123456789".utf8), 0xE306_9283),
            ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
            ((0..<32).map { UInt8($0) }, 0x46DD_794E),
            ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ]
        for (bytes, expected) in vectors {
            #expect(bytes.withUnsafeBytes { CRC32C.checksum($0) } == expected)
            #expect(bytes.withUnsafeBytes { gsk_crc32c_update_portable(0, $0.baseAddress, $0.count) } == expected)
        }
        #expect(CRC32C.formatted(0x0306_9283) == "crc32c:03069283")
        #expect(CRC32C.parse("crc32c:e3069283") == 0xE306_9283)
        #expect(CRC32C.parse("crc32:e3069283") == nil)
    }

    @Test func crc32cHardwareMatchesTablesAtEveryLengthAndOffset() {
        var generator = SplitMix64(seed: 42)
        let bytes = (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { all in
            for _ in 0..<300 {
                let start = Int.random(in: 0..<64, using: &generator)
                let length = Int.random(in: 0...(all.count - start), using: &generator)
                let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                let portable = gsk_crc32c_update_portable(0, slice.baseAddress, slice.count)
                #expect(CRC32C.checksum(slice) == portable, "length \(length) at offset \(start)")
                // Incremental updates in two pieces equal one pass.
                let cut = length / 3
                var crc = CRC32C()
                crc.update(UnsafeRawBufferPointer(rebasing: slice[0..<cut]))
                crc.update(UnsafeRawBufferPointer(rebasing: slice[cut...]))
                #expect(crc.value == portable)
                // And the CRCs of the two pieces combine into the whole's.
                let head = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slice[0..<cut]))
                let tail = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slice[cut...]))
                #expect(CRC32C.combine(head, tail, secondLength: length - cut) == portable)
            }
        }
    }

    /// The segment writer's pattern: one CRC per fixed-size block (the last one shorter),
    /// combined in order. Checked against one direct pass over the concatenation, for random
    /// block sizes and totals, so a cached operator for the last length is exercised with
    /// lengths changing between calls.
    @Test func crc32cCombineOfBlocksEqualsTheCRCOfTheirConcatenation() {
        var generator = SplitMix64(seed: 7)
        let bytes = (0..<700_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { all in
            for _ in 0..<60 {
                let total = Int.random(in: 0...all.count, using: &generator)
                let blockLength = [1, 7, 8, 4096, 65536, 1 << 18].randomElement(using: &generator)! + Int.random(in: 0...3, using: &generator)
                var combined: UInt32 = 0
                var start = 0
                while start < total {
                    let end = min(total, start + blockLength)
                    let block = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[start..<end]))
                    combined = CRC32C.combine(combined, block, secondLength: end - start)
                    start = end
                }
                let direct = gsk_crc32c_update_portable(0, all.baseAddress, total)
                #expect(combined == direct, "total \(total) in blocks of \(blockLength)")
            }
        }
    }

    /// Lengths far past any buffer (up to 2^60 bytes): combining is associative, so
    /// (A‖B)‖C and A‖(B‖C) agree only if the operator for every length is right; and CRCs of
    /// zero runs combine into the direct CRC of the longer run.
    @Test func crc32cCombineAtHugeLengths() {
        var generator = SplitMix64(seed: 11)
        for _ in 0..<200 {
            let (a, b, c) = (UInt32.random(in: 0...UInt32.max, using: &generator), UInt32.random(in: 0...UInt32.max, using: &generator),
                             UInt32.random(in: 0...UInt32.max, using: &generator))
            let lengthB = Int.random(in: 1...(1 << 60), using: &generator)
            let lengthC = Int.random(in: 1...(1 << 59), using: &generator)
            let left = CRC32C.combine(CRC32C.combine(a, b, secondLength: lengthB), c, secondLength: lengthC)
            let right = CRC32C.combine(a, CRC32C.combine(b, c, secondLength: lengthC), secondLength: lengthB + lengthC)
            #expect(left == right, "lengths \(lengthB), \(lengthC)")
        }
        let zeros = [UInt8](repeating: 0, count: 3 << 20)
        zeros.withUnsafeBytes { all in
            for cut in [1, 1000, 1 << 20, (3 << 20) - 1] {
                let head = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[0..<cut]))
                let tail = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[cut...]))
                #expect(CRC32C.combine(head, tail, secondLength: all.count - cut) == gsk_crc32c_update_portable(0, all.baseAddress, all.count))
            }
        }
    }

    /// Every float16 bit pattern widened, and float32 values (edges, ties, overflow,
    /// subnormals, random) narrowed, against numpy's `astype`.
    @Test func floatConversionsMatchNumpy() throws {
        let scratch = try TemporaryDirectory()
        let script = """
        import sys, numpy as np
        out = sys.argv[1]
        halves = np.arange(65536, dtype=np.uint32).astype(np.uint16)
        np.save(f"{out}/halves_as_f32.npy", halves.view(np.float16).astype(np.float32))
        rng = np.random.default_rng(3)
        edge = np.array([65504, 65519.996, 65520, -65520, 1e30, 2**-24, 2**-25, 2**-25 * 1.0000001, 3 * 2**-26,
                         2**-14, 2**-14 - 2**-25, 1 + 2**-11, 1 + 3 * 2**-11, 0.0, -0.0, np.inf, -np.inf, np.nan, 1/3],
                        dtype=np.float32)
        singles = np.concatenate([edge, rng.standard_normal(100000).astype(np.float32) * 1000,
                                  rng.standard_normal(10000).astype(np.float32) * 1e-5]).astype(np.float32)
        np.save(f"{out}/singles.npy", singles)
        np.save(f"{out}/singles_as_f16.npy", singles.astype(np.float16))
        doubles = rng.standard_normal(10000) * 100
        np.save(f"{out}/doubles.npy", doubles)
        np.save(f"{out}/doubles_as_f32.npy", doubles.astype(np.float32))
        """
        let result = try ChildProcess.python(script, [scratch.path])
        try #require(result.status == 0, "\(result.standardError)")
        func load(_ name: String) throws -> NumpyFile { try NumpyFile(path: scratch.path + "/\(name).npy") }

        // float16 → float32 for all 65536 patterns (NaN payloads included).
        let patterns = (0..<65536).map { UInt16($0) }
        var widened = [Float](repeating: 0, count: 65536)
        _ = try patterns.withUnsafeBytes { source in
            try widened.withUnsafeMutableBytes { try ElementConversion.convert(source, from: .float16, to: .float32, into: $0) }
        }
        let expectedWide = try load("halves_as_f32")
        let wideBits = widened.map(\.bitPattern)
        let expectedWideBits = (0..<65536).map { expectedWide.data.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self) }
        // Signalling NaN inputs may come back quieted (F16C sets the quiet bit; numpy keeps
        // it clear): both are NaN, which is all the Spec promises for NaN payloads.
        let mismatches = (0..<65536).filter { index in
            let ours = Float(bitPattern: wideBits[index]), theirs = Float(bitPattern: expectedWideBits[index])
            return theirs.isNaN ? !ours.isNaN : wideBits[index] != expectedWideBits[index]
        }
        #expect(mismatches.count == 0, "\(mismatches.count) patterns differ, first: \(mismatches.first.map { String($0, radix: 16) } ?? "-")")

        // float32 → float16: hardware path and the portable path of gsk_f32_to_f16.
        let singles = try load("singles")
        let expectedHalves = try load("singles_as_f16")
        var narrowed = [UInt8](repeating: 0, count: singles.elementCount * 2)
        let firstBad = try narrowed.withUnsafeMutableBytes { try ElementConversion.convert(singles.data, from: .float32, to: .float16, into: $0) }
        #expect(firstBad == 2)  // 65520 rounds up to Inf, the first non-finite result
        #expect(narrowed.elementsEqual(expectedHalves.data), "float32 → float16 differs from numpy")

        let doubles = try load("doubles")
        var singlesFromDoubles = [UInt8](repeating: 0, count: doubles.elementCount * 4)
        _ = try singlesFromDoubles.withUnsafeMutableBytes { try ElementConversion.convert(doubles.data, from: .float64, to: .float32, into: $0) }
        let expectedSingles = try load("doubles_as_f32")  // keeps the mapping alive while compared
        #expect(singlesFromDoubles.elementsEqual(expectedSingles.data))
    }

    @Test func nonFiniteSearchAndSums() {
        var values = [Float](repeating: 1.5, count: 5000)
        #expect(gsk_first_nonfinite_f32(values, values.count) == -1)
        values[4321] = .nan
        values[4999] = .infinity
        #expect(gsk_first_nonfinite_f32(values, values.count) == 4321)
        // Every position, around the vector blocks' edges included, and every offset.
        for position in [0, 7, 8, 31, 32, 1023, 1024, 1025, 2047, 4095, 4999] {
            var clean = [Float](repeating: -3, count: 5000)
            clean[position] = -.infinity
            for offset in 0..<3 {
                let found = clean.withUnsafeBufferPointer { gsk_first_nonfinite_f32($0.baseAddress! + offset, 5000 - offset) }
                #expect(found == (position >= offset ? position - offset : -1), "position \(position) offset \(offset)")
            }
        }
        let halves: [UInt16] = [0x3C00, 0x7BFF, 0xFC00, 0x7E00]
        #expect(gsk_first_nonfinite_f16(halves, 4) == 2)
        // Sums against a Double reference.
        var generator = SplitMix64(seed: 9)
        let data = (0..<100_003).map { _ in Float.random(in: -1...1, using: &generator) }
        let reference = data.reduce(0.0) { $0 + Double($1) }
        let sum = gsk_sum_f32(data, data.count)
        #expect(abs(sum - reference) < 1e-3, "sum \(sum) vs \(reference)")
        let halfData = data.map { Float16($0) }
        let halfReference = halfData.reduce(0.0) { $0 + Double($1) }
        let halfSum = halfData.withUnsafeBytes { gsk_sum_f16($0.baseAddress!.assumingMemoryBound(to: UInt16.self), halfData.count) }
        #expect(abs(halfSum - halfReference) < 1e-3)
    }
}
