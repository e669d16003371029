/// The k best (score, position) pairs seen so far: a bounded binary min-heap whose root is
/// the worst kept entry. Ties are broken by position (lower first), so results do not
/// depend on thread count or block order.
public struct TopK: Sendable {
    public struct Entry: Sendable, Equatable {
        public var score: Float
        public var position: Int
    }

    public let capacity: Int
    private(set) var heap: [Entry] = []

    public init(capacity: Int) {
        self.capacity = capacity
        // The capacity can come from a user (-k); the heap grows as entries arrive, so a huge k
        // costs memory only for the entries there are.
        heap.reserveCapacity(min(capacity, 1 << 16))
    }

    /// `a` ranks below `b`.
    @inlinable @inline(__always)
    static func worse(_ a: Entry, _ b: Entry) -> Bool {
        a.score < b.score || (a.score == b.score && a.position > b.position)
    }

    /// The score an entry must beat to be kept (−∞ until full).
    public var threshold: Float { heap.count < capacity ? -.infinity : heap[0].score }

    public mutating func offer(_ score: Float, position: Int) {
        guard capacity > 0 else { return }
        let entry = Entry(score: score, position: position)
        if heap.count < capacity {
            heap.append(entry)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard Self.worse(heap[child], heap[parent]) else { break }
                heap.swapAt(child, parent)
                child = parent
            }
        } else if Self.worse(heap[0], entry) {
            heap[0] = entry
            var parent = 0
            while true {
                let left = 2 * parent + 1, right = left + 1
                var worst = parent
                if left < heap.count && Self.worse(heap[left], heap[worst]) { worst = left }
                if right < heap.count && Self.worse(heap[right], heap[worst]) { worst = right }
                if worst == parent { break }
                heap.swapAt(parent, worst)
                parent = worst
            }
        }
    }

    public mutating func merge(_ other: TopK) {
        for entry in other.heap { offer(entry.score, position: entry.position) }
    }

    /// Best first.
    public var sorted: [Entry] { heap.sorted { Self.worse($1, $0) } }
}
