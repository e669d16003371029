import Foundation
import GradSketchInterchange
public import GradSketchInterchange

/// A fresh directory under the system's temporary directory, removed with everything in it
/// when the value is released.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("gradsketch-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The seeded generator tests draw random rows, positions and delays from (SplitMix64), so
/// every run draws the same ones.
public typealias SplitMix64 = SeededRandom
