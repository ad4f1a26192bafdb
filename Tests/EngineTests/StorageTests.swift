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

@Suite struct RowStripeTests {
    static func put(_ s: RowStripe, _ key: UInt64, clock: UInt8 = 0, value: Float = 0) -> Int {
        let slot = s.insert(key, clock: clock)
        var row = [Float](repeating: value, count: s.rowFloats)
        row.withUnsafeMutableBufferPointer { s.fill(slot, from: $0.baseAddress!, step: 0, seq: 0, exists: false, stored: false) }
        return slot
    }

    @Test func dirtyPinnedAndLoadingRowsAreNeverEvictedAndTheStripeGrowsInstead() {
        let s = RowStripe(rowFloats: 1, capacity: 2)
        let a = Self.put(s, 1), b = Self.put(s, 2)
        s.markUpdated(a, step: 1, seq: 5)
        s.pin(b)
        let c = s.insert(3, clock: 0)          // a placeholder: nothing evictable, so past the capacity
        #expect(s.live == 3 && s.find(1) == a && s.find(2) == b && s.isLoading(c))
        s.unpin(b)
        #expect(s.trim() == 1 && s.live == 2 && s.find(2) == nil, "the clean, unpinned row goes; dirty and loading stay")
        s.checkInvariants()
    }

    @Test func rowsSeenOnceCycleThroughProbationWithoutEvictingHotRows() {
        let s = RowStripe(rowFloats: 1, capacity: 8)
        for k in UInt64(0)..<8 { _ = Self.put(s, k) }
        for _ in 0..<3 { for k in UInt64(0)..<2 { s.touch(s.find(k)!) } }   // rows 0 and 1 are hot
        // A stream of 60 rows seen once (4 times the cache), while the hot rows keep being hit now and then.
        for (i, k) in (UInt64(100)..<160).enumerated() {
            _ = Self.put(s, k)
            if i % 3 == 2 { for h in UInt64(0)..<2 { s.touch(s.find(h)!) } }
        }
        #expect(s.find(0) != nil && s.find(1) != nil, "hot rows survive a stream of one-time rows")
        #expect(s.live == 8)
        s.checkInvariants()
        // Without hits, the stream would have evicted them (plain CLOCK with one bit would too).
        for k in UInt64(200)..<260 { _ = Self.put(s, k) }
        #expect(s.find(0) == nil && s.find(1) == nil)
    }

    @Test func aFlushCleansARowOnlyWhenNoUpdateCameMeanwhile() {
        let s = RowStripe(rowFloats: 1, capacity: 8)
        let a = Self.put(s, 1), b = Self.put(s, 2)
        s.markUpdated(a, step: 1, seq: 10); s.markUpdated(b, step: 1, seq: 11)
        #expect(s.dirtyCount == 2 && s.unstoredCount == 2 && s.oldestDirtySeq == 10)
        s.beginFlush(a); s.beginFlush(b)
        s.markUpdated(b, step: 2, seq: 12)      // b changes while its image is being written
        s.endFlush(a, written: true); s.endFlush(b, written: true)
        #expect(!s.isDirty(a) && s.isDirty(b) && s.dirtyCount == 1 && s.unstoredCount == 0)
        #expect(s.oldestDirtySeq == 12, "b's updates through 11 are stored; 12 is not")
        s.beginFlush(b); s.endFlush(b, written: false)
        #expect(s.isDirty(b), "a failed write leaves the row dirty")
        s.checkInvariants()
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

    @Test func stripePlansGroupEveryKeyOnceInOrder() {
        let store = RowStore(rowFloats: 1, capacity: 100_000, stripes: 8)
        #expect(store.stripeCount == 8)
        let keys = (0..<1000).map { UInt64($0) &* 0x9E37_79B9 }
        let plan = keys.withUnsafeBufferPointer { store.plan($0) }
        var seen = [Bool](repeating: false, count: keys.count)
        for s in 0..<store.stripeCount {
            var last = -1
            for p in plan.positions(of: s) {
                #expect(store.stripe(of: keys[Int(p)]) == s && Int(p) > last)
                last = Int(p); seen[Int(p)] = true
            }
        }
        #expect(seen.allSatisfy { $0 })
    }
}

@Suite struct UpdateLogTests {
    static func record(_ byte: UInt8) -> UpdateLog.Record {
        let r = UpdateLog.Record(payloadLength: 10)
        r.payload.initializeMemory(as: UInt8.self, repeating: byte, count: 10)
        return r
    }

    @Test func groupCommitWritesInOrderAndATornTailIsIgnored() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: true)
        var records: [UpdateLog.Record] = []
        for seq in UInt64(1)...3 { let r = Self.record(UInt8(seq)); records.append(r); log.enqueue(r, seq: seq, payloadCheck: r.payloadCheck()) }
        try log.waitDurable(2)   // one writer writes all three
        #expect(log.durableSequence == 3)
        log.rotate()
        let r4 = Self.record(4); records.append(r4)
        log.enqueue(r4, seq: 4, payloadCheck: r4.payloadCheck())
        try log.waitDurable(4)
        records.forEach { $0.deallocate() }
        // A torn record at the end of the last segment (as a power loss could leave).
        let seg = dir + "/" + String(format: "seg-%020llu.log", UInt64(4))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: seg)); h.seekToEndOfFile(); h.write(Data([0x32, 0x53, 0x50, 0x45, 99, 0, 0])); h.closeFile()
        var seen: [(UInt64, UInt8)] = []
        let last = try UpdateLog(directory: dir, sync: false).replay(after: 1) { seq, p in seen.append((seq, p[0])) }
        #expect(seen.map(\.0) == [2, 3, 4] && seen.map(\.1) == [2, 3, 4] && last == 4)
        log.deleteSegments(through: 3)
        #expect(log.segments() == [4])
    }

    @Test func concurrentWaitersShareWrites() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: true)
        let next = LockedBox<UInt64>(0)
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<8 {
                g.addTask {
                    for _ in 0..<50 {
                        let r = Self.record(7)
                        let seq: UInt64 = next.withLock { n in n += 1; log.enqueue(r, seq: n, payloadCheck: r.payloadCheck()); return n }
                        try? log.waitDurable(seq)
                        r.deallocate()
                    }
                }
            }
        }
        var n = 0, previous: UInt64 = 0
        try UpdateLog(directory: dir, sync: false).replay(after: 0) { seq, _ in #expect(seq == previous + 1); previous = seq; n += 1 }
        #expect(n == 400)
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
