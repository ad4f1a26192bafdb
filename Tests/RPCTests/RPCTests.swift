import Testing
import Foundation
import Glibc
import Synchronization
import CGRPC
@testable import RPC

@Suite struct RPCBridgeTests {
    static func echoServer() throws -> Server {
        var config = ServerConfiguration(address: "127.0.0.1:0")
        config.maxMessageBytes = 1 << 20
        let server = Server(config)
        server.register("/test.Echo/Echo") { _, message in OutgoingMessage(bytes: message.bytes) }
        server.register("/test.Echo/Fail") { _, _ in throw RPCStatus(.notFound, "no such thing: widget 7") }
        server.register("/test.Echo/Metadata") { ctx, _ in
            OutgoingMessage(bytes: Array(ctx.metadata.first { $0.key == "x-token" }?.value.utf8 ?? "".utf8))
        }
        server.register("/test.Echo/Slow") { _, message in Thread.sleep(forTimeInterval: 0.3); return OutgoingMessage(bytes: message.bytes) }
        try server.start()
        return server
    }

    @Test func unaryEchoRoundTripsBytesAsyncAndSync() async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let reply = try await channel.unary("/test.Echo/Echo", OutgoingMessage(bytes: payload))
        #expect(reply.bytes == payload)
        let syncReply = try channel.unarySync("/test.Echo/Echo", OutgoingMessage(bytes: [1, 2, 3]))
        #expect(syncReply.bytes == [1, 2, 3])
    }

    /// Server-side sockets of established TCP connections to local `port` (from /proc/net/tcp and tcp6: gRPC
    /// may listen on an IPv6 socket that takes IPv4 connections).
    static func establishedConnections(toPort port: Int) throws -> Int {
        let suffix = String(format: ":%04X", port)
        return try ["/proc/net/tcp", "/proc/net/tcp6"].reduce(0) { n, path in
            // Read to the end (procfs files report size 0, and a sized read may stop at the first page).
            let table = String(decoding: try #require(FileHandle(forReadingAtPath: path)).readDataToEndOfFile(), as: UTF8.self)
            return n + table.split(separator: "\n").dropFirst().filter { line in
                let f = line.split(separator: " ")
                return f.count > 3 && f[1].hasSuffix(suffix) && f[3] == "01"
            }.count
        }
    }

    /// A channel with N connections opens N connections and spreads its calls over all of them (each gets
    /// its turn: with two, two calls in a row use both); every call still gets its own answer.
    @Test(arguments: [1, 2, 3]) func aChannelSpreadsItsCallsOverItsConnections(connections: Int) async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        var config = ChannelConfiguration(target: "127.0.0.1:\(server.port)")
        config.connections = connections
        let channel = Channel(config)
        defer { channel.close() }
        #expect(try Self.establishedConnections(toPort: server.port) == 0)
        for i in 0..<connections {
            let reply = try await channel.unary("/test.Echo/Echo", OutgoingMessage(bytes: [UInt8(i), 7]))
            #expect(reply.bytes == [UInt8(i), 7])
        }
        let opened = try Self.establishedConnections(toPort: server.port)
        #expect(opened == connections, "\(opened) connections")
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in 0..<64 {
                g.addTask {
                    let reply = try await channel.unary("/test.Echo/Echo", OutgoingMessage(bytes: [UInt8(i), 9]))
                    #expect(reply.bytes == [UInt8(i), 9])
                }
            }
            try await g.waitForAll()
        }
        #expect(try Self.establishedConnections(toPort: server.port) == connections)
    }

    @Test func oneOutgoingMessageCanBeSentAgainForARetry() async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let message = OutgoingMessage(bytes: payload)
        for _ in 0..<3 { #expect(try await channel.unary("/test.Echo/Echo", message).bytes == payload) }
    }

    /// A message whose tail is borrowed (sent from where it lies, not copied) arrives as head + tail, can be
    /// sent again, and lets its owner go once neither the message nor gRPC holds the tail.
    @Test func aBorrowedTailIsSentInPlaceAndItsOwnerReleasedAfterwards() async throws {
        final class Released: Sendable {
            let flag = Atomic<Bool>(false)
            var isSet: Bool { flag.load(ordering: .relaxed) }
        }
        final class Owner {
            let bytes: UnsafeMutableRawBufferPointer
            let released: Released
            init(_ count: Int, released: Released) {
                bytes = .allocate(byteCount: count, alignment: 64)
                for i in 0..<count { bytes[i] = UInt8(truncatingIfNeeded: i &* 13 &+ 5) }
                self.released = released
            }
            deinit { bytes.deallocate(); released.flag.store(true, ordering: .relaxed) }
        }
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        let released = Released()
        var expected: [UInt8] = []
        do {
            let owner = Owner(600_000, released: released)
            let head = (0..<37).map { UInt8($0 + 100) }
            let message = OutgoingMessage(length: head.count, fill: { $0.copyBytes(from: head) }, borrowing: UnsafeRawBufferPointer(owner.bytes), owner: owner)
            expected = head + Array(owner.bytes)
            for _ in 0..<2 { #expect(try await channel.unary("/test.Echo/Echo", message).bytes == expected) }
            #expect(!released.isSet)
        }
        let deadline = Date().addingTimeInterval(10)
        while !released.isSet && Date() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(released.isSet)
        #expect(expected.count == 600_037)
    }

    @Test func handlerErrorsArriveAsStatusWithMessage() async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        do {
            _ = try await channel.unary("/test.Echo/Fail", OutgoingMessage(bytes: []))
            Issue.record("expected failure")
        } catch let s as RPCStatus {
            #expect(s.code == .notFound)
            #expect(s.message == "no such thing: widget 7")
        }
        do {
            _ = try await channel.unary("/test.Echo/Nope", OutgoingMessage(bytes: []))
            Issue.record("expected failure")
        } catch let s as RPCStatus {
            #expect(s.code == .unimplemented)
        }
    }

    @Test func metadataReachesTheHandler() async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        let reply = try await channel.unary("/test.Echo/Metadata", OutgoingMessage(bytes: []), metadata: [("x-token", "s3cret")])
        #expect(String(decoding: reply.bytes, as: UTF8.self) == "s3cret")
    }

    @Test func oversizedRequestIsRejectedWithResourceExhausted() async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        do {
            _ = try await channel.unary("/test.Echo/Echo", OutgoingMessage(bytes: [UInt8](repeating: 7, count: 2 << 20)))
            Issue.record("expected failure")
        } catch let s as RPCStatus {
            #expect(s.code == .resourceExhausted)
        }
        // The server keeps serving.
        let reply = try await channel.unary("/test.Echo/Echo", OutgoingMessage(bytes: [9]))
        #expect(reply.bytes == [9])
    }

    @Test func deadlineExceededIsReported() async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        do {
            _ = try await channel.unary("/test.Echo/Slow", OutgoingMessage(bytes: [1]), timeoutMs: 50)
            Issue.record("expected failure")
        } catch let s as RPCStatus {
            #expect(s.code == .deadlineExceeded)
        }
    }

    @Test func gracefulShutdownLetsInFlightCallsFinish() async throws {
        // The handler signals when it has started, so shutdown begins with the call really in flight.
        let started = DispatchSemaphore(value: 0)
        let server = Server(ServerConfiguration(address: "127.0.0.1:0"))
        defer { server.shutdown() }  // idempotent: also when an expectation throws first
        server.register("/test.Echo/Slow") { _, message in
            started.signal()
            Thread.sleep(forTimeInterval: 0.3)
            return OutgoingMessage(bytes: message.bytes)
        }
        try server.start()
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        async let slow = channel.unary("/test.Echo/Slow", OutgoingMessage(bytes: [4, 2]))
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { started.wait(); c.resume() }
        }
        server.shutdown(graceSeconds: 5)
        let reply = try await slow
        #expect(reply.bytes == [4, 2])
    }

    /// A client that keeps its connection open without reading (here a raw HTTP/2 connection that sent
    /// its preface and then sits idle, as a client process whose channel nobody polls does) does not hold
    /// a graceful shutdown for the grace period: once every call that arrived was answered, the server
    /// closes such connections (before this, shutdown waited 20 s here, until the core gave up on the
    /// connection). The margin is wide: a 60 s grace, a 10 s bound.
    @Test func gracefulShutdownDoesNotWaitForIdleConnections() async throws {
        let server = try Self.echoServer()
        // A started server released without a shutdown aborts the process in the core ("ShutdownCalled() ||
        // listeners_.empty()"): shut down also when a #require below throws (shutdown is idempotent).
        defer { server.shutdown() }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(server.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(connected == 0)
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]   // + an empty SETTINGS frame
        try #require(write(fd, preface, preface.count) == preface.count)
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        #expect(try await channel.unary("/test.Echo/Echo", OutgoingMessage(bytes: [7])).bytes == [7])
        let started = Date()
        server.shutdown(graceSeconds: 60)
        #expect(Date().timeIntervalSince(started) < 10, "shutdown waited \(Date().timeIntervalSince(started)) s for an idle connection")
    }

    /// Deferred handlers answer from another thread after they returned, while the completion-queue threads
    /// keep serving other calls (one thread here: a blocking wait would deadlock); a dropped reply answers
    /// INTERNAL; shutdown waits for answers still owed.
    @Test func deferredRepliesArriveFromOtherThreadsWithoutHoldingQueueThreads() async throws {
        var config = ServerConfiguration(address: "127.0.0.1:0")
        config.threads = 1
        let server = Server(config)
        defer { server.shutdown() }  // idempotent: also when an expectation throws first
        let parked = ParkedReplies()
        // Answer what is still parked when an expectation fails first, so shutdown (which waits for owed
        // answers) and the calls' Dispatch threads are not held for ever.
        defer { _ = parked.releaseAll() }
        server.registerDeferred("/test.Echo/Park") { _, message, reply in parked.add(message.bytes, reply) }
        server.registerDeferred("/test.Echo/Release") { _, _, reply in
            let n = parked.releaseAll()
            reply(.success(OutgoingMessage(bytes: [UInt8(n)])))
        }
        server.registerDeferred("/test.Echo/Drop") { _, _, _ in }
        let laterStarted = DispatchSemaphore(value: 0)
        server.registerDeferred("/test.Echo/Later") { _, message, reply in
            laterStarted.signal()
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { reply.answer { OutgoingMessage(bytes: message.bytes) } }
        }
        try server.start()
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        // The two parked calls are handed to Dispatch threads from this task itself, before it awaits
        // anything: while the whole suite runs, other tests block the two cooperative threads (shard start-up
        // polls) for many seconds, and calls started from child tasks (even ones that only hand the call to
        // Dispatch) were not sent before the wait below ran out (seen twice in full-suite runs). Their
        // deadline is long for the same reason: this task may resume to release them only after 30 s.
        let a = Self.sendOffThePool(channel, "/test.Echo/Park", [1])
        let b = Self.sendOffThePool(channel, "/test.Echo/Park", [2])
        let deadline = Date().addingTimeInterval(20)
        while parked.count < 2 && Date() < deadline { try await Task.sleep(nanoseconds: 5_000_000) }
        let released = try await channel.unary("/test.Echo/Release", OutgoingMessage(bytes: []))
        #expect(released.bytes == [2])
        let (ra, rb) = (try await a.reply(), try await b.reply())
        #expect(ra.bytes == [1] && rb.bytes == [2])
        do {
            _ = try await channel.unary("/test.Echo/Drop", OutgoingMessage(bytes: []))
            Issue.record("a dropped reply answered OK")
        } catch let s as RPCStatus { #expect(s.code == .internalError) }
        async let later = channel.unary("/test.Echo/Later", OutgoingMessage(bytes: [9]))
        // Shut down only once the call is inside its handler (its answer is owed), however loaded the machine.
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { laterStarted.wait(); c.resume() }
        }
        server.shutdown(graceSeconds: 5)
        #expect(try await later.bytes == [9])
    }

    /// A unary call made with the blocking API on a Dispatch thread, handed over before this returns: it is
    /// sent at once, whatever holds the cooperative thread pool, with a 5-minute deadline; `reply()` awaits
    /// its answer.
    final class CallOffThePool: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<ReceivedMessage, any Error>?
        init(_ channel: Channel, _ path: String, _ bytes: [UInt8]) {
            DispatchQueue.global().async { [self] in
                result = Result { try channel.unarySync(path, OutgoingMessage(bytes: bytes), timeoutMs: 300_000) }
                done.signal()
            }
        }
        func reply() async throws -> ReceivedMessage {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async { [self] in done.wait(); done.signal(); c.resume() }
            }
            return try result!.get()
        }
    }
    static func sendOffThePool(_ channel: Channel, _ path: String, _ bytes: [UInt8]) -> CallOffThePool { CallOffThePool(channel, path, bytes) }

    @Test func manyConcurrentCallsAllComplete() async throws {
        let server = try Self.echoServer()
        defer { server.shutdown() }
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(server.port)"))
        defer { channel.close() }
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<200 {
                group.addTask { try await channel.unary("/test.Echo/Echo", OutgoingMessage(bytes: [UInt8(i % 256)])).bytes.count }
            }
            return try await group.reduce(0, +)
        }
        #expect(total == 200)
    }
}

