import Foundation

/// The shard map of a sharded store (Spec "Sharded stores"): the file `gradsketch-shards.json`
/// in a directory of its own, naming the ordinary stores (shards) that together hold the data,
/// where each lives (a host, or any host for a shared filesystem) and the store-id each must
/// have.
///
/// The order of ``shards`` is the shard index every distributed answer uses, so a writer may
/// append shards but removing or reordering them makes a new map whose indexes differ.
///
/// Keys this implementation does not know (top level and per shard) are kept when a map read
/// from a file is written again, as the manifest does (Spec §4).
public struct ShardMap: Sendable, Equatable, Codable {
    public struct Shard: Sendable, Equatable, Codable {
        /// Unique within the map; the store's name rule (Spec §5).
        public var name: String
        /// The host whose ranks serve this shard; nil: on a filesystem every host reads.
        public var host: String?
        /// Absolute, or relative to the map's directory.
        public var path: String
        /// The shard store's store-id (Spec §3), checked when the shard is opened.
        public var storeID: String
        /// Keys of this shard's entry that this implementation does not know, kept on rewrite.
        var unknownKeys: [String: JSONValue] = [:]

        public init(name: String, host: String?, path: String, storeID: String) {
            self.name = name
            self.host = host
            self.path = path
            self.storeID = storeID
        }

        public init(from decoder: any Decoder) throws {
            self = try Shard(json: try JSONValue(from: decoder), index: 0)
        }

        public func encode(to encoder: any Encoder) throws { try json.encode(to: encoder) }

        static let knownKeys: Set<String> = ["name", "host", "path", "store_id"]

        init(json: JSONValue, index: Int) throws {
            guard case .object(let object) = json else {
                throw StoreError(.corrupt, "shard map: shards[\(index)] must be a JSON object, found \(json.jsonText)")
            }
            func string(_ key: String) throws -> String {
                guard case .string(let value)? = object[key] else {
                    let found = object[key].map(\.jsonText) ?? "nothing"
                    throw StoreError(.corrupt, "shard map: shards[\(index)].\(key) must be a string, found \(found)")
                }
                return value
            }
            name = try string("name")
            path = try string("path")
            storeID = try string("store_id")
            switch object["host"] {
            case nil, .null?: host = nil
            case .string(let value)?: host = value
            case let other?: throw StoreError(.corrupt, "shard map: shards[\(index)].host must be a string or null, found \(other.jsonText)")
            }
            unknownKeys = object.filter { !Shard.knownKeys.contains($0.key) }
        }

        var json: JSONValue {
            var object = unknownKeys
            object["name"] = .string(name)
            object["host"] = host.map(JSONValue.string) ?? .null
            object["path"] = .string(path)
            object["store_id"] = .string(storeID)
            return .object(object)
        }
    }

    /// Order is the shard index used in every answer.
    public var shards: [Shard]
    /// Top-level keys this implementation does not know, kept on rewrite.
    var unknownKeys: [String: JSONValue] = [:]

    public static let fileName = "gradsketch-shards.json"
    /// The value of the `format` key.
    public static let formatName = "gradsketch-shards"
    /// The map format version this implementation reads and writes.
    public static let formatVersion = 1

    public init(shards: [Shard]) {
        self.shards = shards
    }

    public init(from decoder: any Decoder) throws {
        self = try ShardMap(json: try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws { try json.encode(to: encoder) }

    /// Whether `directory` holds a shard map (a plain store directory does not).
    public static func isSharded(directory: String) -> Bool {
        FileSystem.exists(directory + "/" + fileName)
    }

    /// Reads and validates the map in `directory`.
    ///
    /// - Throws: ``StoreError`` `.notFound` without a map file, `.unsupportedVersion` for
    ///   another format or a newer version, `.corrupt` for JSON that is not a map,
    ///   `.invalidInput` for a map that breaks a rule (empty, duplicate names or store-ids,
    ///   a bad name, path or store_id).
    public static func read(directory: String) throws -> ShardMap {
        let path = directory + "/" + fileName
        guard FileSystem.exists(path) else {
            throw StoreError(.notFound, "not a sharded store: expected \(fileName) in the directory, found none", path: directory)
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw StoreError(.io, "cannot read the shard map", path: path, underlying: error as (any Error & Sendable))
        }
        let json: JSONValue
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw StoreError(.corrupt, "shard map is not valid JSON", path: path, underlying: error as (any Error & Sendable))
        }
        do {
            let map = try ShardMap(json: json)
            try map.validate()
            return map
        } catch let error as StoreError {
            throw StoreError(error.code, error.message, path: path, underlying: error.underlying)
        }
    }

    /// Validates the map and publishes it as `directory/gradsketch-shards.json` atomically
    /// (temporary file, fsync, rename, directory fsync), creating `directory` if needed.
    public func write(directory: String) throws {
        try validate()
        if !FileSystem.exists(directory) { try FileSystem.makeDirectory(directory) }
        let target = directory + "/" + ShardMap.fileName
        let temporary = directory + "/." + ShardMap.fileName + ".\(FileSystem.processID).\(randomIdentifier()).tmp"
        let text = prettyJSONText + "\n"
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        } catch {
            try? FileSystem.remove(temporary)
            throw StoreError(.io, "cannot write the shard map", path: temporary, underlying: error as (any Error & Sendable))
        }
        do {
            try FileSystem.fsyncFile(temporary)
            try FileSystem.rename(temporary, target)
        } catch {
            try? FileSystem.remove(temporary)
            throw error
        }
        try FileSystem.fsyncDirectory(directory)
    }

