import ArgumentParser
import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchStore

struct Shard: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and fill sharded stores (Spec/format.md, \"Sharded stores\").",
        discussion: """
        A sharded store is a directory holding only gradsketch-shards.json: the list of its shards, each an ordinary \
        store with a name, a path (absolute or relative to the map's directory), the host whose local disk holds it \
        (or none: a filesystem every host reads) and its store-id. The distributed commands (gradsketch-mpi) search \
        every shard where it lives; the shard's position in the map is the shard index in their answers.
        """,
        subcommands: [CreateShards.self, CreateLocalShards.self, ListShards.self, SplitStore.self])

    /// This process's host name as the distributed commands see it (contract §2): the
    /// environment variable GRADSKETCH_HOST when set, else the system's host name.
    static var defaultHost: String {
        if let host = ProcessInfo.processInfo.environment["GRADSKETCH_HOST"], !host.isEmpty { return host }
        // gethostname, as MPI_Get_processor_name reports it (no name lookup).
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count - 1)
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    struct ShardOutput: Encodable {
        let index: Int, name: String, host: String?, path: String, resolvedPath: String, storeId: String, local: Bool
        /// For a local shard: "ok", or why it cannot be opened; nil for a shard on another host.
        let status: String?
        let latestVersion: Int?
        /// Live rows per sketch set at the latest version (local shards that open).
        let sets: [String: Int]?
    }

    /// Describes every shard of `sharded`, opening the ones local to `host`.
    static func describe(_ sharded: ShardedStore, host: String, open: Bool) -> [ShardOutput] {
        sharded.map.shards.enumerated().map { index, shard in
            let local = sharded.isLocal(index, host: host)
            var status: String?, latest: Int?, sets: [String: Int]?
            if local && open {
                do {
                    let snapshot = try sharded.openShard(index).snapshot()
                    latest = snapshot.version
                    sets = try Dictionary(uniqueKeysWithValues: snapshot.sketchSetNames.map { ($0, try snapshot.sketchSet($0).rows) })
                    status = "ok"
                } catch let error as StoreError {
                    status = error.message
                } catch {
                    status = "\(error)"
                }
            }
            return ShardOutput(index: index, name: shard.name, host: shard.host, path: shard.path, resolvedPath: sharded.path(of: index),
                               storeId: shard.storeID, local: local, status: status, latestVersion: latest, sets: sets)
        }
    }

    static func printText(_ shards: [ShardOutput], directory: String) {
        print("sharded store \(directory): \(shards.count) shard\(shards.count == 1 ? "" : "s")")
        for shard in shards {
            var line = "  [\(shard.index)] \(shard.name)  \(shard.host.map { "host \($0)" } ?? "shared")  \(shard.resolvedPath)  id \(shard.storeId)"
            if let status = shard.status {
                line += status == "ok" ? "  v\(shard.latestVersion ?? 0)" : "  UNAVAILABLE: \(status)"
                if let sets = shard.sets, !sets.isEmpty {
                    line += "  " + sets.keys.sorted().map { "\($0)=\(sets[$0]!) rows" }.joined(separator: ", ")
                }
            } else if !shard.local {
                line += "  (on another host)"
            }
            print(line)
        }
    }
}

struct CreateShards: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a sharded store: its map, and the shard stores that live on this host.",
        discussion: """
        Each --shard NAME=PATH[@HOST] names one shard, in shard-index order. PATH is absolute or relative to DIR; the \
        text after the last @ is the host (omit it for a shard every host reads). A local shard (no host, or this \
        host) whose path holds a store is adopted with its store-id; otherwise a new store is made there. A shard on \
        another host gets a store-id in the map now; run `gradsketch shard create-local DIR` on that host (with the \
        map copied there) to make its store with that id.
        """)

    @Argument(help: "Directory of the new sharded store (new, or empty).") var directory: String
    @Option(name: .customLong("shard"), help: ArgumentHelp("A shard NAME=PATH[@HOST]. Repeatable; order is the shard index.", valueName: "name=path[@host]"))
    var shards: [String] = []
    @Option(help: "This host's name (default: $GRADSKETCH_HOST, else the system host name).") var host: String?
    @OptionGroup var output: OutputOptions

    static func parse(_ text: String) throws -> (name: String, host: String?, path: String) {
        let (name, rest) = try splitPair(text, option: "--shard")
        guard let at = rest.lastIndex(of: "@") else { return (name, nil, rest) }
        let host = String(rest[rest.index(after: at)...])
        guard !host.isEmpty else { throw ValidationError("--shard \(text): expected a host after @, found none") }
        return (name, host, String(rest[..<at]))
    }

    func run() throws {
        guard !shards.isEmpty else { throw ValidationError("expected at least one --shard NAME=PATH[@HOST]") }
        let specs = try shards.map(CreateShards.parse)
        try reportingErrors {
            let host = host ?? Shard.defaultHost
            let sharded = try ShardedStore.create(at: directory, shards: specs, host: host)
            let described = Shard.describe(sharded, host: host, open: true)
            if output.json { printJSON(ListShards.Output(directory: sharded.directory, host: host, shards: described)); return }
            Shard.printText(described, directory: sharded.directory)
        }
    }
}

