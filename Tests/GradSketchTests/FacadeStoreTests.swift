import GradSketch
import GradSketchTestSupport
import Testing

@Suite struct FacadeStoreTests {
    @Test func aCreatedStoreHasVersionZeroAndReopens() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/store"
        let created = try Store.create(at: path)
        #expect(try created.versions() == [0])
        let reopened = try Store(opening: path)
        #expect(try reopened.latestVersion() == 0)
        #expect(reopened.path == created.path)
    }
}
