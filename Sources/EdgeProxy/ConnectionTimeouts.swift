import HTTPCaching
import Logging
import NIOCore
import NIOHTTP1

/// When a connection has waited too long (pure state machine, tested event by event).
///
/// Idle: between requests, a keep-alive connection may wait `idle_timeout` for the first byte
/// of the next request. Reading a head: from that first byte, the whole header section must
/// arrive within `request_header_timeout` (a slow-header client cannot hold a connection
/// forever). Reading a body: each time the server asks the socket for more of a request body,
/// the client has `request_body_timeout` to send some (as nginx's `client_body_timeout`, the
/// time between two reads); while the server does not ask (back-pressure from a slow origin)
/// no timer runs, so the client is never blamed for the server's wait. Busy: while a request
/// is being answered no timer runs here; the upstream timeouts bound that.
///
/// A head or body that times out is answered `408` before the connection closes (RFC 9110
/// §15.5.9), unless a response to it has already begun.
struct ConnectionTimeoutState: Equatable {
    enum Phase: Equatable { case idle, readingHead, readingBody, busy }
    enum Reason: Equatable { case header, body }
    enum Action: Equatable {
        case arm(seconds: Double)
        case disarm
        /// Close quietly (an idle keep-alive connection).
        case close
        /// Answer 408 (unless a response has begun) and close.
        case timedOut(Reason)
        case none
    }

    private(set) var phase: Phase = .idle
    /// The response ended while the request's body was still arriving: the connection goes
    /// idle when the body ends.
    private var answeredEarly = false
    let idleTimeout: Double
    let headerTimeout: Double
    let bodyTimeout: Double

    init(idleTimeout: Double, headerTimeout: Double, bodyTimeout: Double = 30) {
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
    }

    /// The connection opened: wait for a request like any idle connection.
    func start() -> Action { .arm(seconds: idleTimeout) }

    mutating func bytesArrived() -> Action {
        guard phase == .idle else { return .none }
        phase = .readingHead
        return .arm(seconds: headerTimeout)
    }

    /// A request head was decoded; `expectsBody` when it announces one (Content-Length above
    /// zero or chunked).
    mutating func headReceived(expectsBody: Bool = false) -> Action {
        phase = expectsBody ? .readingBody : .busy
        answeredEarly = false
        return .disarm
    }

    /// The server asked the socket for more bytes.
    func readRequested() -> Action { phase == .readingBody ? .arm(seconds: bodyTimeout) : .none }

    /// Part of the request body arrived: the wait it was timing is over.
    func bodyArrived() -> Action { phase == .readingBody ? .disarm : .none }

    /// The request (its body included) has been read.
    mutating func requestEnded() -> Action {
        guard phase == .readingBody else { return .none }
        if answeredEarly {
            answeredEarly = false
            phase = .idle
            return .arm(seconds: idleTimeout)
        }
        phase = .busy
        return .disarm
    }

    mutating func responseEnded() -> Action {
        if phase == .readingBody {
            // Answered before the body ended (an early error): idle once it has.
            answeredEarly = true
            return .none
        }
        guard phase == .busy else { return .none }
        phase = .idle
        return .arm(seconds: idleTimeout)
    }

    func timerFired() -> Action {
        switch phase {
        case .idle: .close
        case .readingHead: .timedOut(.header)
        case .readingBody: .timedOut(.body)
        case .busy: .none
        }
    }
}

