#ifndef GRADSKETCH_IO_H
#define GRADSKETCH_IO_H
#include <stdint.h>

/// Starts writeback of a byte range of an open file without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; a no-op elsewhere). Returns 0 on
/// success, -1 with errno set otherwise. Swift's Glibc module does not expose the call.
int gsk_start_writeback(int fd, int64_t offset, int64_t length);

#endif