struct CreateLocalShards: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-local",
        abstract: "Make the stores of this host's shards that do not exist yet, with the store-ids the map gives them.")

    @Argument(help: "Directory of the sharded store.") var directory: String
    @Option(help: "This host's name (default: $GRADSKETCH_HOST, else the system host name).") var host: String?
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let directory: String, host: String, created: [String] }

    func run() throws {
        try reportingErrors {
            let host = host ?? Shard.defaultHost
            let sharded = try ShardedStore.open(at: directory)
            let created = try sharded.createLocalShards(host: host).map { sharded.map.shards[$0].name }
            if output.json { printJSON(Output(directory: sharded.directory, host: host, created: created)); return }
            print(created.isEmpty ? "no shard to create on host \(host)" : "created on host \(host): \(created.joined(separator: ", "))")
        }
    }
}

struct ListShards: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List a sharded store's shards; open the ones this host reaches and show their versions and sets.")

    @Argument(help: "Directory of the sharded store.") var directory: String
    @Option(help: "This host's name (default: $GRADSKETCH_HOST, else the system host name).") var host: String?
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let directory: String, host: String, shards: [Shard.ShardOutput] }

    func run() throws {
        try reportingErrors {
            let host = host ?? Shard.defaultHost
            let sharded = try ShardedStore.open(at: directory)
            let described = Shard.describe(sharded, host: host, open: true)
            if output.json { printJSON(Output(directory: sharded.directory, host: host, shards: described)); return }
            Shard.printText(described, directory: sharded.directory)
        }
    }
}

