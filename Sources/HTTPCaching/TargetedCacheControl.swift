import RawStructuredFieldValues

/// Targeted cache control (RFC 9213): fields such as `CDN-Cache-Control` that speak to one
/// class of caches and, when present, take the place of Cache-Control for them.
public enum TargetedCacheControl {
    /// The fields this cache obeys, most specific first: the operator's own field, then
    /// `CDN-Cache-Control` (RFC 9213 §2.1: a cache uses the first targeted field it finds).
    public static func targets(operatorField: String?) -> [String] {
        [operatorField, "CDN-Cache-Control"].compactMap { $0 }.filter { !$0.isEmpty }
    }

    /// The directives that govern this cache for a response: the first targeted field that is
    /// present and parses as a Structured Field dictionary, else Cache-Control. An invalid
    /// targeted field is ignored as if absent (RFC 9213 §2.2).
    public static func governing(_ headers: HeaderFields, targets: [String]) -> CacheControl {
        for target in targets {
            let lines = headers.values(target)
            guard !lines.isEmpty else { continue }
            if let parsed = parse(lines) { return parsed }
        }
        return CacheControl(headers)
    }

    /// Parses the lines of a targeted field as one Structured Field dictionary (RFC 8941 §3.2).
    /// Booleans become bare directives (`false` drops the directive), integers delta-seconds;
    /// strings are kept but marked so that `max-age="60"` is an invalid delta-seconds here, as
    /// the field's grammar requires an Integer (RFC 9213 §2.1), although Cache-Control
    /// accepts it.
    public static func parse(_ lines: [String]) -> CacheControl? {
        let combined = lines.joined(separator: ", ")
        var parser = StructuredFieldValueParser(Array(combined.utf8))
        guard let dictionary = try? parser.parseDictionaryFieldValue() else { return nil }
        var directives: [CacheControl.Directive] = []
        for (key, member) in dictionary {
            guard case .item(let item) = member else {
                directives.append(.init(name: key, value: "", quoted: true, argumentInvalid: true))
                continue
            }
            switch item.rfc9651BareItem {
            case .bool(true): directives.append(.init(name: key, value: nil, quoted: false))
            case .bool(false): continue
            case .integer(let value): directives.append(.init(name: key, value: String(value), quoted: false))
            case .decimal(let value):
                directives.append(.init(name: key, value: String(describing: value), quoted: false))
            case .string(let value):
                directives.append(.init(name: key, value: value, quoted: true, argumentInvalid: true))
            case .token(let value): directives.append(.init(name: key, value: value, quoted: false))
            default: directives.append(.init(name: key, value: "", quoted: true, argumentInvalid: true))
            }
        }
        return CacheControl(directives: directives)
    }
}
