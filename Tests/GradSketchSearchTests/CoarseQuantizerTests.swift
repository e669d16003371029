import GradSketchInterchange
import GradSketchSearch
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The two-level coarse quantizer against Double brute force over its own centroids.
@Suite struct CoarseQuantizerTests {
    static let width = 12

    /// 1,500 points around 40 planted centres with uneven norms.
    static func points(seed: UInt64) -> [Float] {
        var generator = SplitMix64(seed: seed)
        let centres = (0..<(40 * width)).map { _ in Float.random(in: -1...1, using: &generator) }
        return (0..<1500).flatMap { _ -> [Float] in
            let centre = Int(generator.next() % 40)
            let scale = Float.random(in: 0.5...2, using: &generator)
            return (0..<width).map { j in scale * (centres[centre * width + j] + Float.random(in: -0.3...0.3, using: &generator)) }
        }
    }

    static let trained = CoarseQuantizer.train(points: points(seed: 1), count: 1500, width: width, lists: 64, groups: 8,
                                               iterations: 8, seed: 3, threads: 2)

    static func dot(_ a: ArraySlice<Float>, _ b: [Float]) -> Double {
        var sum = 0.0
        for (x, y) in zip(a, b) { sum += Double(x) * Double(y) }
        return sum
    }

    static func squaredDistance<A: Collection<Float>, B: Collection<Float>>(_ a: A, _ b: B) -> Double {
        var sum = 0.0
        for (x, y) in zip(a, b) {
            let d = Double(x) - Double(y)
            sum += d * d
        }
        return sum
    }

    static func centroid(_ array: [Float], _ index: Int) -> ArraySlice<Float> {
        array[(index * width)..<((index + 1) * width)]
    }

    static func queries() -> [[Float]] {
        var generator = SplitMix64(seed: 99)
        return (0..<20).map { _ in (0..<width).map { _ in Float.random(in: -2...2, using: &generator) } }
    }

    @Test("lists are grouped: offsets run from 0 to lists, each list is nearest its own group's centroid")
    func structure() {
        let q = Self.trained
        #expect(q.lists == 64 && q.groups == 8 && q.centroids.count == 64 * Self.width && q.groupCentroids.count == 8 * Self.width)
        #expect(q.groupOffsets.first == 0 && q.groupOffsets.last == 64)
        #expect(zip(q.groupOffsets, q.groupOffsets.dropFirst()).allSatisfy { $0 <= $1 })
        for g in 0..<q.groups {
            for list in q.groupOffsets[g]..<q.groupOffsets[g + 1] {
                let c = Array(Self.centroid(q.centroids, list))
                let distances: [Double] = (0..<q.groups).map { h in Self.squaredDistance(Self.centroid(q.groupCentroids, h), c) }
                #expect(distances[g] <= distances.min()! * (1 + 1e-5) + 1e-9, "list \(list) in group \(g)")
            }
        }
    }

