// `gradsketch-bench codes …`: the 4-bit codes and the two-level coarse quantizer (issue 16,
// slice codes) against the int8 codes of the ivf-int8 index, in memory, single thread.
//
//   gradsketch-bench codes scan K ROWS REPEAT
//       rows/s and GB/s of code bytes: 4-bit estimate vs int8 dots (+ scale) over ROWS rows
//   gradsketch-bench codes recall K ROWS LISTS NPROBES RERANK [NOISE [SKEW]]
//       planted clusters, one IVF per code kind (same lists), recall@10 after exact re-rank of
//       RERANK candidates at each nprobe: int8, 4-bit, 4-bit rotated
//   gradsketch-bench codes probe K LISTS NPROBE GROUPPROBES
//       probe cost flat vs two-level, and the fraction of the flat top-nprobe lists found
//   gradsketch-bench codes assign K LISTS ROWS GROUPPROBES
//       assignment for coding, exact vs through groups: time, rows given another list than
//       the exact nearest, and the mean relative growth of their squared distance
import CGradSketchKernels
import Foundation
import GradSketchInterchange
import GradSketchSearch

/// Planted clusters with uneven norms (raw inner product ≠ cosine), as the IVF tests use:
/// `centres` centres, each row a centre plus uniform noise of half-width `noise`, scaled by a
/// factor in [0.5, 2]; component j then multiplied by (j + 1)^−skew (skew 0: isotropic; larger:
/// a decaying spectrum, a few components carrying most of the energy).
func clusteredRows(_ count: Int, width: Int, centres: Int, seed: UInt64, noise: Float = 0.5, skew: Double = 0) -> [Float] {
    var generator = SeededRandom(seed: 1)
    let centre = (0..<(centres * width)).map { _ in Float.random(in: -1...1, using: &generator) }
    let spectrum = (0..<width).map { Float(pow(Double($0 + 1), -skew)) }
    generator = SeededRandom(seed: seed)
    var rows = [Float](repeating: 0, count: count * width)
    for row in 0..<count {
        let c = Int(generator.next() % UInt64(centres))
        let scale = Float.random(in: 0.5...2, using: &generator)
        for j in 0..<width {
            rows[row * width + j] = scale * spectrum[j] * (centre[c * width + j] + Float.random(in: -noise...noise, using: &generator))
        }
    }
    return rows
}

func runCodesBench(_ arguments: [String]) throws {
    switch arguments.first {
    case "scan": try codesScan(Array(arguments.dropFirst()))
    case "recall": try codesRecall(Array(arguments.dropFirst()))
    case "probe": try codesProbe(Array(arguments.dropFirst()))
    case "assign": try codesAssign(Array(arguments.dropFirst()))
    default:
        FileHandle.standardError.write(Data("usage: gradsketch-bench codes scan|recall|probe …\n".utf8))
        exit(2)
    }
}

