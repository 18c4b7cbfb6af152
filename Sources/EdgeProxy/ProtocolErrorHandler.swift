import HTTPCaching
import Logging
import NIOCore
import NIOHTTP1

/// Answers requests the HTTP parser rejects, then lets the connection close.
///
/// Like NIO's `HTTPServerProtocolErrorHandler`, but an oversized header section gets 431
/// (RFC 6585 §5) rather than 400, every rejection is logged, and the response says
/// `Connection: close`. Smuggling vectors the parser catches (obs-fold, bare CR, invalid
/// chunk framing, conflicting lengths) land here as 400.
final class ProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var hasUnterminatedResponse = false
    /// A request head arrived and its end has not.
    private var inRequest = false
    /// A response was started for the request in progress.
    private var answeredCurrentRequest = false
    /// This handler answered a malformed request and the connection is closing. When the
    /// parser failed after it had passed a request's head on (a Transfer-Encoding it refuses
    /// is found at the end of the head), its request task may still answer that head; that
    /// would be a second response to one request, so it is dropped.
    private var answeredMalformed = false
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        let status: HTTPResponseStatus
        switch parserError {
        case .headerOverflow: status = .requestHeaderFieldsTooLarge
        // RFC 9110 §15.6.6: a version this server does not speak (HTTP/2.0 prior knowledge
        // over cleartext, HTTP/3.0, HTTP/1.2 that llhttp refuses).
        case .invalidVersion: status = .httpVersionNotSupported
        default: status = .badRequest
        }
        logger.notice(
            "rejected malformed request",
            metadata: [
                "status": "\(status.code)", "error": "\(parserError)",
                "peer": "\(context.remoteAddress?.description ?? "?")",
            ])
        // A request that was already answered (and is being closed) gets no second response.
        if !hasUnterminatedResponse && !(inRequest && answeredCurrentRequest) {
            let body = "\(status.reasonPhrase)\n"
            let headers = HTTPHeaders([
                ("Connection", "close"), ("Content-Length", String(body.utf8.count)), ("Content-Type", "text/plain"),
                ("Cache-Status", CacheStatus(forward: .bypass, detail: "malformed request").headerValue),
            ])
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            answeredMalformed = true
        }
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            inRequest = true
            answeredCurrentRequest = false
        case .body:
            break
        case .end:
            inRequest = false
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if answeredMalformed {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code < 200 || head.status.code == 101:
            break
        case .head:
            hasUnterminatedResponse = true
            answeredCurrentRequest = true
        case .body:
            break
        case .end:
            hasUnterminatedResponse = false
        }
        context.write(data, promise: promise)
    }
}
