/// Builds the Prometheus text exposition format (version 0.0.4): each metric family once with its HELP and
/// TYPE lines, then its samples. Not thread-safe; build one per scrape.
public struct MetricsText {
    public enum Kind: String { case counter, gauge }
    private var families: [(name: String, help: String, kind: Kind, samples: [(labels: [(String, String)], value: Double)])] = []
    public init() {}

    /// Adds a sample; the family is created on first use (later HELP/TYPE arguments are ignored).
    public mutating func add(_ name: String, _ help: String, _ kind: Kind, labels: [(String, String)] = [], _ value: Double) {
        if let i = families.firstIndex(where: { $0.name == name }) { families[i].samples.append((labels, value)); return }
        families.append((name, help, kind, [(labels, value)]))
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        return v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }

    public var text: String {
        var out = ""
        for f in families {
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) \(f.kind.rawValue)\n"
            for s in f.samples {
                let labels = s.labels.isEmpty ? "" : "{" + s.labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
                out += "\(f.name)\(labels) \(Self.format(s.value))\n"
            }
        }
        return out
    }
}
