import Foundation
import Glibc
import CXXHash
import CLinux

/// The 24-byte header of an update-log record (see `UpdateLog`), read from a buffer that holds at least
/// `UpdateLog.headerLength` bytes at the offset. `known` is false for padding or foreign bytes.
struct RecordHeader {
    let magic: UInt32, length: Int, seq: UInt64, sum: UInt64
    init(_ b: UnsafeRawBufferPointer, at off: Int) {
        magic = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: off, as: UInt32.self))
        length = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self)))
        seq = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: off + 8, as: UInt64.self))
        sum = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: off + 16, as: UInt64.self))
    }
    var known: Bool { magic == UpdateLog.magic1 || magic == UpdateLog.magic2 }
    /// Whether `payload` (the `length` bytes after the header) has this header's check (format 1 or 2).
    func matches(_ payload: UnsafeRawBufferPointer) -> Bool {
        if magic == UpdateLog.magic1 { return XXH64(payload.baseAddress, length, seq) == sum }
        var le = seq.littleEndian
        return XXH64(payload.baseAddress, length, 0) ^ withUnsafeBytes(of: &le) { XXH64($0.baseAddress, 8, 0) } == sum
    }
}

/// Durable update-log records after a sequence, for a follower (`UpdateLog.read`).
public struct LogPage: Sendable {
    public var sequences: [UInt64] = []
    public var payloads: [[UInt8]] = []
    /// The log's durable sequence when the page was read.
    public var durableSequence: UInt64
    /// Records after this sequence are in the log; older ones were trimmed by checkpoints.
    public var logStart: UInt64
}

/// An append-only log of one table's applied updates, in segment files `seg-<first seq>.log` of a directory,
/// written by group commit with direct I/O.
///
/// Record (format 2): magic (u32 0x45505332 "EPS2"), payload length (u32), sequence number (u64), check
/// (u64) = XXH64(payload, seed 0) XOR XXH64(sequence as 8 LE bytes, seed 0), payload. Little-endian.
/// Format 1 records (magic "EPS1", check = XXH64(payload, seed = sequence)) from earlier versions are still
/// read. Records follow each other without gaps; a segment's file is zero-padded past its last record to a
/// 4 KiB boundary.
///
/// Recycling: a segment that checkpoints made unneeded is renamed `spare-<its first seq>.log` (while the
/// spares hold at most `recycleBytes`) instead of deleted, and the next segment is a spare renamed (the
/// largest), its old records overwritten from the start. Writing into blocks a file already holds needs no
/// allocation and commits no new file size, so each write (and each fdatasync in `sync` mode) is cheaper
/// than an append: on this project's VM, 1 MiB O_DIRECT writes with dsync took 0.8-0.9 ms overwriting
/// against 1.5-1.6 ms appending, and without dsync ran at 1.4-1.8 against 0.7-0.9 GB/s. A segment a
/// checkpoint closed before it was full is kept too: on a file system mounted with `discard` (this VM's
/// root), deleting a file sends its blocks to the device as discards, and the log's writes queued behind
/// them waited 30-55 ms at a time (measured with `perf sched`); an append into fresh blocks can wait for a
/// discard as well (ext4 frees an extent-tree block when it converts the written range). Past its new records a recycled
/// segment still holds old ones; every one of them has a sequence below the segment's first (sequences only
/// grow, and a spare's records are all covered by a checkpoint), so replay and `read` stop there as at
/// the zero padding. A spare is only reused under a larger first sequence than the one it was named for.
/// The owner deletes the spares of a table that stopped being written (`deleteSpares`), so the disk they
/// hold is not kept for a burst that may never come again.
///
/// Writing: the log's writer thread takes every queued record as one group and copies it (computing the
/// checks from the copy) into the log's ring (`LogRing`), where each byte of the open segment has its
/// place; the disk thread writes the ring's new whole blocks to the segment file with `O_DIRECT` (buffered
/// where the file system refuses it), the partial last block again with the next group. Direct I/O keeps
/// the log out of the page cache: a buffered log writes ~300 MB/s of fresh page-cache pages under push
/// load, and on a VM whose host reclaims freed guest pages each fresh page costs ~8x a reused one
/// (measured: 0.4-0.9 vs 6.8 GB/s), which made the log copy a third of a push.
///
/// When a record is durable (`waitDurable`, `durableSequence`):
/// - `async` with a ring in /dev/shm (`survivesProcess`): once it is copied into the ring. The ring
///   outlives the process, and the next open of the directory writes what it holds to the segment file
///   before anything reads the log, so kill -9 loses nothing acknowledged (a crash of the machine itself
///   may lose the records not yet written, as with any write not followed by fdatasync).
/// - `async` without such a ring: once its disk write is done.
/// - `sync`: once its disk write and an fdatasync are done (power loss).
/// `writtenSequence` is the last record the segment files hold (what `read` serves to followers).
///
/// Invariants: records reach the ring and the file in sequence order (`enqueue` is called in sequence
/// order by the owner, under its commit lock); the ring never holds more than its capacity of unwritten
/// blocks (the writer waits for the disk thread: back-pressure); a failed write cuts the segment back to
/// its last written byte and makes the log refuse every later wait (`failure`), so no record after a hole
/// is ever reported durable. Replay of a segment stops at the first torn or corrupt record (the zero
/// padding, or an unacknowledged tail), or the first whose sequence is not above the previous one's and the
/// segment's first. Thread-safe.
public final class UpdateLog: @unchecked Sendable {
    public static let headerLength = 24
    static let magic1: UInt32 = 0x4550_5331
    static let magic2: UInt32 = 0x4550_5332
    /// Direct I/O alignment of buffers, offsets and lengths (the largest logical block size in common use).
    static let blockSize = 4096
    /// The ring's default capacity (grown for a record that does not fit in half of it).
    public static let defaultRingBytes = 16 << 20
    public let directory: String
    public let sync: Bool

