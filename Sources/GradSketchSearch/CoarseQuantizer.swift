import CGradSketchKernels
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

    /// Memberwise, unchecked: for `train`, whose arrays are consistent by construction.
    init(width: Int, lists: Int, centroids: [Float], groupCentroids: [Float], groupOffsets: [Int]) {
        self.width = width
        self.lists = lists
        self.centroids = centroids
        self.groupCentroids = groupCentroids
        self.groupOffsets = groupOffsets
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
    /// `threads` bounds the parallel assignment; the k-means itself runs on BLAS threads.
    public static func train(points: [Float], count: Int, width: Int, lists: Int, groups: Int?, iterations: Int,
                             seed: UInt64, threads: Int) -> CoarseQuantizer {
        precondition(count >= lists && lists >= 1, "training needs at least as many points (\(count)) as lists (\(lists))")
        precondition(points.count >= count * width)
        let flat = KMeans.train(points: points, count: count, width: width, lists: lists, iterations: iterations, seed: seed)
        let groupCount = min(lists, max(1, groups ?? Int(Double(lists).squareRoot().rounded())))
        let upper: [Float]
        var membership = [Int32](repeating: 0, count: lists)
        if groupCount == 1 {
            var mean = [Double](repeating: 0, count: width)
            for list in 0..<lists { for j in 0..<width { mean[j] += Double(flat[list * width + j]) } }
            upper = mean.map { Float($0 / Double(lists)) }
        } else {
            // A different seed stream from the lists' k-means.
            upper = KMeans.train(points: flat, count: lists, width: width, lists: groupCount, iterations: iterations,
                                 seed: seed ^ 0x6772_6F75_7073_0000)
            KMeans.assign(points: flat, count: lists, width: width, centroids: upper, lists: groupCount, into: &membership)
        }
        // Renumber: lists of group 0 first, each group's lists in their k-means order.
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
    /// rows split into `threads` contiguous ranges.
    public func assign(_ rows: UnsafePointer<Float>, count: Int, into lists: UnsafeMutablePointer<Int32>, threads: Int) {
        guard count > 0 else { return }
        let parts = max(1, min(threads, (count + KMeans.blockPoints - 1) / KMeans.blockPoints))
        let rowsAddress = UInt(bitPattern: rows), listsAddress = UInt(bitPattern: lists)
        let width = self.width, centroids = self.centroids, listCount = self.lists
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = count * part / parts, end = count * (part + 1) / parts
            guard end > start else { return }
            let r = UnsafePointer<Float>(bitPattern: rowsAddress)!
            let l = UnsafeMutablePointer<Int32>(bitPattern: listsAddress)!
            KMeans.assign(points: r + start * width, count: end - start, width: width, centroids: centroids,
                          lists: listCount, into: l + start)
        }
    }
}
