import CacheStore
import CacheTransaction
import EdgeAdmin
import EdgeTelemetry
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import OutpostConfig
import PurgeJournal

/// The running edge node: traffic listener, admin listener, store and origin clients, with an
/// ordered graceful shutdown (stop accepting → let in-flight requests finish → close the
/// origin clients → close the store).
public final class OutpostServer: Sendable {
    /// The configuration in force (the reloaded one after SIGHUP).
    public var configuration: OutpostConfiguration { live.withLockedValue { $0 } }
    /// The address the traffic listener is bound to (the real port when 0 was asked for).
    public let trafficAddress: SocketAddress
    public let adminAddress: SocketAddress
    /// The address the TLS listener is bound to (`server.tls_listen`), if there is one.
    public let tlsAddress: SocketAddress?
    public let store: CacheStore
    /// Counters for /stats and /metrics.
    public let telemetry: Telemetry

    /// The listeners. Both run the same front end: each connection's requests are answered in
    /// its pipeline (the hit path, on the traffic listener) or passed on as tasks of their own
    /// (``PassedRequests``: ``RequestTask`` for traffic, ``AdminTask`` for the admin API).
    private let traffic: NIOAsyncChannel<Void, Never>
    private let admin: NIOAsyncChannel<Void, Never>
    /// The TLS listener: the traffic listener's front end behind TLS (docs/tls.md).
    private let tlsTraffic: NIOAsyncChannel<Void, Never>?
    /// The certificates in force; each connection takes the set current when it is accepted
    /// (SIGHUP replaces it).
    private let certificates: NIOLockedValueBox<TLSCertificateSet>?
    private let live: NIOLockedValueBox<OutpostConfiguration>
    private let pipelines: PipelineHolder
    /// The origin clients in use, and those replaced by reloads (closed at shutdown, once no
    /// request can still be using them).
    private let upstreams: NIOLockedValueBox<(current: UpstreamPool, retired: [UpstreamPool])>
    private let registry = ConnectionRegistry()
    /// The event loops serving connections (``EventLoops``), the origin clients' too.
    private let group: MultiThreadedEventLoopGroup
    private let passed = PassedRequests()
    private let adminRequests = PassedRequests()
    /// Counts the traffic listener's connections against `server.max_connections`.
    private let gate = ConnectionGate()
    private let clock: any CacheClock
    private let logger: Logger
    private let shuttingDown = NIOLockedValueBox(false)
    private let accessLog: AccessLog
    /// `cluster.purge_journal`: purges reach every node through it (docs/fleet.md).
    package let journal: PurgeJournal?

