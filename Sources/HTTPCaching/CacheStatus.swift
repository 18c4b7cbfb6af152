/// One Cache-Status entry (RFC 9211 §2), this cache's, serialised as a Structured Field list member.
public struct CacheStatus: Sendable, Equatable {
    /// Why the request went forward (RFC 9211 §2.2).
    public enum Forward: String, Sendable, Equatable {
        /// The cache was bypassed by configuration or because the response is known uncacheable.
        case bypass
        /// The method is not one the cache serves from storage.
        case method
        /// Nothing was stored under the URI.
        case uriMiss = "uri-miss"
        /// Something was stored under the URI, but no variant matched.
        case varyMiss = "vary-miss"
        /// Generic miss.
        case miss
        /// A stored response was present but the request's directives forced forwarding.
        case request
        /// A stored response was stale and had to be validated.
        case stale
        /// Only part of the representation was stored, and not the part asked for.
        case partial
    }

    public var cacheName: String
    public var hit: Bool
    public var forward: Forward?
    public var forwardStatus: Int?
    public var stored: Bool
    public var collapsed: Bool
    public var ttl: Int64?
    public var key: String?
    public var detail: String?

    public init(
        cacheName: String = "outpost", hit: Bool = false, forward: Forward? = nil, forwardStatus: Int? = nil,
        stored: Bool = false, collapsed: Bool = false, ttl: Int64? = nil, key: String? = nil, detail: String? = nil
    ) {
        self.cacheName = cacheName
        self.hit = hit
        self.forward = forward
        self.forwardStatus = forwardStatus
        self.stored = stored
        self.collapsed = collapsed
        self.ttl = ttl
        self.key = key
        self.detail = detail
    }

    public static func hit(ttl: Int64?, detail: String? = nil) -> CacheStatus {
        CacheStatus(hit: true, ttl: ttl, detail: detail)
    }

    public var headerValue: String {
        var value = cacheName
        if hit { value += "; hit" }
        if let forward { value += "; fwd=\(forward.rawValue)" }
        if let forwardStatus { value += "; fwd-status=\(forwardStatus)" }
        if stored { value += "; stored" }
        if collapsed { value += "; collapsed" }
        if let ttl { value += "; ttl=\(ttl)" }
        if let key { value += "; key=\(StructuredField.string(key))" }
        if let detail { value += "; detail=\(StructuredField.string(detail))" }
        return value
    }
}

/// Serialising Structured Field values (RFC 8941) for the fields this cache writes.
public enum StructuredField {
    /// An sf-string: printable ASCII between quotes, `"` and `\` escaped, anything else `?`.
    public static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"", "\\": out += "\\" + String(scalar)
            case " "..."~": out.unicodeScalars.append(scalar)
            default: out += "?"
            }
        }
        return out + "\""
    }
}
