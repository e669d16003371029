import CGradSketchKernels
import COpenBLAS
import Dispatch
import GradSketchInterchange
import GradSketchStore

/// A two-level coarse quantizer: `lists` k-means centroids (the IVF lists), grouped under
/// `groups` upper centroids (k-means over the list centroids) so that a query scans the group
/// centroids and then only the lists of its best groups instead of every list centroid.
///
/// Lists are numbered group by group: group g owns lists groupOffsets[g] ..< groupOffsets[g + 1].
/// The numbering is fixed at training, so list ids stay valid for every index part coded
/// against the same quantizer.
public struct CoarseQuantizer: Sendable {
    public let width: Int
    public let lists: Int
    /// [lists, width], row-major float32.
    public let centroids: [Float]
    /// [groups, width].
    public let groupCentroids: [Float]
    /// [groups + 1], non-decreasing from 0 to `lists`.
    public let groupOffsets: [Int]

    public var groups: Int { groupOffsets.count - 1 }

    /// max ‖c − g‖ over the lists c of each group g (derived, not stored): with it,
    /// ⟨q, g⟩ + ‖q‖·radius bounds ⟨q, c⟩ for every list of the group (Cauchy–Schwarz).
    let groupRadii: [Float]
    /// ‖c‖²/2 of every list and group centroid (derived), for assignment by GEMM.
    let listHalfNorms: [Float]
    let groupHalfNorms: [Float]

    /// Memberwise, unchecked: for `train`, whose arrays are consistent by construction.
    init(width: Int, lists: Int, centroids: [Float], groupCentroids: [Float], groupOffsets: [Int]) {
        self.width = width
        self.lists = lists
        self.centroids = centroids
        self.groupCentroids = groupCentroids
        self.groupOffsets = groupOffsets
        var radii = [Float](repeating: 0, count: groupOffsets.count - 1)
        for g in radii.indices {
            var largest: Float = 0
            for list in groupOffsets[g]..<groupOffsets[g + 1] {
                var sum: Float = 0
                for j in 0..<width {
                    let d = centroids[list * width + j] - groupCentroids[g * width + j]
                    sum += d * d
                }
                largest = max(largest, sum)
            }
            // Rounded up a little so float32 error cannot make the bound fall short.
            radii[g] = largest.squareRoot() * (1 + 1e-5)
        }
        groupRadii = radii
        listHalfNorms = Self.halfSquaredNorms(centroids, count: lists, width: width)
        groupHalfNorms = Self.halfSquaredNorms(groupCentroids, count: groupOffsets.count - 1, width: width)
    }

    /// From stored arrays, validated.
    ///
    /// - Throws: `.corrupt` when the arrays disagree with each other (shapes, offsets not
    ///   running from 0 to the list count, non-finite values).
    public init(width: Int, centroids: [Float], groupCentroids: [Float], groupOffsets: [Int]) throws {
        guard width >= 1 else {
            throw StoreError(.corrupt, "coarse quantizer: expected a width of at least 1, found \(width)")
        }
        guard !centroids.isEmpty, centroids.count % width == 0 else {
            throw StoreError(.corrupt, "coarse quantizer: expected a positive multiple of width \(width) list-centroid values, found \(centroids.count)")
        }
        guard !groupCentroids.isEmpty, groupCentroids.count % width == 0 else {
            throw StoreError(.corrupt, "coarse quantizer: expected a positive multiple of width \(width) group-centroid values, found \(groupCentroids.count)")
        }
        let lists = centroids.count / width
        let groups = groupCentroids.count / width
        guard groupOffsets.count == groups + 1 else {
            throw StoreError(.corrupt, "coarse quantizer: expected \(groups + 1) group offsets for \(groups) groups, found \(groupOffsets.count)")
        }
        guard groupOffsets.first == 0, groupOffsets.last == lists else {
            throw StoreError(.corrupt, "coarse quantizer: expected group offsets from 0 to \(lists) (the list count), found \(groupOffsets.first!) … \(groupOffsets.last!)")
        }
        for g in 0..<groups where groupOffsets[g] > groupOffsets[g + 1] {
            throw StoreError(.corrupt, "coarse quantizer: group offsets must not decrease, found \(groupOffsets[g]) then \(groupOffsets[g + 1]) at group \(g)")
        }
        if let bad = centroids.firstIndex(where: { !$0.isFinite }) {
            throw StoreError(.corrupt, "coarse quantizer: list centroid \(bad / width) has a non-finite value \(centroids[bad])")
        }
        if let bad = groupCentroids.firstIndex(where: { !$0.isFinite }) {
            throw StoreError(.corrupt, "coarse quantizer: group centroid \(bad / width) has a non-finite value \(groupCentroids[bad])")
        }
        self.init(width: width, lists: lists, centroids: centroids, groupCentroids: groupCentroids, groupOffsets: groupOffsets)
    }

