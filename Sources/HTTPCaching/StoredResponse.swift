/// A response as the cache keeps it, without its body: status, the header fields that may be
/// stored (RFC 9111 §3.1), and the two clock readings the age calculation needs
/// (RFC 9111 §4.2.3). Times are seconds since the Unix epoch on the cache's clock.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var headers: HeaderFields
    /// When the request that produced this response was sent upstream.
    public var requestTime: Double
    /// When the response head was received.
    public var responseTime: Double
    /// A limit on the freshness lifetime this cache gives the response, whatever its fields
    /// say: a node's own short-lived copy of an object a peer owns (`cluster.local_copy_ttl`,
    /// docs/fleet.md). A cache may always treat a response as stale sooner (RFC 9111 §4.2).
    public var lifetimeCap: Int64?

    public init(status: Int, headers: HeaderFields, requestTime: Double, responseTime: Double) {
        self.status = status
        self.headers = headers
        self.requestTime = requestTime
        self.responseTime = responseTime
    }

    public var cacheControl: CacheControl { CacheControl(headers) }

    /// The Date field, or nil when missing or invalid.
    public var dateValue: Int64? { headers["Date"].flatMap(HTTPDate.parse) }

    /// The Age field (RFC 9111 §5.1): the first member of the first line, digits only. An
    /// invalid value (negative, fractional, with parameters) is treated as absent.
    /// The Age field's delta-seconds (RFC 9111 §5.1); nil when absent or invalid. A value
    /// with parameters or anything but digits (`60;x=1`, `7200.0`) is invalid and ignored. Of
    /// a list (several members or lines, which §5.1 does not allow) the first member is read,
    /// as the conformance suite's age-parse-suffix / -prefix tests require: `7200, 0` is old.
    public var ageValue: Int64? {
        guard let line = headers["Age"], let first = HeaderFields.splitList(line).first else { return nil }
        return DeltaSeconds.parse(first)
    }

    public var lastModified: Int64? { headers["Last-Modified"].flatMap(HTTPDate.parse) }

    public var entityTag: EntityTag? { headers["ETag"].flatMap(EntityTag.init(parsing:)) }

    /// Vary field names, lower-cased, in order of first appearance.
    public var vary: Vary { Vary(headers) }
}
