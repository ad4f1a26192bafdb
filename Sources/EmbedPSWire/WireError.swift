/// A message that could not be decoded. The associated text names the message type and the defect.
public struct WireError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
