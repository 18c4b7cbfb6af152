import Logging
import NIOCore
import NIOHTTP2

/// Everything an HTTP/2 connection needs between NIO's HTTP/2 handler and its stream
/// multiplexer, in one handler: every frame and every event of NIO's passes through each
/// handler on the way, and on a 1 KiB hit a handler more cost as much as the TLS record
/// (tools/bench-instructions --h2). In the order a request meets them:
///
/// - a malformed request or trailer block (``HTTP2RequestBlock``) resets its stream with
///   PROTOCOL_ERROR (RFC 9113 §8.1.1) before anything else sees it;
/// - a hit is answered on the connection (``HTTP2ConnectionHits``); every other stream passes on
///   to the multiplexer and a stream channel of its own;
/// - NIO's stream events keep the stream count (``HTTP2StreamCount``: busy, idle timeout,
///   drain) and the connection's inbound window at `http2.connection_window_size`;
/// - an error of the connection (a flood limit, a protocol error: NIO has sent GOAWAY and
///   leaves the close to the user) closes it, logged once.
final class HTTP2ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let streams: HTTP2StreamCount
    private let hits: HTTP2ConnectionHits?
    private let connectionWindow: Int
    private let logger: Logger
    /// Client streams are numbered upwards (RFC 9113 §5.1.1): a HEADERS frame on a stream above
    /// this opens a request; on one at or below it, it carries trailers.
    private var lastStream = HTTP2StreamID(0)
    private var loggedError = false
    /// The inbound connection window last passed on to the multiplexer.
    private var forwardedConnectionWindow: Int?

    init(streams: HTTP2StreamCount, hits: HTTP2ConnectionHits?, connectionWindow: Int, logger: Logger) {
        self.streams = streams
        self.hits = hits
        self.connectionWindow = connectionWindow
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) { streams.start(context.channel) }

    func handlerRemoved(context: ChannelHandlerContext) {
        streams.stop()
        hits?.stop()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .headers(let headers) = frame.payload {
            let opens = frame.streamID > lastStream
            if opens { lastStream = frame.streamID }
            switch HTTP2RequestBlock.read(headers.headers, trailers: !opens) {
            case .malformed(let problem):
                logger.debug(
                    "HTTP/2 stream reset: malformed header block",
                    metadata: [
                        "peer": "\(context.channel.remoteAddress?.ipAddress ?? "-")", "problem": "\(problem)",
                    ])
                context.writeAndFlush(
                    wrapOutboundOut(HTTP2Frame(streamID: frame.streamID, payload: .rstStream(.protocolError))),
                    promise: nil)
                return
            case .request(let request):
                if headers.endStream, let hits, hits.answered(request, on: frame.streamID, context: context) {
                    return
                }
            case .trailers:
                break
            }
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        hits?.readComplete(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Three of these per stream: compared by type first, since a failed cast of an Any costs
        // as much as the rest of this handler's work on them. The events of a stream answered on
        // the connection stop here: the multiplexer has no channel for it.
        let type = ObjectIdentifier(Swift.type(of: event))
        if type == Self.created, let created = event as? NIOHTTP2StreamCreatedEvent {
            streams.opened(context.channel)
            if let hits, hits.owns(created.streamID) { return }
        } else if type == Self.closed, let closed = event as? StreamClosedEvent {
            streams.closed(context.channel)
            if let hits, hits.streamClosed(closed.streamID) { return }
        } else if type == Self.windowUpdated, let update = event as? NIOHTTP2WindowUpdatedEvent {
            if update.streamID == .rootStream {
                // RFC 9113 §6.9.1: top the connection's window up once it has fallen to half. (The
                // multiplexer keeps the stream windows; its own connection target is the stream
                // one, which it acts on only below half of that, never reached above half of a
                // larger one.)
                if let size = update.inboundWindowSize, size <= connectionWindow / 2 {
                    let increment = HTTP2Frame(
                        streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: connectionWindow - size))
                    context.writeAndFlush(wrapOutboundOut(increment), promise: nil)
                    // The update brings its own event (the window after it); this one is stale.
                    return
                }
                // Every DATA frame sent moves the outbound window and brings one of these; the
                // multiplexer only reads the inbound size, so it hears of a change in that alone
                // (the same size again would get the same answer from it).
                if update.inboundWindowSize == forwardedConnectionWindow { return }
                forwardedConnectionWindow = update.inboundWindowSize
            } else if let hits, hits.windowMoved(update.streamID) {
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    private static let created = ObjectIdentifier(NIOHTTP2StreamCreatedEvent.self)
    private static let closed = ObjectIdentifier(StreamClosedEvent.self)
    private static let windowUpdated = ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self)

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A frame for a stream NIO has closed, or that was answered on the connection (a late
        // WINDOW_UPDATE or RST_STREAM): NIO has applied it. A stream's own error (RFC 9113
        // §5.4.2): NIO has reset that stream and tells its channel. The connection goes on.
        if error is NIOHTTP2Errors.NoSuchStream || error is NIOHTTP2Errors.StreamError {
            context.fireErrorCaught(error)
            return
        }
        if !loggedError {
            loggedError = true
            // The client broke the protocol or a flood limit: worth a line. A connection reset
            // or a TLS close is ordinary.
            logger.log(
                level: error is any NIOHTTP2Error ? .notice : .debug, "HTTP/2 connection closed",
                metadata: [
                    "peer": "\(context.channel.remoteAddress?.ipAddress ?? "-")", "error": "\(error)",
                ])
        }
        context.close(promise: nil)
    }
}
