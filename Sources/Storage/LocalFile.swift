import Glibc

/// Facts about files of this shard's own directories, read with plain system calls.
enum LocalFile {
    /// The size of the file at `path` in bytes (0 when it cannot be read: missing, or not ours to stat).
    static func size(atPath path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
    }
}
