import AsyncHTTPClient
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An origin's answer: the head, and the body as it streams in.
struct UpstreamResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: UpstreamBody
}

/// The body of an origin response, from either client.
struct UpstreamBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    enum Source: Sendable {
        case origin(OriginBody)
        case client(HTTPClientResponse.Body)
    }

    let source: Source

    struct AsyncIterator: AsyncIteratorProtocol {
        var origin: OriginBody.AsyncIterator?
        var client: HTTPClientResponse.Body.AsyncIterator?

        mutating func next() async throws -> ByteBuffer? {
            if var iterator = origin {
                defer { origin = iterator }
                return try await iterator.next()
            }
            if var iterator = client {
                defer { client = iterator }
                return try await iterator.next()
            }
            return nil
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        switch source {
        case .origin(let body): return AsyncIterator(origin: body.makeAsyncIterator(), client: nil)
        case .client(let body): return AsyncIterator(origin: nil, client: body.makeAsyncIterator())
        }
    }
}

/// The body of an origin response, read with back-pressure: the connection reads on only
/// while the consumer keeps up (at most a few buffers are held).
typealias OriginBody = NIOThrowingAsyncSequenceProducer<
    ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, OriginBodyDemand
>

/// Plain HTTP/1.1 to the origins for requests without a body (misses, validations, HEAD):
/// each event loop keeps its own keep-alive connections per origin, so a fetch takes no
/// process-wide lock and its connection's work stays on one loop (issue 9; what
/// async-http-client spent per request on its pool, request preparation and tracing was about
/// a quarter of a miss). Requests with a body and `https` origins go through
/// async-http-client (``UpstreamPool``).
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

    /// Sends a request without a body; returns once the response head arrived. A request on a
    /// kept-alive connection that the origin had closed meanwhile is sent once more on a new one.
    /// Errors are the connection's own; ``UpstreamPool`` maps them to what the client gets.
    func execute(_ request: UpstreamRequest) async throws -> UpstreamResponse {
        let loop = group.any()
        guard let pool = pools[ObjectIdentifier(loop)] else {
            throw ProxyError.connectionRefused("no connection pool for this event loop")
        }
        var head = HTTPRequestHead(
            version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.pathAndQuery)
        for field in request.headers { head.headers.add(name: field.name, value: field.value) }
        let outgoing = head
        let origin = request.origin
        let interim = request.interim
        // One deadline for the head, whatever the request waits for on the way: a free
        // connection, a connection, a second attempt.
        let deadline = NIODeadline.now() + settings.responseTimeout
        return try await loop.flatSubmit {
            pool.execute(outgoing, origin: origin, deadline: deadline, mayRetry: true, interim: interim)
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
        _ head: HTTPRequestHead, origin: OriginURL, deadline: NIODeadline, mayRetry: Bool,
        interim: (@Sendable (Int, HeaderFields) -> Void)? = nil
    ) -> EventLoopFuture<UpstreamResponse> {
        acquire(origin, deadline: deadline).flatMap { connection, reused in
            connection.send(head, deadline: deadline, readTimeout: self.settings.readTimeout, interim: interim)
                .flatMapError { error in
                    // A kept-alive connection the origin closed before it read the request: the
                    // request had no effect; GET and HEAD are safe to send again (RFC 9110 §9.2.2).
                    if reused, mayRetry, error is OriginConnection.ClosedBeforeResponse {
                        return self.execute(head, origin: origin, deadline: deadline, mayRetry: false, interim: interim)
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
            to: origin, on: loop, timeout: settings.connectTimeout,
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
struct OriginBodyDemand: NIOAsyncSequenceProducerDelegate {
    let connection: OriginConnection
    let loop: any EventLoop
    let exchange: UInt64

    func produceMore() {
        let (connection, exchange) = (self.connection, self.exchange)
        loop.execute { connection.resumeReading(exchange: exchange) }
    }

    func didTerminate() {
        let (connection, exchange) = (self.connection, self.exchange)
        loop.execute { connection.consumerGone(exchange: exchange) }
    }
}

/// One keep-alive connection to an origin and the exchange on it (one at a time). A channel
/// handler: touched only on its channel's event loop (futures carry it between callbacks that
/// all run there, hence the unchecked conformance).
final class OriginConnection: ChannelDuplexHandler, @unchecked Sendable {
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
        to origin: OriginURL, on loop: any EventLoop, timeout: TimeAmount,
        released: @escaping (OriginConnection) -> Void, gone: @escaping (OriginConnection) -> Void
    ) -> EventLoopFuture<OriginConnection> {
        let connection = OriginConnection(origin: origin, loop: loop, released: released, gone: gone)
        return ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
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

    /// Writes the request; the future holds the response once its head is here.
    func send(
        _ head: HTTPRequestHead, deadline: NIODeadline, readTimeout: TimeAmount,
        interim: (@Sendable (Int, HeaderFields) -> Void)? = nil
    ) -> EventLoopFuture<UpstreamResponse> {
        guard let context, case .idle = state else { return loop.makeFailedFuture(ClosedBeforeResponse()) }
        self.interim = interim
        let promise = context.eventLoop.makePromise(of: UpstreamResponse.self)
        state = .awaitingHead(promise)
        exchange &+= 1
        self.readTimeout = readTimeout
        let exchange = self.exchange
        headDeadline = context.eventLoop.scheduleTask(deadline: deadline) { [self] in
            guard exchange == self.exchange, case .awaitingHead = state else { return }
            fail(ProxyError.responseTimeout("\(origin) did not answer in time"))
        }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        return promise.futureResult
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .awaitingHead(let promise) = state else { return }
            // Interim responses (RFC 9110 §15.2) are not the answer; a proxy forwards them
            // (NIO's decoder gives 101 as a final response: Outpost sends no Upgrade).
            if head.status.code >= 100 && head.status.code < 200 {
                interim?(Int(head.status.code), ResponseHeaders.fields(head.headers))
                return
            }
            interim = nil
            headDeadline?.cancel()
            headDeadline = nil
            let producer = OriginBody.makeSequence(
                elementType: ByteBuffer.self,
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8),
                finishOnDeinit: true,
                delegate: OriginBodyDemand(connection: self, loop: context.eventLoop, exchange: exchange))
            state = .streaming(producer.source, keepAlive: head.isKeepAlive)
            armReadDeadline(context)
            promise.succeed(
                UpstreamResponse(
                    status: head.status, headers: head.headers, body: UpstreamBody(source: .origin(producer.sequence))))
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
            if keepAlive {
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
