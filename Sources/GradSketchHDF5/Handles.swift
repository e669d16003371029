internal import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An HDF5 identifier with exactly one owner, closed exactly once.
///
/// The close function depends on the kind of object (`H5Dclose`, `H5Gclose`, ...).
/// Predefined datatypes (`H5T_IEEE_F32LE`, ...) belong to the library and are not owned.
@usableFromInline
struct OwnedID: ~Copyable {
    let id: hid_t
    let kind: Kind

    enum Kind {
        case file, group, dataset, datatype, dataspace, propertyList, attribute, borrowed

        var closeCall: StaticString {
            switch self {
            case .file: "H5Fclose"
            case .group: "H5Gclose"
            case .dataset: "H5Dclose"
            case .datatype: "H5Tclose"
            case .dataspace: "H5Sclose"
            case .propertyList: "H5Pclose"
            case .attribute: "H5Aclose"
            case .borrowed: "(none)"
            }
        }
    }

    init(_ id: hid_t, _ kind: Kind) {
        self.id = id
        self.kind = kind
    }

    static func closeID(_ id: hid_t, _ kind: Kind) -> herr_t {
        callHDF5 {
            switch kind {
            case .file: H5Fclose(id)
            case .group: H5Gclose(id)
            case .dataset: H5Dclose(id)
            case .datatype: H5Tclose(id)
            case .dataspace: H5Sclose(id)
            case .propertyList: H5Pclose(id)
            case .attribute: H5Aclose(id)
            case .borrowed: 0
            }
        }
    }

    /// Closes now and reports a failure (for files: objects still open inside it).
    consuming func close() throws(HDF5Error) {
        let id = self.id
        let kind = self.kind
        discard self
        if Self.closeID(id, kind) < 0 {
            throw HDF5Error(call: "\(kind.closeCall)", stack: takeErrorStack())
        }
    }

    deinit { _ = Self.closeID(id, kind) }
}

/// A property list (file access, dataset creation, ...).
struct PropertyList: ~Copyable {
    let owned: OwnedID
    var id: hid_t { owned.id }

    init(class cls: hid_t) throws(HDF5Error) {
        owned = OwnedID(try hdf5("H5Pcreate") { H5Pcreate(cls) }, .propertyList)
    }

    /// File access properties shared by every file GradSketch opens or creates.
    ///
    /// File locking is off: store files are never opened for writing by two processes
    /// (writers create private temporaries, published files are read-only), and HDF5's
    /// locks fail outright on some shared filesystems. Objects of 4096 bytes or more start
    /// on a 4096-byte boundary so row data can be memory-mapped with natural alignment.
    static func fileAccess() throws(HDF5Error) -> PropertyList {
        let plist = try PropertyList(class: chdf5_p_file_access())
        try hdf5("H5Pset_alignment") { H5Pset_alignment(plist.id, 4096, 4096) }
        try hdf5("H5Pset_file_locking") { H5Pset_file_locking(plist.id, false, true) }
        // File format of HDF5 1.8 (superblock v2, object header v2): every piece of HDF5
        // metadata carries its own checksum, so a flipped byte there is an error on open
        // rather than a silently different attribute; HDF5 ≥ 1.8 and h5py read it.
        try hdf5("H5Pset_libver_bounds") { H5Pset_libver_bounds(plist.id, H5F_LIBVER_V18, H5F_LIBVER_V18) }
        // Refuse to close a file while objects inside it are still open, instead of
        // silently deferring the close: every handle has one owner, so this is a bug.
        try hdf5("H5Pset_fclose_degree") { H5Pset_fclose_degree(plist.id, H5F_CLOSE_SEMI) }
        return plist
    }
}

/// A dataspace: the shape of a dataset or of a selection in memory.
struct Dataspace: ~Copyable {
    let owned: OwnedID
    var id: hid_t { owned.id }

    init(adopting id: hid_t) { owned = OwnedID(id, .dataspace) }

    /// A simple dataspace of the given shape (rank 0 is a scalar).
    init(shape: [Int]) throws(HDF5Error) {
        if shape.isEmpty {
            owned = OwnedID(try hdf5("H5Screate") { H5Screate(H5S_SCALAR) }, .dataspace)
        } else {
            guard shape.allSatisfy({ $0 >= 0 }) else {
                throw hdf5Failure("H5Screate_simple", "", "dimensions must be non-negative, found \(shape)")
            }
            let dims = shape.map { hsize_t($0) }
            owned = OwnedID(try hdf5("H5Screate_simple") { H5Screate_simple(Int32(dims.count), dims, nil) }, .dataspace)
        }
    }

    var shape: [Int] {
        get throws(HDF5Error) {
            let rank = try hdf5("H5Sget_simple_extent_ndims") { H5Sget_simple_extent_ndims(id) }
            if rank == 0 { return [] }
            var dims = [hsize_t](repeating: 0, count: Int(rank))
            try hdf5("H5Sget_simple_extent_dims") { H5Sget_simple_extent_dims(id, &dims, nil) }
            // A damaged file can declare dimensions beyond Int.max; refuse rather than trap.
            return try dims.map { (dimension: hsize_t) throws(HDF5Error) -> Int in
                guard let value = Int(exactly: dimension) else {
                    throw hdf5Failure("H5Sget_simple_extent_dims", "", "dimension \(dimension) does not fit in a 64-bit signed size")
                }
                return value
            }
        }
    }

    /// Selects rows `[start, start + count)` along the first dimension of a dataspace of
    /// any rank ≥ 1 (every element of the other dimensions).
    func selectRows(_ rows: Range<Int>, rowLength: Int?) throws(HDF5Error) {
        let dims = try shape
        precondition(!dims.isEmpty, "cannot select rows of a scalar")
        var start = [hsize_t](repeating: 0, count: dims.count)
        var count = dims.map { hsize_t($0) }
        start[0] = hsize_t(rows.lowerBound)
        count[0] = hsize_t(rows.count)
        try hdf5("H5Sselect_hyperslab") { H5Sselect_hyperslab(id, H5S_SELECT_SET, start, nil, count, nil) }
    }
}
