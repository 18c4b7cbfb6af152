import CacheStore
import ContentCoding
import HTTPCaching
import OutpostConfig

/// Which stored bytes answer a request, in which content coding (RFC 9110 §8.4, §12.5.3).
///
/// An object holds its body as the origin sent it (the primary representation) and, for
/// compressible content, the same content in br and gzip produced by this cache (alternates).
/// A body the origin sent coded can also be decoded on the fly for a client that does not
/// accept its coding.
package struct Representation: Equatable {
    package enum Source: Equatable {
        case primary
        case alternate(Alternate)
        /// The primary body decoded from `coding` while it is sent.
        case decoded(from: String)
    }

    package var source: Source
    /// The coding the client receives.
    var coding: ContentCodingName?

    /// The content coding of the body as the origin sent it: identity, a coding this cache
    /// can decode, or nil for one it cannot (served only as it is).
    static func primaryCoding(_ headers: HeaderFields) -> ContentCodingName? {
        let codings = headers.listMembers("Content-Encoding").map { $0.asciiLowercased() }.filter { $0 != "identity" }
        switch codings.count {
        case 0: return .identity
        case 1 where codings[0] == "gzip" || codings[0] == "x-gzip": return .gzip
        case 1 where codings[0] == "br": return .br
        default: return nil
        }
    }

    /// The representation a request gets, or nil for 406 (nothing acceptable can be sent).
    package static func choose(for record: ObjectRecord, requestHeaders: HeaderFields) -> Representation? {
        guard let primary = primaryCoding(record.response.headers) else {
            return Representation(source: .primary, coding: nil)
        }
        var available: Set<ContentCodingName> = [primary]
        for alternate in record.alternates {
            if let coding = ContentCodingName(rawValue: alternate.coding) { available.insert(coding) }
        }
        if primary != .identity { available.insert(.identity) }
        guard available.count > 1 else { return Representation(source: .primary, coding: primary) }
        switch CodingNegotiation.choose(AcceptEncoding(requestHeaders), available: available) {
        case .notAcceptable:
            return nil
        case .coding(let chosen) where chosen == primary:
            return Representation(source: .primary, coding: primary)
        case .coding(let chosen):
            if let alternate = record.alternates.first(where: { $0.coding == chosen.rawValue }) {
                return Representation(source: .alternate(alternate), coding: chosen)
            }
            return Representation(source: .decoded(from: primary.rawValue), coding: .identity)
        }
    }

    /// Whether the response could have been coded differently, so it varies on Accept-Encoding:
    /// it has codings, it was sent coded, or this cache will code it once someone asks.
    static func variesByCoding(_ record: ObjectRecord, compression: OutpostConfiguration.Compression) -> Bool {
        !record.alternates.isEmpty || primaryCoding(record.response.headers).map { $0 != .identity } ?? false
            || mayBeCoded(record, compression: compression)
    }

    /// The codings this cache produces of a compressible body (RFC 9110 §8.4.1).
    static let producedCodings: Set<ContentCodingName> = [.br, .gzip]

    /// Whether this cache codes a body with these stored fields into br and gzip: a whole 200
    /// sent as identity, of a compressible type, not `no-transform` (RFC 9110 §7.7: an
    /// intermediary must not transform it), and not smaller than `compression.min_size` when
    /// its length is known.
    static func isCompressible(
        status: Int, headers: HeaderFields, length: Int?, compression: OutpostConfiguration.Compression
    ) -> Bool {
        // Cheapest checks first.
        compression.enabled && status == 200 && (length.map { $0 >= compression.minSize } ?? true)
            && !headers.contains("Content-Range") && primaryCoding(headers) == .identity
            && compression.compressibleTypes.contains(contentType: headers["Content-Type"])
            && !(mentionsNoTransform(headers) && CacheControl(headers).has("no-transform"))
    }

    /// Whether a Cache-Control line holds the text `no-transform` at all: a scan of the bytes
    /// that spares the parse (and its Strings) for the responses that cannot have it.
    private static func mentionsNoTransform(_ headers: HeaderFields) -> Bool {
        let needle = Array("no-transform".utf8)
        return headers.values("Cache-Control").contains { line in
            let bytes = Array(line.utf8)
            guard bytes.count >= needle.count else { return false }
            return (0...(bytes.count - needle.count)).contains { start in
                needle.indices.allSatisfy { bytes[start + $0] | 0x20 == needle[$0] | 0x20 }
            }
        }
    }

    /// Whether `record` is compressible and not coded yet: the first request that would take a
    /// coding asks ``BackgroundCoding`` for it.
    package static func mayBeCoded(_ record: ObjectRecord, compression: OutpostConfiguration.Compression) -> Bool {
        record.alternates.isEmpty
            && isCompressible(
                status: record.response.status, headers: record.response.headers, length: record.bodyLength,
                compression: compression)
    }

    /// Whether a request answered with `representation` should ask for the object's codings:
    /// it gets the primary body, names a coding it would take over identity, and the object
    /// may still be coded. Cheapest first: most requests name no coding; `mayBeCoded` is the
    /// costly part (the hit path remembers it per object).
    package static func wantsCoding(
        _ representation: Representation?, requestHeaders: HeaderFields, mayBeCoded: @autoclosure () -> Bool
    ) -> Bool {
        representation?.source == .primary && requestHeaders.contains("Accept-Encoding")
            && prefersProducedCoding(AcceptEncoding(requestHeaders)) && mayBeCoded()
    }

    /// Whether a client with this Accept-Encoding would take one of the produced codings over
    /// identity, were they stored.
    static func prefersProducedCoding(_ accept: AcceptEncoding) -> Bool {
        switch CodingNegotiation.choose(accept, available: producedCodings.union([.identity])) {
        case .coding(let coding): return coding != .identity
        case .notAcceptable: return false
        }
    }

    /// The header fields of this representation: Content-Encoding, a strong entity tag of its
    /// own when this cache coded the bytes (RFC 9110 §8.8.3; a weak one when decoding on the
    /// fly, since those bytes are not stored), and `Vary: Accept-Encoding` when the response
    /// could have been coded differently (RFC 9110 §12.5.5).
    func headers(from stored: HeaderFields, varies: Bool) -> HeaderFields {
        switch source {
        case .primary: return Representation.applying(.asReceived, to: stored, varies: varies)
        case .alternate(let alternate):
            return Representation.applying(
                .encoded(ContentCodingName(rawValue: alternate.coding) ?? .identity), to: stored, varies: varies)
        case .decoded: return Representation.applying(.decoded, to: stored, varies: varies)
        }
    }

    enum Transformation {
        case asReceived
        case encoded(ContentCodingName)
        case decoded
    }

    /// The header fields of a body as received, after this cache coded or decoded it.
    static func applying(_ transformation: Transformation, to stored: HeaderFields, varies: Bool) -> HeaderFields {
        var headers = stored
        let tag = stored["ETag"].flatMap(EntityTag.init(parsing:))
        switch transformation {
        case .asReceived:
            break
        case .encoded(let coding):
            headers.replace("Content-Encoding", with: coding.rawValue)
            if let tag { headers.replace("ETag", with: CodedEntityTag.tag(tag, coding: coding).headerValue) }
        case .decoded:
            headers.remove("Content-Encoding")
            headers.remove("Content-Length")
            if let tag {
                headers.replace("ETag", with: EntityTag(opaque: tag.opaque + "-identity", isWeak: true).headerValue)
            }
        }
        if varies && !headers.listMembers("Vary").contains(where: { $0.equalsIgnoringASCIICase("Accept-Encoding") }) {
            headers.add("Vary", "Accept-Encoding")
        }
        return headers
    }
}
