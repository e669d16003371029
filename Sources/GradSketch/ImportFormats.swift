import Foundation
import GradSketchStore
import GradSketchInterchange

// The source layouts of Spec/import.md: each turns a path into an ImportPlan (mapped files,
// where each row's bytes are, the ids), checking everything it can before a row is read.

/// Rows of one mapped source file: row `i` of the import is at `selectedRows[i]` (or `i`)
/// times `rowStride`, plus `columnOffset`, and is `k` elements wide.
final class ImportChunk {
    let file: MappedFile
    /// The file's data area: row 0 starts here.
    let bytes: UnsafeRawBufferPointer
    let rowCount: Int
    let rowStride: Int
    let columnOffset: Int
    let rowBytes: Int
    let selectedRows: [Int]?

    init(file: MappedFile, bytes: UnsafeRawBufferPointer, rowCount: Int, rowStride: Int, columnOffset: Int = 0,
         rowBytes: Int, selectedRows: [Int]? = nil) {
        self.file = file
        self.bytes = bytes
        self.rowCount = rowCount
        self.rowStride = rowStride
        self.columnOffset = columnOffset
        self.rowBytes = rowBytes
        self.selectedRows = selectedRows
    }

    var isContiguous: Bool { selectedRows == nil && columnOffset == 0 && rowStride == rowBytes }

    /// Lets the pages of rows already appended leave memory.
    func release(rows: Range<Int>) {
        guard !rows.isEmpty, let base = bytes.baseAddress, let fileBase = file.bytes.baseAddress else { return }
        let first = selectedRows?[rows.lowerBound] ?? rows.lowerBound
        let last = selectedRows?[rows.upperBound - 1] ?? (rows.upperBound - 1)
        let lead = base - fileBase
        // The advice covers whole pages, so a page shared with rows still to come may go too:
        // that costs a re-read from the page cache, never a wrong row (the mapping is shared
        // and read-only).
        file.advise(.finished, range: (lead + first * rowStride)..<(lead + last * rowStride + columnOffset + rowBytes))
    }
}

struct ImportPlan {
    var chunks: [ImportChunk] = []
    var elementType: ElementType = .float32
    var k = 0
    var ids: [String] = []
    var idsSource = "row-index"
    var sources: [String] = []
    var skippedRows = 0
    var projection: JSONValue?
    var totalRows: Int { chunks.reduce(0) { $0 + $1.rowCount } }

    static func make(format: ImportFormat, path: String, options: ImportOptions) throws -> ImportPlan {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(.invalidInput, "import source \(path) does not exist")
        }
        var plan: ImportPlan
        switch format {
        case .trak: plan = try TrakLayout.plan(path: path, options: options)
        case .less: plan = try LessLayout.plan(path: path, options: options)
        case .bergson: plan = try BergsonLayout.plan(path: path, options: options)
        case .npy, .safetensors: plan = try ShardLayout.plan(path: path, format: format, options: options)
        }
        guard plan.totalRows > 0 else { throw StoreError(.invalidInput, "\(path) holds no rows to import") }
        guard plan.ids.count == plan.totalRows else {
            throw StoreError(.invalidInput, "internal error: import planned \(plan.ids.count) ids for \(plan.totalRows) rows")
        }
        return plan
    }

    /// Adds a chunk, checking its width and type against the chunks before it.
    mutating func add(_ chunk: ImportChunk, elementType: ElementType, k: Int, source: String) throws {
        guard [.float16, .bfloat16, .float32, .float64].contains(elementType) else {
            throw StoreError(.invalidInput, "\(source): rows must be float16, bfloat16, float32 or float64, found \(elementType.rawValue)")
        }
        if chunks.isEmpty {
            self.elementType = elementType
            self.k = k
        } else {
            guard k == self.k else {
                throw StoreError(.invalidInput, "\(source): every source must have the same width: expected k = \(self.k) (as \(sources[0])), found k = \(k)")
            }
            guard elementType == self.elementType else {
                throw StoreError(.invalidInput, "\(source): every source must have the same dtype: expected \(self.elementType.rawValue) (as \(sources[0])), found \(elementType.rawValue)")
            }
        }
        chunks.append(chunk)
        sources.append(source)
    }

    /// Ids from `file` (one line per source row, `sourceRows` of them), keeping the rows of
    /// `selected` (global source-row indices), or the row indices themselves.
    mutating func resolveIDs(file: String?, sourceRows: Int, selected: [Int]?) throws {
        let rows = selected ?? Array(0..<sourceRows)
        if let file {
            let lines = try readIDs(file)
            guard lines.count == sourceRows else {
                throw StoreError(.invalidInput, "ids file \(file) must have one line per source row: expected \(sourceRows), found \(lines.count)")
            }
            ids = rows.map { lines[$0] }
            idsSource = file
        } else {
            ids = rows.map(String.init)
            idsSource = "row-index"
        }
    }
}

