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

    /// Why the cache did what it did: the `detail` parameter (RFC 9211 §2.8). The cases the
    /// cache decides on are typed where they are decided, and what is counted from them
    /// (/stats, /metrics) reads the case, never the text.
    public enum Detail: Sendable, Equatable, ExpressibleByStringLiteral, CustomStringConvertible {
        /// A stored response had to be validated first (RFC 9111 §4.3).
        case mustValidate(ValidationReason)
        /// A stale response was served because the request allowed it (§4.2.4).
        case staleAllowed(StaleAllowance)
        /// A stale response was served and refreshed behind the client (RFC 5861 §3).
        case staleWhileRevalidate
        /// A stale response was served because the origin failed (RFC 5861 §4, §4.2.4).
        case staleIfError
        /// The request said `no-store` (§5.2.1.5): neither stored nor served from storage.
        case requestNoStore
        /// Anything else, as text: why a response was not stored, an RFC 9209 error type, …
        case other(String)

        public init(stringLiteral value: String) { self = .other(value) }

        /// The detail a Cache-Status carried, typed again (for tools reading the header).
        public init(parsing text: String) {
            if let reason = ValidationReason(rawValue: text) {
                self = .mustValidate(reason)
            } else if let allowance = StaleAllowance(rawValue: text) {
                self = .staleAllowed(allowance)
            } else {
                switch text {
                case "stale-while-revalidate": self = .staleWhileRevalidate
                case "stale-if-error": self = .staleIfError
                case "no-store": self = .requestNoStore
                default: self = .other(text)
                }
            }
        }

        public var description: String {
            switch self {
            case .mustValidate(let reason): reason.rawValue
            case .staleAllowed(let allowance): allowance.rawValue
            case .staleWhileRevalidate: "stale-while-revalidate"
            case .staleIfError: "stale-if-error"
            case .requestNoStore: "no-store"
            case .other(let text): text
            }
        }

        /// A stale response was served.
        public var servedStale: Bool {
            switch self {
            case .staleAllowed, .staleWhileRevalidate, .staleIfError: true
            case .mustValidate, .requestNoStore, .other: false
            }
        }
    }

    public var cacheName: String
    public var hit: Bool
    public var forward: Forward?
    public var forwardStatus: Int?
    public var stored: Bool
    public var collapsed: Bool
    public var ttl: Int64?
    public var key: String?
    public var detail: Detail?

    public init(
        cacheName: String = "outpost", hit: Bool = false, forward: Forward? = nil, forwardStatus: Int? = nil,
        stored: Bool = false, collapsed: Bool = false, ttl: Int64? = nil, key: String? = nil, detail: Detail? = nil
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

    public static func hit(ttl: Int64?, detail: Detail? = nil) -> CacheStatus {
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
        if let detail { value += "; detail=\(StructuredField.string(detail.description))" }
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
