import ArgumentParser
import Foundation
import GradSketchInterchange
import GradSketchStore

struct Tensors: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store model weights and weight deltas.",
        subcommands: [Put.self, Delta.self, List.self])

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store the tensors of .safetensors and .npy files as a new tensor set.",
            discussion: "Tensors of a .safetensors file keep their names; a .npy file becomes one tensor named after the file (without .npy). F16 stays float16; F32, BF16 (widened exactly) and F64 are stored as float32 unless --dtype says otherwise.")

        @OptionGroup var location: StoreArgument
        @Option(help: "Name of the new tensor set.") var name: String
        @Argument(help: "Input files (.safetensors or .npy).") var files: [String]
        @Option(help: "Stored dtype for every tensor: float16 or float32.") var dtype: String?
        @OptionGroup var output: OutputOptions

        struct Output: Encodable { let name: String, tensors: Int, contentHash: String, version: Int }

        func run() throws {
            try reportingErrors {
                guard !files.isEmpty else { throw ValidationError("expected at least one .safetensors or .npy file, found none") }
                let store = try Store(opening: location.store)
                var keepAlive: [AnyObject] = []
                var inputs: [TensorInput] = []
                for file in files {
                    if file.hasSuffix(".npy") {
                        let array = try NumpyFile(path: file)
                        keepAlive.append(array)
                        let stem = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
                        inputs.append(try TensorInput(name: stem, elementType: array.elementType, shape: array.shape, bytes: array.data))
                    } else {
                        let tensors = try SafetensorsFile(path: file)
                        keepAlive.append(tensors)
                        for tensor in tensors.tensors {
                            inputs.append(try TensorInput(name: tensor.name, elementType: tensor.elementType, shape: tensor.shape, bytes: tensor.data))
                        }
                    }
                }
                let version = try withExtendedLifetime(keepAlive) {
                    try store.putTensors(name, inputs, dtype: try dtype.map(SketchDType.init(parsing:)),
                                         detail: files.map { ($0 as NSString).lastPathComponent }.joined(separator: ", "))
                }
                let hash = try store.tensorSet(name, at: version).contentHash
                if output.json { printJSON(Output(name: name, tensors: inputs.count, contentHash: hash, version: version)); return }
                print("stored \(inputs.count) tensors as \(name) (\(hash)): version \(version)")
            }
        }
    }

    struct Delta: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Record the delta to − from of two stored tensor sets as a new tensor set (float32).")

        @OptionGroup var location: StoreArgument
        @Option(help: "Name of the new delta tensor set.") var name: String
        @Option(help: "The base tensor set.") var from: String
        @Option(help: "The tensor set the delta leads to.") var to: String
        @OptionGroup var output: OutputOptions

        struct Output: Encodable { let name: String, from: String, to: String, version: Int }

        func run() throws {
            try reportingErrors {
                let store = try Store(opening: location.store)
                let version = try store.recordDelta(name, from: from, to: to)
                if output.json { printJSON(Output(name: name, from: from, to: to, version: version)); return }
                print("recorded \(name) = \(to) − \(from): version \(version)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the tensors of a tensor set.")

        @OptionGroup var location: StoreArgument
        @Option(help: "Name of the tensor set.") var name: String
        @Option(help: "Read the store as of this version.") var at: Int?
        @OptionGroup var output: OutputOptions
        var json: Bool { output.json }

        func validate() throws { try requireVersion(at) }

        func run() throws {
            try reportingErrors {
                let set = try Store(opening: location.store).tensorSet(name, at: at)
                if json { printJSON(set.entry); return }
                print("\(name): \(set.kind), \(set.contentHash)")
                for tensor in set.entry.tensors {
                    let source = tensor.sourceDtype.map { " (from \($0))" } ?? ""
                    print("  \(tensor.name)  \(tensor.dtype)\(source)  \(tensor.shape)  \(tensor.checksum)")
                }
            }
        }
    }
}
