import Glibc

/// A pthread mutex in stable heap memory (never moved, so it is safe to share between threads). The value
/// it protects is whatever its owner documents; `withLock` is the only way in.
public final class PThreadMutex: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    public init() { pthread_mutex_init(mutex, nil) }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }
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
