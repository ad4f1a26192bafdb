// Linux and compiler definitions Glibc's Swift module does not export: O_DIRECT, memfd_create and sync_file_range (need _GNU_SOURCE),
// transparent huge page advice, and cache prefetch hints for the row store's batch loops. Header only.
#ifndef EMBEDPS_CLINUX_SHIM_H
#define EMBEDPS_CLINUX_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <sys/mman.h>
#include <sched.h>

static const int embedps_o_direct = O_DIRECT;
/// An anonymous memory file (memfd_create(2)), close-on-exec; -1 with errno on failure.
static inline int embedps_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }
static const int embedps_madv_hugepage = MADV_HUGEPAGE;

/// Puts the calling thread in the SCHED_BATCH class (a CPU-bound background thread: the scheduler never
/// lets it preempt a running thread when it wakes). 0, or -1 with errno.
static inline int embedps_sched_batch(void) { struct sched_param p = { 0 }; return sched_setscheduler(0, SCHED_BATCH, &p); }

/// Starts writeback of `n` bytes of `fd` from `offset` without waiting (sync_file_range(2)); with `wait`,
/// first waits for writeback already started there and then for this one. 0, or -1 with errno.
static inline int embedps_sync_range(int fd, long long offset, long long n, int wait) {
    return sync_file_range(fd, offset, n, wait ? (SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) : SYNC_FILE_RANGE_WRITE);
}

/// Hints that `p`'s cache line will be read soon.
static inline __attribute__((always_inline)) void embedps_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
/// Hints that `p`'s cache line will be written soon.
static inline __attribute__((always_inline)) void embedps_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }
#endif
