/// A row a distributed selection picked (``DistributedGreedy``, ``DistributedDensity``): which
/// shard, where in it, its id and the method's score for it.
public struct ShardRowPick: Sendable, Codable, Equatable {
    /// The shard's name in the layout.
    public let shard: String
    /// The shard's position in the layout.
    public let shardIndex: Int
    public let segment: Int
    public let row: Int
    public let id: String
    /// The method's score: the greedy objective after the pick, or the density estimate.
    public let score: Double

    public init(shard: String, shardIndex: Int, segment: Int, row: Int, id: String, score: Double) {
        self.shard = shard
        self.shardIndex = shardIndex
        self.segment = segment
        self.row = row
        self.id = id
        self.score = score
    }
}
