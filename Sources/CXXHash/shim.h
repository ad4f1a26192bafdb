// C shim over libxxhash: the pinned hash of EmbedPS is XXH64.
#ifndef EMBEDPS_CXXHASH_SHIM_H
#define EMBEDPS_CXXHASH_SHIM_H
#include <xxhash.h>
#endif
