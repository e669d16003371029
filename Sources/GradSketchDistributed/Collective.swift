public import GradSketchStore

/// The collective operations distributed work needs, over any transport: MPI in
/// `GradSketchMPI` (the `gradsketch-mpi` tool), one process in ``SingleProcessCollective``,
/// threads standing in for ranks in the tests. Every rank of a group calls the same
/// operations in the same order (MPI's rule); a rank that fails mid-operation must still call
/// the remaining collectives with an error status (see ``allSucceeded(_:)``) rather than
/// leave the others waiting.
public protocol Collective: Sendable {
    /// This process's rank, 0 ..< size.
    var rank: Int { get }
    /// Number of ranks in the group.
    var size: Int { get }
    /// The host this rank runs on (MPI_Get_processor_name), used to place shards.
    var host: String { get }
    func barrier() throws
    /// Every rank's bytes, in rank order, on every rank (lengths may differ).
    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// `root`'s bytes on every rank (`bytes` is ignored on the others).
    func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8]
    /// Element-wise sums across ranks, on every rank (equal lengths on every rank).
    func allReduceSum(_ values: [Double]) throws -> [Double]
    func allReduceSum(_ values: [Int64]) throws -> [Int64]
}

extension Collective {
    /// True on every rank when every rank passed `succeeded`: the all-or-none vote before a
    /// collective commit or after a phase any rank may fail.
    public func allSucceeded(_ succeeded: Bool) throws -> Bool {
        try allReduceSum([succeeded ? 0 : 1] as [Int64])[0] == 0
    }
}

/// A group of one: what a distributed command runs on without a launcher.
public struct SingleProcessCollective: Collective {
    public let host: String
    public init(host: String = "localhost") { self.host = host }
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func barrier() throws {}
    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        guard root == 0 else { throw StoreError(.invalidInput, "broadcast root must be 0 in a group of one, found \(root)") }
        return bytes
    }
    public func allReduceSum(_ values: [Double]) throws -> [Double] { values }
    public func allReduceSum(_ values: [Int64]) throws -> [Int64] { values }
}
