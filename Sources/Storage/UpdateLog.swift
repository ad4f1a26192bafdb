import Foundation
import Glibc
import CXXHash

/// An append-only log of one table's applied updates, in segment files `seg-<first seq>.log` of a directory.
///
/// Record: magic (u32 0x45505331 "EPS1"), payload length (u32), sequence number (u64), XXH64 of the
/// payload seeded with the sequence number (u64), payload. Little-endian.
///
/// Invariants: sequence numbers strictly increase; a record is acknowledged only after `append` returned
/// (and, with `sync`, after fdatasync), so replay never needs a record past the first torn or corrupt one;
/// a failed append truncates the segment back, so no garbage precedes a later record. Not thread-safe: the
/// owning table serialises appends under its write lock.
public final class UpdateLog {
    public static let headerLength = 24
    private static let magic: UInt32 = 0x4550_5331
    public let directory: String
    private var fd: Int32 = -1
    private var segmentStart: UInt64 = 0
    private var segmentBytes: Int = 0
    /// Bytes appended since the last `rotate`.
    public private(set) var bytesSinceRotation: Int = 0

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    deinit { if fd >= 0 { close(fd) } }

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
                    let magic = bytes.loadUnaligned(fromByteOffset: off, as: UInt32.self)
                    let length = Int(bytes.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self))
                    let seq = bytes.loadUnaligned(fromByteOffset: off + 8, as: UInt64.self)
                    let sum = bytes.loadUnaligned(fromByteOffset: off + 16, as: UInt64.self)
                    guard magic == Self.magic, bytes.count - off - Self.headerLength >= length else { return }
                    let payload = UnsafeRawBufferPointer(rebasing: bytes[(off + Self.headerLength)..<(off + Self.headerLength + length)])
                    guard XXH64(payload.baseAddress, length, seq) == sum else { return }
                    if seq > last { try body(seq, payload); last = seq }
                    off += Self.headerLength + length
                }
            }
        }
        return last
    }

    /// Starts a new segment whose first record will be `nextSeq`. Records of earlier segments stay until
    /// `deleteSegments(through:)`.
    public func rotate(nextSeq: UInt64) throws {
        if fd >= 0 { close(fd); fd = -1 }
        let p = path(nextSeq)
        fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.writeFailed(message: "cannot open update log \(p): \(String(cString: strerror(errno)))") }
        segmentStart = nextSeq
        segmentBytes = Int(lseek(fd, 0, SEEK_END))
        bytesSinceRotation = 0
    }

    /// Appends one record; with `sync`, fdatasyncs before returning. On failure the segment is truncated
    /// back to its previous length and the error thrown (nothing was logged).
    public func append(seq: UInt64, payload: UnsafeRawBufferPointer, sync: Bool) throws {
        if fd < 0 { try rotate(nextSeq: seq) }
        var header = [UInt8](repeating: 0, count: Self.headerLength)
        header.withUnsafeMutableBytes { h in
            h.storeBytes(of: Self.magic, toByteOffset: 0, as: UInt32.self)
            h.storeBytes(of: UInt32(payload.count), toByteOffset: 4, as: UInt32.self)
            h.storeBytes(of: seq, toByteOffset: 8, as: UInt64.self)
            h.storeBytes(of: XXH64(payload.baseAddress, payload.count, seq), toByteOffset: 16, as: UInt64.self)
        }
        var iov = [iovec(iov_base: nil, iov_len: 0), iovec(iov_base: nil, iov_len: 0)]
        let total = Self.headerLength + payload.count
        let ok: Bool = header.withUnsafeMutableBytes { h in
            var written = 0
            while written < total {
                // Build the remaining iovecs (header rest, payload rest).
                var n: Int32 = 0
                if written < Self.headerLength {
                    iov[0] = iovec(iov_base: h.baseAddress! + written, iov_len: Self.headerLength - written)
                    iov[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress), iov_len: payload.count)
                    n = payload.count > 0 ? 2 : 1
                } else {
                    let p = written - Self.headerLength
                    iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress! + p), iov_len: payload.count - p)
                    n = 1
                }
                let r = writev(fd, iov, n)
                if r < 0 { if errno == EINTR { continue }; return false }
                written += r
            }
            return true
        }
        if !ok || (sync && fdatasync(fd) != 0) {
            let message = String(cString: strerror(errno))
            _ = ftruncate(fd, off_t(segmentBytes))
            throw StorageError.writeFailed(message: "update log append to \(directory) failed: \(message)")
        }
        segmentBytes += total
        bytesSinceRotation += total
    }

    /// Deletes segments all of whose records have sequence <= `seq` (never the open segment).
    public func deleteSegments(through seq: UInt64) {
        let segs = segments()
        for (i, s) in segs.enumerated() where i + 1 < segs.count && segs[i + 1] <= seq + 1 && s != segmentStart {
            try? FileManager.default.removeItem(atPath: path(s))
        }
    }

    /// Deletes every segment (the table was dropped).
    public func destroy() {
        if fd >= 0 { close(fd); fd = -1 }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
