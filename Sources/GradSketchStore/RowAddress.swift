/// Where a row lives: its segment's position in the set's segment list, and its row within
/// that segment's file.
///
/// Addresses are how the engine names rows internally (indexes, results, search hits,
/// shard merges): a deletion never changes the address of another row, unlike a *live
/// position* (the row's rank among the live rows of a version), which is a view computed for
/// display and export. An address is stable for as long as the set's segment list keeps
/// its prefix, which appends do and only `compact` (a new version) does not.
public struct RowAddress: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The segment's index in the set's segment list.
    public var segment: Int
    /// The row's index in the segment file, deleted rows included.
    public var row: Int

    public init(segment: Int, row: Int) {
        self.segment = segment
        self.row = row
    }

    public static func < (lhs: RowAddress, rhs: RowAddress) -> Bool {
        (lhs.segment, lhs.row) < (rhs.segment, rhs.row)
    }

    public var description: String { "(\(segment), \(row))" }
}
