import Foundation
import Engine
import Vocabulary
import Client
import RPC
import EmbedPSWire

/// Starts real `embedps-server` processes on 127.0.0.1 (port 0, temp data dirs) for a test, and stops them.
final class LocalCluster: @unchecked Sendable {
    let root: URL
    let shardCount: Int
    let durability: String
    let extraArgs: [String]
    private(set) var ports: [Int]
    private var processes: [Process?]
    let serverSpecPath: String
    /// Per shard, the spec it was started with (shards added later start from a joining spec).
    private var specPaths: [Int: String] = [:]

    static func binary(_ name: String) -> String {
        // The test bundle sits beside the built products (debug or release).
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug/\(name)").path
    }

    /// Arguments added for one shard only (e.g. --restore-checkpoint of its part).
    let shardArgs: @Sendable (Int) -> [String]

    init(shards: Int, durability: String = "async", extraArgs: [String] = [], shardArgs: @escaping @Sendable (Int) -> [String] = { _ in [] }) throws {
        self.shardArgs = shardArgs
        root = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        shardCount = shards; self.durability = durability; self.extraArgs = extraArgs
        ports = Array(repeating: 0, count: shards)
        processes = Array(repeating: nil, count: shards)
        let spec = ClusterSpec(shards: (0..<shards).map { _ in .init(address: "127.0.0.1:0") })
        serverSpecPath = root.appendingPathComponent("server-spec.json").path
        try spec.encoded().write(to: URL(fileURLWithPath: serverSpecPath))
        for i in 0..<shards { try start(i, port: 0) }
    }

    func dataDir(_ i: Int) -> String { root.appendingPathComponent("shard-\(i)").path }