    /// Opens the store and binds both listeners; call ``run()`` to serve.
    public init(
        configuration: OutpostConfiguration, clock: any CacheClock = SystemClock(), logger: Logger,
        telemetry: Telemetry = Telemetry()
    ) async throws {
        // The checks of `outpost check-config`, before anything is opened: any problem (a bad
        // certificate, an exposed admin listener, no origin, …) stops the start.
        let certificates = try ConfigurationCheck.verified(configuration).map { NIOLockedValueBox($0) }
        self.certificates = certificates
        let files = OpenFileLimit.raise()
        logger.info(
            "open files limit",
            metadata: [
                "soft_before": "\(files.before)", "soft": "\(files.now)", "hard": "\(files.hard)",
                "max_connections":
                    "\(configuration.server.maxConnections ?? OpenFileLimit.defaultMaxConnections(openFiles: files.now))",
            ])
        let live = NIOLockedValueBox(configuration)
        self.live = live
        self.clock = clock
        self.logger = logger
        self.telemetry = telemetry
        let store = try CacheStore(configuration: configuration.store)
        self.store = store
        // Until this node has replayed the purges it may have missed, nothing stored before
        // it started is served (docs/fleet.md).
        if configuration.cluster.purgeJournal != nil { store.hideObjects(storedBefore: clock.now()) }
        if let recovery = store.recovery {
            logger.error(
                "the store was damaged and has been reset (store.on_corruption = \"reset\"): \(recovery.reason)",
                metadata: ["store": "\(configuration.store.path)", "moved_to": "\(recovery.movedTo)"])
        }
        let corruptionLogger = logger
        store.onCorruption { corruption in
            telemetry.recordStoreCorruption()
            corruptionLogger.error(
                "damaged store value found and not served; removing what holds it",
                metadata: ["damage": "\(corruption)"])
        }
        let loops = EventLoops.count(configured: configuration.server.eventLoops)
        let group = EventLoops.group(loops: loops)
        self.group = group
        logger.info(
            "event loops",
            metadata: [
                "count": "\(loops)", "cpus_allowed": "\(EventLoops.affinityCount().map(String.init) ?? "-")",
            ])
        let upstream: UpstreamPool
        do {
            upstream = try UpstreamPool(
                configuration: configuration.upstream, eventLoopGroup: group, telemetry: telemetry)
        } catch {
            store.close()
            throw error
        }
        self.upstreams = NIOLockedValueBox((upstream, []))
        let pipelines = PipelineHolder(
            CachePipeline(
                configuration: configuration, store: store, upstream: upstream, clock: clock, logger: logger,
                telemetry: telemetry))
        self.pipelines = pipelines
        let accessLog = AccessLog(
            logger: Logger(label: "outpost.access"), enabled: configuration.log.access, format: configuration.log.format
        )
        self.accessLog = accessLog
        let registry = self.registry
        let passed = self.passed
        let adminRequests = self.adminRequests
        let gate = self.gate
        do {
            let hitPath = try LoopHitStates(group: group) { loop in
                try LoopHitState(
                    eventLoop: loop, store: store, hotRecords: configuration.store.hotRecords,
                    hotBodyBytes: configuration.store.hotBodyBytes,
                    counters: telemetry.makeLoopCounters(), pipeline: LoopPipeline(pipelines), registry: registry,
                    accessLog: accessLog, logger: logger)
            }
            traffic = try await OutpostServer.bind(
                configuration.server.listen, group: group, live: live, logger: logger, timeouts: true, hitPath: hitPath,
                passed: passed, registry: registry, gate: gate)
            // The TLS listener: the same front end, the same hit path, the same connection limit.
            if let address = configuration.server.tlsListen, let certificates {
                tlsTraffic = try await OutpostServer.bind(
                    address, group: group, live: live, logger: logger, timeouts: true, hitPath: hitPath, passed: passed,
                    registry: registry, gate: gate, tls: certificates)
            } else {
                tlsTraffic = nil
            }
            // The admin listener: the same front end (timeouts, validation, a task per
            // request), without the hit path or a connection limit.
            admin = try await OutpostServer.bind(
                configuration.admin.listen, group: group, live: live, logger: logger, timeouts: true, hitPath: nil,
                passed: adminRequests, registry: registry, gate: nil)
        } catch {
            await upstream.shutdown()
            store.close()
            throw error
        }
        // Evictions are counted from here on (the store keeps its lifetime total).
        telemetry.updateStore(
            usage: (try? store.usage()) ?? StoreUsage(), entries: (try? store.entryCount()) ?? 0,
            maxBytes: configuration.store.maxStoreSize)
        trafficAddress = traffic.channel.localAddress!
        adminAddress = admin.channel.localAddress!
        tlsAddress = tlsTraffic?.channel.localAddress
        if let location = configuration.cluster.purgeJournal {
            journal = PurgeJournal(
                location: location,
                node: PurgeJournal.nodeName(selfURL: configuration.cluster.selfURL, port: trafficAddress.port ?? 0),
                settings: configuration.cluster, store: store, telemetry: telemetry, now: { [clock] in clock.now() },
                logger: logger)
        } else {
            journal = nil
        }
        if configuration.admin.token == nil {
            logger.notice("the admin API has no token: it answers anyone who can reach \(configuration.admin.listen)")
        }
    }

