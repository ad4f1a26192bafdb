// C shim over RocksDB's C API.
#ifndef EMBEDPS_CROCKSDB_SHIM_H
#define EMBEDPS_CROCKSDB_SHIM_H
#include <rocksdb/c.h>
#endif
