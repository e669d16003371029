/// A tensor in a ``TorchCheckpoint``: a dense, C-contiguous view of one of its storages.
public struct TorchTensor: @unchecked Sendable {
    public let elementType: ElementType
    public let shape: [Int]
    /// The tensor's bytes (its elements only, from its storage offset), into the file's mapping.
    public let data: UnsafeRawBufferPointer
}

/// A file written by `torch.save` (the zip format, PyTorch ≥ 1.6) that holds one tensor or a
/// list or tuple of tensors, read without executing anything.
///
/// The pickle in `<archive>/data.pkl` is interpreted by a small, strict reader that knows only
/// the opcodes `torch.save` emits for tensors (protocol 2) and only these callables:
/// `torch._utils._rebuild_tensor_v2`, the typed storages `torch.FloatStorage`, `HalfStorage`,
/// `BFloat16Storage`, `DoubleStorage` (what PyTorch 2.x still writes for persistent ids), and
/// `collections.OrderedDict` (the empty backward-hooks argument). Anything else — another
/// global, a legacy (non-zip) file, a non-contiguous tensor — is refused with what was found.
public final class TorchCheckpoint: @unchecked Sendable {
    public let path: String
    /// The tensors in the order the file holds them (one for a plain tensor).
    public let tensors: [TorchTensor]
    /// The mapped file the tensors point into; mapped lazily, so only what is read comes in.
    public let mapping: MappedFile

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(lazilyMapping: path)
        tensors = try Self.parse(mapping.bytes, path: path)
    }

    /// Parses the checkpoint whose bytes are `bytes`; the tensors point into `bytes`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws -> [TorchTensor] {
        func fail(_ message: String) -> InterchangeError { InterchangeError(path: path, message) }
        if bytes.count >= 2, bytes[0] == 0x80 {
            throw fail("a legacy (non-zip) torch.save file; re-save it with PyTorch ≥ 1.6 (the default zip format)")
        }
        let archive = try StoredZip(bytes: bytes, path: path)
        guard let pickleName = archive.names.first(where: { $0.hasSuffix("/data.pkl") && !$0.dropLast(9).contains("/") }),
              let pickle = archive.entries[pickleName] else {
            throw fail("not a torch.save archive: expected an entry <name>/data.pkl, found \(archive.names.prefix(5))")
        }
        let prefix = String(pickleName.dropLast("data.pkl".count))
        if let order = archive.entries[prefix + "byteorder"], String(decoding: order, as: UTF8.self) != "little" {
            throw fail("tensors saved in \(String(decoding: order, as: UTF8.self)) byte order; only little-endian is supported")
        }
        var machine = PickleMachine(bytes: pickle, path: path)
        let root = try machine.run()
        let references: [PickleMachine.TensorReference]
        switch root {
        case .tensor(let tensor): references = [tensor]
        case .list(let items), .tuple(let items):
            references = try items.enumerated().map { index, item in
                guard case .tensor(let tensor) = item else { throw fail("item \(index) of the saved list is \(item.kind), expected a tensor") }
                return tensor
            }
        default:
            throw fail("the file holds \(root.kind), expected a tensor or a list of tensors")
        }
        return try references.map { reference in
            let name = prefix + "data/" + reference.storageKey
            guard let storage = archive.entries[name] else { throw fail("storage \(reference.storageKey) (entry \(name)) is missing from the archive") }
            let width = reference.elementType.byteWidth
            guard storage.count == reference.storageElements * width else {
                throw fail("storage \(reference.storageKey) should hold \(reference.storageElements) \(reference.elementType.rawValue) elements (\(reference.storageElements * width) bytes), found \(storage.count) bytes")
            }
            // Contiguous (C order) only: stride[i] = product of the later sizes.
            var expected = 1
            for axis in stride(from: reference.shape.count - 1, through: 0, by: -1) {
                if reference.shape[axis] != 1 && reference.stride[axis] != expected {
                    throw fail("tensor of shape \(reference.shape) has strides \(reference.stride): only contiguous tensors are supported (save tensor.contiguous())")
                }
                expected = expected.multipliedReportingOverflow(by: reference.shape[axis]).partialValue
            }
            guard let count = reference.elementType.byteCount(shape: reference.shape) else {
                throw fail("tensor shape \(reference.shape) is out of range")
            }
            let elements = count / width
            guard reference.storageOffset >= 0, reference.storageOffset <= reference.storageElements,
                  elements <= reference.storageElements - reference.storageOffset else {
                throw fail("tensor of shape \(reference.shape) at offset \(reference.storageOffset) reaches past the end of its \(reference.storageElements)-element storage")
            }
            let start = reference.storageOffset * width
            return TorchTensor(elementType: reference.elementType, shape: reference.shape,
                               data: UnsafeRawBufferPointer(rebasing: storage[start..<(start + count)]))
        }
    }
}

