/// Finds non-finite floats (NaN, ±inf) in gradient bytes, 16 floats at a time: a float is non-finite
/// exactly when its 8 exponent bits are all ones. Used by the client (before sending) and the shard (at
/// the door).
public enum GradientCheck {
    /// The index of the first non-finite float in `bytes` (read as little-endian f32, any alignment), or nil.
    public static func firstNonFinite(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let n = bytes.count / 4
        guard n > 0, let base = bytes.baseAddress else { return nil }
        let exponent = SIMD16<UInt32>(repeating: 0x7f80_0000)
        var i = 0
        while i + 16 <= n {
            let v = base.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self) & exponent
            if any(v .== exponent) { break }
            i += 16
        }
        while i < n {
            if base.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) & 0x7f80_0000 == 0x7f80_0000 { return i }
            i += 1
        }
        return nil
    }
}
