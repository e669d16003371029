import Foundation
import GradSketchInterchange
import GradSketchTestSupport
import Testing

/// `PathText.parent` against coreutils' `dirname`, the independent oracle (its "." for a name
/// with no directory part is our "").
@Suite struct PathTextTests {
    @Test(arguments: ["s", "ab", "a/b", "/s", "s/", "a//b", "a/b/", "/", "//x", "dir/sub/store", "./s", "é/ü"])
    func parentMatchesDirname(_ path: String) throws {
        let dirname = try ChildProcess.run("/usr/bin/dirname", ["--", path])
        #expect(dirname.status == 0)
        var expected = dirname.standardOutput.trimmingCharacters(in: .newlines)
        if expected == ".", !path.hasPrefix(".") { expected = "" }
        #expect(PathText.parent(of: path) == expected, "parent of \(path)")
    }

    /// A one-character store name crashed `gradsketch init` (Foundation's
    /// deletingLastPathComponent traps on it).
    @Test func initAcceptsAOneCharacterRelativePath() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pathtext-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try ChildProcess.run("/bin/sh", ["-c", "cd '\(directory)' && '\(ChildProcess.gradsketch)' init s --json"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(FileManager.default.fileExists(atPath: directory + "/s/versions"))
    }
}