struct SplitStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Copy a store's sketch sets into N new shard stores of a new sharded store (for tests and benchmarks).",
        discussion: """
        The shards are DIR/shard-0 … DIR/shard-(N-1), shared (host null). Segment i of each set (at SRC's latest \
        version, or --at) goes to shard i mod N, its live rows appended with their ids, labels, metadata and float \
        columns, the set's dtype and attributes (the projection definition among them). The checkpoint attributes \
        tensor_set and tensor_set_hash are left out, since tensor sets are not copied. One commit per shard.
        """)

    @Argument(help: "The source store.") var source: String
    @Argument(help: "Directory of the new sharded store (new, or empty).") var directory: String
    @Option(help: "Number of shards.") var shards: Int
    @Option(name: .customLong("set"), help: "A sketch set to copy (repeatable; default: every sketch set).") var sets: [String] = []
    @Option(help: "Read SRC at this version (default: latest).") var at: Int?
    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        struct ShardRows: Encodable { let name: String, storeId: String, version: Int, rows: [String: Int], segments: [String: Int] }
        let directory: String, source: String, sourceVersion: Int, shards: [ShardRows]
        let droppedAttributes: [String]
    }

    func run() throws {
        try requireOption(shards, "--shards", in: 1...4096)
        try reportingErrors {
            let engine = try GradSketchStore.Store(opening: source)
            let version = try at ?? engine.latestVersion()
            let names = try sets.isEmpty ? GradSketch.Store(opening: source).snapshot(at: version).sketchSetNames : sets
            guard !names.isEmpty else { throw StoreError(.notFound, "store has no sketch set to split at version \(version)", path: source) }
            let sharded = try ShardedStore.create(at: directory, shards: (0..<shards).map { (name: "shard-\($0)", host: nil, path: "shard-\($0)") },
                                                  host: Shard.defaultHost)
            var rows = Array(repeating: [String: Int](), count: shards)
            var segmentCounts = Array(repeating: [String: Int](), count: shards)
            var dropped: Set<String> = []
            var versions = Array(repeating: 0, count: shards)
            // Reading every set once per shard keeps one segment's copy in memory at a time.
            for shard in 0..<shards {
                let target = try sharded.openShard(shard)
                let result = try target.transaction(detail: "split of \(engine.path) v\(version), shard \(shard) of \(shards)") { transaction in
                    for name in names {
                        let set = try engine.sketchSet(name, at: version)
                        let copied = try SplitStore.copy(set, segmentsWhere: { $0 % shards == shard }, into: transaction, dropped: &dropped)
                        rows[shard][name] = copied.rows
                        segmentCounts[shard][name] = copied.segments
                    }
                }
                versions[shard] = result.version
            }
            let result = Output(directory: sharded.directory, source: engine.path, sourceVersion: version,
                                shards: (0..<shards).map { Output.ShardRows(name: sharded.map.shards[$0].name, storeId: sharded.map.shards[$0].storeID,
                                                                            version: versions[$0], rows: rows[$0], segments: segmentCounts[$0]) },
                                droppedAttributes: dropped.sorted())
            if output.json { printJSON(result); return }
            print("split \(engine.path) v\(version) into \(shards) shards at \(sharded.directory)")
            for shard in result.shards {
                print("  \(shard.name): " + shard.rows.keys.sorted().map { "\($0) \(shard.rows[$0]!) rows in \(shard.segments[$0]!) segments" }.joined(separator: ", "))
            }
            if !dropped.isEmpty { print("attributes left out (tensor sets are not copied): \(dropped.sorted().joined(separator: ", "))") }
        }
    }

    /// Appends the live rows of the segments of `set` whose index passes `include`, one append
    /// (one new segment) per source segment, with every annotation the segment has.
    static func copy(_ set: SketchSet, segmentsWhere include: (Int) -> Bool, into transaction: Transaction,
                     dropped: inout Set<String>) throws -> (rows: Int, segments: Int) {
        var attributes = set.attributes
        for key in ["tensor_set", "tensor_set_hash"] where attributes.removeValue(forKey: key) != nil { dropped.insert(key) }
        let options = SketchSetOptions(dtype: set.dtype, allowNonfinite: set.entry.allowNonfinite, attributes: attributes)
        let ids = try set.ids(), labels = try set.labels(), metadata = try set.metadata()
        let columns = try Dictionary(uniqueKeysWithValues: set.columnNames.map { ($0, try set.column($0)) })
        var copiedRows = 0, copiedSegments = 0
        var index = 0
        try set.forEachBlock { block in
            defer { index += 1 }
            let segment = set.segments[index]
            let live = block.liveRows
            guard include(index), !live.isEmpty else { return }
            let rowBytes = block.k * block.dtype.elementType.byteWidth
            var bytes = [UInt8](repeating: 0, count: live.count * rowBytes)
            bytes.withUnsafeMutableBytes { target in
                for (slot, row) in live.enumerated() {
                    UnsafeMutableRawBufferPointer(rebasing: target[(slot * rowBytes)..<((slot + 1) * rowBytes)]).copyMemory(from: block.row(row))
                }
            }
            let range = block.firstLiveIndex..<(block.firstLiveIndex + live.count)
            let checksums = segment.entry.checksums
            var annotations = RowAnnotations(ids: Array(ids[range]))
            if checksums["labels"] != nil { annotations.labels = Array(labels[range]) }
            if checksums["metadata"] != nil {
                annotations.metadata = Array(metadata[range])
                annotations.metadataKind = MetadataKind(rawValue: segment.entry.metadataKind ?? "text") ?? .text
            }
            for (name, values) in columns where checksums["columns/" + name] != nil { annotations.columns[name] = Array(values[range]) }
            try bytes.withUnsafeBytes { buffer in
                try transaction.append(to: set.name, rows: try RowInput(bytes: buffer, elementType: block.dtype.elementType, rowCount: live.count, k: block.k),
                                       annotations: annotations, options: options)
            }
            copiedRows += live.count
            copiedSegments += 1
        }
        return (copiedRows, copiedSegments)
    }
}
