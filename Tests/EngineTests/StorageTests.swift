import Testing
import Foundation
import Synchronization
@testable import Storage
import CXXHash
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

    /// What a batch loop prefetches for a key is the slot its lookup confirms: the first entry with the
    /// key's tag on its probe sequence, also when a collision moved the key past its home bucket (about a
    /// quarter of the keys at the index's load; the home bucket's entry is another key's slot then).
    @Test func theIndexCandidateIsTheSlotALookupConfirmsAlsoPastTheHomeBucket() {
        var index = SlotIndex()
        var slotOf: [UInt64: Int] = [:], keyOf: [Int: UInt64] = [:], tags: [UInt64: Int] = [:]
        for key in UInt64(1)...3000 {
            let slot = Int(key) * 7 % 10007
            index.insert(tag: SlotIndex.tag(key), slot: slot)
            slotOf[key] = slot; keyOf[slot] = key; tags[SlotIndex.tag(key), default: 0] += 1
        }
        var displaced = 0
        for (key, slot) in slotOf {
            let tag = SlotIndex.tag(key)
            #expect(index.get(key, tag: tag) { keyOf[$0] ?? 0 } == slot)
            if index.bucket(tag).pointee & 0xffff_ffff != UInt64(slot + 1) { displaced += 1 }
            // A tag two keys share: the candidate is one of their slots; a unique tag's is the key's own.
            if tags[tag] == 1 { #expect(index.candidate(tag: tag) == slot) } else { #expect(index.candidate(tag: tag).map { SlotIndex.tag(keyOf[$0] ?? 0) } == tag) }
        }
        #expect(displaced > 300, "the test covers keys past their home bucket (\(displaced) of 3000)")
        #expect(index.candidate(tag: SlotIndex.tag(5000)) == nil || tags[SlotIndex.tag(5000)] != nil)
        index.free()
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

    /// With every unpinned row dirty (a replay through a small cache), one sweep finds no victim and the
    /// inserts after it skip sweeping until a row may have become evictable again; each way a row becomes
    /// evictable (a flush, an unpin, a fill, a clean rewrite) lets the next insert evict it.
    @Test func insertsSkipTheEvictionSweepUntilARowCanGo() {
        let s = RowStripe(rowFloats: 1, capacity: 64)
        let rows = (UInt64(0)..<64).map { Self.put(s, $0) }
        for (n, r) in rows.enumerated() { s.markUpdated(r, step: 1, seq: UInt64(n + 1)) }
        // 2,000 placeholders past the capacity, each pinned like a push's: the live rows are never all dirty.
        var placeholders: [Int] = []
        for k in UInt64(1000)..<3000 { let p = s.insert(k, clock: 0); s.pin(p); placeholders.append(p) }
        #expect(s.live == 2064)
        #expect(s.sweptSlots < 4 * 2064 * 2, "at most a couple of fruitless sweeps, not one per insert (\(s.sweptSlots) slots passed)")
        // A flush makes row 0 clean: the next insert evicts it.
        s.beginFlush(rows[0]); s.endFlush(rows[0], written: true)
        _ = s.insert(5000, clock: 0)
        #expect(s.find(0) == nil && s.live == 2064)
        // A placeholder filled and unpinned can go next.
        var v: Float = 1
        s.fill(placeholders[0], from: &v, step: 0, seq: 0, exists: true, stored: true)
        s.unpin(placeholders[0])
        _ = s.insert(5001, clock: 0)
        #expect(s.find(1000) == nil)
        // A dirty row rewritten as clean (an import) can go next.
        s.setState(rows[1], step: 1, seq: 2, exists: true, stored: true, dirty: false)
        _ = s.insert(5002, clock: 0)
        #expect(s.find(1) == nil && s.live == 2064)
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

    @Test func aCoveredRowHoldsNoLogRecordUntilItsNextUpdateAndAFlushStillCleansIt() {
        let s = RowStripe(rowFloats: 1, capacity: 8)
        let a = Self.put(s, 1), b = Self.put(s, 2)
        s.markUpdated(a, step: 1, seq: 10); s.markUpdated(b, step: 1, seq: 11)
        s.cover(a); s.cover(b)
        #expect(s.isCovered(a) && s.isDirty(a) && s.oldestDirtySeq == nil, "covered rows are dirty but pin no record")
        #expect(s.dirtySequences.snapshotHeld == 2)
        s.markUpdated(b, step: 2, seq: 15)
        #expect(!s.isCovered(b) && s.oldestDirtySeq == 15, "an update after the cover pins the log from itself")
        #expect(s.has(b, RowState.snapshotHeld) && s.dirtySequences.snapshotHeld == 2,
                "RocksDB still lacks b's updates before 15, which only the snapshot holds")
        s.markUpdated(b, step: 3, seq: 16)
        #expect(s.oldestDirtySeq == 15, "later updates keep the first one")
        s.beginFlush(a); s.endFlush(a, written: true)
        #expect(!s.isDirty(a) && !s.isCovered(a) && s.dirtyCount == 1, "a written covered row is clean")
        #expect(!s.has(a, RowState.snapshotHeld) && s.dirtySequences.snapshotHeld == 1)
        s.beginFlush(b); s.markUpdated(b, step: 4, seq: 17); s.endFlush(b, written: true)
        #expect(s.isDirty(b) && !s.has(b, RowState.snapshotHeld) && s.oldestDirtySeq == 17,
                "an image written to RocksDB ends what the snapshot held, even when the row changed meanwhile")
        s.cover(b)
        s.uncoverAll(firstDirty: 12, keepingSnapshotHeld: true)
        #expect(s.oldestDirtySeq == 12 && s.dirtySequences.snapshotHeld == 1, "a cover taken back pins from where the log is whole")
        #expect(!s.isCovered(b) && s.has(b, RowState.snapshotHeld), "the previous snapshot still holds b's older updates")
        s.uncoverAll(firstDirty: 12, keepingSnapshotHeld: false)
        #expect(s.dirtySequences.snapshotHeld == 0, "with no snapshot live nothing is snapshot-held")
        // Recovery: a snapshot image installs dirty and covered, but never over a newer cached image.
        let row: [Float] = [7]
        #expect(row.withUnsafeBufferPointer { s.installCovered(key: 3, row: $0.baseAddress!, step: 4, seq: 20, stored: false) })
        let c = s.find(3)!
        #expect(s.isCovered(c) && s.row(c)[0] == 7 && s.seq(c) == 20 && s.unstoredCount == 1, "b was written to RocksDB; c is not stored")
        let older: [Float] = [1]
        _ = older.withUnsafeBufferPointer { s.installCovered(key: 3, row: $0.baseAddress!, step: 1, seq: 19, stored: false) }
        #expect(s.row(c)[0] == 7 && s.seq(c) == 20)
        s.checkInvariants()
    }

    @Test func aSnapshotFileReadsBackWhatWasWrittenAndRefusesDamage() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snap-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try RowSnapshotWriter(directory: dir, id: 7, rowFloats: 3)
        for k in UInt64(0)..<2500 {
            let row: [Float] = [Float(k), Float(k) / 2, -1]
            row.withUnsafeBufferPointer { w.add(key: k, seq: k + 100, step: UInt32(k % 5), stored: k % 2 == 0, row: $0.baseAddress!) }
            if k % 1000 == 999 { try w.endChunk() }
        }
        #expect(RowSnapshotFile.ids(in: dir).isEmpty, "not visible before it is finished")
        try w.finish()
        #expect(RowSnapshotFile.ids(in: dir) == [7])
        var seen = 0
        let read = try RowSnapshotFile.read(dir, id: 7, rowFloats: 3) { key, seq, step, stored, row in
            #expect(key == UInt64(seen) && seq == key + 100 && step == UInt32(key % 5) && stored == (key % 2 == 0))
            #expect(row[0] == Float(key) && row[1] == Float(key) / 2 && row[2] == -1)
            seen += 1
        }
        #expect(seen == 2500)
        let onDisk = try FileManager.default.attributesOfItem(atPath: RowSnapshotFile.path(dir, id: 7))[.size] as? Int
        #expect(read == w.bytes && onDisk == Int(read), "the reader and the writer count the file's bytes")
        #expect(throws: StorageError.self) { try RowSnapshotFile.read(dir, id: 7, rowFloats: 4) { _, _, _, _, _ in } }
        // One flipped byte in a row, then a cut-off file: both refused.
        let path = RowSnapshotFile.path(dir, id: 7)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[5000] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(throws: StorageError.self) { try RowSnapshotFile.read(dir, id: 7, rowFloats: 3) { _, _, _, _, _ in } }
        bytes[5000] ^= 0x40
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: path))
        #expect(throws: StorageError.self) { try RowSnapshotFile.read(dir, id: 7, rowFloats: 3) { _, _, _, _, _ in } }
        RowSnapshotFile.deleteAll(in: dir, except: nil)
        #expect(RowSnapshotFile.ids(in: dir).isEmpty)
    }

    /// A retired snapshot file kept as the spare is written over by the next snapshot, which is cut to its
    /// own length: a shorter snapshot reads back whole and alone, not followed by the old file's bytes.
    @Test func aSnapshotWrittenOverTheSpareReadsBackAloneWhateverItsLength() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snap-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ id: UInt64, rows: UInt64) throws -> RowSnapshotWriter {
            let w = try RowSnapshotWriter(directory: dir, id: id, rowFloats: 3)
            for k in 0..<rows {
                let row: [Float] = [Float(k), Float(id), 1]
                row.withUnsafeBufferPointer { w.add(key: k, seq: id, step: 1, stored: false, row: $0.baseAddress!) }
            }
            try w.finish()
            return w
        }
        func readBack(_ id: UInt64) throws -> Int {
            var n = 0
            try RowSnapshotFile.read(dir, id: id, rowFloats: 3) { key, seq, _, _, row in
                #expect(key == UInt64(n) && seq == id && row[1] == Float(id))
                n += 1
            }
            return n
        }
        #expect(try !write(1, rows: 3000).reused)
        #expect(try !write(2, rows: 500).reused, "no spare yet")
        RowSnapshotFile.deleteAll(in: dir, except: 2, keepingSpare: true)   // 1 becomes the spare
        let third = try write(3, rows: 200)
        #expect(third.reused)
        let size = try FileManager.default.attributesOfItem(atPath: RowSnapshotFile.path(dir, id: 3))[.size] as? Int
        #expect(size == Int(third.bytes), "cut to its own length")
        #expect(try readBack(3) == 200)
        RowSnapshotFile.deleteAll(in: dir, except: 3, keepingSpare: true)   // 2 becomes the spare
        #expect(try write(4, rows: 4000).reused, "a longer snapshot grows the spare")
        #expect(try readBack(4) == 4000)
        #expect(RowSnapshotFile.ids(in: dir) == [3, 4])
        RowSnapshotFile.deleteAll(in: dir, except: 4, keepingSpare: true)
        RowSnapshotFile.deleteSpare(in: dir)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["snapshot-4.rows"])
    }

    /// The spare is the largest complete retired snapshot: a `.tmp` a crashed writer left (listed first or
    /// not, larger or not) is deleted, never kept as the spare.
    @Test func theSpareIsTheLargestCompleteRetiredSnapshotNeverACrashedWritersTemporaryFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snap-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func file(_ name: String, bytes: Int) throws {
            try Data(repeating: UInt8(bytes % 251), count: bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
        }
        try file("snapshot-0.tmp", bytes: 90_000)      // a crashed writer's file, the largest of all
        try file("snapshot-1.rows", bytes: 20_000)
        try file("snapshot-2.rows", bytes: 50_000)
        try file("snapshot-3.tmp", bytes: 10)
        try file("snapshot-4.rows", bytes: 30_000)     // the snapshot that stays
        RowSnapshotFile.deleteAll(in: dir, except: 4, keepingSpare: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["snapshot-4.rows", "snapshot.spare"])
        let spare = try FileManager.default.attributesOfItem(atPath: RowSnapshotFile.sparePath(dir))[.size] as? Int
        #expect(spare == 50_000, "snapshot-2.rows became the spare")
        // With a spare already there, or without keepingSpare, every retired file is deleted.
        try file("snapshot-5.rows", bytes: 60_000)
        RowSnapshotFile.deleteAll(in: dir, except: 4, keepingSpare: true)
        #expect(try FileManager.default.attributesOfItem(atPath: RowSnapshotFile.sparePath(dir))[.size] as? Int == 50_000)
        RowSnapshotFile.deleteSpare(in: dir)
        try file("snapshot-6.rows", bytes: 60_000)
        RowSnapshotFile.deleteAll(in: dir, except: 4)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["snapshot-4.rows"])
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

    /// A split run visits every stripe that has keys exactly once, with its own positions, in ascending
    /// runs of about equal key counts, whatever the number of runs; stripes without keys are not visited.
    @Test(arguments: [1, 2, 3, 5, 8, 12]) func splitRunsVisitEachStripeWithKeysOnceInAscendingRuns(parts: Int) {
        let store = RowStore(rowFloats: 1, capacity: 100_000, stripes: 8)
        var rng = SplitMix64(seed: UInt64(parts))
        // Keys of six of the eight stripes only.
        let keys = (0..<5000).map { _ in rng.next() }.filter { store.stripe(of: $0) % 4 != 1 }
        let plan = keys.withUnsafeBufferPointer { store.plan($0) }
        let visits = Mutex<[(part: Int, stripe: Int, positions: [Int32])]>([])
        store.withStripesSplit(plan, parts: parts) { part, stripe, s, positions in
            _ = stripe.live
            visits.withLock { $0.append((part, s, Array(positions))) }
        }
        let seen = visits.withLock { $0 }.sorted { $0.stripe < $1.stripe }
        #expect(seen.map(\.stripe) == (0..<8).filter { $0 % 4 != 1 })
        for v in seen { #expect(v.positions == Array(plan.positions(of: v.stripe))) }
        // Runs are ascending in the stripes they cover, and every run index is below the runs asked for.
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.part <= $1.part })
        #expect(seen.allSatisfy { $0.part >= 0 && $0.part < max(1, min(parts, 8)) })
        if parts == 2 {
            let first = seen.filter { $0.part == 0 }.reduce(0) { $0 + $1.positions.count }
            #expect(Double(first) > 0.3 * Double(keys.count) && Double(first) < 0.7 * Double(keys.count))
        }
    }
}

