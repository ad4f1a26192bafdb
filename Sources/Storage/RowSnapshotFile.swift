import Foundation
import Glibc
import CXXHash
import CLinux

/// A checkpoint snapshot of a table's cached rows: one file per checkpoint holding, for every row that was
/// newer than RocksDB when the checkpoint swept it, the row's key, update sequence, optimizer step, whether
/// RocksDB held an older image, and its floats (the cache's full width: weights and optimizer state).
///
/// A table whose rows all fit in its cache is rewritten whole by every checkpoint; writing those rows here,
/// sequentially, costs a copy, where writing them through RocksDB costs a memtable insert, a flush and a
/// compaction per row. The file is the checkpoint's only copy of those rows until they are written to
/// RocksDB, so it is complete before anything refers to it: written as `snapshot-<id>.tmp`, synced, renamed
/// to `snapshot-<id>.rows`, the directory synced.
///
/// Format (little-endian): a 32-byte header (magic "EPSSNAP1", version u32 = 1, floats per row u32, id u64,
/// reserved u64), then chunks, each a 24-byte chunk header (magic "SCHK" u32, rows u32, payload bytes u64,
/// XXH64 of the payload, seed 0) and its rows (key u64, sequence u64, step u32, flags u32 (bit 0: stored),
/// floats), then a 24-byte trailer (magic "EPSSEND1", chunks u64, rows u64). A file without its trailer, or
/// with any chunk whose checksum or size does not match, is refused as a whole.
public enum RowSnapshotFile {
    static let headerMagic: UInt64 = 0x3150_414E_5353_5045   // "EPSSNAP1"
    static let trailerMagic: UInt64 = 0x3144_4E45_5353_5045  // "EPSSEND1"
    static let chunkMagic: UInt32 = 0x4B48_4353              // "SCHK"
    static let version: UInt32 = 1
    static let headerBytes = 32, chunkHeaderBytes = 24, trailerBytes = 24, recordHeaderBytes = 24

    /// The path of snapshot `id` in `directory`.
    public static func path(_ directory: String, id: UInt64) -> String { "\(directory)/snapshot-\(id).rows" }

    /// Ids of the complete snapshot files in `directory`.
    public static func ids(in directory: String) -> [UInt64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { n in
            guard n.hasPrefix("snapshot-"), n.hasSuffix(".rows") else { return nil }
            return UInt64(n.dropFirst(9).dropLast(5))
        }.sorted()
    }

    /// The path of the spare: a retired snapshot file the next snapshot is written into (`deleteAll` with
    /// `keepingSpare` makes it).
    static func sparePath(_ directory: String) -> String { "\(directory)/snapshot.spare" }

