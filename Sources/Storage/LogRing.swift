import Foundation
import Glibc
import CXXHash
import CLinux

/// The memory an update log stages its records in on their way to the open segment file: a ring of
/// `capacity` bytes mapped twice back to back (so any `capacity` bytes from any offset are contiguous),
/// after a 4 KiB header page. Byte `o` of the open segment lives at ring offset
/// (`segmentBase` + o) mod `capacity`, so a record is copied once, into the ring, and written to the file
/// from there.
///
/// Where /dev/shm allows, the ring is a file there named after the log's directory, locked (flock) by its
/// one owner: what it holds outlives the owner's process, so a record copied into it survives kill -9
/// before its disk write finishes, and the next open of the same directory writes it to the segment file
/// (`drainLeftover`) before anything reads the log. Otherwise (no /dev/shm, no room in it, or the ring is
/// locked by another open of the directory) it is private memory and `survivesProcess` is false. Its pages
/// are allocated when it is made (a write into a mapping of a full tmpfs would raise SIGBUS).
///
/// Invariant: the header names the open segment (first sequence, inode) and holds `onDisk` and `filled`
/// (segment offsets): the file holds every byte before `onDisk`; the ring holds the segment's bytes from
/// `onDisk` rounded down to 4 KiB up to `filled`, every one of them a complete, checked record the owner
/// may have acknowledged. Each field is one aligned 8-byte store, written after the bytes it covers.
final class LogRing {
    static let pageSize = 4096
    static let magic: UInt64 = 0x3147_4E49_5253_5045   // "EPSRING1"
    static let directoryPrefix = "/dev/shm"
    static let namePrefix = "embedps-log-"
    /// Header fields (byte offsets in the header page).
    private enum Field: Int { case magic = 0, capacity = 8, segmentFirst = 16, segmentInode = 24, segmentBase = 32, onDisk = 40, filled = 48, pathLength = 56 }
    private static let pathOffset = 64

    private(set) var capacity: Int
    private(set) var data: UnsafeMutableRawPointer
    private let header: UnsafeMutableRawPointer
    private let fd: Int32
    /// The /dev/shm file (nil: private memory).
    let path: String?
    var survivesProcess: Bool { path != nil }
    /// What a leftover header describes: the segment, where it starts in the ring, and what of it was only
    /// in the ring (`onDisk` up to `filled`), at the ring's `capacity`.
    typealias Leftover = (segmentFirst: UInt64, inode: UInt64, base: Int, onDisk: Int, filled: Int, capacity: Int)
    /// The header found when the file was opened, if it described a segment of this directory.
    private(set) var leftover: Leftover?

    /// Opens (or creates) the ring of `directory`, `capacity` bytes (a multiple of 4 KiB) or the capacity
    /// a leftover file has. Throws only when not even private memory can be mapped.
    init(directory: String, capacity requested: Int) throws(StorageError) {
        precondition(requested > 0 && requested % Self.pageSize == 0)
        let canonical = URL(fileURLWithPath: directory).standardizedFileURL.resolvingSymlinksInPath().path
        var file: Int32 = -1
        var shmPath: String? = Self.shmPath(canonical)
        if let p = shmPath {
            file = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            if file >= 0 && flock(file, LOCK_EX | LOCK_NB) != 0 { Glibc.close(file); file = -1 }
            if file < 0 { shmPath = nil }
        }
        if file < 0 { file = embedps_memfd_create("embedps-log-ring") }
        guard file >= 0 else { throw .openFailed(path: directory, message: "cannot create the update log's ring: \(String(cString: strerror(errno)))") }
        // A leftover header of this directory keeps its capacity (its bytes are read at that layout).
        var size = stat()
        var cap = requested
        var found: Leftover? = nil
        if fstat(file, &size) == 0, let page = Self.readHeader(file) {
            page.withUnsafeBytes { b in
                func u(_ f: Field) -> UInt64 { Self.field(f, in: b) }
                guard u(.magic) == Self.magic, Self.directory(inHeader: b) == canonical else { return }
                let c = Int(u(.capacity))
                guard c > 0, c % Self.pageSize == 0, Int(size.st_size) == Self.pageSize + c else { return }
                found = (u(.segmentFirst), u(.segmentInode), Int(u(.segmentBase)), Int(u(.onDisk)), Int(u(.filled)), c)
                cap = c
            }
        }
        if found == nil && !Self.reserve(file, Self.pageSize + cap) {
            // No room in /dev/shm (a full tmpfs would raise SIGBUS at a write into the mapping, so the pages
            // are reserved up front): private memory instead.
            let e = String(cString: strerror(errno))
            Glibc.close(file)
            if let p = shmPath { unlink(p) }
            file = shmPath == nil ? -1 : embedps_memfd_create("embedps-log-ring")
            shmPath = nil
            guard file >= 0, Self.reserve(file, Self.pageSize + cap) else {
                if file >= 0 { Glibc.close(file) }
                throw .openFailed(path: directory, message: "cannot reserve the update log's ring (\(cap >> 20) MiB): \(e)")
            }
        }
        guard let h = mmap(nil, Self.pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, file, 0), !Self.mapFailed(h),
              let d = Self.mapTwice(file, capacity: cap) else {
            Glibc.close(file)
            throw .openFailed(path: directory, message: "cannot map the update log's ring: \(String(cString: strerror(errno)))")
        }
        fd = file; path = shmPath; header = h; data = d; capacity = cap
        leftover = found
        if found == nil {
            // A new ring: it describes no segment until `beginSegment`. (A leftover header stays as it was
            // until `drainLeftover` has written what it describes.)
            let pathBytes = Array(canonical.utf8.prefix(Self.pageSize - Self.pathOffset))
            set(.segmentFirst, 0); set(.segmentInode, 0); set(.onDisk, 0); set(.filled, 0); set(.segmentBase, 0)
            set(.capacity, UInt64(cap))
            (header + Self.pathOffset).copyMemory(from: pathBytes, byteCount: pathBytes.count)
            set(.pathLength, UInt64(pathBytes.count))
            set(.magic, Self.magic)
        }
    }

