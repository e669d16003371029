import Foundation
import GradSketchFuzzTargets

// Built two ways (Tests/Fuzz/run.sh):
// - with -DFUZZING and -sanitize=fuzzer,address: a libFuzzer target; libFuzzer supplies
//   main, and GRADSKETCH_FUZZ_TARGET names the parser;
// - without: `gradsketch-fuzz TARGET FILE...` replays inputs (a crash file, a corpus)
//   through the same code and prints each outcome.

#if FUZZING
/// The parser this process fuzzes, read once from GRADSKETCH_FUZZ_TARGET.
let fuzzedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["GRADSKETCH_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        fatalError("set GRADSKETCH_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue)), found \"\(name)\"")
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if case .violated(let reason) = fuzzedTarget.run(bytes) {
        fatalError("\(fuzzedTarget.rawValue): \(reason)")
    }
    return 0
}
#else
@main
enum Replay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name), arguments.count >= 2 else {
            FileHandle.standardError.write(Data("usage: gradsketch-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE...\n".utf8))
            exit(2)
        }
        var violations = 0
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                print("\(path): cannot read"); violations += 1; continue
            }
            let outcome = data.withUnsafeBytes { target.run($0) }
            switch outcome {
            case .accepted: print("\(path): accepted")
            case .refused(let reason): print("\(path): refused: \(reason)")
            case .violated(let reason): print("\(path): VIOLATED: \(reason)"); violations += 1
            }
        }
        exit(violations == 0 ? 0 : 1)
    }
}
#endif