    /// The log's one lock, and what each kind of thread waits on under it. Each is woken only by what
    /// it waits for, so a push's enqueue (under its table's commit lock) wakes the writer alone, and a
    /// record becoming durable wakes only the pushes it covers. With one condition broadcast at every
    /// step, every enqueue woke the disk thread and every waiting push as well, and at 4 pushes in flight
    /// an enqueue took 100-400 us inside the commit lock (measured per push in the shard); with these
    /// wakeups and the log's threads in the batch class (`startThreads`) it takes ~10 us.
    private let condition = PThreadMutex()
    /// The writer thread waits here for queued records.
    private let writerWake: PThreadCondition
    /// The disk thread waits here for copied records (and close, failure, `holdingDiskWrites`).
    private let diskWake: PThreadCondition
    /// Broadcast when the writer finishes a group or the disk thread a write, and on failure and close:
    /// the writer waiting for ring room or the disk, checkpoints and close waiting for queued writes, and
    /// follower reads waiting for the disk wait here.
    private let progress: PThreadCondition
    /// Pushes waiting in `waitDurable`, each with its own condition, signalled once its record is durable
    /// (or the log failed or closed).
    private var durableWaiters: [(seq: UInt64, wake: PThreadCondition)] = []
    // Guarded by `condition`:
    private var fd: Int32 = -1
    private var segmentStart: UInt64 = 0
    private var pending: [Pending] = []
    /// The writer thread is copying a group into the ring.
    private var copying = false
    /// The disk thread is writing.
    private var diskWriting = false
    private var durable: UInt64 = 0
    private var written: UInt64 = 0
    private var lastEnqueued: UInt64 = 0
    private var failed: String? = nil
    private var bytesWritten: UInt64 = 0
    private var bytesAtCheckpoint: UInt64 = 0
    private var closed = false
    private var writer: Thread?
    private var writerStopped: DispatchSemaphore?
    private var diskThread: Thread?
    private var diskStopped: DispatchSemaphore?
    /// Offsets in the open segment: records copied into the ring end at `filled`; the file holds every
    /// byte before `onDisk`. `recordEnds`: where each copied record not yet written ends, with its sequence.
    private var filled = 0
    private var onDisk = 0
    private var recordEnds: [(end: Int, seq: UInt64)] = []
    /// Where the last follower page ended (segment, sequence, byte offset after it), so the next page need
    /// not scan its segment from the start. Guarded by `condition`.
    private var readHint: (segment: UInt64, sequence: UInt64, offset: Int)? = nil
    /// The staging memory (guarded by `condition`; its bytes between `onDisk` and `filled` are read by the
    /// disk thread while it writes, the bytes after `filled` written by the writer thread while it copies).
    private let ring: LogRing
    /// A segment is closed once it holds this many bytes (the next write opens a new one).
    public let segmentLimit: Int
    /// Most bytes of spare segments kept for reuse (0: covered segments are deleted).
    public let recycleBytes: Int
    /// Segments opened on a spare, and as new files, since this log was opened. Guarded by `condition`.
    private var recycled = 0, created = 0
    /// Bytes of records (with the padding of the last block) of the segments this process wrote, by first
    /// sequence (a recycled segment's file is larger). Guarded by `condition`.
    private var segmentRecordBytes: [UInt64: Int] = [:]
    /// Segments opened on a spare, and as new files, since this log was opened.
    public var segmentsOpened: (recycled: Int, created: Int) { condition.withLock { (recycled, created) } }
    /// Whether an acknowledged record survives the process being killed before its disk write finished.
    public var acknowledgesFromRing: Bool { ring.survivesProcess && !sync }
    /// The ring's file in /dev/shm (nil: the ring is private memory).
    public var ringPath: String? { ring.path }
    /// Bytes of records a killed process left in the ring, written to their segment when this log opened.
    public let recoveredFromRing: Int

