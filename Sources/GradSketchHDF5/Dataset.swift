internal import CHDF5

/// Where a dataset's elements lie in its file, when they may be memory-mapped.
public struct MappableExtent: Sendable, Equatable {
    /// Absolute byte offset in the file (user block included).
    public let offset: Int
    /// Length in bytes: element count × element size.
    public let length: Int
}

/// An open dataset.
public struct Dataset: ~Copyable, HDF5Object {
    public let file: HDF5File
    public let objectPath: String
    let owned: OwnedID
    public var objectHandle: ObjectHandle { ObjectHandle(id: owned.id) }
    var objectID: hid_t { owned.id }

    init(file: HDF5File, path: String, id: hid_t) {
        self.file = file
        self.objectPath = path
        owned = OwnedID(id, .dataset)
    }

    /// The dataset's shape (`[]` for a scalar).
    public func shape() throws(HDF5Error) -> [Int] {
        let space = Dataspace(adopting: try hdf5("H5Dget_space", location) { H5Dget_space(objectID) })
        return try space.shape
    }

    /// The Spec storage type the file's datatype equals, or nil if it is none of them.
    public func storageType() throws(HDF5Error) -> StorageType? {
        let type = Datatype(adopting: try hdf5("H5Dget_type", location) { H5Dget_type(objectID) })
        return try type.storageType()
    }

    /// A description of the file's datatype, for messages.
    public func typeDescription() throws(HDF5Error) -> String {
        let type = Datatype(adopting: try hdf5("H5Dget_type", location) { H5Dget_type(objectID) })
        return type.describe()
    }

    /// Writes elements of type `E` into rows `rows` of a rank-1 or rank-2 dataset
    /// (`rowLength` nil for rank 1), or into the whole dataset when `rows` is nil.
    ///
    /// - Precondition: `values.count` equals the number of selected elements.
    ///
    /// The corresponding HDF5 call is `H5Dwrite`.
    public func write<E: HDF5Element>(_ values: UnsafeBufferPointer<E>, rows: Range<Int>? = nil, rowLength: Int? = nil) throws(HDF5Error) {
        let memoryType = try Datatype.memory(E.storageType)
        try transfer(rows: rows, rowLength: rowLength, count: values.count) { (memorySpace, fileSpace) in
            H5Dwrite(objectID, memoryType.id, memorySpace, fileSpace, chdf5_p_default(), values.baseAddress)
        }
    }

    /// Reads elements of type `E` from rows `rows` (or the whole dataset) into `buffer`.
    ///
    /// The memory type is `E`'s: HDF5 converts from the file type if they differ.
    ///
    /// The corresponding HDF5 call is `H5Dread`.
    public func read<E: HDF5Element>(into buffer: UnsafeMutableBufferPointer<E>, rows: Range<Int>? = nil, rowLength: Int? = nil) throws(HDF5Error) {
        let memoryType = try Datatype.memory(E.storageType)
        try transfer(rows: rows, rowLength: rowLength, count: buffer.count) { (memorySpace, fileSpace) in
            H5Dread(objectID, memoryType.id, memorySpace, fileSpace, chdf5_p_default(), buffer.baseAddress)
        }
    }

    /// Writes raw little-endian elements of `type` (the memory type is `type`'s native one,
    /// so `bytes.count` must be the selected element count times `type.byteSize`).
    public func writeBytes(_ bytes: UnsafeRawBufferPointer, as type: StorageType, rows: Range<Int>? = nil, rowLength: Int? = nil) throws(HDF5Error) {
        precondition(type != .string && bytes.count % type.byteSize == 0, "raw writes take whole numeric elements")
        let memoryType = try Datatype.memory(type)
        try transfer(rows: rows, rowLength: rowLength, count: bytes.count / type.byteSize) { (memorySpace, fileSpace) in
            H5Dwrite(objectID, memoryType.id, memorySpace, fileSpace, chdf5_p_default(), bytes.baseAddress)
        }
    }

    /// Reads elements converted to `type` into raw memory (see ``writeBytes(_:as:rows:rowLength:)``).
    public func readBytes(into bytes: UnsafeMutableRawBufferPointer, as type: StorageType, rows: Range<Int>? = nil, rowLength: Int? = nil) throws(HDF5Error) {
        precondition(type != .string && bytes.count % type.byteSize == 0, "raw reads take whole numeric elements")
        let memoryType = try Datatype.memory(type)
        try transfer(rows: rows, rowLength: rowLength, count: bytes.count / type.byteSize) { (memorySpace, fileSpace) in
            H5Dread(objectID, memoryType.id, memorySpace, fileSpace, chdf5_p_default(), bytes.baseAddress)
        }
    }

