import Foundation
public import GradSketchStore

/// The shards a distributed command reads: the shards of a sharded store's map, or a plain
/// store as one shard every host reads (Spec/distributed.md §3.1).
public struct ShardLayout: Sendable, Equatable {
    public struct Shard: Sendable, Equatable {
        /// The shard's name in answers.
        public var name: String
        /// The host whose ranks serve the shard; nil when every host reads it.
        public var host: String?
        /// The shard store's directory, resolved.
        public var path: String
        /// The store-id the shard store must have, when the map records one.
        public var storeID: String?

        public init(name: String, host: String?, path: String, storeID: String? = nil) {
            self.name = name
            self.host = host
            self.path = path
            self.storeID = storeID
        }
    }

    public var shards: [Shard]

    public init(shards: [Shard]) { self.shards = shards }

    /// A plain store directory as a layout of one shard (host nil), named after the directory.
    public static func plainStore(_ directory: String) -> ShardLayout {
        let trimmed = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        let name = (trimmed as NSString).lastPathComponent
        return ShardLayout(shards: [Shard(name: name.isEmpty ? trimmed : name, host: nil, path: trimmed)])
    }

    /// Opens shard `index`'s store, checking its store-id when the layout records one.
    func openStore(_ index: Int) throws -> Store {
        let shard = shards[index]
        let store: Store
        do {
            store = try Store(opening: shard.path)
        } catch let error as StoreError {
            throw StoreError(error.code, "shard \(shard.name) (host \(shard.host ?? "any")): \(error.message)", path: error.path ?? shard.path)
        }
        if let expected = shard.storeID, store.storeID != expected {
            throw StoreError(.conflict, "shard \(shard.name) at \(shard.path) has store-id \(store.storeID), the shard map expects \(expected)", path: shard.path)
        }
        return store
    }
}

extension ShardLayout {
    /// The layout of `directory`: the shards of its shard map (Spec/format.md §11a) when it
    /// holds one, else the directory as a plain store of one shard with no host.
    ///
    /// - Throws: the map's validation errors (`ShardMap.read`).
    public static func open(directory: String) throws -> ShardLayout {
        guard ShardMap.isSharded(directory: directory) else { return plainStore(directory) }
        let map = try ShardMap.read(directory: directory)
        return ShardLayout(shards: map.shards.indices.map { index in
            let shard = map.shards[index]
            return Shard(name: shard.name, host: shard.host, path: map.resolvedPath(of: index, directory: directory), storeID: shard.storeID)
        })
    }
}
