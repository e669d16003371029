// Getters for the HDF5 macros Swift cannot import (they expand to comma expressions or to
// globals that are only valid after H5open), plus the few helpers the Swift seam needs.
// Every function is prefixed chdf5_.
#ifndef CHDF5_SHIM_H
#define CHDF5_SHIM_H
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static inline hid_t chdf5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t chdf5_s_all(void) { return H5S_ALL; }
static inline hid_t chdf5_e_default(void) { return H5E_DEFAULT; }
static inline unsigned chdf5_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline unsigned chdf5_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned chdf5_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline hid_t chdf5_p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t chdf5_p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t chdf5_p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t chdf5_p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t chdf5_t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t chdf5_t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t chdf5_t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t chdf5_t_native_uint32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t chdf5_t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t chdf5_t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t chdf5_t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
static inline hid_t chdf5_t_std_i64le(void) { return H5T_STD_I64LE; }
static inline hid_t chdf5_t_std_u8le(void) { return H5T_STD_U8LE; }
static inline hid_t chdf5_t_std_u32le(void) { return H5T_STD_U32LE; }
static inline hid_t chdf5_t_std_i8le(void) { return H5T_STD_I8LE; }
static inline hid_t chdf5_t_c_s1(void) { return H5T_C_S1; }
static inline haddr_t chdf5_haddr_undef(void) { return HADDR_UNDEF; }
static inline size_t chdf5_t_variable(void) { return H5T_VARIABLE; }

/// A new copy of IEEE binary16, little-endian, built exactly as h5py builds it on HDF5 < 1.14.4
/// (copy F32BE, set fields, size, bias, order). Returns a negative id on failure.
static inline hid_t chdf5_make_ieee_f16le(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32BE);
    if (t < 0) return t;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 ||
        H5Tset_ebias(t, 15) < 0 || H5Tset_order(t, H5T_ORDER_LE) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/// A new variable-length UTF-8 string type (what h5py writes for a Python str).
static inline hid_t chdf5_make_vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/// A new fixed-length UTF-8 string type of `size` bytes, padded with NULs. Fixed-length
/// strings live in the dataset's own storage (or, for attributes, in the checksummed object
/// header) rather than HDF5's global heap, so corrupted bytes read as different characters
/// instead of as a corrupted heap length that HDF5 follows out of bounds.
static inline hid_t chdf5_make_fixed_utf8(size_t size) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, size) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/// Turns off HDF5's automatic error printing for the calling thread (the error stack is
/// per thread in a thread-safe build), once per thread.
static inline void chdf5_silence_errors_on_this_thread(void) {
    static _Thread_local int silenced = 0;
    if (!silenced) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        silenced = 1;
    }
}

/// Collects the current thread's error stack into one newline-separated string (caller
/// frees with free()), then clears the stack.
typedef struct { char *text; size_t length; size_t capacity; } chdf5_error_text;

static inline herr_t chdf5_error_walker(unsigned n, const H5E_error2_t *err, void *data) {
    chdf5_error_text *out = (chdf5_error_text *)data;
    char line[1024];
    const char *desc = err->desc ? err->desc : "";
    int len = snprintf(line, sizeof line, "#%u %s(): %s%s", n,
                       err->func_name ? err->func_name : "?", desc, "\n");
    if (len < 0) return 0;
    if ((size_t)len >= sizeof line) len = sizeof line - 1;
    if (out->length + (size_t)len + 1 > out->capacity) {
        size_t cap = (out->capacity + (size_t)len + 1) * 2;
        char *grown = (char *)realloc(out->text, cap);
        if (!grown) return -1;
        out->text = grown;
        out->capacity = cap;
    }
    memcpy(out->text + out->length, line, (size_t)len);
    out->length += (size_t)len;
    out->text[out->length] = 0;
    return 0;
}

static inline char *chdf5_take_error_stack(void) {
    chdf5_error_text out = {0, 0, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, chdf5_error_walker, &out);
    H5Eclear2(H5E_DEFAULT);
    return out.text;
}

#endif