    /// Bytes reading the whole dataset would allocate (element count × the stored type's
    /// size), or nil when that does not fit in `Int`. Callers compare it with what the file
    /// can hold before reading a dataset whose shape a damaged file may have inflated.
    public func declaredByteCount() throws(HDF5Error) -> Int? {
        let stored = Datatype(adopting: try hdf5("H5Dget_type", location) { H5Dget_type(objectID) })
        let width = try hdf5("H5Tget_size", location) { H5Tget_size(stored.id) }
        guard let count = elementCount(try shape()) else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
        return overflow ? nil : bytes
    }

    /// The product of `shape`, or nil when it overflows.
    private func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// Reads the whole dataset as `[E]`.
    public func readAll<E: HDF5Element>(as type: E.Type = E.self) throws(HDF5Error) -> [E] {
        guard let count = elementCount(try shape()) else {
            throw hdf5Failure("H5Dread", location, "the declared shape \(try shape()) has more elements than fit in memory")
        }
        var failure: HDF5Error?
        let values = [E](unsafeUninitializedCapacity: count) { buffer, initialized in
            do {
                try read(into: buffer)
                initialized = count
            } catch let error as HDF5Error {
                failure = error
                initialized = 0
            } catch {
                failure = HDF5Error(call: "H5Dread", context: location, stack: ["\(error)"])
                initialized = 0
            }
        }
        if let failure { throw failure }
        return values
    }

    private func transfer(rows: Range<Int>?, rowLength: Int?, count: Int, _ call: (hid_t, hid_t) -> herr_t) throws(HDF5Error) {
        guard let rows else {
            try hdf5("H5Dread/H5Dwrite", location) { call(chdf5_s_all(), chdf5_s_all()) }
            return
        }
        precondition(rows.count * (rowLength ?? 1) == count, "buffer size does not match the selected rows")
        if count == 0 { return }
        let fileSpace = Dataspace(adopting: try hdf5("H5Dget_space", location) { H5Dget_space(objectID) })
        try fileSpace.selectRows(rows, rowLength: rowLength)
        let memorySpace = try Dataspace(shape: [count])
        try hdf5("H5Dread/H5Dwrite", "\(location) rows \(rows)") { call(memorySpace.id, fileSpace.id) }
    }

