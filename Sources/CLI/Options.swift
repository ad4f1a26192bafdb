import Foundation

/// Parsed `--name value` options, `--flag`s and positional words of a command line, with the usage text
/// printed on errors. Names are given without dashes. Not thread-safe (used once at start-up).
public struct Options {
    public let usage: String
    private var values: [String: String] = [:]
    /// Every value of each option, in order (for options that may repeat).
    private var allValues: [String: [String]] = [:]
    private var flags: Set<String> = []
    public private(set) var positional: [String] = []

    /// `flagNames` lists options that take no value. Exits with usage on `--help` or an unknown `--option`
    /// when `known` is given.
    public init(_ arguments: [String], usage: String, flagNames: Set<String> = [], known: Set<String>? = nil) {
        self.usage = usage
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--help" || a == "-h" { print(usage); exit(0) }
            if a.hasPrefix("--") {
                var name = String(a.dropFirst(2))
                var inline: String? = nil
                if let eq = name.firstIndex(of: "=") { inline = String(name[name.index(after: eq)...]); name = String(name[..<eq]) }
                if let known, !known.contains(name), !flagNames.contains(name) { Self.fail("unknown option --\(name)", usage) }
                if flagNames.contains(name) { flags.insert(name) }
                else if let inline { values[name] = inline; allValues[name, default: []].append(inline) }
                else {
                    guard i + 1 < arguments.count else { Self.fail("--\(name) needs a value", usage) }
                    values[name] = arguments[i + 1]; allValues[name, default: []].append(arguments[i + 1]); i += 1
                }
            } else {
                positional.append(a)
            }
            i += 1
        }
    }

    public static func fail(_ message: String, _ usage: String) -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n\n\(usage)\n".utf8))
        exit(2)
    }
    public func fail(_ message: String) -> Never { Self.fail(message, usage) }

    public func flag(_ name: String) -> Bool { flags.contains(name) }
    public func string(_ name: String) -> String? { values[name] }
    /// Every value given for a repeatable option, in order.
    public func all(_ name: String) -> [String] { allValues[name] ?? [] }
    public func string(_ name: String, default d: String) -> String { values[name] ?? d }
    public func required(_ name: String) -> String {
        guard let v = values[name] else { fail("missing --\(name)") }
        return v
    }
    public func int(_ name: String, default d: Int) -> Int {
        guard let v = values[name] else { return d }
        guard let n = Int(v) else { fail("--\(name) must be an integer, got '\(v)'") }
        return n
    }
    public func double(_ name: String, default d: Double) -> Double {
        guard let v = values[name] else { return d }
        guard let n = Double(v) else { fail("--\(name) must be a number, got '\(v)'") }
        return n
    }
    /// An `on|off` switch: `d` when absent; any other value fails, naming the two accepted.
    public func onOff(_ name: String, default d: Bool) -> Bool {
        guard let v = values[name] else { return d }
        guard let on = Self.onOff(v) else { fail("--\(name) takes on or off, got '\(v)'") }
        return on
    }
    /// True for "on", false for "off", nil for anything else.
    public static func onOff(_ value: String) -> Bool? { value == "on" ? true : value == "off" ? false : nil }
}

/// Flushes every output stream and ends the process without running C++ static destructors: gRPC's
/// globals would otherwise be torn down while its completion-queue threads (one per channel) still run,
/// which can corrupt the heap at exit.
public func exitNow(_ code: Int32) -> Never {
    fflush(nil)
    _exit(code)
}

/// Writes a line to standard error.
public func printError(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// Renders rows as an aligned text table with a header.
public func renderTable(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }
    return ([line(header), line(widths.map { String(repeating: "-", count: $0) })] + rows.map(line)).joined(separator: "\n")
}

/// Encodes an Encodable as pretty, key-sorted JSON text.
public func jsonText<T: Encodable>(_ value: T) -> String {
    let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys]
    return (try? e.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}

/// Prints a line to standard output and flushes it at once (progress lines, readiness lines read by launchers).
public func printFlush(_ s: String) {
    FileHandle.standardOutput.write(Data((s + "\n").utf8))
}
