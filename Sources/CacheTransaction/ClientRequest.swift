import HTTPCaching
import NIOCore
import OutpostConfig

/// A request as the cache pipeline sees it, after the connection layer parsed, bounded and
/// routed it.
package struct ClientRequest: Sendable {
    package var method: RequestMethod
    /// The request target as sent (origin-form or absolute-form).
    package var target: String
    /// Path and query to send upstream.
    package var pathAndQuery: String
    package var headers: HeaderFields
    /// The primary cache key (RFC 9111 §2).
    package var key: CacheKey
    package var origin: OriginURL
    package var clientAddress: String?
    /// The request body, streamed from the client while the upstream request is sent.
    package var body: RequestBody?

    package init(
        method: RequestMethod, target: String, pathAndQuery: String, headers: HeaderFields, key: CacheKey,
        origin: OriginURL,
        clientAddress: String?, body: RequestBody?
    ) {
        self.method = method
        self.target = target
        self.pathAndQuery = pathAndQuery
        self.headers = headers
        self.key = key
        self.origin = origin
        self.clientAddress = clientAddress
        self.body = body
    }

    var isGetOrHead: Bool { method.isGetOrHead }
}

/// Where one response goes. The connection layer implements it on top of the channel; every
/// call may throw when the client went away.
package protocol ResponseSink: Sendable {
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
    package func sendInterim(status: Int, headers: HeaderFields) {}

    /// Ends a response whose bytes were all sent. A client that closed the connection as soon
    /// as it had them (a Content-Length response needs no terminator) is not an abort.
    func finish() async {
        try? await sendEnd()
    }

    package func sendResponse(status: Int, headers: HeaderFields, body: ByteBuffer?) async throws {
        try await sendHead(status: status, headers: headers)
        if let body, body.readableBytes > 0 { try await sendBody(body) }
        try await sendEnd()
    }
}

/// What the access log records about a finished request.
package struct RequestOutcome: Sendable {
    package var status: Int
    package var bytes: Int
    package var cacheStatus: CacheStatus
    /// The connection must close after this response (the body was cut short).
    package var mustClose = false

    package init(status: Int, bytes: Int, cacheStatus: CacheStatus, mustClose: Bool = false) {
        self.status = status
        self.bytes = bytes
        self.cacheStatus = cacheStatus
        self.mustClose = mustClose
    }
}

/// The client went away or the response had to be cut short: the connection must close.
package struct ConnectionAbort: Error, CustomStringConvertible {
    package let reason: String
    package var description: String { reason }

    package init(reason: String) { self.reason = reason }
}

/// A sink for responses nobody waits for (background refreshes): the bytes only go to the store.
package struct DiscardingSink: ResponseSink {
    package func sendHead(status: Int, headers: HeaderFields) async throws {}
    package func sendBody(_ buffer: ByteBuffer) async throws {}
    package func sendEnd() async throws {}
}
