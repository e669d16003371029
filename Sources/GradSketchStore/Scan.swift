import Dispatch

extension SketchSet {
    /// The sum of every live value of the set, computed by `threads` threads straight from
    /// the mapped rows: the simplest full scan, and the figure the scan benchmark compares
    /// with the machine's streaming bandwidth.
    ///
    /// Each thread takes a contiguous byte range of a block; deleted rows are summed with
    /// the rest and subtracted afterwards, which keeps the hot loop free of branches.
    public func sumOfLiveValues(threads: Int = 2) throws -> Double {
        var total = 0.0
        try forEachBlock { block in
            let rowBytes = block.k * block.dtype.byteWidth
            let parts = max(1, min(threads, block.rowCount))
            let rowsPerPart = (block.rowCount + parts - 1) / parts
            // Each thread writes only its own slot.
            nonisolated(unsafe) let partial = UnsafeMutableBufferPointer<Double>.allocate(capacity: parts)
            defer { partial.deallocate() }
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let start = min(block.rowCount, part * rowsPerPart)
                let end = min(block.rowCount, start + rowsPerPart)
                let range = UnsafeRawBufferPointer(rebasing: block.bytes[(start * rowBytes)..<(end * rowBytes)])
                partial[part] = Kernels.sum(range, dtype: block.dtype)
            }
            total += partial.reduce(0, +)
            for row in block.deleted { total -= Kernels.sum(block.row(row), dtype: block.dtype) }
        }
        return total
    }
}
