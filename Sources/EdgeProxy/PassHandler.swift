import DequeModule
import NIOCore
import NIOHTTP1

/// The tail of a traffic connection's pipeline: each request the hit path passes on
/// (``HitHandler``) becomes a task of its own (``RequestTask``), which answers it through
/// `CachePipeline` and ends with it (docs/architecture.md, "Connections").
///
/// A connection has no task between requests, whatever it did before: an idle kept-alive
/// connection holds only its handlers, the same after a miss as after a hit. (A loop per
/// connection kept its task, and the memory that task's deepest call had needed, for as long
/// as the connection stayed open.) The request's body parts reach the task through a
/// sequence with back-pressure (reads stop while it holds `bodyHighWatermark` parts), and
/// the response goes out through a writer that waits while the socket does not take more.
final class PassHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    typealias Parts = NIOThrowingAsyncSequenceProducer<
        HTTPServerRequestPart, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, Demand
    >
    typealias Writer = NIOAsyncWriter<HTTPServerResponsePart, Output>

    /// Body parts held for the task before reads stop, and the depth at which they resume.
    static let bodyHighWatermark = 8
    static let bodyLowWatermark = 2

    private let requests: PassedRequests
    /// The connection's busy flag (nil on an HTTP/2 stream: ``HTTP2StreamCount`` keeps it).
    private let activity: ConnectionActivity?
    private var context: ChannelHandlerContext?
    /// The current request's body parts, until its `.end` (or the connection's end).
    private var source: Parts.Source?
    /// The current response's writability, until its `.end` has been written.
    private var sink: Writer.Sink?
    /// The task holds as many body parts as it may: reads wait for it.
    private var readsPaused = false
    private var readPending = false
    /// The written `.end` of the last response (a close waits for it to reach the socket).
    private var lastEnd: EventLoopFuture<Void>?
    /// A response said `Connection: close`, or a task asked to close: no request starts.
    private var closing = false
    /// Numbers this connection's requests, so that a task that ends tells of its own request
    /// (the next one may already have started once its `.end` was written).
    private var exchange = 0

    init(requests: PassedRequests, activity: ConnectionActivity?) {
        self.requests = requests
        self.activity = activity
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end(ChannelError.ioOnClosedChannel)
        self.context = nil
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch part {
        case .head(let head):
            start(head, context: context)
        case .body, .end:
            guard let source else { return }  // the task stopped reading: the rest is dropped
            let result = source.yield(part)
            if case .end = part {
                source.finish()
                self.source = nil
            } else if result == .stopProducing {
                readsPaused = true
            }
        }
    }

    private func start(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard !closing else { return }
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        let parts = Parts.makeSequence(
            backPressureStrategy: .init(
                lowWatermark: PassHandler.bodyLowWatermark, highWatermark: PassHandler.bodyHighWatermark),
            finishOnDeinit: true, delegate: Demand(handler: handler))
        let writer = Writer.makeWriter(
            isWritable: context.channel.isWritable, finishOnDeinit: true, delegate: Output(handler: handler))
        // An earlier request's unread rest (its task ended first) is not this one's.
        source?.finish()
        source = parts.source
        sink = writer.sink
        readsPaused = false
        exchange &+= 1
        activity?.setBusy(true)
        let request = PassedRequest(
            head: head, parts: parts.sequence, writer: writer.writer, channel: context.channel, exchange: exchange,
            handler: handler)
        guard requests.submit(request) else {
            // The server has stopped taking requests.
            end(ChannelError.ioOnClosedChannel)
            context.close(promise: nil)
            return
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A request body cut by a parser error: the task sees the error instead of an end.
        if let source {
            source.finish(error)
            self.source = nil
        }
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, let source {
            source.finish(ChannelError.eof)
            self.source = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        sink?.setWritability(to: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    // MARK: outbound

    func read(context: ChannelHandlerContext) {
        if readsPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    /// The task wants more body parts (or no longer reads them).
    fileprivate func resumeReads() {
        readsPaused = false
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    /// Writes a task's response parts, in order, and flushes them.
    fileprivate func deliver(_ parts: some Sequence<HTTPServerResponsePart>) {
        guard let context else { return }
        for part in parts {
            switch part {
            case .head(let head):
                if !head.isKeepAlive, head.status.code >= 200 { closing = true }
                context.write(wrapOutboundOut(part), promise: nil)
            case .body:
                context.write(wrapOutboundOut(part), promise: nil)
            case .end:
                // The response is complete: the connection is idle again (a graceful shutdown
                // may close it), and this response's writer is no longer this handler's.
                activity?.setBusy(false)
                sink = nil
                let promise = context.eventLoop.makePromise(of: Void.self)
                lastEnd = promise.futureResult
                context.write(wrapOutboundOut(part), promise: promise)
            }
        }
        context.flush()
    }

    /// An interim response head for request `number`, written and flushed at once (before any
    /// part of its final response, which goes through the writer after it).
    fileprivate func deliverInterim(_ head: HTTPResponseHead, _ number: Int) {
        guard let context, number == exchange, sink != nil else { return }
        context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
    }

    /// The task of request `number` is done; `close` closes the connection once what it wrote
    /// has reached the socket.
    fileprivate func taskEnded(_ number: Int, close: Bool) {
        guard let context else { return }
        if number == exchange, sink != nil {
            // The task ended without completing its response: it must be cut, never continued.
            sink = nil
            activity?.setBusy(false)
            context.close(promise: nil)
            return
        }
        guard close else { return }
        closing = true
        if let lastEnd {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            lastEnd.whenComplete { _ in bound.value.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    private func end(_ error: any Error) {
        source?.finish(error)
        source = nil
        sink?.finish(error: error)
        sink = nil
    }

    // MARK: delegates (called from any thread; they hop to the connection's loop)

    struct Demand: NIOAsyncSequenceProducerDelegate {
        let handler: NIOLoopBound<PassHandler>

        func produceMore() { onLoop { $0.resumeReads() } }
        func didTerminate() { onLoop { $0.resumeReads() } }

        private func onLoop(_ body: @escaping (PassHandler) -> Void) {
            let handler = self.handler
            if handler.eventLoop.inEventLoop {
                body(handler.value)
            } else {
                handler.eventLoop.execute { body(handler.value) }
            }
        }
    }

    struct Output: NIOAsyncWriterSinkDelegate {
        let handler: NIOLoopBound<PassHandler>

        func didYield(contentsOf parts: Deque<HTTPServerResponsePart>) {
            let handler = self.handler
            if handler.eventLoop.inEventLoop {
                handler.value.deliver(parts)
            } else {
                handler.eventLoop.execute { handler.value.deliver(parts) }
            }
        }

        func didTerminate(error: (any Error)?) {}
    }
}

/// A request the hit path passed on, with what its task needs to read the rest of it and to
/// answer it.
struct PassedRequest: Sendable {
    let head: HTTPRequestHead
    let parts: PassHandler.Parts
    let writer: PassHandler.Writer
    let channel: any Channel
    fileprivate let exchange: Int
    fileprivate let handler: NIOLoopBound<PassHandler>

    /// Writes an interim (1xx) response head on the connection's event loop. It is handed to
    /// the loop before the final response's first part can be (the origin's interim response
    /// arrives before its final one), so it goes out first.
    func interim(_ head: HTTPResponseHead) {
        let (handler, number) = (self.handler, exchange)
        if handler.eventLoop.inEventLoop {
            handler.value.deliverInterim(head, number)
        } else {
            handler.eventLoop.execute { handler.value.deliverInterim(head, number) }
        }
    }

    /// Tells the connection the task is done (and whether the connection must close); the
    /// writer is finished here.
    func ended(close: Bool) {
        writer.finish()
        let (handler, number) = (self.handler, exchange)
        if handler.eventLoop.inEventLoop {
            handler.value.taskEnded(number, close: close)
        } else {
            handler.eventLoop.execute { handler.value.taskEnded(number, close: close) }
        }
    }
}