/// The pickle virtual machine, restricted to what `torch.save` writes for tensors.
struct PickleMachine {
    struct TensorReference {
        let storageKey: String
        let elementType: ElementType
        let storageElements: Int
        let storageOffset: Int
        let shape: [Int]
        let stride: [Int]
    }
    struct StorageReference {
        let key: String
        let elementType: ElementType
        let elements: Int
    }

    indirect enum Value {
        case none, bool(Bool), int(Int), string(String)
        case tuple([Value]), list([Value]), dict
        case global(String), storage(StorageReference), tensor(TensorReference)

        var kind: String {
            switch self {
            case .none: "None"
            case .bool: "a bool"
            case .int: "an int"
            case .string: "a string"
            case .tuple: "a tuple"
            case .list: "a list"
            case .dict: "a dict"
            case .global(let name): "the global \(name)"
            case .storage: "a storage"
            case .tensor: "a tensor"
            }
        }
    }

    static let storageTypes: [String: ElementType] = [
        "torch.FloatStorage": .float32, "torch.HalfStorage": .float16,
        "torch.BFloat16Storage": .bfloat16, "torch.DoubleStorage": .float64,
    ]
    static let callables: Set<String> = ["torch._utils._rebuild_tensor_v2", "collections.OrderedDict"]
    /// Bounds the work a hostile pickle can ask for (a list of tensors is a few opcodes each).
    static let stackLimit = 1 << 20

    let bytes: UnsafeRawBufferPointer
    let path: String
    var position = 0
    var stack: [Value] = []
    var marks: [Int] = []
    var memo: [Int: Value] = [:]

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    func fail(_ message: String) -> InterchangeError {
        InterchangeError(path: path, "data.pkl: \(message)")
    }

    mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw fail("truncated pickle (no STOP opcode)") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else { throw fail("truncated pickle: \(count) bytes wanted at offset \(position)") }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    mutating func littleEndian(_ count: Int) throws -> UInt64 {
        let raw = try take(count)
        var value: UInt64 = 0
        for (index, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        return value
    }

    mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw fail("truncated pickle: unterminated GLOBAL") }
        defer { position = end + 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
    }

    mutating func push(_ value: Value) throws {
        guard stack.count < Self.stackLimit else { throw fail("pickle stack exceeds \(Self.stackLimit) items") }
        stack.append(value)
    }

    mutating func pop() throws -> Value {
        guard let value = stack.popLast() else { throw fail("pickle stack underflow at offset \(position)") }
        if let mark = marks.last, stack.count < mark { throw fail("pickle pops below a MARK at offset \(position)") }
        return value
    }

    mutating func popToMark() throws -> [Value] {
        guard let mark = marks.popLast(), mark <= stack.count else { throw fail("pickle has no MARK to pop to at offset \(position)") }
        defer { stack.removeSubrange(mark...) }
        return Array(stack[mark...])
    }

