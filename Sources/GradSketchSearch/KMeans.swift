import COpenBLAS
import GradSketchInterchange

/// Plain (L2) k-means, with assignment by GEMM: ‖x − c‖² = ‖x‖² − 2⟨x, c⟩ + ‖c‖², and ‖x‖²
/// does not change which centroid is nearest. L2 partitions keep large-norm rows together,
/// which is what makes lists probed by ⟨q, c⟩ right for raw inner product (ann.md §1.2).
enum KMeans {
    /// Points assigned per GEMM call.
    static let blockPoints = 4096

    /// `lists` centroids of `count` points of width `width` (row-major float32).
    static func train(points: [Float], count: Int, width: Int, lists: Int, iterations: Int, seed: UInt64) -> [Float] {
        precondition(count >= lists && lists >= 1)
        var random = SeededRandom(seed: seed)
        // Initial centroids: distinct random points.
        var chosen = Set<Int>()
        var order: [Int] = []
        while order.count < lists {
            let candidate = Int(random.next() % UInt64(count))
            if chosen.insert(candidate).inserted { order.append(candidate) }
        }
        var centroids = [Float](repeating: 0, count: lists * width)
        for (list, point) in order.enumerated() {
            for j in 0..<width { centroids[list * width + j] = points[point * width + j] }
        }
        var assignment = [Int32](repeating: 0, count: count)
        for _ in 0..<iterations {
            assign(points: points, count: count, width: width, centroids: centroids, lists: lists, into: &assignment)
            var sums = [Double](repeating: 0, count: lists * width)
            var sizes = [Int](repeating: 0, count: lists)
            for point in 0..<count {
                let list = Int(assignment[point])
                sizes[list] += 1
                for j in 0..<width { sums[list * width + j] += Double(points[point * width + j]) }
            }
            for list in 0..<lists where sizes[list] > 0 {
                for j in 0..<width { centroids[list * width + j] = Float(sums[list * width + j] / Double(sizes[list])) }
            }
            // An empty list takes a point from the largest list, nudged so the two separate.
            for list in 0..<lists where sizes[list] == 0 {
                let largest = sizes.indices.max { sizes[$0] < sizes[$1] }!
                let members = (0..<count).filter { Int(assignment[$0]) == largest }
                let donor = members[Int(random.next() % UInt64(members.count))]
                for j in 0..<width {
                    let value = points[donor * width + j]
                    centroids[list * width + j] = value * (1 + 1e-3)
                    centroids[largest * width + j] = centroids[largest * width + j] * (1 - 1e-3)
                }
                assignment[donor] = Int32(list)
                sizes[list] = 1
                sizes[largest] -= 1
            }
        }
        return centroids
    }

    /// Index of the nearest centroid (L2) of each point.
    static func assign(points: UnsafePointer<Float>, count: Int, width: Int, centroids: [Float], lists: Int,
                       into assignment: UnsafeMutablePointer<Int32>) {
        var halfNorms = [Float](repeating: 0, count: lists)
        for list in 0..<lists {
            var sum: Float = 0
            for j in 0..<width { sum += centroids[list * width + j] * centroids[list * width + j] }
            halfNorms[list] = sum / 2
        }
        var scores = [Float](repeating: 0, count: min(count, blockPoints) * lists)
        var start = 0
        while start < count {
            let n = min(blockPoints, count - start)
            // scores (n × lists) = points (n × width) · centroidsᵀ
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(lists), Int32(width),
                        1, points + start * width, Int32(width), centroids, Int32(width), 0, &scores, Int32(lists))
            scores.withUnsafeBufferPointer { s in
              halfNorms.withUnsafeBufferPointer { halfNorms in
                for i in 0..<n {
                    // nearest = argmax ⟨x, c⟩ − ‖c‖²/2
                    var best = 0
                    var bestValue = -Float.infinity
                    let row = i * lists
                    for list in 0..<lists {
                        let value = s[row + list] - halfNorms[list]
                        if value > bestValue { bestValue = value; best = list }
                    }
                    assignment[start + i] = Int32(best)
                }
              }
            }
            start += n
        }
    }

    static func assign(points: [Float], count: Int, width: Int, centroids: [Float], lists: Int, into assignment: inout [Int32]) {
        points.withUnsafeBufferPointer { p in
            assignment.withUnsafeMutableBufferPointer { a in
                assign(points: p.baseAddress!, count: count, width: width, centroids: centroids, lists: lists, into: a.baseAddress!)
            }
        }
    }
}
