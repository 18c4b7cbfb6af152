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

/// The body of an origin response, read with back-pressure (``OriginBody``). One concrete
/// type, not an enum of sources: an enum over generic sequences cost a miss about 20 000
/// instructions (runtime metadata lookups, multi-payload enum copies; callgrind). An
/// in-process origin hands its bytes over with ``OriginBody/complete(_:)``.
typealias UpstreamBody = OriginBody
