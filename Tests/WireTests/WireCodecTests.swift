import Testing
@testable import EmbedPSWire

private func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex { let j = s.index(i, offsetBy: 2); out.append(UInt8(s[i..<j], radix: 16)!); i = j }
    return out
}

/// The generated message layer (Protos/swiftgen.py) against Google's protobuf, and the hand-written hot-path
/// codec against the generated one.
@Suite struct WireCodecTests {
    // Golden bytes written by Google's protobuf (python3-protobuf 3.21, from Protos/embedps.proto); see the
    // commit that added them for the script. Our decoder must read them, and our canonical encoder must
    // write the same bytes back (both encoders order fields by number and pack repeated numbers).
    static let goldenSpec = "0a0a676f6c64656e2e742d311040180220c3843d2807320c080215cdcc4c3d1dcdcccc3d3a17080325000000bf2d0000803e30858080808080808080015210080312020a141d0ad7233c25000080bf"
    static let goldenStatus = "08021009188010220473796e632a160a050a01611004102a6a0b080311000000000000044039000000000000e83f59000000000000f83f68808080808020"
    static let goldenDetail = "080d12057573657273180c20ff1f280331ffffffffffffffff"
    static let goldenSlotRows = "0a01741210010000000000000000000000000100001a0200011a002001"
    static let goldenAlpha = "0a0164120c0000c03f000000c00000807f"

    @Test func goldenBytesFromGoogleProtobufDecodeAndReencodeIdentically() throws {
        let spec = try Wire.TableSpec(decoding: hex(Self.goldenSpec))
        #expect(spec.name == "golden.t-1" && spec.dim == 64 && spec.hashMode == .fixedBudget && spec.rowBudget == 1_000_003 && spec.hashSeed == 7)
        #expect(spec.optimizer?.kind == .adagrad && spec.optimizer?.learningRate == 0.05 && spec.optimizer?.initialAccumulator == 0.1)
        #expect(spec.initializer?.kind == .normal && spec.initializer?.mean == -0.5 && spec.initializer?.stddev == 0.25 && spec.initializer?.seed == (1 << 63) + 5)
        #expect(spec.dnis?.blocks == 3 && spec.dnis?.blockSizes == [10, 20] && spec.dnis?.alphaL1 == -1 && spec.semantic == nil)
        #expect(spec.encoded() == hex(Self.goldenSpec))

        let status = try Wire.ShardStatusResponse(decoding: hex(Self.goldenStatus))
        #expect(status.shardIndex == 2 && status.shardMapVersion == 9 && status.ownedSlots == 2048 && status.durability == "sync")
        #expect(status.tables.count == 1 && status.tables[0].rows == 42 && status.tables[0].spec?.name == "a" && status.tables[0].semantic?.piecesPerItem == 2.5)
        #expect(status.cacheHitRate == 0.75 && status.latencyP99Ms == 1.5 && status.bytesOnDisk == 1 << 40)
        #expect(status.encoded() == hex(Self.goldenStatus))

        let detail = try Wire.ErrorDetail(decoding: hex(Self.goldenDetail))
        #expect(detail == Wire.ErrorDetail(reason: .wrongShard, table: "users", shardMapVersion: 12, slot: 4095, ownerShard: 3, id: .max))
        #expect(detail.encoded() == hex(Self.goldenDetail))

        let rows = try Wire.SlotRows(decoding: hex(Self.goldenSlotRows))
        #expect(rows == Wire.SlotRows(table: "t", keys: [1, 1 << 40], rows: [[0, 1], []], done: true))
        #expect(rows.encoded() == hex(Self.goldenSlotRows))

        let alpha = try Wire.DnisAlphaRequest(decoding: hex(Self.goldenAlpha))
        #expect(alpha.table == "d" && alpha.gradient == [1.5, -2, .infinity])
        #expect(alpha.encoded() == hex(Self.goldenAlpha))
    }

    /// Each of these is refused by the strict decoder (and by the hot-path decoder where it applies).
    static let malformed: [(String, [UInt8])] = [
        ("garbage from the hardening issue", [0x0f, 0xff, 0xff]),
        ("field number 0", [0x02, 0x00]),
        ("wire type 6", [0x0e, 0x00]),
        ("wire type 7", [0x0f, 0x00]),
        ("start group", [0x0b, 0x0c]),
        ("truncated varint", [0x08, 0x80]),
        ("11-byte varint", [0x08] + [UInt8](repeating: 0xff, count: 10) + [0x01]),
        ("length past end", [0x0a, 0x09, 0x01]),
        ("string not UTF-8", [0x0a, 0x02, 0xc3, 0x28]),
        ("string field as varint", [0x08, 0x01]),
        ("truncated fixed64", [0x11, 0x01, 0x02]),
        ("packed fixed64 not a multiple of 8", [0x12, 0x03, 1, 2, 3]),
    ]