    /// Applies a reloaded configuration without dropping connections: origins, limits,
    /// timeouts, caching and compression settings and the admin token take effect for the
    /// next request (timeouts for the next connection). The listeners and the store cannot
    /// move while running; changes to them are reported and wait for a restart. Returns what
    /// changed, for the log.
    @discardableResult
    public func reload(_ proposed: OutpostConfiguration) throws -> [String] {
        guard !shuttingDown.withLockedValue({ $0 }) else {
            throw ConfigurationError("shutting down: the configuration is not reloaded")
        }
        // The checks of `outpost check-config`; the certificate files are read again (renewed
        // in place, or others named): new connections get them, open ones keep theirs. A
        // configuration that does not pass keeps the running one whole.
        let renewed = try ConfigurationCheck.verified(proposed)
        let current = configuration
        var next = proposed
        var notes: [String] = []
        if next.server.listen != current.server.listen {
            notes.append("server.listen needs a restart; still \(current.server.listen)")
            next.server.listen = current.server.listen
        }
        if next.server.eventLoops != current.server.eventLoops {
            notes.append("server.event_loops needs a restart; still \(current.server.eventLoops)")
            next.server.eventLoops = current.server.eventLoops
        }
        if next.server.tlsListen != current.server.tlsListen {
            notes.append("server.tls_listen needs a restart; still \(current.server.tlsListen?.description ?? "none")")
            next.server.tlsListen = current.server.tlsListen
        }
        if next.admin.listen != current.admin.listen {
            notes.append("admin.listen needs a restart; still \(current.admin.listen)")
            next.admin.listen = current.admin.listen
        }
        if next.store != current.store {
            notes.append("store.* needs a restart; unchanged")
            next.store = current.store
        }
        if next.compression.maxPendingCodings != current.compression.maxPendingCodings {
            notes.append(
                "compression.max_pending_codings needs a restart; still \(current.compression.maxPendingCodings)")
            next.compression.maxPendingCodings = current.compression.maxPendingCodings
        }
        if next.cluster.purgeJournal != current.cluster.purgeJournal
            || next.cluster.journalRetention != current.cluster.journalRetention
            || next.cluster.journalTimeout != current.cluster.journalTimeout
            || next.cluster.journalPollInterval != current.cluster.journalPollInterval
            || next.cluster.journalReconnectMax != current.cluster.journalReconnectMax
        {
            notes.append("cluster.purge_journal and journal_* need a restart; unchanged")
            next.cluster.purgeJournal = current.cluster.purgeJournal
            next.cluster.journalRetention = current.cluster.journalRetention
            next.cluster.journalTimeout = current.cluster.journalTimeout
            next.cluster.journalPollInterval = current.cluster.journalPollInterval
            next.cluster.journalReconnectMax = current.cluster.journalReconnectMax
        }
        if next.log.level != current.log.level {
            notes.append("log.level needs a restart; unchanged")
            next.log.level = current.log.level
        }
        if next.log.access != current.log.access || next.log.format != current.log.format {
            notes.append("log.access and log.format need a restart; unchanged")
            next.log.access = current.log.access
            next.log.format = current.log.format
        }
        var upstream = upstreams.withLockedValue { $0.current }
        if next.upstream != current.upstream {
            let replacement = try UpstreamPool(
                configuration: next.upstream, eventLoopGroup: group,
                telemetry: telemetry)
            upstreams.withLockedValue { pools in
                pools.retired.append(pools.current)
                pools.current = replacement
            }
            upstream = replacement
            notes.append("upstream reloaded")
        }
        if next.admin.token != current.admin.token { notes.append("admin token changed") }
        if let renewed, let certificates {
            certificates.withLockedValue { $0 = renewed }
            notes.append("certificates reloaded")
        }
        pipelines.replace(pipelines.current.reconfigured(next, upstream: upstream))
        live.withLockedValue { $0 = next }
        logger.info("configuration reloaded", metadata: ["changes": "\(notes.joined(separator: "; "))"])
        return notes
    }

    /// What every connection of a listener is served with.
    struct FrontEnd: Sendable {
        let logger: Logger
        let timeouts: Bool
        /// The hit path (traffic listeners); nil on the admin listener.
        let hitPath: LoopHitStates?
        let passed: PassedRequests
        let registry: ConnectionRegistry
    }

