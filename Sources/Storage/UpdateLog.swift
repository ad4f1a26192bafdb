import Foundation
import Glibc
import CXXHash

/// An append-only log of one table's applied updates, in segment files `seg-<first seq>.log` of a directory,
/// written by group commit.
///
/// Record (format 2): magic (u32 0x45505332 "EPS2"), payload length (u32), sequence number (u64), check
/// (u64) = XXH64(payload, seed 0) XOR XXH64(sequence as 8 LE bytes, seed 0), payload. Little-endian.
/// Format 1 records (magic "EPS1", check = XXH64(payload, seed = sequence)) from earlier versions are still
/// read. A record's 24-byte header sits right before its payload in the writer's buffer (`Record`), so a
/// group is written with one `writev` straight from the pushers' memory.
///
/// Invariants: records reach the file in sequence order (`enqueue` is called in sequence order by the
/// owner, under its commit lock); a record counts as durable once `durableSequence` covers it (written with
/// `write`; also fdatasync'ed in sync mode); a failed write truncates the segment back to its last durable
/// byte and makes the log refuse every later wait (`failure`), so no record after a hole is ever reported
/// durable. Replay stops at the first torn or corrupt record of a segment. Thread-safe.
public final class UpdateLog: @unchecked Sendable {
    public static let headerLength = 24
    static let magic1: UInt32 = 0x4550_5331
    static let magic2: UInt32 = 0x4550_5332
    public let directory: String
    public let sync: Bool

    private let condition = NSCondition()
    // Guarded by `condition`:
    private var fd: Int32 = -1
    private var segmentStart: UInt64 = 0
    private var segmentBytes = 0
    private var pending: [Record] = []
    private var writing = false
    private var durable: UInt64 = 0
    private var lastEnqueued: UInt64 = 0
    private var failed: String? = nil
    private var bytesWritten: UInt64 = 0

