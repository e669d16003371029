import Foundation

/// Text files of one entry per line (ids, labels, metadata, group numbers, column values).
///
/// A line ends at LF, CRLF or a lone CR, whichever the file uses (even mixed), so a file
/// saved on Windows or classic Mac OS gives the same entries as one saved on Linux: no entry
/// keeps a `\r`. The last line needs no terminator; a final terminator does not start an
/// empty entry. A UTF-8 byte-order mark at the start is skipped. Anything that is not UTF-8
/// is refused, naming the line.
///
/// Works on bytes, not `Character`s: Swift treats CRLF as one grapheme, so splitting a
/// `String` on `"\n"` leaves a CRLF file as a single line.
public enum TextLines {
    /// The entries of the file at `path`.
    ///
    /// - Throws: ``InterchangeError`` when the file cannot be read or is not UTF-8.
    public static func read(_ path: String) throws -> [String] {
        // A FileHandle, not FileManager.contents: it also reads pipes (`--ids <(command)`).
        guard let handle = FileHandle(forReadingAtPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot open the file" : "no such file"
            throw InterchangeError(path: path, "\(reason): expected a text file of one entry per line")
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.readToEnd() ?? Data() } catch {
            throw InterchangeError(path: path, "cannot read the file (\(error.localizedDescription)): expected a text file of one entry per line")
        }
        return try data.withUnsafeBytes { try split($0, path: path) }
    }

    /// The entries of a text file whose bytes are `bytes`.
    ///
    /// - Throws: ``InterchangeError`` naming the first line that is not valid UTF-8.
    public static func split(_ bytes: UnsafeRawBufferPointer, path: String) throws -> [String] {
        let lf: UInt8 = 0x0A, cr: UInt8 = 0x0D
        var start = 0
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { start = 3 }
        var lines: [String] = []
        var lineStart = start
        var index = start
        func take(_ end: Int) throws {
            guard let line = String(validating: bytes[lineStart..<end], as: UTF8.self) else {
                throw InterchangeError(path: path, "line \(lines.count + 1) is not valid UTF-8: expected UTF-8 text")
            }
            lines.append(line)
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == lf || byte == cr {
                try take(index)
                index += byte == cr && index + 1 < bytes.count && bytes[index + 1] == lf ? 2 : 1
                lineStart = index
            } else {
                index += 1
            }
        }
        if lineStart < bytes.count { try take(bytes.count) }
        return lines
    }

    /// Writes `lines` with LF endings next to `path` and renames into place, so readers never
    /// see half a file.
    ///
    /// - Throws: ``InterchangeError`` when a line holds a line-ending character (it would not
    ///   read back as one entry) or the file cannot be written.
    public static func write(_ lines: [String], to path: String) throws {
        if let index = lines.firstIndex(where: { $0.utf8.contains(0x0A) || $0.utf8.contains(0x0D) }) {
            throw InterchangeError(path: path, "entry \(index + 1) holds a line break: expected one line per entry")
        }
        let text = lines.joined(separator: "\n") + (lines.isEmpty ? "" : "\n")
        let temporary = path + ".tmp-\(UInt64.random(in: 0...UInt64.max))"
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        } catch {
            unlink(temporary)
            throw InterchangeError(path: path, "cannot write the file: \(error.localizedDescription)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw InterchangeError(path: path, "cannot rename the written file into place: \(reason)")
        }
    }
}