    // MARK: - Training

    /// k-means lists (L2, so large-norm rows stay together), then `groups` upper centroids by
    /// k-means over the list centroids (≈ √lists when nil), lists renumbered group by group.
    ///
    /// The k-means runs its GEMMs on OpenBLAS's threads; `threads` is not used by training.
    public static func train(points: [Float], count: Int, width: Int, lists: Int, groups: Int?, iterations: Int,
                             seed: UInt64, threads: Int) -> CoarseQuantizer {
        precondition(count >= lists && lists >= 1, "training needs at least as many points (\(count)) as lists (\(lists))")
        precondition(points.count >= count * width)
        let flat = KMeans.train(points: points, count: count, width: width, lists: lists, iterations: iterations, seed: seed)
        return grouping(centroids: flat, width: width, groups: groups, iterations: iterations, seed: seed)
    }

    /// Two-level training for many lists: k-means of `groups` centroids over the points, each
    /// point to its nearest group, then each group's points split into that group's share of
    /// the lists (proportional to its points, at least one per non-empty group) by k-means of
    /// their own. One iteration costs T·(G + L/G)·k instead of T·L·k for flat training, so at
    /// 8,192 lists (G = 91) about 45× less; lists are trained only against their group's
    /// points, which suits coding through groups (``assign(_:count:into:threads:groupProbe:)``).
    public static func trainTwoLevel(points: [Float], count: Int, width: Int, lists: Int, groups: Int?, iterations: Int,
                                     seed: UInt64) -> CoarseQuantizer {
        precondition(count >= lists && lists >= 1, "training needs at least as many points (\(count)) as lists (\(lists))")
        precondition(points.count >= count * width)
        let groupCount = min(lists, max(1, groups ?? Int(Double(lists).squareRoot().rounded())))
        let upper = KMeans.train(points: points, count: count, width: width, lists: groupCount, iterations: max(iterations, 1),
                                 seed: seed ^ 0x6772_6F75_7073_0000)
        var membership = [Int32](repeating: 0, count: count)
        KMeans.assign(points: points, count: count, width: width, centroids: upper, lists: groupCount, into: &membership)
        var members = [[Int]](repeating: [], count: groupCount)
        for point in 0..<count { members[Int(membership[point])].append(point) }
        let shares = apportion(lists: lists, among: members.map(\.count))
        var centroids: [Float] = []
        centroids.reserveCapacity(lists * width)
        var offsets = [0]
        var groupPoints: [Float] = []
        for g in 0..<groupCount {
            let share = shares[g]
            if share > 0 {
                groupPoints.removeAll(keepingCapacity: true)
                for point in members[g] { groupPoints += points[(point * width)..<((point + 1) * width)] }
                if share == members[g].count {
                    centroids += groupPoints  // as many lists as points: each point its own list
                } else {
                    centroids += KMeans.train(points: groupPoints, count: members[g].count, width: width, lists: share,
                                              iterations: iterations, seed: seed &+ UInt64(g) &* 0x9E37_79B9_7F4A_7C15)
                }
            }
            offsets.append(offsets.last! + share)
        }
        return CoarseQuantizer(width: width, lists: lists, centroids: centroids, groupCentroids: upper, groupOffsets: offsets)
    }

    /// Splits `lists` among groups of `sizes` points in proportion to their sizes (largest
    /// remainder): every non-empty group gets at least one list and at most one per point,
    /// empty groups none; the shares sum to `lists`, which must lie between the number of
    /// non-empty groups and the number of points.
    public static func apportion(lists: Int, among sizes: [Int]) -> [Int] {
        let total = sizes.reduce(0, +)
        precondition(total >= lists && lists >= sizes.filter { $0 > 0 }.count, "\(lists) lists cannot be split among groups of \(sizes) points")
        let quota = sizes.map { Double(lists) * Double($0) / Double(total) }
        var shares = sizes.indices.map { g in sizes[g] == 0 ? 0 : min(sizes[g], max(1, Int(quota[g]))) }
        var assigned = shares.reduce(0, +)
        // Too few: one more to the groups furthest below their quota that can take one.
        while assigned < lists {
            let g = sizes.indices.filter { shares[$0] < sizes[$0] }.max { quota[$0] - Double(shares[$0]) < quota[$1] - Double(shares[$1]) }!
            shares[g] += 1
            assigned += 1
        }
        // Too many (the minimum of one per group): one fewer from the groups furthest above.
        while assigned > lists {
            let g = sizes.indices.filter { shares[$0] > 1 }.max { Double(shares[$0]) - quota[$0] < Double(shares[$1]) - quota[$1] }!
            shares[g] -= 1
            assigned -= 1
        }
        return shares
    }