func readIDs(_ file: String) throws -> [String] {
    do { return try TextLines.read(file) } catch let error as InterchangeError {
        throw StoreError(.invalidInput, error.description)
    }
}

/// Reads a JSON file as a JSONValue object.
func readJSONObject(_ path: String) throws -> [String: JSONValue] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw StoreError(.invalidInput, "cannot read \(path)")
    }
    let parsed: JSONValue
    do { parsed = try JSONValue.parse(String(decoding: data, as: UTF8.self)) } catch {
        throw StoreError(.invalidInput, "\(path) is not valid JSON: \(error)")
    }
    guard case .object(let members) = parsed else { throw StoreError(.invalidInput, "\(path) must hold a JSON object") }
    return members
}

func integer(_ value: JSONValue?) -> Int? {
    switch value {
    case .integer(let number): Int(exactly: number)
    case .number(let number): Int(exactly: number)
    case .string(let text): Int(text)
    default: nil
    }
}

/// Names in natural order: digit runs compare as numbers ("part-2" before "part-10").
func naturallySorted(_ names: [String]) -> [String] {
    func runs(_ name: String) -> [(text: String, number: Int?)] {
        var result: [(String, Int?)] = []
        var current = "", digits = false
        for character in name {
            let isDigit = character.isASCII && character.isNumber
            if !current.isEmpty && isDigit != digits {
                result.append((current, digits ? Int(current) : nil))
                current = ""
            }
            digits = isDigit
            current.append(character)
        }
        if !current.isEmpty { result.append((current, digits ? Int(current) : nil)) }
        return result
    }
    return names.sorted { left, right in
        let a = runs(left), b = runs(right)
        for (x, y) in zip(a, b) {
            if let m = x.number, let n = y.number, m != n { return m < n }
            if x.text != y.text { return x.text < y.text }
        }
        return a.count < b.count
    }
}

/// A `.npy` file (or a TRAK `.mmap`, which is one) mapped lazily, with its header checked.
func lazyNumpy(_ path: String) throws -> (file: MappedFile, layout: NumpyFile.Layout, data: UnsafeRawBufferPointer) {
    do {
        let file = try MappedFile(lazilyMapping: path)
        let layout = try NumpyFile.parseLayout(file.bytes, path: path)
        return (file, layout, UnsafeRawBufferPointer(rebasing: file.bytes[layout.dataOffset...]))
    } catch let error as InterchangeError {
        throw StoreError(.invalidInput, error.description)
    }
}

// MARK: - TRAK

