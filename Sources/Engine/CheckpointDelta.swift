import Foundation
import Vocabulary
import Storage
import EmbedPSWire

/// Where one table stood at a checkpoint's cut: its incarnation, its last update-log sequence, its spec.
public struct TableCut: Sendable, Codable, Equatable {
    public var incarnation: UInt64
    public var sequence: UInt64
    /// The table's spec as its wire encoding, base64.
    public var spec: String
}

/// Incremental checkpoints (see CheckpointRequest.base in the proto). A delta part holds, per table, the
/// stored rows whose last update came after the base's cut (their stored bytes: weights, optimizer state,
/// sequence) in `delta/<n>.rows`, and the keys removed since in `delta/<n>.removed`; a table created again
/// or new since the base, or rewritten since (a sparsity step, DNIS assignment or prune changes rows without
/// moving their sequences), is there whole; a table with state beside its rows has it in `delta/<n>.side`
/// (JSON `TableSideState`); a table dropped since is absent from `cuts`. Restoring one installs its full
/// base and applies every delta of the chain in order.
extension ShardEngine {
    /// The cut of every table now (after `checkpointAll`).
    func tableCuts() throws(EngineError) -> [String: TableCut] {
        var cuts: [String: TableCut] = [:]
        for name in tableNames() {
            let cut = try withTable(name) { t in
                TableCut(incarnation: t.identity.incarnation, sequence: t.lastSequence, spec: Data(t.spec.wire.encoded()).base64EncodedString())
            }
            cuts[name] = cut
        }
        return cuts
    }

    /// Writes the delta files of a part into `dir` against `base` (this shard's part of the base
    /// checkpoint); the caller checkpointed every table and keeps updates out. Returns the cuts.
    func writeDelta(into dir: String, base: CheckpointInfo) throws(EngineError) -> [String: TableCut] {
        guard let baseCuts = base.cuts else {
            throw .wrongState("checkpoint '\(base.name)' was written by an older version without table cuts: take a full checkpoint first")
        }
        let cuts = try tableCuts()
        do { try FileManager.default.createDirectory(atPath: dir + "/delta", withIntermediateDirectories: true) } catch { throw .storage("\(dir)/delta: \(error)") }
        for (n, name) in cuts.keys.sorted().enumerated() {
            let cut = cuts[name]!
            let since = baseCuts[name].map { $0.incarnation == cut.incarnation ? $0.sequence : 0 } ?? 0
            try withTable(name) { (t) throws(EngineError) in
                let whole = since == 0 || t.lastRewriteSequence > since
                try t.writeChangedRows(since: whole ? 0 : since, rows: "\(dir)/delta/\(n).rows",
                                       removed: since > 0 ? (path: "\(dir)/delta/\(n).removed", since: since) : nil)
                guard t.hasSideState else { return }
                do { try JSONEncoder().encode(t.sideState()).write(to: URL(fileURLWithPath: "\(dir)/delta/\(n).side")) } catch {
                    throw .storage("\(dir)/delta/\(n).side: \(error)")
                }
            }
        }
        return cuts
    }

    /// Applies the delta part in `dir` to this (just restored) engine: tables dropped since its base are
    /// dropped, tables new or created again are created, changed rows installed verbatim, removed rows
    /// deleted, and each table continues after its cut's sequence.
    func applyDelta(from dir: String, info: CheckpointInfo) throws(EngineError) {
        guard let cuts = info.cuts else { throw .storage("checkpoint '\(info.name)' at \(dir) has no table cuts") }
        let baseCuts = info.base.flatMap { Self.readCheckpoint((dir as NSString).deletingLastPathComponent + "/" + $0)?.cuts } ?? [:]
        for name in tableNames() where cuts[name] == nil { _ = try dropTable(name) }
        for (n, name) in cuts.keys.sorted().enumerated() {
            let cut = cuts[name]!
            guard let bytes = Data(base64Encoded: cut.spec), let spec = try? TableSpec(wire: try Wire.TableSpec(decoding: [UInt8](bytes))) else {
                throw .storage("checkpoint '\(info.name)': the spec of '\(name)' does not decode")
            }
            let sameIncarnation = baseCuts[name]?.incarnation == cut.incarnation && tableNames().contains(name)
            if !sameIncarnation {
                if tableNames().contains(name) { _ = try dropTable(name) }
                _ = try createTable(spec)
            }
            try withTable(name) { (t) throws(EngineError) in
                try t.applyChangedRows(rows: "\(dir)/delta/\(n).rows", removed: "\(dir)/delta/\(n).removed")
                if let data = FileManager.default.contents(atPath: "\(dir)/delta/\(n).side") {
                    guard let side = try? JSONDecoder().decode(TableSideState.self, from: data) else { throw .storage("\(dir)/delta/\(n).side does not decode") }
                    try t.adoptSideState(side)
                }
                try t.continueAfter(cut.sequence)
            }
        }
    }

