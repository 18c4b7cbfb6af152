import HTTPCaching
import Logging
import NIOCore

/// The cache's way to the origins: what the pipeline needs of an HTTP client, in Outpost's own
/// types (issue 12). `UpstreamPool` is the production implementation (Outpost's HTTP/1.1
/// client over TCP or TLS); tests use an in-process fake, so the pipeline can be driven
/// without sockets.
protocol Origin: Sendable {
    /// Sends the request and returns once the response head arrived; the body streams from
    /// the returned response. Failures are the ``ProxyError`` to answer with (RFC 9209).
    func execute(_ request: UpstreamRequest, logger: Logger) async throws -> UpstreamResponse
}

/// A request Outpost sends to an origin.
struct UpstreamRequest {
    var origin: OriginURL
    var method: String
    var pathAndQuery: String
    var headers: HeaderFields
    var body: RequestBody?
    /// Told of each interim (1xx) response the origin sends before the final one: status and
    /// fields (RFC 9110 §15.2: a proxy forwards them).
    var interim: (@Sendable (Int, HeaderFields) -> Void)? = nil
}

/// An origin's answer: the final status, its fields, and the body as it streams in.
struct UpstreamResponse: Sendable {
    var status: Int
    var headers: HeaderFields
    var body: UpstreamBody
}

/// The body of an origin response: from a connection, read with back-pressure, or from any
/// stream of buffers (a test's fake origin).
struct UpstreamBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    enum Source: Sendable {
        case connection(OriginBody)
        case stream(AsyncThrowingStream<ByteBuffer, any Error>)
    }

    let source: Source

    init(_ body: OriginBody) { source = .connection(body) }
    init(stream: AsyncThrowingStream<ByteBuffer, any Error>) { source = .stream(stream) }

    struct AsyncIterator: AsyncIteratorProtocol {
        var connection: OriginBody.AsyncIterator?
        var stream: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator?

        mutating func next() async throws -> ByteBuffer? {
            if var iterator = connection {
                defer { connection = iterator }
                return try await iterator.next()
            }
            if var iterator = stream {
                defer { stream = iterator }
                return try await iterator.next()
            }
            return nil
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        switch source {
        case .connection(let body): AsyncIterator(connection: body.makeAsyncIterator(), stream: nil)
        case .stream(let stream): AsyncIterator(connection: nil, stream: stream.makeAsyncIterator())
        }
    }
}
