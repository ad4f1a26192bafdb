import Glibc

/// A pthread mutex in stable heap memory (never moved, so it is safe to share between threads). The value
/// it protects is whatever its owner documents; `withLock` is the only way in.
public final class PThreadMutex: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    public init() { pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
    /// The pthread mutex itself (for `PThreadCondition`).
    var raw: UnsafeMutablePointer<pthread_mutex_t> { mutex }
    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }
    @inline(__always) public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A value reachable only through its lock (as swift-nio's `NIOLockedValueBox`): `withLock` hands the
/// closure the value `inout` while the lock is held. Invariant: no other path to `value` exists.
public final class LockedBox<Value>: @unchecked Sendable {
    private let mutex = PThreadMutex()
    private var value: Value
    public init(_ value: Value) { self.value = value }
    @inline(__always) public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        try mutex.withLock { () throws(E) -> R in try body(&value) }
    }
}

/// A condition variable bound to one `PThreadMutex`, in stable heap memory: `wait` must be called with that
/// mutex held (it is released while waiting and held again on return). Several conditions may share a
/// mutex, so each kind of waiter is woken only by what it waits for. Timed waits use the monotonic clock.
public final class PThreadCondition: @unchecked Sendable {
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let mutex: PThreadMutex
    public init(_ mutex: PThreadMutex) {
        self.mutex = mutex
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attributes)
        pthread_condattr_destroy(&attributes)
    }
    deinit { pthread_cond_destroy(cond); cond.deallocate() }
    @inline(__always) public func wait() { pthread_cond_wait(cond, mutex.raw) }
    /// Waits at most `seconds`.
    public func wait(seconds: Double) {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let nanos = Int(deadline.tv_nsec) + Int(seconds * 1e9)
        deadline.tv_sec += nanos / 1_000_000_000
        deadline.tv_nsec = nanos % 1_000_000_000
        pthread_cond_timedwait(cond, mutex.raw, &deadline)
    }
    @inline(__always) public func signal() { pthread_cond_signal(cond) }
    @inline(__always) public func broadcast() { pthread_cond_broadcast(cond) }
}