    /// The checkpoint directories to apply for `dir`, from its full base to itself (bases are siblings).
    static func checkpointChain(_ dir: String) throws(EngineError) -> [(dir: String, info: CheckpointInfo)] {
        var chain: [(String, CheckpointInfo)] = []
        var current = dir
        while true {
            guard let info = readCheckpoint(current) else { throw .storage("no checkpoint at \(current) (expected checkpoint.json)") }
            chain.insert((current, info), at: 0)
            guard let base = info.base else { break }
            guard chain.count < 1000 else { throw .storage("checkpoint chain of \(dir) is longer than 1000") }
            current = (current as NSString).deletingLastPathComponent + "/" + base
        }
        return chain
    }
}

extension EmbeddingTable {
    /// Writes (key u64 LE, length u32 LE, stored bytes) for every stored row whose sequence is after
    /// `since` (all rows when 0) to `rows`, and the keys removed after `removed.since` (u64 LE each) to
    /// `removed.path`.
    func writeChangedRows(since: UInt64, rows: String, removed: (path: String, since: UInt64)?) throws(EngineError) {
        var out = Data()
        do {
            try db.scan(family) { k, v in
                guard let (_, key) = RowKey.decode(k) else { return false }
                guard v.count >= RowCodec.headerLength else { return true }
                let seq = v.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                if since == 0 || UInt64(littleEndian: seq) > since {
                    withUnsafeBytes(of: key.littleEndian) { out.append(contentsOf: $0) }
                    withUnsafeBytes(of: UInt32(v.count).littleEndian) { out.append(contentsOf: $0) }
                    out.append(contentsOf: v)
                }
                return true
            }
            try out.write(to: URL(fileURLWithPath: rows))
            if let removed {
                var keys = Data()
                var cursor: (slot: UInt16, key: UInt64)? = nil
                while true {
                    let page = try removedRows(after: cursor, limit: 65536, since: removed.since)
                    for k in page.keys { withUnsafeBytes(of: k.littleEndian) { keys.append(contentsOf: $0) } }
                    guard let next = page.next else { break }
                    cursor = next
                }
                try keys.write(to: URL(fileURLWithPath: removed.path))
            }
        } catch let e as EngineError { throw e } catch { throw .storage("table '\(spec.name)' delta: \(error)") }
    }

    /// Installs the rows of a delta file verbatim (sequences kept) and deletes its removed keys.
    func applyChangedRows(rows: String, removed: String) throws(EngineError) {
        guard let data = FileManager.default.contents(atPath: rows) else { throw .storage("delta file \(rows) is missing") }
        var batch: [(key: UInt64, row: [UInt8])] = []
        var at = 0
        while at < data.count {
            guard at + 12 <= data.count else { throw .storage("delta file \(rows) is truncated at byte \(at)") }
            let key = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            let n = Int(data.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self)) })
            guard at + 12 + n <= data.count else { throw .storage("delta file \(rows) is truncated at byte \(at)") }
            batch.append((key, [UInt8](data[(data.startIndex + at + 12)..<(data.startIndex + at + 12 + n)])))
            at += 12 + n
            if batch.count == 8192 { try installReplicaRows(batch); batch.removeAll(keepingCapacity: true) }
        }
        if !batch.isEmpty { try installReplicaRows(batch) }
        if let gone = FileManager.default.contents(atPath: removed), !gone.isEmpty {
            let keys = gone.withUnsafeBytes { b in (0..<(b.count / 8)).map { UInt64(littleEndian: b.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) } }
            try removeRows(keys, origin: nil)
        }
    }
}