enum TrakLayout {
    static func plan(path: String, options: ImportOptions) throws -> ImportPlan {
        let metadataPath = path + "/metadata.json"
        guard FileManager.default.fileExists(atPath: metadataPath) else {
            throw StoreError(.invalidInput, "\(path) is not a TRAK save directory: metadata.json is missing")
        }
        let metadata = try readJSONObject(metadataPath)
        guard let trainSetSize = integer(metadata["train set size"]), trainSetSize >= 0 else {
            throw StoreError(.invalidInput, "\(metadataPath) has no integer \"train set size\"")
        }
        guard let projectionDimension = integer(metadata["JL dimension"]), projectionDimension > 0 else {
            throw StoreError(.invalidInput, "\(metadataPath) has no positive integer \"JL dimension\"")
        }
        let arrayName = options.array ?? "features"
        guard arrayName == "features" || arrayName == "grads" else {
            throw StoreError(.invalidInput, "TRAK array must be features or grads, found \(arrayName)")
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let modelIDs = names.compactMap { name -> Int? in
            guard let number = Int(name), String(number) == name,
                  FileManager.default.fileExists(atPath: "\(path)/\(name)/\(arrayName).mmap") else { return nil }
            return number
        }.sorted()
        let modelID: String
        if let given = options.modelID {
            guard FileManager.default.fileExists(atPath: "\(path)/\(given)/\(arrayName).mmap") else {
                throw StoreError(.invalidInput, "TRAK model id \(given) has no \(arrayName).mmap in \(path); model ids present: \(modelIDs)")
            }
            modelID = given
        } else {
            guard let first = modelIDs.first else {
                throw StoreError(.invalidInput, "no TRAK model id directory with \(arrayName).mmap in \(path)")
            }
            modelID = String(first)
        }
        let status = try? readJSONObject("\(path)/id_\(modelID).json")
        let modelStatus: [String: JSONValue]? = if case .object(let members)? = status?[modelID] { members } else { nil }
        if arrayName == "features", let modelStatus, integer(modelStatus["is_finalized"]) == 0 {
            throw StoreError(.invalidInput, "TRAK features of model id \(modelID) are not finalized (id_\(modelID).json: is_finalized = 0); finalize them in TRAK or import array=grads")
        }

        let arrayPath = "\(path)/\(modelID)/\(arrayName).mmap"
        let array = try lazyNumpy(arrayPath)
        guard array.layout.shape == [trainSetSize, projectionDimension] else {
            throw StoreError(.invalidInput, "\(arrayPath): metadata.json says shape [\(trainSetSize), \(projectionDimension)] (train set size, JL dimension), the file has \(array.layout.shape)")
        }
        guard array.layout.elementType == .float16 || array.layout.elementType == .float32 else {
            throw StoreError(.invalidInput, "\(arrayPath): expected float16 or float32 (TRAK's dtypes), found \(array.layout.elementType.rawValue)")
        }

        // Which rows were featurized: _is_featurized.mmap (int32 [n] or [n, 1]), else the
        // model's id_<n>.json saying all of them are.
        var selected: [Int]?
        let flagsPath = "\(path)/\(modelID)/_is_featurized.mmap"
        if FileManager.default.fileExists(atPath: flagsPath) {
            let flags = try lazyNumpy(flagsPath)
            guard flags.layout.elementType == .int32, flags.layout.shape == [trainSetSize] || flags.layout.shape == [trainSetSize, 1] else {
                throw StoreError(.invalidInput, "\(flagsPath): expected int32 of shape [\(trainSetSize)] or [\(trainSetSize), 1], found \(flags.layout.elementType.rawValue) \(flags.layout.shape)")
            }
            var rows: [Int] = []
            for row in 0..<trainSetSize where flags.data.loadUnaligned(fromByteOffset: row * 4, as: Int32.self) != 0 {
                rows.append(row)
            }
            selected = rows.count == trainSetSize ? nil : rows
        } else if let modelStatus, integer(modelStatus["is_featurized"]) == 1 {
            selected = nil
        } else {
            throw StoreError(.invalidInput, "cannot tell which rows of TRAK model id \(modelID) are featurized: \(flagsPath) is missing and id_\(modelID).json does not say is_featurized = 1")
        }
        let count = selected?.count ?? trainSetSize
        guard count > 0 else { throw StoreError(.invalidInput, "TRAK model id \(modelID) has no featurized rows (\(flagsPath) is all zeros)") }

        var plan = ImportPlan()
        let width = array.layout.elementType.byteWidth * projectionDimension
        try plan.add(ImportChunk(file: array.file, bytes: array.data, rowCount: count, rowStride: width, rowBytes: width, selectedRows: selected),
                     elementType: array.layout.elementType, k: projectionDimension, source: arrayPath)
        plan.skippedRows = trainSetSize - count
        try plan.resolveIDs(file: options.ids, sourceRows: trainSetSize, selected: selected)
        var projection: [String: JSONValue] = [
            "tool": .string("trak"), "proj_dim": JSONValue(projectionDimension), "model_id": .string(modelID),
            "array": .string(arrayName), "train_set_size": JSONValue(trainSetSize),
        ]
        if let type = metadata["JL matrix type"] { projection["type"] = type }
        for key in ["seed", "proj_seed", "projector_seed"] { if let value = metadata[key] { projection["seed"] = value } }
        plan.projection = .object(projection)
        return plan
    }
}

// MARK: - LESS

enum LessLayout {
    /// n of a chunk file named `grads-<n>.pt`.
    static func chunkNumber(_ name: String) -> Int? {
        guard name.hasPrefix("grads-"), name.hasSuffix(".pt") else { return nil }
        let digits = name.dropFirst("grads-".count).dropLast(".pt".count)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    static func plan(path given: String, options: ImportOptions) throws -> ImportPlan {
        var path = given
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if isDirectory.boolValue {
            // The output root of collect_grad_reps holds one dim<N>/ per projection width.
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            let dimensions = naturallySorted(names.filter { $0.hasPrefix("dim") && Int($0.dropFirst(3)) != nil })
            if !names.contains(where: { chunkNumber($0) != nil }), !dimensions.isEmpty {
                guard dimensions.count == 1 else {
                    throw StoreError(.invalidInput, "\(path) holds gradients of several projection widths (\(dimensions.joined(separator: ", "))): give one of them")
                }
                path += "/" + dimensions[0]
            }
        }
        let files: [String]
        let directory: String
        if isDirectory.boolValue {
            directory = path
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            let chunks = names.compactMap { name in chunkNumber(name).map { (name, $0) } }.sorted { $0.1 < $1.1 }
            guard !chunks.isEmpty else {
                throw StoreError(.invalidInput, "no grads-<n>.pt chunks in \(path); to import a merged file, give its path (e.g. \(path)/all_orig.pt)")
            }
            files = chunks.map { path + "/" + $0.0 }
        } else {
            directory = PathText.parent(of: path)
            files = [path]
        }
        // LESS writes <output>/dim<proj_dim>/: the directory name states the projection width.
        let directoryName = ((directory as NSString).standardizingPath as NSString).lastPathComponent
        let statedDimension = directoryName.hasPrefix("dim") ? Int(directoryName.dropFirst(3)) : nil

        var plan = ImportPlan()
        for file in files {
            let checkpoint: TorchCheckpoint
            do { checkpoint = try TorchCheckpoint(path: file) } catch let error as InterchangeError {
                throw StoreError(.invalidInput, error.description)
            }
            for (index, tensor) in checkpoint.tensors.enumerated() {
                let name = checkpoint.tensors.count == 1 ? file : "\(file) (tensor \(index))"
                guard tensor.shape.count == 2 else {
                    throw StoreError(.invalidInput, "\(name): expected a 2-D tensor [N, proj_dim], found shape \(tensor.shape)")
                }
                let width = tensor.shape[1] * tensor.elementType.byteWidth
                try plan.add(ImportChunk(file: checkpoint.mapping, bytes: tensor.data, rowCount: tensor.shape[0], rowStride: width, rowBytes: width),
                             elementType: tensor.elementType, k: tensor.shape[1], source: name)
            }
        }
        if let statedDimension, statedDimension != plan.k {
            throw StoreError(.invalidInput, "\(directory) is named for proj_dim \(statedDimension), the tensors have \(plan.k) columns")
        }
        try plan.resolveIDs(file: options.ids, sourceRows: plan.totalRows, selected: nil)
        var projection: [String: JSONValue] = ["tool": .string("less")]
        if let statedDimension { projection["proj_dim"] = JSONValue(statedDimension) }
        plan.projection = .object(projection)
        return plan
    }
}

// MARK: - Bergson

enum BergsonLayout {
    static let baseTypes: [String: ElementType] = [
        "<f2": .float16, "<f4": .float32, "<f8": .float64, "|f2": .float16, "=f2": .float16, "=f4": .float32, "=f8": .float64,
        "float16": .float16, "float32": .float32, "float64": .float64, "bfloat16": .bfloat16,
    ]

