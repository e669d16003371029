import Foundation
import GradSketchStore
import GradSketchTestSupport
import Testing

/// `gradsketch train` and `gradsketch sketch` on real Fashion-MNIST data.
@Suite struct SketchCommandTests {
    @Test func trainsSketchesAndRefusesAnotherCheckpointOrProjection() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        let trained = try expectSuccess(ChildProcess.tool("train", store, "--split", "test", "--limit", "1000", "--hidden", "16",
                                                          "--batch", "100", "--learning-rate", "0.003", "--checkpoint-every", "5"))
        #expect(trained.standardOutput.contains("checkpoint mlp-step10"))
        try expectSuccess(ChildProcess.tool("sketch", store, "--split", "test", "--limit", "300", "--checkpoint", "mlp-step10",
                                            "--set", "g", "--side", "8", "--k-dense", "16", "--batch", "128"))
        let set = try Store(opening: store).sketchSet("g")
        #expect(set.rowCount == 300)
        #expect(set.k == 8 * 8 + 8 * 8 + 16)
        #expect(try set.ids().prefix(2) == ["fashion-mnist/test/00000", "fashion-mnist/test/00001"])
        #expect(try set.labels().first == "Ankle boot")  // the first test image of Fashion-MNIST
        #expect(try set.column("loss").allSatisfy { $0 > 0 && $0.isFinite })
        #expect(set.attributes["tensor_set"] == .string("mlp-step10"))
        // More rows at the same checkpoint and projection are fine; anything else is refused.
        try expectFailure(["sketch", store, "--split", "test", "--limit", "10", "--checkpoint", "mlp-step5", "--set", "g",
                           "--side", "8", "--k-dense", "16"], saying: "not mlp-step5")
        try expectFailure(["sketch", store, "--split", "test", "--limit", "10", "--checkpoint", "mlp-step10", "--set", "g",
                           "--side", "8", "--k-dense", "16", "--seed", "3"], saying: "seed: 3 here, 0 there")
        try expectSuccess(ChildProcess.tool("verify", store))
    }
}
