import Testing
import Foundation

/// Many hosts on one machine (issue: network namespaces): `Cluster/netns-cluster.sh` puts 2 shards and 1
/// trainer worker in their own network namespaces behind capped links; the worker trains on the sample
/// through them, and the script removes every namespace and its bridge when it exits. Needs root and
/// iproute2's `ip netns`; skipped otherwise.
@Suite(.serialized) struct NetnsClusterTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var available: Bool {
        guard getuid() == 0 else { return false }
        return ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func ip(_ args: [String]) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip"] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return "" }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test(.enabled(if: NetnsClusterTests.available, "needs root and iproute2 (ip netns): run the suite as root to include it"))
    func twoShardsAndAWorkerInTheirOwnNamespacesTrainOnTheSample() throws {
        let runDir = FileManager.default.temporaryDirectory.appendingPathComponent("embedps-netns-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: runDir) }
        let bin = URL(fileURLWithPath: LocalCluster.binary("embedps-server")).deletingLastPathComponent().path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [Self.repo.appendingPathComponent("Cluster/netns-cluster.sh").path, "--shards", "2", "--workers", "1", "--rate", "1gbit",
                       "--bin", bin, "--run-dir", runDir.path, "--", "--epochs", "3", "--dim", "16", "--json"]
        let log = runDir.path + ".log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = p.standardOutput
        try p.run()
        // Bounded: the launcher and training finish well within this on 2 cores (debug build).
        let deadline = Date().addingTimeInterval(240)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
        if p.isRunning { p.interrupt(); p.waitUntilExit() }
        p.waitUntilExit()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(p.terminationStatus == 0, "netns-cluster.sh exited \(p.terminationStatus): \(output.suffix(3000))")

        // Each shard served on its own namespace's address, not on loopback.
        let spec = try JSONSerialization.jsonObject(with: Data(contentsOf: runDir.appendingPathComponent("cluster.json"))) as? [String: Any]
        let addresses = (spec?["shards"] as? [[String: Any]] ?? []).compactMap { $0["address"] as? String }
        #expect(addresses.count == 2 && addresses.allSatisfy { $0.hasPrefix("10.231.") } && Set(addresses).count == 2, "\(addresses)")
        #expect(output.contains("SERVING") && output.contains("2 shard(s) serving in their own namespaces"))

        // The worker trained through them: its report (JSON) has both shards, a falling loss and a model that
        // ranks better than chance.
        let worker = try String(contentsOf: runDir.appendingPathComponent("worker-0.log"), encoding: .utf8)
        let jsonText = worker.split(separator: "\n").map { $0.replacingOccurrences(of: "[worker 0] ", with: "") }
            .drop { !$0.hasPrefix("{") }.joined(separator: "\n")
        let report = try JSONSerialization.jsonObject(with: Data(jsonText.utf8)) as? [String: Any]
        #expect(report?["shards"] as? Int == 2 && report?["epochs"] as? Int == 3)
        let loss = report?["finalLoss"] as? Double ?? 1
        #expect(loss < 0.69, "final loss \(loss) (log 2 = 0.693 is chance)")
        let test = report?["test"] as? [[String: Any]] ?? []
        let recall = test.first { ($0["model"] as? String ?? "").hasPrefix("mf-bpr") }?["recallAt20"] as? Double ?? 0
        #expect(recall > 0.005, "test Recall@20 \(recall)")

        // Everything it created is gone: no namespace or bridge of its tag remains.
        let tag = "e\(p.processIdentifier % 100000)"
        #expect(!Self.ip(["netns", "list"]).contains("\(tag)-"), "namespaces left behind")
        #expect(!Self.ip(["link", "show"]).contains("\(tag)br"), "bridge left behind")
        #expect(output.contains("removed 3 namespaces"), "\(output.suffix(500))")
    }
}
