#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GradSketchHDF5

/// Checks a decoded manifest once, when it is read, before any number in it is used to
/// index, allocate or open anything.
///
/// A manifest with a valid checksum can still be hostile (hand-edited, or written by a buggy
/// writer): a file name that leaves the store, a row count near `Int.max`, a segment listed
/// twice. Everything downstream (readers, `verify`, `pack`, `info`) relies on these rules:
/// - every file name matches the Spec §1 grammar `<dir>/<32 lowercase hex>.h5` for the
///   directory its entry kind lives in, so no name can leave the store;
/// - every referenced data file appears once in the version;
/// - every count, size and dimension is non-negative, a deletion count is at most its
///   segment's rows, and the products and sums derived from them (bytes of a set, elements
///   of a tensor, rows of a set) fit in `Int`;
/// - where the entry records the file's size, the data it declares fits in that many bytes.
/// The data files themselves are checked against these numbers again when they are opened
/// (``DataFileCheck``).
enum ManifestValidation {
    static func check(_ manifest: Manifest, file: String) throws {
        var seen = Set<String>()
        func fail(_ message: String) -> StoreError {
            StoreError(.corrupt, "manifest is invalid: \(message)", path: file)
        }
        func checkName(_ name: String, directory: String, what: String) throws {
            guard isDataFileName(name, directory: directory) else {
                throw fail("\(what) file name must be \(directory)/<32 lowercase hex digits>.h5, found \"\(printable(name))\"")
            }
            guard seen.insert(name).inserted else {
                throw fail("\(what) file \(name) is listed twice in one version")
            }
        }
        func checkCount(_ value: Int, _ what: String) throws {
            guard value >= 0 else { throw fail("\(what) must be a non-negative integer, found \(value)") }
        }
        func checkSize(_ size: Int?, holds bytes: Int?, what: String) throws {
            guard let bytes else { throw fail("\(what) declares more data than fits in a 64-bit size") }
            guard let size else { return }
            try checkCount(size, "\(what) size")
            guard bytes <= size else {
                throw fail("\(what) declares \(bytes) bytes of data, but its file size is \(size) bytes")
            }
        }
        guard manifest.version >= 0 else { throw fail("version must be non-negative, found \(manifest.version)") }

        for (name, set) in manifest.sketchSets.sorted(by: { $0.key < $1.key }) {
            let what = "set \(name)"
            guard set.k >= 1 else { throw fail("\(what) has k = \(set.k), expected at least 1") }
            let width = SketchDType(rawValue: set.dtype)?.byteWidth ?? 4
            guard let rowBytes = product([set.k, width]) else { throw fail("\(what) has k = \(set.k), too large for 64-bit sizes") }
            var totalRows = 0
            for list in set.segmentLists ?? [] {
                try checkName(list.file, directory: SegmentLists.directory, what: "\(what) segment list")
                try checkCount(list.count, "\(what) segment list \(list.file) count")
                try checkCount(list.rows, "\(what) segment list \(list.file) rows")
                // Each row has an 8-byte hash and an 8-byte position.
                try checkSize(list.size, holds: product([list.rows, 16]), what: "\(what) segment list \(list.file)")
            }
            for segment in set.segments {
                try checkName(segment.file, directory: "segments", what: "\(what) segment")
                try checkCount(segment.rows, "\(what) segment \(segment.file) rows")
                try checkSize(segment.size, holds: product([segment.rows, rowBytes]), what: "\(what) segment \(segment.file)")
                guard let sum = add(totalRows, segment.rows), product([sum, rowBytes]) != nil else {
                    throw fail("\(what) declares more rows than fit in 64-bit sizes")
                }
                totalRows = sum
                if let deletions = segment.deletions {
                    try checkName(deletions.file, directory: "deletions", what: "\(what) deletion list")
                    guard deletions.count >= 0, deletions.count <= segment.rows else {
                        throw fail("\(what) segment \(segment.file) deletes \(deletions.count) rows, expected 0 to its \(segment.rows) rows")
                    }
                    try checkSize(deletions.size, holds: product([deletions.count, 8]), what: "\(what) deletion list \(deletions.file)")
                }
            }
            let segmentFiles = Set(set.segments.map(\.file))
            for (indexName, index) in set.indexes.sorted(by: { $0.key < $1.key }) {
                let location = "\(what) index \(indexName)"
                try checkName(index.file, directory: "indexes", what: location)
                try checkCount(index.lists, "\(location) lists")
                try checkCount(index.rows, "\(location) rows")
                try checkCount(index.builtOnVersion, "\(location) built_on_version")
                guard index.rows <= totalRows || !index.segments.allSatisfy(segmentFiles.contains) else {
                    throw fail("\(location) holds \(index.rows) rows, more than the \(totalRows) rows of the set")
                }
                if let parts = index.parts {
                    // ivf-rq4 (Spec §10.3): the quantizer file holds the centroids; each part
                    // its rows' 4-bit codes, and the parts add up to the index.
                    try checkSize(index.size, holds: product([index.lists, set.k, 4]), what: location)
                    var partRows = 0
                    for part in parts {
                        try checkName(part.file, directory: "indexes", what: "\(location) part")
                        try checkCount(part.rows, "\(location) part \(part.file) rows")
                        try checkCount(part.builtOnVersion, "\(location) part \(part.file) built_on_version")
                        try checkSize(part.size, holds: product([part.rows, (set.k + 1) / 2]), what: "\(location) part \(part.file)")
                        guard let sum = add(partRows, part.rows) else { throw fail("\(location) parts hold more rows than fit in 64-bit sizes") }
                        partRows = sum
                    }
                    guard partRows == index.rows, parts.flatMap(\.segments) == index.segments else {
                        throw fail("\(location) parts cover \(partRows) rows of \(parts.reduce(0) { $0 + $1.segments.count }) segments, expected the index's \(index.rows) rows and its \(index.segments.count) segments in order")
                    }
                    guard Set(parts.map(\.file)).count == parts.count, !parts.contains(where: { $0.file == index.file }) else {
                        throw fail("\(location) lists a part file twice")
                    }
                } else {
                    let declared = product([index.rows, set.k]).flatMap { codes in
                        product([index.lists, set.k, 4]).flatMap { add(codes, $0) }
                    }
                    try checkSize(index.size, holds: declared, what: location)
                }
                for covered in index.segments where !isDataFileName(covered, directory: "segments") {
                    throw fail("\(location) covers segment file \"\(printable(covered))\", expected segments/<32 lowercase hex digits>.h5")
                }
                guard Set(index.segments).count == index.segments.count else {
                    throw fail("\(location) lists a covered segment twice")
                }
            }
        }
        for (name, set) in manifest.tensorSets.sorted(by: { $0.key < $1.key }) {
            let what = "tensor set \(name)"
            try checkName(set.file, directory: "tensors", what: what)
            var total = 0
            for tensor in set.tensors {
                for dimension in tensor.shape { try checkCount(dimension, "\(what) tensor \(tensor.name) dimension") }
                let width = SketchDType(rawValue: tensor.dtype)?.byteWidth ?? 4
                guard let bytes = product(tensor.shape + [width]), let sum = add(total, bytes) else {
                    throw fail("\(what) tensor \(tensor.name) of shape \(tensor.shape) is too large for 64-bit sizes")
                }
                total = sum
            }
            try checkSize(set.size, holds: total, what: what)
        }
        for (name, result) in (manifest.results ?? [:]).sorted(by: { $0.key < $1.key }) {
            let what = "result \(name)"
            try checkName(result.file, directory: "results", what: what)
            try checkCount(result.count, "\(what) count")
            try checkCount(result.setVersion, "\(what) set_version")
            // Positions (int64) and scores (float64) are 8 bytes per row each.
            try checkSize(result.size, holds: product([result.count, 16]), what: what)
        }
    }

