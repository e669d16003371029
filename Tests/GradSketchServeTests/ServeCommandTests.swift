import Foundation
import GradSketchTestSupport
import Testing

/// `gradsketch serve` as a user runs it: the CLI execs the sibling `gradsketch-serve`.
@Suite("gradsketch serve: the command", .serialized)
struct ServeCommandTests {
    @Test("serve --help is gradsketch-serve's help, reached through the CLI")
    func helpComesFromTheServerBinary() throws {
        let result = try ChildProcess.tool("serve", "--help")
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("--follow"))
        #expect(result.standardOutput.contains("listening on http://HOST:PORT"))
    }

    @Test("without gradsketch-serve beside it, serve fails naming the path it expected")
    func missingServerBinaryIsNamed() throws {
        let directory = try TemporaryDirectory()
        let lonely = directory.path + "/gradsketch"
        try FileManager.default.copyItem(atPath: ChildProcess.gradsketch, toPath: lonely)
        let result = try ChildProcess.run(lonely, ["serve", directory.path])
        #expect(result.status == 1)
        #expect(result.standardError.contains("expected an executable at \(directory.path)/gradsketch-serve"), "\(result.standardError)")
    }

    @Test("serve on port 0 prints the listening line, answers, and exits 0 on SIGTERM")
    func servesAndStopsOnSIGTERM() async throws {
        let data = try ServedStore(rows: 20, k: 4, seed: 2)
        let outputPath = data.directory.path + "/serve.out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ChildProcess.gradsketch)
        process.arguments = ["serve", data.path, "--port", "0"]
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = ""
        let deadline = ContinuousClock.now + .seconds(60)
        while !line.hasSuffix("\n") && ContinuousClock.now < deadline && process.isRunning {
            try await Task.sleep(for: .milliseconds(50))
            line = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        }
        let pattern = #/^listening on http://127\.0\.0\.1:(\d+) \(store (.+), version 1\)\n$/#
        let match = try #require(line.wholeMatch(of: pattern), "\(line)")
        #expect(String(match.2) == data.path)
        let port = try #require(Int(match.1))
        let health = try await LoopbackClient.get(port, "/v1/health")
        #expect(health.status == 200)
        #expect(try health.object()["version"] as? Int == 1)
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
    }
}
