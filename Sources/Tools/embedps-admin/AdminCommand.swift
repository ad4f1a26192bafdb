import Foundation
import CLI
import Client

/// One `embedps-admin` command: the words that select it (`table create`), its help text, and its action.
/// Each command group (one file each) contributes a list; `main.swift` builds the usage text from them and
/// dispatches on the longest matching words.
struct AdminCommand: Sendable {
    let words: [String]
    let usage: String
    /// Whether it talks to a cluster (`--cluster` required).
    var needsCluster = true
    let run: @Sendable (AdminContext) async throws -> Void
}

/// What a command runs with: the options, the positional words after its own, and the cluster.
struct AdminContext {
    let o: Options
    let args: [String]
    var json: Bool { o.flag("json") }
    private let connection: EmbedPSAdmin?
    init(o: Options, args: [String], connection: EmbedPSAdmin?) { self.o = o; self.args = args; self.connection = connection }
    /// The admin client (commands that need no cluster never ask for it).
    var admin: EmbedPSAdmin {
        guard let connection else { o.fail("this command needs --cluster SPEC.json") }
        return connection
    }
    /// The first positional word after the command, or a usage failure naming `what`.
    func name(_ what: String) -> String {
        guard let n = args.first else { o.fail("missing \(what)") }
        return n
    }
}

/// Every command, by group.
let adminCommands: [AdminCommand] = statusCommands + tableCommands + checkpointCommands + transferCommands + reshardCommands
    + dnisCommands + sparsityCommands + semanticIDCommands
