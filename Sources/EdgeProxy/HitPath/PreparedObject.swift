import CacheStore
import CacheTransaction
import HTTPCaching
import NIOCore
import NIOHPACK
import NIOHTTP1
import OutpostConfig

/// What a hit needs from one stored object, worked out once per event loop (per object
/// revision and pipeline) instead of on every hit: the governing Cache-Control, the freshness
/// lifetime, the fixed part of the age, and for each representation served so far its view of
/// the response and its response head, ready but for the fields that change per request.
///
/// Everything here is derived by the same functions the pipeline uses (`governingCacheControl`,
/// `lifetime(of:)`, `representationView`, `ChannelResponseSink.head`), so the hit path and the
/// pipeline cannot disagree; only the timing of the work differs.
final class PreparedObject {
    let record: ObjectRecord
    let revision: UInt64
    let cacheControl: CacheControl
    let lifetime: FreshnessLifetime
    /// corrected_initial_age (RFC 9111 §4.2.3): the age is this plus the resident time.
    let initialAge: Double

    /// A representation, its view of the response and its head for a whole 200 (or the stored
    /// status), without Age and Cache-Status, which the hit appends. A class: a hit takes a
    /// reference, not a copy of every field.
    final class Head {
        let representation: Representation
        let selected: StoredResponse
        /// The fields as the pipeline would send them before Age and Cache-Status.
        let fields: HeaderFields
        let template: HTTPHeaders
        /// The status line and `template` serialised (HTTP/1.1), without the blank line that
        /// ends the head; nil when a field could not be sent (the encoder then refuses it).
        let serialised: ByteBuffer?
        /// `template` as an HTTP/2 header block (``HitAnswer/Head/fields``).
        let http2Fields: HPACKHeaders
        /// The body's bytes, without the body itself (``PreparedObject/head(for:inline:pipeline:)``
        /// adds the one that came with a lookup).
        let bytes: StoredBytes

        init(
            representation: Representation, selected: StoredResponse, fields: HeaderFields, template: HTTPHeaders,
            serialised: ByteBuffer?, http2Fields: HPACKHeaders, bytes: StoredBytes
        ) {
            self.representation = representation
            self.selected = selected
            self.fields = fields
            self.template = template
            self.serialised = serialised
            self.http2Fields = http2Fields
            self.bytes = bytes
        }
    }

    /// Representations chosen so far, by the request's Accept-Encoding value (nil key: none
    /// sent), and whether that value would take a coding this cache has yet to produce.
    private var chosen: [String?: (representation: Representation?, wantsCoding: Bool)] = [:]
    /// Whether the object is compressible and not coded yet (see ``BackgroundCoding``), worked
    /// out on the first request that would take a coding (most objects never see one).
    private lazy var mayBeCoded = Representation.mayBeCoded(record, compression: compression)
    private let compression: OutpostConfiguration.Compression
    /// When this loop last asked for the object's codings.
    private var codingAskedAt: Double?
    private var heads: [Representation.Source: Head] = [:]

    init(record: ObjectRecord, revision: UInt64, pipeline: CachePipeline) {
        self.record = record
        self.revision = revision
        cacheControl = pipeline.governingCacheControl(record.response)
        lifetime = pipeline.lifetime(of: record, cacheControl: cacheControl)
        initialAge = Age.correctedInitialAge(of: record.response)
        compression = pipeline.configuration.compression
    }

    /// The last Cache-Status this loop sent for the object, and its field value: hits within
    /// the same second of TTL send the same one, built once.
    private var lastCacheStatus: (status: CacheStatus, value: String)?

    /// `status.headerValue`, remembered for the next hit.
    func cacheStatusValue(_ status: CacheStatus) -> String {
        if let last = lastCacheStatus, last.status == status { return last.value }
        let value = status.headerValue
        lastCacheStatus = (status, value)
        return value
    }

    func age(at now: Double) -> Double {
        Age.current(correctedInitialAge: initialAge, responseTime: record.response.responseTime, now: now)
    }

