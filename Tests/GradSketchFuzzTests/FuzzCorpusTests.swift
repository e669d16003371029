import Foundation
import GradSketchFuzzTargets
import Testing

/// Every checked-in fuzz input (Tests/Fuzz/corpus/<target>/) through the fuzz targets'
/// own code, in process: the regressions keep running in `swift test` without libFuzzer.
///
/// A file's name says what must become of it: `refuse-*` must be refused with an error,
/// `accept-*` (and the seeds, `seed-*`) must be accepted. No file may break a target's checks.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus").path

    static func files(_ target: FuzzTarget) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: corpus + "/" + target.rawValue).sorted()
    }

    @Test(arguments: FuzzTarget.allCases)
    func everyCheckedInInputHasItsOutcome(_ target: FuzzTarget) throws {
        let names = try Self.files(target)
        #expect(names.contains { $0.hasPrefix("refuse-") }, "no regression inputs for \(target)")
        #expect(names.contains { $0.hasPrefix("seed-") }, "no seeds for \(target)")
        for name in names {
            let data = try Data(contentsOf: URL(fileURLWithPath: Self.corpus + "/\(target.rawValue)/\(name)"))
            let outcome = data.withUnsafeBytes { target.run($0) }
            switch outcome {
            case .violated(let reason):
                Issue.record("\(target)/\(name) broke a check: \(reason)")
            case .refused(let reason):
                #expect(name.hasPrefix("refuse-"), "\(target)/\(name) was refused: \(reason)")
                #expect(!reason.isEmpty)
            case .accepted:
                #expect(!name.hasPrefix("refuse-"), "\(target)/\(name) was accepted; it must be refused")
            }
        }
    }
}