    /// `ringBytes`: the ring's capacity, a multiple of 4 KiB (a leftover ring keeps its own). `recycleBytes`:
    /// see `recycleBytes`.
    public init(directory: String, sync: Bool, segmentLimit: Int = 64 << 20, ringBytes: Int = defaultRingBytes, recycleBytes: Int = 0) throws {
        precondition(ringBytes >= Self.blockSize && ringBytes % Self.blockSize == 0, "update log ring of \(ringBytes) bytes")
        self.directory = directory; self.sync = sync; self.segmentLimit = segmentLimit; self.recycleBytes = max(0, recycleBytes)
        writerWake = PThreadCondition(condition); diskWake = PThreadCondition(condition); progress = PThreadCondition(condition)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        LogRing.removeOrphans()
        ring = try LogRing(directory: directory, capacity: ringBytes)
        recoveredFromRing = try ring.drainLeftover { [directory] first in Self.path(directory, first) }
    }
    deinit {
        if fd >= 0 { Glibc.close(fd) }
        // Not closed: the ring's file stays only while it holds records the file does not.
        if failed == nil && onDisk >= filled { ring.remove() }
    }

    /// A record being logged: its payload is the concatenation of `parts` (at most four), memory the owner
    /// keeps valid and unchanged until the record is durable (or was never enqueued): the writer thread
    /// copies it into the ring, so a push logs straight from its own buffers.
    public struct Record: @unchecked Sendable {
        public let parts: [UnsafeRawBufferPointer]
        public let payloadLength: Int
        public init(parts: [UnsafeRawBufferPointer]) {
            self.parts = parts
            payloadLength = parts.reduce(0) { $0 + $1.count }
        }
        /// Copies the payload to `to`.
        func copyPayload(to: UnsafeMutableRawPointer) {
            var d = to
            for p in parts where p.count > 0 { d.copyMemory(from: p.baseAddress!, byteCount: p.count); d += p.count }
        }
    }

    /// A queued record with its sequence number.
    private struct Pending {
        let record: Record
        let seq: UInt64
        var length: Int { UpdateLog.headerLength + record.payloadLength }
    }

    // MARK: writing

    /// Queues `record` as sequence `seq` (strictly greater than every queued one) for the writer thread,
    /// which starts copying it at once; call in sequence order, then `waitDurable`. The caller may do other
    /// work in between (a push applies its rows while its record is logged).
    public func enqueue(_ record: Record, seq: UInt64) {
        condition.lock()
        precondition(seq > lastEnqueued, "update log sequence \(seq) after \(lastEnqueued)")
        precondition(!closed, "update log \(directory) used after close")
        lastEnqueued = seq
        pending.append(Pending(record: record, seq: seq))
        if writer == nil { startThreads() }
        writerWake.signal()
        condition.unlock()
    }

    /// Returns once record `seq` is durable. Throws when a write failed; the log then stays failed (the
    /// owner must stop accepting updates).
    public func waitDurable(_ seq: UInt64) throws {
        condition.lock(); defer { condition.unlock() }
        if let failed { throw StorageError.writeFailed(message: failed) }
        if durable >= seq { return }
        let wake = PThreadCondition(condition)
        durableWaiters.append((seq, wake))
        defer { durableWaiters.removeAll { $0.wake === wake } }
        while true {
            if let failed { throw StorageError.writeFailed(message: failed) }
            if durable >= seq { return }
            wake.wait()
        }
    }

    /// Wakes the pushes whose records are durable now. Caller holds the lock.
    private func wakeDurable() {
        for w in durableWaiters where w.seq <= durable { w.wake.signal() }
    }

    /// Wakes every thread waiting on the log (failure, close, test switches). Caller holds the lock.
    private func wakeAll() {
        writerWake.broadcast(); diskWake.broadcast(); progress.broadcast()
        for w in durableWaiters { w.wake.signal() }
    }

