internal import CHDF5

/// The element types a GradSketch file stores (Spec §2.3).
public enum StorageType: String, Sendable, CaseIterable {
    case float16, float32, float64, int64, uint8, int8, uint32, string

    /// Bytes per element in the file and in memory (a string element is a pointer in memory).
    public var byteSize: Int {
        switch self {
        case .float16: 2
        case .float32, .uint32: 4
        case .float64, .int64: 8
        case .uint8, .int8: 1
        case .string: MemoryLayout<UnsafeMutablePointer<CChar>?>.size
        }
    }
}

/// A datatype handle: either one the library predefines (not ours to close) or one we built.
struct Datatype: ~Copyable {
    let owned: OwnedID
    var id: hid_t { owned.id }

    init(adopting id: hid_t) { owned = OwnedID(id, .datatype) }
    private init(predefined id: hid_t) { owned = OwnedID(id, .borrowed) }

    /// The file type of `type`, exactly as Spec §2.3 fixes it (little-endian IEEE floats,
    /// binary16 built as h5py builds it, vlen UTF-8 strings).
    static func file(_ type: StorageType) throws(HDF5Error) -> Datatype {
        _ = callHDF5 { 0 }  // make sure the library is open before reading its globals
        switch type {
        case .float16: return Datatype(adopting: try hdf5("H5Tcopy(f16)") { chdf5_make_ieee_f16le() })
        case .float32: return Datatype(predefined: chdf5_t_ieee_f32le())
        case .float64: return Datatype(predefined: chdf5_t_ieee_f64le())
        case .int64: return Datatype(predefined: chdf5_t_std_i64le())
        case .uint8: return Datatype(predefined: chdf5_t_std_u8le())
        case .uint32: return Datatype(predefined: chdf5_t_std_u32le())
        case .int8: return Datatype(predefined: chdf5_t_std_i8le())
        case .string: return Datatype(adopting: try hdf5("H5Tcopy(vlen utf8)") { chdf5_make_vlen_utf8() })
        }
    }

    /// The in-memory type for `type` on this host. The memory type always comes from the
    /// Swift element type the caller reads into, never from the file, so HDF5 converts (or
    /// refuses) rather than overrunning a buffer. Only little-endian hosts are supported,
    /// where binary16 in memory is the same layout as in the file.
    static func memory(_ type: StorageType) throws(HDF5Error) -> Datatype {
        _ = callHDF5 { 0 }
        switch type {
        case .float16: return try file(.float16)
        case .float32: return Datatype(predefined: chdf5_t_native_float())
        case .float64: return Datatype(predefined: chdf5_t_native_double())
        case .int64: return Datatype(predefined: chdf5_t_native_int64())
        case .uint8: return Datatype(predefined: chdf5_t_native_uint8())
        case .uint32: return Datatype(predefined: chdf5_t_native_uint32())
        case .int8: return Datatype(predefined: chdf5_t_native_int8())
        case .string: return try file(.string)
        }
    }

    /// Whether this type equals `type`'s file type bit for bit (`H5Tequal`), which also
    /// fixes the byte order.
    func equals(_ type: StorageType) throws(HDF5Error) -> Bool {
        if type == .string {
            let cls = try hdf5("H5Tget_class") { H5Tget_class(id).rawValue }
            guard cls == H5T_STRING.rawValue else { return false }
            let variable = try hdf5("H5Tis_variable_str") { H5Tis_variable_str(id) }
            return variable > 0
        }
        let expected = try Datatype.file(type)
        return try hdf5("H5Tequal") { H5Tequal(id, expected.id) } > 0
    }

    /// Which of the Spec's storage types this is, or nil for any other type.
    func storageType() throws(HDF5Error) -> StorageType? {
        for candidate in StorageType.allCases where try equals(candidate) { return candidate }
        return nil
    }

    /// A short human description for error messages ("16-bit float, big-endian", ...).
    func describe() -> String {
        let cls = callHDF5 { H5Tget_class(id) }
        let size = callHDF5 { H5Tget_size(id) }
        let order = callHDF5 { H5Tget_order(id) }
        let kind: String
        switch cls {
        case H5T_FLOAT: kind = "float"
        case H5T_INTEGER: kind = "integer"
        case H5T_STRING: kind = "string"
        case H5T_COMPOUND: kind = "compound"
        default: kind = "class \(cls.rawValue)"
        }
        let endian = order == H5T_ORDER_BE ? ", big-endian" : order == H5T_ORDER_LE ? ", little-endian" : ""
        return "\(size * 8)-bit \(kind)\(endian)"
    }
}

/// A Swift element type with a fixed HDF5 storage type.
public protocol HDF5Element: BitwiseCopyable {
    static var storageType: StorageType { get }
}
extension Float: HDF5Element { public static var storageType: StorageType { .float32 } }
extension Double: HDF5Element { public static var storageType: StorageType { .float64 } }
extension Int64: HDF5Element { public static var storageType: StorageType { .int64 } }
extension UInt8: HDF5Element { public static var storageType: StorageType { .uint8 } }
extension UInt32: HDF5Element { public static var storageType: StorageType { .uint32 } }
extension Int8: HDF5Element { public static var storageType: StorageType { .int8 } }
#if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
extension Float16: HDF5Element { public static var storageType: StorageType { .float16 } }
#endif