    deinit {
        munmap(data, 2 * capacity)
        munmap(header, Self.pageSize)
        Glibc.close(fd)
    }

    /// The header page of ring file `file`, if it has one.
    private static func readHeader(_ file: Int32) -> [UInt8]? {
        var page = [UInt8](repeating: 0, count: pageSize)
        return pread(file, &page, pageSize, 0) == pageSize ? page : nil
    }
    private static func field(_ f: Field, in header: UnsafeRawBufferPointer) -> UInt64 {
        UInt64(littleEndian: header.loadUnaligned(fromByteOffset: f.rawValue, as: UInt64.self))
    }
    /// The log directory a header names (nil when its length is out of range).
    private static func directory(inHeader b: UnsafeRawBufferPointer) -> String? {
        let n = Int(field(.pathLength, in: b))
        guard n > 0, n <= pageSize - pathOffset else { return nil }
        return String(decoding: b[pathOffset..<(pathOffset + n)], as: UTF8.self)
    }

    /// mmap's failure value ((void *)-1).
    private static func mapFailed(_ p: UnsafeMutableRawPointer?) -> Bool { p == nil || p == UnsafeMutableRawPointer(bitPattern: -1) }

    /// The ring file of the directory at canonical path `dir` (nil without a writable /dev/shm).
    static func shmPath(_ dir: String) -> String? {
        guard access(directoryPrefix, W_OK) == 0 else { return nil }
        let h = dir.utf8CString.withUnsafeBufferPointer { XXH64($0.baseAddress, $0.count - 1, 0) }
        return directoryPrefix + "/" + namePrefix + String(h, radix: 16)
    }

    /// Sizes `file` to `bytes` and allocates its pages (so writes through a mapping cannot fault for room).
    private static func reserve(_ file: Int32, _ bytes: Int) -> Bool {
        guard ftruncate(file, off_t(bytes)) == 0 else { return false }
        let e = posix_fallocate(file, 0, off_t(bytes))
        if e != 0 { errno = e; return false }
        return true
    }

    /// `capacity` bytes of `file` (after its header page) mapped twice, back to back.
    private static func mapTwice(_ file: Int32, capacity: Int) -> UnsafeMutableRawPointer? {
        guard let area = mmap(nil, 2 * capacity, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), !mapFailed(area) else { return nil }
        for half in 0..<2 {
            let m = mmap(area + half * capacity, capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, file, off_t(pageSize))
            if mapFailed(m) { munmap(area, 2 * capacity); return nil }
        }
        return area
    }

    private func set(_ f: Field, _ v: UInt64) { header.storeBytes(of: v.littleEndian, toByteOffset: f.rawValue, as: UInt64.self) }

    /// Where segment offset `o` is in the ring; the `capacity` bytes from there are contiguous.
    @inline(__always) func pointer(_ o: Int) -> UnsafeMutableRawPointer { data + (segmentBase + o) % capacity }
    private var segmentBase = 0