    @Test func malformedBytesAreRefusedByEveryDecoder() {
        for (what, bytes) in Self.malformed {
            #expect(throws: WireError.self, "\(what)") { try Wire.PullRequest(decoding: bytes) }
            #expect(throws: WireError.self, "\(what)") { try bytes.withUnsafeBytes { try RowMessageDecoder.withPullRequest($0) { _ in () } } }
        }
        // Empty messages parse strictly too.
        #expect(throws: WireError.self) { try Wire.ListTablesRequest(decoding: [0x0f, 0xff, 0xff]) }
        #expect(throws: WireError.self) { try Wire.ShardStatusRequest(decoding: [0x08]) }
        #expect(throws: WireError.self) { try Wire.CreateTableRequest(decoding: [0x0a, 0x09, 0x01]) }
        #expect(throws: WireError.self) { try [UInt8]([0x12, 0x80]).withUnsafeBytes { try RowMessageDecoder.pullResponse($0) } }
        #expect(throws: WireError.self) {
            try [UInt8]([0x08, 0x03, 0x12, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]).withUnsafeBytes { try RowMessageDecoder.pullResponse($0) }   // dim 3, 8 bytes
        }
    }

    @Test func nestingDeeperThanTheLimitIsRefused() {
        // The schema has no recursive message, so this checks the reader's own limit with a test message
        // that nests itself.
        struct Nest: WireMessage, Codable {
            static let protoName = "test.Nest"
            var child: [Nest] = []
            mutating func decodeField(number: UInt32, wireType: ProtoWireType, from reader: inout ProtoReader) throws(WireError) -> Bool {
                guard number == 1 else { return false }
                try reader.readRepeatedMessage(&child, wireType, field: "Nest.child")
                return true
            }
            func encode(to writer: inout ProtoWriter) { writer.writeRepeatedMessage(1, child) }
        }
        var deep: [UInt8] = []
        for _ in 0..<(ProtoReader.maxDepth + 1) { deep = [0x0a, UInt8(deep.count)] + deep }
        #expect(throws: WireError.self) { try Nest(decoding: deep) }
        var ok: [UInt8] = []
        for _ in 0..<ProtoReader.maxDepth { ok = [0x0a, UInt8(ok.count)] + ok }
        #expect(throws: Never.self) { try Nest(decoding: ok) }
    }

    @Test func namesKeepEveryByteSoValidationSeesNULs() throws {
        // "t\0junk": a C-string decoder would cut it at the NUL; ours keeps all 6 bytes.
        let bytes: [UInt8] = [0x0a, 0x06, 0x74, 0x00, 0x6a, 0x75, 0x6e, 0x6b]
        #expect(try Wire.PullRequest(decoding: bytes).table.utf8.count == 6)
        try bytes.withUnsafeBytes { raw in try RowMessageDecoder.withPullRequest(raw) { #expect($0.table == "t\0junk") } }
    }

    @Test func unknownFieldsAndUnpackedRepeatsAreAccepted() throws {
        // field 1 "t", an unknown varint field 9, an unknown length-delimited field 10, then ids as two
        // unpacked fixed64 fields and one packed run.
        var bytes: [UInt8] = [0x0a, 0x01, 0x74, 0x48, 0x05, 0x52, 0x02, 0xaa, 0xbb]
        for id in [UInt64(7), 9] { bytes.append(0x11); withUnsafeBytes(of: id.littleEndian) { bytes += $0 } }
        bytes += [0x12, 0x08]; withUnsafeBytes(of: UInt64(11).littleEndian) { bytes += $0 }
        try bytes.withUnsafeBytes { raw in try RowMessageDecoder.withPullRequest(raw) { #expect(Array($0.ids) == [7, 9, 11]) } }
        #expect(try Wire.PullRequest(decoding: bytes) == Wire.PullRequest(table: "t", ids: [7, 9, 11]))
    }

    @Test func hotPathCodecAgreesWithTheGeneratedOneOnRandomMessages() throws {
        var seed: UInt64 = 0x5eed
        func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 11 }
        for _ in 0..<200 {
            let count = Int(next() % 50), dim = Int(next() % 5) + 1
            let ids = (0..<count).map { _ in next() << 11 | next() & 0x7ff }
            let alphabet = Array("abcxyz_.-09")
            let table = String((0..<Int(next() % 12 + 1)).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] })
            let grads = (0..<(count * dim)).map { _ in Float(Int64(next() % 2001) - 1000) / 8 }
            let size = RowMessageEncoder.pushRequestSize(table: table, count: count, dim: dim)
            var bytes = [UInt8](repeating: 0, count: size)
            bytes.withUnsafeMutableBytes { buf in
                RowMessageEncoder.writePushRequest(into: buf, table: table, count: count, dim: dim, ids: { ids[$0] },
                                                   row: { i, d in for c in 0..<dim { d[c] = grads[i * dim + c] } })
            }
            let generated = try Wire.PushRequest(decoding: bytes)
            #expect(generated.table == table && generated.ids == ids)
            // The head alone, followed by the rows as they lie, is the same message.
            var head = [UInt8](repeating: 0, count: size - count * dim * 4)
            head.withUnsafeMutableBytes { buf in
                RowMessageEncoder.writePushRequestHead(into: buf, table: table, count: count, dim: dim, ids: { ids[$0] })
            }
            #expect(head + grads.withUnsafeBytes { Array($0) } == bytes)
            #expect(generated.gradients == grads.withUnsafeBytes { Array($0) })
            #expect(generated.encoded() == bytes)
            try bytes.withUnsafeBytes { raw in
                try RowMessageDecoder.withPushRequest(raw) { v in
                    #expect(v.table == table && Array(v.ids) == ids && Array(v.gradientBytes) == generated.gradients)
                }
            }
            let pull = Wire.PullResponse(dim: UInt32(dim), values: generated.gradients)
            let (rdim, values) = try pull.encoded().withUnsafeBytes { b in
                let r = try RowMessageDecoder.pullResponse(b)
                return (r.dim, Array(r.values))
            }
            #expect(rdim == (count == 0 ? dim : dim) && values == generated.gradients)
        }
    }

    /// The in-place layout of a PullResponse (what the client copies rows by, straight from the received
    /// slices) never disagrees with the strict decoder: on our encoder's output it is found, and on mutated
    /// messages (bytes changed, cut, appended, fields reordered, non-minimal varints) it is either nil or
    /// exactly what the strict decoder reads.
    @Test func pullResponseLayoutAgreesWithTheStrictDecoder() throws {
        var seed: UInt64 = 0x1a7
        func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 11 }
        func layout(_ b: [UInt8]) -> (dim: Int, valuesOffset: Int)? {
            b.withUnsafeBytes { RowMessageDecoder.pullResponseLayout(prefix: UnsafeRawBufferPointer(rebasing: $0[0..<min(16, b.count)]), total: b.count) }
        }
        func strict(_ b: [UInt8]) -> (dim: Int, values: [UInt8])? {
            try? b.withUnsafeBytes { r in let d = try RowMessageDecoder.pullResponse(r); return (d.dim, Array(d.values)) }
        }
        var found = 0, agreed = 0
        for round in 0..<3000 {
            let dim = [1, 3, 64, 127, 128, 300][Int(next() % 6)], count = Int(next() % 12)
            var bytes = Wire.PullResponse(dim: UInt32(dim), values: (0..<(count * dim * 4)).map { _ in UInt8(truncatingIfNeeded: next()) }).encoded()
            if round % 4 == 0 {
                #expect(layout(bytes) != nil || count == 0, "dim \(dim) count \(count)")
            } else {
                switch next() % 6 {
                case 0: if !bytes.isEmpty { bytes[Int(next() % UInt64(min(bytes.count, 12)))] = UInt8(truncatingIfNeeded: next()) }
                case 1: bytes.removeLast(Int(next() % UInt64(min(bytes.count, 5) + 1)))
                case 2: bytes += [0x18, UInt8(next() % 128)]  // an unknown field after the values
                case 3: if let v = bytes.firstIndex(of: 0x12), bytes.first == 0x08 { bytes = Array(bytes[v...]) + Array(bytes[..<v]) }  // values first
                case 4: if bytes.count > 2, bytes[0] == 0x08, bytes[1] < 0x80 { bytes.replaceSubrange(1...1, with: [bytes[1] | 0x80, 0x00]) }  // non-minimal dim
                default: bytes.insert(contentsOf: [0x08, UInt8(next() % 100 + 1)], at: 0)  // dim twice
                }
            }
            guard let l = layout(bytes) else { continue }
            found += 1
            let s = strict(bytes)
            #expect(s != nil && s!.dim == l.dim && s!.values == Array(bytes[l.valuesOffset...]), "round \(round): \(bytes.prefix(16))")
            if s != nil { agreed += 1 }
        }
        #expect(found > 600 && agreed == found)
    }

    /// The push rows' offset (a hint for aligning them) is found for what clients send and, whenever it is
    /// found for a message the decoder accepts, is where the decoder's rows start; it never reads past the
    /// message.
    @Test func pushRowsOffsetAgreesWithTheDecoder() throws {
        var seed: UInt64 = 0x5eed
        func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 11 }
        func offset(_ b: [UInt8]) -> Int? {
            var at = 0
            return RowMessageDecoder.pushRowsOffset(total: b.count) { n, into in
                guard n >= 0, n <= b.count - at else { return false }
                if let into, n > 0 { b.withUnsafeBytes { into.copyMemory(from: $0.baseAddress! + at, byteCount: n) } }
                at += n
                return true
            }
        }
        func decoded(_ b: [UInt8]) -> Int?? {
            b.withUnsafeBytes { r in
                try? RowMessageDecoder.withPushRequest(r) { req -> Int? in
                    req.gradientBytes.count == 0 ? nil : req.gradientBytes.baseAddress! - r.baseAddress!
                }
            }
        }
        var found = 0
        for round in 0..<2000 {
            let name = String(repeating: "t", count: Int(next() % 200)), count = Int(next() % 9), dim = Int(next() % 5) + 1
            var bytes = Wire.PushRequest(table: name, ids: (0..<count).map { _ in next() },
                                         gradients: (0..<(count * dim * 4)).map { _ in UInt8(truncatingIfNeeded: next()) }).encoded()
            if round % 3 != 0 {
                switch next() % 5 {
                case 0: if !bytes.isEmpty { bytes[Int(next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: next()) }
                case 1: bytes.removeLast(Int(next() % UInt64(min(bytes.count, 5) + 1)))
                case 2: bytes += [0x20, UInt8(next() % 128)]   // an unknown field after the rows
                case 3: bytes += [0x1A, 0x04, 1, 2, 3, 4]        // the rows twice (the last counts)
                default: bytes = [0x0A, 0x01, 0x78] + bytes      // the table twice
                }
            } else if count > 0 {
                #expect(offset(bytes) != nil, "round \(round)")
            }
            // A message the decoder refuses is refused whatever the hint said.
            guard let o = offset(bytes), let d = decoded(bytes) else { continue }
            found += 1
            #expect(d == o, "round \(round): offset \(o), decoder \(String(describing: d))")
        }
        #expect(found > 500)
    }

    @Test func everyControlMessageRoundTrips() throws {
        var spec = Wire.TableSpec(name: "t", dim: 16, hashMode: .fixedBudget, rowBudget: 1000)
        spec.optimizer = Wire.OptimizerConfig(kind: .adagrad, learningRate: 0.05)
        spec.initializer = Wire.InitializerConfig(kind: .uniform, high: 1)
        spec.semantic = Wire.SemanticConfig(tokenizer: .sentencepiece, levels: 3, codebookSize: 256, budget: 9, sentencepieceModel: [0, 1, 2, 255])
        let req = Wire.CreateTableRequest(spec: spec)
        #expect(try Wire.CreateTableRequest(decoding: req.encoded()) == req)
        var status = Wire.ShardStatusResponse(shardIndex: 2, durability: "sync", cacheHitRate: 0.75)
        status.tables = [Wire.TableStats(spec: spec, rows: 42), Wire.TableStats(rows: 7)]
        #expect(try Wire.ShardStatusResponse(decoding: status.encoded()) == status)
        let list = Wire.ListTablesResponse(tables: ["a", "b", ""])
        #expect(try Wire.ListTablesResponse(decoding: list.encoded()) == list)
        let negative = Wire.ErrorDetail(reason: Wire.ErrorReason(rawValue: -3))
        #expect(try Wire.ErrorDetail(decoding: negative.encoded()) == negative)
        #expect(Wire.ListTablesRequest().encoded().isEmpty)
    }

    @Test func methodTableCoversEveryShardMethodOnce() {
        let paths = ShardRPC.all.map(\.path)
        #expect(Set(paths).count == paths.count && paths.count == 40)
        #expect(ShardRPC.push.retry == .withRequestID && ShardRPC.pull.whileFrozen == .serves && ShardRPC.dropTable.access == .admin && ShardRPC.evict.access == .admin)
        #expect(ShardRPC.readLog.whileFrozen == .serves && ShardRPC.readLog.access == .admin && ShardRPC.readStoredRows.retry == .safe)
        #expect(HealthRPC.check.access == .public && LookupRPC.all.count == 2)
    }
}

