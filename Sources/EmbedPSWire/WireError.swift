/// A message that could not be decoded. The text names the message type, the field and the defect.
public struct WireError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
