import CacheTransaction
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import OutpostConfig

/// HTTP/1.1 to the origins, over TCP or TLS: each event loop keeps its own keep-alive
/// connections per origin, so a fetch takes no process-wide lock and its connection's work
/// stays on one loop (issue 9; what async-http-client spent per request on its pool, request
/// preparation and tracing was about a quarter of a miss). Every request goes this way, with or
/// without a body, so interim responses (RFC 9110 §15.2) reach the client whatever the origin's
/// scheme.
final class OriginClient: Sendable {
    struct Settings: Sendable {
        var connectTimeout: TimeAmount
        var readTimeout: TimeAmount
        var responseTimeout: TimeAmount
        /// Connections per origin on each event loop (the configured limit shared out).
        var connectionsPerLoop: Int
        /// Requests per origin that may wait on each event loop for a connection (the
        /// configured `max_queued_requests` shared out); past it a request fails at once.
        var queuedPerLoop: Int = 1024
        /// For `https` origins: trust roots, TLS 1.2 or later, certificates always verified.
        var tls: NIOSSLContext? = nil
    }

    private let group: any EventLoopGroup
    private let settings: Settings
    private let pools: [ObjectIdentifier: LoopPool]

    init(group: any EventLoopGroup, settings: Settings) {
        self.group = group
        self.settings = settings
        var pools: [ObjectIdentifier: LoopPool] = [:]
        for loop in group.makeIterator() { pools[ObjectIdentifier(loop)] = LoopPool(loop: loop, settings: settings) }
        self.pools = pools
    }

    /// Sends a request; returns once the response head arrived, while a request body may still be
    /// on its way (an origin may answer before it has read it all). A request without a body on
    /// a kept-alive connection that the origin had closed meanwhile is sent once more on a new
    /// one; a request with a body is not, since its body can be read only once. Errors are the
    /// connection's own; ``UpstreamPool`` maps them to what the client gets.
    func execute(_ request: UpstreamRequest) async throws -> UpstreamResponse {
        let loop = group.any()
        guard let pool = pools[ObjectIdentifier(loop)] else {
            throw ProxyError.connectionRefused("no connection pool for this event loop")
        }
        var head = HTTPRequestHead(
            version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.pathAndQuery)
        for field in request.headers { head.headers.add(name: field.name, value: field.value) }
        if let requestBody = request.body {
            // The framing is this hop's own (RFC 9112 §6): the declared length, else chunked.
            head.headers.remove(name: "Content-Length")
            head.headers.remove(name: "Transfer-Encoding")
            if let length = requestBody.length {
                head.headers.add(name: "Content-Length", value: String(length))
            } else {
                head.headers.add(name: "Transfer-Encoding", value: "chunked")
            }
        }
        let outgoing = head
        let origin = request.origin
        let interim = request.interim
        let outgoingBody = request.body
        // One deadline for the head, whatever the request waits for on the way: a free
        // connection, a connection, a second attempt.
        let deadline = NIODeadline.now() + settings.responseTimeout
        return try await loop.flatSubmit {
            pool.execute(
                outgoing, body: outgoingBody, origin: origin, deadline: deadline, mayRetry: outgoingBody == nil,
                interim: interim)
        }.get()
    }

    /// Closes every connection (at shutdown).
    func shutdown() async {
        for pool in pools.values {
            try? await pool.loop.flatSubmit { pool.closeAll() }.get()
        }
    }
}

/// One event loop's connections, by origin. Touched only on that loop (futures carry it
/// between callbacks that all run there, hence the unchecked conformance).
final class LoopPool: @unchecked Sendable {
    let loop: any EventLoop
    private let settings: OriginClient.Settings
    private var idle: [String: [OriginConnection]] = [:]
    private var open: [String: Int] = [:]
    /// Requests waiting for a connection to an origin at its limit, in arrival order.
    private var waiting: [String: [EventLoopPromise<OriginConnection?>]] = [:]
    private var closed = false

    /// How long an idle connection is kept for reuse (async-http-client's pool used 50 s).
    static let idleLimit = TimeAmount.seconds(50)

    init(loop: any EventLoop, settings: OriginClient.Settings) {
        self.loop = loop
        self.settings = settings
    }

