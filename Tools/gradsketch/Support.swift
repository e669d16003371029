import ArgumentParser
import Foundation
import GradSketchInterchange
import GradSketchStore

/// Runs a command body; a library error becomes a ``CommandFailure`` (exit status 1), reported
/// by `GradSketchCommand.main` as one line on stderr, and as JSON under `--json`.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as StoreError {
        let detail = error.underlying.map { "\(error.message): \($0)" } ?? error.message
        throw CommandFailure(code: snakeCase(error.code.description), message: detail, path: error.path)
    } catch let error as InterchangeError {
        throw CommandFailure(code: "invalid_input", message: error.message, path: error.path)
    }
}

func printJSON<T: Encodable>(_ value: T) {
    let data = (try? makeJSONEncoder().encode(value)) ?? Data("null".utf8)
    print(String(decoding: data, as: UTF8.self))
}

/// Splits `name=value`.
func splitPair(_ text: String, option: String) throws -> (String, String) {
    guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
        throw ValidationError("\(option) expects NAME=VALUE, found \"\(text)\"")
    }
    return (String(text[..<equals]), String(text[text.index(after: equals)...]))
}

func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

/// A progress line on stderr, shown only when stderr is a terminal and the work takes long
/// enough to be worth watching; redrawn at most ten times a second.
final class ProgressLine {
    let label: String
    let unit: String
    let bytesPerUnit: Int?
    private let enabled = isatty(2) == 1
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false
    private var phase: String?

    init(label: String, unit: String, bytesPerUnit: Int?) {
        self.label = label
        self.unit = unit
        self.bytesPerUnit = bytesPerUnit
    }

    /// Progress within a named phase; a new phase starts a new line.
    func update(phase: String, _ done: Int, _ total: Int) {
        if phase != self.phase {
            finish()
            self.phase = phase
            lastDraw = .distantPast
        }
        update(done, total)
    }

    func update(_ done: Int, _ total: Int) {
        guard enabled else { return }
        let now = Date()
        let elapsed = now.timeIntervalSince(start)
        guard elapsed > 0.5, now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
        lastDraw = now
        drawn = true
        var line = "\r\(label)\(phase.map { " " + $0 } ?? ""): \(done)/\(total)\(unit.isEmpty ? "" : " " + unit) (\(total > 0 ? done * 100 / total : 100)%)"
        if let bytesPerUnit, elapsed > 0 {
            line += String(format: ", %.0f MB/s", Double(done * bytesPerUnit) / elapsed / 1e6)
        }
        FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
    }

    /// Ends the line if one was drawn; safe to call more than once.
    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
    }
}

/// Rows from a `.npy` or `.safetensors` file, mapped; `input` stays valid while this lives.
final class RowsFile {
    let input: RowInput
    private let owner: AnyObject

    init(path: String, tensor: String?) throws {
        if path.hasSuffix(".safetensors") {
            let file = try SafetensorsFile(path: path)
            owner = file
            let chosen: SafetensorsTensor
            if let tensor {
                guard let found = file.tensor(named: tensor) else {
                    throw StoreError(.notFound, "no tensor \"\(tensor)\" in the file (tensors: \(file.tensors.map(\.name).joined(separator: ", ")))", path: path)
                }
                chosen = found
            } else {
                guard file.tensors.count == 1 else {
                    throw StoreError(.invalidInput, "expected one tensor or --tensor NAME, found \(file.tensors.count) tensors: \(file.tensors.map(\.name).prefix(10).joined(separator: ", "))", path: path)
                }
                chosen = file.tensors[0]
            }
            guard chosen.shape.count == 2 else {
                throw StoreError(.invalidInput, "rows must have shape [N, k], tensor \(chosen.name) has shape \(chosen.shape)", path: path)
            }
            input = try RowInput(bytes: chosen.data, elementType: chosen.elementType, rowCount: chosen.shape[0], k: chosen.shape[1])
        } else {
            let file = try NumpyFile(path: path)
            owner = file
            guard file.shape.count == 2 else {
                throw StoreError(.invalidInput, "rows must have shape [N, k], found shape \(file.shape)", path: path)
            }
            do {
                input = try RowInput(bytes: file.data, elementType: file.elementType, rowCount: file.shape[0], k: file.shape[1])
            } catch let error as StoreError {
                throw StoreError(error.code, error.message, path: path)
            }
        }
    }
}

/// Bounds of the integer options, checked in `validate()` before any of them reaches
/// arithmetic or an allocation: a count near Int.max must be a clear error, not an
/// overflow trap or a terabyte allocation. The limits are far above any real use.
enum OptionLimit {
    /// Results, selected rows, training rows: more than any store holds.
    static let count = 1_000_000_000
    /// Things made per row or per query (re-ranked candidates, hashes, clusters, subsets).
    static let perQuery = 1_000_000
    /// Widths and block sizes of projections and models (2^24).
    static let width = 1 << 24
    /// A Kronecker side: its square is one layer's sketch width.
    static let side = 4096
}

/// Refuses an integer option outside `range`, naming the option, the range and the value.
func requireOption(_ value: Int?, _ name: String, in range: ClosedRange<Int>) throws {
    guard let value, !range.contains(value) else { return }
    let expected = value < range.lowerBound ? "at least \(range.lowerBound)" : "at most \(range.upperBound)"
    throw ValidationError("\(name) must be \(expected), found \(value)")
}

/// Refuses a negative `--at` version.
func requireVersion(_ at: Int?) throws {
    try requireOption(at, "--at", in: 0...Int.max)
}
