/// The strong validator of a stored response (RFC 9110 §8.8): what proves two responses carry
/// the same representation, so that their parts may be combined (RFC 9111 §3.4) or a range
/// request may be guarded with If-Range (RFC 9110 §13.1.5).
public enum StrongValidator: Sendable, Equatable {
    /// A strong entity tag (RFC 9110 §8.8.3).
    case entityTag(EntityTag)
    /// A Last-Modified date that is strong because the response's Date is at least one second
    /// later (RFC 9110 §8.8.2.2); used only when the response has no entity tag at all
    /// (RFC 9110 §13.1.5: a date is sent in If-Range only without an entity tag).
    case lastModified(Int64)

    public init?(of response: StoredResponse) {
        if let tag = response.entityTag {
            guard !tag.isWeak else { return nil }
            self = .entityTag(tag)
            return
        }
        guard let lastModified = Self.strongLastModified(response) else { return nil }
        self = .lastModified(lastModified)
    }

    /// The If-Range value that asks for a range of exactly this representation.
    public var ifRangeValue: String {
        switch self {
        case .entityTag(let tag): tag.headerValue
        case .lastModified(let date): HTTPDate.format(date)
        }
    }

    /// True when both responses have a strong validator and it is the same one.
    public static func same(_ first: StoredResponse, _ second: StoredResponse) -> Bool {
        guard let a = StrongValidator(of: first), let b = StrongValidator(of: second) else { return false }
        return a == b
    }

    /// RFC 9110 §13.1.5: does an If-Range value name this stored representation? An entity
    /// tag compares strongly; a date must equal a strong Last-Modified.
    public static func ifRangeMatches(_ value: String, stored: StoredResponse) -> Bool {
        if let tag = EntityTag(parsing: value) {
            guard case .entityTag(let storedTag)? = StrongValidator(of: stored) else { return false }
            return tag.strongMatches(storedTag)
        }
        guard let date = HTTPDate.parse(value), let lastModified = strongLastModified(stored) else { return false }
        return date == lastModified
    }

    /// RFC 9110 §8.8.2.2: Last-Modified is strong for a stored response whose Date is at least
    /// one second later.
    static func strongLastModified(_ response: StoredResponse) -> Int64? {
        guard let lastModified = response.lastModified, let date = response.dateValue, date >= lastModified + 1
        else { return nil }
        return lastModified
    }
}