    struct Shard {
        let directory: String
        let rows: Int
        let modules: [(name: String, size: Int)]
        let elementType: ElementType
        let itemSize: Int
    }

    static func readShard(_ directory: String) throws -> Shard {
        let infoPath = directory + "/info.json"
        let info = try readJSONObject(infoPath)
        guard let rows = integer(info["num_grads"]), rows >= 0 else { throw StoreError(.invalidInput, "\(infoPath) has no integer num_grads") }
        guard case .string(let base)? = info["base_dtype"], let elementType = baseTypes[base] else {
            throw StoreError(.invalidInput, "\(infoPath): base_dtype must be one of <f2, <f4, <f8, found \(info["base_dtype"]?.jsonText ?? "nothing")")
        }
        // Module order is the structured dtype's field order (`names`); sizes from `formats`
        // "(n,)<f4", checked against grad_sizes.
        guard case .object(let dtype)? = info["dtype"], case .array(let names)? = dtype["names"], case .array(let formats)? = dtype["formats"],
              names.count == formats.count, !names.isEmpty else {
            throw StoreError(.invalidInput, "\(infoPath): dtype must be an object with names and formats of equal, non-zero length")
        }
        let sizes: [String: JSONValue] = if case .object(let given)? = info["grad_sizes"] { given } else { [:] }
        var modules: [(String, Int)] = []
        for (nameValue, formatValue) in zip(names, formats) {
            guard case .string(let name) = nameValue, case .string(let format) = formatValue,
                  format.hasPrefix("("), let close = format.firstIndex(of: ")") else {
                throw StoreError(.invalidInput, "\(infoPath): dtype field \(nameValue.jsonText) has format \(formatValue.jsonText), expected \"(n,)\(base)\"")
            }
            let inner = format[format.index(after: format.startIndex)..<close].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
            guard let size = Int(inner), size > 0, String(format[format.index(after: close)...]) == base else {
                throw StoreError(.invalidInput, "\(infoPath): dtype field \(name) has format \(format), expected \"(n,)\(base)\"")
            }
            if let stated = sizes[name], integer(stated) != size {
                throw StoreError(.invalidInput, "\(infoPath): grad_sizes says \(name) has \(stated.jsonText) columns, its dtype format says \(size)")
            }
            modules.append((name, size))
        }
        let columns = modules.reduce(0) { $0 + $1.1 }
        let itemSize = columns * elementType.byteWidth
        if let stated = integer(dtype["itemsize"]), stated != itemSize {
            throw StoreError(.invalidInput, "\(infoPath): itemsize \(stated) differs from the modules' \(columns) columns × \(elementType.byteWidth) bytes = \(itemSize)")
        }
        return Shard(directory: directory, rows: rows, modules: modules, elementType: elementType, itemSize: itemSize)
    }

