import NIOCore

/// A request body on its way from the client to the origin: the parts as the client sends
/// them, and the length it declared (nil: sent chunked, RFC 9112 §7.1).
///
/// Outpost's own type, so the pipeline and the origin client share no HTTP client library's
/// types. It is read once: a request whose body has begun to flow is never sent again.
package struct RequestBody: Sendable {
    package let parts: AsyncThrowingStream<ByteBuffer, any Error>
    package let length: Int?

    package init(parts: AsyncThrowingStream<ByteBuffer, any Error>, length: Int?) {
        self.parts = parts
        self.length = length
    }
}