    func execute(
        _ head: HTTPRequestHead, body: RequestBody?, origin: OriginURL, deadline: NIODeadline, mayRetry: Bool,
        interim: (@Sendable (Int, HeaderFields) -> Void)? = nil
    ) -> EventLoopFuture<UpstreamResponse> {
        acquire(origin, deadline: deadline).flatMap { connection, reused in
            connection.send(
                head, body: body, deadline: deadline, readTimeout: self.settings.readTimeout,
                responseTimeout: self.settings.responseTimeout, interim: interim
            )
            .flatMapError { error in
                // A kept-alive connection the origin closed before it read the request: the
                // request had no effect; GET and HEAD are safe to send again (RFC 9110 §9.2.2).
                // One with a body is not: its body is read once.
                if reused, mayRetry, error is OriginConnection.ClosedBeforeResponse {
                    return self.execute(
                        head, body: nil, origin: origin, deadline: deadline, mayRetry: false, interim: interim)
                }
                return self.loop.makeFailedFuture(error)
            }
        }
    }

    /// An idle connection, a new one, or the next one released when the origin is at its limit.
    private func acquire(
        _ origin: OriginURL, deadline: NIODeadline
    ) -> EventLoopFuture<(OriginConnection, reused: Bool)> {
        let key = origin.description
        let now = NIODeadline.now()
        while var connections = idle[key], let connection = connections.popLast() {
            idle[key] = connections
            // Idle too long: the origin may be about to close it; a fresh one is safer.
            if connection.isUsable && now - connection.idleSince < LoopPool.idleLimit {
                return loop.makeSucceededFuture((connection, true))
            }
            connection.close()
        }
        if closed { return loop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        if open[key, default: 0] >= settings.connectionsPerLoop {
            // Every connection busy: wait in line, up to a bound (a hanging origin must not
            // collect every request in memory), and against the response deadline.
            guard waiting[key, default: []].count < settings.queuedPerLoop else {
                return loop.makeFailedFuture(
                    ProxyError.connectionLimitReached(
                        "all \(settings.connectionsPerLoop) connections to \(origin) on this thread are busy and "
                            + "\(settings.queuedPerLoop) requests wait for one (upstream.max_queued_requests)"))
            }
            let promise = loop.makePromise(of: OriginConnection?.self)
            waiting[key, default: []].append(promise)
            let timeout = loop.scheduleTask(deadline: deadline) {
                guard var queue = self.waiting[key],
                    let index = queue.firstIndex(where: { $0.futureResult === promise.futureResult })
                else { return }
                queue.remove(at: index)
                self.waiting[key] = queue
                promise.fail(
                    ProxyError.connectionLimitReached(
                        "no connection to \(origin) came free in time (all \(self.settings.connectionsPerLoop) busy)"))
            }
            return promise.futureResult.flatMap { connection in
                timeout.cancel()
                if let connection { return self.loop.makeSucceededFuture((connection, true)) }
                return self.acquire(origin, deadline: deadline)
            }
        }
        open[key, default: 0] += 1
        return OriginConnection.connect(
            to: origin, on: loop, timeout: settings.connectTimeout, tls: settings.tls,
            released: { connection in self.release(connection, origin: origin) },
            gone: { _ in self.connectionGone(origin) }
        )
        .map { ($0, false) }
    }

    /// Called by a connection whose exchange ended with the connection reusable.
    private func release(_ connection: OriginConnection, origin: OriginURL) {
        let key = origin.description
        guard !closed else {
            connection.close()
            return
        }
        // Not usable after all (closing as it ended): it reports itself gone.
        guard connection.isUsable else { return }
        if !wakeNextWaiter(key, with: connection) { idle[key, default: []].append(connection) }
    }

    /// A connection closed or failed to open: a waiting request may open one in its place.
    private func connectionGone(_ origin: OriginURL) {
        let key = origin.description
        open[key] = max(0, open[key, default: 1] - 1)
        wakeNextWaiter(key, with: nil)
    }

    /// Hands the oldest request waiting for `key` a connection (nil: room to open one). False
    /// when none waits.
    @discardableResult
    private func wakeNextWaiter(_ key: String, with connection: OriginConnection?) -> Bool {
        guard var queue = waiting[key], !queue.isEmpty else { return false }
        let next = queue.removeFirst()
        waiting[key] = queue
        next.succeed(connection)
        return true
    }

    func closeAll() -> EventLoopFuture<Void> {
        closed = true
        let connections = idle.values.flatMap { $0 }
        idle = [:]
        for promise in waiting.values.flatMap({ $0 }) { promise.fail(ChannelError.ioOnClosedChannel) }
        waiting = [:]
        for connection in connections { connection.close() }
        return loop.makeSucceededVoidFuture()
    }
}

/// Back-pressure from a body's consumer to its connection: more is read only on demand.
///
/// It names its exchange: the connection may already carry the next request when a finished
/// body's consumer reports, and that report must not touch the next exchange.
/// One keep-alive connection to an origin and the exchange on it (one at a time). A channel
/// handler: touched only on its channel's event loop (futures carry it between callbacks that
/// all run there, hence the unchecked conformance).
final class OriginConnection: ChannelDuplexHandler, OriginBodySource, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The connection ended before any byte of the response: the request had no effect.
    struct ClosedBeforeResponse: Error {}

