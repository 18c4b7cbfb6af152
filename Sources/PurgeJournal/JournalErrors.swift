import PostgresNIO

enum JournalErrors {
    /// The notifications ended without an error (the connection was closed under them).
    struct Closed: Error, CustomStringConvertible {
        var description: String { "the journal connection closed" }
    }

    /// A message an operator can act on. PSQLError's own description hides everything on
    /// purpose (it may hold query values); its code and the server's message do not.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        switch error.code {
        case .server:
            let info = error.serverInfo
            return "PostgreSQL \(info?[.sqlState] ?? "?"): \(info?[.message] ?? "error")"
        case .connectionError:
            return "cannot connect: \(error.underlying.map { "\($0)" } ?? "connection error")"
        case .serverClosedConnection: return "PostgreSQL closed the connection"
        case .clientClosedConnection: return "the connection was closed"
        default: return "PostgreSQL error: \(error.code)"
        }
    }
}
