import CMPI
public import GradSketchDistributed
import GradSketchStore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `Collective` over MPI_COMM_WORLD: what `gradsketch-mpi` runs on under mpirun or srun.
///
/// One per process (MPI can be initialised once); ``MPIRuntime/shared`` holds it. Calls come
/// from one thread at a time (MPI_THREAD_FUNNELED: the thread that initialised MPI, in
/// practice the main thread). Every MPI error comes back as a ``StoreError`` of code `.io`
/// naming the MPI call and MPI's own error text: COMM_WORLD's handler is MPI_ERRORS_RETURN,
/// so a failed call does not abort the job behind the caller's back.
public final class MPICollective: Collective {
    public let rank: Int
    public let size: Int
    public let host: String
    /// Set once MPI_Finalize has run (or was found to have run), so `finalize` is idempotent.
    private let finalized = Mutex(false)

    /// The largest message one MPI call carries here: counts and displacements are C ints.
    private static let maximumCount = Int(Int32.max)

    private init(rank: Int, size: Int, host: String) {
        self.rank = rank
        self.size = size
        self.host = host
    }

    /// Initialises MPI (MPI_Init_thread, MPI_THREAD_FUNNELED) and makes COMM_WORLD return
    /// errors. Throws if MPI was already initialised in this process (use ``MPIRuntime/shared``)
    /// or if the library cannot give the thread level asked for.
    ///
    /// The corresponding C functions are `MPI_Init_thread` and `MPI_Comm_set_errhandler`.
    public static func initialize() throws -> MPICollective {
        var already: Int32 = 0
        try check(MPI_Initialized(&already), "MPI_Initialized")
        guard already == 0 else {
            throw StoreError(.invalidInput, "MPI is already initialised in this process; expected one MPICollective per process (use MPIRuntime.shared)")
        }
        var provided: Int32 = 0
        let requested = cmpi_thread_funneled()
        try check(MPI_Init_thread(nil, nil, requested, &provided), "MPI_Init_thread")
        // MPI's thread levels are ordered: a larger one includes the smaller.
        guard provided >= requested else {
            MPI_Finalize()
            throw StoreError(.io, "MPI_Init_thread: asked for MPI_THREAD_FUNNELED (\(requested)), the MPI library provides only level \(provided)")
        }
        let world = cmpi_comm_world()
        try check(MPI_Comm_set_errhandler(world, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try check(MPI_Comm_rank(world, &rank), "MPI_Comm_rank")
        try check(MPI_Comm_size(world, &size), "MPI_Comm_size")
        return MPICollective(rank: Int(rank), size: Int(size), host: try hostName())
    }

    /// `GRADSKETCH_HOST` when set and not empty (the test hosts set it per network namespace),
    /// else MPI_Get_processor_name.
    private static func hostName() throws -> String {
        if let name = getenv("GRADSKETCH_HOST").map({ String(cString: $0) }), !name.isEmpty { return name }
        var buffer = [CChar](repeating: 0, count: Int(cmpi_max_processor_name()) + 1)
        var length: Int32 = 0
        try check(MPI_Get_processor_name(&buffer, &length), "MPI_Get_processor_name")
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs MPI_Finalize once; later calls (and calls after someone else finalised) do nothing.
    /// Every rank must call it, after its last collective.
    public func finalize() {
        finalized.withLock { done in
            guard !done else { return }
            done = true
            var already: Int32 = 0
            MPI_Finalized(&already)
            if already == 0 { MPI_Finalize() }
        }
    }

    /// Ends every rank of the job (MPI_Abort on COMM_WORLD) with `code`: for a rank that
    /// cannot take part in the remaining collectives, so the others do not wait forever.
    public func abort(code: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), code)
        // MPI_Abort does not return in OpenMPI; should one ever return, still end this rank.
        exit(code)
    }

    // MARK: - Collective

    public func barrier() throws {
        try Self.check(MPI_Barrier(cmpi_comm_world()), "MPI_Barrier")
    }

    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        // Lengths first (every rank learns every length), then the bytes at those displacements.
        let lengths = try allGatherLengths(bytes.count)
        let total = lengths.reduce(0, +)
        guard total <= Self.maximumCount else {
            throw StoreError(.invalidInput, "MPI_Allgatherv: the ranks' messages total \(total) bytes, more than one MPI call carries (\(Self.maximumCount)); rank lengths \(lengths)")
        }
        var counts = [Int32](), displacements = [Int32]()
        var offset = 0
        for length in lengths {
            counts.append(Int32(length))
            displacements.append(Int32(offset))
            offset += length
        }
        // At least one byte, so no buffer address is nil (MPI may reject a null buffer).
        var received = [UInt8](repeating: 0, count: max(total, 1))
        let sendByte: [UInt8] = bytes.isEmpty ? [0] : bytes
        try sendByte.withUnsafeBufferPointer { send in
            try received.withUnsafeMutableBufferPointer { receive in
                try Self.check(
                    MPI_Allgatherv(send.baseAddress, Int32(bytes.count), cmpi_byte(),
                                   receive.baseAddress, counts, displacements, cmpi_byte(), cmpi_comm_world()),
                    "MPI_Allgatherv")
            }
        }
        return lengths.indices.map { index in
            let start = Int(displacements[index])
            return Array(received[start ..< start + lengths[index]])
        }
    }

    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        guard (0 ..< size).contains(root) else {
            throw StoreError(.invalidInput, "broadcast root must be a rank in 0..<\(size), found \(root)")
        }
        // The length first: the other ranks do not know it.
        var length = [Int64(rank == root ? bytes.count : 0)]
        try length.withUnsafeMutableBufferPointer { buffer in
            try Self.check(MPI_Bcast(buffer.baseAddress, 1, cmpi_int64(), Int32(root), cmpi_comm_world()), "MPI_Bcast (length)")
        }
        let count = Int(length[0])
        var data = rank == root ? bytes : [UInt8](repeating: 0, count: count)
        guard count > 0 else { return data }
        // In pieces below the C int count limit, so any length a process can hold goes through.
        let piece = 1 << 30
        try data.withUnsafeMutableBufferPointer { buffer in
            var start = 0
            while start < count {
                let n = min(piece, count - start)
                try Self.check(
                    MPI_Bcast(buffer.baseAddress! + start, Int32(n), cmpi_byte(), Int32(root), cmpi_comm_world()),
                    "MPI_Bcast (\(n) bytes at offset \(start))")
                start += n
            }
        }
        return data
    }

    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        try allReduce(values, type: cmpi_double(), name: "double")
    }

    public func allReduceSum(_ values: [Int64]) throws -> [Int64] {
        try allReduce(values, type: cmpi_int64(), name: "int64")
    }

    // MARK: - Helpers

    /// Every rank's `length`, in rank order.
    private func allGatherLengths(_ length: Int) throws -> [Int] {
        var mine = Int64(length)
        var all = [Int64](repeating: 0, count: size)
        try all.withUnsafeMutableBufferPointer { buffer in
            try Self.check(MPI_Allgather(&mine, 1, cmpi_int64(), buffer.baseAddress, 1, cmpi_int64(), cmpi_comm_world()), "MPI_Allgather (lengths)")
        }
        return all.map { Int($0) }
    }

    /// Element-wise MPI_SUM of equal-length arrays. The lengths are compared first (one small
    /// MPI_Allreduce of the largest and the negated smallest length), so unequal lengths are
    /// an error on every rank instead of a truncation error on some and a hang on others.
    private func allReduce<Element: BitwiseCopyable>(_ values: [Element], type: MPI_Datatype, name: String) throws -> [Element] {
        var bounds: [Int64] = [Int64(values.count), -Int64(values.count)]
        var reducedBounds: [Int64] = [0, 0]
        try Self.check(MPI_Allreduce(&bounds, &reducedBounds, 2, cmpi_int64(), cmpi_max(), cmpi_comm_world()), "MPI_Allreduce (lengths)")
        let longest = Int(reducedBounds[0]), shortest = Int(-reducedBounds[1])
        guard longest == shortest else {
            throw StoreError(.invalidInput, "allReduceSum: every rank must pass the same number of values; the ranks passed between \(shortest) and \(longest) (this rank \(values.count))")
        }
        guard values.count <= Self.maximumCount else {
            throw StoreError(.invalidInput, "allReduceSum: \(values.count) values, more than one MPI call carries (\(Self.maximumCount))")
        }
        guard !values.isEmpty else { return [] }
        var result = values
        try values.withUnsafeBufferPointer { send in
            try result.withUnsafeMutableBufferPointer { receive in
                try Self.check(
                    MPI_Allreduce(send.baseAddress, receive.baseAddress, Int32(values.count), type, cmpi_sum(), cmpi_comm_world()),
                    "MPI_Allreduce (sum of \(values.count) \(name))")
            }
        }
        return result
    }

    /// Throws a ``StoreError`` naming `call` and MPI's text for `code` unless it is MPI_SUCCESS.
    private static func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
        guard code != cmpi_success() else { return }
        throw StoreError(.io, "\(call()) failed: \(errorString(code)) (MPI error \(code))")
    }

    /// MPI_Error_string of `code`.
    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &buffer, &length) == cmpi_success() else { return "unknown MPI error" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
