import CacheStore
import ContentCoding
import EdgeTelemetry
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OutpostConfig

/// The path of one request through the cache (docs/architecture.md): key → store lookup →
/// reuse decision → serve, validate or fetch (coalesced) → store while streaming.
///
/// Decision logic lives in HTTPCaching; this type only sequences it and does the I/O.
package final class CachePipeline: Sendable, TransactionRules {
    package let configuration: OutpostConfiguration
    let store: CacheStore
    let upstream: any Origin
    package let coalescer: Coalescer
    package let clock: any CacheClock
    let logger: Logger
    package let telemetry: Telemetry
    /// Codes compressible objects into br and gzip after they are stored, on first demand.
    package let backgroundCoding: BackgroundCoding
    /// Background refreshes in flight, so that shutdown can wait for them before the store closes.
    private let background: NIOLockedValueBox<[Int: Task<Void, Never>]>
    private let backgroundCounter: NIOLockedValueBox<Int>
    /// Store writes refused by a full disk: logged at most every 10 s, with a count.
    let storeWriteFailures: RateLimitedLog
    /// How this node marks and recognises requests in its fleet (RFC 8586).
    package let cdnLoop: CDNLoop
    /// `[cluster] peers`: which peer owns a key, and how each is doing; nil without peers.
    package let peers: PeerSet?

    package init(
        configuration: OutpostConfiguration, store: CacheStore, upstream: any Origin, clock: any CacheClock,
        logger: Logger, telemetry: Telemetry = Telemetry()
    ) {
        self.configuration = configuration
        self.store = store
        self.upstream = upstream
        self.coalescer = Coalescer(uncacheableTTL: configuration.cache.uncacheableTTL)
        self.clock = clock
        self.logger = logger
        self.telemetry = telemetry
        self.backgroundCoding = BackgroundCoding(
            store: store, limit: configuration.compression.maxPendingCodings, telemetry: telemetry, logger: logger)
        self.background = NIOLockedValueBox([:])
        self.backgroundCounter = NIOLockedValueBox(0)
        self.storeWriteFailures = RateLimitedLog(interval: .seconds(10))
        self.cdnLoop = CDNLoop(fleet: configuration.cluster.name, node: CDNLoop.newNode())
        self.peers = PeerSet(configuration.cluster, telemetry: telemetry)
    }

    /// The same pipeline under a reloaded configuration: store, coalescer, background work and
    /// counters are shared, so requests in flight under the old one and new ones still coalesce.
    private init(reconfiguring previous: CachePipeline, configuration: OutpostConfiguration, upstream: any Origin) {
        self.configuration = configuration
        self.store = previous.store
        self.upstream = upstream
        self.coalescer = previous.coalescer
        self.clock = previous.clock
        self.logger = previous.logger
        self.telemetry = previous.telemetry
        self.backgroundCoding = previous.backgroundCoding
        self.background = previous.background
        self.backgroundCounter = previous.backgroundCounter
        self.storeWriteFailures = previous.storeWriteFailures
        // The same node under a reloaded fleet name.
        self.cdnLoop = CDNLoop(fleet: configuration.cluster.name, node: previous.cdnLoop.node)
        // The same group keeps its state; a changed one keeps what it knew of the peers it kept.
        if let kept = previous.peers, configuration.cluster.members == previous.configuration.cluster.members,
            configuration.cluster.selfURL == previous.configuration.cluster.selfURL,
            configuration.cluster.healthFall == previous.configuration.cluster.healthFall,
            configuration.cluster.healthRise == previous.configuration.cluster.healthRise
        {
            self.peers = kept
        } else {
            self.peers = PeerSet(configuration.cluster, telemetry: previous.telemetry, keeping: previous.peers)
            if self.peers == nil { previous.telemetry.peers.setPeers([]) }
        }
    }

    /// Logs a store write that failed; those refused by a full disk (which come with every
    /// miss until space is back) at most every 10 s, with how many there were.
    func logStoreWriteFailure(_ message: String, url: String, error: Error) {
        if let storeError = error as? StoreError, case .diskFull = storeError {
            storeWriteFailures.note(logger) { count in
                ("not storing: the disk is full", ["error": "\(storeError)", "since_last": "\(count)"])
            }
            return
        }
        if let lmdbError = (error as? StoreError).flatMap({ if case .lmdb(let inner) = $0 { inner } else { nil } })
            ?? (error as? LMDBError), lmdbError.isDiskFull
        {
            storeWriteFailures.note(logger) { count in
                ("not storing: the disk is full", ["error": "\(lmdbError)", "since_last": "\(count)"])
            }
            return
        }
        logger.error("\(message)", metadata: ["url": "\(url)", "error": "\(error)"])
    }

    package func reconfigured(_ configuration: OutpostConfiguration, upstream: any Origin) -> CachePipeline {
        CachePipeline(reconfiguring: self, configuration: configuration, upstream: upstream)
    }

    package var via: String { configuration.server.viaPseudonym }
    package var honoursRequestDirectives: Bool { configuration.cache.honourRequestDirectives }
    package var rangeFetchMaxSize: Int { configuration.cache.rangeFetchMaxSize }

    /// Runs a request's transaction (``RequestTransaction``): performs each action it asks for
    /// and feeds back what it found, until an action answers the client.
    package func handle(_ request: ClientRequest, sink: any ResponseSink) async throws -> RequestOutcome {
        var transaction = RequestTransaction(request: request, rules: self)
        var event = RequestTransaction.Event.received
        while true {
            switch transaction.next(event, rules: self) {
            case .lookUp:
                do {
                    event = .lookedUp(
                        try store.lookup(transaction.key, requestHeaders: request.headers), now: clock.now())
                } catch {
                    logger.error("store lookup failed", metadata: ["key": "\(transaction.key)", "error": "\(error)"])
                    event = .lookupFailed
                }
            case .askCoalescer(let key):
                event = .role(coalescer.role(for: key, now: clock.now()))
            case .checkStoredSinceLookup:
                event = .storedSinceLookup(storedSinceLookup(request))
            case .releaseLead(let key):
                coalescer.finish(key, outcome: .stored, uncacheable: false, now: clock.now())
                event = .leadReleased
            case .waitForLeader(let key):
                telemetry.recordCoalescedWait()
                switch await coalescer.wait(for: key) {
                case .streaming(let live): event = .leaderStreaming(live, now: clock.now())
                case let outcome: event = .leaderFinished(outcome)
                }
            case .waitForLeaderEnd(let live):
                event = .leaderFinished(await live.settled())
            case .pass(let status, let invalidate):
                return try await passThrough(request, sink: sink, status: status, invalidate: invalidate)
            case .serve(let record, let body, let status, let now, let refreshBehind):
                if refreshBehind { refreshInBackground(request, stale: record) }
                return try await serveStored(
                    record, body: body, request: request, sink: sink, cacheStatus: status, now: now)
            case .serveLive(let live, let status, let now):
                guard
                    let outcome = try await serveLive(live, request: request, sink: sink, cacheStatus: status, now: now)
                else {
                    event = .liveBodyUnusable
                    continue
                }
                return outcome
            case .fetch(let outgoing, let plan, let coalescingKey):
                switch try await fetch(outgoing, sink: sink, plan: plan, coalescingKey: coalescingKey) {
                case .answered(let outcome): return outcome
                case .needsAnother(let retry): event = .fetchNeedsAnother(retry)
                }
            case .answerFailure(let error, let plan):
                return try await answerFailure(error, request: request, sink: sink, plan: plan)
            case .onlyIfCachedMiss:
                return try await sendOnlyIfCachedMiss(request, sink: sink)
            }
        }
    }

    /// How a stored response may serve a request (`Reuse.decide`), for the pipeline and the
    /// hit path alike. A soft-purged object is revalidated before it is used again (no refresh
    /// behind the client); stale-if-error and the client's max-stale still apply.
    package func reuseDecision(
        _ record: ObjectRecord, cacheControl: CacheControl, lifetime: FreshnessLifetime, age: Double,
        directives: RequestDirectives
    ) -> ReuseDecision {
        Self.reuseDecision(record, cacheControl: cacheControl, lifetime: lifetime, age: age, directives: directives)
    }

    /// ``reuseDecision(_:cacheControl:lifetime:age:directives:)`` without a pipeline (it needs
    /// none): for `outpost inspect explain`.
    package static func reuseDecision(
        _ record: ObjectRecord, cacheControl: CacheControl, lifetime: FreshnessLifetime, age: Double,
        directives: RequestDirectives
    ) -> ReuseDecision {
        let decision = Reuse.decide(
            age: age, responseCacheControl: cacheControl, lifetime: lifetime, request: directives)
        guard record.softPurgedAt != nil else { return decision }
        switch decision {
        case .staleWhileRevalidate, .mustValidate(reason: .stale): return .mustValidate(reason: .softPurge)
        default: return decision
        }
    }

    /// The bytes (positions in the complete representation) a stored 206 part gives this
    /// request, or nil when the request is not a single range inside the part.
    package func storedPart(of record: ObjectRecord, covers request: ClientRequest) -> ClosedRange<Int64>? {
        guard request.method == .get,
            let part = record.response.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
            let complete = part.completeLength, Int64(record.bodyLength) == part.length,
            let spec = request.headers["Range"].flatMap({ ByteRangeSpec($0) }),
            case .single(let lower, let upper) = spec.resolve(length: complete), lower >= part.first,
            upper <= part.last,
            ClientAnswer.ifRangeAllows(request.headers, stored: record.response)
        else { return nil }
        return lower...upper
    }

    /// For a plain GET of a URL whose stored part is a prefix of the representation: the same
    /// request asking for the rest (`Range: bytes=N-`), guarded by If-Range with the part's
    /// strong validator so a changed representation comes back whole. A part without a strong
    /// validator still asks only for the rest; a 206 answer then cannot be combined with it
    /// (RFC 9111 §3.4) and the whole response is fetched instead.
    package func completionRequest(for request: ClientRequest, part record: ObjectRecord) -> ClientRequest? {
        guard request.method == .get, !request.headers.contains("Range"),
            let part = record.response.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
            part.first == 0, let complete = part.completeLength, part.last < complete - 1
        else { return nil }
        var completion = request
        completion.headers.replace("Range", with: "bytes=\(part.last + 1)-")
        if let validator = StrongValidator(of: record.response) {
            completion.headers.replace("If-Range", with: validator.ifRangeValue)
        } else {
            completion.headers.remove("If-Range")
        }
        return completion
    }

    /// The freshness lifetime of a stored object, ended at its soft purge if it had one.
    /// - Parameter cacheControl: `governingCacheControl(record.response)` when the caller
    ///   has it already (parsing it is most of the cost).
    package func lifetime(of record: ObjectRecord, cacheControl: CacheControl? = nil) -> FreshnessLifetime {
        Self.lifetime(
            of: record, cacheControl: cacheControl ?? governingCacheControl(record.response),
            configuration: configuration)
    }

    /// ``lifetime(of:cacheControl:)`` from a configuration alone.
    package static func lifetime(
        of record: ObjectRecord, cacheControl: CacheControl, configuration: OutpostConfiguration
    ) -> FreshnessLifetime {
        let lifetime = FreshnessLifetime.of(
            record.response, cacheControl: cacheControl, configuration: configuration.freshness)
        guard let purgedAt = record.softPurgedAt else { return lifetime }
        return Reuse.softPurged(lifetime, stored: record.response, purgedAt: purgedAt)
    }

    /// The directives that govern this cache for a stored or received response: a targeted
    /// field (RFC 9213) when present and valid, else Cache-Control.
    package func governingCacheControl(_ response: StoredResponse) -> CacheControl {
        TargetedCacheControl.governing(response.headers, targets: configuration.targetedFields)
    }

    /// Starts one background refresh of a stale object (RFC 5861 §3), unless one is already
    /// running for its URL. The refresh is an ordinary fetch whose response goes nowhere but
    /// the store.
    package func refreshInBackground(_ request: ClientRequest, stale: ObjectRecord) {
        let key = request.key.description
        guard case .leader = coalescer.role(for: key, now: clock.now()) else { return }
        var refresh = request
        refresh.method = .get
        refresh.body = nil
        refresh.headers.remove("Range")
        refresh.headers.remove("If-Range")
        let plan = FetchPlan(
            forward: .stale, revalidating: Validation.canValidate(stale.response) ? stale : nil, stale: stale,
            detail: "background refresh", collapsed: false)
        let request = refresh
        runInBackground {
            do {
                // Without a Range or a stored part to complete, a refresh never asks for another fetch.
                if case .needsAnother(let retry) = try await self.fetch(
                    request, sink: DiscardingSink(), plan: plan, coalescingKey: key)
                {
                    self.logger.warning(
                        "background refresh not completed", metadata: ["url": "\(key)", "retry": "\(retry)"])
                }
            } catch {
                self.logger.warning("background refresh failed", metadata: ["url": "\(key)", "error": "\(error)"])
            }
        }
    }

    /// Runs work that outlives the request that started it (a refresh behind the client, a
    /// commit after the client has its answer); shutdown waits for it before the store closes.
    func runInBackground(_ work: @escaping @Sendable () async -> Void) {
        let id = backgroundCounter.withLockedValue { counter -> Int in
            counter += 1
            return counter
        }
        // The task is registered before it can finish and remove itself (both under the lock).
        background.withLockedValue { tasks in
            tasks[id] = Task {
                await work()
                _ = self.background.withLockedValue { $0.removeValue(forKey: id) }
            }
        }
    }

    /// Waits for the background refreshes in flight, then for the coding under way (at
    /// shutdown, before the store closes).
    package func drainBackground() async {
        while let task = background.withLockedValue({ $0.values.first }) {
            await task.value
        }
        await backgroundCoding.shutdown()
    }

    /// Whether the store now holds a response for a request whose lookup found none (the
    /// second look of a double-checked lock; a store error counts as nothing stored).
    private func storedSinceLookup(_ request: ClientRequest) -> Bool {
        guard case .found? = try? store.lookup(request.key.description, requestHeaders: request.headers) else {
            return false
        }
        return true
    }

    /// RFC 9111 §5.2.1.7: only-if-cached with nothing usable stored.
    private func sendOnlyIfCachedMiss(_ request: ClientRequest, sink: any ResponseSink) async throws -> RequestOutcome {
        try await sendError(
            status: 504, message: "only-if-cached: no stored response", sink: sink,
            cacheStatus: CacheStatus(forward: .miss, detail: "only-if-cached"), proxyError: nil)
    }
}