    /// Deletes every snapshot file in `directory` (complete or not) except `keep`; with `keepingSpare`, the
    /// largest complete one goes to the spare's name instead (unless there is a spare already), for the next
    /// snapshot to overwrite: on a file system mounted with `discard`, deleting a file of a few hundred MB
    /// sends its blocks to the device as discards, and the update log's writes queued behind them waited
    /// 30-55 ms at a time (measured with `perf sched` during pushes); writing into blocks a file holds also
    /// allocates nothing. A `.tmp` file (a writer that crashed part way) never becomes the spare: it may hold
    /// only a few of a snapshot's blocks. The spare is deleted with `deleteSpare`.
    public static func deleteAll(in directory: String, except keep: UInt64?, keepingSpare: Bool = false) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let retired = names.filter { n in
            n.hasPrefix("snapshot-") && (n.hasSuffix(".rows") || n.hasSuffix(".tmp")) && keep.map { n != "snapshot-\($0).rows" } ?? true
        }
        var spare: String? = nil
        if keepingSpare && access(sparePath(directory), F_OK) != 0 {
            spare = retired.filter { $0.hasSuffix(".rows") }.map { ($0, LocalFile.size(atPath: "\(directory)/\($0)")) }.max { $0.1 < $1.1 }?.0
        }
        for n in retired {
            if n == spare, rename("\(directory)/\(n)", sparePath(directory)) == 0 { continue }
            unlink("\(directory)/\(n)")
        }
    }

    /// Deletes the spare (a table that stopped being written gives its disk back).
    public static func deleteSpare(in directory: String) { unlink(sparePath(directory)) }

    /// Bytes of one row record.
    static func recordBytes(rowFloats: Int) -> Int { recordHeaderBytes + 4 * rowFloats }

    /// Reads snapshot `id` of `directory`, checking every chunk before handing its rows to `body(key, seq,
    /// step, stored, row)`. Throws (naming the file) when it is missing, truncated or damaged, or was
    /// written for another row width; rows of chunks before the damage may have been handed over by then.
    /// Returns the file's bytes (all of them were read).
    @discardableResult
    public static func read(_ directory: String, id: UInt64, rowFloats: Int,
                            _ body: (UInt64, UInt64, UInt32, Bool, UnsafePointer<Float>) throws -> Void) throws -> UInt64 {
        let p = path(directory, id: id)
        func damaged(_ why: String) -> StorageError { .readFailed(message: "checkpoint snapshot \(p) \(why); the table cannot be recovered without it (restore the data directory from a backup or a cluster checkpoint)") }
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw damaged("cannot be opened: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        func readExactly(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws {
            var done = 0
            while done < count {
                let n = Glibc.read(fd, buffer + done, count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw damaged(n == 0 ? "is truncated" : "cannot be read: \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        let header = UnsafeMutableRawPointer.allocate(byteCount: headerBytes, alignment: 8)
        defer { header.deallocate() }
        try readExactly(header, headerBytes)
        guard header.load(as: UInt64.self) == headerMagic else { throw damaged("is not a checkpoint snapshot (bad magic)") }
        guard header.load(fromByteOffset: 8, as: UInt32.self) == version else { throw damaged("has unknown version \(header.load(fromByteOffset: 8, as: UInt32.self))") }
        let floats = Int(header.load(fromByteOffset: 12, as: UInt32.self))
        guard floats == rowFloats else { throw damaged("holds rows of \(floats) floats, the table's rows have \(rowFloats)") }
        guard header.load(fromByteOffset: 16, as: UInt64.self) == id else { throw damaged("names another snapshot id") }
        let record = recordBytes(rowFloats: rowFloats)
        var capacity = 0
        var payload: UnsafeMutableRawPointer? = nil
        defer { payload?.deallocate() }
        var chunks: UInt64 = 0, rows: UInt64 = 0
        let chunkHeader = UnsafeMutableRawPointer.allocate(byteCount: chunkHeaderBytes, alignment: 8)
        defer { chunkHeader.deallocate() }
        while true {
            try readExactly(chunkHeader, 8)
            if chunkHeader.load(as: UInt64.self) == trailerMagic {
                try readExactly(chunkHeader + 8, trailerBytes - 8)
                guard chunkHeader.load(fromByteOffset: 8, as: UInt64.self) == chunks, chunkHeader.load(fromByteOffset: 16, as: UInt64.self) == rows else {
                    throw damaged("has a trailer that does not match its chunks")
                }
                return UInt64(headerBytes + trailerBytes) + chunks * UInt64(chunkHeaderBytes) + rows * UInt64(record)
            }
            try readExactly(chunkHeader + 8, chunkHeaderBytes - 8)
            guard chunkHeader.load(as: UInt32.self) == chunkMagic else { throw damaged("has a damaged chunk header after \(rows) rows") }
            let count = Int(chunkHeader.load(fromByteOffset: 4, as: UInt32.self))
            let bytes = chunkHeader.load(fromByteOffset: 8, as: UInt64.self)
            guard bytes == UInt64(count * record) else { throw damaged("has a chunk of \(bytes) bytes for \(count) rows") }
            if count * record > capacity {
                payload?.deallocate()
                capacity = count * record
                payload = .allocate(byteCount: capacity, alignment: 64)
            }
            guard let buffer = payload else { continue }
            try readExactly(buffer, count * record)
            guard XXH64(buffer, count * record, 0) == chunkHeader.load(fromByteOffset: 16, as: UInt64.self) else {
                throw damaged("has a chunk whose checksum does not match after \(rows) rows")
            }
            for r in 0..<count {
                let base = buffer + r * record
                // Records are 24 + 4 * floats bytes: 4-byte aligned, 8-byte only for an even float count.
                try body(base.loadUnaligned(as: UInt64.self), base.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                         base.loadUnaligned(fromByteOffset: 16, as: UInt32.self), base.loadUnaligned(fromByteOffset: 20, as: UInt32.self) & 1 != 0,
                         (base + recordHeaderBytes).assumingMemoryBound(to: Float.self))
            }
            chunks += 1; rows += UInt64(count)
        }
    }
}

/// Writes one checkpoint snapshot (see `RowSnapshotFile`): rows are added to the current chunk in memory,
/// `endChunk` writes it, `finish` makes the file complete and durable under its final name. Until then the
/// file has a temporary name no reader looks at; deinit deletes it. The file is the spare renamed when
/// there is one (`RowSnapshotFile.deleteAll`), overwritten from the start and cut to its new length at
/// `finish`, else a new one. With a rate, each chunk is written back
/// as soon as it is written (the one before waited for) and the writer sleeps to stay at that many bytes a
/// second: the update log's writes to the same disk then never queue behind the whole file's writeback in
/// one burst (measured: unpaced, a 280 MB snapshot cost pushes at 4 in flight ~12% and doubled their p99,
/// against nothing with the file in /dev/shm). Not thread-safe.
public final class RowSnapshotWriter {
    public let directory: String
    public let id: UInt64
    let rowFloats: Int
    let recordBytes: Int
    private var fd: Int32
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var count = 0
    private var chunks: UInt64 = 0
    public private(set) var rows: UInt64 = 0
    public private(set) var bytes: UInt64 = 0
    var tmpPath: String { "\(directory)/snapshot-\(id).tmp" }

    let bytesPerSecond: Int
    private let started = DispatchTime.now().uptimeNanoseconds
    private var pending: (start: UInt64, count: UInt64)? = nil
    /// Whether the file is the spare, written over (its old bytes past `bytes` are cut off at `finish`).
    public private(set) var reused = false

    /// A new snapshot `id` in `directory` of rows of `rowFloats` floats, written at most `bytesPerSecond`
    /// (0: as fast as the page cache takes it, written back at `finish`).
    public init(directory: String, id: UInt64, rowFloats: Int, bytesPerSecond: Int = 0) throws {
        self.directory = directory; self.id = id; self.rowFloats = rowFloats; self.bytesPerSecond = max(0, bytesPerSecond)
        recordBytes = RowSnapshotFile.recordBytes(rowFloats: rowFloats)
        capacity = 1024 * recordBytes
        buffer = .allocate(byteCount: capacity, alignment: 64)
        fd = -1
        if rename(RowSnapshotFile.sparePath(directory), tmpPath) == 0 {
            fd = open(tmpPath, O_WRONLY | O_CLOEXEC)
            if fd >= 0 { reused = true } else { unlink(tmpPath) }
        }
        if fd < 0 { fd = open(tmpPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        guard fd >= 0 else {
            buffer.deallocate()
            throw StorageError.writeFailed(message: "cannot create checkpoint snapshot \(tmpPath): \(String(cString: strerror(errno)))")
        }
        let header = UnsafeMutableRawPointer.allocate(byteCount: RowSnapshotFile.headerBytes, alignment: 8)
        defer { header.deallocate() }
        header.initializeMemory(as: UInt8.self, repeating: 0, count: RowSnapshotFile.headerBytes)
        header.storeBytes(of: RowSnapshotFile.headerMagic, as: UInt64.self)
        header.storeBytes(of: RowSnapshotFile.version, toByteOffset: 8, as: UInt32.self)
        header.storeBytes(of: UInt32(rowFloats), toByteOffset: 12, as: UInt32.self)
        header.storeBytes(of: id, toByteOffset: 16, as: UInt64.self)
        try write(header, RowSnapshotFile.headerBytes)
    }

    deinit {
        if fd >= 0 { close(fd); unlink(tmpPath) }
        buffer.deallocate()
    }

    /// Makes room for `rows` more rows in the current chunk without growing it later, its memory touched
    /// (a caller about to add rows under a lock others wait for grows and faults in nothing there).
    public func reserve(_ rows: Int) {
        let needed = (count + rows) * recordBytes
        guard needed > capacity else { return }
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: needed, alignment: 64)
        bigger.copyMemory(from: buffer, byteCount: count * recordBytes)
        (bigger + count * recordBytes).initializeMemory(as: UInt8.self, repeating: 0, count: needed - count * recordBytes)
        buffer.deallocate()
        buffer = bigger; capacity = needed
    }

    /// Adds a row to the current chunk.
    @inline(__always)
    public func add(key: UInt64, seq: UInt64, step: UInt32, stored: Bool, row: UnsafePointer<Float>) {
        if (count + 1) * recordBytes > capacity {
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 64)
            bigger.copyMemory(from: buffer, byteCount: count * recordBytes)
            buffer.deallocate()
            buffer = bigger; capacity *= 2
        }
        let base = buffer + count * recordBytes
        base.storeBytes(of: key, as: UInt64.self)
        base.storeBytes(of: seq, toByteOffset: 8, as: UInt64.self)
        base.storeBytes(of: step, toByteOffset: 16, as: UInt32.self)
        base.storeBytes(of: stored ? 1 : 0, toByteOffset: 20, as: UInt32.self)
        (base + RowSnapshotFile.recordHeaderBytes).copyMemory(from: row, byteCount: 4 * rowFloats)
        count += 1
    }

    /// Writes the rows added since the last chunk as one chunk (nothing when there are none).
    public func endChunk() throws {
        guard count > 0 else { return }
        let payload = count * recordBytes
        let header = UnsafeMutableRawPointer.allocate(byteCount: RowSnapshotFile.chunkHeaderBytes, alignment: 8)
        defer { header.deallocate() }
        header.storeBytes(of: RowSnapshotFile.chunkMagic, as: UInt32.self)
        header.storeBytes(of: UInt32(count), toByteOffset: 4, as: UInt32.self)
        header.storeBytes(of: UInt64(payload), toByteOffset: 8, as: UInt64.self)
        header.storeBytes(of: XXH64(buffer, payload, 0), toByteOffset: 16, as: UInt64.self)
        let start = bytes
        try write(header, RowSnapshotFile.chunkHeaderBytes)
        try write(buffer, payload)
        chunks += 1; rows += UInt64(count); count = 0
        guard bytesPerSecond > 0 else { return }
        if let p = pending { _ = embedps_sync_range(fd, Int64(p.start), Int64(p.count), 1) }
        _ = embedps_sync_range(fd, Int64(start), Int64(bytes - start), 0)
        pending = (start, bytes - start)
        let due = Double(bytes) / Double(bytesPerSecond)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        if due > elapsed { usleep(UInt32(min(1.0, due - elapsed) * 1e6)) }
    }

    /// Writes the last chunk and the trailer, syncs the file, renames it to its final name and syncs the
    /// directory: on return the snapshot is complete and durable.
    public func finish() throws {
        try endChunk()
        let trailer = UnsafeMutableRawPointer.allocate(byteCount: RowSnapshotFile.trailerBytes, alignment: 8)
        defer { trailer.deallocate() }
        trailer.storeBytes(of: RowSnapshotFile.trailerMagic, as: UInt64.self)
        trailer.storeBytes(of: chunks, toByteOffset: 8, as: UInt64.self)
        trailer.storeBytes(of: rows, toByteOffset: 16, as: UInt64.self)
        try write(trailer, RowSnapshotFile.trailerBytes)
        if reused { guard ftruncate(fd, off_t(bytes)) == 0 else { throw failure("cannot cut to its length") } }
        guard fdatasync(fd) == 0 else { throw failure("cannot sync") }
        close(fd); fd = -1
        let final = RowSnapshotFile.path(directory, id: id)
        guard rename(tmpPath, final) == 0 else { let e = failure("cannot rename to \(final)"); unlink(tmpPath); throw e }
        let d = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard d >= 0 else { throw failure("cannot open its directory") }
        defer { close(d) }
        guard fsync(d) == 0 else { throw failure("cannot sync its directory") }
    }

    private func failure(_ what: String) -> StorageError {
        .writeFailed(message: "checkpoint snapshot \(tmpPath): \(what): \(String(cString: strerror(errno)))")
    }

    private func write(_ p: UnsafeRawPointer, _ n: Int) throws {
        var done = 0
        while done < n {
            let w = Glibc.write(fd, p + done, n - done)
            if w < 0 && errno == EINTR { continue }
            guard w > 0 else { throw failure("cannot write") }
            done += w
        }
        bytes += UInt64(n)
    }
}
