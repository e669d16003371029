public import GradSketchStore

/// Which ranks serve which rows (Spec/distributed.md §3.1–3.2): every rank of the group
/// agrees on it without a coordinator, from the ranks' hosts and each shard's version.
public struct WorkAssignment: Sendable {
    /// What the lowest serving rank of a shard reports: the version and its segments' live rows.
    struct Fixed: Codable { let shard: Int, version: Int, segmentRows: [Int] }

    /// One contiguous run of one shard's segments that this rank answers for.
    public struct Range: Sendable {
        public let shard: Int
        public let set: SketchSet
        public let segments: Swift.Range<Int>
    }

    /// Each rank's host, in rank order.
    public let hosts: [String]
    /// The ranks serving each shard, ascending.
    public let servers: [[Int]]
    /// The version of each shard every rank reads.
    public let versions: [Int]
    /// Live rows of the set in each shard at that version.
    public let shardRows: [Int]
    /// This rank's ranges, by shard then segment (the merge order).
    public let local: [Range]

    /// Live rows in this rank's ranges.
    public var localRows: Int {
        local.reduce(0) { total, range in
            total + range.set.segments[range.segments].reduce(0) { $0 + $1.entry.rows - $1.deletedCount }
        }
    }

    /// The ranks serving a shard: those on its host, or all of them when it has none.
    public static func servers(of shard: ShardLayout.Shard, hosts: [String]) -> [Int] {
        guard let host = shard.host else { return Array(hosts.indices) }
        return hosts.indices.filter { hosts[$0] == host }
    }

    /// Splits `rows` (live rows per segment) into `parts` contiguous segment ranges of about
    /// equal rows: part j ends at the first segment where the running total reaches
    /// ⌈(j + 1)·total / parts⌉. Depends only on the rows, so every rank computes the same.
    public static func split(rows: [Int], parts: Int) -> [Swift.Range<Int>] {
        precondition(parts >= 1)
        let total = rows.reduce(0, +)
        var ranges: [Swift.Range<Int>] = []
        var start = 0, running = 0
        for part in 0..<parts {
            let goal = ((part + 1) * total + parts - 1) / parts
            var end = start
            if part == parts - 1 {
                end = rows.count
            } else {
                while end < rows.count && running < goal { running += rows[end]; end += 1 }
            }
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }

    /// Agrees on the assignment for set `set` of `layout` across `collective`: gathers the
    /// ranks' hosts, lets the lowest serving rank of each shard fix its version (`versions`
    /// when given, one per shard, else the latest) and report its segments, splits each
    /// shard's segments among its serving ranks and opens this rank's share. Collective; every
    /// rank throws the same error when a shard has no serving rank or any rank failed.
    public static func agree(on layout: ShardLayout, set: String, versions requested: [Int]? = nil,
                             collective: some Collective) throws -> WorkAssignment {
        guard !layout.shards.isEmpty else { throw AgreedError(StoreError(.invalidInput, "the store has no shards")) }
        if let requested, requested.count != layout.shards.count {
            throw AgreedError(StoreError(.invalidInput, "--at needs one version per shard: expected \(layout.shards.count), found \(requested.count)"))
        }
        let hosts = try collective.allGather(value: collective.host)
        let servers = layout.shards.map { Self.servers(of: $0, hosts: hosts) }
        if let orphan = servers.firstIndex(where: \.isEmpty) {
            let shard = layout.shards[orphan]
            throw AgreedError(StoreError(.notFound, "shard \(shard.name) lives on host \(shard.host ?? "any"), where no rank runs (ranks' hosts: \(Array(Set(hosts)).sorted().joined(separator: ", "))): launch a rank there", path: shard.path))
        }
        // The lowest serving rank of each shard fixes its version and reports its segments.
        var opened: [Int: SketchSet] = [:]
        let mine = attempt { () throws -> [Fixed] in
            try layout.shards.indices.filter { servers[$0][0] == collective.rank }.map { index in
                let store = try layout.openStore(index)
                let sketches = try store.sketchSet(set, at: requested?[index])
                opened[index] = sketches
                return Fixed(shard: index, version: sketches.version,
                             segmentRows: sketches.segments.map { $0.entry.rows - $0.deletedCount })
            }
        }
        if case .failure(let error) = mine { try collective.throwIfAnyFailed(error) } else { try collective.throwIfAnyFailed(nil) }
        var fixed = [Fixed?](repeating: nil, count: layout.shards.count)
        for list in try collective.allGather(value: (try? mine.get()) ?? []) { for entry in list { fixed[entry.shard] = entry } }
        let agreed = fixed.map { $0! }
        // This rank's share, opened at the agreed versions.
        let local = attempt { () throws -> [Range] in
            var ranges: [Range] = []
            for index in layout.shards.indices {
                guard let slot = servers[index].firstIndex(of: collective.rank) else { continue }
                let segments = split(rows: agreed[index].segmentRows, parts: servers[index].count)[slot]
                guard !segments.isEmpty else { continue }
                let sketches = try opened[index] ?? layout.openStore(index).sketchSet(set, at: agreed[index].version)
                guard sketches.segments.count == agreed[index].segmentRows.count else {
                    throw StoreError(.conflict, "shard \(layout.shards[index].name) version \(agreed[index].version) has \(sketches.segments.count) segments here, \(agreed[index].segmentRows.count) on rank \(servers[index][0])", path: layout.shards[index].path)
                }
                ranges.append(Range(shard: index, set: sketches, segments: segments))
            }
            return ranges
        }
        switch local {
        case .failure(let error): try collective.throwIfAnyFailed(error); throw error
        case .success(let ranges):
            try collective.throwIfAnyFailed(nil)
            return WorkAssignment(hosts: hosts, servers: servers, versions: agreed.map(\.version),
                                  shardRows: agreed.map { $0.segmentRows.reduce(0, +) }, local: ranges)
        }
    }
}
