// Measures the store's append and scan throughput for Benchmarks/run.sh, which runs the
// baselines (numpy + h5py, a C scan, STREAM) in the same session and prints the ratios.
//
//   gradsketch-bench append DIR ROWS.npy [float16|float32] REPEAT
//   gradsketch-bench scan STORE SET REPEAT THREADS
//
// Prints one JSON object per run on stdout.
import Foundation
import GradSketchInterchange
import GradSketchStore

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func emit(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: gradsketch-bench append DIR ROWS.npy DTYPE REPEAT | scan STORE SET REPEAT THREADS\n".utf8))
    exit(2)
}
do {
    switch arguments[1] {
    case "append":
        let directory = arguments[2], rowsPath = arguments[3]
        let dtype = try SketchDType(parsing: arguments[4])
        let repeats = Int(arguments[5]) ?? 3
        let file = try NumpyFile(path: rowsPath)
        let rows = try RowInput(bytes: file.data, elementType: file.elementType, rowCount: file.shape[0], k: file.shape[1])
        for run in 0..<repeats {
            let path = "\(directory)/append-\(run)"
            try? FileManager.default.removeItem(atPath: path)
            let store = try Store.create(at: path)
            sync()  // every run starts with no dirty pages left over from the one before
            let time = try seconds { try store.append(to: "bench", rows: rows, options: SketchSetOptions(dtype: dtype)) }
            emit(["what": dtype == .float32 ? "append" : "append-float16", "run": run, "seconds": time, "bytes": rows.rowCount * rows.k * dtype.byteWidth,
                  "input_bytes": file.data.count, "rows": rows.rowCount, "k": rows.k, "dtype": dtype.rawValue])
            // Keep the first store for the scan benchmark; drop the others to bound disk use.
            if run > 0 { try FileManager.default.removeItem(atPath: path) }
        }
    case "scan":
        let store = try Store(opening: arguments[2])
        let name = arguments[3]
        let repeats = Int(arguments[4]) ?? 10
        let threads = Int(arguments[5]) ?? 2
        let set = try store.sketchSet(name)
        var sum = 0.0
        // The first scan maps the rows and verifies their checksum (once per process).
        let first = try seconds { sum = try set.sumOfLiveValues(threads: threads) }
        let suffix = set.dtype == .float32 ? "" : "-float16"
        emit(["what": "scan-first" + suffix, "seconds": first, "bytes": set.rowCount * set.k * set.dtype.byteWidth, "sum": sum])
        for run in 0..<repeats {
            let time = try seconds { sum = try set.sumOfLiveValues(threads: threads) }
            emit(["what": "scan" + suffix, "run": run, "seconds": time, "bytes": set.rowCount * set.k * set.dtype.byteWidth, "sum": sum,
                  "mapped": try set.segments.allSatisfy { try $0.mappingStatus().mapped }])
        }
    default:
        FileHandle.standardError.write(Data("unknown benchmark \(arguments[1])\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("gradsketch-bench: \(error)\n".utf8))
    exit(1)
}
