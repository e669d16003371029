import CZlib
import Foundation

/// A malformed or unreadable dataset file: which file, what was expected, what was found.
public struct DatasetError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public var description: String { "\(message) [\(path)]" }
}

/// The IDX format of (Fashion-)MNIST, gzip'd: a big-endian header (magic 0x00000800 | type
/// code 0x08 for unsigned bytes, then the rank; then one uint32 per dimension) and the bytes.
public enum IDXFile {
    /// Decompresses a whole gzip file; refuses a truncated or corrupt stream.
    static func gunzip(_ path: String) throws -> [UInt8] {
        guard let file = gzopen(path, "rb") else {
            throw DatasetError(path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { gzclose(file) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let read = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if read < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "unknown error"
                throw DatasetError(path: path, message: "not a valid gzip stream: \(message)")
            }
            if read == 0 { break }
            output.append(contentsOf: chunk[0..<Int(read)])
        }
        // gzread reports a stream cut short as end of file; gzeof/gzerror tell them apart.
        var code: Int32 = 0
        _ = gzerror(file, &code)
        if code != Z_OK && code != Z_STREAM_END {
            throw DatasetError(path: path, message: "truncated or corrupt gzip stream (zlib error \(code))")
        }
        return output
    }

    /// Reads an unsigned-byte IDX file of the given rank; returns its dimensions and bytes.
    public static func read(_ path: String, rank: Int) throws -> (dimensions: [Int], values: [UInt8]) {
        let bytes = try gunzip(path)
        func word(_ offset: Int) -> Int {
            Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        }
        let headerLength = 4 + 4 * rank
        guard bytes.count >= headerLength else {
            throw DatasetError(path: path, message: "expected an IDX header of \(headerLength) bytes, found \(bytes.count) bytes in all")
        }
        let magic = word(0)
        guard magic == 0x0800 | rank else {
            throw DatasetError(path: path, message: String(format: "expected IDX magic 0x%08x (unsigned bytes, rank %d), found 0x%08x", 0x0800 | rank, rank, magic))
        }
        let dimensions = (0..<rank).map { word(4 + 4 * $0) }
        // Each dimension is a u32, so rank 3 can overflow an Int: multiply with checks.
        var expected = 1
        for dimension in dimensions {
            let (product, overflow) = expected.multipliedReportingOverflow(by: dimension)
            guard !overflow else {
                throw DatasetError(path: path, message: "dimensions \(dimensions) are too large: their product overflows a 64-bit size (the file has \(bytes.count - headerLength) data bytes)")
            }
            expected = product
        }
        guard bytes.count - headerLength == expected else {
            throw DatasetError(path: path, message: "expected \(expected) data bytes for dimensions \(dimensions), found \(bytes.count - headerLength)")
        }
        return (dimensions, Array(bytes[headerLength...]))
    }
}

/// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) as Debian's `dataset-fashion-mnist` installs it.
public struct FashionMNIST: Sendable {
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    public enum Split: String, Sendable { case train, test }

    /// Images as rows of 784 floats in [0, 1].
    public let images: [Float]
    public let labels: [Int]
    public let split: Split
    public var count: Int { labels.count }
    public static let features = 784

    public init(split: Split, directory: String = FashionMNIST.defaultDirectory) throws {
        let prefix = split == .train ? "train" : "t10k"
        let imagePath = "\(directory)/\(prefix)-images-idx3-ubyte.gz"
        let labelPath = "\(directory)/\(prefix)-labels-idx1-ubyte.gz"
        for path in [imagePath, labelPath] where !FileManager.default.fileExists(atPath: path) {
            throw DatasetError(path: path, message: "Fashion-MNIST file missing: install Debian's dataset-fashion-mnist (Tools/setup.sh does)")
        }
        let (imageDimensions, pixels) = try IDXFile.read(imagePath, rank: 3)
        let (labelDimensions, labelBytes) = try IDXFile.read(labelPath, rank: 1)
        guard imageDimensions.count == 3, imageDimensions[1] == 28, imageDimensions[2] == 28 else {
            throw DatasetError(path: imagePath, message: "expected 28 × 28 images, found \(imageDimensions)")
        }
        guard labelDimensions[0] == imageDimensions[0] else {
            throw DatasetError(path: labelPath, message: "expected \(imageDimensions[0]) labels (one per image), found \(labelDimensions[0])")
        }
        if let bad = labelBytes.firstIndex(where: { $0 > 9 }) {
            throw DatasetError(path: labelPath, message: "label \(bad) is \(labelBytes[bad]): expected 0–9")
        }
        images = pixels.map { Float($0) / 255 }
        labels = labelBytes.map(Int.init)
        self.split = split
    }

    /// The id of example `index`, stable across runs: `fashion-mnist/train/00042`.
    public func id(_ index: Int) -> String {
        let digits = String(index)
        return "fashion-mnist/\(split.rawValue)/" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }
}
