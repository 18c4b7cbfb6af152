/// Content-Range of a single-part 206 (RFC 9110 §14.4): `bytes first-last/complete`.
public struct ContentRange: Sendable, Equatable {
    public var first: Int64
    public var last: Int64
    /// The complete length; nil when the sender wrote `*`.
    public var completeLength: Int64?

    public init(first: Int64, last: Int64, completeLength: Int64?) {
        self.first = first
        self.last = last
        self.completeLength = completeLength
    }

    /// Parses `bytes 0-99/1234` (or `/*`); nil for anything else, `bytes */1234` included.
    public init?(parsing text: String) {
        let trimmed = text.trimmingOWS()
        guard trimmed.count > 6, trimmed.prefix(6).equalsIgnoringASCIICase("bytes ") else { return nil }
        let spec = trimmed.dropFirst(6)
        let halves = spec.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard halves.count == 2 else { return nil }
        let bounds = halves[0].split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = DeltaSeconds.parseNumber(bounds[0]),
            let last = DeltaSeconds.parseNumber(bounds[1]), first <= last
        else { return nil }
        var complete: Int64?
        if halves[1] != "*" {
            guard let length = DeltaSeconds.parseNumber(halves[1]), last < length else { return nil }
            complete = length
        }
        self.init(first: first, last: last, completeLength: complete)
    }

    public var length: Int64 { last - first + 1 }

    public var headerValue: String { "bytes \(first)-\(last)/\(completeLength.map(String.init) ?? "*")" }

    /// The part a 206 actually carried, given how many body bytes arrived: the declared part,
    /// or its beginning when fewer bytes came (kept like an incomplete response, RFC 9111
    /// §3.3: the bytes are stored at the positions they were sent for, and no further). Nil
    /// when nothing arrived or more arrived than the part holds: such a part is not stored.
    public func received(_ count: Int64) -> ContentRange? {
        guard count > 0, count <= length else { return nil }
        return ContentRange(first: first, last: first + count - 1, completeLength: completeLength)
    }
}

extension DeltaSeconds {
    /// Digits only, at most 18 of them (byte positions; no saturation).
    static func parseNumber<S: StringProtocol>(_ text: S) -> Int64? {
        guard !text.isEmpty, text.count <= 18, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int64(text)
    }
}
