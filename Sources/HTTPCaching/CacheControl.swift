/// Cache-Control directives (RFC 9111 §5.2), parsed once from all of a message's lines.
///
/// Choices where the standard leaves room, applied the same way to requests and responses:
/// - Names are case-insensitive (§5.2); values are tokens or quoted strings.
/// - A quoted delta-seconds (`max-age="60"`) is *accepted*: §5.2 lets every argument use the
///   token or the quoted-string form, and §5.2.1.1 / §5.2.2.1 only tell senders to prefer the
///   token; the quoted digits mean the same number (issue 11, as most caches read it).
/// - A delta-seconds value with a decimal point or trailing letters (`1.5`, `60s`) is
///   *invalid* (§1.2.2: digits only).
/// - Whitespace around `=` (`max-age = 60`) is *invalid*: the member is not
///   `token "=" ( token / quoted-string )`, so its argument is not read.
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
        /// Its argument can never be a delta-seconds: whitespace around its `=`, or a String
        /// (not an Integer) in a targeted field (RFC 9213 §2.1).
        public var argumentInvalid: Bool

        public init(name: String, value: String?, quoted: Bool, argumentInvalid: Bool = false) {
            self.name = name
            self.value = value
            self.quoted = quoted
            self.argumentInvalid = argumentInvalid
        }
    }

    /// The reading of a delta-seconds directive.
    public enum Seconds: Sendable, Equatable {
        case absent
        case value(Int64)
        /// Present but unusable: no argument, non-numeric, negative, fractional, whitespace
        /// around `=`, or repeated with a different value.
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
            guard !directive.argumentInvalid, let text = directive.value, let value = DeltaSeconds.parse(text) else {
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
        guard !directive.argumentInvalid else { return .invalid }
        guard let text = directive.value else { return .unlimited }
        guard let value = DeltaSeconds.parse(text) else { return .invalid }
        return .seconds(value)
    }

    private static func parseMember(_ member: String) -> Directive? {
        guard let equals = member.firstIndex(of: "=") else {
            let name = member.trimmingOWS()
            return name.isEmpty ? nil : Directive(name: name.asciiLowercased(), value: nil, quoted: false)
        }
        let name = member[..<equals].trimmingOWS()
        guard !name.isEmpty else { return nil }
        let rawValue = member[member.index(after: equals)...]
        // RFC 9111 §5.2: `token [ "=" ( token / quoted-string ) ]`, no whitespace around "=".
        if member[..<equals].last.map({ $0 == " " || $0 == "\t" }) == true
            || rawValue.first.map({ $0 == " " || $0 == "\t" }) == true
        {
            return Directive(name: name.asciiLowercased(), value: nil, quoted: false, argumentInvalid: true)
        }
        var value = rawValue.trimmingOWS()
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