    /// The ring now holds segment `first` (file inode `inode`) from offset 0, placed at the ring's block
    /// after `previousEnd` (the old segment's end offset, all of it on disk).
    func beginSegment(first: UInt64, inode: UInt64, previousEnd: Int) {
        let at = (segmentBase + previousEnd + Self.pageSize - 1) / Self.pageSize * Self.pageSize % capacity
        set(.filled, 0); set(.onDisk, 0)
        segmentBase = at
        set(.segmentBase, UInt64(at)); set(.segmentInode, inode); set(.segmentFirst, first)
    }
    /// The segment's records up to `filled` are in the ring (store after the bytes are).
    func noteFilled(_ filled: Int) { set(.filled, UInt64(filled)) }
    /// The segment file holds every byte before `onDisk`.
    func noteOnDisk(_ onDisk: Int) { set(.onDisk, UInt64(onDisk)) }

    /// Replaces the ring by one of `newCapacity` bytes, keeping the segment's bytes from `from` (a block
    /// start) to `to` (at most one block). Only while nothing else uses the ring.
    func grow(to newCapacity: Int, keeping from: Int, _ to: Int) throws(StorageError) {
        let kept = [UInt8](UnsafeRawBufferPointer(start: pointer(from), count: to - from))
        guard Self.reserve(fd, Self.pageSize + newCapacity), let d = Self.mapTwice(fd, capacity: newCapacity) else {
            throw .writeFailed(message: "cannot grow the update log's ring to \(newCapacity >> 20) MiB: \(String(cString: strerror(errno)))")
        }
        munmap(data, 2 * capacity)
        data = d; capacity = newCapacity
        segmentBase = (newCapacity - from % newCapacity) % newCapacity
        set(.segmentBase, UInt64(segmentBase)); set(.capacity, UInt64(newCapacity))
        pointer(from).copyMemory(from: kept, byteCount: kept.count)
    }

    /// Writes what a process that died left in this ring (`leftover`) to its segment file in `directory`,
    /// when that file is still the one it was (same inode). Returns the bytes written.
    func drainLeftover(segmentPath: (UInt64) -> String) throws(StorageError) -> Int {
        guard let l = leftover else { return 0 }
        let written = try writeLeftover(l, segmentPath)
        leftover = nil
        set(.filled, 0); set(.onDisk, 0); set(.segmentInode, 0)
        return written
    }

    private func writeLeftover(_ l: Leftover, _ segmentPath: (UInt64) -> String) throws(StorageError) -> Int {
        guard l.filled > l.onDisk else { return 0 }
        let p = segmentPath(l.segmentFirst)
        var st = stat()
        guard stat(p, &st) == 0, UInt64(st.st_ino) == l.inode else { return 0 }
        let start = l.onDisk / Self.pageSize * Self.pageSize
        let end = (l.filled + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        guard end - start <= l.capacity else { return 0 }
        let file = open(p, O_WRONLY | O_CLOEXEC)
        guard file >= 0 else { throw .writeFailed(message: "cannot open \(p) to write the records the update log's ring \(path ?? "") still held: \(String(cString: strerror(errno))); free the disk or fix its permissions, then restart") }
        defer { Glibc.close(file) }
        let src = data + (l.base + start) % l.capacity
        var done = 0
        while done < end - start {
            let n = pwrite(file, src + done, end - start - done, off_t(start + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .writeFailed(message: "cannot write the records the update log's ring \(path ?? "") still held to \(p): \(String(cString: strerror(errno))); free the disk, then restart (the ring is kept until they are written)") }
            done += n
        }
        guard fdatasync(file) == 0 else { throw .writeFailed(message: "fdatasync of \(p) failed: \(String(cString: strerror(errno)))") }
        return end - start
    }

    /// Deletes the ring's file (the log was closed with everything on disk, or destroyed).
    func remove() {
        if let path { unlink(path) }
    }

    /// Deletes ring files in /dev/shm that no process holds and whose log directory is gone (left by
    /// processes killed after their data directory was removed). Returns how many.
    @discardableResult
    static func removeOrphans() -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directoryPrefix) else { return 0 }
        var removed = 0
        for n in names where n.hasPrefix(namePrefix) {
            let p = directoryPrefix + "/" + n
            let f = open(p, O_RDONLY | O_CLOEXEC)
            guard f >= 0 else { continue }
            defer { Glibc.close(f) }
            var st = stat()
            guard fstat(f, &st) == 0, st.st_size > 0, flock(f, LOCK_EX | LOCK_NB) == 0 else { continue }   // size 0: being created
            let dir = readHeader(f)?.withUnsafeBytes { directory(inHeader: $0) }
            if dir.map({ !FileManager.default.fileExists(atPath: $0) }) ?? true { unlink(p); removed += 1 }
        }
        return removed
    }
}