/// Replies parked by a test handler until another call releases them. Thread-safe.
final class ParkedReplies: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [([UInt8], ServerReply)] = []
    func add(_ bytes: [UInt8], _ reply: ServerReply) { lock.withLock { items.append((bytes, reply)) } }
    var count: Int { lock.withLock { items.count } }
    func releaseAll() -> Int {
        let all = lock.withLock { defer { items = [] }; return items }
        for (bytes, reply) in all { reply(.success(OutgoingMessage(bytes: bytes))) }
        return all.count
    }
}

@Suite struct ReceivedMessageTests {
    /// A received message made of `parts` as separate slices, as the core hands over a large message.
    static func message(_ parts: [[UInt8]]) -> ReceivedMessage {
        GRPCRuntime.ensure()
        var slices = parts.map { p in p.withUnsafeBufferPointer { grpc_slice_from_copied_buffer(UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) } }
        let buffer = slices.withUnsafeMutableBufferPointer { grpc_raw_byte_buffer_create($0.baseAddress, $0.count)! }
        for s in slices { grpc_slice_unref(s) }
        return ReceivedMessage(consuming: buffer)
    }

    @Test func segmentsReadTheSameBytesAsTheContiguousFormInAnyChunking() {
        var seed: UInt64 = 3
        func next() -> Int { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Int(seed >> 33) }
        for round in 0..<200 {
            let parts = (0..<(next() % 6)).map { _ in (0..<(next() % 60)).map { _ in UInt8(truncatingIfNeeded: next()) } }
            let all = parts.flatMap { $0 }
            let m = Self.message(parts)
            #expect(m.count == all.count)
            // Read in random chunks (some skipped), then past the end.
            let read = m.withSegments { reader -> [UInt8] in
                var got = [UInt8](repeating: 0xEE, count: all.count)
                var at = 0
                while reader.remaining > 0 {
                    let n = min(reader.remaining, next() % 17)
                    let skip = next() % 5 == 0
                    let ok = got.withUnsafeMutableBytes { reader.read(n, into: skip ? nil : $0.baseAddress! + at) }
                    #expect(ok)
                    if skip { for i in at..<(at + n) { got[i] = all[i] } }
                    at += n
                }
                #expect(!reader.read(1, into: nil) && reader.remaining == 0)
                return got
            }
            #expect(read == all, "round \(round)")
            // Placed so that a chosen byte is aligned: the same bytes, the byte aligned when the message is
            // several slices (one slice or none is read where it is; the core merges parts of up to 23 bytes,
            // which it stores inline, into one slice, so two larger parts make sure of several).
            let offset = all.isEmpty ? 0 : next() % all.count, alignment = [1, 8, 64][next() % 3]
            let placed = m.withUnsafeBytes(placing: offset, at: alignment) { b -> (bytes: [UInt8], aligned: Bool) in
                (Array(b), b.isEmpty || Int(bitPattern: b.baseAddress! + offset) % alignment == 0)
            }
            #expect(placed.bytes == all && (placed.aligned || parts.filter { $0.count > 23 }.count < 2), "round \(round)")
            // The contiguous form (made after the segments were read) holds the same bytes; reading both ways
            // again still agrees.
            #expect(m.bytes == all)
            #expect(m.withSegments { r -> Bool in
                var again = [UInt8](repeating: 0, count: all.count)
                let ok = again.withUnsafeMutableBytes { r.read(all.count, into: $0.baseAddress) }
                return ok && again == all
            } == true)
        }
        // A message made from bytes has no slices to read in place.
        #expect(ReceivedMessage(copying: [1, 2, 3]).withSegments { _ in true } == nil)
        #expect(ReceivedMessage(copying: [1, 2, 3]).bytes == [1, 2, 3])
    }
}
