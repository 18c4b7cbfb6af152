import NIOCore
import NIOHTTP1

/// When a connection has waited too long (pure state machine, tested event by event).
///
/// Idle: between requests, a keep-alive connection may wait `idle_timeout` for the first byte
/// of the next request. Reading a head: from that first byte, the whole header section must
/// arrive within `request_header_timeout` (a slow-header client cannot hold a connection
/// forever). Busy: while a request is being answered no timer runs here; the upstream
/// timeouts bound that.
struct ConnectionTimeoutState: Equatable {
    enum Phase: Equatable { case idle, readingHead, busy }
    enum Action: Equatable {
        case arm(seconds: Double)
        case disarm
        case close
        case none
    }

    private(set) var phase: Phase = .idle
    let idleTimeout: Double
    let headerTimeout: Double

    init(idleTimeout: Double, headerTimeout: Double) {
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
    }

    /// The connection opened: wait for a request like any idle connection.
    func start() -> Action { .arm(seconds: idleTimeout) }

    mutating func bytesArrived() -> Action {
        guard phase == .idle else { return .none }
        phase = .readingHead
        return .arm(seconds: headerTimeout)
    }

    mutating func headReceived() -> Action {
        phase = .busy
        return .disarm
    }

    mutating func responseEnded() -> Action {
        guard phase == .busy else { return .none }
        phase = .idle
        return .arm(seconds: idleTimeout)
    }

    func timerFired() -> Action { phase == .busy ? .none : .close }
}

/// Runs ``ConnectionTimeoutState`` on a channel. Sits after the HTTP decoder (it sees request
/// heads and response ends); its ``FirstByteObserver`` sits before the decoder and reports raw
/// bytes. Both live on the channel's event loop.
final class ConnectionTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var state: ConnectionTimeoutState
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(idleTimeout: Double, headerTimeout: Double) {
        state = ConnectionTimeoutState(idleTimeout: idleTimeout, headerTimeout: headerTimeout)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { run(state.start()) }
    }

    func channelActive(context: ChannelHandlerContext) {
        run(state.start())
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    /// Called by the observer before the decoder.
    func bytesArrived() { run(state.bytesArrived()) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { headReceived() }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { responseEnded() }
        context.write(data, promise: promise)
    }

    /// A request head arrived (also called by the hit path for the requests it answers,
    /// which do not pass through this handler).
    func headReceived() { run(state.headReceived()) }

    /// A response ended (likewise).
    func responseEnded() { run(state.responseEnded()) }

    /// Timers are lazy: arming only moves the deadline; one scheduled check per connection
    /// re-arms itself for the current deadline when it fires early. So a request costs no
    /// timer scheduling on the hot path.
    private var deadline: NIODeadline?

    private func run(_ action: ConnectionTimeoutState.Action) {
        switch action {
        case .arm(let seconds):
            guard let context, seconds > 0 else { return }
            let newDeadline = NIODeadline.now() + .milliseconds(Int64(seconds * 1000))
            deadline = newDeadline
            if timer == nil { schedule(at: newDeadline, context: context) }
        case .disarm:
            deadline = nil
        case .close:
            timer?.cancel()
            timer = nil
            context?.close(promise: nil)
        case .none:
            break
        }
    }

    private func schedule(at when: NIODeadline, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: when) { loopBound.value.fired() }
    }

    private func fired() {
        timer = nil
        guard let deadline, let context else { return }
        if deadline > NIODeadline.now() {
            schedule(at: deadline, context: context)
            return
        }
        run(state.timerFired())
    }
}

/// Reports raw inbound bytes to the timeout handler, before the HTTP decoder consumes them.
final class FirstByteObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeouts: ConnectionTimeoutHandler

    init(timeouts: ConnectionTimeoutHandler) { self.timeouts = timeouts }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        timeouts.bytesArrived()
        context.fireChannelRead(data)
    }
}
