#ifndef GRADSKETCH_CZLIB_SHIM_H
#define GRADSKETCH_CZLIB_SHIM_H
// zlib from Debian (zlib1g-dev, pkg-config `zlib`), for gzip'd dataset files.
#include <zlib.h>
#endif
