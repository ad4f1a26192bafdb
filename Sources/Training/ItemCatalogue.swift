import Foundation

/// A catalogue feature of an item, read from the goodbooks `books.csv` metadata: what an item brings with it
/// when it enters the catalogue, before anyone in the interactions has touched it.
public enum CatalogueFeature: String, CaseIterable, Sendable, Codable {
    /// Every listed author (`authors`, comma-separated); an item gets the mean of its authors' rows.
    case author
    /// Original publication decade (`original_publication_year`; one "unknown" value when empty).
    case year
    /// `language_code` (one "unknown" value when empty).
    case language
    /// Goodreads-wide rating count (`ratings_count`), in half-octave buckets: floor(2 * log2(count + 1)).
    /// A popularity signal from outside the interactions (the whole of Goodreads, not this data's users);
    /// a catalogue imported from elsewhere has it, a book new to the whole world would not.
    case popularity

    /// Parses a comma-separated list such as "author,popularity" (no duplicates).
    public static func list(_ text: String) throws -> [CatalogueFeature] {
        var out: [CatalogueFeature] = []
        for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let f = CatalogueFeature(rawValue: name) else {
                throw DataError("unknown item feature '\(name)': use \(allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard !out.contains(f) else { throw DataError("item feature '\(name)' is listed twice") }
            out.append(f)
        }
        guard !out.isEmpty else { throw DataError("--item-features needs at least one of \(allCases.map(\.rawValue).joined(separator: ", "))") }
        return out
    }
}

/// The catalogue features of items: for each item id, weighted feature keys (a key is a stable 64-bit hash of
/// "feature:value", the row id in the catalogue table). An item's catalogue vector is the weighted sum of its
/// keys' rows: weight 1 for each single-valued feature, 1/n for each of n authors.
/// Invariant: every key list is non-empty when any feature is configured, and weights are finite and > 0.
public struct ItemCatalogue: Sendable {
    public struct WeightedKey: Sendable, Equatable {
        public let key: UInt64
        public let weight: Float
    }
    public let features: [CatalogueFeature]
    /// Item id -> its weighted keys.
    public let keys: [UInt64: [WeightedKey]]
    /// Item id -> Goodreads-wide ratings count (the `ratings_count` column), for the catalogue baseline.
    public let ratingsCount: [UInt64: Double]
    /// Distinct keys over all items (the catalogue table's rows).
    public var distinctKeys: Int { Set(keys.values.flatMap { $0.map(\.key) }).count }

    /// Reads `path` (goodbooks `books.csv`: a header naming book_id, authors, original_publication_year,
    /// language_code and ratings_count; RFC 4180 quoting).
    public static func load(path: String, features: [CatalogueFeature]) throws -> ItemCatalogue {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DataError("cannot read the item catalogue \(path) (goodbooks books.csv)")
        }
        return try parse(text, source: path, features: features)
    }

    /// Parses books.csv text (`source` names it in errors).
    public static func parse(_ text: String, source: String, features: [CatalogueFeature]) throws -> ItemCatalogue {
        // Blank lines are skipped but counted, so errors name the file's own line numbers.
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated()
            .filter { !$0.element.isEmpty }.makeIterator()
        guard let (_, headerLine) = lines.next() else { throw DataError("\(source) is empty: expected a books.csv header line") }
        let header = try csvFields(headerLine, source: source, line: 1)
        func column(_ name: String) throws -> Int {
            guard let c = header.firstIndex(of: name) else { throw DataError("\(source) has no '\(name)' column (goodbooks books.csv expected)") }
            return c
        }
        let idColumn = try column("book_id"), authorsColumn = try column("authors"), yearColumn = try column("original_publication_year")
        let languageColumn = try column("language_code"), countColumn = try column("ratings_count")
        var keys: [UInt64: [WeightedKey]] = [:], counts: [UInt64: Double] = [:]
        while let (index, line) = lines.next() {
            let lineNumber = index + 1
            let f = try csvFields(line, source: source, line: lineNumber)
            guard f.count == header.count else {
                throw DataError("\(source):\(lineNumber): \(f.count) fields, the header has \(header.count)")
            }
            guard let id = UInt64(f[idColumn]) else { throw DataError("\(source):\(lineNumber): book_id '\(f[idColumn])' is not an id") }
            guard keys[id] == nil else { throw DataError("\(source):\(lineNumber): book_id \(id) appears twice") }
            guard let count = Double(f[countColumn]), count.isFinite, count >= 0 else {
                throw DataError("\(source):\(lineNumber): ratings_count '\(f[countColumn])' is not a count")
            }
            counts[id] = count
            var k: [WeightedKey] = []
            for feature in features {
                switch feature {
                case .author:
                    let authors = f[authorsColumn].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                    let names = authors.isEmpty ? ["unknown"] : authors
                    for a in names { k.append(WeightedKey(key: featureKey("author", a), weight: 1 / Float(names.count))) }
                case .year:
                    let decade = Double(f[yearColumn]).map { "\(Int(($0 / 10).rounded(.down)) * 10)" } ?? "unknown"
                    k.append(WeightedKey(key: featureKey("year", decade), weight: 1))
                case .language:
                    k.append(WeightedKey(key: featureKey("language", f[languageColumn].isEmpty ? "unknown" : f[languageColumn]), weight: 1))
                case .popularity:
                    k.append(WeightedKey(key: featureKey("popularity", "\(Int((2 * log2(count + 1)).rounded(.down)))"), weight: 1))
                }
            }
            keys[id] = k
        }
        return ItemCatalogue(features: features, keys: keys, ratingsCount: counts)
    }

    /// FNV-1a 64 of "feature:value" (stable across processes and machines, unlike `Hasher`).
    static func featureKey(_ feature: String, _ value: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in "\(feature):\(value)".utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// The fields of one CSV line: comma-separated, a field in double quotes may hold commas and "" for a quote.
    static func csvFields(_ line: Substring, source: String, line number: Int) throws -> [String] {
        var fields: [String] = [], current = "", quoted = false, atFieldStart = true
        var chars = line.makeIterator()
        while let c = chars.next() {
            if quoted {
                if c == "\"" {
                    // A doubled quote is a literal quote; a single one closes the field's quoting.
                    var lookahead = chars
                    if lookahead.next() == "\"" { current.append("\""); chars = lookahead } else { quoted = false }
                } else { current.append(c) }
            } else if c == "," {
                fields.append(current); current = ""; atFieldStart = true; continue
            } else if c == "\"" && atFieldStart {
                quoted = true
            } else {
                current.append(c)
            }
            atFieldStart = false
        }
        guard !quoted else { throw DataError("\(source):\(number): a quoted field is not closed") }
        fields.append(current)
        return fields
    }
}
