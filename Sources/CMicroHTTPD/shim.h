// C shim over libmicrohttpd: non-variadic wrappers Swift can call.
#ifndef EMBEDPS_CMICROHTTPD_SHIM_H
#define EMBEDPS_CMICROHTTPD_SHIM_H
#include <sys/types.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdarg.h>
#include <microhttpd.h>

/// Starts a daemon with its own polling thread on `port` (0 = any free port), all interfaces.
static inline struct MHD_Daemon *embedps_mhd_start(uint16_t port, MHD_AccessHandlerCallback handler, void *cls) {
    return MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, port, NULL, NULL, handler, cls,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
}

/// Starts a daemon with a pool of `threads` polling threads (handlers may block) on `port`, all interfaces.
static inline struct MHD_Daemon *embedps_mhd_start_pool(uint16_t port, MHD_AccessHandlerCallback handler, void *cls, unsigned int threads) {
    return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_INTERNAL_THREAD, port, NULL, NULL, handler, cls,
                            MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
}

static inline uint16_t embedps_mhd_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : 0;
}

/// Queues a complete response (the body is copied).
static inline enum MHD_Result embedps_mhd_respond(struct MHD_Connection *connection, unsigned int status,
                                                  const char *content_type, const char *body, size_t length) {
    struct MHD_Response *response = MHD_create_response_from_buffer(length, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    MHD_add_response_header(response, "Content-Type", content_type);
    enum MHD_Result r = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return r;
}
#endif