/// Runs ``ConnectionTimeoutState`` on a channel. Sits after the HTTP decoder (it sees request
/// heads, body parts, response heads and ends, and the channel's read requests); its
/// ``FirstByteObserver`` sits before the decoder, reports raw bytes, and writes the 408 as
/// raw bytes straight to the socket (the HTTP handlers between may be mid-request). Both live
/// on the channel's event loop.
final class ConnectionTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var state: ConnectionTimeoutState
    private var timer: Scheduled<Void>?
    /// When the scheduled check runs; an earlier deadline reschedules it.
    private var scheduledFor: NIODeadline?
    private var context: ChannelHandlerContext?
    private let logger: Logger?
    /// The raw writer at the front of the pipeline (set when it is added).
    fileprivate var observer: FirstByteObserver?
    /// A response to the current request has begun (its head was written).
    private var responseStarted = false

    init(idleTimeout: Double, headerTimeout: Double, bodyTimeout: Double = 30, logger: Logger? = nil) {
        state = ConnectionTimeoutState(idleTimeout: idleTimeout, headerTimeout: headerTimeout, bodyTimeout: bodyTimeout)
        self.logger = logger
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
        cancelTimer()
        self.context = nil
        observer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        observer = nil
        context.fireChannelInactive()
    }

    /// Called by the observer before the decoder; true when these bytes begin a request.
    @discardableResult
    func bytesArrived() -> Bool {
        let action = state.bytesArrived()
        run(action)
        return action != .none
    }

    /// A request in a version Outpost does not speak (an HTTP/0.9 request line, HTTP/2's
    /// preface): answered 505 and closed at once, instead of leaving the decoder waiting for a
    /// version until the header timeout, or calling it malformed.
    fileprivate func refuseVersion(_ version: String) {
        cancelTimer()
        logger?.notice(
            "rejected request: unsupported HTTP version",
            metadata: [
                "status": "505", "version": "\(version)",
                "peer": "\(context?.channel.remoteAddress?.description ?? "?")",
            ])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): run(state.headReceived(expectsBody: Self.expectsBody(head)))
        case .body: run(state.bodyArrived())
        case .end: run(state.requestEnded())
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        run(state.readRequested())
        context.read()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: responseStarted = true
        case .end: responseEnded()
        case .body: break
        }
        context.write(data, promise: promise)
    }

    /// A request head without a body arrived (called by the hit path for the requests it
    /// answers, which do not pass through this handler).
    func headReceived() {
        responseStarted = false
        run(state.headReceived())
    }

    /// A response ended (likewise).
    func responseEnded() {
        responseStarted = false
        run(state.responseEnded())
    }

    /// Whether a request head announces a body (RFC 9112 §6.3).
    private static func expectsBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers.contains(name: "transfer-encoding") { return true }
        guard let length = head.headers.first(name: "content-length") else { return false }
        return length.trimmingOWS() != "0"
    }

    /// Timers are lazy: arming a later deadline only moves the stored deadline, and the one
    /// scheduled check per connection re-arms itself for it when it fires early, so a request
    /// costs no timer scheduling on the hot path. Arming an earlier deadline than the check's
    /// reschedules the check.
    private var deadline: NIODeadline?

    private func run(_ action: ConnectionTimeoutState.Action) {
        switch action {
        case .arm(let seconds):
            guard let context, seconds > 0 else { return }
            let newDeadline = NIODeadline.now() + .milliseconds(Int64(seconds * 1000))
            deadline = newDeadline
            if let scheduledFor, newDeadline < scheduledFor { cancelTimer() }
            if timer == nil { schedule(at: newDeadline, context: context) }
        case .disarm:
            deadline = nil
        case .close:
            cancelTimer()
            context?.close(promise: nil)
        case .timedOut(let reason):
            cancelTimer()
            let peer = context?.channel.remoteAddress?.description ?? "?"
            let what = reason == .header ? "request_header_timeout" : "request_body_timeout"
            logger?.notice(
                "client too slow: closing its connection",
                metadata: ["timeout": "\(what)", "peer": "\(peer)", "answered": "\(responseStarted ? "-" : "408")"])
            if !responseStarted, let observer {
                observer.sendAndClose(ConnectionTimeoutHandler.requestTimeout)
            } else {
                context?.close(promise: nil)
            }
        case .none:
            break
        }
    }

    /// RFC 9110 §15.5.9: the server closes a connection it has stopped waiting on with 408.
    static let requestTimeout = ByteBuffer(
        string: "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
            + "Content-Length: 16\r\n\r\nrequest timeout\n")

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        scheduledFor = nil
    }

    private func schedule(at when: NIODeadline, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        scheduledFor = when
        timer = context.eventLoop.scheduleTask(deadline: when) { loopBound.value.fired() }
    }

    private func fired() {
        timer = nil
        scheduledFor = nil
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
    typealias OutboundOut = ByteBuffer

    private let timeouts: ConnectionTimeoutHandler
    private var context: ChannelHandlerContext?

    init(timeouts: ConnectionTimeoutHandler) { self.timeouts = timeouts }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        timeouts.observer = self
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if timeouts.bytesArrived(), let version = Self.unsupportedVersion(unwrapInboundIn(data)) {
            timeouts.refuseVersion(version)
            sendAndClose(Self.versionNotSupported)
            return
        }
        context.fireChannelRead(data)
    }

    /// The version a request's first bytes show this server does not speak, if they do: an
    /// HTTP/0.9 request line, or HTTP/2's connection preface (prior knowledge over cleartext,
    /// RFC 9113 §3.4), which llhttp would only call malformed.
    static func unsupportedVersion(_ bytes: ByteBuffer) -> String? {
        if bytes.readableBytesView.starts(with: "PRI * HTTP/2.0".utf8) { return "HTTP/2 prior knowledge" }
        return isHTTP09(bytes) ? "HTTP/0.9" : nil
    }

    /// Whether a request's first bytes hold a complete request line without an HTTP version
    /// (RFC 9112 §2.3: HTTP/0.9's `GET /path`). Leading empty lines are skipped (§2.2); an
    /// incomplete line is left to the decoder.
    static func isHTTP09(_ bytes: ByteBuffer) -> Bool {
        bytes.withUnsafeReadableBytes { raw in
            let start = RequestLineStart.skippingEmptyLines(raw)
            guard let end = raw[start...].firstIndex(of: UInt8(ascii: "\n")) else { return false }
            var line = raw[start..<end]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            // Every HTTP/1.x request line ends with "HTTP/d.d": decided without splitting (this
            // runs at the start of every request, on the hit path).
            if line.count >= 9, line.dropLast(3).suffix(6).elementsEqual(" HTTP/".utf8) { return false }
            // HTTP/0.9 is exactly "METHOD SP TARGET": a token, one space, a target that starts
            // with "/" (or is absolute). Anything else (a version, a fragment of a pipelined
            // request that a read split) is the decoder's to judge.
            let words = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard words.count == 2, !words[0].isEmpty, words[0].allSatisfy(RequestValidation.isTokenByte),
                let first = words[1].first
            else { return false }
            return first == UInt8(ascii: "/") || words[1].starts(with: "http://".utf8)
                || words[1].starts(with: "https://".utf8)
        }
    }

    static let versionNotSupported = ByteBuffer(
        string: "HTTP/1.1 505 HTTP Version Not Supported\r\nConnection: close\r\nContent-Type: text/plain\r\n"
            + "Content-Length: 36\r\n\r\nHTTP/1.0 or HTTP/1.1 requests only.\n")

    /// Writes `bytes` straight to the socket (no handler after this one sees them), then
    /// closes the connection.
    func sendAndClose(_ bytes: ByteBuffer) {
        guard let context else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { _ in bound.value.close(promise: nil) }
    }
}
