// C shim over zlib (gzip-compressed interaction files).
#ifndef EMBEDPS_CZLIB_SHIM_H
#define EMBEDPS_CZLIB_SHIM_H
#include <zlib.h>
#endif
