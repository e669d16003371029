import GradSketchDistributed
import Testing

@Suite struct SingleProcessCollectiveTests {
    @Test func groupOfOneReturnsItsOwnValues() throws {
        let group = SingleProcessCollective()
        #expect(try group.allGather([1, 2, 3]) == [[1, 2, 3]])
        #expect(try group.allReduceSum([1.5, -2]) == [1.5, -2])
        #expect(try group.allSucceeded(false) == false)
        #expect(throws: (any Error).self) { try group.broadcast([1], root: 1) }
    }
}