    /// The upper level over given list centroids ([lists, width]): `groups` k-means centroids of
    /// them (≈ √lists when nil), lists renumbered group by group (each group's lists in their
    /// given order). For list centroids trained elsewhere, and for benchmarks.
    public static func grouping(centroids flat: [Float], width: Int, groups: Int?, iterations: Int, seed: UInt64) -> CoarseQuantizer {
        let lists = flat.count / width
        precondition(lists >= 1 && flat.count == lists * width)
        let groupCount = min(lists, max(1, groups ?? Int(Double(lists).squareRoot().rounded())))
        let upper: [Float]
        var membership = [Int32](repeating: 0, count: lists)
        if groupCount == 1 {
            var mean = [Double](repeating: 0, count: width)
            for list in 0..<lists { for j in 0..<width { mean[j] += Double(flat[list * width + j]) } }
            upper = mean.map { Float($0 / Double(lists)) }
        } else {
            // A different seed stream from the lists' k-means.
            upper = KMeans.train(points: flat, count: lists, width: width, lists: groupCount, iterations: max(iterations, 1),
                                 seed: seed ^ 0x6772_6F75_7073_0000)
            KMeans.assign(points: flat, count: lists, width: width, centroids: upper, lists: groupCount, into: &membership)
        }
        // Renumber: lists of group 0 first, each group's lists in their given order.
        var order: [Int] = []
        order.reserveCapacity(lists)
        var offsets = [0]
        for g in 0..<groupCount {
            for list in 0..<lists where Int(membership[list]) == g { order.append(list) }
            offsets.append(order.count)
        }
        var renumbered = [Float](repeating: 0, count: lists * width)
        for (newList, oldList) in order.enumerated() {
            for j in 0..<width { renumbered[newList * width + j] = flat[oldList * width + j] }
        }
        return CoarseQuantizer(width: width, lists: lists, centroids: renumbered, groupCentroids: upper, groupOffsets: offsets)
    }

    // MARK: - Probing

    /// The nprobe lists of largest ⟨q, c⟩ reached through the `groupProbe` groups of largest
    /// ⟨q, g⟩ (all groups when nil), best first, ties by list id ascending.
    public func probe(_ query: UnsafePointer<Float>, nprobe: Int, groupProbe: Int?) -> [Int32] {
        probe(query, nprobe: nprobe, groupProbe: groupProbe, rankGroupsByBound: true)
    }

    /// Groups ranked by their bound ⟨q, g⟩ + ‖q‖·radius when `rankGroupsByBound`, else by ⟨q, g⟩.
    func probe(_ query: UnsafePointer<Float>, nprobe: Int, groupProbe: Int?, rankGroupsByBound: Bool) -> [Int32] {
        let wanted = min(max(nprobe, 0), lists)
        guard wanted > 0 else { return [] }
        var best = TopK(capacity: wanted)
        let probedGroups = min(max(groupProbe ?? groups, 1), groups)
        if probedGroups >= groups {
            scoreLists(query, from: 0, to: lists, into: &best)
        } else {
            var groupScores = [Float](repeating: 0, count: groups)
            groupCentroids.withUnsafeBufferPointer { g in
                gsk_dots_f32(g.baseAddress!, groups, width, query, &groupScores, nil)
            }
            if rankGroupsByBound {
                var squaredNorm: Float = 0
                for j in 0..<width { squaredNorm += query[j] * query[j] }
                let norm = squaredNorm.squareRoot()
                for g in 0..<groups { groupScores[g] += norm * groupRadii[g] }
            }
            var bestGroups = TopK(capacity: probedGroups)
            for g in 0..<groups { bestGroups.offer(groupScores[g], position: g) }
            for entry in bestGroups.sorted {
                scoreLists(query, from: groupOffsets[entry.position], to: groupOffsets[entry.position + 1], into: &best)
            }
        }
        return best.sorted.map { Int32($0.position) }
    }

    private func scoreLists(_ query: UnsafePointer<Float>, from start: Int, to end: Int, into best: inout TopK) {
        guard end > start else { return }
        var scores = [Float](repeating: 0, count: end - start)
        centroids.withUnsafeBufferPointer { c in
            gsk_dots_f32(c.baseAddress! + start * width, end - start, width, query, &scores, nil)
        }
        for (i, score) in scores.enumerated() { best.offer(score, position: start + i) }
    }

    // MARK: - Assignment

