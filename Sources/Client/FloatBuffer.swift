/// A fixed-size, heap-allocated float buffer that can be handed across `await` (rows pulled into it,
/// gradients pushed from it). Owns its memory. Not synchronised: do not write it from two tasks at once.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>
    public init(count: Int, repeating value: Float = 0) {
        self.count = count
        base = .allocate(capacity: max(1, count))
        base.initialize(repeating: value, count: max(1, count))
    }
    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { if let b = $0.baseAddress { base.update(from: b, count: values.count) } }
    }
    deinit { base.deallocate() }
    public subscript(i: Int) -> Float {
        get { base[i] }
        set { base[i] = newValue }
    }
    public var array: [Float] { Array(UnsafeBufferPointer(start: base, count: count)) }
}