    /// Best first by Double ⟨q, c⟩, ties by list id, over `lists`.
    static func bruteForce(_ q: CoarseQuantizer, _ query: [Float], nprobe: Int, lists: [Int]) -> [Int32] {
        let scores: [Double] = lists.map { dot(centroid(q.centroids, $0), query) }
        let order: [Int] = lists.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && lists[$0] < lists[$1]) }
        return order.prefix(nprobe).map { Int32(lists[$0]) }
    }

    @Test("probing all groups equals a flat brute-force top-nprobe", arguments: [1, 5, 16, 64, 100])
    func flatProbe(nprobe: Int) {
        let q = Self.trained
        for query in Self.queries() {
            let expected = Self.bruteForce(q, query, nprobe: nprobe, lists: Array(0..<q.lists))
            #expect(q.probe(query, nprobe: nprobe, groupProbe: nil) == expected)
            #expect(q.probe(query, nprobe: nprobe, groupProbe: q.groups) == expected)
        }
    }

    @Test("probing through p groups returns the best lists of the p groups of largest bound ⟨q, g⟩ + ‖q‖·radius")
    func groupProbe() {
        let q = Self.trained
        // radius of a group: max ‖c − g‖ over its lists, in Double.
        var radii = [Double](repeating: 0, count: q.groups)
        for g in 0..<q.groups {
            for list in q.groupOffsets[g]..<q.groupOffsets[g + 1] {
                radii[g] = max(radii[g], Self.squaredDistance(Self.centroid(q.centroids, list), Self.centroid(q.groupCentroids, g)).squareRoot())
            }
        }
        for query in Self.queries() {
            let norm = Self.dot(query[...], query).squareRoot()
            for p in [1, 3] {
                let bounds: [Double] = (0..<q.groups).map { Self.dot(Self.centroid(q.groupCentroids, $0), query) + norm * radii[$0] }
                let order: [Int] = (0..<q.groups).sorted { bounds[$0] > bounds[$1] || (bounds[$0] == bounds[$1] && $0 < $1) }
                let groups = Array(order.prefix(p))
                let reachable = groups.flatMap { Array(q.groupOffsets[$0]..<q.groupOffsets[$0 + 1]) }
                let expected = Self.bruteForce(q, query, nprobe: 6, lists: reachable)
                #expect(q.probe(query, nprobe: 6, groupProbe: p) == expected)
            }
        }
    }

    @Test("apportion: lists in proportion to group sizes, at least one per non-empty group, at most one per point")
    func apportion() {
        // Hand-computed: quotas 5, 3, 2, 0 are whole.
        #expect(CoarseQuantizer.apportion(lists: 10, among: [50, 30, 20, 0]) == [5, 3, 2, 0])
        // Quotas 0.07, 0.07, 6.86: the two small groups get their one list, the big one pays: 1, 1, 5.
        #expect(CoarseQuantizer.apportion(lists: 7, among: [1, 1, 98]) == [1, 1, 5])
        // Quotas 5.73, 1.27, 0: floors 5, 1 and the one left to the largest remainder: 6, 1, 0.
        #expect(CoarseQuantizer.apportion(lists: 7, among: [9, 2, 0]) == [6, 1, 0])
        var generator = SplitMix64(seed: 8)
        for _ in 0..<200 {
            let sizes = (0..<Int(1 + generator.next() % 12)).map { _ in Int(generator.next() % 40) }
            let total = sizes.reduce(0, +)
            guard total >= 1 else { continue }
            let nonEmpty = sizes.filter { $0 > 0 }.count
            let lists = nonEmpty + Int(generator.next() % UInt64(total - nonEmpty + 1))
            let shares = CoarseQuantizer.apportion(lists: lists, among: sizes)
            #expect(shares.reduce(0, +) == lists, "\(sizes) → \(shares)")
            for (size, share) in zip(sizes, shares) {
                #expect(size == 0 ? share == 0 : (1...size).contains(share), "\(sizes) → \(shares)")
                // Away from the forced minimum, a share stays within one list of its quota.
                if lists >= 2 * nonEmpty && size > 0 {
                    let quota = Double(lists) * Double(size) / Double(total)
                    #expect(abs(Double(share) - quota) < Double(nonEmpty), "\(sizes) → \(shares)")
                }
            }
        }
    }

    @Test("two-level training: lists numbered group by group, each list nearest its own group's centroid")
    func twoLevel() {
        let q = CoarseQuantizer.trainTwoLevel(points: Self.points(seed: 1), count: 1500, width: Self.width, lists: 64, groups: 8,
                                              iterations: 8, seed: 3)
        #expect(q.lists == 64 && q.groups == 8 && q.centroids.count == 64 * Self.width)
        #expect(q.groupOffsets.first == 0 && q.groupOffsets.last == 64)
        // A list's centroid is the mean of points in its group's Voronoi cell, which is convex,
        // so the centroid lies in the cell too (up to k-means' empty-list nudge of 1e-3).
        for g in 0..<q.groups {
            #expect(q.groupOffsets[g + 1] > q.groupOffsets[g], "group \(g) has no list")
            for list in q.groupOffsets[g]..<q.groupOffsets[g + 1] {
                let c = Array(Self.centroid(q.centroids, list))
                let distances: [Double] = (0..<q.groups).map { h in Self.squaredDistance(Self.centroid(q.groupCentroids, h), c) }
                #expect(distances[g] <= distances.min()! * (1 + 1e-2) + 1e-6, "list \(list) in group \(g)")
            }
        }
        // Quantization error comparable to flat training on the same points (within 25 %).
        let points = Self.points(seed: 1)
        func error(_ quantizer: CoarseQuantizer) -> Double {
            (0..<1500).reduce(0.0) { total, i in
                let row = Self.centroid(points, i)
                return total + (0..<quantizer.lists).map { Self.squaredDistance(Self.centroid(quantizer.centroids, $0), row) }.min()!
            }
        }
        let flat = error(Self.trained), twoLevel = error(q)
        #expect(twoLevel <= flat * 1.25, "squared error two-level \(twoLevel) vs flat \(flat)")
    }

    @Test("assign gives the Euclidean-nearest list")
    func assign() {
        let q = Self.trained
        let rows = Self.points(seed: 5)
        let count = 300
        var lists = [Int32](repeating: -1, count: count)
        rows.withUnsafeBufferPointer { q.assign($0.baseAddress!, count: count, into: &lists, threads: 2) }
        for i in 0..<count {
            let row = Array(Self.centroid(rows, i))
            let distances: [Double] = (0..<q.lists).map { list in Self.squaredDistance(Self.centroid(q.centroids, list), row) }
            #expect(distances[Int(lists[i])] <= distances.min()! * (1 + 1e-5) + 1e-6, "row \(i)")
        }
    }

    @Test("assign through p groups gives the nearest list of the p nearest groups")
    func assignThroughGroups() {
        let q = Self.trained
        let rows = Self.points(seed: 6)
        let count = 300
        func squaredDistance(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Double { Self.squaredDistance(a, b) }
        for p in [1, 2, 8] {
            var lists = [Int32](repeating: -1, count: count)
            rows.withUnsafeBufferPointer { q.assign($0.baseAddress!, count: count, into: &lists, threads: 2, groupProbe: p) }
            for i in 0..<count {
                let row = Self.centroid(rows, i)
                let toGroups: [Double] = (0..<q.groups).map { squaredDistance(Self.centroid(q.groupCentroids, $0), row) }
                let order: [Int] = (0..<q.groups).sorted { toGroups[$0] < toGroups[$1] || (toGroups[$0] == toGroups[$1] && $0 < $1) }
                let groups = Array(order.prefix(p))
                let reachable = groups.flatMap { Array(q.groupOffsets[$0]..<q.groupOffsets[$0 + 1]) }
                let distances = reachable.map { squaredDistance(Self.centroid(q.centroids, $0), row) }
                let chosen = squaredDistance(Self.centroid(q.centroids, Int(lists[i])), row)
                #expect(reachable.contains(Int(lists[i])), "row \(i), p \(p)")
                #expect(chosen <= distances.min()! * (1 + 1e-5) + 1e-6, "row \(i), p \(p)")
            }
        }
    }

    @Test("stored arrays: the trained ones load, inconsistent ones are rejected with a clear error")
    func storedArrays() throws {
        let q = Self.trained
        let loaded = try CoarseQuantizer(width: q.width, centroids: q.centroids, groupCentroids: q.groupCentroids, groupOffsets: q.groupOffsets)
        #expect(loaded.lists == q.lists && loaded.centroids == q.centroids && loaded.groupOffsets == q.groupOffsets)

        func rejects(_ expected: String, width: Int? = nil, centroids: [Float]? = nil, groupCentroids: [Float]? = nil, offsets: [Int]? = nil) {
            do {
                _ = try CoarseQuantizer(width: width ?? q.width, centroids: centroids ?? q.centroids,
                                        groupCentroids: groupCentroids ?? q.groupCentroids, groupOffsets: offsets ?? q.groupOffsets)
                Issue.record("accepted arrays that should fail with \(expected)")
            } catch let error as StoreError {
                #expect(error.code == .corrupt)
                #expect(error.message.contains(expected), "\(error.message)")
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        rejects("expected a width of at least 1", width: 0)
        rejects("list-centroid values", centroids: Array(q.centroids.dropLast()))
        rejects("group-centroid values", groupCentroids: [])
        rejects("expected 9 group offsets", offsets: Array(q.groupOffsets.dropLast()))
        rejects("expected group offsets from 0 to 64", offsets: [1] + q.groupOffsets.dropFirst())
        rejects("expected group offsets from 0 to 64", offsets: Array(q.groupOffsets.dropLast()) + [63])
        var decreasing = q.groupOffsets
        decreasing[2] = decreasing[3] + 1
        rejects("must not decrease", offsets: decreasing)
        var nan = q.centroids
        nan[5] = .nan
        rejects("non-finite", centroids: nan)
    }
}
