import ArgumentParser
import Foundation
import GradSketch
import GradSketchSearch
import GradSketchServe
import Logging

/// `gradsketch serve` (the CLI execs this binary with its own arguments): an HTTP endpoint
/// answering top-k queries and selections over one snapshot of a store (Spec/serve.md).
@main
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradsketch serve",
        abstract: "Answer top-k queries and selections over a snapshot of a store as JSON over HTTP.",
        discussion: """
        Opens one snapshot and keeps it open, then prints one line on stdout, \
        "listening on http://HOST:PORT (store S, version N)", so scripts can read the port (with --port 0). \
        Endpoints: GET /v1/health, GET /v1/sets, POST /v1/sets/{set}/query, POST /v1/sets/{set}/select \
        (Spec/serve.md). Logs go to stderr. SIGINT or SIGTERM stops the server after the requests in flight.
        """
    )

    @Argument(help: "Path of the store directory.") var store: String
    @Option(help: "Address to bind.") var host: String = "127.0.0.1"
    @Option(help: "TCP port; 0 picks a free one.") var port: Int = 8080
    @Option(help: "Version to serve (default: the latest).") var version: Int?
    @Flag(help: "Switch to the latest version when a newer one is committed (checked every second).") var follow = false
    @Option(help: "Largest request body accepted, in bytes (larger: 413).") var maxBodyBytes: Int = 64 << 20
    @Option(help: "Threads that run queries (default: the number of cores).") var threads: Int?
    @Option(help: "Largest k a query may ask for.") var maxK: Int = 10_000

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, found \(port)") }
        guard maxBodyBytes >= 1 else { throw ValidationError("--max-body-bytes must be at least 1, found \(maxBodyBytes)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, found \(threads)") }
        guard maxK >= 1 else { throw ValidationError("--max-k must be at least 1, found \(maxK)") }
    }

    func run() async throws {
        BLASKernels.selectForThisCPU()
        // stdout carries the one `listening on` line; everything else is a log, on stderr.
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var configuration = ServeConfiguration(storePath: store)
        configuration.host = host
        configuration.port = port
        configuration.version = version
        configuration.follow = follow
        configuration.maxBodyBytes = maxBodyBytes
        configuration.queryThreads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        configuration.maxK = maxK
        let server: GradSketchServer
        do {
            server = try GradSketchServer(configuration: configuration)
        } catch {
            FileHandle.standardError.write(Data("gradsketch serve: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let storePath = store
        try await server.run { host, port, version in
            // One unbuffered write: a script reading stdout sees the line at once.
            FileHandle.standardOutput.write(Data("listening on http://\(host):\(port) (store \(storePath), version \(version))\n".utf8))
        }
    }
}
