internal import CHDF5

/// Something in an HDF5 file that carries attributes: a group or a dataset.
public protocol HDF5Object: ~Copyable {
    /// The object's path in its file, for messages.
    var objectPath: String { get }
    /// The file it is in.
    var file: HDF5File { get }
    /// The object's HDF5 identifier, opaque outside this module.
    var objectHandle: ObjectHandle { get }
}

/// An HDF5 object identifier; opaque so no C type appears in the public API.
public struct ObjectHandle {
    let id: hid_t
}

extension HDF5Object where Self: ~Copyable {
    var location: String { "\(file.path):\(objectPath)" }
    var objectID: hid_t { objectHandle.id }

    /// Whether an attribute named `name` exists.
    ///
    /// The corresponding HDF5 call is `H5Aexists`.
    public func hasAttribute(_ name: String) throws(HDF5Error) -> Bool {
        try hdf5("H5Aexists", "\(location) @\(name)") { H5Aexists(objectID, name) } > 0
    }

    /// Writes a scalar fixed-length UTF-8 string attribute (NUL-padded, at least one byte).
    ///
    /// Fixed-length, not variable-length: the value then lives in the object header, which
    /// the file format checksums, instead of the unchecksummed global heap (Spec §2.1).
    public func setAttribute(_ name: String, _ value: String) throws(HDF5Error) {
        let bytes = Array(value.utf8)
        let type = Datatype(adopting: try hdf5("H5Tcopy(fixed utf8)", "\(location) @\(name)") { chdf5_make_fixed_utf8(max(1, bytes.count)) })
        let space = try Dataspace(shape: [])
        let attribute = OwnedID(try hdf5("H5Acreate2", "\(location) @\(name)") {
            H5Acreate2(objectID, name, type.id, space.id, chdf5_p_default(), chdf5_p_default())
        }, .attribute)
        let padded = bytes.isEmpty ? [UInt8(0)] : bytes
        try hdf5("H5Awrite", "\(location) @\(name)") { padded.withUnsafeBytes { H5Awrite(attribute.id, type.id, $0.baseAddress) } }
        try attribute.close()
    }

    /// Writes a scalar 64-bit integer attribute.
    public func setAttribute(_ name: String, _ value: Int64) throws(HDF5Error) {
        let type = try Datatype.file(.int64)
        let space = try Dataspace(shape: [])
        let attribute = OwnedID(try hdf5("H5Acreate2", "\(location) @\(name)") {
            H5Acreate2(objectID, name, type.id, space.id, chdf5_p_default(), chdf5_p_default())
        }, .attribute)
        var copy = value
        let memory = try Datatype.memory(.int64)
        try hdf5("H5Awrite", "\(location) @\(name)") { H5Awrite(attribute.id, memory.id, &copy) }
        try attribute.close()
    }

    /// Reads a scalar string attribute; nil if it does not exist.
    ///
    /// Fixed-length and variable-length strings are both accepted (other writers may use
    /// either); anything else is an error naming the type found.
    public func stringAttribute(_ name: String) throws(HDF5Error) -> String? {
        guard try hasAttribute(name) else { return nil }
        let context = "\(location) @\(name)"
        let attribute = OwnedID(try hdf5("H5Aopen", context) { H5Aopen(objectID, name, chdf5_p_default()) }, .attribute)
        let stored = Datatype(adopting: try hdf5("H5Aget_type", context) { H5Aget_type(attribute.id) })
        let cls = try hdf5("H5Tget_class", context) { H5Tget_class(stored.id).rawValue }
        guard cls == H5T_STRING.rawValue else {
            throw hdf5Failure("H5Aread", context, "expected a string attribute, found \(stored.describe())")
        }
        if try hdf5("H5Tis_variable_str", context, { H5Tis_variable_str(stored.id) }) > 0 {
            let memory = try Datatype.memory(.string)
            var pointer: UnsafeMutablePointer<CChar>? = nil
            try hdf5("H5Aread", context) { H5Aread(attribute.id, memory.id, &pointer) }
            defer { if let pointer { _ = callHDF5 { H5free_memory(pointer) } } }
            return pointer.map { String(cString: $0) } ?? ""
        }
        let size = try hdf5("H5Tget_size", context) { H5Tget_size(stored.id) }
        var buffer = [UInt8](repeating: 0, count: Int(size) + 1)
        try hdf5("H5Aread", context) { H5Aread(attribute.id, stored.id, &buffer) }
        let end = buffer.firstIndex(of: 0) ?? buffer.count
        return String(decoding: buffer[..<end], as: UTF8.self)
    }

    /// Reads a scalar integer attribute (any integer width in the file); nil if missing.
    public func integerAttribute(_ name: String) throws(HDF5Error) -> Int64? {
        guard try hasAttribute(name) else { return nil }
        let context = "\(location) @\(name)"
        let attribute = OwnedID(try hdf5("H5Aopen", context) { H5Aopen(objectID, name, chdf5_p_default()) }, .attribute)
        let stored = Datatype(adopting: try hdf5("H5Aget_type", context) { H5Aget_type(attribute.id) })
        let cls = try hdf5("H5Tget_class", context) { H5Tget_class(stored.id).rawValue }
        guard cls == H5T_INTEGER.rawValue else {
            throw hdf5Failure("H5Aread", context, "expected an integer attribute, found \(stored.describe())")
        }
        let memory = try Datatype.memory(.int64)
        var value: Int64 = 0
        try hdf5("H5Aread", context) { H5Aread(attribute.id, memory.id, &value) }
        return value
    }

    /// Names of all attributes, in creation-independent (name) order.
    public func attributeNames() throws(HDF5Error) -> [String] {
        var info = H5O_info_t()
        try hdf5("H5Oget_info2", location) { H5Oget_info2(objectID, &info, UInt32(H5O_INFO_NUM_ATTRS)) }
        var names: [String] = []
        for index in 0..<info.num_attrs {
            let length = try hdf5("H5Aget_name_by_idx", location) {
                H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, chdf5_p_default())
            }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            try hdf5("H5Aget_name_by_idx", location) {
                H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, chdf5_p_default())
            }
            names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }
}