    private enum State {
        case idle
        case awaitingHead(EventLoopPromise<UpstreamResponse>)
        case streaming(OriginBody.Source, keepAlive: Bool)
        case closed
    }

    private var state = State.idle
    /// Whether the current exchange's request has been written to its end; a connection whose
    /// origin answered before the whole request body went out is not reused.
    private var requestComplete = true
    /// Bytes of a request body with a declared length still to be written.
    private var requestBodyRemaining: Int?
    /// Numbers the exchanges on this connection (see ``OriginBodyDemand``).
    private var exchange: UInt64 = 0
    /// When the connection last went idle: one idle for longer than the pool keeps them is
    /// closed instead of reused.
    private(set) var idleSince = NIODeadline.now()
    private var context: ChannelHandlerContext?
    private let released: (OriginConnection) -> Void
    private let gone: (OriginConnection) -> Void
    private var reportedGone = false
    private var readsWanted = true
    private var readPending = false
    private var headDeadline: Scheduled<Void>?
    private var readDeadline: Scheduled<Void>?
    private var readTimeout: TimeAmount = .seconds(30)
    private var responseTimeout: TimeAmount = .seconds(30)
    /// When the body last brought bytes; the read timer checks it instead of being moved on
    /// every read.
    private var lastRead = NIODeadline.now()

    let origin: OriginURL
    /// Where the current exchange's interim responses go.
    private var interim: (@Sendable (Int, HeaderFields) -> Void)?
    private let loop: any EventLoop

    private init(
        origin: OriginURL, loop: any EventLoop, released: @escaping (OriginConnection) -> Void,
        gone: @escaping (OriginConnection) -> Void
    ) {
        self.origin = origin
        self.loop = loop
        self.released = released
        self.gone = gone
    }

    var isUsable: Bool {
        if case .idle = state, context?.channel.isActive == true { return true }
        return false
    }

