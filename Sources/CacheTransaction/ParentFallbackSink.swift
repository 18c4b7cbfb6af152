import HTTPCaching
import NIOCore

/// The sink of a fetch whose parent could not be reached and whose origin answered instead
/// (`upstream.parent_fallback`): every answer it gives — fetched, a 304 applied to the stored
/// copy, stale-if-error — carries Proxy-Status naming what went wrong on the way (RFC 9209).
struct ParentFallbackSink: ResponseSink {
    let inner: any ResponseSink
    /// The Proxy-Status member.
    let note: String

    func sendHead(status: Int, headers: HeaderFields) async throws {
        try await inner.sendHead(status: status, headers: noted(headers))
    }

    func sendResponse(status: Int, headers: HeaderFields, body: ByteBuffer?) async throws {
        try await inner.sendResponse(status: status, headers: noted(headers), body: body)
    }

    func sendBody(_ buffer: ByteBuffer) async throws { try await inner.sendBody(buffer) }
    func sendEnd() async throws { try await inner.sendEnd() }
    func sendInterim(status: Int, headers: HeaderFields) { inner.sendInterim(status: status, headers: headers) }

    private func noted(_ headers: HeaderFields) -> HeaderFields {
        var headers = headers
        headers.add("Proxy-Status", note)
        return headers
    }
}
