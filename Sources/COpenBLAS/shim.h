// C shim over OpenBLAS's CBLAS interface.
#ifndef EMBEDPS_COPENBLAS_SHIM_H
#define EMBEDPS_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
