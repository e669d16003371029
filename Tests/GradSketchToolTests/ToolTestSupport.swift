import Foundation
import GradSketchStore
import GradSketchTestSupport
import Testing

/// A store made by the tool in a scratch directory, with helpers to write inputs.
final class ToolFixture {
    let scratch: TemporaryDirectory
    let store: String

    init() throws {
        scratch = try TemporaryDirectory()
        store = scratch.path + "/store"
        try expectSuccess(ChildProcess.tool("init", store))
    }

    func path(_ name: String) -> String { scratch.path + "/" + name }

    /// numpy writes `rows` [n, k] float32 of a seeded normal distribution to FILE.npy, with
    /// `code` run before saving (to plant NaNs and such).
    @discardableResult
    func makeRows(_ name: String, rows: Int, k: Int, seed: Int = 1, dtype: String = "float32", code: String = "") throws -> String {
        let file = path(name)
        let script = """
        import sys, numpy as np
        x = np.random.default_rng(\(seed)).standard_normal((\(rows), \(k))).astype("\(dtype)")
        \(code)
        np.save(sys.argv[1], x)
        """
        try expectSuccess(ChildProcess.python(script, [file]))
        return file
    }

    @discardableResult
    func writeLines(_ name: String, _ lines: [String]) throws -> String {
        let file = path(name)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    func latestVersion() throws -> Int { try Store(opening: store).latestVersion() }
}

@discardableResult
func expectSuccess(_ result: ChildProcessResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> ChildProcessResult {
    try #require(result.status == 0, "exit \(result.status): \(result.standardError)", sourceLocation: sourceLocation)
    return result
}

/// Runs the tool expecting failure with one clear message containing `expected`.
@discardableResult
func expectFailure(_ arguments: [String], saying expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> ChildProcessResult {
    let result = try ChildProcess.tool(arguments: arguments)
    #expect(result.status != 0, "expected failure, got success: \(result.standardOutput)", sourceLocation: sourceLocation)
    #expect(result.standardError.contains(expected), "stderr lacks \"\(expected)\": \(result.standardError)", sourceLocation: sourceLocation)
    #expect(!result.standardError.contains("HDF5-DIAG"), "HDF5 printed its own diagnostics", sourceLocation: sourceLocation)
    return result
}

/// A decoder for the tool's --json output, whose keys are snake_case, into Swift's camelCase
/// properties (the library's report types, e.g. `VacuumReport`).
func toolJSONDecoder() -> JSONDecoder {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return decoder
}
