/// A request's method (RFC 9110 §9), decided once from the token on the wire: the cache's
/// rules branch on the cases, and the token is kept as sent for the origin and the logs.
package enum RequestMethod: Equatable, Hashable, Sendable, CustomStringConvertible {
    case get
    case head
    case post
    case put
    case delete
    case patch
    case options
    /// Any other method (methods are case-sensitive, §9.1), forwarded as sent.
    case other(String)

    package init(token: String) {
        switch token {
        case "GET": self = .get
        case "HEAD": self = .head
        case "POST": self = .post
        case "PUT": self = .put
        case "DELETE": self = .delete
        case "PATCH": self = .patch
        case "OPTIONS": self = .options
        default: self = .other(token)
        }
    }

    /// The method as sent on the wire.
    package var token: String {
        switch self {
        case .get: "GET"
        case .head: "HEAD"
        case .post: "POST"
        case .put: "PUT"
        case .delete: "DELETE"
        case .patch: "PATCH"
        case .options: "OPTIONS"
        case .other(let token): token
        }
    }

    package var description: String { token }

    /// GET and HEAD: the methods answered from storage (RFC 9111 §3, §4).
    package var isGetOrHead: Bool { self == .get || self == .head }
}
