import Foundation

/// Where the fleet's purge journal lives: `cluster.purge_journal`, a PostgreSQL URL
/// `postgres://user:password@host:port/database?sslmode=disable|require` (libpq's form;
/// `postgresql://` too). The password is a secret: ``description`` masks it.
public struct JournalLocation: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    /// `sslmode=require`: TLS with the system's trust roots; `disable` (the default): none.
    public var requiresTLS: Bool

    public init(parsing text: String) throws {
        guard let components = URLComponents(string: text),
            let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql"
        else {
            throw ConfigurationError(
                "cluster.purge_journal must be a postgres://user:password@host:port/database URL")
        }
        guard let user = components.percentEncodedUser.flatMap({ $0.removingPercentEncoding }), !user.isEmpty else {
            throw ConfigurationError("cluster.purge_journal needs a user (postgres://user@host/database)")
        }
        self.user = user
        password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        port = components.port ?? 5432
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.isEmpty ? user : path
        requiresTLS = false
        for item in components.queryItems ?? [] {
            switch (item.name, item.value ?? "") {
            case ("sslmode", "disable"): requiresTLS = false
            case ("sslmode", "require"), ("sslmode", "verify-full"): requiresTLS = true
            default:
                throw ConfigurationError(
                    "cluster.purge_journal: \(item.name)=\(item.value ?? "") is not supported (sslmode=disable or require)"
                )
            }
        }
    }

    /// The URL with the password masked, for logs and `check-config`.
    public var description: String {
        "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
            + (requiresTLS ? "?sslmode=require" : "")
    }
}
