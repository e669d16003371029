public import Foundation
import GradSketchInterchange
import GradSketchStore

/// One parser the fuzzer drives with arbitrary bytes, and the checks an accepted input must
/// pass. The libFuzzer harness (`gradsketch-fuzz`) and the regression test in `swift test`
/// call the same code, so a case the fuzzer found keeps running without the fuzzer.
///
/// Each target is a thin call into the parser every reader uses: checks added to those parsers
/// are fuzzed without touching this file.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// `.npy` header and data (`NumpyFile.parseLayout`), then the data converted to float32.
    case npy
    /// `.safetensors` header and tensor ranges (`SafetensorsFile.parseLayout`).
    case safetensors
    /// Text files of one entry per line (`TextLines.split`).
    case lines
    /// A manifest's text as every reader checks it (`Store.parseManifest`), with its checksum
    /// computed here so mutated JSON reaches the decoder instead of stopping at the checksum.
    case manifest
    /// A `torch.save` file: its zip directory and its restricted pickle (`TorchCheckpoint.parse`).
    case torch

    /// What became of one input.
    public enum Outcome: Sendable {
        /// The parser accepted the input and it passed every check below.
        case accepted
        /// The parser refused the input with an error (what bad input should get).
        case refused(String)
        /// The parser accepted the input but the result breaks a rule: a defect, which the
        /// fuzz harness turns into a crash so libFuzzer saves the input.
        case violated(String)
    }

    /// Runs the parser on `bytes`.
    public func run(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        do {
            switch self {
            case .npy: return try Self.numpy(bytes)
            case .safetensors: return try Self.safetensors(bytes)
            case .lines: return try Self.lines(bytes)
            case .manifest: return try Self.manifest(bytes)
            case .torch: return try Self.torch(bytes)
            }
        } catch {
            return .refused("\(error)")
        }
    }

    static let path = "(fuzz input)"
    /// Arrays larger than this are checked for size but not converted, so one input cannot
    /// make the fuzzer allocate gigabytes.
    static let conversionLimit = 1 << 20

    static func numpy(_ bytes: UnsafeRawBufferPointer) throws -> Outcome {
        let layout = try NumpyFile.parseLayout(bytes, path: path)
        guard let byteCount = layout.elementType.byteCount(shape: layout.shape),
              layout.dataOffset >= 10, layout.dataOffset + byteCount == bytes.count else {
            return .violated("accepted shape \(layout.shape) \(layout.elementType) at offset \(layout.dataOffset) in \(bytes.count) bytes")
        }
        let count = layout.shape.reduce(1, *)
        if count <= conversionLimit && layout.elementType != .uint8 && layout.elementType != .int32 && layout.elementType != .int64 {
            var floats = [Float](repeating: 0, count: count)
            _ = try floats.withUnsafeMutableBytes {
                try ElementConversion.convert(UnsafeRawBufferPointer(rebasing: bytes[layout.dataOffset...]),
                                              from: layout.elementType, to: .float32, into: $0)
            }
        }
        return .accepted
    }

    static func torch(_ bytes: UnsafeRawBufferPointer) throws -> Outcome {
        for tensor in try TorchCheckpoint.parse(bytes, path: path) {
            guard tensor.elementType.byteCount(shape: tensor.shape) == tensor.data.count else {
                return .violated("accepted tensor \(tensor.shape) \(tensor.elementType) with \(tensor.data.count) bytes")
            }
            guard tensor.data.isEmpty || (tensor.data.baseAddress! >= bytes.baseAddress! && tensor.data.baseAddress! + tensor.data.count <= bytes.baseAddress! + bytes.count) else {
                return .violated("accepted tensor \(tensor.shape) whose bytes lie outside the input")
            }
            if let first = tensor.data.first, let last = tensor.data.last { _ = first &+ last }
        }
        return .accepted
    }

    static func safetensors(_ bytes: UnsafeRawBufferPointer) throws -> Outcome {
        let layout = try SafetensorsFile.parseLayout(bytes, path: path)
        var previousEnd = 0
        for tensor in layout.tensors.filter({ !$0.byteRange.isEmpty }).sorted(by: { $0.byteRange.lowerBound < $1.byteRange.lowerBound }) {
            guard tensor.byteRange.lowerBound >= max(previousEnd, 8), tensor.byteRange.upperBound <= bytes.count,
                  tensor.elementType.byteCount(shape: tensor.shape) == tensor.byteRange.count else {
                return .violated("accepted tensor \(tensor.name) \(tensor.shape) at \(tensor.byteRange) in \(bytes.count) bytes")
            }
            previousEnd = tensor.byteRange.upperBound
            // Touch both ends: under AddressSanitizer a range past the input is a crash.
            _ = bytes[tensor.byteRange.lowerBound] &+ bytes[tensor.byteRange.upperBound - 1]
        }
        return .accepted
    }

    static func lines(_ bytes: UnsafeRawBufferPointer) throws -> Outcome {
        let lines = try TextLines.split(bytes, path: path)
        if let bad = lines.firstIndex(where: { $0.utf8.contains(0x0A) || $0.utf8.contains(0x0D) }) {
            return .violated("entry \(bad + 1) keeps a line-ending character: \(Array(lines[bad].utf8).prefix(40))")
        }
        // An independent oracle: every CRLF or lone CR turned into LF, a BOM dropped and a
        // final LF added must give back exactly the entries joined by LF.
        var normalized: [UInt8] = []
        var index = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        while index < bytes.count {
            if bytes[index] == 0x0D {
                normalized.append(0x0A)
                index += index + 1 < bytes.count && bytes[index + 1] == 0x0A ? 2 : 1
            } else {
                normalized.append(bytes[index])
                index += 1
            }
        }
        if let last = normalized.last, last != 0x0A { normalized.append(0x0A) }
        let rejoined = lines.isEmpty ? [] : Array((lines.joined(separator: "\n") + "\n").utf8)
        guard rejoined == normalized else {
            return .violated("\(lines.count) entries do not give back the \(normalized.count) normalised bytes")
        }
        return .accepted
    }

    static func manifest(_ bytes: UnsafeRawBufferPointer) throws -> Outcome {
        guard let text = String(validating: bytes, as: UTF8.self) else { return .refused("not UTF-8") }
        // The version the manifest's file name would carry: the one it claims, so mutations
        // get past the name check to the checks after it.
        let claimed = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
        let version = claimed?["version"] as? Int ?? 0
        _ = try Store.parseManifest(text, checksum: Store.manifestChecksum(of: text), expectedVersion: version, file: path)
        return .accepted
    }
}

extension UnsafeRawBufferPointer {
    fileprivate func starts(with prefix: [UInt8]) -> Bool {
        count >= prefix.count && zip(self, prefix).allSatisfy { $0 == $1 }
    }
}
