internal import CHDF5

/// An open group.
public struct Group: ~Copyable, HDF5Object {
    public let file: HDF5File
    public let objectPath: String
    let owned: OwnedID
    public var objectHandle: ObjectHandle { ObjectHandle(id: owned.id) }
    var objectID: hid_t { owned.id }

    init(opening path: String, in file: HDF5File) throws(HDF5Error) {
        self.file = file
        self.objectPath = path
        owned = OwnedID(try hdf5("H5Gopen2", "\(file.path):\(path)") { H5Gopen2(file.id, path, chdf5_p_default()) }, .group)
    }

    private init(file: HDF5File, path: String, id: hid_t) {
        self.file = file
        self.objectPath = path
        owned = OwnedID(id, .group)
    }

    private func childPath(_ name: String) -> String {
        objectPath == "/" ? "/" + name : objectPath + "/" + name
    }

    /// Creates a child group (a path; missing intermediate groups are created too).
    ///
    /// The corresponding HDF5 call is `H5Gcreate2`.
    public func createGroup(_ name: String) throws(HDF5Error) -> Group {
        let path = childPath(name)
        let lcpl = try PropertyList(class: chdf5_p_link_create())
        try hdf5("H5Pset_create_intermediate_group", path) { H5Pset_create_intermediate_group(lcpl.id, 1) }
        let id = try hdf5("H5Gcreate2", "\(file.path):\(path)") {
            H5Gcreate2(objectID, name, lcpl.id, chdf5_p_default(), chdf5_p_default())
        }
        return Group(file: file, path: path, id: id)
    }

    /// Opens a child group.
    public func openGroup(_ name: String) throws(HDF5Error) -> Group {
        let path = childPath(name)
        let id = try hdf5("H5Gopen2", "\(file.path):\(path)") { H5Gopen2(objectID, name, chdf5_p_default()) }
        return Group(file: file, path: path, id: id)
    }

    /// Whether a link named `name` exists directly in this group.
    ///
    /// The corresponding HDF5 call is `H5Lexists`.
    public func contains(_ name: String) throws(HDF5Error) -> Bool {
        try hdf5("H5Lexists", location) { H5Lexists(objectID, name, chdf5_p_default()) } > 0
    }

    /// The names of this group's members, in name order.
    public func memberNames() throws(HDF5Error) -> [String] {
        var info = H5G_info_t()
        try hdf5("H5Gget_info", location) { H5Gget_info(objectID, &info) }
        var names: [String] = []
        names.reserveCapacity(Int(info.nlinks))
        for index in 0..<info.nlinks {
            let length = try hdf5("H5Lget_name_by_idx", location) {
                H5Lget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, chdf5_p_default())
            }
            var buffer = [CChar](repeating: 0, count: length + 1)
            try hdf5("H5Lget_name_by_idx", location) {
                H5Lget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, chdf5_p_default())
            }
            names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// Creates a dataset of `type` and `shape`.
    ///
    /// With `mappable`, the dataset is laid out as Spec §2.4 requires for memory-mapping:
    /// contiguous, unfiltered, its storage allocated now (so it has a file offset) and never
    /// filled (every byte is about to be written). Without it, HDF5's defaults apply (still
    /// contiguous; used for strings, which cannot be mapped anyway).
    ///
    /// The corresponding HDF5 call is `H5Dcreate2`.
    public func createDataset(_ name: String, type: StorageType, shape: [Int], mappable: Bool = true) throws(HDF5Error) -> Dataset {
        let path = childPath(name)
        let context = "\(file.path):\(path)"
        let fileType = try Datatype.file(type)
        let space = try Dataspace(shape: shape)
        let dcpl = try PropertyList(class: chdf5_p_dataset_create())
        if mappable && !shape.contains(0) {
            try hdf5("H5Pset_layout", context) { H5Pset_layout(dcpl.id, H5D_CONTIGUOUS) }
            try hdf5("H5Pset_alloc_time", context) { H5Pset_alloc_time(dcpl.id, H5D_ALLOC_TIME_EARLY) }
            try hdf5("H5Pset_fill_time", context) { H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER) }
        }
        // Intermediate groups are created as needed ("columns/loss").
        let lcpl = try PropertyList(class: chdf5_p_link_create())
        try hdf5("H5Pset_create_intermediate_group", context) { H5Pset_create_intermediate_group(lcpl.id, 1) }
        let id = try hdf5("H5Dcreate2", context) {
            H5Dcreate2(objectID, name, fileType.id, space.id, lcpl.id, dcpl.id, chdf5_p_default())
        }
        return Dataset(file: file, path: path, id: id)
    }

    /// Opens a dataset (a path relative to this group).
    ///
    /// The corresponding HDF5 call is `H5Dopen2`.
    public func openDataset(_ name: String) throws(HDF5Error) -> Dataset {
        let path = childPath(name)
        let id = try hdf5("H5Dopen2", "\(file.path):\(path)") { H5Dopen2(objectID, name, chdf5_p_default()) }
        return Dataset(file: file, path: path, id: id)
    }

    /// Creates and fills a dataset of fixed-length UTF-8 strings (NUL-padded to the longest
    /// element, at least one byte), 1-D or, with `scalar`, a scalar of one string. Returns
    /// the open dataset so the caller can add attributes.
    ///
    /// Fixed-length strings are stored in the dataset's own contiguous storage, never in
    /// HDF5's global heap (see `chdf5_make_fixed_utf8`).
    public func createStringDataset(_ name: String, strings: [String], scalar: Bool = false) throws(HDF5Error) -> Dataset {
        precondition(!scalar || strings.count == 1, "a scalar string dataset holds exactly one string")
        let path = childPath(name)
        let context = "\(file.path):\(path)"
        let width = max(1, strings.map { $0.utf8.count }.max() ?? 1)
        let type = Datatype(adopting: try hdf5("H5Tcopy(fixed utf8)", context) { chdf5_make_fixed_utf8(width) })
        let space = try Dataspace(shape: scalar ? [] : [strings.count])
        let lcpl = try PropertyList(class: chdf5_p_link_create())
        try hdf5("H5Pset_create_intermediate_group", context) { H5Pset_create_intermediate_group(lcpl.id, 1) }
        let id = try hdf5("H5Dcreate2", context) {
            H5Dcreate2(objectID, name, type.id, space.id, lcpl.id, chdf5_p_default(), chdf5_p_default())
        }
        let dataset = Dataset(file: file, path: path, id: id)
        if !strings.isEmpty { try dataset.writeStrings(strings) }
        return dataset
    }

    /// Closes the group now, reporting failure.
    public consuming func close() throws(HDF5Error) {
        try owned.close()
    }
}
