import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Counts an HTTP/2 connection's open streams (told by ``HTTP2ConnectionHandler`` of NIO's
/// stream events, on the connection's event loop; streams answered on the connection count
/// too): the connection is busy for a graceful shutdown while it has any, closes after
/// `server.idle_timeout` with none, and closes during a drain once the last one ends.
final class HTTP2StreamCount {
    private let registry: ConnectionRegistry
    private let activity: ConnectionActivity?
    private let idleTimeout: TimeAmount
    private var open = 0
    /// When the connection last became idle (no streams).
    private var idleSince = NIODeadline.now()
    /// One timer, left running while streams come and go: a connection whose streams drain
    /// between every read of a busy client would otherwise schedule and cancel a task each
    /// time (tools/bench-instructions --h2). When it fires it closes the connection if it has
    /// been idle long enough, sets itself for the rest of the time if idle for less, and
    /// stops if busy (the next idle moment sets it again).
    private var idle: Scheduled<Void>?

    init(registry: ConnectionRegistry, activity: ConnectionActivity?, idleTimeout: Double) {
        self.registry = registry
        self.activity = activity
        self.idleTimeout = .milliseconds(Int64(idleTimeout * 1000))
    }

    /// The connection is ready: idle until its first stream.
    func start(_ channel: any Channel) {
        idleSince = .now()
        armIdle(channel, at: idleSince + idleTimeout)
    }

    func stop() {
        idle?.cancel()
        idle = nil
    }

    func opened(_ channel: any Channel) {
        open += 1
        guard open == 1 else { return }
        activity?.setBusy(true)
    }

    func closed(_ channel: any Channel) {
        open -= 1
        guard open == 0 else { return }
        activity?.setBusy(false)
        if registry.isDraining {
            channel.close(promise: nil)
        } else {
            idleSince = .now()
            armIdle(channel, at: idleSince + idleTimeout)
        }
    }

    private func armIdle(_ channel: any Channel, at deadline: NIODeadline) {
        guard idleTimeout > .zero, idle == nil else { return }
        let bound = NIOLoopBound((self, channel), eventLoop: channel.eventLoop)
        idle = channel.eventLoop.scheduleTask(deadline: deadline) {
            let (count, channel) = bound.value
            count.idle = nil
            guard count.open == 0 else { return }
            let due = count.idleSince + count.idleTimeout
            if due <= .now() {
                channel.close(promise: nil)
            } else {
                count.armIdle(channel, at: due)
            }
        }
    }
}

/// A response that makes no progress for `http2.stall_timeout` seconds (its frames wait for a
/// flow-control window the client keeps shut, or for a client that stopped reading) is reset:
/// a zero-window stall must not hold the stream, its buffers and the stored body forever.
///
/// Stuck is either of: the stream's buffer is full (the channel is not writable: a long body
/// waits), or the response's end has been flushed and not gone out (a short response sits
/// whole in the buffer behind a shut window; NIO completes a write when its frame leaves).
/// Progress is the channel becoming writable again or the end going out. The clock runs only
/// while one of the two holds: a response that goes out as it is flushed starts no timer, and
/// only the end's write carries a promise of ours.
final class StallGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private let logger: Logger
    private var endPending = false
    private var lastProgress = NIODeadline.now()
    private var timer: Scheduled<Void>?

    init(timeout: Double, logger: Logger) {
        self.timeout = .milliseconds(Int64(timeout * 1000))
        self.logger = logger
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        let written = promise ?? context.eventLoop.makePromise()
        endPending = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in
            let (guardian, context) = bound.value
            guardian.endPending = false
            guardian.progressed(context: context)
        }
        context.write(data, promise: written)
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
        // What the flush could not send waits for the client's window.
        if endPending && timer == nil { arm(context: context, in: timeout) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            progressed(context: context)
        } else if timer == nil {
            lastProgress = .now()
            arm(context: context, in: timeout)
        }
        context.fireChannelWritabilityChanged()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    private func progressed(context: ChannelHandlerContext) {
        lastProgress = .now()
        if !endPending && context.channel.isWritable {
            timer?.cancel()
            timer = nil
        }
    }

    private func arm(context: ChannelHandlerContext, in delay: TimeAmount) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: delay) {
            let (guardian, context) = bound.value
            guardian.timer = nil
            guard guardian.endPending || !context.channel.isWritable else { return }
            // Something went out since the timer was set: wait the rest of the timeout from then.
            let quiet = NIODeadline.now() - guardian.lastProgress
            guard quiet >= guardian.timeout else {
                guardian.arm(context: context, in: guardian.timeout - quiet)
                return
            }
            guardian.logger.notice(
                "HTTP/2 stream reset: the client let no data through for the stall timeout",
                metadata: ["peer": "\(context.channel.parent?.remoteAddress?.ipAddress ?? "-")"])
            context.close(promise: nil)
        }
    }
}

/// `server.request_body_timeout` on an HTTP/2 stream: a request body that stops arriving
/// while the server reads it resets the stream. The timer runs only while a body is being
/// read (a GET's stream, whose header block ends it, never starts one); the connection's
/// own idle time is ``HTTP2StreamCount``'s.
final class StreamBodyTimeout: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount?
    private let logger: Logger
    private var readingBody = false
    private var timer: Scheduled<Void>?

    init(timeout: Double, logger: Logger) {
        self.timeout = timeout > 0 ? .milliseconds(Int64(timeout * 1000)) : nil
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: readingBody = true
        case .body: disarm()
        case .end:
            readingBody = false
            disarm()
        }
        context.fireChannelRead(data)
    }

    /// The server asks for more of the body: the client has the timeout to send some.
    func read(context: ChannelHandlerContext) {
        if readingBody, timer == nil, let timeout {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(in: timeout) {
                let (handler, context) = bound.value
                handler.timer = nil
                handler.logger.notice(
                    "HTTP/2 stream reset: the request body stalled",
                    metadata: ["peer": "\(context.channel.parent?.remoteAddress?.ipAddress ?? "-")"])
                context.close(promise: nil)
            }
        }
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}
