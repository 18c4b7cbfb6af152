/// The primary cache key (RFC 9111 §2): scheme, normalised authority, path and query.
///
/// The key does not include the method: GET and HEAD share stored responses. The query is
/// kept as sent. The authority is lower-cased and its default port removed, so
/// `HTTP://Example.COM:80/a` and `http://example.com/a` are one key.
public struct CacheKey: Sendable, Hashable, CustomStringConvertible {
    public let scheme: String
    public let authority: String
    /// Path and query, as sent ("/" when the request target is empty).
    public let pathAndQuery: String

    public init(scheme: String, authority: String, pathAndQuery: String) {
        let lowerScheme = scheme.asciiLowercased()
        self.scheme = lowerScheme
        self.authority = CacheKey.normaliseAuthority(authority, scheme: lowerScheme)
        self.pathAndQuery = pathAndQuery.isEmpty ? "/" : pathAndQuery
    }

    private init(normalisedScheme scheme: String, authority: String, pathAndQuery: String) {
        self.scheme = scheme
        self.authority = authority
        self.pathAndQuery = pathAndQuery.isEmpty ? "/" : pathAndQuery
    }

    /// The key of another path and query on the same scheme and authority (already
    /// normalised, so a caller that keeps keys per Host does not normalise it again).
    public func replacingPathAndQuery(_ pathAndQuery: String) -> CacheKey {
        CacheKey(normalisedScheme: scheme, authority: authority, pathAndQuery: pathAndQuery)
    }

    /// The key as one string, e.g. `http://example.com/a?b`.
    public var description: String {
        // Appended, not interpolated: this is built on every hit (tools/bench-instructions).
        var text = scheme
        text.reserveCapacity(scheme.utf8.count + 3 + authority.utf8.count + pathAndQuery.utf8.count)
        text += "://"
        text += authority
        text += pathAndQuery
        return text
    }

    /// The host part of the authority (no port).
    public var host: String {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            return String(authority[...close])
        }
        return String(authority.split(separator: ":", maxSplits: 1).first ?? "")
    }

    /// Parses an absolute URI (`http://host[:port]/path?query`); nil if it is not one.
    public init?(absoluteURI: String) {
        guard let colon = absoluteURI.firstIndex(of: ":"), absoluteURI[colon...].hasPrefix("://") else { return nil }
        let scheme = String(absoluteURI[..<colon])
        guard scheme.asciiLowercased() == "http" || scheme.asciiLowercased() == "https" else { return nil }
        let rest = absoluteURI[absoluteURI.index(colon, offsetBy: 3)...]
        let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = String(rest[..<pathStart])
        guard !authority.isEmpty else { return nil }
        var path = String(rest[pathStart...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.hasPrefix("?") { path = "/" + path }
        self.init(scheme: scheme, authority: authority, pathAndQuery: path)
    }

    /// Resolves a URI reference from a Location or Content-Location field against this key
    /// (RFC 3986 §5.2, for the forms origins send: absolute, absolute-path, relative path).
    public func resolving(_ reference: String) -> CacheKey? {
        let trimmed = String(reference.trimmingOWS())
        guard !trimmed.isEmpty else { return nil }
        if trimmed.contains("://") { return CacheKey(absoluteURI: trimmed) }
        if trimmed.hasPrefix("//") { return CacheKey(absoluteURI: scheme + ":" + trimmed) }
        var withoutFragment = trimmed
        if let hash = withoutFragment.firstIndex(of: "#") { withoutFragment = String(withoutFragment[..<hash]) }
        if withoutFragment.hasPrefix("/") {
            return CacheKey(scheme: scheme, authority: authority, pathAndQuery: withoutFragment)
        }
        let basePath = pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let directory = basePath.lastIndex(of: "/").map { String(basePath[...$0]) } ?? "/"
        return CacheKey(scheme: scheme, authority: authority, pathAndQuery: directory + withoutFragment)
    }

    static func normaliseAuthority(_ authority: String, scheme: String) -> String {
        var lower = authority.asciiLowercased()
        // userinfo is never part of the key (and should not be sent, RFC 9110 §4.2.4).
        if let at = lower.lastIndex(of: "@") { lower = String(lower[lower.index(after: at)...]) }
        let defaultPort = scheme == "https" ? ":443" : ":80"
        if lower.hasSuffix(defaultPort) { lower.removeLast(defaultPort.count) }
        if lower.hasSuffix(":") { lower.removeLast() }
        if lower.hasSuffix(".") { lower.removeLast() }
        return lower
    }
}
