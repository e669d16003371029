// The C ABI's struct layouts are part of its major version (Spec/c-api.md §2): these
// assertions stop a change to the header that would silently move a field.
#include "gradsketch.h"

_Static_assert(sizeof(gs_address) == 16, "gs_address is two int64");
_Static_assert(sizeof(gs_text) == 2 * sizeof(void *), "gs_text is two pointers");
_Static_assert(sizeof(gs_segment_view) == 48, "gs_segment_view layout moved");
_Static_assert(sizeof(gs_query_params) == 64, "gs_query_params layout moved");
_Static_assert(sizeof(gs_select_params) == 32, "gs_select_params layout moved");
_Static_assert(sizeof(gs_tensor) == 32, "gs_tensor layout moved");
_Static_assert(sizeof(gs_tensor_view) == 48, "gs_tensor_view layout moved");
