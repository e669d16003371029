import Foundation
public import GradSketchStore

/// A sharded store (Spec "Sharded stores"): a directory holding only a shard map, whose shards
/// are ordinary stores that may live on different hosts' local disks.
///
/// This value reads the map and opens the shards this host can reach; the distributed
/// commands decide which rank serves which shard. A plain store directory is not a sharded
/// store (``ShardMap/isSharded(directory:)`` tells them apart).
public final class ShardedStore: Sendable {
    /// The directory holding the map.
    public let directory: String
    public let map: ShardMap

    init(directory: String, map: ShardMap) {
        self.directory = directory
        self.map = map
    }

    /// Reads and validates the map in `directory`; opens no shard.
    public static func open(at directory: String) throws -> ShardedStore {
        let directory = normalize(directory)
        return ShardedStore(directory: directory, map: try ShardMap.read(directory: directory))
    }

    /// Creates the map in `directory` (a new path or an empty directory) and the shard stores
    /// that live on this host (host nil or == `host`).
    ///
    /// A local shard whose path already holds a store is adopted with its store-id; a new or
    /// empty path gets a new store. A shard on another host gets a fresh store-id in the map,
    /// and its store is made on that host by ``createLocalShards(host:)`` with that id.
    public static func create(at directory: String, shards: [(name: String, host: String?, path: String)],
                              host: String) throws -> ShardedStore {
        let directory = normalize(directory)
        if FileManager.default.fileExists(atPath: directory) {
            let content = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]
            guard content.isEmpty else {
                throw StoreError(.invalidInput, "cannot create a sharded store: expected a new path or an empty directory, found existing content", path: directory)
            }
        }
        // Validate names, hosts and paths before any store is made.
        let draft = ShardMap(shards: shards.map { ShardMap.Shard(name: $0.name, host: $0.host, path: $0.path, storeID: ShardMap.newStoreID()) })
        try draft.validate()
        var map = draft
        // The map directory first, so that relative shard paths resolve under it.
        try makeDirectories(directory)
        for index in map.shards.indices where isLocal(map.shards[index], host: host) {
            let path = map.resolvedPath(of: index, directory: directory)
            guard normalize(path) != directory, normalize(path) != directory + "/." else {
                throw StoreError(.invalidInput, "shard \(map.shards[index].name): its path is the map directory itself; a directory holds a store or a shard map, not both", path: directory)
            }
            if let existing = try? GradSketchStore.Store(opening: path) {
                map.shards[index].storeID = existing.storeID
            } else {
                try makeDirectories(parent(of: path))
                _ = try GradSketchStore.Store.create(at: path, storeID: map.shards[index].storeID)
            }
        }
        try map.write(directory: directory)
        return ShardedStore(directory: directory, map: map)
    }

    /// Creates the stores of this host's shards that do not exist yet, each with the store-id
    /// the map gives it; returns the indexes of the shards created. Shards that exist are
    /// checked (their store-id must be the map's).
    @discardableResult
    public func createLocalShards(host: String) throws -> [Int] {
        var created: [Int] = []
        for index in map.shards.indices where isLocal(index, host: host) {
            let path = path(of: index)
            let hasStore = FileManager.default.fileExists(atPath: path + "/gradsketch.h5")
            if hasStore {
                _ = try openShard(index)
            } else {
                try Self.makeDirectories(Self.parent(of: path))
                _ = try GradSketchStore.Store.create(at: path, storeID: map.shards[index].storeID)
                created.append(index)
            }
        }
        return created
    }

    /// The resolved path of shard `shard`: absolute as given, relative against ``directory``.
    public func path(of shard: Int) -> String { map.resolvedPath(of: shard, directory: directory) }

    /// Whether ranks on `host` serve shard `shard`: its host is nil (shared) or equal.
    public func isLocal(_ shard: Int, host: String) -> Bool { Self.isLocal(map.shards[shard], host: host) }

    static func isLocal(_ shard: ShardMap.Shard, host: String) -> Bool { shard.host == nil || shard.host == host }

    /// Opens shard `shard` as an ordinary store and checks that it is the store the map names.
    ///
    /// - Throws: ``StoreError`` `.notFound` when no store is at its path (naming the shard,
    ///   its host and path), `.conflict` when the store there has another store-id.
    public func openShard(_ shard: Int) throws -> Store {
        let entry = map.shards[shard]
        let path = path(of: shard)
        let hostText = entry.host.map { "on host \($0)" } ?? "(shared, host null)"
        let engine: GradSketchStore.Store
        do {
            engine = try GradSketchStore.Store(opening: path)
        } catch let error as StoreError where error.code == .notAStore {
            throw StoreError(.notFound, "shard \(entry.name) \(hostText) is missing: expected a store at \(path), \(error.message)", path: path)
        }
        guard engine.storeID == entry.storeID else {
            throw StoreError(.conflict, "shard \(entry.name) at \(path) is store \(engine.storeID), the map expects \(entry.storeID)", path: path)
        }
        return Store(engine: engine)
    }

    /// What every reachable shard holding set `set` agrees on.
    public struct SetConsistency: Sendable, Equatable {
        public var k: Int
        public var dtype: SketchDType
        /// The projection definition's JSON text (sorted keys), nil when the set records none.
        public var projectionJSON: String?
        /// Indexes of the shards checked that hold the set.
        public var shardsWithSet: [Int]
    }

    /// Checks that sketch set `set` has the same k, dtype and projection definition
    /// (Spec/projection.md §5 equality) in every shard reachable from `host` that holds it,
    /// at each shard's latest version (or `versions[shard]` when given).
    ///
    /// - Throws: `.invalidInput` naming the first shard that disagrees with the first shard
    ///   holding the set and what differs; `.notFound` when no reachable shard holds the set.
    @discardableResult
    public func checkConsistency(set: String, host: String, versions: [Int: Int] = [:]) throws -> SetConsistency {
        var reference: (shard: Int, k: Int, dtype: SketchDType, projection: JSONValue?)?
        var holders: [Int] = []
        for index in map.shards.indices where isLocal(index, host: host) {
            let snapshot = try openShard(index).snapshot(at: versions[index])
            guard snapshot.sketchSetNames.contains(set) else { continue }
            let info = try snapshot.sketchSet(set)
            let projection = try JSONValue.parse(info.attributesJSON)["projection"]
            holders.append(index)
            guard let first = reference else {
                reference = (index, info.k, info.dtype, projection)
                continue
            }
            let here = "shard \(map.shards[index].name)", there = "shard \(map.shards[first.shard].name)"
            guard info.k == first.k, info.dtype == first.dtype else {
                throw StoreError(.invalidInput, "set \(set): \(here) has k = \(info.k), dtype \(info.dtype.rawValue); \(there) has k = \(first.k), dtype \(first.dtype.rawValue); expected the same in every shard", path: path(of: index))
            }
            switch (projection, first.projection) {
            case (nil, nil): break
            case (let mine?, let theirs?):
                if let difference = ProjectionRule.firstDifference(mine, theirs) {
                    throw StoreError(.invalidInput, "set \(set): \(here) was sketched with a different projection than \(there) (\(difference)); expected one projection across shards", path: path(of: index))
                }
            default:
                let which = projection == nil ? "records no projection" : "records a projection"
                throw StoreError(.invalidInput, "set \(set): \(here) \(which) and \(there) does not; expected one projection across shards", path: path(of: index))
            }
        }
        guard let reference else {
            throw StoreError(.notFound, "set \(set) is in no shard reachable from host \(host)", path: directory)
        }
        return SetConsistency(k: reference.k, dtype: reference.dtype, projectionJSON: reference.projection?.jsonText, shardsWithSet: holders)
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws {
        guard !path.isEmpty else { return }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.io, "cannot create directory", path: path, underlying: error as (any Error & Sendable))
        }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func normalize(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }
}