    /// Starts the writer and disk threads (caller holds the lock). They hold the log weakly between steps,
    /// so an abandoned log stops them within `writerIdleSeconds`; `close` stops them at once.
    private func startThreads() {
        let stopped = DispatchSemaphore(value: 0), diskDone = DispatchSemaphore(value: 0)
        writerStopped = stopped; diskStopped = diskDone
        let t = Thread { [weak self] in
            // Batch class: woken by an enqueue, the writer must not preempt the pushing thread, which holds
            // its table's commit lock (it runs on an idle core, or once the push's commit section ends).
            _ = embedps_sched_batch()
            while let log = self, log.copyNextGroup() {}
            stopped.signal()
        }
        t.name = "updatelog"
        let d = Thread { [weak self] in
            _ = embedps_sched_batch()
            while let log = self, log.writeNextBlocks() {}
            diskDone.signal()
        }
        d.name = "updatelog-disk"
        writer = t; diskThread = d
        t.start(); d.start()
    }
    static let writerIdleSeconds = 0.5

    private static func roundUp(_ n: Int) -> Int { (n + blockSize - 1) / blockSize * blockSize }
    private static func roundDown(_ n: Int) -> Int { n / blockSize * blockSize }

    /// The writer thread's step: waits (up to `writerIdleSeconds`) for queued records and copies them into
    /// the ring as one group (group commit: one disk write, and one fdatasync in sync mode, for every record
    /// queued meanwhile). Returns false once the log is closed and drained.
    private func copyNextGroup() -> Bool {
        condition.lock(); defer { condition.unlock() }
        if pending.isEmpty && !closed { writerWake.wait(seconds: Self.writerIdleSeconds) }
        if failed != nil { pending.removeAll() }   // never written: their waiters see the failure
        if pending.isEmpty { return !closed }
        if fd >= 0 && filled >= segmentLimit {
            // A full segment is closed once the disk thread wrote all of it; the group opens the next one.
            waitForDisk()
            if failed == nil && fd >= 0 { closeSegment() }
        }
        copying = true
        defer {
            copying = false
            if failed != nil || closed { wakeAll() } else { progress.broadcast() }
        }
        if failed == nil && fd < 0, let first = pending.first, let e = openSegment(first: first.seq) { failed = e }
        if failed != nil { pending.removeAll(); return true }
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        for r in batch {
            // Room in the ring for the record and the zeroed rest of its last block.
            let length = r.length
            while failed == nil && Self.roundUp(filled + length) - Self.roundDown(onDisk) > ring.capacity {
                if Self.roundUp(length) + Self.blockSize > ring.capacity && !diskWriting && onDisk == filled {
                    do { try ring.grow(to: Self.roundUp(2 * length + Self.blockSize), keeping: Self.roundDown(onDisk), filled) }
                    catch { failed = error.description }
                } else {
                    progress.wait()
                }
            }
            if failed != nil { break }
            let p = ring.pointer(filled)
            condition.unlock()
            p.storeBytes(of: Self.magic2.littleEndian, as: UInt32.self)
            p.storeBytes(of: UInt32(r.record.payloadLength).littleEndian, toByteOffset: 4, as: UInt32.self)
            p.storeBytes(of: r.seq.littleEndian, toByteOffset: 8, as: UInt64.self)
            r.record.copyPayload(to: p + Self.headerLength)
            var le = r.seq.littleEndian
            let seqCheck = withUnsafeBytes(of: &le) { XXH64($0.baseAddress, 8, 0) }
            let check = XXH64(p + Self.headerLength, r.record.payloadLength, 0) ^ seqCheck
            p.storeBytes(of: check.littleEndian, toByteOffset: 16, as: UInt64.self)
            (p + length).initializeMemory(as: UInt8.self, repeating: 0, count: Self.roundUp(filled + length) - (filled + length))
            condition.lock()
            filled += length
            bytesWritten += UInt64(length)
            recordEnds.append((filled, r.seq))
            ring.noteFilled(filled)
            diskWake.signal()
            if acknowledgesFromRing { durable = max(durable, r.seq); wakeDurable() }
        }
        if failed != nil { pending.removeAll() }
        return true
    }

