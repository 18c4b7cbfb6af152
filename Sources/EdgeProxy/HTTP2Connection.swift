import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Counts an HTTP/2 connection's open streams (NIO tells it of each stream's start and end,
/// on the connection's event loop): the connection is busy for a graceful shutdown while it
/// has any, closes after `server.idle_timeout` with none, and closes during a drain once the
/// last one ends.
final class HTTP2StreamCount: NIOHTTP2StreamDelegate, @unchecked Sendable {
    // @unchecked: every property but the constants is touched on `channel.eventLoop` only
    // (NIO calls the delegate there, and `start` is called there).
    private let channel: any Channel
    private let registry: ConnectionRegistry
    private let idleTimeout: Double
    private let logger: Logger
    private var open = 0
    private var idle: Scheduled<Void>?

    init(channel: any Channel, registry: ConnectionRegistry, idleTimeout: Double, logger: Logger) {
        self.channel = channel
        self.registry = registry
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    /// The connection is ready: idle until its first stream.
    func start() {
        channel.eventLoop.preconditionInEventLoop()
        armIdle()
        channel.closeFuture.whenComplete { _ in self.idle?.cancel() }
    }

    func streamCreated(_ id: HTTP2StreamID, channel stream: any Channel) {
        open += 1
        if open == 1 {
            idle?.cancel()
            idle = nil
            registry.setBusy(ObjectIdentifier(channel), true)
        }
    }

    func streamClosed(_ id: HTTP2StreamID, channel stream: any Channel) {
        open -= 1
        guard open == 0 else { return }
        registry.setBusy(ObjectIdentifier(channel), false)
        if registry.isDraining {
            channel.close(promise: nil)
        } else {
            armIdle()
        }
    }

    private func armIdle() {
        guard idleTimeout > 0 else { return }
        let channel = self.channel
        idle = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(idleTimeout * 1000))) {
            channel.close(promise: nil)
        }
    }
}

/// Ends an HTTP/2 connection on an error of the connection (a stream's own errors stay on its
/// channel): a flood limit of `[http2]` (rapid reset, CONTINUATION, control frames,
/// glitches) or a protocol error, for which NIO has sent GOAWAY but leaves the close to us,
/// and logs why.
final class HTTP2ConnectionErrors: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame

    private let logger: Logger
    private var logged = false

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !logged {
            logged = true
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

/// A response that makes no progress for `http2.stall_timeout` seconds (its frames wait for a
/// flow-control window the client keeps shut, or for a client that stopped reading) is reset:
/// a zero-window stall must not hold the stream, its buffers and the stored body forever.
/// Progress is a write of this stream reaching the connection (NIO completes a DATA frame's
/// write when the window lets it out).
final class StallGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private let logger: Logger
    /// Writes not out yet, and the timer that runs while there are any.
    private var pending = 0
    private var timer: Scheduled<Void>?

    init(timeout: Double, logger: Logger) {
        self.timeout = .milliseconds(Int64(timeout * 1000))
        self.logger = logger
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let written = promise ?? context.eventLoop.makePromise()
        pending += 1
        if pending == 1 { arm(context: context) }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in
            let (guardian, context) = bound.value
            guardian.pending -= 1
            // Something went out: the clock starts again for what is still waiting.
            guardian.timer?.cancel()
            guardian.timer = nil
            if guardian.pending > 0 { guardian.arm(context: context) }
        }
        context.write(data, promise: written)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    private func arm(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (guardian, context) = bound.value
            guard guardian.pending > 0 else { return }
            guardian.logger.notice(
                "HTTP/2 stream reset: the client let no data through for the stall timeout",
                metadata: [
                    "peer": "\(context.channel.parent?.remoteAddress?.ipAddress ?? "-")",
                    "pending_writes": "\(guardian.pending)",
                ])
            context.close(promise: nil)
        }
    }
}