@Suite struct UpdateLogTests {
    /// A 10-byte record of `byte`s in two parts (the caller frees `memory`).
    static func record(_ byte: UInt8) -> (record: UpdateLog.Record, memory: UnsafeMutableRawPointer) {
        let m = UnsafeMutableRawPointer.allocate(byteCount: 10, alignment: 8)
        m.initializeMemory(as: UInt8.self, repeating: byte, count: 10)
        return (UpdateLog.Record(parts: [UnsafeRawBufferPointer(start: m, count: 4), UnsafeRawBufferPointer(start: m + 4, count: 6)]), m)
    }

    @Test func groupCommitWritesInOrderAndATornTailIsIgnored() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: true)
        defer { log.close() }   // removes its ring in /dev/shm
        var memory: [UnsafeMutableRawPointer] = []
        for seq in UInt64(1)...3 { let r = Self.record(UInt8(seq)); memory.append(r.memory); log.enqueue(r.record, seq: seq) }
        try log.waitDurable(3)
        #expect(log.durableSequence == 3)
        log.rotate()
        let r4 = Self.record(4); memory.append(r4.memory)
        log.enqueue(r4.record, seq: 4)
        try log.waitDurable(4)
        memory.forEach { $0.deallocate() }
        // Segments are padded with zeros to 4 KiB blocks (direct I/O).
        let seg = dir + "/" + String(format: "seg-%020llu.log", UInt64(4))
        let size = (try FileManager.default.attributesOfItem(atPath: seg)[.size] as? Int) ?? 0
        #expect(size == 4096)
        // A torn record right after the last one (as a power loss could leave).
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: seg)); h.seek(toFileOffset: UInt64(UpdateLog.headerLength + 10))
        h.write(Data([0x32, 0x53, 0x50, 0x45, 99, 0, 0])); h.closeFile()
        var seen: [(UInt64, UInt8)] = []
        let last = try UpdateLog(directory: dir, sync: false).replay(after: 1) { seq, p in seen.append((seq, p[0])) }
        #expect(seen.map(\.0) == [2, 3, 4] && seen.map(\.1) == [2, 3, 4] && last == 4)
        log.deleteSegments(through: 3)
        #expect(log.segments() == [4])
    }

    /// Recycling: covered full segments become spares while they fit under the cap (the rest are deleted),
    /// the next segments are written into them, and replay, follower pages and a reopened log see only the
    /// new records: never the old ones left past them, even where a new record ends exactly at the start of
    /// an old, intact one.
    @Test func recycledSegmentsServeOnlyTheirNewRecords() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 1000-byte payloads: 1024-byte records, eight to a segment of 8 KiB.
        let log = try UpdateLog(directory: dir, sync: true, segmentLimit: 8192, recycleBytes: 2 * 8192)
        defer { log.close() }
        try appendRecordsOfSequenceBytes(log, 1...40)   // segments 1, 9, 17, 25, 33
        #expect(log.segments() == [1, 9, 17, 25, 33])
        #expect(log.segmentsOpened.recycled == 0 && log.segmentsOpened.created == 5)
        log.deleteSegments(through: 24)
        #expect(log.segments() == [25, 33])
        #expect(log.spareBytes == 2 * 8192)   // 1 and 9 kept, 17 over the cap and deleted
        #expect(log.logStart == 24)
        // Segment 41 is spare 1 reused: four new records end at 4096, where the old record 5 begins intact.
        try appendRecordsOfSequenceBytes(log, 41...44)
        #expect(log.segments() == [25, 33, 41])
        #expect(log.segmentsOpened.recycled == 1 && log.spareBytes == 8192)
        let seg41 = dir + "/" + String(format: "seg-%020llu.log", UInt64(41))
        #expect(((try FileManager.default.attributesOfItem(atPath: seg41)[.size] as? Int) ?? 0) == 8192)
        #expect(log.totalBytes == 3 * 8192 - 4096)   // records, not the reused file's old tail
        func replayed(_ l: UpdateLog) throws -> [UInt64] {
            var seen: [UInt64] = []
            try l.replay(after: 24) { seq, p in
                #expect(p.count == 1000 && p.allSatisfy { $0 == UInt8(truncatingIfNeeded: seq) })
                seen.append(seq)
            }
            return seen
        }
        #expect(try replayed(log) == Array(25...44))
        #expect(log.read(after: 40, maxBytes: 1 << 20)?.sequences == [41, 42, 43, 44])
        #expect(log.read(after: 24, maxBytes: 1 << 20)?.sequences == Array(25...44))
        // As after kill -9: a second log on the directory replays the same records.
        #expect(try replayed(UpdateLog(directory: dir, sync: false)) == Array(25...44))
    }

    /// A segment a checkpoint closed before it was full becomes a spare as well (deleting it would send its
    /// blocks to a `discard` file system's device in the log's way), and new segments take the largest spare
    /// first; replay sees only the new records.
    @Test func segmentsClosedBeforeTheyFilledAreRecycledLargestFirst() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: false, segmentLimit: 8192, recycleBytes: 4 * 8192)
        defer { log.close() }
        try appendRecordsOfSequenceBytes(log, 1...2)    // segment 1: two records, closed by a checkpoint's rotation (4 KiB)
        log.rotate()
        try appendRecordsOfSequenceBytes(log, 3...10)   // segment 3: full (8 KiB)
        try appendRecordsOfSequenceBytes(log, 11...11)  // segment 11
        log.deleteSegments(through: 10)
        #expect(log.segments() == [11])
        #expect(log.spareBytes == 4096 + 8192, "both retired segments kept, the short one too")
        log.rotate()
        try appendRecordsOfSequenceBytes(log, 12...12)
        #expect(log.segmentsOpened.recycled == 1 && log.spareBytes == 4096, "the full spare was taken first")
        log.rotate()
        try appendRecordsOfSequenceBytes(log, 13...13)
        #expect(log.segmentsOpened.recycled == 2 && log.spareBytes == 0)
        var seen: [UInt64] = []
        try log.replay(after: 10) { seq, p in
            #expect(p.count == 1000 && p.allSatisfy { $0 == UInt8(truncatingIfNeeded: seq) })
            seen.append(seq)
        }
        #expect(seen == [11, 12, 13])
    }

    /// A follower page whose segment is retired and reused (recycled) between the page opening the file and
    /// reading it ends there: the file then holds newer records, which must not be served as the segment's.
    /// Two guards see to it (records past the durable point the page started from end it, and so does a
    /// chunk read after the segment lost its name); the test fails only with both removed. The next page
    /// reports the trimmed history.
    @Test func aPageEndsWhereItsSegmentWasRecycledUnderIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: true, segmentLimit: 8192, recycleBytes: 2 * 8192)
        defer { log.close() }
        try appendRecordsOfSequenceBytes(log, 1...20)   // segments 1 (1-8), 9 (9-16), 17 (open)
        #expect(log.segments() == [1, 9, 17])
        var reused = false
        log.beforeChunkRead = { first in
            guard first == 1, !reused else { return }
            reused = true
            // A checkpoint retires segments 1 and 9 (spares); records 21-28 fill 17, and 25 opens on spare 1.
            log.deleteSegments(through: 16)
            try? appendRecordsOfSequenceBytes(log, 21...28)
        }
        let page = try #require(log.read(after: 0, maxBytes: 1 << 20))
        #expect(reused && log.segmentsOpened.recycled == 1)
        #expect(page.sequences.isEmpty, "records 25-28 were served as segment 1's: \(page.sequences)")
        log.beforeChunkRead = nil
        #expect(log.read(after: 0, maxBytes: 1 << 20) == nil)
        #expect(log.read(after: 16, maxBytes: 1 << 20)?.sequences == Array(17...28))
    }

    /// Records of every format this log has written are read back (format 1 from earlier versions, 2 now),
    /// by replay and follower pages; a record whose check fails ends its segment there, and the records
    /// numbered after it (in the next segment, as after a restart) are read next.
    @Test func recordsOfEveryFormatAreReadAndABadCheckEndsTheLog() throws {
        func segment(corruptLast: Bool) throws -> String {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var file = [UInt8]()
            func append(magic: UInt32, seq: UInt64, check: ([UInt8]) -> UInt64) {
                let payload = (0..<100).map { UInt8(truncatingIfNeeded: Int(seq) * 31 + $0) }
                var header = [UInt8](repeating: 0, count: 24)
                header.withUnsafeMutableBytes { h in
                    h.storeBytes(of: magic.littleEndian, as: UInt32.self)
                    h.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 4, as: UInt32.self)
                    h.storeBytes(of: seq.littleEndian, toByteOffset: 8, as: UInt64.self)
                    h.storeBytes(of: check(payload).littleEndian, toByteOffset: 16, as: UInt64.self)
                }
                file += header + payload
            }
            func format2(_ seq: UInt64) -> ([UInt8]) -> UInt64 {
                { p in
                    var le = seq.littleEndian
                    return p.withUnsafeBytes { XXH64($0.baseAddress, $0.count, 0) } ^ withUnsafeBytes(of: &le) { XXH64($0.baseAddress, 8, 0) }
                }
            }
            append(magic: 0x4550_5331, seq: 1) { p in p.withUnsafeBytes { XXH64($0.baseAddress, $0.count, 1) } }
            append(magic: 0x4550_5332, seq: 2, check: format2(2))
            append(magic: 0x4550_5332, seq: 3, check: format2(3))
            if corruptLast { file[file.count - 1] ^= 1 }
            file += [UInt8](repeating: 0, count: 4096 - file.count)
            FileManager.default.createFile(atPath: dir + "/" + String(format: "seg-%020llu.log", UInt64(1)), contents: Data(file))
            return dir
        }
        for corrupt in [false, true] {
            let dir = try segment(corruptLast: corrupt)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let log = try UpdateLog(directory: dir, sync: true)
            defer { log.close() }
            let expected: [UInt64] = corrupt ? [1, 2] : [1, 2, 3]
            var seen: [UInt64] = []
            try log.replay(after: 0) { seq, p in
                #expect(Array(p) == (0..<100).map { UInt8(truncatingIfNeeded: Int(seq) * 31 + $0) })
                seen.append(seq)
            }
            #expect(seen == expected)
            log.resume(after: seen.last ?? 0)   // as a table does after its replay
            #expect(log.read(after: 0, maxBytes: 1 << 20)?.sequences == expected)
            // The next record (numbered after the last good one, as after a restart) goes to a new segment,
            // and a follower at the last good record reads it next.
            let next = expected[expected.count - 1] + 1
            let payload = [UInt8](repeating: 9, count: 50)
            try payload.withUnsafeBytes { b in
                log.enqueue(UpdateLog.Record(parts: [b]), seq: next)
                try log.waitDurable(next)
            }
            #expect(log.read(after: expected[expected.count - 1], maxBytes: 1 << 20)?.payloads == [payload])
            var all: [UInt64] = []
            try log.replay(after: 0) { seq, _ in all.append(seq) }
            #expect(all == expected + [next])
        }
    }

    /// Follower pages: records after a sequence, in order, only durable ones, at least one per page, across
    /// segments, resuming mid-segment; trimmed history is reported (nil) with the log's start.
    @Test func followerPagesReadDurableRecordsInOrderAndReportTrimmedHistory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: false)
        defer { log.close() }   // removes its ring in /dev/shm
        var memory: [UnsafeMutableRawPointer] = []
        defer { memory.forEach { $0.deallocate() } }
        for seq in UInt64(1)...10 {
            let r = Self.record(UInt8(seq)); memory.append(r.memory); log.enqueue(r.record, seq: seq)
            if seq == 4 || seq == 7 { try log.waitDurable(seq); log.rotate() }   // segments 1-4, 5-7, 8-10
        }
        try log.waitDurable(10)
        // Pages of at most ~25 bytes (10 per record): 3 records each, resuming where the last ended.
        var after: UInt64 = 2, seen: [UInt64] = []
        while true {
            let page = try #require(log.read(after: after, maxBytes: 25))
            #expect(page.durableSequence == 10 && page.logStart == 0)
            guard let last = page.sequences.last else { break }
            #expect(page.sequences.count <= 3 && page.payloads.allSatisfy { $0.count == 10 })
            #expect(zip(page.sequences, page.payloads).allSatisfy { UInt8($0.0) == $0.1[0] })
            seen += page.sequences; after = last
        }
        #expect(seen == Array(3...10))
        // One record even when it alone exceeds max_bytes; nothing after the durable sequence.
        #expect(log.read(after: 0, maxBytes: 1)?.sequences == [1])
        #expect(log.read(after: 10, maxBytes: 100)?.sequences == [])
        // A checkpoint through 6 trims segment 1-4 only: after 3 is gone, after 4 still readable.
        log.deleteSegments(through: 6)
        #expect(log.read(after: 3, maxBytes: 100) == nil)
        let page = try #require(log.read(after: 4, maxBytes: 1000))
        #expect(page.logStart == 4 && page.sequences == Array(5...10))
        #expect(log.read(after: UInt64.max, maxBytes: 1)?.logStart == 4)
        // A record larger than a read chunk (3 MiB) comes whole; the page after it starts behind it.
        let big = UnsafeMutableRawPointer.allocate(byteCount: 3 << 20, alignment: 8)
        big.initializeMemory(as: UInt8.self, repeating: 0xAB, count: 3 << 20)
        memory.append(big)
        log.enqueue(UpdateLog.Record(parts: [UnsafeRawBufferPointer(start: big, count: 3 << 20)]), seq: 11)
        let r12 = Self.record(12); memory.append(r12.memory); log.enqueue(r12.record, seq: 12)
        try log.waitDurable(12)
        let bigPage = try #require(log.read(after: 10, maxBytes: 1))
        #expect(bigPage.sequences == [11] && bigPage.payloads[0].count == 3 << 20 && bigPage.payloads[0].allSatisfy { $0 == 0xAB })
        #expect(log.read(after: 11, maxBytes: 1)?.sequences == [12])
    }

    @Test func concurrentWaitersShareWrites() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: true)
        defer { log.close() }   // removes its ring in /dev/shm
        let next = LockedBox<UInt64>(0)
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<8 {
                g.addTask {
                    for _ in 0..<50 {
                        let r = Self.record(7)
                        let seq: UInt64 = next.withLock { n in n += 1; log.enqueue(r.record, seq: n); return n }
                        try? log.waitDurable(seq)
                        r.memory.deallocate()
                    }
                }
            }
        }
        var n = 0, previous: UInt64 = 0
        try UpdateLog(directory: dir, sync: false).replay(after: 0) { seq, _ in #expect(seq == previous + 1); previous = seq; n += 1 }
        #expect(n == 400)
    }

    /// Each waiter has its own wakeup: a push waiting for its record returns once that record is durable,
    /// not before (whatever else becomes durable), and not later than it; a failed log wakes every waiter
    /// with the error.
    @Test func aWaiterReturnsOnceItsOwnRecordIsDurableAndAFailureWakesEveryWaiter() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // `sync`: a record is durable once the disk thread wrote it, which `holdingDiskWrites` holds back.
        let log = try UpdateLog(directory: dir, sync: true)
        defer { log.close() }
        let records = (1...8).map { _ in Self.record(5) }
        defer { for r in records { r.memory.deallocate() } }
        let outcomes = LockedBox<[UInt64: String]>([:])
        let finished = DispatchGroup()
        func wait(for seq: UInt64) {
            finished.enter()
            Thread {
                let outcome: String
                do { try log.waitDurable(seq); outcome = "durable" } catch { outcome = "failed" }
                outcomes.withLock { $0[seq] = outcome }
                finished.leave()
            }.start()
        }
        func settle() { Thread.sleep(forTimeInterval: 0.3) }

        log.holdingDiskWrites = true
        for seq in 1...3 { log.enqueue(records[seq - 1].record, seq: UInt64(seq)) }
        for seq in 1...6 { wait(for: UInt64(seq)) }
        settle()
        #expect(outcomes.withLock { $0 }.isEmpty, "nothing is durable while the disk writes are held")
        log.holdingDiskWrites = false
        settle()
        #expect(outcomes.withLock { $0 } == [1: "durable", 2: "durable", 3: "durable"], "4-6 wait for records not yet queued")
        for seq in 4...6 { log.enqueue(records[seq - 1].record, seq: UInt64(seq)) }
        settle()
        #expect(outcomes.withLock { $0.count } == 6 && log.durableSequence == 6)

        log.holdingDiskWrites = true
        for seq in 7...8 { log.enqueue(records[seq - 1].record, seq: UInt64(seq)); wait(for: UInt64(seq)) }
        settle()
        #expect(outcomes.withLock { $0.count } == 6)
        log.stopAsIfKilled()
        #expect(finished.wait(timeout: .now() + 10) == .success, "a failure wakes every waiter")
        #expect(outcomes.withLock { $0 }.filter { $0.key >= 7 }.values.allSatisfy { $0 == "failed" })
        #expect(throws: (any Error).self) { try log.waitDurable(8) }
    }
}

