import Foundation

/// NumPy `.npy` files (format version 1.0): the magic string, a little-endian header length, a Python-dict
/// header (`descr`, `fortran_order`, `shape`) padded with spaces to a multiple of 64 bytes, then the raw
/// little-endian data in C order. Row exports use two files: `<prefix>.ids.npy` ('<u8', shape (n,)) and
/// `<prefix>.values.npy` ('<f4', shape (n, dim)); `numpy.load` reads both.
public enum NumPyFile {
    public struct FormatError: Error, CustomStringConvertible { public let description: String }

    static func header(descr: String, shape: [Int]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = UInt16(dict.utf8.count)
        out += [UInt8(n & 0xff), UInt8(n >> 8)]
        return out + Array(dict.utf8)
    }

    public static func write<T>(_ path: String, descr: String, shape: [Int], values: [T]) throws {
        var data = Data(header(descr: descr, shape: shape))
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// Reads a file of `descr` ('<f4' or '<u8'); returns (shape, values). Errors name the file.
    public static func read<T>(_ path: String, descr: String, as: T.Type) throws -> (shape: [Int], values: [T]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw FormatError(description: "cannot read \(path)") }
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8), bytes[6] == 1 else {
            throw FormatError(description: "\(path) is not a version 1 .npy file")
        }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        guard bytes.count >= 10 + headerLength, let text = String(bytes: bytes[10..<(10 + headerLength)], encoding: .ascii) else {
            throw FormatError(description: "\(path): truncated header")
        }
        guard text.contains("'descr': '\(descr)'"), text.contains("'fortran_order': False") else {
            throw FormatError(description: "\(path): expected dtype \(descr) in C order, header is \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        guard let open = text.range(of: "'shape': ("), let close = text[open.upperBound...].firstIndex(of: ")") else {
            throw FormatError(description: "\(path): no shape in header")
        }
        let shape = text[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let body = bytes.count - 10 - headerLength
        guard body == count * MemoryLayout<T>.size else {
            throw FormatError(description: "\(path): \(body) data bytes for shape \(shape) of \(descr)")
        }
        let values = [T](unsafeUninitializedCapacity: count) { b, n in
            bytes.withUnsafeBytes { UnsafeMutableRawPointer(b.baseAddress!).copyMemory(from: $0.baseAddress! + 10 + headerLength, byteCount: body) }
            n = count
        }
        return (shape, values)
    }
}