    /// The path of shard `index` as a reader resolves it: absolute paths as they are, relative
    /// ones against the map's directory.
    public func resolvedPath(of index: Int, directory: String) -> String {
        let path = shards[index].path
        if path.hasPrefix("/") { return path }
        let base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return base + "/" + path
    }

    /// Checks every rule of the map format: at least one shard, names by the store's name
    /// rule and unique, non-empty paths, hosts non-empty when given, store-ids of 32 lowercase
    /// hex digits and unique (one store listed twice would count its rows twice).
    public func validate() throws {
        guard !shards.isEmpty else {
            throw StoreError(.invalidInput, "shard map: expected at least one shard, found none")
        }
        var names: [String: Int] = [:]
        var storeIDs: [String: Int] = [:]
        for (index, shard) in shards.enumerated() {
            try Rules.checkName(shard.name, what: "shard")
            if let earlier = names[shard.name] {
                throw StoreError(.invalidInput, "shard map: shard name \"\(shard.name)\" appears at shards[\(earlier)] and shards[\(index)], expected unique names")
            }
            names[shard.name] = index
            guard !shard.path.isEmpty, !shard.path.utf8.contains(0) else {
                throw StoreError(.invalidInput, "shard map: shard \"\(shard.name)\" has an empty path, expected an absolute path or one relative to the map's directory")
            }
            guard ![".", "./"].contains(shard.path) else {
                throw StoreError(.invalidInput, "shard map: shard \"\(shard.name)\" has path \"\(shard.path)\", the map directory itself; a directory holds a store or a shard map, not both")
            }
            if let host = shard.host, host.isEmpty || host.utf8.contains(where: { $0 <= 0x20 }) {
                throw StoreError(.invalidInput, "shard map: shard \"\(shard.name)\" has host \"\(host)\", expected null or a non-empty name without spaces or control characters")
            }
            guard ShardMap.isStoreID(shard.storeID) else {
                throw StoreError(.invalidInput, "shard map: shard \"\(shard.name)\" has store_id \"\(shard.storeID)\", expected 32 lowercase hex digits")
            }
            if let earlier = storeIDs[shard.storeID] {
                throw StoreError(.invalidInput, "shard map: shards[\(earlier)] and shards[\(index)] (\"\(shard.name)\") both have store_id \(shard.storeID), expected each store once")
            }
            storeIDs[shard.storeID] = index
        }
    }

    /// 32 lowercase hex digits (Spec §3).
    public static func isStoreID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.count == 32 && bytes.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// A fresh store-id, for a shard the map names before its store exists.
    public static func newStoreID() -> String { randomIdentifier() }

    init(json: JSONValue) throws {
        guard case .object(let object) = json else {
            throw StoreError(.corrupt, "shard map: expected a JSON object, found \(json.jsonText.prefix(80))")
        }
        guard case .string(let format)? = object["format"] else {
            throw StoreError(.corrupt, "shard map: expected \"format\": \"\(ShardMap.formatName)\", found \(object["format"].map(\.jsonText) ?? "no format key")")
        }
        guard format == ShardMap.formatName else {
            throw StoreError(.unsupportedVersion, "shard map: expected format \"\(ShardMap.formatName)\", found \"\(format)\"")
        }
        let version: Int64
        switch object["version"] {
        case .integer(let value)?: version = value
        case .unsigned(let value)?: version = value > UInt64(Int64.max) ? Int64.max : Int64(value)
        case .number(let value)? where value == value.rounded() && abs(value) < 1e18: version = Int64(value)
        default:
            throw StoreError(.corrupt, "shard map: expected an integer \"version\", found \(object["version"].map(\.jsonText) ?? "no version key")")
        }
        guard version >= 1 else {
            throw StoreError(.corrupt, "shard map: expected version ≥ 1, found \(version)")
        }
        guard version <= Int64(ShardMap.formatVersion) else {
            throw StoreError(.unsupportedVersion, "shard map: version \(version) is newer than this reader (\(ShardMap.formatVersion))")
        }
        guard case .array(let entries)? = object["shards"] else {
            throw StoreError(.corrupt, "shard map: expected a \"shards\" array, found \(object["shards"].map(\.jsonText) ?? "no shards key")")
        }
        shards = try entries.enumerated().map { try Shard(json: $0.element, index: $0.offset) }
        unknownKeys = object.filter { !["format", "version", "shards"].contains($0.key) }
    }

    var json: JSONValue {
        var object = unknownKeys
        object["format"] = .string(ShardMap.formatName)
        object["version"] = .integer(Int64(ShardMap.formatVersion))
        object["shards"] = .array(shards.map(\.json))
        return .object(object)
    }

    /// The map as a person reads it: sorted keys, indented.
    var prettyJSONText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
        return (try? String(decoding: encoder.encode(json), as: UTF8.self)) ?? "null"
    }
}
