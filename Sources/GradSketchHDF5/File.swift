internal import CHDF5

/// An open HDF5 file.
///
/// A file is a class because the groups and datasets opened from it borrow its identity for
/// error messages; it owns its identifier and closes it in ``close()`` (which reports
/// objects still open inside it) or, failing that, when released.
public final class HDF5File {
    /// The file's path, for messages.
    public let path: String
    let id: hid_t
    private var isOpen = true

    private init(path: String, id: hid_t) {
        self.path = path
        self.id = id
    }

    deinit {
        if isOpen { _ = OwnedID.closeID(id, .file) }
    }

    /// Where a new file places its objects (Spec §2.4).
    public enum Alignment: Sendable {
        /// Objects of 4096 bytes or more start on a 4096-byte boundary; smaller ones are
        /// packed wherever HDF5 puts them. For files with one small mappable dataset, written
        /// before any data of another element size.
        case largeObjects
        /// Every object starts on a 4096-byte boundary: for files holding several small
        /// mappable datasets of mixed element sizes (tensor sets, packed stores), whose data
        /// HDF5 otherwise packs back to back at offsets that are not multiples of their
        /// element sizes. Costs up to 4 KiB of padding per object.
        case everyObject
    }

    /// Creates a new file; fails if `path` exists.
    ///
    /// The corresponding HDF5 call is `H5Fcreate` with `H5F_ACC_EXCL`.
    public static func create(path: String, alignment: Alignment = .largeObjects) throws(HDF5Error) -> HDF5File {
        openLibrary()
        let fapl = try PropertyList.fileAccess()
        if alignment == .everyObject {
            try hdf5("H5Pset_alignment") { H5Pset_alignment(fapl.id, 1, 4096) }
        }
        let id = try hdf5("H5Fcreate", path) { H5Fcreate(path, chdf5_acc_excl(), chdf5_p_default(), fapl.id) }
        return HDF5File(path: path, id: id)
    }

    /// Opens an existing file read-only.
    ///
    /// The corresponding HDF5 call is `H5Fopen` with `H5F_ACC_RDONLY`.
    public static func open(path: String) throws(HDF5Error) -> HDF5File {
        openLibrary()
        let fapl = try PropertyList.fileAccess()
        let id = try hdf5("H5Fopen", path) { H5Fopen(path, chdf5_acc_rdonly(), fapl.id) }
        return HDF5File(path: path, id: id)
    }

    /// The root group `/`.
    public func root() throws(HDF5Error) -> Group {
        try Group(opening: "/", in: self)
    }

    /// Writes everything HDF5 buffers for this file to the operating system (not to disk:
    /// callers `fsync` the file after closing it).
    ///
    /// The corresponding HDF5 call is `H5Fflush`.
    public func flush() throws(HDF5Error) {
        try hdf5("H5Fflush", path) { H5Fflush(id, H5F_SCOPE_GLOBAL) }
    }

    /// Closes the file, failing if any object inside it is still open.
    ///
    /// The corresponding HDF5 call is `H5Fclose`.
    public func close() throws(HDF5Error) {
        guard isOpen else { return }
        isOpen = false
        try hdf5("H5Fclose", path) { OwnedID.closeID(id, .file) }
    }

    /// The version of the HDF5 library in use, e.g. `1.10.8`.
    public static var libraryVersion: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        _ = callHDF5 { H5get_libversion(&major, &minor, &release) }
        return "\(major).\(minor).\(release)"
    }
}