    /// Starts shard i on `port` (0 = any) and waits for its port file.
    func start(_ i: Int, port: Int) throws {
        let portFile = root.appendingPathComponent("port-\(i)").path
        try? FileManager.default.removeItem(atPath: portFile)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary("embedps-server"))
        p.arguments = ["--cluster", specPaths[i] ?? serverSpecPath, "--shard-index", "\(i)", "--listen", "127.0.0.1:\(port)",
                       "--data-dir", dataDir(i), "--durability", durability, "--port-file", portFile] + extraArgs + shardArgs(i)
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        let log = root.appendingPathComponent("shard-\(i).log").path
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        processes[i] = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) {
                ports[i] = n
                return
            }
            if !p.isRunning {
                let err = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                throw ClusterSpecError("shard \(i) exited during start: \(err)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw ClusterSpecError("shard \(i) did not start within 30 s")
    }

    /// The spec clients use: real addresses.
    var clientSpec: ClusterSpec { ClusterSpec(shards: ports.map { .init(address: "127.0.0.1:\($0)") }) }

    func client(_ options: ClientOptions = ClientOptions()) throws -> EmbedPSClient {
        try EmbedPSClient(spec: clientSpec, options: options)
    }

    /// kill -9 of shard i (no shutdown, no flush).
    func kill9(_ i: Int) {
        guard let p = processes[i] else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        processes[i] = nil
    }

    /// Sends `sig` to shard i's process (e.g. SIGSTOP / SIGCONT to make it stop answering for a while).
    /// SIGSTOP returns once every thread of the process is stopped (state T in /proc; at most 10 s): the
    /// signal alone does not stop them all at once on a loaded machine.
    func signal(_ i: Int, _ sig: Int32) {
        guard let p = processes[i] else { return }
        kill(p.processIdentifier, sig)
        guard sig == SIGSTOP else { return }
        let tasks = "/proc/\(p.processIdentifier)/task"
        func stopped(_ tid: String) -> Bool {
            // .../stat: "TID (COMM) STATE ..."; COMM may hold spaces, so read after the last ')'.
            guard let stat = try? String(contentsOfFile: "\(tasks)/\(tid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
            return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("T")
        }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let tids = try? FileManager.default.contentsOfDirectory(atPath: tasks), tids.allSatisfy(stopped) { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// Graceful stop (SIGTERM) of shard i.
    func terminate(_ i: Int) {
        guard let p = processes[i] else { return }
        p.terminate()
        p.waitUntilExit()
        processes[i] = nil
    }

    /// Whether every shard process started is still running.
    var allRunning: Bool { processes.allSatisfy { $0?.isRunning ?? false } }

    /// The last 4 KB of every shard's log (stderr), for failure messages and sanitizer checks.
    func logTail() -> String {
        (0..<ports.count).map { i in
            let text = (try? String(contentsOfFile: root.appendingPathComponent("shard-\(i).log").path, encoding: .utf8)) ?? ""
            return "[shard \(i)] " + String(text.suffix(4096))
        }.joined(separator: "\n")
    }

    /// Restarts shard i on its previous port.
    func restart(_ i: Int) throws { try start(i, port: ports[i]) }

    func stop() {
        for (i, p) in processes.enumerated() {
            guard let p, p.isRunning else { continue }
            p.terminate()
            p.waitUntilExit()
            processes[i] = nil
        }
        // EMBEDPS_KEEP_LOGS=DIR keeps the shard logs (e.g. for a sanitizer run) before the data is removed.
        if let keep = ProcessInfo.processInfo.environment["EMBEDPS_KEEP_LOGS"] {
            try? FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
            for i in 0..<ports.count {
                try? FileManager.default.copyItem(atPath: root.appendingPathComponent("shard-\(i).log").path,
                                                  toPath: keep + "/\(root.lastPathComponent)-shard-\(i).log")
            }
        }
        try? FileManager.default.removeItem(at: root)
    }
    /// Starts one more shard (index = current count) from `specPath` (a spec that lists it); returns its index.
    func addShard(specPath: String) throws -> Int {
        let i = ports.count
        ports.append(0); processes.append(nil); specPaths[i] = specPath
        try start(i, port: 0)
        return i
    }

    /// Runs embedps-admin against this cluster (or `spec`); returns (exit status, stdout + stderr).
    func admin(_ args: [String], spec: ClusterSpec? = nil) throws -> (Int32, String) {
        let specPath = root.appendingPathComponent("client.json").path
        try (spec ?? clientSpec).encoded().write(to: URL(fileURLWithPath: specPath))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: LocalCluster.binary("embedps-admin"))
        p.arguments = args + ["--cluster", specPath]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Starts embedps-lookup against this cluster; returns the process and its (gRPC, HTTP) ports.
    func startLookup(spec: ClusterSpec? = nil, extraArgs: [String] = []) throws -> (process: Process, grpc: Int, http: Int) {
        let specPath = root.appendingPathComponent("lookup-spec-\(UUID().uuidString).json").path
        try (spec ?? clientSpec).encoded().write(to: URL(fileURLWithPath: specPath))
        let portFile = root.appendingPathComponent("lookup-ports-\(UUID().uuidString)").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: LocalCluster.binary("embedps-lookup"))
        p.arguments = ["--cluster", specPath, "--listen", "127.0.0.1:0", "--http-port", "0", "--port-file", portFile] + extraArgs
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: portFile, encoding: .utf8) {
                let parts = s.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) }
                if parts.count == 2 {
                    try Self.waitUntilServing(port: parts[0], what: "embedps-lookup")
                    return (p, parts[0], parts[1])
                }
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        p.terminate()
        throw ClusterSpecError("embedps-lookup did not start within 30 s")
    }

    /// Waits (at most 60 s) until a gRPC health check on 127.0.0.1:`port` answers: on a machine loaded by
    /// the whole suite a just-started process can take many seconds to accept its first connection.
    static func waitUntilServing(port: Int, what: String) throws {
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(port)"))
        defer { channel.close() }
        let deadline = Date().addingTimeInterval(60)
        var last: (any Error)? = nil
        while Date() < deadline {
            do {
                _ = try channel.unarySync(HealthRPC.check.path, OutgoingMessage(bytes: Wire.HealthCheckRequest(service: "").encoded()), timeoutMs: 10_000)
                return
            } catch { last = error; Thread.sleep(forTimeInterval: 0.1) }
        }
        throw ClusterSpecError("\(what) on port \(port) did not answer a health check within 60 s: \(last.map { "\($0)" } ?? "")")
    }

    /// A channel to 127.0.0.1:`port` whose connection is up: it waits (at most 60 s) until a health check
    /// answers on it. A test's first call on a new channel otherwise fails with UNAVAILABLE when the
    /// channel's first connection attempt failed while the whole suite loaded the machine (seen once, on a
    /// freeze sent as the first call), which is not what the test checks.
    static func connectedChannel(port: Int) async throws -> Channel {
        let channel = Channel(ChannelConfiguration(target: "127.0.0.1:\(port)"))
        let deadline = Date().addingTimeInterval(60)
        var last: (any Error)? = nil
        while Date() < deadline {
            do {
                _ = try await channel.unary(HealthRPC.check.path, OutgoingMessage(bytes: Wire.HealthCheckRequest(service: "").encoded()), timeoutMs: 10_000)
                return channel
            } catch { last = error; try await Task.sleep(nanoseconds: 100_000_000) }
        }
        channel.close()
        throw ClusterSpecError("the shard on port \(port) did not answer a health check on a new channel within 60 s: \(last.map { "\($0)" } ?? "")")
    }

    deinit { stop() }
}