    public init(directory: String, sync: Bool) throws {
        self.directory = directory; self.sync = sync
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    deinit { if fd >= 0 { close(fd) } }

    /// A record being logged: header space followed by `payloadLength` bytes the owner fills, in one
    /// allocation that the owner frees after the record is durable (or was never enqueued).
    public struct Record: @unchecked Sendable {
        public let base: UnsafeMutableRawPointer
        public let payloadLength: Int
        public var seq: UInt64 = 0
        public init(payloadLength: Int) {
            self.payloadLength = payloadLength
            base = .allocate(byteCount: UpdateLog.headerLength + max(payloadLength, 1), alignment: 16)
        }
        public var payload: UnsafeMutableRawPointer { base + UpdateLog.headerLength }
        public var totalLength: Int { UpdateLog.headerLength + payloadLength }
        public func deallocate() { base.deallocate() }
        /// The payload's checksum part; compute before `enqueue` (outside any lock).
        public func payloadCheck() -> UInt64 { XXH64(payload, payloadLength, 0) }
        /// Writes the header for sequence `seq` given the payload's check.
        mutating func seal(seq: UInt64, payloadCheck: UInt64) {
            self.seq = seq
            var s = seq.littleEndian
            let seqCheck = withUnsafeBytes(of: &s) { XXH64($0.baseAddress, 8, 0) }
            base.storeBytes(of: UpdateLog.magic2.littleEndian, as: UInt32.self)
            base.storeBytes(of: UInt32(payloadLength).littleEndian, toByteOffset: 4, as: UInt32.self)
            base.storeBytes(of: seq.littleEndian, toByteOffset: 8, as: UInt64.self)
            base.storeBytes(of: (payloadCheck ^ seqCheck).littleEndian, toByteOffset: 16, as: UInt64.self)
        }
    }

    // MARK: writing

    /// Queues `record` as sequence `seq` (strictly greater than every queued one). Call in sequence order.
    public func enqueue(_ record: Record, seq: UInt64, payloadCheck: UInt64) {
        var r = record
        r.seal(seq: seq, payloadCheck: payloadCheck)
        condition.lock()
        precondition(seq > lastEnqueued, "update log sequence \(seq) after \(lastEnqueued)")
        lastEnqueued = seq
        pending.append(r)
        condition.unlock()
    }

    /// Returns once record `seq` is durable, writing queued records itself when no other thread is (group
    /// commit: one write, and one fdatasync in sync mode, for every record queued meanwhile). Throws when a
    /// write failed; the log then stays failed (the owner must stop accepting updates).
    public func waitDurable(_ seq: UInt64) throws {
        condition.lock(); defer { condition.unlock() }
        while true {
            if let failed { throw StorageError.writeFailed(message: failed) }
            if durable >= seq { return }
            if writing { condition.wait(); continue }
            writing = true
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            if fd < 0, let first = batch.first, let e = openSegment(first: first.seq) {
                failed = e; writing = false; condition.broadcast(); continue
            }
            let (file, base) = (fd, segmentBytes)
            condition.unlock()
            let result = Self.write(batch, to: file, truncateTo: base, sync: sync, directory: directory)
            condition.lock()
            writing = false
            switch result {
            case .success(let bytes):
                segmentBytes += bytes; bytesWritten += UInt64(bytes)
                if let last = batch.last { durable = max(durable, last.seq) }
            case .failure(let e): failed = e.message
            }
            condition.broadcast()
        }
    }

    struct WriteFailure: Error { let message: String }

    /// Writes `batch` to `file` with writev (and fdatasync when `sync`); on failure truncates the file back
    /// to `truncateTo` bytes. Runs without the lock, by the one thread that set `writing`.
    private static func write(_ batch: [Record], to file: Int32, truncateTo: Int, sync: Bool, directory: String) -> Result<Int, WriteFailure> {
        guard !batch.isEmpty else { return .success(0) }
        var iovs = batch.map { iovec(iov_base: $0.base, iov_len: $0.totalLength) }
        let total = batch.reduce(0) { $0 + $1.totalLength }
        var first = 0
        func fail(_ what: String) -> Result<Int, WriteFailure> {
            let message = "update log \(what) in \(directory) failed: \(String(cString: strerror(errno)))"
            _ = ftruncate(file, off_t(truncateTo))
            return .failure(WriteFailure(message: message))
        }
        while first < iovs.count {
            let n = min(1024, iovs.count - first)   // IOV_MAX on Linux
            let r = iovs.withUnsafeBufferPointer { writev(file, $0.baseAddress! + first, Int32(n)) }
            if r < 0 {
                if errno == EINTR { continue }
                return fail("write")
            }
            // Skip fully written iovecs, trim a partly written one.
            var left = r
            while left > 0 && first < iovs.count {
                if left >= iovs[first].iov_len { left -= iovs[first].iov_len; first += 1 } else {
                    iovs[first].iov_base += left; iovs[first].iov_len -= left; left = 0
                }
            }
        }
        if sync && fdatasync(file) != 0 { return fail("fdatasync") }
        return .success(total)
    }

    private func openSegment(first: UInt64) -> String? {
        let p = path(first)
        let f = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard f >= 0 else { return "cannot open update log \(p): \(String(cString: strerror(errno)))" }
        fd = f; segmentStart = first; segmentBytes = Int(lseek(f, 0, SEEK_END))
        return nil
    }

    /// Starts a new segment whose first record will be the next one queued, once nothing is being written.
    /// Earlier segments stay until `deleteSegments(through:)`.
    public func rotate() {
        condition.lock(); defer { condition.unlock() }
        while writing { condition.wait() }
        if fd >= 0 { close(fd); fd = -1 }
    }

    /// Sets where numbering resumes after a replay (the next record's sequence must exceed `seq`).
    public func resume(after seq: UInt64) {
        condition.withLock { lastEnqueued = seq; durable = seq; if fd >= 0 { close(fd); fd = -1 } }
    }

    /// The highest durable sequence.
    public var durableSequence: UInt64 { condition.withLock { durable } }
    /// Bytes of records written since the log was opened.
    public var bytesWrittenTotal: UInt64 { condition.withLock { bytesWritten } }
    /// Bytes in the open segment.
    public var openSegmentBytes: Int { condition.withLock { fd >= 0 ? segmentBytes : 0 } }
    /// The write error that stopped the log, if any.
    public var failure: String? { condition.withLock { failed } }

    // MARK: segments and replay

    /// Segment first-sequence numbers, ascending.
    public func segments() -> [UInt64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { n in
            guard n.hasPrefix("seg-"), n.hasSuffix(".log") else { return nil }
            return UInt64(n.dropFirst(4).dropLast(4))
        }.sorted()
    }
    private func path(_ first: UInt64) -> String { directory + "/" + String(format: "seg-%020llu.log", first) }

    /// Total bytes of all segments.
    public var totalBytes: UInt64 {
        segments().reduce(0) { acc, s in
            acc + ((try? FileManager.default.attributesOfItem(atPath: path(s))[.size] as? UInt64) ?? 0)
        }
    }

    /// Visits every intact record with sequence > `after`, in order. Stops at the first torn or corrupt
    /// record of a segment (an unacknowledged tail). Returns the highest sequence seen (or `after`).
    @discardableResult
    public func replay(after: UInt64, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> UInt64 {
        var last = after
        for s in segments() {
            guard let data = FileManager.default.contents(atPath: path(s)) else { continue }
            try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
                var off = 0
                while bytes.count - off >= Self.headerLength {
                    let magic = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: off, as: UInt32.self))
                    let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self)))
                    let seq = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: off + 8, as: UInt64.self))
                    let sum = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: off + 16, as: UInt64.self))
                    guard magic == Self.magic1 || magic == Self.magic2, bytes.count - off - Self.headerLength >= length else { return }
                    let payload = UnsafeRawBufferPointer(rebasing: bytes[(off + Self.headerLength)..<(off + Self.headerLength + length)])
                    let expected: UInt64
                    if magic == Self.magic1 {
                        expected = XXH64(payload.baseAddress, length, seq)
                    } else {
                        var le = seq.littleEndian
                        expected = XXH64(payload.baseAddress, length, 0) ^ withUnsafeBytes(of: &le) { XXH64($0.baseAddress, 8, 0) }
                    }
                    guard expected == sum else { return }
                    if seq > last { try body(seq, payload); last = seq }
                    off += Self.headerLength + length
                }
            }
        }
        return last
    }

    /// Deletes segments all of whose records have sequence <= `seq` (never the open segment). A closed last
    /// segment holds nothing past the durable sequence.
    public func deleteSegments(through seq: UInt64) {
        let (open, durableNow) = condition.withLock { (fd >= 0 ? segmentStart : UInt64.max, durable) }
        let segs = segments()
        for (i, s) in segs.enumerated() where s != open {
            let nextFirst = i + 1 < segs.count ? segs[i + 1] : durableNow + 1
            if nextFirst <= seq + 1 { try? FileManager.default.removeItem(atPath: path(s)) }
        }
    }

    /// Deletes every segment (the table was dropped).
    public func destroy() {
        condition.withLock { if fd >= 0 { close(fd); fd = -1 } }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