    /// Writes every element of a fixed-length string dataset (or the one element of a scalar
    /// one), NUL-padded to the dataset's width.
    public func writeStrings(_ strings: [String]) throws(HDF5Error) {
        let stored = Datatype(adopting: try hdf5("H5Dget_type", location) { H5Dget_type(objectID) })
        if try hdf5("H5Tis_variable_str", location, { H5Tis_variable_str(stored.id) }) == 0 {
            let width = try hdf5("H5Tget_size", location) { H5Tget_size(stored.id) }
            var buffer = [UInt8](repeating: 0, count: max(1, strings.count * width))
            for (index, string) in strings.enumerated() {
                let utf8 = Array(string.utf8)
                precondition(utf8.count <= width, "string longer than the dataset's fixed width")
                buffer.replaceSubrange((index * width)..<(index * width + utf8.count), with: utf8)
            }
            try hdf5("H5Dwrite", location) {
                H5Dwrite(objectID, stored.id, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), buffer)
            }
            return
        }
        // GradSketch writes fixed-length strings only (Spec §2.3); variable-length ones are
        // read for other writers' files but never produced.
        throw hdf5Failure("H5Dwrite", location, "expected a fixed-length string dataset, found variable-length strings")
    }

    /// Reads every element of a string dataset (or the elements `rows` of a one-dimensional
    /// one), fixed-length (trailing NULs dropped) or variable-length (a scalar reads as one
    /// element). Reading a range reads only that range's bytes from the file.
    public func readStrings(rows: Range<Int>? = nil) throws(HDF5Error) -> [String] {
        let stored = Datatype(adopting: try hdf5("H5Dget_type", location) { H5Dget_type(objectID) })
        guard try hdf5("H5Tget_class", location, { H5Tget_class(stored.id).rawValue }) == H5T_STRING.rawValue else {
            throw hdf5Failure("H5Dread", location, "expected strings, found \(try typeDescription())")
        }
        let shape = try shape()
        guard let total = elementCount(shape) else {
            throw hdf5Failure("H5Dread", location, "the declared shape \(shape) has more elements than fit in memory")
        }
        if let rows {
            guard shape.count == 1, rows.lowerBound >= 0, rows.upperBound <= total else {
                throw hdf5Failure("H5Dread", location, "expected elements \(rows) of a one-dimensional dataset, found shape \(shape)")
            }
        }
        let count = rows?.count ?? total
        if count == 0 { return [] }
        // The file and memory selections: everything, or the requested range only.
        let fileSpace = Dataspace(adopting: try hdf5("H5Dget_space", location) { H5Dget_space(objectID) })
        let memorySpace = try Dataspace(shape: [count])
        if let rows { try fileSpace.selectRows(rows, rowLength: nil) }
        let fileSelection = rows == nil ? chdf5_s_all() : fileSpace.id
        let memorySelection = rows == nil ? chdf5_s_all() : memorySpace.id
        if try hdf5("H5Tis_variable_str", location, { H5Tis_variable_str(stored.id) }) == 0 {
            let width = try hdf5("H5Tget_size", location) { H5Tget_size(stored.id) }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
            guard !overflow else {
                throw hdf5Failure("H5Dread", location, "\(count) strings of \(width) bytes do not fit in memory")
            }
            var buffer = [UInt8](repeating: 0, count: bytes)
            try hdf5("H5Dread", location) {
                H5Dread(objectID, stored.id, memorySelection, fileSelection, chdf5_p_default(), &buffer)
            }
            return (0..<count).map { index in
                let element = buffer[(index * width)..<((index + 1) * width)]
                let end = element.firstIndex(of: 0) ?? element.endIndex
                return String(decoding: element[..<end], as: UTF8.self)
            }
        }
        let type = try Datatype.memory(.string)
        var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
        try hdf5("H5Dread", location) {
            H5Dread(objectID, type.id, memorySelection, fileSelection, chdf5_p_default(), &pointers)
        }
        let strings = pointers.map { $0.map { String(cString: $0) } ?? "" }
        // Reclaim over the memory layout the strings were read into.
        let reclaimSpace = rows == nil ? fileSpace.id : memorySpace.id
        try hdf5("H5Dvlen_reclaim", location) { H5Dvlen_reclaim(type.id, reclaimSpace, chdf5_p_default(), &pointers) }
        return strings
    }

    /// Where this dataset's elements lie in the file, if Spec §2.4 allows mapping them.
    ///
    /// Every condition is checked: contiguous layout, no filters, no external files, storage
    /// allocated, a defined offset, a file type equal to `type` (which fixes byte order),
    /// storage size equal to elements × element size, and an offset aligned to the element
    /// size. Returns a reason instead of an extent when any check fails, so the caller can
    /// fall back to `H5Dread` and say why.
    public func mappableExtent(as type: StorageType) throws(HDF5Error) -> Result<MappableExtent, MappingRefusal> {
        let dcpl = PropertyList(adopting: try hdf5("H5Dget_create_plist", location) { H5Dget_create_plist(objectID) })
        let layout = callHDF5 { H5Pget_layout(dcpl.id) }
        guard layout == H5D_CONTIGUOUS else { return .failure(MappingRefusal("layout is not contiguous")) }
        guard try hdf5("H5Pget_nfilters", location, { H5Pget_nfilters(dcpl.id) }) == 0 else {
            return .failure(MappingRefusal("the dataset has filters"))
        }
        guard try hdf5("H5Pget_external_count", location, { H5Pget_external_count(dcpl.id) }) == 0 else {
            return .failure(MappingRefusal("the dataset uses external files"))
        }
        var status = H5D_SPACE_STATUS_ERROR
        try hdf5("H5Dget_space_status", location) { H5Dget_space_status(objectID, &status) }
        guard status == H5D_SPACE_STATUS_ALLOCATED else { return .failure(MappingRefusal("storage is not allocated")) }
        // HDF5 1.10.8 returns `userblock - 1` instead of HADDR_UNDEF for unallocated storage in
        // a file with a user block; the status check above rules that case out first.
        let offset = callHDF5 { H5Dget_offset(objectID) }
        guard offset != chdf5_haddr_undef() else { return .failure(MappingRefusal("HDF5 reports no file offset")) }
        guard try storageType() == type else {
            return .failure(MappingRefusal("stored type is \(try typeDescription()), expected \(type.rawValue) little-endian"))
        }
        guard let length = elementCount(try shape()).flatMap({ count in
            let (bytes, overflow) = count.multipliedReportingOverflow(by: type.byteSize)
            return overflow ? nil : bytes
        }) else {
            return .failure(MappingRefusal("the declared shape \(try shape()) does not fit in a 64-bit size"))
        }
        let storage = callHDF5 { H5Dget_storage_size(objectID) }
        guard Int(exactly: storage) == length else {
            return .failure(MappingRefusal("storage size is \(storage) bytes, expected \(length)"))
        }
        guard let start = Int(exactly: offset), start.addingReportingOverflow(length).overflow == false else {
            return .failure(MappingRefusal("offset \(offset) is beyond any file"))
        }
        guard start % type.byteSize == 0 else {
            return .failure(MappingRefusal("offset \(offset) is not a multiple of \(type.byteSize)"))
        }
        return .success(MappableExtent(offset: start, length: length))
    }

    /// Closes the dataset now, reporting failure.
    public consuming func close() throws(HDF5Error) {
        try owned.close()
    }
}

/// Why a dataset may not be memory-mapped.
public struct MappingRefusal: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ reason: String) { description = reason }
}

extension PropertyList {
    init(adopting id: hid_t) { owned = OwnedID(id, .propertyList) }
}
