import Dispatch
import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Synchronization
import Testing

/// Writers of one host taking turns at building and linking a manifest (Spec §7.2 "Taking
/// turns"), and many writers racing on one store all landing.
@Suite struct CommitTurnTests {
    /// A second writer's turn starts only once the first writer's ends; without a directory
    /// there is no turn, and the writer goes ahead.
    @Test func aTurnWaitsForTheHolderAndIsSkippedWithoutADirectory() throws {
        let scratch = try TemporaryDirectory()
        // (#expect cannot look into a noncopyable value: its answers are read out first.)
        let missingHeld = CommitTurn(versionsDirectory: scratch.path + "/missing").isHeld
        #expect(!missingHeld)

        let first = CommitTurn(versionsDirectory: scratch.path)
        let firstHeld = first.isHeld
        try #require(firstHeld)
        let secondStarted = Mutex<Date?>(nil)
        let secondHeld = Mutex(false)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            // Its own open(2) of the directory, as another writer process would have.
            let second = CommitTurn(versionsDirectory: scratch.path)
            secondStarted.withLock { $0 = Date() }
            secondHeld.withLock { $0 = second.isHeld }
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(secondStarted.withLock { $0 } == nil, "the second turn began while the first was held")
        let released = Date()
        _ = consume first
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(secondHeld.withLock { $0 })
        let started = try #require(secondStarted.withLock { $0 })
        #expect(started >= released)
    }

    /// 16 threads append 3 rows each to one set at once: 16 new versions, each on its
    /// predecessor, every row once (read back through the manifest, not through counters).
    @Test func racingAppendsAllLand() throws {
        let scratch = try TemporaryDirectory()
        let path = scratch.path + "/store"
        _ = try Store.create(at: path)
        let writers = 16, rows = 3, k = 2
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: writers) { writer in
            do {
                let values = (0 ..< rows * k).map { Float(writer * 100 + $0) }
                try values.withUnsafeBytes { bytes in
                    _ = try Store(opening: path).append(
                        to: "s", rows: try RowInput(bytes: bytes, elementType: .float32, rowCount: rows, k: k),
                        annotations: RowAnnotations(ids: (0 ..< rows).map { "w\(writer)-\($0)" }))
                }
            } catch {
                failures.withLock { $0.append("writer \(writer): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        let store = try Store(opening: path)
        #expect(try store.versions() == Array(0 ... writers))
        for version in 1 ... writers {
            #expect(try store.manifest(at: version).parent == version - 1)
        }
        let expected = Set((0 ..< writers).flatMap { w in (0 ..< rows).map { "w\(w)-\($0)" } })
        let ids = try store.sketchSet("s").ids()
        #expect(ids.count == writers * rows && Set(ids) == expected)
    }
}
