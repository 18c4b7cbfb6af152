import ContentCoding
import HTTPCaching
import NIOCore
import OutpostConfig

/// How one fetched body reaches the client (RFC 9110 §8.4).
///
/// The client gets the body as the origin sent it: this cache never codes between the
/// origin's bytes and the client. A compressible identity body is coded into br and gzip
/// later, off the event loops, after it committed and once a client asked for a coding
/// (``BackgroundCoding``); until then every client gets identity, with `Vary:
/// Accept-Encoding` since the answer will change. A coded body the client cannot take is
/// decoded for it on the fly, capped.
package final class FetchCoding {
    enum Client {
        /// The body as the origin sent it.
        case asReceived
        /// The body decoded from its coding.
        case decoded(StreamCoder)
        /// Nothing the client accepts can be produced: 406.
        case notAcceptable
    }

    let client: Client
    /// Whether the response could have been coded differently (so it varies on Accept-Encoding).
    let varies: Bool
    /// Whether this cache will code the body into br and gzip once it is stored and the client
    /// would have taken one of them: the first demand for them.
    let codingDemanded: Bool

    struct Output {
        var client: ByteBuffer?
    }

    /// Plans the coding of a response with these (storable) header fields.
    init(
        status: Int, headers: HeaderFields, requestHeaders: HeaderFields, compression: OutpostConfiguration.Compression,
        clientGetsBodyAsReceived: Bool = false
    ) throws {
        let primary = Representation.primaryCoding(headers)
        // A range cut from a miss is cut from the body as received (its length is known).
        let requested = AcceptEncoding(requestHeaders)
        let accept = clientGetsBodyAsReceived ? AcceptEncoding(lines: ["identity"]) : requested
        let compressible = Representation.isCompressible(
            status: status, headers: headers, length: headers["Content-Length"].flatMap { Int($0.trimmingOWS()) },
            compression: compression)
        if compressible {
            varies = true
            codingDemanded = Representation.prefersProducedCoding(requested)
            switch CodingNegotiation.choose(accept, available: [.identity]) {
            case .coding: client = .asReceived
            case .notAcceptable: client = .notAcceptable
            }
            return
        }
        codingDemanded = false
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

    /// The header fields the client gets for its coding.
    func clientHeaders(_ forwarded: HeaderFields) -> HeaderFields {
        switch client {
        case .asReceived, .notAcceptable:
            return Representation.applying(.asReceived, to: forwarded, varies: varies)
        case .decoded:
            return Representation.applying(.decoded, to: forwarded, varies: varies)
        }
    }

    /// Codes one piece of the body as received.
    func process(_ chunk: ByteBuffer) throws -> Output {
        if case .decoded(let decoder) = client { return Output(client: try decoder.process(chunk)) }
        return Output(client: chunk)
    }

    /// Ends the decoder, if any; the last output.
    func finish() throws -> Output {
        if case .decoded(let decoder) = client { return Output(client: try decoder.finish()) }
        return Output()
    }
}
