extension SegmentRows {
    /// Calls `body` with all rows of this segment's file (`entry.rows × k` elements of
    /// `dtype`, deleted rows included, loaded and verified on first use) and the sorted local
    /// rows this version deleted. The bytes are valid only inside `body`.
    public func withRowBytes<R>(_ body: (UnsafeRawBufferPointer, [Int]) throws -> R) throws -> R {
        let storage = try rowStorage()
        let deleted = try deletedRows()
        return try withExtendedLifetime(storage) { try body(storage.bytes, deleted) }
    }
}