    mutating func run() throws -> Value {
        while true {
            let opcode = try byte()
            switch opcode {
            case 0x80: // PROTO
                let version = try byte()
                guard version <= 5 else { throw fail("pickle protocol \(version) is not supported") }
            case 0x2E: // STOP
                guard stack.count == 1, marks.isEmpty else { throw fail("pickle ends with \(stack.count) values on the stack, expected 1") }
                return stack[0]
            case 0x63: // GLOBAL module\nname\n
                let module = try line(), name = try line()
                let qualified = module + "." + name
                guard Self.callables.contains(qualified) || Self.storageTypes[qualified] != nil else {
                    throw fail("refusing global \(qualified): only tensors (torch._utils._rebuild_tensor_v2 with Float/Half/BFloat16/Double storages) are read")
                }
                try push(.global(qualified))
            case 0x28: // MARK
                marks.append(stack.count)
            case 0x29: try push(.tuple([])) // EMPTY_TUPLE
            case 0x5D: try push(.list([])) // EMPTY_LIST
            case 0x7D: try push(.dict) // EMPTY_DICT
            case 0x4E: try push(.none) // NONE
            case 0x88: try push(.bool(true)) // NEWTRUE
            case 0x89: try push(.bool(false)) // NEWFALSE
            case 0x74: try push(.tuple(try popToMark())) // TUPLE
            case 0x85: try push(.tuple([try pop()])) // TUPLE1
            case 0x86: // TUPLE2
                let second = try pop(), first = try pop()
                try push(.tuple([first, second]))
            case 0x87: // TUPLE3
                let third = try pop(), second = try pop(), first = try pop()
                try push(.tuple([first, second, third]))
            case 0x4B: try push(.int(Int(try byte()))) // BININT1
            case 0x4D: try push(.int(Int(try littleEndian(2)))) // BININT2
            case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try littleEndian(4))))) // BININT
            case 0x8A: // LONG1: n bytes, two's complement little-endian
                let count = Int(try byte())
                guard count <= 8 else { throw fail("integer of \(count) bytes is out of range") }
                let raw = try littleEndian(count)
                let value: Int64 = count == 0 ? 0 : (count == 8 ? Int64(bitPattern: raw) : Int64(bitPattern: raw << (64 - 8 * UInt64(count))) >> (64 - 8 * Int64(count)))
                try push(.int(Int(value)))
            case 0x58: // BINUNICODE
                let length = Int(try littleEndian(4))
                try push(.string(String(decoding: try take(length), as: UTF8.self)))
            case 0x8C: // SHORT_BINUNICODE
                let length = Int(try byte())
                try push(.string(String(decoding: try take(length), as: UTF8.self)))
            case 0x71: memo[Int(try byte())] = try peek() // BINPUT
            case 0x72: memo[Int(try littleEndian(4))] = try peek() // LONG_BINPUT
            case 0x94: memo[memo.count] = try peek() // MEMOIZE
            case 0x68: try push(try recall(Int(try byte()))) // BINGET
            case 0x6A: try push(try recall(Int(try littleEndian(4)))) // LONG_BINGET
            case 0x61: // APPEND
                let item = try pop()
                guard case .list(var items) = try pop() else { throw fail("APPEND to a value that is not a list") }
                items.append(item)
                try push(.list(items))
            case 0x65: // APPENDS
                let items = try popToMark()
                guard case .list(var list) = try pop() else { throw fail("APPENDS to a value that is not a list") }
                list.append(contentsOf: items)
                try push(.list(list))
            case 0x73: // SETITEM: torch writes none for a tensor or a list of tensors
                throw fail("refusing a dict: only a tensor or a list or tuple of tensors is read")
            case 0x75: // SETITEMS: only the empty kind torch writes for empty hooks
                let items = try popToMark()
                guard items.isEmpty, case .dict = try peek() else { throw fail("refusing a non-empty dict: only tensors are read") }
            case 0x51: // BINPERSID
                try push(.storage(try storage(from: try pop())))
            case 0x52: // REDUCE
                let arguments = try pop(), callable = try pop()
                try push(try call(callable, arguments))
            default:
                throw fail("refusing pickle opcode 0x\(String(opcode, radix: 16)) at offset \(position - 1): only what torch.save writes for tensors is read")
            }
        }
    }

    func peek() throws -> Value {
        guard let value = stack.last else { throw fail("pickle memoizes an empty stack at offset \(position)") }
        return value
    }

    func recall(_ index: Int) throws -> Value {
        guard let value = memo[index] else { throw fail("pickle refers to memo \(index), which was never stored") }
        return value
    }

    /// A persistent id `('storage', <storage type>, key, location, numel)`.
    func storage(from id: Value) throws -> StorageReference {
        guard case .tuple(let fields) = id, fields.count == 5, case .string("storage") = fields[0],
              case .global(let type) = fields[1], case .string(let key) = fields[2], case .int(let elements) = fields[4] else {
            throw fail("persistent id is not ('storage', type, key, location, numel)")
        }
        guard let elementType = Self.storageTypes[type] else { throw fail("storage type \(type) is not supported: expected Float, Half, BFloat16 or Double storage") }
        guard elements >= 0 else { throw fail("storage \(key) has \(elements) elements") }
        return StorageReference(key: key, elementType: elementType, elements: elements)
    }

    func call(_ callable: Value, _ arguments: Value) throws -> Value {
        guard case .global(let name) = callable, case .tuple(let values) = arguments else {
            throw fail("REDUCE of \(callable.kind) with \(arguments.kind): only torch._utils._rebuild_tensor_v2 is called")
        }
        switch name {
        case "collections.OrderedDict":
            guard values.isEmpty else { throw fail("refusing a non-empty OrderedDict: only tensors are read") }
            return .dict
        case "torch._utils._rebuild_tensor_v2":
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard values.count >= 6, case .storage(let storage) = values[0], case .int(let offset) = values[1],
                  case .tuple(let sizes) = values[2], case .tuple(let strides) = values[3], sizes.count == strides.count else {
                throw fail("_rebuild_tensor_v2 called with arguments that are not (storage, offset, size, stride, requires_grad, hooks)")
            }
            func integers(_ values: [Value]) throws -> [Int] {
                try values.map { value in
                    guard case .int(let number) = value, number >= 0 else { throw fail("tensor size or stride \(value.kind) is not a non-negative integer") }
                    return number
                }
            }
            return .tensor(TensorReference(storageKey: storage.key, elementType: storage.elementType, storageElements: storage.elements,
                                           storageOffset: offset, shape: try integers(sizes), stride: try integers(strides)))
        default:
            throw fail("refusing to call \(name)")
        }
    }
}
