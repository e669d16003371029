import ArgumentParser
import Foundation
import GradSketchInterchange
import GradSketchStore

/// The `--json` flag every command takes. Keys are snake_case throughout (as in the
/// manifest); a failure prints one `{"error": …}` object instead of the result.
struct OutputOptions: ParsableArguments {
    @Flag(help: """
        Print the result as JSON (snake_case keys). On failure, print {"error": {"code", "message", "path"}} on stdout \
        instead (the one-line message still goes to stderr, the exit status is unchanged).
        """)
    var json = false

    /// Whether `--json` is among the raw arguments, for errors raised before or during parsing.
    static func requested(in arguments: [String]) -> Bool {
        arguments.prefix { $0 != "--" }.contains("--json")
    }
}

/// A library error, already worded for the user, on its way to `GradSketchCommand.main`.
struct CommandFailure: Error, CustomStringConvertible {
    let code: String
    let message: String
    let path: String?

    var description: String { message + (path.map { " [\($0)]" } ?? "") }
}

/// What `--json` prints when a command fails.
struct ErrorOutput: Encodable {
    struct Detail: Encodable { let code: String, message: String, path: String? }
    let error: Detail
}

/// The encoder behind every JSON the tool writes: snake_case keys for the tool's own
/// structures. Keys inside dictionaries (set names, attributes, parameters) are data and are
/// written as given.
func makeJSONEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return encoder
}

/// `invalidInput` → `invalid_input`.
func snakeCase(_ name: String) -> String {
    var result = ""
    for character in name {
        if character.isUppercase {
            if !result.isEmpty { result += "_" }
            result += character.lowercased()
        } else {
            result.append(character)
        }
    }
    return result
}

/// One `warning: …` line on stderr.
func reportWarning(_ message: String) {
    FileHandle.standardError.write(Data("gradsketch: warning: \(message)\n".utf8))
}
