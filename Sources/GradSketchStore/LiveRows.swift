/// Which rows of a sketch set are live in one version: one bitmap per segment, built from the
/// segment's deletion list (Spec §5.4), with rank and select between a row's address and its
/// live position.
///
/// A live position is the row's rank among the live rows of the version, segments in list
/// order; it is what display and export show, and it shifts when an earlier row is deleted.
/// A ``RowAddress`` does not, so the engine names rows by address and converts with
/// ``livePosition(of:)`` and ``address(ofLivePosition:)`` only at the edges.
public struct LiveRows: Sendable, Equatable {
    /// The live rows of one segment file.
    public struct Segment: Sendable, Equatable {
        /// Rows in the segment file, deleted ones included.
        public let rows: Int
        /// Bit `r % 64` of word `r / 64` is set when row `r` is live.
        private var words: [UInt64]
        /// Live rows in the words before each word: `rank` is one lookup plus one popcount.
        private var liveBeforeWord: [Int]
        /// Rows of this segment still live.
        public let liveCount: Int

        /// The bitmap of a segment of `rows` rows with the rows in `deleted` removed.
        ///
        /// - Precondition: every deleted row lies in `0..<rows` (deletion lists are checked
        ///   when read, Spec §5.4); repeats are counted once.
        public init(rows: Int, deleted: some Sequence<Int>) {
            precondition(rows >= 0, "a segment has a non-negative row count")
            self.rows = rows
            let wordCount = (rows + 63) / 64
            var words = [UInt64](repeating: ~0, count: wordCount)
            if rows % 64 != 0, wordCount > 0 { words[wordCount - 1] = (1 << UInt64(rows % 64)) - 1 }
            for row in deleted {
                precondition(row >= 0 && row < rows, "deleted row \(row) is outside the segment's \(rows) rows")
                words[row / 64] &= ~(1 << UInt64(row % 64))
            }
            var before = [Int](repeating: 0, count: wordCount)
            var running = 0
            for index in 0..<wordCount {
                before[index] = running
                running += words[index].nonzeroBitCount
            }
            self.words = words
            self.liveBeforeWord = before
            self.liveCount = running
        }

        /// Whether row `row` (an index in the segment file) is live; false outside the file.
        public func isLive(_ row: Int) -> Bool {
            guard row >= 0, row < rows else { return false }
            return words[row / 64] & (1 << UInt64(row % 64)) != 0
        }

        /// Live rows before row `row` of the file (the row itself not counted).
        public func rank(_ row: Int) -> Int {
            precondition(row >= 0 && row <= rows, "row \(row) is outside 0...\(rows)")
            if row == rows { return liveCount }
            let word = row / 64
            let below = words[word] & ((1 << UInt64(row % 64)) - 1)
            return liveBeforeWord[word] + below.nonzeroBitCount
        }

        /// The file row of the `index`-th live row of this segment.
        public func select(_ index: Int) -> Int {
            precondition(index >= 0 && index < liveCount, "live index \(index) is outside 0..<\(liveCount)")
            // The last word whose preceding live count is at most `index` holds the row.
            var low = 0, high = words.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if liveBeforeWord[middle] <= index { low = middle } else { high = middle - 1 }
            }
            var word = words[low]
            for _ in 0..<(index - liveBeforeWord[low]) { word &= word - 1 }  // clear the lower set bits
            return low * 64 + word.trailingZeroBitCount
        }
    }

    /// One entry per segment of the set, in segment-list order.
    public let segments: [Segment]
    /// Live rows before each segment.
    private let liveBeforeSegment: [Int]
    /// Live rows of the whole set.
    public let liveCount: Int

    public init(segments: [Segment]) {
        self.segments = segments
        var before: [Int] = []
        before.reserveCapacity(segments.count)
        var running = 0
        for segment in segments {
            before.append(running)
            running += segment.liveCount
        }
        liveBeforeSegment = before
        liveCount = running
    }

    /// Whether the row at `address` exists and is live.
    public func isLive(_ address: RowAddress) -> Bool {
        guard address.segment >= 0, address.segment < segments.count else { return false }
        return segments[address.segment].isLive(address.row)
    }

    /// The live position of the row at `address`, or nil when it is deleted or does not exist.
    public func livePosition(of address: RowAddress) -> Int? {
        guard isLive(address) else { return nil }
        return liveBeforeSegment[address.segment] + segments[address.segment].rank(address.row)
    }

    /// The address of the row at live position `position`, or nil outside `0..<liveCount`.
    public func address(ofLivePosition position: Int) -> RowAddress? {
        guard position >= 0, position < liveCount else { return nil }
        var low = 0, high = segments.count - 1
        while low < high {  // the last segment starting at or before `position` with live rows
            let middle = (low + high + 1) / 2
            if liveBeforeSegment[middle] <= position { low = middle } else { high = middle - 1 }
        }
        while segments[low].liveCount == 0 || liveBeforeSegment[low] + segments[low].liveCount <= position { low += 1 }
        return RowAddress(segment: low, row: segments[low].select(position - liveBeforeSegment[low]))
    }
}

extension Store {
    /// The live rows of `set` (one bitmap per segment, from its verified deletion list).
    func liveRows(of set: Manifest.SketchSetEntry) throws -> LiveRows {
        try LiveRows(segments: set.segments.map { segment in
            let deleted = try segment.deletions.map { try SegmentFiles.readDeletions(storePath: path, entry: $0, segment: segment) } ?? []
            return LiveRows.Segment(rows: segment.rows, deleted: deleted)
        })
    }
}
