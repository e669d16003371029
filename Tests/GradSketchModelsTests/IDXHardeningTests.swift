import Foundation
import GradSketchModels
import GradSketchTestSupport
import Testing

/// IDX dimensions are u32 each, so a rank-3 header can declare more than 2^64 bytes.
@Suite struct IDXHardeningTests {
    @Test func dimensionsWhoseProductOverflowsAreRefused() throws {
        let scratch = try TemporaryDirectory()
        // 0xffffffff³ ≈ 2^96 trapped in `dimensions.reduce(1, *)`.
        let script = """
        import gzip, struct, sys
        gzip.open(sys.argv[1] + "/huge.gz", "wb").write(b"\\x00\\x00\\x08\\x03" + struct.pack(">III", 0xffffffff, 0xffffffff, 0xffffffff) + bytes(16))
        """
        try #require(try ChildProcess.python(script, [scratch.path]).status == 0)
        let error = #expect(throws: DatasetError.self) { _ = try IDXFile.read(scratch.path + "/huge.gz", rank: 3) }
        #expect(error?.message.contains("their product overflows a 64-bit size") == true, "\(String(describing: error))")
    }
}