/// The ring in /dev/shm: an acknowledged record that was only in the ring when its process died is
/// written to its segment by the next open of the directory; a ring whose directory is gone is removed.
@Suite struct UpdateLogRingTests {
    @Test func recordsOnlyInTheRingSurviveTheProcessAndReachTheirSegmentOnTheNextOpen() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A 1 MiB ring, so a 5 MiB record grows it (to 10 MiB, room for records 3-5).
        let big = (0..<(5 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let payloads: [[UInt8]] = [[1, 2, 3], Array(repeating: 7, count: 5000), Array(big.prefix(3 << 20))]
        var ringFile: String? = nil
        do {
            let log = try UpdateLog(directory: dir, sync: false, ringBytes: 1 << 20)
            try #require(log.acknowledgesFromRing, "needs a writable /dev/shm")
            ringFile = log.ringPath
            #expect(ringFile.map { FileManager.default.fileExists(atPath: $0) } == true)
            // Records 1-2 reach the disk (the 5 MiB one grows the ring); 3-5 are acknowledged from the ring alone.
            for (i, p) in [payloads[0], big].enumerated() {
                p.withUnsafeBytes { log.enqueue(UpdateLog.Record(parts: [$0]), seq: UInt64(i + 1)) ; _ = try? log.waitDurable(UInt64(i + 1)) }
            }
            #expect(log.writtenSequence == 2 || log.durableSequence == 2)
            log.rotate()
            #expect(log.writtenSequence == 2)
            log.holdingDiskWrites = true
            for (i, p) in payloads.enumerated() {
                try p.withUnsafeBytes { b in log.enqueue(UpdateLog.Record(parts: [b]), seq: UInt64(i + 3)); try log.waitDurable(UInt64(i + 3)) }
            }
            #expect(log.durableSequence == 5 && log.writtenSequence == 2)
            log.stopAsIfKilled()
            log.close()
        }
        #expect(ringFile.map { FileManager.default.fileExists(atPath: $0) } == true, "a killed log's ring stays")
        var seen: [(UInt64, [UInt8])] = []
        let reopened = try UpdateLog(directory: dir, sync: false)
        #expect(reopened.recoveredFromRing > 3 << 20)
        let last = try reopened.replay(after: 0) { seq, p in seen.append((seq, Array(p))) }
        #expect(last == 5 && seen.map(\.0) == [1, 2, 3, 4, 5])
        #expect(seen.map(\.1) == [payloads[0], big] + payloads)
        reopened.resume(after: last)
        reopened.close()
        #expect(ringFile.map { FileManager.default.fileExists(atPath: $0) } == false, "a closed log removes its ring")
        // A killed log whose directory was then removed leaves an orphan, which the next open anywhere removes.
        let gone = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        do {
            let log = try UpdateLog(directory: gone, sync: false)
            ringFile = log.ringPath
            log.holdingDiskWrites = true
            try payloads[0].withUnsafeBytes { b in log.enqueue(UpdateLog.Record(parts: [b]), seq: 1); try log.waitDurable(1) }
            log.stopAsIfKilled()
            log.close()
        }
        try FileManager.default.removeItem(atPath: gone)
        #expect(ringFile.map { FileManager.default.fileExists(atPath: $0) } == true)
        let other = try UpdateLog(directory: dir, sync: false)
        #expect(ringFile.map { FileManager.default.fileExists(atPath: $0) } == false, "an orphaned ring is removed")
        other.close()
    }

    @Test func syncLogsAcknowledgeOnlyWrittenRecordsAndASecondOpenDoesNotTakeTheRing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: true)
        #expect(!log.acknowledgesFromRing)
        let second = try UpdateLog(directory: dir, sync: false)
        #expect(second.ringPath == nil && !second.acknowledgesFromRing, "the ring is locked by the first open")
        try [UInt8](repeating: 9, count: 100).withUnsafeBytes { b in log.enqueue(UpdateLog.Record(parts: [b]), seq: 1); try log.waitDurable(1) }
        #expect(log.writtenSequence == 1)
        second.close()
        log.close()
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

@Suite struct UpdateLogBlockTests {
    /// Records of sizes around the 4 KiB block boundaries, written in groups of varying size with rotations
    /// in between, replay byte for byte (the staged partial block is rewritten by each group).
    /// Replay reads segments whole with direct I/O in 8 MiB parts: files of any size, aligned or not (a
    /// segment cut short, or written where direct I/O was refused), come back byte for byte.
    @Test func segmentsOfAnySizeAreReadWhole() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("seg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 11)
        for size in [0, 1, 4095, 4096, 4097, (8 << 20) + 5000] {
            let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let file = dir + "/\(size).log"
            #expect(FileManager.default.createFile(atPath: file, contents: Data(bytes)))
            let read = try #require(UpdateLog.readSegment(file))
            defer { read.deallocate() }
            #expect(read.count == size && Array(UnsafeRawBufferPointer(read)) == bytes, "size \(size)")
        }
        #expect(UpdateLog.readSegment(dir + "/absent.log") == nil)
    }

