import ContentCoding
import HTTPCaching
import NIOCore

/// How one fetched body is coded on its way to the client and into the store (RFC 9110 §8.4).
///
/// A compressible identity body is fed, piece by piece, to a brotli and a gzip encoder; their
/// output is stored beside the body (so a hit never compresses) and, when the client prefers
/// one of them, streamed to it — the same bytes the store keeps, so ranges and entity tags
/// agree between the miss and later hits. A coded body the client cannot take is decoded for
/// it on the fly, capped.
final class FetchCoding {
    enum Client {
        /// The body as the origin sent it.
        case asReceived
        /// One of the encoders' output.
        case encoded(ContentCodingName)
        /// The body decoded from its coding.
        case decoded(StreamCoder)
        /// Nothing the client accepts can be produced: 406.
        case notAcceptable
    }

    private struct Encoder {
        let coding: ContentCodingName
        let coder: StreamCoder
        /// The store stream the output goes to, when the object is being stored.
        var stream: Int?
    }

    let client: Client
    private var encoders: [Encoder]
    /// Whether the response could have been coded differently (so it varies on Accept-Encoding).
    let varies: Bool

    struct Output {
        var client: ByteBuffer?
        var alternates: [(stream: Int, bytes: ByteBuffer)] = []
    }

    /// Plans the coding of a response with these (storable) header fields.
    init(
        status: Int, headers: HeaderFields, requestHeaders: HeaderFields, compression: OutpostConfiguration.Compression,
        clientGetsBodyAsReceived: Bool = false
    ) throws {
        let primary = Representation.primaryCoding(headers)
        // A range cut from a miss is cut from the body as received (its length is known).
        let accept = clientGetsBodyAsReceived ? AcceptEncoding(lines: ["identity"]) : AcceptEncoding(requestHeaders)
        let compressible =
            compression.enabled && status == 200 && primary == .identity
            && compression.compressibleTypes.contains(contentType: headers["Content-Type"])
            && !headers.contains("Content-Range")
            // RFC 9110 §7.7: an intermediary must not transform a no-transform response.
            && !CacheControl(headers).has("no-transform")
            && (headers["Content-Length"].flatMap { Int($0.trimmingOWS()) }.map { $0 >= compression.minSize } ?? true)
        if compressible {
            // A window no larger than the body: brotli's default (4 MiB) and deflate's (256 KiB of
            // state) would be allocated and cleared for every small response.
            let length = headers["Content-Length"].flatMap { Int($0.trimmingOWS()) } ?? (1 << 22)
            let windowBits = max(10, min(22, Int.bitWidth - max(1, length).leadingZeroBitCount + 1))
            encoders = [
                Encoder(
                    coding: .br, coder: try BrotliEncoder(quality: compression.brotliQuality, windowBits: windowBits)),
                Encoder(coding: .gzip, coder: try GzipEncoder(level: compression.gzipLevel, windowBits: windowBits)),
            ]
            varies = true
            switch CodingNegotiation.choose(accept, available: [.identity, .br, .gzip]) {
            case .coding(.identity): client = .asReceived
            case .coding(let coding): client = .encoded(coding)
            case .notAcceptable: client = .notAcceptable
            }
            return
        }
        encoders = []
        guard let primary, primary != .identity, status == 200 || status == 206 else {
            varies = false
            client = .asReceived
            return
        }
        varies = true
        switch CodingNegotiation.choose(accept, available: [primary, .identity]) {
        case .coding(let coding) where coding == primary:
            client = .asReceived
        case .coding:
            guard status == 200,
                let decoder = try Coders.decoder(for: primary.rawValue, outputLimit: compression.maxDecodedSize)
            else {
                client = .asReceived
                return
            }
            client = .decoded(decoder)
        case .notAcceptable:
            client = .notAcceptable
        }
    }

    /// The codings that will be stored beside the body; call once the store writer exists.
    func attach(to addAlternate: (String) -> Int) {
        for index in encoders.indices { encoders[index].stream = addAlternate(encoders[index].coding.rawValue) }
    }

    /// Whether any coding work is needed (for the client or the store).
    var isActive: Bool {
        if case .asReceived = client { return encoders.contains { $0.stream != nil } }
        return true
    }

    /// The header fields the client gets for its coding.
    func clientHeaders(_ forwarded: HeaderFields) -> HeaderFields {
        switch client {
        case .asReceived, .notAcceptable:
            return Representation.applying(.asReceived, to: forwarded, varies: varies)
        case .encoded(let coding):
            // Streamed as it is coded: the length is not known up front.
            var headers = Representation.applying(.encoded(coding), to: forwarded, varies: varies)
            headers.remove("Content-Length")
            return headers
        case .decoded:
            return Representation.applying(.decoded, to: forwarded, varies: varies)
        }
    }

    /// Codes one piece of the body as received.
    func process(_ chunk: ByteBuffer) throws -> Output {
        var output = Output()
        if case .asReceived = client { output.client = chunk }
        if case .decoded(let decoder) = client { output.client = try decoder.process(chunk) }
        for encoder in encoders {
            guard encoder.stream != nil || isClientCoding(encoder.coding) else { continue }
            let coded = try encoder.coder.process(chunk)
            if let stream = encoder.stream { output.alternates.append((stream, coded)) }
            if isClientCoding(encoder.coding) { output.client = coded }
        }
        return output
    }

    /// Ends every coder; the last output.
    func finish() throws -> Output {
        var output = Output()
        if case .decoded(let decoder) = client { output.client = try decoder.finish() }
        for encoder in encoders {
            guard encoder.stream != nil || isClientCoding(encoder.coding) else { continue }
            let coded = try encoder.coder.finish()
            if let stream = encoder.stream { output.alternates.append((stream, coded)) }
            if isClientCoding(encoder.coding) { output.client = coded }
        }
        return output
    }

    private func isClientCoding(_ coding: ContentCodingName) -> Bool {
        if case .encoded(let chosen) = client { return chosen == coding }
        return false
    }
}
