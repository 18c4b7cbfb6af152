/// Entity tags (RFC 9110 §8.8.3) and their two comparison functions (§8.8.3.2).
public struct EntityTag: Sendable, Equatable, Hashable {
    public var opaque: String
    public var isWeak: Bool

    public init(opaque: String, isWeak: Bool) {
        self.opaque = opaque
        self.isWeak = isWeak
    }

    /// Parses `"xyz"` or `W/"xyz"`; nil for anything else (an unquoted tag is invalid).
    public init?<S: StringProtocol>(parsing text: S) {
        var rest = Substring(text.trimmingOWS())
        var weak = false
        if rest.hasPrefix("W/") {
            weak = true
            rest = rest.dropFirst(2)
        }
        guard rest.count >= 2, rest.first == "\"", rest.last == "\"" else { return nil }
        let inner = rest.dropFirst().dropLast()
        guard !inner.contains("\"") else { return nil }
        self.opaque = String(inner)
        self.isWeak = weak
    }

    public var headerValue: String { (isWeak ? "W/" : "") + "\"\(opaque)\"" }

    public func strongMatches(_ other: EntityTag) -> Bool { !isWeak && !other.isWeak && opaque == other.opaque }

    public func weakMatches(_ other: EntityTag) -> Bool { opaque == other.opaque }
}

/// The value of If-Match / If-None-Match: `*` or a list of entity tags (RFC 9110 §13.1.1).
public enum EntityTagCondition: Sendable, Equatable {
    case any
    case tags([EntityTag])

    /// Parses all lines of the field. Unparseable members are dropped; a field with none left
    /// is nil so that the condition is ignored rather than failing every request.
    public init?(lines: [String]) {
        let members = lines.flatMap { HeaderFields.splitList($0) }
        guard !members.isEmpty else { return nil }
        if members.contains("*") {
            self = .any
            return
        }
        let tags = members.compactMap { EntityTag(parsing: $0) }
        guard !tags.isEmpty else { return nil }
        self = .tags(tags)
    }
}
