import Testing
import Foundation
@testable import Storage
import Vocabulary

@Suite struct RowCodecTests {
    @Test func rowsRoundTripWithStepAndRejectDefects() throws {
        let codec = RowCodec(floatCount: 3, optimizerTag: 2)
        let bytes = codec.encode(floats: [1.5, -2, 0.25], step: 7, seq: 258)
        #expect(bytes.count == 16 + 12)
        #expect(Array(bytes[0..<16]) == [1, 2, 0, 0, 7, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0])
        var out = [Float](repeating: 0, count: 3)
        let (step, seq) = try bytes.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try codec.decode(b, into: $0.baseAddress!) } }
        #expect(step == 7 && seq == 258 && out == [1.5, -2, 0.25])
        for bad in [Array(bytes.dropLast()), [9] + Array(bytes.dropFirst()), [1, 3] + Array(bytes.dropFirst(2))] {
            #expect(throws: RowCodecError.self) {
                try bad.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try codec.decode(b, into: $0.baseAddress!) } }
            }
        }
    }

    @Test func rowKeysSortBySlotThenKey() {
        let keys = [(UInt16(2), UInt64(1)), (1, 500), (1, 2), (4095, 0), (0, .max)]
        let encoded = keys.map { RowKey.encode(slot: $0.0, key: $0.1) }
        let sorted = encoded.sorted { $0.lexicographicallyPrecedes($1) }
        #expect(sorted.map { $0.withUnsafeBytes { RowKey.decode($0)!.slot } } == [0, 1, 1, 2, 4095])
        #expect(sorted[1].withUnsafeBytes { RowKey.decode($0)!.key } == 2)
    }
}

@Suite struct HotRowCacheTests {
    @Test func dirtyRowsAreNeverEvicted() {
        let c = HotRowCache(rowFloats: 1, capacity: 2)
        let a = c.claim(1)!, b = c.claim(2)!
        c.set(a, step: 1, seq: 5, exists: true, dirty: true)
        c.set(b, step: 1, seq: 5, exists: true, dirty: true)
        #expect(c.dirtyCount == 2)
        #expect(c.claim(3) == nil, "every row is dirty: the owner must flush first")
        c.markClean(b)
        #expect(c.claim(3) == b && c.lookup(1) == a && c.dirtyCount == 1)
    }

    @Test func uint64MapSurvivesChurnLikeADictionary() {
        var m = UInt64Map()
        var reference: [UInt64: Int] = [:]
        var s: UInt64 = 1
        for i in 0..<20_000 {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            let k = s >> 50  // small key space: many collisions, updates and removals
            if i % 3 == 0 { m.remove(k); reference[k] = nil } else { m.set(k, i); reference[k] = i }
        }
        #expect(m.count == reference.count)
        for (k, v) in reference { #expect(m.get(k) == v) }
        for k in UInt64(0)..<(1 << 14) where reference[k] == nil { #expect(m.get(k) == nil) }
    }

    @Test func cacheIsBoundedAndEvictsUnreferencedRowsFirst() {
        let c = HotRowCache(rowFloats: 2, capacity: 3)
        for k in UInt64(0)..<3 { let s = c.claim(k)!; c.row(s).update(repeating: Float(k), count: 2) }
        #expect(c.count == 3)
        // The hand clears reference bits in one sweep and takes slot 0, then keeps going round.
        _ = c.claim(10)
        #expect(c.lookup(0) == nil && c.count == 3)
        _ = c.lookup(2)
        _ = c.claim(11)
        #expect(c.lookup(1) == nil, "row 1 was not referenced since the last sweep")
        #expect(c.lookup(2) != nil, "row 2 was referenced and survives")
        let s = c.lookup(2)!
        #expect(c.row(s)[0] == 2)
    }

    @Test func zeroCapacityCachesNothing() {
        let c = HotRowCache(rowFloats: 4, capacity: 0)
        #expect(c.claim(1) == nil && c.count == 0)
    }
}

@Suite struct UpdateLogTests {
    @Test func recordsReplayInOrderAndATornTailIsIgnored() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir)
        try log.rotate(nextSeq: 1)
        for seq in UInt64(1)...3 { try [UInt8](repeating: UInt8(seq), count: 10).withUnsafeBytes { try log.append(seq: seq, payload: $0, sync: seq == 3) } }
        try log.rotate(nextSeq: 4)
        try [UInt8](repeating: 4, count: 10).withUnsafeBytes { try log.append(seq: 4, payload: $0, sync: false) }
        // A torn record at the end of the last segment (as a power loss could leave).
        let seg = dir + "/" + String(format: "seg-%020llu.log", UInt64(4))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: seg)); h.seekToEndOfFile(); h.write(Data([0x31, 0x53, 0x50, 0x45, 99, 0, 0])); h.closeFile()
        var seen: [(UInt64, UInt8)] = []
        let last = try UpdateLog(directory: dir).replay(after: 1) { seq, p in seen.append((seq, p[0])) }
        #expect(seen.map(\.0) == [2, 3, 4] && seen.map(\.1) == [2, 3, 4] && last == 4)
        log.deleteSegments(through: 3)
        #expect(log.segments() == [4])
    }
}

@Suite struct RocksDatabaseTests {
    @Test func columnFamiliesPersistAndBatchesApplyAtomically() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rocks-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let db = try RocksDatabase(path: dir)
            let cf = try db.createColumnFamily("t")
            let b = WriteBatch()
            b.put(cf, key: [1], value: [10]); b.put(cf, key: [2], value: [20])
            try db.write(b, sync: true)
            db.close()
        }
        let db = try RocksDatabase(path: dir)
        #expect(db.columnFamilyNames == ["default", "t"])
        let cf = try #require(db.columnFamily("t"))
        #expect(try db.get(cf, key: [2]) == [20])
        var seen: [[UInt8]] = []
        try db.scan(cf) { k, _ in seen.append(Array(k)); return true }
        #expect(seen == [[1], [2]])
        try db.dropColumnFamily("t")
        #expect(db.columnFamilyNames == ["default"])
    }
}
