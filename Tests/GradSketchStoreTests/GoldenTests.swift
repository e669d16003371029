import Foundation
import GradSketchInterchange
import GradSketchStore
import GradSketchTestSupport
import Testing

/// The committed golden store (written by the Python reference writer) against the values
/// numpy computed when it was made (Spec/golden/expected.json).
@Suite struct GoldenTests {
    struct Expected: Decodable {
        struct SetValues: Decodable {
            let rows: Int, k: Int, dtype: String, ids: [String], sum: Double
            let firstRow: [Double]?, lastRow: [Double]?, labels: [String]?, bits: [UInt16]?, rowsAtVersion2: Int?
            enum CodingKeys: String, CodingKey {
                case rows, k, dtype, ids, sum, labels, bits
                case firstRow = "first_row", lastRow = "last_row", rowsAtVersion2 = "rows_at_version_2"
            }
        }
        struct TensorValues: Decodable {
            let contentHash: String
            let bias: [Double]?
            enum CodingKeys: String, CodingKey { case contentHash = "content_hash", bias }
        }
        let latestVersion: Int
        let sets: [String: SetValues]
        let tensorSets: [String: TensorValues]
        let crc32c: [String: String]
        let float16FromFloat32: [String: UInt16]
        let bfloat16ToFloat32: [String: Double]
        enum CodingKeys: String, CodingKey {
            case sets, crc32c
            case latestVersion = "latest_version", tensorSets = "tensor_sets"
            case float16FromFloat32 = "float16_from_float32", bfloat16ToFloat32 = "bfloat16_to_float32"
        }
    }

    let expected: Expected

    init() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Repository.goldenDirectory + "/expected.json"))
        expected = try JSONDecoder().decode(Expected.self, from: data)
    }

    @Test func goldenStoreReadsAsNumpySays() throws {
        let store = try Store(opening: Repository.goldenDirectory + "/store")
        #expect(try store.latestVersion() == expected.latestVersion)
        let report = try store.verify()
        #expect(report.isClean, "\(report.problems)")

        let train = try store.sketchSet("train")
        let values = try #require(expected.sets["train"])
        #expect(train.rowCount == values.rows && train.k == values.k && train.dtype.rawValue == values.dtype)
        #expect(try train.ids() == values.ids)
        #expect(try train.labels() == values.labels)
        let rows = try train.floatRows()
        #expect(rows.prefix(train.k).map(Double.init) == values.firstRow)
        #expect(rows.suffix(train.k).map(Double.init) == values.lastRow)
        // The float32 lanes of the scan against numpy's float64 sum: within float32 rounding.
        #expect(abs(try train.sumOfLiveValues() - values.sum) < 1e-4 * Double(rows.count))
        #expect(try store.sketchSet("train", at: 2).rowCount == values.rowsAtVersion2)
        #expect(train.attributes["training_step"] == .number(100))

        let valid = try store.sketchSet("valid")
        let half = try #require(expected.sets["valid"])
        var bits: [UInt16] = []
        try valid.forEachBlock { block in
            bits += (0..<(block.rowCount * block.k)).map { block.bytes.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self) }
        }
        #expect(bits == half.bits)

        for (name, values) in expected.tensorSets {
            #expect(try store.tensorSet(name).contentHash == values.contentHash, "\(name)")
        }
        let bias = try store.tensorSet("finetune").tensor(named: "bias").floats()
        #expect(bias.map(Double.init) == expected.tensorSets["finetune"]?.bias)
    }

    @Test func checkValuesMatchTheKernels() throws {
        let inputs: [String: [UInt8]] = [
            "123456789": Array("123456789".utf8), "32 zero bytes": [UInt8](repeating: 0, count: 32),
            "32 0xff bytes": [UInt8](repeating: 0xFF, count: 32), "bytes 0..31": (0..<32).map { UInt8($0) },
        ]
        for (name, value) in expected.crc32c {
            let bytes = try #require(inputs[name])
            #expect(bytes.withUnsafeBytes { CRC32C.formatted(CRC32C.checksum($0)) } == "crc32c:" + value)
        }
        for (text, bits) in expected.float16FromFloat32 {
            let value = try #require(Float(text))
            var half: UInt16 = 0
            _ = try withUnsafeBytes(of: value) { source in
                try withUnsafeMutableBytes(of: &half) { try ElementConversion.convert(source, from: .float32, to: .float16, into: $0) }
            }
            #expect(half == bits, "\(text)")
        }
        var widened: Float = 0
        let bf16: UInt16 = 0x3F81
        _ = try withUnsafeBytes(of: bf16) { source in
            try withUnsafeMutableBytes(of: &widened) { try ElementConversion.convert(source, from: .bfloat16, to: .float32, into: $0) }
        }
        #expect(Double(widened) == expected.bfloat16ToFloat32["0x3f81"])
    }
}
