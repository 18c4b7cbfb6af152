/// Cache-Control directives (RFC 9111 §5.2), parsed once from all of a message's lines.
///
/// Choices where the standard leaves room, applied the same way to requests and responses:
/// - Names are case-insensitive (§5.2); values are tokens or quoted strings.
/// - A quoted delta-seconds (`max-age="60"`) is *invalid*: §5.2.1.1 and §5.2.2.1 say the
///   argument uses the token form and senders must not quote it, so we do not guess.
/// - A delta-seconds directive repeated with different values is a *conflict* (§4.2.1 allows
///   treating such a response as stale, which is the safe reading).
/// - Unknown directives are kept (so extensions can be read) and otherwise ignored.
public struct CacheControl: Sendable, Equatable {
    public struct Directive: Sendable, Equatable {
        /// Lower-cased directive name.
        public var name: String
        /// The argument with quotes removed, or nil when the directive had none.
        public var value: String?
        public var quoted: Bool

        public init(name: String, value: String?, quoted: Bool) {
            self.name = name
            self.value = value
            self.quoted = quoted
        }
    }

    /// The reading of a delta-seconds directive.
    public enum Seconds: Sendable, Equatable {
        case absent
        case value(Int64)
        /// Present but unusable: no argument, quoted, non-numeric, negative, fractional, or
        /// repeated with a different value.
        case invalid

        public var isPresent: Bool { self != .absent }
    }

    public private(set) var directives: [Directive]

    public init(directives: [Directive] = []) { self.directives = directives }

    /// Parses the lines of a Cache-Control field (several lines form one list, RFC 9110 §5.3).
    public init(lines: [String]) {
        var parsed: [Directive] = []
        for line in lines {
            for member in HeaderFields.splitList(line) {
                if let directive = CacheControl.parseMember(member) { parsed.append(directive) }
            }
        }
        self.directives = parsed
    }

    public init(_ headers: HeaderFields, field: String = "Cache-Control") {
        self.init(lines: headers.values(field))
    }

    public var isEmpty: Bool { directives.isEmpty }

    public func has(_ name: String) -> Bool { directives.contains { $0.name == name } }

    /// The argument of the first occurrence of a directive.
    public func argument(_ name: String) -> String? { directives.first { $0.name == name }?.value }

    /// Reads a delta-seconds directive (RFC 9111 §1.2.2).
    public func seconds(_ name: String) -> Seconds {
        var result = Seconds.absent
        for directive in directives where directive.name == name {
            guard let text = directive.value, !directive.quoted, let value = DeltaSeconds.parse(text) else {
                return .invalid
            }
            switch result {
            case .absent: result = .value(value)
            case .value(let previous) where previous == value: continue
            default: return .invalid
            }
        }
        return result
    }

    /// `max-stale` may appear with no argument, meaning "any staleness" (§5.2.1.2).
    public enum MaxStale: Sendable, Equatable {
        case absent, unlimited, seconds(Int64), invalid
    }

    public var maxStale: MaxStale {
        guard let directive = directives.first(where: { $0.name == "max-stale" }) else { return .absent }
        guard let text = directive.value else { return .unlimited }
        guard !directive.quoted, let value = DeltaSeconds.parse(text) else { return .invalid }
        return .seconds(value)
    }

    private static func parseMember(_ member: String) -> Directive? {
        guard let equals = member.firstIndex(of: "=") else {
            let name = member.trimmingOWS()
            return name.isEmpty ? nil : Directive(name: name.asciiLowercased(), value: nil, quoted: false)
        }
        let name = member[..<equals].trimmingOWS()
        guard !name.isEmpty else { return nil }
        var value = member[member.index(after: equals)...].trimmingOWS()
        var quoted = false
        if value.count >= 2, value.first == "\"", value.last == "\"" {
            quoted = true
            value = value.dropFirst().dropLast()
            let unescaped = String(value).replacingBackslashEscapes()
            return Directive(name: name.asciiLowercased(), value: unescaped, quoted: quoted)
        }
        return Directive(name: name.asciiLowercased(), value: String(value), quoted: quoted)
    }
}

extension String {
    /// Removes quoted-pair backslashes (RFC 9110 §5.6.4).
    func replacingBackslashEscapes() -> String {
        guard contains("\\") else { return self }
        var result = ""
        var escaped = false
        for character in self {
            if escaped {
                result.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                result.append(character)
            }
        }
        return result
    }
}
