#ifndef GRADSKETCH_COPENBLAS_SHIM_H
#define GRADSKETCH_COPENBLAS_SHIM_H
// OpenBLAS's CBLAS interface (Debian: libopenblas-dev, pkg-config `openblas`).
#include <cblas.h>
#endif