    /// The disk thread's step: waits (up to `writerIdleSeconds`) for records in the ring that the segment
    /// file does not hold, and writes the blocks that hold them (and fdatasyncs when `sync`). On failure
    /// cuts the file back to its last written byte. Returns false once the log is closed and drained.
    private func writeNextBlocks() -> Bool {
        condition.lock(); defer { condition.unlock() }
        if (onDisk >= filled || _holdingDiskWrites) && !closed { diskWake.wait(seconds: Self.writerIdleSeconds) }
        if _holdingDiskWrites && failed == nil && !closed { return true }
        if failed != nil || onDisk >= filled { return !(closed && !copying && pending.isEmpty) }
        let start = Self.roundDown(onDisk), end = filled, file = fd
        let source = ring.pointer(start), length = Self.roundUp(end) - start
        diskWriting = true
        condition.unlock()
        var error: String? = nil
        var done = 0
        while done < length {
            let n = pwrite(file, source + done, length - done, off_t(start + done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { error = "write"; break }
            done += n
        }
        if error == nil && sync && fdatasync(file) != 0 { error = "fdatasync" }
        if let e = error {
            let message = "update log \(e) in \(directory) failed: \(String(cString: strerror(errno)))"
            _ = ftruncate(file, off_t(onDisk))   // nothing after the last written byte may be replayed
            condition.lock()
            failed = message
        } else {
            condition.lock()
            onDisk = end
            ring.noteOnDisk(end)
            while let g = recordEnds.first, g.end <= end { written = max(written, g.seq); recordEnds.removeFirst() }
            if !acknowledgesFromRing { durable = max(durable, written); wakeDurable() }
        }
        diskWriting = false
        if failed != nil { wakeAll() } else { progress.broadcast() }
        return true
    }

    /// Tests: called by `read` with the segment's first sequence before each chunk it reads from an open
    /// segment file (to retire and reuse the segment in between).
    var beforeChunkRead: ((UInt64) -> Void)?
    /// Tests: while true, the disk thread writes nothing (records stay in the ring only).
    var holdingDiskWrites: Bool {
        get { condition.withLock { _holdingDiskWrites } }
        set { condition.withLock { _holdingDiskWrites = newValue; wakeAll() } }
    }
    private var _holdingDiskWrites = false
    /// Tests: the log stops as a killed process would, with the disk writes it was holding never made: it
    /// fails every later wait, and `close` keeps the ring's file.
    func stopAsIfKilled() {
        condition.withLock { failed = "stopped as if killed (test)"; _holdingDiskWrites = false; wakeAll() }
    }

    /// Waits until the disk thread wrote everything copied (or the log failed). Caller holds the lock.
    private func waitForDisk() {
        while copying || (failed == nil && (diskWriting || onDisk < filled)) { progress.wait() }
    }
    /// Waits until the writer took everything queued so far, then for the disk (`waitForDisk`). Caller
    /// holds the lock.
    private func waitForQueuedWrites() {
        while !pending.isEmpty && failed == nil { progress.wait() }
        waitForDisk()
    }

    /// Writes what is queued, stops the writer and disk threads and closes the open segment; with nothing
    /// left unwritten, deletes the ring's file. Enqueueing after close is a programming error. Idempotent.
    public func close() {
        condition.lock()
        closed = true
        wakeAll()
        let stopped = writerStopped, diskDone = diskStopped
        writer = nil; writerStopped = nil; diskThread = nil; diskStopped = nil
        condition.unlock()
        stopped?.wait()
        condition.lock()
        waitForDisk()
        condition.unlock()
        diskDone?.wait()
        condition.lock()
        if fd >= 0 { closeSegment() }
        if failed == nil { ring.remove() }
        condition.unlock()
    }

    /// Opens segment `first` (the largest spare named for a smaller sequence, renamed, when there is one,
    /// else a new file; direct I/O when the file system allows it) and places it in the ring. Caller holds
    /// the lock and the previous segment is closed.
    private func openSegment(first: UInt64) -> String? {
        let p = path(first)
        var f: Int32 = -1
        if let spare = spares().filter({ $0.first < first }).max(by: { $0.bytes < $1.bytes }), rename(spare.path, p) == 0 {
            f = Self.openForWriting(p, O_WRONLY | O_CLOEXEC)
            if f >= 0 { recycled += 1 } else { unlink(p) }
        }
        if f < 0 {
            f = Self.openForWriting(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC)
            if f >= 0 { created += 1 }
        }
        guard f >= 0 else { return "cannot open update log \(p): \(String(cString: strerror(errno)))" }
        // In sync mode the segment's name (created or renamed) must survive a power loss with its records.
        if sync, let e = Self.syncDirectory(directory) { Glibc.close(f); return e }
        var st = stat()
        guard fstat(f, &st) == 0 else { Glibc.close(f); return "cannot stat update log \(p): \(String(cString: strerror(errno)))" }
        ring.beginSegment(first: first, inode: UInt64(st.st_ino), previousEnd: filled)
        fd = f; segmentStart = first
        filled = 0; onDisk = 0; recordEnds.removeAll()
        return nil
    }

    /// Opens `path` with `flags` and direct I/O, or without it where the file system refuses it (EINVAL).
    private static func openForWriting(_ path: String, _ flags: Int32) -> Int32 {
        let f = open(path, flags | embedps_o_direct, 0o644)
        return f < 0 && errno == EINVAL ? open(path, flags, 0o644) : f
    }

    /// Makes `directory`'s entries durable (fsync of the directory); an error message when that failed.
    private static func syncDirectory(_ directory: String) -> String? {
        let d = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard d >= 0 else { return "cannot open update log directory \(directory): \(String(cString: strerror(errno)))" }
        defer { Glibc.close(d) }
        return fsync(d) == 0 ? nil : "cannot fsync update log directory \(directory): \(String(cString: strerror(errno)))"
    }

    /// Closes the open segment. Caller holds the lock and the disk thread wrote all of it.
    private func closeSegment() {
        Glibc.close(fd); fd = -1
        segmentRecordBytes[segmentStart] = Self.roundUp(filled)
    }

    /// Starts a new segment whose first record will be the next one queued, once everything queued so far
    /// is written. Earlier segments stay until `deleteSegments(through:)`.
    public func rotate() {
        condition.lock(); defer { condition.unlock() }
        waitForQueuedWrites()
        if fd >= 0 { closeSegment() }
    }

    /// Sets where numbering resumes after a replay (the next record's sequence must exceed `seq`).
    public func resume(after seq: UInt64) {
        condition.lock(); defer { condition.unlock() }
        waitForQueuedWrites()
        lastEnqueued = seq; durable = seq; written = seq
        wakeAll()
        if fd >= 0 { closeSegment() }
    }

    /// The highest durable (acknowledgeable) sequence.
    public var durableSequence: UInt64 { condition.withLock { durable } }
    /// The highest sequence the segment files hold.
    public var writtenSequence: UInt64 { condition.withLock { written } }
    /// Bytes of records written since the log was opened.
    public var bytesWrittenTotal: UInt64 { condition.withLock { bytesWritten } }
    /// Bytes written since `markCheckpoint`.
    public var bytesSinceCheckpoint: UInt64 { condition.withLock { bytesWritten - bytesAtCheckpoint } }
    /// Notes that a checkpoint covered everything written so far.
    public func markCheckpoint() { condition.withLock { bytesAtCheckpoint = bytesWritten } }
    /// Bytes in the open segment.
    public var openSegmentBytes: Int { condition.withLock { fd >= 0 ? filled : 0 } }
    /// The write error that stopped the log, if any.
    public var failure: String? { condition.withLock { failed } }

    // MARK: segments and replay

    /// Segment first-sequence numbers, ascending.
    public func segments() -> [UInt64] { numberedFiles("seg-") }
    private func path(_ first: UInt64) -> String { Self.path(directory, first) }
    static func path(_ directory: String, _ first: UInt64) -> String { directory + "/" + String(format: "seg-%020llu.log", first) }
    private func sparePath(_ first: UInt64) -> String { directory + "/" + String(format: "spare-%020llu.log", first) }

    /// The numbers of the directory's files `<prefix><number>.log`, ascending.
    private func numberedFiles(_ prefix: String) -> [UInt64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { n in
            guard n.hasPrefix(prefix), n.hasSuffix(".log") else { return nil }
            return UInt64(n.dropFirst(prefix.count).dropLast(4))
        }.sorted()
    }

    /// Bytes of all segments' records: the records written by this process, the file sizes of segments
    /// written before it opened.
    public var totalBytes: UInt64 {
        let (known, open, openBytes) = condition.withLock { (segmentRecordBytes, fd >= 0 ? segmentStart : nil, Self.roundUp(filled)) }
        return segments().reduce(0) { acc, s in
            if s == open { return acc + UInt64(openBytes) }
            return acc + (known[s].map { UInt64($0) } ?? LocalFile.size(atPath: path(s)))
        }
    }
    /// Bytes of spare segments kept for reuse.
    public var spareBytes: UInt64 { spares().reduce(0) { $0 + $1.bytes } }

    /// Spare segments (`spare-<first seq it had>.log`), by ascending old first sequence.
    private func spares() -> [(first: UInt64, path: String, bytes: UInt64)] {
        numberedFiles("spare-").map { first in let p = sparePath(first); return (first, p, LocalFile.size(atPath: p)) }
    }

    /// Visits every intact record with sequence > `after`, in order. Stops at the first torn or corrupt
    /// record of a segment (an unacknowledged tail). Returns the highest sequence seen (or `after`).
    @discardableResult
    public func replay(after: UInt64, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> UInt64 {
        var last = after
        let segs = segments()
        // The next segment is read on another thread while this one's records are applied.
        var ahead = segs.first.map { SegmentRead(path($0)) }
        defer { ahead?.bytes()?.deallocate() }   // a replay that threw leaves a read in flight
        for (i, s) in segs.enumerated() {
            let current = ahead
            ahead = i + 1 < segs.count ? SegmentRead(path(segs[i + 1])) : nil
            guard let data = current?.bytes() else { continue }
            defer { data.deallocate() }
            let bytes = UnsafeRawBufferPointer(data)
            var off = 0
            var previous = s == 0 ? 0 : s - 1
            while bytes.count - off >= Self.headerLength {
                let h = RecordHeader(bytes, at: off)
                guard h.known, bytes.count - off - Self.headerLength >= h.length else { break }
                let payload = UnsafeRawBufferPointer(rebasing: bytes[(off + Self.headerLength)..<(off + Self.headerLength + h.length)])
                guard h.matches(payload), h.seq > previous else { break }   // corrupt, or a recycled file's stale tail
                previous = h.seq
                if h.seq > last { try body(h.seq, payload); last = h.seq }
                off += Self.headerLength + h.length
            }
        }
        return last
    }

    /// A segment file being read (`readSegment`) on a background thread; `bytes()` waits for it.
    private final class SegmentRead: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        // Written by the reading thread before `done` is signalled, read after waiting for it.
        private var result: UnsafeMutableRawBufferPointer?
        init(_ path: String) {
            DispatchQueue.global().async { [self] in
                result = UpdateLog.readSegment(path)
                done.signal()
            }
        }
        /// The segment's bytes (the caller deallocates them), or nil when it could not be read.
        func bytes() -> UnsafeMutableRawBufferPointer? {
            done.wait()
            return result
        }
    }

    /// A whole segment file in memory (4 KiB-aligned; the caller deallocates it), read with `O_DIRECT` in
    /// 8 MiB parts where the file system allows it: segments are written with direct I/O, so the page cache
    /// does not hold them, and a buffered read (the kernel's small read-ahead, then a copy of every page)
    /// made replay read at ~0.2 GB/s, 85% of a crash recovery's time. Nil when the file cannot be read.
    static func readSegment(_ path: String) -> UnsafeMutableRawBufferPointer? {
        var fd = open(path, O_RDONLY | O_CLOEXEC | embedps_o_direct)
        var direct = true
        if fd < 0 && errno == EINVAL { fd = open(path, O_RDONLY | O_CLOEXEC); direct = false }
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let size = Int(st.st_size)
        let capacity = max(blockSize, (size + blockSize - 1) / blockSize * blockSize)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: blockSize)
        let part = 8 << 20
        var filled = 0
        while filled < capacity {
            let n = pread(fd, buffer + filled, min(part, capacity - filled), off_t(filled))
            if n < 0 && errno == EINTR { continue }
            if n < 0 && direct && errno == EINVAL {
                // The file system took O_DIRECT at open but refuses this read: read the rest buffered.
                let again = open(path, O_RDONLY | O_CLOEXEC)
                guard again >= 0 else { buffer.deallocate(); return nil }
                Glibc.close(fd); fd = again; direct = false
                continue
            }
            if n < 0 { buffer.deallocate(); return nil }
            if n == 0 { break }
            filled += n
        }
        return UnsafeMutableRawBufferPointer(start: buffer, count: min(filled, size))
    }

    /// The sequence after which the log still holds every durable record (older ones were trimmed by
    /// checkpoints): the first segment's first sequence - 1, or the durable sequence with no segment.
    public var logStart: UInt64 { Self.logStart(segments: segments(), durable: durableSequence) }
    private static func logStart(segments: [UInt64], durable: UInt64) -> UInt64 { min(segments.first.map { $0 - 1 } ?? durable, durable) }

    /// A page of durable records with sequence > `after` for a follower (see `LogPage`): at most about
    /// `maxBytes` of payload, at least one record when one is durable. `nil` when records after `after`
    /// were trimmed (`after` < `logStart`).
    public func read(after: UInt64, maxBytes: Int) -> LogPage? {
        // Every acknowledged record, once the disk thread has written it (records acknowledged from the
        // ring are written within a disk write's time).
        let (durable, hint) = condition.withLock { () -> (UInt64, (segment: UInt64, sequence: UInt64, offset: Int)?) in
            while written < self.durable && failed == nil { progress.wait() }
            return (written, readHint)
        }
        let segs = segments()
        var page = LogPage(durableSequence: durable, logStart: Self.logStart(segments: segs, durable: durable))
        guard after >= page.logStart else { return nil }
        guard after < durable, let segIndex = segs.lastIndex(where: { $0 <= after + 1 }) else { return page }
        var bytes = 0
        var done = false
        for s in segs[segIndex...] where !done {
            guard let fh = FileHandle(forReadingAtPath: path(s)) else { break }
            defer { try? fh.close() }
            // Resume where the previous page ended when it ended at `after` in this segment.
            var fileOffset = 0
            var previous = s == 0 ? 0 : s - 1
            if let h = hint, h.segment == s, h.sequence == after { fileOffset = h.offset; previous = after }
            // Bounded reads: a chunk of about a page (more when one record is larger), never the whole segment.
            var want = max(1 << 20, min(maxBytes, 64 << 20) + (1 << 16))
            var segmentDone = false
            while !segmentDone && !done {
                beforeChunkRead?(s)
                try? fh.seek(toOffset: UInt64(fileOffset))
                guard let data = try? fh.read(upToCount: want), !data.isEmpty else { break }
                // A checkpoint may have retired this segment meanwhile and, recycling it, written newer records
                // into the same file: bytes read while the segment still had its name are its own. (Those newer
                // records are all past `durable` as read above, so that guard below stops at them too.)
                guard Self.stillNamed(path(s), fh.fileDescriptor) else { done = true; break }
                let full = data.count == want
                var consumed = 0, needMore = 0
                data.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
                    var off = 0
                    while true {
                        guard b.count - off >= Self.headerLength else {
                            if full { needMore = Self.headerLength } else { segmentDone = true }
                            return
                        }
                        let h = RecordHeader(b, at: off)
                        guard h.known, h.seq > previous, h.seq <= durable else {
                            // The zero padding after the last record, a stale tail, or records not durable yet.
                            segmentDone = true; done = done || (h.magic != 0 && h.seq > durable); return
                        }
                        guard b.count - off - Self.headerLength >= h.length else {
                            if full { needMore = Self.headerLength + h.length } else { segmentDone = true }
                            return
                        }
                        let payload = UnsafeRawBufferPointer(rebasing: b[(off + Self.headerLength)..<(off + Self.headerLength + h.length)])
                        guard h.matches(payload) else { segmentDone = true; done = true; return }
                        previous = h.seq
                        off += Self.headerLength + h.length
                        consumed = off
                        if h.seq > after {
                            page.sequences.append(h.seq); page.payloads.append([UInt8](payload)); bytes += h.length
                            if bytes >= maxBytes { done = true; return }
                        }
                    }
                }
                fileOffset += consumed
                if let last = page.sequences.last, consumed > 0 { condition.withLock { readHint = (s, last, fileOffset) } }
                if needMore > 0 && consumed == 0 { want = max(want * 2, needMore) }
            }
        }
        return page
    }

