import Foundation
public import GradSketchStore

/// A group of ranks that are threads of one process: what the tests run every distributed
/// algorithm on, with 1 … N ranks and any host names, without MPI.
///
/// Every operation is one exchange: each rank deposits its bytes, the last to arrive
/// publishes all of them, and every rank reads the published set. Sums are taken in rank
/// order, so every rank gets the same bits.
public final class ThreadCollective: Collective, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    public let host: String
    private let group: Exchange

    private init(rank: Int, host: String, group: Exchange) {
        self.rank = rank
        self.size = group.size
        self.host = host
        self.group = group
    }

    /// Runs `body` on `hosts.count` threads, rank r with host `hosts[r]`, and returns each
    /// rank's result in rank order (a rank's error is its result; it must still have taken
    /// part in every collective the others called, as under MPI).
    public static func run<T: Sendable>(hosts: [String], _ body: @escaping @Sendable (ThreadCollective) throws -> T) -> [Result<T, any Error>] {
        precondition(!hosts.isEmpty, "a group needs at least one rank")
        let group = Exchange(size: hosts.count)
        let results = ResultSlots<T>(count: hosts.count)
        let done = DispatchGroup()
        for (rank, host) in hosts.enumerated() {
            done.enter()
            // A thread per rank (not a dispatch pool, which may run fewer threads than ranks
            // and then wait forever in the first exchange).
            let thread = Thread {
                let member = ThreadCollective(rank: rank, host: host, group: group)
                results.set(rank, attempt { try body(member) })
                done.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        return results.values
    }

    /// `size` ranks all on host "localhost".
    public static func run<T: Sendable>(size: Int, _ body: @escaping @Sendable (ThreadCollective) throws -> T) -> [Result<T, any Error>] {
        run(hosts: Array(repeating: "localhost", count: size), body)
    }

    public func barrier() throws { _ = group.exchange(rank: rank, []) }

    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { group.exchange(rank: rank, bytes) }

    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        guard root >= 0 && root < size else {
            throw StoreError(.invalidInput, "broadcast root must be in 0..<\(size), found \(root)")
        }
        return group.exchange(rank: rank, rank == root ? bytes : [])[root]
    }

    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        let all = group.exchange(rank: rank, values.withUnsafeBytes { Array($0) }).map { bytes in
            bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        }
        return try Self.sum(all, count: values.count, zero: 0.0, +)
    }

    public func allReduceSum(_ values: [Int64]) throws -> [Int64] {
        let all = group.exchange(rank: rank, values.withUnsafeBytes { Array($0) }).map { bytes in
            bytes.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        }
        return try Self.sum(all, count: values.count, zero: 0, &+)
    }

    private static func sum<V>(_ all: [[V]], count: Int, zero: V, _ add: (V, V) -> V) throws -> [V] {
        guard all.allSatisfy({ $0.count == count }) else {
            throw StoreError(.invalidInput, "allReduceSum needs equal lengths on every rank, found \(all.map(\.count))")
        }
        var total = [V](repeating: zero, count: count)
        for values in all { for i in 0..<count { total[i] = add(total[i], values[i]) } }
        return total
    }
}

/// The meeting point of a thread group: one round of deposits at a time.
private final class Exchange: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var deposits: [[UInt8]?]
    private var arrived = 0
    private var round = 0
    /// The last completed round's deposits; replaced only when every rank has deposited for
    /// the next round, so after it has read this one.
    private var published: [[UInt8]] = []

    init(size: Int) {
        self.size = size
        deposits = Array(repeating: nil, count: size)
    }

    func exchange(rank: Int, _ bytes: [UInt8]) -> [[UInt8]] {
        condition.lock()
        defer { condition.unlock() }
        let myRound = round
        deposits[rank] = bytes
        arrived += 1
        if arrived == size {
            published = deposits.map { $0! }
            deposits = Array(repeating: nil, count: size)
            arrived = 0
            round += 1
            condition.broadcast()
        } else {
            while round == myRound { condition.wait() }
        }
        return published
    }
}

private final class ResultSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<T, any Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Result<T, any Error>) { lock.lock(); slots[index] = value; lock.unlock() }
    var values: [Result<T, any Error>] { lock.lock(); defer { lock.unlock() }; return slots.map { $0! } }
}
