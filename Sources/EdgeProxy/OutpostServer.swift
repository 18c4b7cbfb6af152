import CacheStore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The running edge node: traffic listener, admin listener, store and origin clients, with an
/// ordered graceful shutdown (stop accepting → let in-flight requests finish → close the
/// origin clients → close the store).
public final class OutpostServer: Sendable {
    public let configuration: OutpostConfiguration
    /// The address the traffic listener is bound to (the real port when 0 was asked for).
    public let trafficAddress: SocketAddress
    public let adminAddress: SocketAddress
    public let store: CacheStore

    private typealias ConnectionChannel = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    private let traffic: NIOAsyncChannel<ConnectionChannel, Never>
    private let admin: NIOAsyncChannel<ConnectionChannel, Never>
    private let pipeline: CachePipeline
    private let upstream: UpstreamPool
    private let registry = ConnectionRegistry()
    private let logger: Logger
    private let shuttingDown = NIOLockedValueBox(false)

    /// Opens the store and binds both listeners; call ``run()`` to serve.
    public init(configuration: OutpostConfiguration, clock: any CacheClock = SystemClock(), logger: Logger) async throws
    {
        guard configuration.upstream.defaultOrigin != nil || !configuration.upstream.hosts.isEmpty else {
            throw ConfigurationError("no origin configured: set upstream.default or pass --origin")
        }
        self.configuration = configuration
        self.logger = logger
        let store = try CacheStore(configuration: configuration.store)
        self.store = store
        let group = MultiThreadedEventLoopGroup.singleton
        let upstream = UpstreamPool(configuration: configuration.upstream, eventLoopGroup: group)
        self.upstream = upstream
        self.pipeline = CachePipeline(
            configuration: configuration, store: store, upstream: upstream, clock: clock, logger: logger)
        do {
            traffic = try await OutpostServer.bind(
                configuration.server.listen, configuration: configuration, logger: logger, timeouts: true)
            admin = try await OutpostServer.bind(
                configuration.admin.listen, configuration: configuration, logger: logger, timeouts: false)
        } catch {
            await upstream.shutdown()
            store.close()
            throw error
        }
        trafficAddress = traffic.channel.localAddress!
        adminAddress = admin.channel.localAddress!
    }

    private static func bind(
        _ address: SocketAddressSpec, configuration: OutpostConfiguration, logger: Logger, timeouts: Bool
    ) async throws -> NIOAsyncChannel<ConnectionChannel, Never> {
        let server = configuration.server
        // The decoder's own limits sit above ours so that RequestValidation can tell a long URI
        // (414) from a large header section (431); far beyond both, the decoder stops reading.
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = 2 * max(server.maxHeaderBytes, server.maxURILength)
        limits.maxHeaderListSize = server.maxHeaderBytes + 2 * server.maxURILength
        limits.maxHeaderFieldCount = server.maxHeaders + 1
        let decoderLimits = limits
        let via = server.viaPseudonym
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .bind(host: address.host, port: address.port) { channel in
                channel.pipeline.configureHTTPServerPipeline(
                    withErrorHandling: false, withDecoderLimitConfiguration: decoderLimits
                ).flatMapThrowing {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ProtocolErrorHandler(logger: logger, via: via))
                    if timeouts {
                        let handler = ConnectionTimeoutHandler(
                            idleTimeout: server.idleTimeout, headerTimeout: server.requestHeaderTimeout)
                        try sync.addHandler(FirstByteObserver(timeouts: handler), position: .first)
                        try sync.addHandler(handler)
                    }
                    return try ConnectionChannel(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Requests waiting right now for another request's fetch of the same URL.
    public var coalescedWaiters: Int { pipeline.coalescer.waitingCount }

    /// Serves until ``shutdown()``; returns after the store is closed.
    public func run() async {
        let accessLog = AccessLog(logger: Logger(label: "outpost.access"), enabled: configuration.log.access)
        logger.info(
            "outpost serving",
            metadata: [
                "listen": "\(trafficAddress.ipAddress ?? "?"):\(trafficAddress.port ?? 0)",
                "admin": "\(adminAddress.ipAddress ?? "?"):\(adminAddress.port ?? 0)",
                "store": "\(configuration.store.path)",
                "origin": "\(configuration.upstream.defaultOrigin?.description ?? "-")",
            ])
        await withDiscardingTaskGroup { group in
            group.addTask {
                await self.accept(self.traffic) { connection in
                    await ClientConnection(
                        channel: connection, pipeline: self.pipeline, registry: self.registry, accessLog: accessLog,
                        logger: self.logger
                    ).run()
                }
            }
            group.addTask {
                await self.accept(self.admin) { connection in
                    await AdminConnection(channel: connection, logger: self.logger).run()
                }
            }
        }
        await pipeline.drainBackground()
        await upstream.shutdown()
        store.close()
        logger.info("outpost stopped")
    }

    private func accept(
        _ listener: NIOAsyncChannel<ConnectionChannel, Never>,
        _ handle: @escaping @Sendable (ConnectionChannel) async -> Void
    ) async {
        do {
            try await listener.executeThenClose { inbound in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in inbound {
                            group.addTask { await handle(connection) }
                        }
                    } catch {
                        logger.error("listener failed", metadata: ["error": "\(error)"])
                    }
                }
            }
        } catch {
            logger.error("listener closed with an error", metadata: ["error": "\(error)"])
        }
    }

    /// Starts a graceful shutdown: stop accepting, close idle connections, let busy ones
    /// finish for up to `server.shutdown_grace` seconds, then close what is left. Idempotent.
    public func shutdown() {
        let first = shuttingDown.withLockedValue { wasShuttingDown in
            defer { wasShuttingDown = true }
            return !wasShuttingDown
        }
        guard first else { return }
        logger.info("shutting down", metadata: ["open_connections": "\(registry.count)"])
        traffic.channel.close(promise: nil)
        admin.channel.close(promise: nil)
        registry.beginDrain()
        let registry = self.registry
        let grace = configuration.server.shutdownGrace
        MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .milliseconds(Int64(grace * 1000))) {
            registry.closeAll()
        }
    }
}
