import HTTPCaching
import NIOCore

/// A request as the cache pipeline sees it, after the connection layer parsed, bounded and
/// routed it.
struct ClientRequest: Sendable {
    var method: String
    /// The request target as sent (origin-form or absolute-form).
    var target: String
    /// Path and query to send upstream.
    var pathAndQuery: String
    var headers: HeaderFields
    /// The primary cache key (RFC 9111 §2).
    var key: CacheKey
    var origin: OriginURL
    var clientAddress: String?
    /// The request body, streamed from the client while the upstream request is sent.
    var body: RequestBody?

    var isGetOrHead: Bool { method == "GET" || method == "HEAD" }
}

/// Where one response goes. The connection layer implements it on top of the channel; every
/// call may throw when the client went away.
protocol ResponseSink: Sendable {
    func sendHead(status: Int, headers: HeaderFields) async throws
    func sendBody(_ buffer: ByteBuffer) async throws
    func sendEnd() async throws
    /// A whole response at once (head, body, end): one write and one flush on the socket.
    func sendResponse(status: Int, headers: HeaderFields, body: ByteBuffer?) async throws
    /// An interim (1xx) response from the origin, forwarded at once if the final response has
    /// not started (RFC 9110 §15.2); never stored.
    func sendInterim(status: Int, headers: HeaderFields)
}

extension ResponseSink {
    /// Sinks that cannot send interim responses drop them.
    func sendInterim(status: Int, headers: HeaderFields) {}

    /// Ends a response whose bytes were all sent. A client that closed the connection as soon
    /// as it had them (a Content-Length response needs no terminator) is not an abort.
    func finish() async {
        try? await sendEnd()
    }

    func sendResponse(status: Int, headers: HeaderFields, body: ByteBuffer?) async throws {
        try await sendHead(status: status, headers: headers)
        if let body, body.readableBytes > 0 { try await sendBody(body) }
        try await sendEnd()
    }
}

/// What the access log records about a finished request.
struct RequestOutcome: Sendable {
    var status: Int
    var bytes: Int
    var cacheStatus: CacheStatus
    /// The connection must close after this response (the body was cut short).
    var mustClose = false
}

/// The client went away or the response had to be cut short: the connection must close.
struct ConnectionAbort: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

/// A sink for responses nobody waits for (background refreshes): the bytes only go to the store.
struct DiscardingSink: ResponseSink {
    func sendHead(status: Int, headers: HeaderFields) async throws {}
    func sendBody(_ buffer: ByteBuffer) async throws {}
    func sendEnd() async throws {}
}
