#define _GNU_SOURCE
#include "gradsketch_kernels.h"
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// OpenBLAS built with DYNAMIC_ARCH picks its kernels once, when it loads, from the CPU model
// number. Debian's 0.3.21 does not know recent Xeon and EPYC models and falls back to its
// "Prescott" (SSE3) kernels, a fraction of the speed of the AVX2/AVX-512 ones. When the user
// has not chosen (OPENBLAS_CORETYPE unset) and the library chose Prescott on a CPU with AVX2,
// this re-runs OpenBLAS's own kernel selection with the core type named from the CPU's
// features. It runs before any BLAS call of the program, so no call sees a half switch.

const char *gsk_select_blas_kernels(void) {
    char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
    void (*quit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void (*init)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (!corename) return "unknown";
    if (getenv("OPENBLAS_CORETYPE") || !quit || !init) return corename();
    const char *current = corename();
    if (strcasecmp(current, "prescott") != 0 && strcasecmp(current, "core2") != 0 &&
        strcasecmp(current, "nehalem") != 0 && strcasecmp(current, "barcelona") != 0) return current;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const char *wanted = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) wanted = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) wanted = "Haswell";
    if (!wanted) return current;
    setenv("OPENBLAS_CORETYPE", wanted, 0);
    quit();
    init();
    unsetenv("OPENBLAS_CORETYPE");
#endif
    return corename();
}
