import Foundation
import GradSketchStore
import GradSketchTestSupport
import Testing

/// Issue 12 items 5 and 10 through the tool: CRLF text files, and integer options near
/// Int.max, each a clear error (or the right answer) with the store unchanged.
@Suite struct InputHardeningTests {
    func writeBytes(_ fixture: ToolFixture, _ name: String, _ text: String) throws -> String {
        let file = fixture.path(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    @Test func crlfAndCRTextFilesGiveOneEntryPerLine() throws {
        let fixture = try ToolFixture()
        let rows = try fixture.makeRows("rows.npy", rows: 3, k: 4)
        for (set, ending) in [("crlf", "\r\n"), ("cr", "\r")] {
            let ids = try writeBytes(fixture, "\(set)-ids.txt", ["a", "b", "c"].map { "\(set)-\($0)" }.joined(separator: ending) + ending)
            let labels = try writeBytes(fixture, "\(set)-labels.txt", "cat\(ending)dog\(ending)bird\(ending)")
            let metadata = try writeBytes(fixture, "\(set)-meta.txt", "first\(ending)second\(ending)third")
            // Before: "ids must have one entry per row: expected 3, found 1".
            try expectSuccess(ChildProcess.tool("append", fixture.store, "--set", set, "--rows", rows, "--ids", ids, "--labels", labels, "--metadata", metadata))
            let stored = try Store(opening: fixture.store).sketchSet(set)
            #expect(try stored.labels() == ["cat", "dog", "bird"])
            #expect(try stored.metadata() == ["first", "second", "third"])
            let idsOut = fixture.path("\(set)-ids-out.txt")
            try expectSuccess(ChildProcess.tool("export", fixture.store, "--set", set, "--out", fixture.path("\(set).npy"), "--ids-out", idsOut))
            #expect(try String(contentsOfFile: idsOut, encoding: .utf8) == "\(set)-a\n\(set)-b\n\(set)-c\n")
            // A CRLF ids file deletes what it names.
            let delete = try writeBytes(fixture, "\(set)-delete.txt", "\(set)-b\(ending)")
            try expectSuccess(ChildProcess.tool("delete", fixture.store, "--set", set, "--ids", delete))
            #expect(try Store(opening: fixture.store).sketchSet(set).rowCount == 2)
        }
        // Process substitution hands the tool a pipe, which FileManager.contents read as nothing.
        let piped = try ChildProcess.run("/bin/bash", ["-c", "\"$0\" append \"$1\" --set piped --rows \"$2\" --ids <(printf 'p-a\\r\\np-b\\r\\np-c\\r\\n')",
                                                       ChildProcess.productsDirectory + "/gradsketch", fixture.store, rows])
        #expect(piped.status == 0, "\(piped.standardError)")
        #expect(try Store(opening: fixture.store).sketchSet("piped").ids() == ["p-a", "p-b", "p-c"])
        let help = try ChildProcess.tool("append", "--help")
        let words = help.standardOutput.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(words.contains("lines end at LF, CRLF or CR"), "\(help.standardOutput)")
    }

    @Test func integerOptionsNearIntMaxAreRefusedBeforeTheyReachArithmetic() throws {
        let fixture = try ToolFixture()
        let store = fixture.store
        let rows = try fixture.makeRows("rows.npy", rows: 20, k: 8)
        try expectSuccess(ChildProcess.tool("append", store, "--set", "s", "--rows", rows))
        let query = try fixture.makeRows("query.npy", rows: 1, k: 8, code: "x = x[0]")
        let committed = try fixture.latestVersion()
        let max = String(Int.max)
        let cases: [([String], String)] = [
            // query -k Int.max asked for a 1.6 TB heap and died.
            (["query", store, "--set", "s", "--vector", query, "-k", max], "-k must be at most 1000000000, found \(max)"),
            (["query", store, "--set", "s", "--vector", query, "-k", "0"], "-k must be at least 1, found 0"),
            (["query", store, "--set", "s", "--vector", query, "--rerank", max], "--rerank must be at most 1000000, found \(max)"),
            (["query", store, "--set", "s", "--vector", query, "--nprobe=-1"], "--nprobe must be at least 1, found -1"),
            (["query", store, "--set", "s", "--vector", query, "--at=-1"], "--at must be at least 0, found -1"),
            (["select", store, "--set", "s", "-k", "2", "--method", "density", "--hashes", max], "--hashes must be at most 1000000, found \(max)"),
            (["select", store, "--set", "s", "-k", "2", "--method", "density", "--hashes", "100000", "--buckets", "100000"],
             "--hashes × --buckets must be at most 2^31 counters, found 100000 × 100000"),
            (["select", store, "--set", "s", "-k", max, "--method", "density"], "-k must be at most 1000000000"),
            (["index", "build", store, "--set", "s", "--lists", max], "--lists must be at most 16777216"),
            (["index", "build", store, "--set", "s", "--rerank", max], "--rerank must be at most 1000000"),
            (["project", store, "--seed", "1", "--rows", rows, "--set", "p", "--k", max], "--k must be at most 16777216"),
            (["project", store, "--seed", "1", "--rows", rows, "--set", "p", "--k", "4", "--kind", "srht", "--block", "3"], "--block must be a power of two, found 3"),
            (["sketch", store, "--checkpoint", "c", "--set", "g", "--side", max], "--side must be at most 4096"),
            (["train", store, "--batch", max], "--batch must be at most 1000000"),
            (["value", store, "--method", "gradex", "--subsets", max], "--subsets must be at most 1000000"),
            (["vacuum", store, "--keep-last", "0"], "--keep-last must be at least 1, found 0"),
            (["query", store, "--set", "s", "--vector", query, "--weight", "nan"], "--weight must be a finite number, found nan"),
        ]
        for (arguments, message) in cases {
            try expectFailure(arguments, saying: message)
            #expect(try fixture.latestVersion() == committed, "\(arguments) changed the store")
        }
        // Within the limits a k beyond the row count returns every row, best first.
        let all = try expectSuccess(ChildProcess.tool("query", store, "--set", "s", "--vector", query, "-k", "1000000000"))
        #expect(all.standardOutput.split(separator: "\n").count == 20)
    }

    @Test func arrayFilesWithOverflowingShapesAreRefusedByTheTool() throws {
        let fixture = try ToolFixture()
        let script = """
        import sys, struct
        def npy(path, header, data):
            text = header.encode()
            text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\\n"
            open(path, "wb").write(b"\\x93NUMPY\\x01\\x00" + struct.pack("<H", len(text)) + text + data)
        npy(sys.argv[1] + "/overflow.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", bytes(16))
        open(sys.argv[1] + "/ff.safetensors", "wb").write(b"\\xff" * 8 + b"{}")
        """
        try expectSuccess(ChildProcess.python(script, [fixture.scratch.path]))
        let committed = try fixture.latestVersion()
        try expectFailure(["append", fixture.store, "--set", "s", "--rows", fixture.path("overflow.npy")], saying: "its byte count overflows a 64-bit size")
        try expectFailure(["tensors", "put", fixture.store, "--name", "t", fixture.path("ff.safetensors")],
                          saying: "header length 18446744073709551615 does not fit a 10-byte file")
        #expect(try fixture.latestVersion() == committed)
    }
}