    /// Whether `name` is `directory/` followed by 32 lowercase hex digits and `.h5`: the only
    /// data-file names a manifest may hold (Spec §1), which cannot name anything outside the
    /// store.
    static func isDataFileName(_ name: String, directory: String) -> Bool {
        let bytes = Array(name.utf8)
        let prefix = Array((directory + "/").utf8), suffix = Array(".h5".utf8)
        guard bytes.count == prefix.count + 32 + suffix.count,
              bytes.starts(with: prefix), bytes.suffix(suffix.count).elementsEqual(suffix) else { return false }
        return bytes[prefix.count..<(prefix.count + 32)].allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The product, or nil when it overflows `Int`.
    static func product(_ factors: [Int]) -> Int? {
        var result = 1
        for factor in factors {
            let (value, overflow) = result.multipliedReportingOverflow(by: factor)
            if overflow { return nil }
            result = value
        }
        return result
    }

    static func add(_ a: Int, _ b: Int) -> Int? {
        let (value, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : value
    }

    /// A name with control characters (a NUL, a newline) escaped, for error messages.
    static func printable(_ name: String) -> String {
        name.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
    }
}

/// Checks made on a data file before HDF5 (or `mmap`) opens it, and on its datasets before
/// anything is allocated from their declared shapes.
enum DataFileCheck {
    /// Refuses anything at `path` that is not a regular file: a symbolic link (which could
    /// lead outside the store), a FIFO (opening it would block forever), a device or a
    /// directory. Returns the file's size.
    @discardableResult
    static func regularFile(_ path: String) throws -> Int {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw StoreError(.corrupt, "file referenced by the manifest is missing", path: path)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            let found: String
            switch kind {
            case S_IFLNK: found = "a symbolic link"
            case S_IFIFO: found = "a FIFO"
            case S_IFDIR: found = "a directory"
            case S_IFCHR, S_IFBLK: found = "a device"
            case S_IFSOCK: found = "a socket"
            default: found = "a special file"
            }
            throw StoreError(.corrupt, "expected a regular file, found \(found)", path: path)
        }
        return Int(info.st_size)
    }

    /// ``regularFile(_:)`` for a data file of a store (`STORE/<dir>/<name>`): its directory
    /// must also be a real directory, not a symbolic link that leads outside the store.
    @discardableResult
    static func dataFile(_ path: String) throws -> Int {
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        var info = stat()
        if !directory.isEmpty, lstat(directory, &info) == 0, (info.st_mode & S_IFMT) != S_IFDIR {
            let found = (info.st_mode & S_IFMT) == S_IFLNK ? "a symbolic link" : "not a directory"
            throw StoreError(.corrupt, "expected the store's data directory to be a directory inside the store, found \(found)", path: directory)
        }
        return try regularFile(path)
    }

    /// Refuses a dataset whose declared shape needs more bytes than its whole file holds,
    /// before anything is allocated for it: GradSketch datasets are stored unfiltered
    /// (Spec §2.3, §2.4), so a conforming file always holds every byte it declares.
    static func fits(_ dataset: borrowing Dataset, in path: String, location: String) throws {
        let fileSize = try regularFile(path)
        let declared = try withContext(.corrupt, "cannot read the dataset's shape and type", path: location) {
            try dataset.declaredByteCount()
        }
        guard let declared, declared <= fileSize else {
            let shape = (try? dataset.shape()).map { "\($0)" } ?? "?"
            throw StoreError(.corrupt, "dataset of shape \(shape) declares \(declared.map { "\($0) bytes" } ?? "more bytes than fit in 64 bits"), more than the \(fileSize) bytes of its file", path: location)
        }
    }
}
