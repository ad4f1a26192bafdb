import Foundation
import CLI
import Client

let usage = """
usage: embedps-admin <command> --cluster SPEC.json [options] [--json]

commands:
\(adminCommands.map(\.usage).joined(separator: "\n"))

options:
  --cluster PATH   cluster spec (JSON) with the shard addresses (required by the cluster commands)
  --json           machine-readable output
  --auth-token-file PATH   send the shared-secret token on its first line (shards started with one)
  --tls-ca PEM             connect with TLS, trusting this CA certificate
  --retry-seconds S        how long a call is retried while a shard answers UNAVAILABLE (down, restarting,
                           frozen for a checkpoint, moving slots), backoff up to 1 s (default 30; 0: one
                           attempt, so a down shard is reported at once)
"""
let options = Options(Array(CommandLine.arguments.dropFirst()), usage: usage, flagNames: ["json"])
do {
    let words = options.positional
    guard !words.isEmpty else { options.fail("missing command") }
    // The command whose words match the most leading words.
    guard let command = adminCommands.filter({ words.starts(with: $0.words) }).max(by: { $0.words.count < $1.words.count }) else {
        options.fail("unknown command '\(words.joined(separator: " "))'")
    }
    var clientOptions = try ClientOptions.from(tokenFile: options.string("auth-token-file"), tlsCAFile: options.string("tls-ca"))
    let retrySeconds = options.double("retry-seconds", default: clientOptions.retrySeconds)
    guard retrySeconds.isFinite, retrySeconds >= 0, retrySeconds <= 86_400 else {
        options.fail("--retry-seconds must be 0 to 86400 seconds, got \(options.string("retry-seconds") ?? "")")
    }
    clientOptions.retrySeconds = retrySeconds
    let connection = command.needsCluster
        ? try EmbedPSAdmin(specPath: options.required("cluster"), options: clientOptions)
        : nil
    try await command.run(AdminContext(o: options, args: Array(words.dropFirst(command.words.count)), connection: connection))
} catch {
    printError("error: \(error)")
    exitNow(1)
}
exitNow(0)
