import Foundation

/// What produced a report: enough to rerun it and to tell two reports apart (which code, which
/// command, when, and how long each part took). Written into report.html and report.json.
public struct Provenance: Sendable, Codable, Equatable {
    /// One experiment's wall-clock run time.
    public struct Timing: Sendable, Codable, Equatable {
        public let name: String
        public let seconds: Double

        public init(name: String, seconds: Double) {
            self.name = name
            self.seconds = seconds
        }
    }

    public var gradsketchVersion: String
    /// The source commit (40 hex digits), or "unknown"; see ``resolveCommit(environment:checkout:)``.
    public var commit: String
    /// The command line, arguments shell-quoted where needed.
    public var commandLine: String
    /// Start of the run, UTC, ISO 8601 to the second (`2026-12-01T19:30:00Z`).
    public var started: String
    public var totalSeconds: Double
    public var experiments: [Timing]

    public init(gradsketchVersion: String, commit: String, commandLine: String, started: String,
                totalSeconds: Double = 0, experiments: [Timing] = []) {
        self.gradsketchVersion = gradsketchVersion
        self.commit = commit
        self.commandLine = commandLine
        self.started = started
        self.totalSeconds = totalSeconds
        self.experiments = experiments
    }

    /// A time (seconds since 1970, now when nil) as ISO 8601 UTC to the second.
    public static func utcTimestamp(secondsSince1970: Double? = nil) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: secondsSince1970.map(Date.init(timeIntervalSince1970:)) ?? Date())
    }

    /// `arguments` as one line a shell would split back into them (single quotes where an
    /// argument holds anything but plain word characters).
    public static func commandLine(_ arguments: [String]) -> String {
        arguments.map { argument in
            let plain = !argument.isEmpty && argument.unicodeScalars.allSatisfy {
                CharacterSet.alphanumerics.contains($0) || "-_./=:,+@%".unicodeScalars.contains($0)
            }
            return plain ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }

    /// The commit the code was built from: env `GRADSKETCH_COMMIT` when set and non-empty, else
    /// `git rev-parse HEAD` in `checkout` when it is given and git answers with a commit, else
    /// "unknown". `environment` nil means this process's.
    public static func resolveCommit(environment: [String: String]? = nil, checkout: String? = sourceCheckout()) -> String {
        let environment = environment ?? ProcessInfo.processInfo.environment
        if let given = environment["GRADSKETCH_COMMIT"]?.trimmingCharacters(in: .whitespacesAndNewlines), !given.isEmpty {
            return given
        }
        guard let checkout, let head = gitHead(in: checkout) else { return "unknown" }
        return head
    }

    /// The source checkout this module was compiled from, when it still exists and is a
    /// GradSketch package (its Package.swift is there); nil for an installed binary.
    public static func sourceCheckout(filePath: String = #filePath) -> String? {
        // filePath is <checkout>/Sources/GradSketchExperiments/Provenance.swift.
        let checkout = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        return FileManager.default.fileExists(atPath: checkout + "/Package.swift") ? checkout : nil
    }

    /// `git rev-parse HEAD` in `directory`, when git runs and prints a 40-digit hex commit.
    static func gitHead(in directory: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", directory, "rev-parse", "HEAD"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.count == 40 && text.allSatisfy(\.isHexDigit) ? text : nil
    }
}
