/// Path arithmetic on strings that never traps.
///
/// swift-corelibs-foundation's `NSString.deletingLastPathComponent` crashes (an illegal
/// instruction in `String._startOfLastPathComponent`) on a one-character relative path such as
/// `"s"`, which is a valid store or file name; so the tools use this instead.
public enum PathText {
    /// The directory part of `path`, as `dirname(1)` without the final `"."`: `""` for a name
    /// with no slash, `"/"` for a child of the root; trailing and repeated slashes ignored.
    public static func parent(of path: String) -> String {
        var bytes = Array(path.utf8)
        while bytes.count > 1, bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "" }
        var end = slash
        while end > 0, bytes[end - 1] == UInt8(ascii: "/") { end -= 1 }
        return end == 0 ? "/" : String(decoding: bytes[..<end], as: UTF8.self)
    }
}