    static func plan(path: String, options: ImportOptions) throws -> ImportPlan {
        var directories: [String]
        if FileManager.default.fileExists(atPath: path + "/info.json") {
            directories = [path]
        } else {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            directories = naturallySorted(names.filter { FileManager.default.fileExists(atPath: "\(path)/\($0)/info.json") }).map { path + "/" + $0 }
            guard !directories.isEmpty else { throw StoreError(.invalidInput, "\(path) is not a Bergson index: no info.json in it or its subdirectories") }
        }
        var plan = ImportPlan()
        var first: Shard?
        for directory in directories {
            let shard = try readShard(directory)
            if let first, first.modules.map(\.name) != shard.modules.map(\.name) || first.modules.map(\.size) != shard.modules.map(\.size) {
                throw StoreError(.invalidInput, "\(directory)/info.json: modules differ from \(first.directory)/info.json")
            }
            first = first ?? shard
            var columnOffset = 0, k = shard.itemSize / shard.elementType.byteWidth
            if let module = options.module {
                guard let index = shard.modules.firstIndex(where: { $0.name == module }) else {
                    throw StoreError(.invalidInput, "Bergson index \(directory) has no module \"\(module)\"; modules: \(shard.modules.map(\.name).joined(separator: ", "))")
                }
                columnOffset = shard.modules[..<index].reduce(0) { $0 + $1.size } * shard.elementType.byteWidth
                k = shard.modules[index].size
            }
            let gradientsPath = directory + "/gradients.bin"
            let file: MappedFile
            do { file = try MappedFile(lazilyMapping: gradientsPath) } catch let error as InterchangeError {
                throw StoreError(.invalidInput, error.description)
            }
            let (expected, overflow) = shard.rows.multipliedReportingOverflow(by: shard.itemSize)
            guard !overflow, file.count == expected else {
                throw StoreError(.invalidInput, "\(gradientsPath): info.json says \(shard.rows) rows of \(shard.itemSize) bytes (\(expected) bytes), the file has \(file.count) bytes")
            }
            guard shard.rows > 0 else { continue }
            try plan.add(ImportChunk(file: file, bytes: file.bytes, rowCount: shard.rows, rowStride: shard.itemSize, columnOffset: columnOffset,
                                     rowBytes: k * shard.elementType.byteWidth),
                         elementType: shard.elementType, k: k, source: gradientsPath)
        }
        try plan.resolveIDs(file: options.ids, sourceRows: plan.totalRows, selected: nil)
        var projection: [String: JSONValue] = [
            "tool": .string("bergson"),
            "modules": .array(first!.modules.map { .string($0.name) }),
            "grad_sizes": .object(Dictionary(uniqueKeysWithValues: first!.modules.map { ($0.name, JSONValue($0.size)) })),
        ]
        if let module = options.module { projection["module"] = .string(module) }
        plan.projection = .object(projection)
        return plan
    }
}

// MARK: - .npy / .safetensors shards

enum ShardLayout {
    static func plan(path: String, format: ImportFormat, options: ImportOptions) throws -> ImportPlan {
        let suffix = format == .npy ? ".npy" : ".safetensors"
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        let files: [String]
        if isDirectory.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = naturallySorted(names.filter { $0.hasSuffix(suffix) }).map { path + "/" + $0 }
            guard !files.isEmpty else { throw StoreError(.invalidInput, "no \(suffix) files in \(path)") }
        } else {
            guard path.hasSuffix(suffix) else { throw StoreError(.invalidInput, "\(path) is not a \(suffix) file") }
            files = [path]
        }
        var plan = ImportPlan()
        var shardRows: [Int] = []
        for file in files {
            let chunk: ImportChunk, elementType: ElementType, shape: [Int]
            do {
                if format == .npy {
                    let array = try lazyNumpy(file)
                    elementType = array.layout.elementType
                    shape = array.layout.shape
                    guard shape.count == 2 else { throw StoreError(.invalidInput, "\(file): expected a 2-D array [N, k], found shape \(shape)") }
                    let width = shape[1] * elementType.byteWidth
                    chunk = ImportChunk(file: array.file, bytes: array.data, rowCount: shape[0], rowStride: width, rowBytes: width)
                } else {
                    let mapped = try MappedFile(lazilyMapping: file)
                    let layout = try SafetensorsFile.parseLayout(mapped.bytes, path: file)
                    let tensor: SafetensorsFile.Layout.Tensor
                    if let wanted = options.tensor {
                        guard let found = layout.tensors.first(where: { $0.name == wanted }) else {
                            throw StoreError(.invalidInput, "\(file) has no tensor \"\(wanted)\"; tensors: \(layout.tensors.map(\.name).joined(separator: ", "))")
                        }
                        tensor = found
                    } else {
                        let candidates = layout.tensors.filter { $0.shape.count == 2 }
                        guard candidates.count == 1 else {
                            throw StoreError(.invalidInput, "\(file) holds \(candidates.count) 2-D tensors (\(candidates.map(\.name).joined(separator: ", "))): name one with the tensor option")
                        }
                        tensor = candidates[0]
                    }
                    elementType = tensor.elementType
                    shape = tensor.shape
                    guard shape.count == 2 else { throw StoreError(.invalidInput, "\(file): tensor \(tensor.name) must be 2-D [N, k], found shape \(shape)") }
                    let width = shape[1] * elementType.byteWidth
                    chunk = ImportChunk(file: mapped, bytes: UnsafeRawBufferPointer(rebasing: mapped.bytes[tensor.byteRange]),
                                        rowCount: shape[0], rowStride: width, rowBytes: width)
                }
            } catch let error as InterchangeError {
                throw StoreError(.invalidInput, error.description)
            }
            shardRows.append(shape[0])
            guard shape[0] > 0 else { continue }
            try plan.add(chunk, elementType: elementType, k: shape[1], source: file)
        }
        // Ids: the option, else the directory's ids.txt, else one <stem>.ids.txt per shard.
        let directory = isDirectory.boolValue ? path : PathText.parent(of: path)
        let perShard = files.map { ($0 as NSString).deletingPathExtension + ".ids.txt" }
        let present = perShard.filter { FileManager.default.fileExists(atPath: $0) }
        let shared = directory + "/ids.txt"
        if let file = options.ids {
            try plan.resolveIDs(file: file, sourceRows: plan.totalRows, selected: nil)
        } else if isDirectory.boolValue, FileManager.default.fileExists(atPath: shared) {
            guard present.isEmpty else {
                throw StoreError(.invalidInput, "\(directory) has both ids.txt and per-shard ids files (\(present[0])): keep one or give the ids option")
            }
            try plan.resolveIDs(file: shared, sourceRows: plan.totalRows, selected: nil)
        } else if !present.isEmpty {
            guard present.count == files.count else {
                let missing = perShard.filter { !FileManager.default.fileExists(atPath: $0) }
                throw StoreError(.invalidInput, "per-shard ids files must exist for every shard or none: missing \(missing.prefix(3).joined(separator: ", "))")
            }
            var ids: [String] = []
            for (file, rows) in zip(perShard, shardRows) {
                let lines = try readIDs(file)
                guard lines.count == rows else {
                    throw StoreError(.invalidInput, "ids file \(file) must have one line per row of its shard: expected \(rows), found \(lines.count)")
                }
                ids += lines
            }
            plan.ids = ids
            plan.idsSource = "per-shard <shard>.ids.txt"
        } else {
            try plan.resolveIDs(file: nil, sourceRows: plan.totalRows, selected: nil)
        }
        return plan
    }
}
