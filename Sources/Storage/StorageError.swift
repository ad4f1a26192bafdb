import Foundation
/// A failure of the storage layer. Every case names the path or column family and the RocksDB message.
public enum StorageError: Error, CustomStringConvertible, Sendable {
    case openFailed(path: String, message: String)
    case columnFamily(name: String, message: String)
    case writeFailed(message: String)
    case readFailed(message: String)
    case corruptRow(columnFamily: String, key: [UInt8], message: String)
    case checkpointFailed(path: String, message: String)

    public var description: String {
        switch self {
        case .openFailed(let p, let m): "cannot open RocksDB at \(p): \(m) (is another server using this --data-dir?)"
        case .columnFamily(let n, let m): "column family \(n): \(m)"
        case .writeFailed(let m): "RocksDB write failed: \(m) (check disk space and permissions of the data directory)"
        case .readFailed(let m): "RocksDB read failed: \(m)"
        case .corruptRow(let cf, let k, let m): "corrupt row in \(cf) key \(k.map { String(format: "%02x", $0) }.joined()): \(m)"
        case .checkpointFailed(let p, let m): "checkpoint to \(p) failed: \(m)"
        }
    }
}