/// Scan speed of one query over `rows` rows of codes, best of `repeat` passes.
func codesScan(_ arguments: [String]) throws {
    let width = Int(arguments[0])!, rows = Int(arguments[1])!, repeats = Int(arguments[2]) ?? 5
    var generator = SeededRandom(seed: 4)
    let query = (0..<width).map { _ in Float.random(in: -1...1, using: &generator) }

    let coder = FourBitCoder(width: width, rotationSeed: nil)
    let fourBit = (0..<(rows * coder.bytesPerRow)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    let lows = (0..<rows).map { _ in Float.random(in: -1...0, using: &generator) }
    let steps = (0..<rows).map { _ in Float.random(in: 0...0.1, using: &generator) }
    let prepared = coder.prepare(query: query)
    var estimates = [Float](repeating: 0, count: rows)
    var best4 = Double.infinity
    for _ in 0..<repeats {
        best4 = min(best4, seconds { coder.estimate(prepared, codes: fourBit, lows: lows, steps: steps, count: rows, into: &estimates) })
    }
    var best4dots = Double.infinity
    var dots = [Int32](repeating: 0, count: rows)
    for _ in 0..<repeats {
        best4dots = min(best4dots, seconds {
            prepared.even.withUnsafeBufferPointer { e in
                prepared.odd.withUnsafeBufferPointer { o in
                    gsk_fourbit_dots(fourBit, rows, coder.bytesPerRow, e.baseAddress!, o.baseAddress!, &dots)
                }
            }
        })
    }

    // int8, as IVFIndex scans it: int32 dots against the int16-widened query, then scale.
    let int8 = (0..<(rows * width)).map { _ in Int8(truncatingIfNeeded: Int(generator.next() % 255) - 127) }
    var q8 = [Int8](repeating: 0, count: width)
    let qscale = gsk_quantize_int8(query, width, &q8)
    let q16 = q8.map { Int16($0) }
    let qOffset = q8.map { UInt8(Int($0) + 128) }
    let scales = (0..<rows).map { _ in Float.random(in: 0...0.01, using: &generator) }
    var best8 = Double.infinity, best8dots = Double.infinity
    for _ in 0..<repeats {
        best8dots = min(best8dots, seconds { gsk_int8_dots(int8, rows, width, q16, qOffset, &dots) })
        best8 = min(best8, seconds {
            gsk_int8_dots(int8, rows, width, q16, qOffset, &dots)
            for i in 0..<rows { estimates[i] = scales[i] * qscale * Float(dots[i]) }
        })
    }
    func entry(_ what: String, _ time: Double, bytesPerRow: Int) -> [String: Any] {
        ["what": what, "k": width, "rows": rows, "seconds": time, "rows_per_second": Double(rows) / time,
         "code_bytes_per_row": bytesPerRow, "gb_per_second": Double(rows * bytesPerRow) / time / 1e9]
    }
    emit(["bench": "codes-scan", "fourbit_avx2": gsk_has_fourbit_avx2() != 0, "int8_vnni": gsk_has_int8_vnni() != 0,
          "results": [entry("fourbit-estimate", best4, bytesPerRow: coder.bytesPerRow + 8),
                      entry("fourbit-dots", best4dots, bytesPerRow: coder.bytesPerRow),
                      entry("int8-estimate", best8, bytesPerRow: width + 4),
                      entry("int8-dots", best8dots, bytesPerRow: width)]])
}

/// One IVF over planted clusters per code kind; recall@10 of the re-ranked answers against
/// the exact top 10 (Double-free: float32 exact scores from the same rows).
func codesRecall(_ arguments: [String]) throws {
    let width = Int(arguments[0])!, count = Int(arguments[1])!, lists = Int(arguments[2])!
    let nprobes = arguments[3].split(separator: ",").map { Int($0)! }
    let rerank = Int(arguments[4])!
    let noise = arguments.count > 5 ? Float(arguments[5])! : 0.5
    let skew = arguments.count > 6 ? Double(arguments[6])! : 0
    let queryCount = 200
    let rows = clusteredRows(count, width: width, centres: 200, seed: 2, noise: noise, skew: skew)
    let queries = clusteredRows(queryCount, width: width, centres: 200, seed: 77, noise: noise, skew: skew)

    // Exact top 10 per query.
    var truth: [[Int]] = []
    var scores = [Float](repeating: 0, count: count)
    for q in 0..<queryCount {
        rows.withUnsafeBufferPointer { r in
            queries.withUnsafeBufferPointer { gsk_dots_f32(r.baseAddress!, count, width, $0.baseAddress! + q * width, &scores, nil) }
        }
        var top = TopK(capacity: 10)
        for i in 0..<count { top.offer(scores[i], position: i) }
        truth.append(top.sorted.map(\.position))
    }

    let sampleCount = min(count, max(lists * 40, 20_000))
    var trainTime = 0.0
    var quantizer: CoarseQuantizer!
    trainTime = seconds {
        quantizer = CoarseQuantizer.train(points: Array(rows[0..<(sampleCount * width)]), count: sampleCount, width: width, lists: lists,
                                          groups: nil, iterations: 8, seed: 5, threads: 1)
    }
    var assignment = [Int32](repeating: 0, count: count)
    let assignTime = seconds { rows.withUnsafeBufferPointer { quantizer.assign($0.baseAddress!, count: count, into: &assignment, threads: 2) } }
    // Rows grouped by list.
    var offsets = [Int](repeating: 0, count: lists + 1)
    for list in assignment { offsets[Int(list) + 1] += 1 }
    for list in 0..<lists { offsets[list + 1] += offsets[list] }
    var order = [Int](repeating: 0, count: count)
    var fill = offsets
    for (row, list) in assignment.enumerated() { order[fill[Int(list)]] = row; fill[Int(list)] += 1 }
    var residuals = [Float](repeating: 0, count: count * width)
    for (slot, row) in order.enumerated() {
        let list = Int(assignment[row])
        for j in 0..<width { residuals[slot * width + j] = rows[row * width + j] - quantizer.centroids[list * width + j] }
    }

    var results: [[String: Any]] = []
    for kind in ["int8", "fourbit", "fourbit-rotated"] {
        // Code every row of every list.
        var int8 = [Int8](), int8Scales = [Float]()
        let coder = FourBitCoder(width: width, rotationSeed: kind == "fourbit-rotated" ? 12345 : nil)
        var codes = [UInt8](), lows = [Float](), steps = [Float]()
        var reconstructionError = 0.0
        let codeTime = seconds {
            if kind == "int8" {
                int8 = [Int8](repeating: 0, count: count * width)
                int8Scales = [Float](repeating: 0, count: count)
                residuals.withUnsafeBufferPointer { r in
                    int8.withUnsafeMutableBufferPointer { c in
                        for i in 0..<count { int8Scales[i] = gsk_quantize_int8(r.baseAddress! + i * width, width, c.baseAddress! + i * width) }
                    }
                }
            } else {
                codes = [UInt8](repeating: 0, count: count * coder.bytesPerRow)
                lows = [Float](repeating: 0, count: count)
                steps = [Float](repeating: 0, count: count)
                residuals.withUnsafeBufferPointer { r in
                    codes.withUnsafeMutableBufferPointer { c in
                        for i in 0..<count {
                            (lows[i], steps[i]) = coder.encode(r.baseAddress! + i * width, into: c.baseAddress! + i * coder.bytesPerRow)
                        }
                    }
                }
            }
        }
        // Relative squared reconstruction error on a sample of rows, in the coded space.
        for i in stride(from: 0, to: count, by: max(1, count / 2000)) {
            var error = 0.0, norm = 0.0
            let residual = Array(residuals[(i * width)..<((i + 1) * width)])
            if kind == "int8" {
                for j in 0..<width {
                    error += pow(Double(residual[j]) - Double(int8[i * width + j]) * Double(int8Scales[i]), 2)
                    norm += Double(residual[j]) * Double(residual[j])
                }
            } else {
                let y = coder.rotated(residual)
                let decoded = codes.withUnsafeBufferPointer { coder.decodeRotated($0.baseAddress! + i * coder.bytesPerRow, low: lows[i], step: steps[i]) }
                for j in 0..<width { error += pow(Double(y[j]) - Double(decoded[j]), 2); norm += Double(y[j]) * Double(y[j]) }
            }
            reconstructionError += norm > 0 ? error / norm : 0
        }
        reconstructionError /= Double((count + max(1, count / 2000) - 1) / max(1, count / 2000))

        for nprobe in nprobes {
            var found = 0
            var scanned = 0
            let time = seconds {
                var estimates = [Float](repeating: 0, count: 0)
                var dots = [Int32](repeating: 0, count: 0)
                for q in 0..<queryCount {
                    let query = Array(queries[(q * width)..<((q + 1) * width)])
                    let probed = query.withUnsafeBufferPointer { quantizer.probe($0.baseAddress!, nprobe: nprobe, groupProbe: nil) }
                    var candidates = TopK(capacity: rerank)
                    var q8 = [Int8](repeating: 0, count: width)
                    let qscale = gsk_quantize_int8(query, width, &q8)
                    let q16 = q8.map { Int16($0) }
                    let prepared = coder.prepare(query: query)
                    for list in probed.map(Int.init) {
                        let start = offsets[list], n = offsets[list + 1] - start
                        guard n > 0 else { continue }
                        scanned += n
                        var base: Float = 0
                        for j in 0..<width { base += query[j] * quantizer.centroids[list * width + j] }
                        if estimates.count < n { estimates = [Float](repeating: 0, count: n); dots = [Int32](repeating: 0, count: n) }
                        if kind == "int8" {
                            int8.withUnsafeBufferPointer { c in gsk_int8_dots(c.baseAddress! + start * width, n, width, q16, nil, &dots) }
                            for i in 0..<n { estimates[i] = int8Scales[start + i] * qscale * Float(dots[i]) }
                        } else {
                            codes.withUnsafeBufferPointer { c in
                                lows.withUnsafeBufferPointer { l in
                                    steps.withUnsafeBufferPointer { s in
                                        coder.estimate(prepared, codes: c.baseAddress! + start * coder.bytesPerRow, lows: l.baseAddress! + start,
                                                       steps: s.baseAddress! + start, count: n, into: &estimates)
                                    }
                                }
                            }
                        }
                        for i in 0..<n { candidates.offer(base + estimates[i], position: order[start + i]) }
                    }
                    // Exact re-rank of the candidates from the float32 rows.
                    var top = TopK(capacity: 10)
                    for candidate in candidates.sorted {
                        var score: Float = 0
                        let row = candidate.position
                        for j in 0..<width { score += query[j] * rows[row * width + j] }
                        top.offer(score, position: row)
                    }
                    found += Set(top.sorted.map(\.position)).intersection(truth[q]).count
                }
            }
            results.append(["codes": kind, "nprobe": nprobe, "rerank": rerank, "recall_at_10": Double(found) / Double(queryCount * 10),
                            "rows_scanned_per_query": scanned / queryCount, "qps": Double(queryCount) / time,
                            "code_seconds": codeTime, "relative_reconstruction_error": reconstructionError])
        }
    }
    emit(["bench": "codes-recall", "k": width, "rows": count, "lists": lists, "noise": Double(noise), "skew": skew, "train_seconds": trainTime, "assign_seconds": assignTime,
          "results": results])
}

/// Probe cost flat vs two-level: list centroids are rows of planted clusters (a k-means over
/// 65,536 lists is more than this bench needs to time a probe), the upper level a k-means
/// over them.
func codesProbe(_ arguments: [String]) throws {
    let width = Int(arguments[0])!, lists = Int(arguments[1])!, nprobe = Int(arguments[2])!
    let groupProbes = arguments[3].split(separator: ",").map { Int($0)! }
    let queryCount = 200
    let centroids = clusteredRows(lists, width: width, centres: max(64, lists / 64), seed: 8)
    var quantizer: CoarseQuantizer!
    let groupTime = seconds { quantizer = CoarseQuantizer.grouping(centroids: centroids, width: width, groups: nil, iterations: 8, seed: 1) }
    let queries = clusteredRows(queryCount, width: width, centres: max(64, lists / 64), seed: 99)
    var flat: [[Int32]] = []
    let flatTime = seconds {
        for q in 0..<queryCount {
            flat.append(queries.withUnsafeBufferPointer { quantizer.probe($0.baseAddress! + q * width, nprobe: nprobe, groupProbe: nil) })
        }
    }
    var results: [[String: Any]] = [["group_probe": "all", "seconds_per_probe": flatTime / Double(queryCount), "lists_found": 1.0]]
    for groupProbe in groupProbes {
        var found = 0
        let time = seconds {
            for q in 0..<queryCount {
                let lists = queries.withUnsafeBufferPointer { quantizer.probe($0.baseAddress! + q * width, nprobe: nprobe, groupProbe: groupProbe) }
                found += Set(lists).intersection(flat[q]).count
            }
        }
        results.append(["group_probe": groupProbe, "seconds_per_probe": time / Double(queryCount),
                        "lists_found": Double(found) / Double(queryCount * nprobe)])
    }
    emit(["bench": "codes-probe", "k": width, "lists": lists, "groups": quantizer.groups, "nprobe": nprobe,
          "grouping_seconds": groupTime, "results": results])
}

func codesAssign(_ arguments: [String]) throws {
    let width = Int(arguments[0])!, lists = Int(arguments[1])!, count = Int(arguments[2])!
    let groupProbes = arguments[3].split(separator: ",").map { Int($0)! }
    let centres = max(64, lists / 64)
    let centroids = clusteredRows(lists, width: width, centres: centres, seed: 8)
    let quantizer = CoarseQuantizer.grouping(centroids: centroids, width: width, groups: nil, iterations: 8, seed: 1)
    let rows = clusteredRows(count, width: width, centres: centres, seed: 21)
    var exact = [Int32](repeating: 0, count: count)
    let exactTime = seconds { rows.withUnsafeBufferPointer { quantizer.assign($0.baseAddress!, count: count, into: &exact, threads: 1) } }
    func distance(_ row: Int, _ list: Int32) -> Double {
        var sum = 0.0
        for j in 0..<width { let d = Double(rows[row * width + j]) - Double(quantizer.centroids[Int(list) * width + j]); sum += d * d }
        return sum
    }
    var results: [[String: Any]] = [["group_probe": "all", "seconds": exactTime, "rows_per_second": Double(count) / exactTime]]
    for groupProbe in groupProbes {
        var grouped = [Int32](repeating: 0, count: count)
        let time = seconds {
            rows.withUnsafeBufferPointer { quantizer.assign($0.baseAddress!, count: count, into: &grouped, threads: 1, groupProbe: groupProbe) }
        }
        var differ = 0
        var growth = 0.0
        for row in 0..<count where grouped[row] != exact[row] {
            let e = distance(row, exact[row]), g = distance(row, grouped[row])
            // Equal distances (ties, rounding) are not errors.
            if g > e * (1 + 1e-6) { differ += 1; growth += g / max(e, 1e-30) - 1 }
        }
        results.append(["group_probe": groupProbe, "seconds": time, "rows_per_second": Double(count) / time,
                        "rows_not_nearest": Double(differ) / Double(count),
                        "mean_relative_distance_growth_of_those": differ > 0 ? growth / Double(differ) : 0])
    }
    emit(["bench": "codes-assign", "k": width, "lists": lists, "groups": quantizer.groups, "rows": count, "results": results])
}
