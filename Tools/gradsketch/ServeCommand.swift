import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `gradsketch serve`: replaces this process with the sibling `gradsketch-serve` binary, so
/// the HTTP server library never loads with (or slows the start-up of) the CLI.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer top-k queries over a snapshot as JSON over HTTP (runs gradsketch-serve; see its --help).",
        discussion: """
        gradsketch serve S [--host 127.0.0.1] [--port 8080 | 0] [--version N] [--follow] prints \
        "listening on http://HOST:PORT (store S, version N)" and serves GET /v1/health, GET /v1/sets, \
        POST /v1/sets/{set}/query and POST /v1/sets/{set}/select (Spec/serve.md). The arguments go unchanged \
        to the gradsketch-serve binary next to this one.
        """)

    @Argument(parsing: .captureForPassthrough, help: "Arguments of gradsketch-serve.")
    var arguments: [String] = []

    func run() throws {
        try Self.execServer(arguments)
    }

    /// Execs `gradsketch-serve` from this executable's directory with `arguments`; returns
    /// only by throwing, when the binary is missing or cannot run.
    static func execServer(_ arguments: [String]) throws -> Never {
        try execSibling("gradsketch-serve", for: "serve", arguments)
    }

    /// Execs the binary `name` from this executable's directory with `arguments` on behalf of
    /// `gradsketch COMMAND`; returns only by throwing, when the binary is missing or cannot run.
    static func execSibling(_ name: String, for command: String, _ arguments: [String]) throws -> Never {
        let binary = executableDirectory() + "/" + name
        guard access(binary, X_OK) == 0 else {
            throw CommandFailure(code: "not_found",
                                 message: "gradsketch \(command) needs the \(name) binary next to gradsketch: expected an executable at \(binary), found none (build it with `swift build -c release --product \(name)`)",
                                 path: binary)
        }
        let argv = ([binary] + arguments).map { strdup($0) } + [nil]
        execv(binary, argv)
        let reason = String(cString: strerror(errno))
        throw CommandFailure(code: "io", message: "could not run \(binary): \(reason)", path: binary)
    }

    /// The directory of the running executable (symbolic links resolved).
    static func executableDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = length > 0 ? String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                              : CommandLine.arguments[0]
        return (path as NSString).deletingLastPathComponent
    }
}

/// `gradsketch reproduce`: replaces this process with the sibling `gradsketch-reproduce`
/// binary, so the experiments target never links into the CLI.
struct ReproduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reproduce",
        abstract: "Run the papers' experiments against a new store and write a report (runs gradsketch-reproduce; see its --help).",
        discussion: """
        gradsketch reproduce STORE --out DIR [--suite fashion-mnist | lm | all] [--size small | default | full] runs the \
        Fashion-MNIST reproductions (default), the language-model suite of the Python package, or both, and writes \
        DIR/report.html and DIR/report.json. The arguments go unchanged to the gradsketch-reproduce binary next to this one.
        """)

    @Argument(parsing: .captureForPassthrough, help: "Arguments of gradsketch-reproduce.")
    var arguments: [String] = []

    func run() throws {
        try Serve.execSibling("gradsketch-reproduce", for: "reproduce", arguments)
    }
}