    /// Nearest list (Euclidean) of each row, for coding: exact, over all lists (GEMM blocks),
    /// rows split into `threads` contiguous ranges. Ties go to the lower list id.
    public func assign(_ rows: UnsafePointer<Float>, count: Int, into lists: UnsafeMutablePointer<Int32>, threads: Int) {
        assign(rows, count: count, into: lists, threads: threads, groupProbe: nil)
    }

    /// Nearest list (Euclidean) of each row among the lists of its `groupProbe` nearest groups
    /// (exact over all lists when nil or ≥ groups).
    ///
    /// Through groups, each block of rows is scored against the group centroids (one GEMM),
    /// then the rows that chose a group are gathered and scored against that group's lists
    /// (one GEMM per group): lists/groups · groupProbe + groups centroids per row instead of
    /// all lists. A row whose nearest list lies in a group it did not probe gets the nearest
    /// list of the groups it did; `gradsketch-bench codes assign` measures how often.
    public func assign(_ rows: UnsafePointer<Float>, count: Int, into lists: UnsafeMutablePointer<Int32>, threads: Int,
                       groupProbe: Int?) {
        guard count > 0 else { return }
        let parts = max(1, min(threads, (count + KMeans.blockPoints - 1) / KMeans.blockPoints))
        let rowsAddress = UInt(bitPattern: rows), listsAddress = UInt(bitPattern: lists)
        let exact = groupProbe.map { $0 >= groups } ?? true
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = count * part / parts, end = count * (part + 1) / parts
            guard end > start else { return }
            let r = UnsafePointer<Float>(bitPattern: rowsAddress)!
            let l = UnsafeMutablePointer<Int32>(bitPattern: listsAddress)!
            if exact {
                KMeans.assign(points: r + start * width, count: end - start, width: width, centroids: centroids,
                              lists: self.lists, into: l + start)
            } else {
                var block = start
                while block < end {
                    let n = min(KMeans.blockPoints, end - block)
                    assignThroughGroups(r + block * width, count: n, into: l + block, groupProbe: max(1, groupProbe!))
                    block += n
                }
            }
        }
    }

    /// ‖c‖²/2 of each row of `matrix` ([count, width]).
    private static func halfSquaredNorms(_ matrix: [Float], count: Int, width: Int) -> [Float] {
        (0..<count).map { row in
            var sum: Float = 0
            for j in 0..<width { sum += matrix[row * width + j] * matrix[row * width + j] }
            return sum / 2
        }
    }

    private func assignThroughGroups(_ rows: UnsafePointer<Float>, count: Int, into assignment: UnsafeMutablePointer<Int32>,
                                     groupProbe: Int) {
        // Nearest groups: argmax ⟨x, g⟩ − ‖g‖²/2.
        var groupScores = [Float](repeating: 0, count: count * groups)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(groups), Int32(width),
                    1, rows, Int32(width), groupCentroids, Int32(width), 0, &groupScores, Int32(groups))
        var members = [[Int]](repeating: [], count: groups)
        for row in 0..<count {
            var best = TopK(capacity: groupProbe)
            for g in 0..<groups { best.offer(groupScores[row * groups + g] - groupHalfNorms[g], position: g) }
            for entry in best.sorted { members[entry.position].append(row) }
        }
        var bestValue = [Float](repeating: -.infinity, count: count)
        var bestList = [Int32](repeating: 0, count: count)
        var gathered: [Float] = []
        var scores: [Float] = []
        for g in 0..<groups where !members[g].isEmpty && groupOffsets[g + 1] > groupOffsets[g] {
            let first = groupOffsets[g], groupLists = groupOffsets[g + 1] - first
            let m = members[g].count
            gathered.removeAll(keepingCapacity: true)
            for row in members[g] { gathered.append(contentsOf: UnsafeBufferPointer(start: rows + row * width, count: width)) }
            if scores.count < m * groupLists { scores = [Float](repeating: 0, count: m * groupLists) }
            centroids.withUnsafeBufferPointer { c in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(groupLists), Int32(width),
                            1, gathered, Int32(width), c.baseAddress! + first * width, Int32(width), 0, &scores, Int32(groupLists))
            }
            for (i, row) in members[g].enumerated() {
                for list in 0..<groupLists {
                    let value = scores[i * groupLists + list] - listHalfNorms[first + list]
                    let id = Int32(first + list)
                    // Ties to the lower list id, whatever order the groups come in.
                    if value > bestValue[row] || (value == bestValue[row] && id < bestList[row]) {
                        bestValue[row] = value
                        bestList[row] = id
                    }
                }
            }
        }
        for row in 0..<count { assignment[row] = bestList[row] }
    }
}