    @Test func recordsOfManySizesReplayExactly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try UpdateLog(directory: dir, sync: false, segmentLimit: 64 << 10)
        var rng = SplitMix64(seed: 7)
        var expected: [[UInt8]] = []
        var seq: UInt64 = 0
        for group in 0..<40 {
            var held: [[UInt8]] = []
            var records: [(UpdateLog.Record, UInt64)] = []
            for _ in 0..<(1 + group % 5) {
                let size = [1, 4095 - 24, 4096 - 24, 4097, 9000, Int(rng.next() % 20000) + 1][Int(rng.next() % 6)]
                let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                held.append(bytes)
            }
            var memory: [UnsafeMutableRawPointer] = []
            for b in held {
                seq += 1
                let m = UnsafeMutableRawPointer.allocate(byteCount: b.count, alignment: 1)
                m.copyMemory(from: b, byteCount: b.count)
                memory.append(m)
                let half = b.count / 2
                records.append((UpdateLog.Record(parts: [UnsafeRawBufferPointer(start: m, count: half), UnsafeRawBufferPointer(start: m + half, count: b.count - half)]), seq))
            }
            for (r, s) in records { log.enqueue(r, seq: s) }
            try log.waitDurable(seq)
            memory.forEach { $0.deallocate() }
            expected += held
            if group % 7 == 6 { log.rotate() }
        }
        log.close()
        var seen: [[UInt8]] = []
        let last = try UpdateLog(directory: dir, sync: false).replay(after: 0) { _, p in seen.append(Array(p)) }
        #expect(last == seq && seen.count == expected.count && seen == expected)
    }
}