    static func connect(
        to origin: OriginURL, on loop: any EventLoop, timeout: TimeAmount, tls: NIOSSLContext?,
        released: @escaping (OriginConnection) -> Void, gone: @escaping (OriginConnection) -> Void
    ) -> EventLoopFuture<OriginConnection> {
        let connection = OriginConnection(origin: origin, loop: loop, released: released, gone: gone)
        return ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if origin.scheme == "https" {
                        guard let tls else { throw ProxyError.internalError("no TLS context for \(origin)") }
                        // SNI carries a host name, never an address (RFC 6066 §3); for an address
                        // NIOSSL checks the certificate against the address connected to.
                        let name = origin.hostIsAddress ? nil : origin.host
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls, serverHostname: name))
                    }
                    // NIO's client handlers, but with interim responses passed on (its default
                    // decoder drops them): 103 Early Hints are forwarded to the client.
                    try channel.pipeline.syncOperations.addHandlers([
                        HTTPRequestEncoder(),
                        ByteToMessageHandler(
                            HTTPResponseDecoder(
                                leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)
                        ),
                        NIOHTTPRequestHeadersValidator(),
                    ])
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(host: origin.host, port: origin.port)
            .map { _ in connection }
            .flatMapErrorThrowing { error in
                connection.reportGone()
                throw error
            }
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// The channel is gone: the exchange with it, and the reference to its context (which
    /// would keep the pipeline, and this handler, alive).
    func handlerRemoved(context: ChannelHandlerContext) {
        fail(ClosedBeforeResponse())
        self.context = nil
    }

    /// Writes the request head (and the end, without a body; a body follows from `body`); the
    /// future holds the response once its head is here.
    func send(
        _ head: HTTPRequestHead, body: RequestBody? = nil, deadline: NIODeadline, readTimeout: TimeAmount,
        responseTimeout: TimeAmount = .seconds(30), interim: (@Sendable (Int, HeaderFields) -> Void)? = nil
    ) -> EventLoopFuture<UpstreamResponse> {
        guard let context, case .idle = state else { return loop.makeFailedFuture(ClosedBeforeResponse()) }
        self.interim = interim
        let promise = context.eventLoop.makePromise(of: UpstreamResponse.self)
        state = .awaitingHead(promise)
        exchange &+= 1
        self.readTimeout = readTimeout
        let exchange = self.exchange
        self.responseTimeout = responseTimeout
        armHeadDeadline(deadline, exchange: exchange)
        if let body {
            requestComplete = false
            requestBodyRemaining = body.length
            context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
            body.send(into: self, exchange: exchange, loop: context.eventLoop)
        } else {
            requestComplete = true
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        return promise.futureResult
    }

    /// Writes a part of the current exchange's request body; the future completes once the
    /// socket took it, so a slow origin slows the client's upload (each part awaited).
    func writeRequestBody(_ part: ByteBuffer, exchange: UInt64) -> EventLoopFuture<Void> {
        guard exchange == self.exchange, !requestComplete, let context, isExchanging else {
            return loop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        // The response is due a response timeout after the request's last byte, not after its
        // first: an upload takes as long as the client takes. Meanwhile each part must follow
        // the one before within that time (a client or an origin that stalls the upload).
        armHeadDeadline(.now() + responseTimeout, exchange: exchange)
        // With a declared length the request is whole on the wire with its last byte: the
        // origin may answer before the sender reports the end, and the connection stays reusable.
        if let remaining = requestBodyRemaining {
            requestBodyRemaining = remaining - part.readableBytes
            if remaining - part.readableBytes <= 0 { requestComplete = true }
        }
        return context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(part))))
    }

    /// The request body is complete: the request's end goes out (nothing more on the wire when
    /// its length was declared, and nothing at all when the exchange already ended).
    func endRequest(exchange: UInt64) -> EventLoopFuture<Void> {
        guard exchange == self.exchange, let context, isExchanging else {
            return exchange == self.exchange && requestComplete
                ? loop.makeSucceededVoidFuture() : loop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        requestComplete = true
        armHeadDeadline(.now() + responseTimeout, exchange: exchange)
        return context.writeAndFlush(wrapOutboundOut(.end(nil)))
    }

    /// Fails the exchange with a response timeout unless its head has come by `deadline`.
    private func armHeadDeadline(_ deadline: NIODeadline, exchange: UInt64) {
        guard case .awaitingHead = state else { return }
        headDeadline?.cancel()
        headDeadline = loop.scheduleTask(deadline: deadline) { [self] in
            guard exchange == self.exchange, case .awaitingHead = state else { return }
            fail(ProxyError.responseTimeout("\(origin) did not answer in time"))
        }
    }

    /// The client's body failed (it went away, or sent more than allowed): the origin cannot
    /// be given a complete request, so the exchange ends with the connection.
    func requestBodyFailed(exchange: UInt64, error: any Error) {
        guard exchange == self.exchange, !requestComplete, isExchanging else { return }
        fail(error)
    }

    private var isExchanging: Bool {
        switch state {
        case .awaitingHead, .streaming: true
        case .idle, .closed: false
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .awaitingHead(let promise) = state else { return }
            // Interim responses (RFC 9110 §15.2) are not the answer; a proxy forwards them
            // (NIO's decoder gives 101 as a final response: Outpost sends no Upgrade).
            if head.status.code >= 100 && head.status.code < 200 {
                interim?(Int(head.status.code), HeaderFields(nio: head.headers))
                return
            }
            interim = nil
            headDeadline?.cancel()
            headDeadline = nil
            let producer = OriginBody.makeSequence(
                elementType: ByteBuffer.self,
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8),
                finishOnDeinit: true,
                delegate: OriginBodyDemand(source: self, loop: context.eventLoop, exchange: exchange))
            state = .streaming(producer.source, keepAlive: head.isKeepAlive)
            armReadDeadline(context)
            promise.succeed(
                UpstreamResponse(
                    status: Int(head.status.code), headers: HeaderFields(nio: head.headers),
                    body: producer.sequence))
        case .body(let buffer):
            guard case .streaming(let source, _) = state else { return }
            armReadDeadline(context)
            if case .stopProducing = source.yield(buffer) { readsWanted = false }
        case .end:
            guard case .streaming(let source, let keepAlive) = state else { return }
            readDeadline?.cancel()
            readDeadline = nil
            source.finish()
            readsWanted = true
            if keepAlive && requestComplete {
                state = .idle
                idleSince = .now()
                if readPending {
                    readPending = false
                    context.read()
                }
                released(self)
            } else {
                state = .closed
                context.close(promise: nil)
                reportGone()
            }
        }
    }

    /// Reads go on only while the body's consumer wants more.
    func read(context: ChannelHandlerContext) {
        if readsWanted {
            context.read()
        } else {
            readPending = true
        }
    }

    func resumeReading(exchange: UInt64) {
        guard exchange == self.exchange else { return }
        readsWanted = true
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    /// The body's consumer stopped before its end: the rest is not wanted, so the connection
    /// cannot be reused.
    func consumerGone(exchange: UInt64) {
        guard exchange == self.exchange, case .streaming = state else { return }
        fail(ChannelError.outputClosed)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ClosedBeforeResponse())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An origin closing TLS without close_notify: the HTTP framing decides whether the
        // response was complete (a body read to the close ends there; a short one fails in the
        // decoder), as for a TCP close.
        if let tlsError = error as? NIOSSLError, case .uncleanShutdown = tlsError { return }
        fail(error)
    }

    /// Ends the exchange with `error` and the connection with it.
    private func fail(_ error: any Error) {
        headDeadline?.cancel()
        readDeadline?.cancel()
        headDeadline = nil
        readDeadline = nil
        let previous = state
        state = .closed
        switch previous {
        case .awaitingHead(let promise):
            promise.fail(error)
        case .streaming(let source, _):
            // Mid-body, the connection closing is a truncated body, not a retry.
            source.finish(error is ClosedBeforeResponse ? ChannelError.eof : error)
        case .idle, .closed:
            break
        }
        if let context, context.channel.isActive { context.close(promise: nil) }
        reportGone()
    }

    /// Tells the pool, once, that this connection is no more.
    func reportGone() {
        guard !reportedGone else { return }
        reportedGone = true
        state = .closed
        gone(self)
    }

    private func armReadDeadline(_ context: ChannelHandlerContext) {
        lastRead = .now()
        guard readDeadline == nil else { return }
        scheduleReadCheck(context.eventLoop, at: lastRead + readTimeout)
    }

    private func scheduleReadCheck(_ loop: any EventLoop, at deadline: NIODeadline) {
        let exchange = self.exchange
        readDeadline = loop.scheduleTask(deadline: deadline) { [self] in
            guard exchange == self.exchange, case .streaming = state else { return }
            let due = lastRead + readTimeout
            if due <= .now() {
                readDeadline = nil
                fail(ProxyError.responseTimeout("\(origin) stopped sending"))
            } else {
                scheduleReadCheck(loop, at: due)
            }
        }
    }

    /// Closes the connection; the pool hears of it as of any other end.
    func close() {
        fail(ChannelError.ioOnClosedChannel)
    }
}

extension RequestBody {
    /// Feeds the body to its origin connection part by part, each write awaited, so the
    /// socket's back-pressure reaches the reading of the client's body. On a task of its own:
    /// the response head may come back before the body is all sent, and the request goes on
    /// meanwhile.
    func send(into connection: OriginConnection, exchange: UInt64, loop: any EventLoop) {
        let parts = self.parts
        Task {
            do {
                for try await part in parts {
                    try await loop.flatSubmit { connection.writeRequestBody(part, exchange: exchange) }.get()
                }
                try await loop.flatSubmit { connection.endRequest(exchange: exchange) }.get()
            } catch {
                loop.execute { connection.requestBodyFailed(exchange: exchange, error: error) }
            }
        }
    }
}
