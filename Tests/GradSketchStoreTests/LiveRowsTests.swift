import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// `LiveRows` against a naive oracle: the live rows listed one by one, in segment order.
@Suite struct LiveRowsTests {
    /// Every live row's address, in live-position order, computed without bitmaps.
    static func naiveLiveAddresses(rows: [Int], deleted: [Set<Int>]) -> [RowAddress] {
        var addresses: [RowAddress] = []
        for (segment, count) in rows.enumerated() {
            for row in 0..<count where !deleted[segment].contains(row) {
                addresses.append(RowAddress(segment: segment, row: row))
            }
        }
        return addresses
    }

    /// Segment sizes around word boundaries (0, 1, 63, 64, 65, 130) and empty or fully
    /// deleted segments between live ones.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func rankAndSelectAgreeWithTheNaiveList(seed: UInt64) {
        var generator = SplitMix64(seed: seed)
        let rows = [0, 1, 63, 64, 65, 130, 7, 0, 200].shuffled(using: &generator)
        var deleted: [Set<Int>] = []
        for count in rows {
            let share = Double.random(in: 0...1, using: &generator)
            var chosen = Set<Int>()
            for row in 0..<count where Double.random(in: 0...1, using: &generator) < share { chosen.insert(row) }
            deleted.append(chosen)
        }
        deleted[rows.firstIndex(of: 7)!] = Set(0..<7)  // a segment with no live row left
        let live = LiveRows(segments: zip(rows, deleted).map { LiveRows.Segment(rows: $0, deleted: $1.shuffled(using: &generator)) })
        let oracle = Self.naiveLiveAddresses(rows: rows, deleted: deleted)

        #expect(live.liveCount == oracle.count)
        for (segment, count) in rows.enumerated() {
            #expect(live.segments[segment].liveCount == count - deleted[segment].count)
            for row in 0..<count {
                #expect(live.isLive(RowAddress(segment: segment, row: row)) == !deleted[segment].contains(row))
            }
            #expect(!live.isLive(RowAddress(segment: segment, row: count)))
        }
        for (position, address) in oracle.enumerated() {
            #expect(live.address(ofLivePosition: position) == address)
            #expect(live.livePosition(of: address) == position)
        }
        #expect(live.address(ofLivePosition: oracle.count) == nil)
        #expect(live.address(ofLivePosition: -1) == nil)
        for (segment, rowsDeleted) in deleted.enumerated() {
            for row in rowsDeleted { #expect(live.livePosition(of: RowAddress(segment: segment, row: row)) == nil) }
        }
        #expect(live.livePosition(of: RowAddress(segment: rows.count, row: 0)) == nil)
    }

    @Test func segmentRankCountsTheLiveRowsBefore() {
        let segment = LiveRows.Segment(rows: 70, deleted: [0, 3, 64, 69])
        // Hand-counted: rows 0 and 3 are gone before row 10; 0, 3 and 64 before 66.
        #expect(segment.rank(10) == 8)
        #expect(segment.rank(66) == 63)
        #expect(segment.rank(70) == 66)
        #expect(segment.select(0) == 1)
        #expect(segment.select(2) == 4)
        #expect(segment.select(65) == 68)
        #expect(segment.liveCount == 66)
    }
}