    private static func bind(
        _ address: SocketAddressSpec, group: MultiThreadedEventLoopGroup, live: NIOLockedValueBox<OutpostConfiguration>,
        logger: Logger, timeouts: Bool,
        hitPath: LoopHitStates?, passed: PassedRequests, registry: ConnectionRegistry, gate: ConnectionGate?,
        tls: NIOLockedValueBox<TLSCertificateSet>? = nil
    ) async throws -> NIOAsyncChannel<Void, Never> {
        let front = FrontEnd(
            logger: logger, timeouts: timeouts, hitPath: hitPath, passed: passed, registry: registry)
        let derivedLimit = OpenFileLimit.defaultMaxConnections(openFiles: OpenFileLimit.current)
        return try await ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptErrorLog(logger: logger, reserve: gate?.reserve))
                }
            }
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            // Each connection keeps its last read buffer for the next read. NIO starts it at
            // 2 KiB; 1 KiB holds a typical request head, grows for bigger ones, and halves
            // what an idle kept-alive connection holds after its first request.
            .childChannelOption(
                .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 65536)
            )
            .bind(host: address.host, port: address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Each connection takes the limits and timeouts in force when it opens.
                    let configuration = live.withLockedValue { $0 }
                    if let gate {
                        // Turned away before any handler is added (the 503 is raw bytes); the
                        // connection is still handed to the accept loop, which sees it end.
                        _ = gate.admit(
                            channel, limit: configuration.server.maxConnections ?? derivedLimit, logger: logger)
                    }
                    // Every connection is registered (for a graceful shutdown) from now until it
                    // closes, whether or not it ever passes a request on.
                    registry.registerUntilClosed(channel)
                    if let tls {
                        try front.startTLS(channel, configuration: configuration, certificates: tls)
                    } else {
                        try front.serveHTTP1(channel, server: configuration.server)
                    }
                }
            }
    }

    /// Client connections open on the traffic listener (counted against `server.max_connections`).
    public var openConnections: Int { gate.openConnections }

    /// Requests the hit path passed on to a task of their own (``RequestTask``), since start;
    /// requests answered by the hit path never start one.
    public var passedRequests: Int { passed.submitted }

    /// Requests waiting right now for another request's fetch of the same URL.
    public var coalescedWaiters: Int { pipelines.current.coalescer.waitingCount }

    /// What the background coder has done since start.
    public var codingCounts: Telemetry.CodingCounts { pipelines.current.telemetry.codingCounts }

    /// Serves until ``shutdown()``; returns after the store is closed.
    public func run() async {
        let accessLog = self.accessLog
        logger.info(
            "outpost serving",
            metadata: [
                "listen": "\(trafficAddress.ipAddress ?? "?"):\(trafficAddress.port ?? 0)",
                "admin": "\(adminAddress.ipAddress ?? "?"):\(adminAddress.port ?? 0)",
                "tls": "\(tlsAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "-")",
                "store": "\(configuration.store.path)",
                "origin": "\(configuration.upstream.defaultOrigin?.description ?? "-")",
            ])
        let task = RequestTask(pipelines: pipelines, registry: registry, accessLog: accessLog, logger: logger)
        let adminTask = AdminTask(api: adminAPI, registry: registry, logger: logger)
        // `[cluster] peers`: each is checked while this node serves (a reload may add some).
        let pipelines = self.pipelines
        let healthChecks = Task { await PeerHealthChecks(current: { pipelines.current }).run() }
        let journalTask = journal.map { journal in Task { await journal.run() } }
        await withDiscardingTaskGroup { group in
            let listeners = [(traffic, passed), (admin, adminRequests)] + (tlsTraffic.map { [($0, passed)] } ?? [])
            for (listener, requests) in listeners {
                group.addTask {
                    await self.accept(listener)
                    // The listener has closed; connections still open may yet pass a request
                    // on (one under way during the drain), so requests stop only once all are
                    // gone.
                    await self.registry.waitUntilEmpty()
                    requests.finish()
                }
            }
            group.addTask {
                await withDiscardingTaskGroup { requests in
                    for await request in self.passed.requests {
                        requests.addTask { await task.run(request) }
                    }
                }
            }
            group.addTask {
                await withDiscardingTaskGroup { requests in
                    for await request in self.adminRequests.requests {
                        requests.addTask { await adminTask.run(request) }
                    }
                }
            }
        }
        healthChecks.cancel()
        await healthChecks.value
        journalTask?.cancel()
        await journalTask?.value
        await pipelines.current.drainBackground()
        let pools = upstreams.withLockedValue { [$0.current] + $0.retired }
        for pool in pools { await pool.shutdown() }
        store.close()
        logger.info("outpost stopped")
    }

    private var adminAPI: AdminAPI {
        let live = self.live
        return AdminAPI(
            settings: { live.withLockedValue { $0 } }, store: store, telemetry: telemetry, clock: clock, logger: logger,
            journal: journal)
    }

    /// Accepts connections until the listener closes: each is served by its own pipeline
    /// (set up when it was accepted), so there is nothing more to do with it here.
    private func accept(_ listener: NIOAsyncChannel<Void, Never>) async {
        do {
            try await listener.executeThenClose { inbound in
                do {
                    for try await _ in inbound {}
                } catch {
                    logger.error("listener failed", metadata: ["error": "\(error)"])
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
        tlsTraffic?.channel.close(promise: nil)
        registry.beginDrain()
        let registry = self.registry
        let grace = configuration.server.shutdownGrace
        group.any().scheduleTask(in: .milliseconds(Int64(grace * 1000))) {
            registry.closeAll()
        }
    }
}