@Suite struct HotPathPrimitiveTests {
    @Test func inlineXXH64MatchesLibxxhash() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<10_000 {
            let v = rng.next(), seed = rng.next() % 3 == 0 ? 0 : rng.next()
            #expect(EmbedHash.xxh64(v, seed: seed) == EmbedHash.xxh64Reference(v, seed: seed))
        }
    }

    @Test func nonFiniteFloatsAreFoundAtEveryPosition() {
        for n in [1, 15, 16, 17, 64, 100] {
            #expect([Float](repeating: 1.5, count: n).withUnsafeBytes { GradientCheck.firstNonFinite($0) } == nil)
            for bad in [Float.nan, .infinity, -.infinity] {
                for at in [0, n / 2, n - 1] {
                    var v = [Float](repeating: -2, count: n)
                    v[at] = bad
                    if at + 1 < n { v[n - 1] = .nan }
                    #expect(v.withUnsafeBytes { GradientCheck.firstNonFinite($0) } == at)
                }
            }
        }
        // Largest finite values and subnormals are finite.
        #expect([Float.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude].withUnsafeBytes { GradientCheck.firstNonFinite($0) } == nil)
    }
}

/// Appends records `seqs` to `log`, each a 1000-byte payload of its sequence's low byte (a 1024-byte record),
/// waiting for each to be durable.
func appendRecordsOfSequenceBytes(_ log: UpdateLog, _ seqs: ClosedRange<UInt64>) throws {
    let payload = UnsafeMutableRawPointer.allocate(byteCount: 1000, alignment: 8)
    defer { payload.deallocate() }
    for seq in seqs {
        payload.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: seq), count: 1000)
        log.enqueue(UpdateLog.Record(parts: [UnsafeRawBufferPointer(start: payload, count: 1000)]), seq: seq)
        try log.waitDurable(seq)
    }
}