    /// `Representation.choose`, remembered per Accept-Encoding value (a handful per object).
    /// A request that would take br or gzip of an object not coded yet asks for its codings
    /// (as `CachePipeline.requestCodingIfWanted` does), at most every 10 s per loop in case
    /// the queue was full; it is answered with identity meanwhile.
    // Inlined into the hit (HitHandler.answer): since the pipeline is another module the
    // optimiser left it out of line, ~200 instructions a hit (tools/bench-instructions).
    @inline(__always)
    func representation(for requestHeaders: HeaderFields, now: Double, pipeline: CachePipeline) -> Representation? {
        let accept = requestHeaders.combined("Accept-Encoding")
        let choice: (representation: Representation?, wantsCoding: Bool)
        if let known = chosen[accept] {
            choice = known
        } else {
            let representation = Representation.choose(for: record, requestHeaders: requestHeaders)
            let wantsCoding = Representation.wantsCoding(
                representation, requestHeaders: requestHeaders, mayBeCoded: self.mayBeCoded)
            choice = (representation, wantsCoding)
            if chosen.count >= 16 { chosen.removeAll() }
            chosen[accept] = choice
        }
        if choice.wantsCoding, codingAskedAt.map({ now - $0 >= 10 }) ?? true {
            codingAskedAt = now
            pipeline.backgroundCoding.request(record.id, compression: pipeline.configuration.compression)
        }
        return choice.representation
    }

    /// The head of a representation stored as bytes (nil for one decoded while sent), and its
    /// bytes with the body that came with this lookup (primary representation only).
    // Inlined into the hit (HitHandler.answer): since the pipeline is another module the
    // optimiser left it out of line, ~200 instructions a hit (tools/bench-instructions).
    @inline(__always)
    func head(
        for representation: Representation, inline: ByteBuffer?, pipeline: CachePipeline
    ) -> (head: Head, bytes: StoredBytes)? {
        if let head = heads[representation.source] {
            return (head, head.withInline(inline))
        }
        guard let bytes = StoredBytes(record, representation, inline: nil) else { return nil }
        let selected = pipeline.representationView(record, representation)
        var fields = selected.headers
        // Age is the stored age_value; the hit sends the current age instead.
        fields.remove("Age")
        fields.add("Via", ResponseHeaders.viaMember(pipeline.via))
        if record.response.status == 200 { fields.replace("Accept-Ranges", with: "bytes") }
        fields.replace("Content-Length", with: String(bytes.length))
        let template = ChannelResponseSink.head(
            status: record.response.status, headers: fields, version: .http1_1, keepAlive: true,
            stripSurrogateKeys: !pipeline.configuration.cache.exposeSurrogateKeys
        ).head.headers
        var serialised: ByteBuffer?
        if ResponseEncoder.isValid(template) {
            var buffer = ByteBuffer()
            let status = HTTPResponseStatus(statusCode: record.response.status)
            ResponseEncoder.writeStatusLine(HTTPResponseHead(version: .http1_1, status: status), into: &buffer)
            ResponseEncoder.write(template, into: &buffer)
            serialised = buffer
        }
        let head = Head(
            representation: representation, selected: selected, fields: fields, template: template,
            serialised: serialised, http2Fields: HPACKHeaders(status: record.response.status, template),
            bytes: bytes)
        heads[representation.source] = head
        return (head, head.withInline(inline))
    }
}

extension PreparedObject.Head {
    /// The bytes with the body that came with this lookup (primary representation only).
    fileprivate func withInline(_ inline: ByteBuffer?) -> StoredBytes {
        guard case .primary = representation.source else { return bytes }
        var bytes = self.bytes
        bytes.inline = inline
        return bytes
    }
}

extension Representation.Source: Hashable {
    package func hash(into hasher: inout Hasher) {
        switch self {
        case .primary: hasher.combine(0)
        case .alternate(let alternate):
            hasher.combine(1)
            hasher.combine(alternate.chunkOwner)
        case .decoded(let coding):
            hasher.combine(2)
            hasher.combine(coding)
        }
    }
}
