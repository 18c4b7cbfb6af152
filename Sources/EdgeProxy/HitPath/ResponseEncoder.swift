import NIOCore
import NIOHTTP1

/// HTTP/1.1 response framing for traffic connections (RFC 9112 §6, §7), in place of NIO's
/// `HTTPResponseEncoder` and `NIOHTTPResponseHeadersValidator`, for the hit path: a hit's
/// head is serialised once, when its object is prepared, and written as bytes
/// (``PreparedResponse``), so that a hit costs no header serialisation and no header
/// validation (both were done once). Every other response is framed as NIO frames it:
/// Content-Length or chunked, no body for HEAD, CONNECT, 1xx, 204 and 304, a head with a
/// field that could split the message refused.
///
/// Sits after the request decoder: it notes each request's method as the request is decoded
/// (so responses match requests in order, pipelined or not), and turns response parts into
/// bytes on their way out.
final class ResponseEncoder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = IOData

    /// A head whose field section could split the message (RFC 9110 §5.5): not sent.
    struct InvalidHead: Error, CustomStringConvertible {
        var description: String { "response head with an invalid field name or value" }
    }

    /// A body part for a response that has none (HEAD, CONNECT, 1xx, 204, 304).
    struct BodyNotAllowed: Error, CustomStringConvertible {
        var description: String { "response body not allowed" }
    }

    private var methods = CircularBuffer<HTTPMethod>(initialCapacity: 4)
    private var chunked = false
    private var bodyless = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) { methods.append(head.method) }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.version == PreparedResponse.version:
            // The head is in the body part that follows, already serialised.
            _ = methods.popFirst()
            chunked = false
            bodyless = false
            promise?.succeed(())
        case .head(var head):
            let code = head.status.code
            let informational = (100..<200).contains(code) && code != 101
            let method = informational ? nil : methods.popFirst()
            let mayHaveBody = method != .CONNECT && head.status.mayHaveResponseBody
            // RFC 9112 §6.3: how the body is delimited.
            if !mayHaveBody {
                head.headers.remove(name: "content-length")
                head.headers.remove(name: "transfer-encoding")
                chunked = false
            } else if head.headers.contains(name: "content-length") {
                head.headers.remove(name: "transfer-encoding")
                chunked = false
            } else if head.version.major == 1 && head.version.minor >= 1 {
                head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
                chunked = true
            } else {
                chunked = false
            }
            bodyless = !mayHaveBody || method == .HEAD
            if bodyless { chunked = false }
            guard ResponseEncoder.isValid(head.headers) else {
                promise?.fail(InvalidHead())
                context.fireErrorCaught(InvalidHead())
                context.close(promise: nil)
                return
            }
            var buffer = context.channel.allocator.buffer(capacity: 256)
            ResponseEncoder.write(head, into: &buffer)
            context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
        case .body(let body):
            guard !bodyless else {
                promise?.fail(BodyNotAllowed())
                return
            }
            guard chunked else {
                context.write(wrapOutboundOut(body), promise: promise)
                return
            }
            let size = body.readableBytes
            guard size > 0 else {
                promise?.succeed(())
                return
            }
            var header = context.channel.allocator.buffer(capacity: 20)
            header.writeString(String(size, radix: 16))
            header.writeStaticString("\r\n")
            context.write(wrapOutboundOut(.byteBuffer(header)), promise: nil)
            context.write(wrapOutboundOut(body), promise: nil)
            context.write(wrapOutboundOut(.byteBuffer(ByteBuffer(staticString: "\r\n"))), promise: promise)
        case .end(let trailers):
            if chunked {
                var last = context.channel.allocator.buffer(capacity: 64)
                last.writeStaticString("0\r\n")
                if let trailers { ResponseEncoder.write(trailers, into: &last) }
                last.writeStaticString("\r\n")
                context.write(wrapOutboundOut(.byteBuffer(last)), promise: promise)
            } else if let promise {
                context.write(
                    wrapOutboundOut(.byteBuffer(context.channel.allocator.buffer(capacity: 0))), promise: promise)
            }
            chunked = false
            bodyless = false
        }
    }

    /// The status line and field section of a head, with the blank line that ends it.
    static func write(_ head: HTTPResponseHead, into buffer: inout ByteBuffer) {
        writeStatusLine(head, into: &buffer)
        write(head.headers, into: &buffer)
        buffer.writeStaticString("\r\n")
    }

    static func writeStatusLine(_ head: HTTPResponseHead, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(head.version.minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        buffer.writeString(String(head.status.code))
        buffer.writeStaticString(" ")
        buffer.writeString(head.status.reasonPhrase)
        buffer.writeStaticString("\r\n")
    }

    /// Field lines, each ended by CRLF.
    static func write(_ headers: HTTPHeaders, into buffer: inout ByteBuffer) {
        for (name, value) in headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
    }

    /// Field names are tokens; values carry no CR, LF or NUL (RFC 9110 §5.1, §5.5).
    static func isValid(_ headers: HTTPHeaders) -> Bool {
        for (name, value) in headers {
            guard RequestValidation.isToken(name), !RequestValidation.hasControlCharacter(value) else { return false }
        }
        return true
    }
}

/// A hit's response as bytes: the head serialised when the object was prepared, with the
/// fields that change per request appended, and the body. Written as a head carrying
/// ``version`` (which no real response has), one or two body parts and an end, so that the
/// handlers between the hit path and ``ResponseEncoder`` (pipelining, timeouts, errors) see an
/// ordinary response.
enum PreparedResponse {
    static let version = HTTPVersion(major: 0, minor: 0)
    static let head = HTTPResponseHead(version: version, status: .ok)
}
