public import CGradSketchABI

/// An immutable list of strings in the layout `gs_strings` promises: NUL-terminated UTF-8
/// strings back to back in one allocation, with `count + 1` offsets whose ranges include each
/// NUL, so C reads a string in place and Python splits the whole buffer in one call.
final class StringList: @unchecked Sendable {
    let count: Int
    let bytes: UnsafeMutablePointer<CChar>
    let offsets: UnsafeMutablePointer<Int64>
    /// False when the list belongs to a result; `gs_strings_free` then leaves it alone.
    let ownedByCaller: Bool

    init(_ strings: [String], ownedByCaller: Bool) {
        count = strings.count
        self.ownedByCaller = ownedByCaller
        let total = strings.reduce(0) { $0 + $1.utf8.count + 1 }
        bytes = .allocate(capacity: max(total, 1))
        offsets = .allocate(capacity: strings.count + 1)
        var position = 0
        for (index, string) in strings.enumerated() {
            offsets[index] = Int64(position)
            for byte in string.utf8 {
                bytes[position] = CChar(bitPattern: byte)
                position += 1
            }
            bytes[position] = 0
            position += 1
        }
        offsets[strings.count] = Int64(position)
    }

    deinit {
        bytes.deallocate()
        offsets.deallocate()
    }
}

@_cdecl("gs_strings_count")
public func gs_strings_count(_ strings: OpaquePointer?) -> Int64 {
    guard let list = try? object(strings, as: StringList.self, "strings") else { return 0 }
    return Int64(list.count)
}

@_cdecl("gs_strings_get")
public func gs_strings_get(_ strings: OpaquePointer?, _ index: Int64) -> UnsafePointer<CChar>? {
    guard let list = try? object(strings, as: StringList.self, "strings"), index >= 0, index < list.count else { return nil }
    return UnsafePointer(list.bytes + Int(list.offsets[Int(index)]))
}

@_cdecl("gs_strings_packed")
public func gs_strings_packed(_ strings: OpaquePointer?) -> gs_text {
    guard let list = try? object(strings, as: StringList.self, "strings") else { return gs_text(bytes: nil, offsets: nil) }
    return gs_text(bytes: UnsafePointer(list.bytes), offsets: UnsafePointer(list.offsets))
}

@_cdecl("gs_strings_free")
public func gs_strings_free(_ strings: OpaquePointer?) {
    guard let list = try? object(strings, as: StringList.self, "strings"), list.ownedByCaller else { return }
    releaseHandle(strings, as: StringList.self)
}
