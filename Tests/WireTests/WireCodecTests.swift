import Testing
import EmbedPSWireC
@testable import EmbedPSWire

/// The hand-written hot-path codec must agree byte-for-byte in meaning with the protobuf-c generated code.
@Suite struct WireCodecTests {
    @Test func handEncodedPushRequestDecodesWithProtobufC() throws {
        let ids: [UInt64] = [3, 1 << 40, .max]
        let size = RowMessageEncoder.pushRequestSize(table: "items", count: 3, dim: 2)
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { buf in
            RowMessageEncoder.writePushRequest(into: buf, table: "items", count: 3, dim: 2, ids: { ids[$0] },
                                               row: { i, d in d[0] = Float(i); d[1] = -Float(i) - 0.5 })
        }
        try bytes.withUnsafeBytes { raw in
            try RowMessageDecoder.withPushRequest(raw) { req in
                #expect(req.table == "items")
                #expect(Array(req.ids) == ids)
                let floats = (0..<6).map { req.gradientBytes.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
                #expect(floats == [0, -0.5, 1, -1.5, 2, -2.5])
            }
        }
    }

    @Test func handEncodedPullResponseDecodesWithProtobufCAndInPlace() throws {
        let size = RowMessageEncoder.pullResponseSize(count: 2, dim: 3)
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { buf in
            let rows = RowMessageEncoder.writePullResponse(into: buf, count: 2, dim: 3)
            for i in 0..<6 { rows[i] = Float(i) * 1.25 }
        }
        let c = try #require(bytes.withUnsafeBufferPointer { embedps__v1__pull_response__unpack(nil, $0.count, $0.baseAddress) })
        defer { embedps__v1__pull_response__free_unpacked(c, nil) }
        #expect(c.pointee.dim == 3 && c.pointee.values.len == 24)
        let (dim, values) = try bytes.withUnsafeBytes { b in
            let r = try RowMessageDecoder.pullResponse(b)
            return (r.dim, (0..<6).map { r.values.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) })
        }
        #expect(dim == 3 && values == [0, 1.25, 2.5, 3.75, 5, 6.25])
    }

    @Test func pullRequestWithUnpackedIdsIsAcceptedToo() throws {
        // field 1 "t", then ids as two unpacked fixed64 fields (wire type 1), as some encoders emit.
        var bytes: [UInt8] = [0x0a, 0x01, 0x74]
        for id in [UInt64(7), 9] { bytes.append(0x11); withUnsafeBytes(of: id.littleEndian) { bytes += $0 } }
        try bytes.withUnsafeBytes { raw in
            try RowMessageDecoder.withPullRequest(raw) { req in #expect(Array(req.ids) == [7, 9]) }
        }
    }

    @Test func controlMessagesRoundTrip() throws {
        var spec = WireTableSpec()
        spec.name = "t"; spec.dim = 16; spec.hashMode = 2; spec.rowBudget = 1000
        spec.optimizer.kind = 2; spec.optimizer.learningRate = 0.05; spec.initializer.kind = 2; spec.initializer.high = 1
        let req = WireCreateTableRequest(spec: spec)
        #expect(try req.encoded().withUnsafeBytes { try WireCreateTableRequest(decoding: $0) } == req)
        var status = WireShardStatusResponse()
        status.shardIndex = 2; status.durability = "sync"; status.cacheHitRate = 0.75
        var stats = WireTableStats(); stats.spec = spec; stats.rows = 42
        status.tables = [stats, stats]
        #expect(try status.encoded().withUnsafeBytes { try WireShardStatusResponse(decoding: $0) } == status)
        let list = WireListTablesResponse(tables: ["a", "b"])
        #expect(try list.encoded().withUnsafeBytes { try WireListTablesResponse(decoding: $0) } == list)
    }

    @Test func malformedBytesAreRejected() {
        #expect(throws: WireError.self) { try [UInt8]([0x0a, 0x09, 0x01]).withUnsafeBytes { try WireCreateTableRequest(decoding: $0) } }
        #expect(throws: WireError.self) { try [UInt8]([0x12, 0x80]).withUnsafeBytes { try RowMessageDecoder.pullResponse($0) } }
        #expect(throws: WireError.self) {
            // dim 3 but 8 value bytes
            try [UInt8]([0x08, 0x03, 0x12, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]).withUnsafeBytes { try RowMessageDecoder.pullResponse($0) }
        }
    }
}