    /// Removes segments all of whose records have sequence <= `seq` (never the open segment): each becomes a
    /// spare while the spares stay within `recycleBytes`, the others are deleted. A closed last
    /// segment holds nothing past the durable sequence. Only the open segment and the durable sequence are
    /// read under the lock: the directory listing, the renames and the unlinks (~100 ms for a 4 GiB log's 64
    /// segments here, while every push's enqueue, inside its table's commit lock, would wait for the lock)
    /// run outside it. That is safe because a retired segment is never written or reopened under its name
    /// again, and the writer's concurrent `openSegment` takes a spare by an atomic rename (one it misses
    /// only makes it create a file).
    public func deleteSegments(through seq: UInt64) {
        let (open, durableNow) = condition.withLock { (fd >= 0 ? segmentStart : UInt64.max, durable) }
        let segs = segments()
        var retired: [UInt64] = []
        // A segment the writer opens after the lock was left starts past `durableNow` (its first record was
        // not copied yet) and past `open`: both bounds keep it.
        for (i, s) in segs.enumerated() where s < open && s <= durableNow {
            let nextFirst = i + 1 < segs.count ? segs[i + 1] : durableNow + 1
            guard nextFirst <= seq + 1 else { continue }
            retired.append(s)
        }
        guard !retired.isEmpty else { return }
        condition.withLock { for s in retired { segmentRecordBytes[s] = nil } }
        var spareBytes = recycleBytes > 0 ? self.spareBytes : 0
        for s in retired {
            let size = LocalFile.size(atPath: path(s))
            if size > 0, spareBytes + size <= UInt64(recycleBytes),
               rename(path(s), sparePath(s)) == 0 {
                spareBytes += size
            } else {
                unlink(path(s))
            }
        }
    }

    /// Deletes every spare segment (a table that stopped being written gives back the disk its spares
    /// held; its next segments are new files again). Takes no lock, so the writer never waits for the
    /// unlinks: a spare the writer renames to a segment meanwhile is no longer found under its spare name,
    /// and a segment open that finds its spare gone creates a new file.
    public func deleteSpares() {
        for first in numberedFiles("spare-") { unlink(sparePath(first)) }
    }

    /// Whether `path` still names the file open as `fd` (a retired segment loses its name for good: a spare
    /// is reused under a larger first sequence).
    private static func stillNamed(_ path: String, _ fd: Int32) -> Bool {
        var named = stat(), open = stat()
        return stat(path, &named) == 0 && fstat(fd, &open) == 0 && named.st_ino == open.st_ino && named.st_dev == open.st_dev
    }

    /// Deletes every segment (the table was dropped).
    public func destroy() {
        close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

