import Foundation

/// Readers of the small input files a query or selection takes: query vectors (.npy), group
/// numbers and float columns. Each error names the file and says what was expected.
public enum QueryInputs {
    /// A `.npy` file of shape [width] (or [1, width]), or with `allowMany` [Q, width], as
    /// float32 rows, row-major; `what` names it in errors ("query", "query for set X", …).
    public static func readVectors(_ path: String, width: Int, allowMany: Bool = false, what: String) throws -> (values: [Float], count: Int) {
        let file = try NumpyFile(path: path)
        let (rows, columns) = file.shape.count == 1 ? (1, file.shape[0]) : file.shape.count == 2 ? (file.shape[0], file.shape[1]) : (0, 0)
        guard columns == width, rows >= 1, allowMany || rows == 1 else {
            let expected = allowMany ? "[\(width)] or [Q, \(width)]" : "[\(width)]"
            throw InterchangeError(path: path, "\(what) must have shape \(expected), found \(file.shape)")
        }
        var values = [Float](repeating: 0, count: rows * width)
        _ = try values.withUnsafeMutableBytes { try ElementConversion.convert(file.data, from: file.elementType, to: .float32, into: $0) }
        return (values, rows)
    }

    /// One integer group number per line (for group-mean-then-max aggregation).
    public static func readGroups(_ path: String) throws -> [Int] {
        try TextLines.read(path).enumerated().map { index, line in
            guard let value = Int(line.trimmingCharacters(in: .whitespaces)) else {
                throw InterchangeError(path: path, "line \(index + 1) is not a group number: \"\(line)\"")
            }
            return value
        }
    }

    /// A float column: a 1-D `.npy` (any float or integer type) or one number per line.
    public static func readColumn(_ path: String) throws -> [Double] {
        if path.hasSuffix(".npy") {
            let array = try NumpyFile(path: path)
            guard array.shape.count == 1 else {
                throw InterchangeError(path: path, "a column must be 1-D, found shape \(array.shape)")
            }
            let data = array.data
            let count = array.shape[0]
            switch array.elementType {
            case .float64: return (0..<count).map { data.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
            case .float32: return (0..<count).map { Double(data.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self)) }
            case .float16: return (0..<count).map { Double(data.loadUnaligned(fromByteOffset: $0 * 2, as: Float16.self)) }
            case .int64: return (0..<count).map { Double(data.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            case .int32: return (0..<count).map { Double(data.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
            default:
                throw InterchangeError(path: path, "a column must be a float or integer array, found \(array.elementType.rawValue)")
            }
        }
        return try TextLines.read(path).enumerated().map { index, line in
            guard let value = Double(line.trimmingCharacters(in: .whitespaces)) else {
                throw InterchangeError(path: path, "line \(index + 1) is not a number: \"\(line.prefix(40))\"")
            }
            return value
        }
    }
}
