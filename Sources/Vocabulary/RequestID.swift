/// A push's idempotency key: chosen by the client, the same on every retry of the same shard part.
public struct RequestID: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64, low: UInt64
    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
    /// 32 hex digits (the `x-embedps-request-id` metadata value); nil when malformed.
    public init?(hex: String) {
        guard hex.utf8.count == 32, let h = UInt64(hex.prefix(16), radix: 16), let l = UInt64(hex.suffix(16), radix: 16) else { return nil }
        high = h; low = l
    }
    public var description: String {
        let h = String(high, radix: 16), l = String(low, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }
}
