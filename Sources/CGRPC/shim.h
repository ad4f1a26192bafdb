// C shim over the gRPC core: includes and static inline wrappers for the macros and unions Swift
// cannot use directly. Nothing here holds state.
#ifndef EMBEDPS_CGRPC_SHIM_H
#define EMBEDPS_CGRPC_SHIM_H
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <grpc/support/alloc.h>
#include <string.h>

// Slices take a pointer: a small slice stores its bytes inline, so the start of a by-value copy would
// point into the callee's stack.
static inline uint8_t *embedps_slice_start(grpc_slice *s) { return GRPC_SLICE_START_PTR(*s); }
static inline size_t embedps_slice_length(const grpc_slice *s) { return GRPC_SLICE_LENGTH(*s); }
static inline uint32_t embedps_propagate_defaults(void) { return GRPC_PROPAGATE_DEFAULTS; }
static inline grpc_slice embedps_slice_malloc(size_t n) { return grpc_slice_malloc(n); }

/// A byte buffer holding one freshly allocated slice of `length` bytes; `*data` points at its bytes.
static inline grpc_byte_buffer *embedps_byte_buffer_alloc(size_t length, uint8_t **data) {
    grpc_slice s = grpc_slice_malloc(length);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    // Point at the buffer's own copy of the slice: a small slice keeps its bytes inline.
    *data = GRPC_SLICE_START_PTR(bb->data.raw.slice_buffer.slices[0]);
    return bb;
}

/// A byte buffer of two slices: a freshly allocated one of `length` bytes (`*data` points at its bytes),
/// then `tailLength` bytes at `tail`, not copied: `release(owner)` runs once gRPC holds no reference to them.
static inline grpc_byte_buffer *embedps_byte_buffer_alloc_borrowing(size_t length, uint8_t **data, void *tail, size_t tailLength,
                                                                    void (*release)(void *), void *owner) {
    grpc_slice s[2];
    s[0] = grpc_slice_malloc(length);
    s[1] = grpc_slice_new_with_user_data(tail, tailLength, release, owner);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(s, 2);
    grpc_slice_unref(s[0]);
    grpc_slice_unref(s[1]);
    *data = GRPC_SLICE_START_PTR(bb->data.raw.slice_buffer.slices[0]);
    return bb;
}

/// Whether a byte buffer's slices are its bytes as sent (uncompressed), so they may be read in place.
static inline int embedps_byte_buffer_is_plain(const grpc_byte_buffer *bb) {
    return bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE;
}

/// A byte buffer's bytes as one contiguous slice: a new reference when the buffer is one uncompressed slice,
/// else a copy (the reader decompresses a compressed buffer).
static inline grpc_slice embedps_byte_buffer_flatten(grpc_byte_buffer *bb) {
    if (embedps_byte_buffer_is_plain(bb) && bb->data.raw.slice_buffer.count == 1) {
        return grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    }
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) { return grpc_empty_slice(); }
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    return s;
}

/// Number of slices of a byte buffer.
static inline size_t embedps_byte_buffer_slice_count(const grpc_byte_buffer *bb) { return bb->data.raw.slice_buffer.count; }
/// Slice `i` of a byte buffer: its first byte (valid while the buffer lives), its length in `*length`.
static inline const uint8_t *embedps_byte_buffer_slice(grpc_byte_buffer *bb, size_t i, size_t *length) {
    grpc_slice *s = &bb->data.raw.slice_buffer.slices[i];
    *length = GRPC_SLICE_LENGTH(*s);
    return GRPC_SLICE_START_PTR(*s);
}

static inline void embedps_op_send_initial_metadata(grpc_op *op, size_t count, grpc_metadata *md) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = count;
    op->data.send_initial_metadata.metadata = md;
}
static inline void embedps_op_send_message(grpc_op *op, grpc_byte_buffer *bb) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_MESSAGE;
    op->data.send_message.send_message = bb;
}
static inline void embedps_op_send_close_from_client(grpc_op *op) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
}
static inline void embedps_op_send_status_from_server(grpc_op *op, grpc_status_code code, grpc_slice *details,
                                                      size_t trailing_count, grpc_metadata *trailing) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = code;
    op->data.send_status_from_server.status_details = details;
    op->data.send_status_from_server.trailing_metadata_count = trailing_count;
    op->data.send_status_from_server.trailing_metadata = trailing;
}
static inline void embedps_op_recv_initial_metadata(grpc_op *op, grpc_metadata_array *md) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_RECV_INITIAL_METADATA;
    op->data.recv_initial_metadata.recv_initial_metadata = md;
}
static inline void embedps_op_recv_message(grpc_op *op, grpc_byte_buffer **bb) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_RECV_MESSAGE;
    op->data.recv_message.recv_message = bb;
}
static inline void embedps_op_recv_status_on_client(grpc_op *op, grpc_metadata_array *trailing,
                                                    grpc_status_code *status, grpc_slice *details) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = trailing;
    op->data.recv_status_on_client.status = status;
    op->data.recv_status_on_client.status_details = details;
}
static inline void embedps_op_recv_close_on_server(grpc_op *op, int *cancelled) {
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op->data.recv_close_on_server.cancelled = cancelled;
}

/// An integer channel argument; `key` must outlive the args that use it.
static inline void embedps_arg_integer(grpc_arg *arg, char *key, int value) {
    arg->type = GRPC_ARG_INTEGER;
    arg->key = key;
    arg->value.integer = value;
}
static inline void embedps_arg_string(grpc_arg *arg, char *key, char *value) {
    arg->type = GRPC_ARG_STRING;
    arg->key = key;
    arg->value.string = value;
}

static inline gpr_timespec embedps_deadline_after_millis(int64_t ms) {
    if (ms < 0) { return gpr_inf_future(GPR_CLOCK_REALTIME); }
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}
static inline gpr_timespec embedps_inf_future(void) { return gpr_inf_future(GPR_CLOCK_REALTIME); }

// ThreadSanitizer annotations for hand-offs through the gRPC core (not instrumented): memory written before
// a batch starts is published to the thread that completes it. Weak references: with no TSan runtime
// linked they are null and these are no-ops.
void __tsan_acquire(void *addr) __attribute__((weak));
void __tsan_release(void *addr) __attribute__((weak));
static inline void embedps_tsan_release(const void *addr) { if (__tsan_release) { __tsan_release((void *)addr); } }
static inline void embedps_tsan_acquire(const void *addr) { if (__tsan_acquire) { __tsan_acquire((void *)addr); } }
/// Milliseconds until `deadline`, or -1 when it is infinite.
static inline int64_t embedps_millis_until(gpr_timespec deadline) {
    gpr_timespec inf = gpr_inf_future(deadline.clock_type);
    if (gpr_time_cmp(deadline, inf) == 0) { return -1; }
    gpr_timespec now = gpr_now(deadline.clock_type);
    gpr_timespec d = gpr_time_sub(deadline, now);
    return (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
}
#endif
