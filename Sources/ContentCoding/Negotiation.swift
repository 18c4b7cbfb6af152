import HTTPCaching

/// Choosing the content coding of a response (RFC 9110 §12.5.3).
public enum CodingNegotiation {
    public enum Choice: Equatable, Sendable {
        case coding(ContentCodingName)
        /// Nothing the client accepts can be produced: 406 (identity is refused too).
        case notAcceptable
    }

    /// Picks, among the codings this cache has or can produce, the one the client prefers:
    /// highest q-value first, then br, gzip, identity (identity when the request has no
    /// Accept-Encoding at all). A coding with q=0 is never chosen. When
    /// nothing acceptable is available the answer is identity unless identity is refused too
    /// (RFC 9110 §12.5.3: then 406).
    public static func choose(_ accept: AcceptEncoding, available: Set<ContentCodingName>) -> Choice {
        // Without Accept-Encoding any coding is allowed, but such clients expect identity.
        if !accept.isPresent && available.contains(.identity) { return .coding(.identity) }
        var best: (ContentCodingName, Int)?
        for coding in ContentCodingName.allCases where available.contains(coding) {
            let q = accept.quality(coding)
            guard q > 0 else { continue }
            if best == nil || q > best!.1 { best = (coding, q) }
        }
        if let best { return .coding(best.0) }
        if accept.quality(.identity) > 0 { return .coding(.identity) }
        return .notAcceptable
    }
}

/// Which media types are worth compressing (`compression.types`).
public struct CompressibleTypes: Sendable, Equatable {
    public static let defaultPatterns = [
        "text/*", "application/json", "application/javascript", "application/x-javascript", "application/xml",
        "application/xhtml+xml", "application/rss+xml", "application/atom+xml", "application/ld+json",
        "application/manifest+json", "application/wasm", "image/svg+xml", "font/ttf", "font/otf",
    ]

    /// Patterns: `text/*`, or an exact `type/subtype`; parameters are ignored.
    public var patterns: [String] {
        didSet { (exact, wildcardTypes) = Self.split(patterns) }
    }
    /// `patterns` split once into exact media types and the types of `type/*` patterns.
    private var exact: [String]
    private var wildcardTypes: [String]

    public init(patterns: [String] = CompressibleTypes.defaultPatterns) {
        self.patterns = patterns.map { $0.asciiLowercased() }
        (exact, wildcardTypes) = Self.split(self.patterns)
    }

    private static func split(_ patterns: [String]) -> (exact: [String], wildcardTypes: [String]) {
        (
            patterns.filter { !$0.hasSuffix("/*") },
            patterns.filter { $0.hasSuffix("/*") }.map { String($0.dropLast(2)) }
        )
    }

    /// Whether a Content-Type's media type (parameters ignored, case-insensitive) matches.
    /// Asked on every miss and revalidation: compared on the bytes, without copies.
    public func contains(contentType: String?) -> Bool {
        guard let contentType else { return false }
        var media = Substring(contentType)
        if let semicolon = media.utf8.firstIndex(of: UInt8(ascii: ";")) { media = Substring(media.utf8[..<semicolon]) }
        let trimmed = media.trimmingOWS()
        guard let slash = trimmed.utf8.firstIndex(of: UInt8(ascii: "/")) else { return false }
        let type = Substring(trimmed.utf8[..<slash])
        return exact.contains { $0.equalsIgnoringASCIICase(trimmed) }
            || wildcardTypes.contains { $0.equalsIgnoringASCIICase(type) }
    }
}

/// Entity tags of representations this cache codes itself (RFC 9110 §8.8.3): strong tags
/// identify bytes, so the gzip bytes get a tag of their own derived from the origin's.
public enum CodedEntityTag {
    /// `"abc"` → `"abc-br"`; a weak tag stays weak; identity keeps the origin's tag.
    public static func tag(_ origin: EntityTag, coding: ContentCodingName) -> EntityTag {
        guard coding != .identity else { return origin }
        return EntityTag(opaque: origin.opaque + "-" + coding.rawValue, isWeak: origin.isWeak)
    }

    /// The origin's tag and the coding named by a tag this cache derived, or the tag itself as
    /// identity when it has no coding suffix.
    public static func split(_ tag: EntityTag) -> (origin: EntityTag, coding: ContentCodingName) {
        for coding in [ContentCodingName.br, .gzip] where tag.opaque.hasSuffix("-" + coding.rawValue) {
            let opaque = String(tag.opaque.dropLast(coding.rawValue.count + 1))
            return (EntityTag(opaque: opaque, isWeak: tag.isWeak), coding)
        }
        return (tag, .identity)
    }
}
