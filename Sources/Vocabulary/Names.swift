/// The one rule for every name that arrives over the wire or on a command line: tables, checkpoints, freeze
/// names. 1...128 bytes of [A-Za-z0-9_.-], not "." or "..". Checked before any lookup, so a name with a NUL,
/// a slash or non-ASCII bytes never reaches a dictionary, a path or RocksDB; valid names are plain ASCII,
/// so `String` equality on them is byte equality.
public enum Names {
    public enum Kind: String, Sendable {
        case table, checkpoint, freeze
    }
    public static let maxBytes = 128

    /// Whether `name` satisfies the rule.
    public static func isValid(_ name: String) -> Bool {
        let u = name.utf8
        return !u.isEmpty && u.count <= maxBytes && name != "." && name != ".."
            && u.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 || $0 == 46 || $0 == 45 }
    }

    /// Throws `NameError` naming the kind of name and the rule.
    public static func check(_ name: String, as kind: Kind) throws(NameError) {
        guard isValid(name) else { throw NameError(kind: kind, name: name) }
    }
}

/// A name that breaks the `Names` rule.
public struct NameError: Error, Sendable, Equatable, CustomStringConvertible {
    public let kind: Names.Kind
    public let name: String
    public init(kind: Names.Kind, name: String) { self.kind = kind; self.name = name }
    public var description: String {
        let shown = name.unicodeScalars.map { $0.isASCII && $0.value >= 32 && $0.value < 127 ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
        let clipped = shown.count > 80 ? String(shown.prefix(80)) + "..." : shown
        return "\(kind.rawValue) name '\(clipped)' is invalid: names are 1-\(Names.maxBytes) characters of [A-Za-z0-9_.-], not '.' or '..'"
    }
}

/// A table spec (or a part of one) that breaks a rule; `message` names the field and the rule.
public struct SpecError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable { case invalidSpec, invalidName }
    public let table: String
    public let message: String
    public let reason: Reason
    public init(table: String, message: String, reason: Reason = .invalidSpec) {
        self.table = table; self.message = message; self.reason = reason
    }
    public var description: String { reason == .invalidName ? message : "invalid spec for table '\(table)': \(message)" }
}
