public import Foundation

/// What a finished child process reported.
public struct ChildProcessResult: Sendable {
    public let status: Int32
    public let standardOutput: String
    public let standardError: String
    /// True when the process was ended by a signal (e.g. the crash test's SIGKILL).
    public let wasSignalled: Bool
}

/// Runs programs for tests: the `gradsketch` tool built next to the test bundle, and
/// python3 scripts that act as independent oracles.
public enum ChildProcess {
    /// The directory that holds the built products (`.build/debug`), found from the running
    /// test binary, so tests use the `gradsketch` built with them.
    public static var productsDirectory: String {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        // The test bundle may be a directory (`*.xctest/...`) on some toolchains.
        while directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent() }
        return directory.path
    }

    public static var gradsketch: String { productsDirectory + "/gradsketch" }

    /// Starts `executable` with `arguments` and waits for it; output is collected in full.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ChildProcessResult {
        let process = try start(executable, arguments, environment: environment)
        return process.wait()
    }

    /// Runs the `gradsketch` tool.
    @discardableResult
    public static func tool(_ arguments: String...) throws -> ChildProcessResult {
        try run(gradsketch, arguments)
    }

    @discardableResult
    public static func tool(arguments: [String]) throws -> ChildProcessResult {
        try run(gradsketch, arguments)
    }

    /// Runs a python3 script (source text) with arguments.
    @discardableResult
    public static func python(_ script: String, _ arguments: [String] = []) throws -> ChildProcessResult {
        try run("/usr/bin/env", ["python3", "-c", script] + arguments)
    }

    /// Runs `body` as python3 with the Spec's reference imported as `ref`, numpy as `np`,
    /// `json` and `sys`, and `work` (the test's scratch directory) and `store` (`work/store`)
    /// defined: the independent oracle the interop tests read and write stores with.
    @discardableResult
    public static func reference(_ body: String, work: String) throws -> ChildProcessResult {
        let script = """
        import json, sys
        import numpy as np
        sys.path.insert(0, sys.argv[1])
        import gradsketch_ref as ref
        work = sys.argv[2]
        store = f"{work}/store"

        """ + body
        return try python(script, [Repository.root + "/Spec/reference", work])
    }

    /// Starts a process without waiting, for tests that kill it or run several at once.
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> RunningProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let output = Pipe(), error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        let collected = RunningProcess(process: process, output: output, error: error)
        try process.run()
        collected.startReading()
        return collected
    }
}

/// A child process whose output is drained concurrently so it never blocks on a full pipe.
public final class RunningProcess: @unchecked Sendable {
    public let process: Process
    private let output: Pipe
    private let error: Pipe
    private let group = DispatchGroup()
    private var outputData = Data()
    private var errorData = Data()

    init(process: Process, output: Pipe, error: Pipe) {
        self.process = process
        self.output = output
        self.error = error
    }

    func startReading() {
        group.enter()
        DispatchQueue.global().async {
            self.outputData = self.output.fileHandleForReading.readDataToEndOfFile()
            self.group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            self.errorData = self.error.fileHandleForReading.readDataToEndOfFile()
            self.group.leave()
        }
    }

    public var processIdentifier: Int32 { process.processIdentifier }

    /// Sends SIGKILL: the process gets no chance to clean up, like a power cut.
    public func killHard() { kill(process.processIdentifier, SIGKILL) }

    public func wait() -> ChildProcessResult {
        process.waitUntilExit()
        group.wait()
        return ChildProcessResult(
            status: process.terminationStatus,
            standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData, as: UTF8.self),
            wasSignalled: process.terminationReason == .uncaughtSignal)
    }
}
