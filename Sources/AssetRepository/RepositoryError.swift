/// A failure of a store operation, phrased for the person who ran it: what, where, and what to do.
public struct RepositoryError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case usage, notFound, conflict, failure, corruption }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
