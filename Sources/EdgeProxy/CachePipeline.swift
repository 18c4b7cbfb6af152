import CacheStore
import ContentCoding
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The path of one request through the cache (docs/architecture.md): key → store lookup →
/// reuse decision → serve, validate or fetch (coalesced) → store while streaming.
///
/// Decision logic lives in HTTPCaching; this type only sequences it and does the I/O.
final class CachePipeline: Sendable {
    let configuration: OutpostConfiguration
    let store: CacheStore
    let upstream: any Origin
    let coalescer: Coalescer
    let clock: any CacheClock
    let logger: Logger
    let telemetry: Telemetry
    /// Codes compressible objects into br and gzip after they are stored, on first demand.
    let backgroundCoding: BackgroundCoding
    /// Background refreshes in flight, so that shutdown can wait for them before the store closes.
    private let background: NIOLockedValueBox<[Int: Task<Void, Never>]>
    private let backgroundCounter: NIOLockedValueBox<Int>
    /// Store writes refused by a full disk: logged at most every 10 s, with a count.
    let storeWriteFailures: RateLimitedLog

    init(
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

    func reconfigured(_ configuration: OutpostConfiguration, upstream: any Origin) -> CachePipeline {
        CachePipeline(reconfiguring: self, configuration: configuration, upstream: upstream)
    }

    var via: String { configuration.server.viaPseudonym }

    func handle(_ request: ClientRequest, sink: some ResponseSink) async throws -> RequestOutcome {
        guard request.isGetOrHead else {
            // Other methods are never answered from storage (RFC 9111 §3); unsafe ones
            // invalidate what is stored for the target (§4.4).
            return try await passThrough(request, sink: sink, status: CacheStatus(forward: .method), invalidate: true)
        }
        let directives = RequestDirectives(request.headers, honour: configuration.cache.honourRequestDirectives)
        if directives.noStore {
            // §5.2.1.5: neither store the response nor answer from storage.
            return try await passThrough(
                request, sink: sink, status: CacheStatus(forward: .request, detail: .requestNoStore), invalidate: false)
        }
        return try await lookupAndServe(request, directives: directives, sink: sink, collapsed: false)
    }

    private func lookupAndServe(
        _ request: ClientRequest, directives: RequestDirectives, sink: some ResponseSink, collapsed: Bool
    ) async throws -> RequestOutcome {
        let primaryKey = request.key.description
        let lookup: CacheStore.Lookup
        do {
            lookup = try store.lookup(primaryKey, requestHeaders: request.headers)
        } catch {
            // A store that cannot be read is bypassed, never fatal for the request.
            logger.error("store lookup failed", metadata: ["key": "\(primaryKey)", "error": "\(error)"])
            return try await passThrough(
                request, sink: sink, status: CacheStatus(forward: .bypass, detail: "store error"), invalidate: false)
        }
        let forward: CacheStatus.Forward
        switch lookup {
        case .found(let record, let body):
            // RFC 9111 §3.4: a stored part answers only ranges it holds; otherwise go forward.
            if record.response.status == 206 && storedPart(of: record, covers: request) == nil {
                if directives.onlyIfCached { return try await sendOnlyIfCachedMiss(request, sink: sink) }
                if let completion = completionRequest(for: request, part: record) {
                    // RFC 9111 §3.4: ask only for the bytes after the stored part and combine.
                    var plan = FetchPlan(
                        forward: .partial, revalidating: nil, stale: nil, detail: nil, collapsed: collapsed)
                    plan.forwardRange = true
                    plan.completing = record
                    return try await fetch(completion, sink: sink, plan: plan, coalescingKey: nil)
                }
                let plan = FetchPlan(
                    forward: .partial, revalidating: nil, stale: nil, detail: nil, collapsed: collapsed)
                return try await fetchCoalesced(request, sink: sink, plan: plan)
            }
            let cacheControl = governingCacheControl(record.response)
            let lifetime = lifetime(of: record, cacheControl: cacheControl)
            let now = clock.now()
            let age = Age.current(of: record.response, now: now)
            let decision = reuseDecision(
                record, cacheControl: cacheControl, lifetime: lifetime, age: age, directives: directives)
            var status = CacheStatus.hit(ttl: lifetime.remaining(atAge: age))
            status.collapsed = collapsed
            switch decision {
            case .fresh:
                return try await serveStored(
                    record, body: body, request: request, sink: sink, cacheStatus: status, now: now)
            case .staleAllowed(let reason):
                status.detail = .staleAllowed(reason)
                return try await serveStored(
                    record, body: body, request: request, sink: sink, cacheStatus: status, now: now)
            case .staleWhileRevalidate:
                // RFC 5861 §3: answer from the stale copy at once; refresh it behind the client.
                status.detail = .staleWhileRevalidate
                refreshInBackground(request, stale: record)
                return try await serveStored(
                    record, body: body, request: request, sink: sink, cacheStatus: status, now: now)
            case .mustValidate(let reason):
                if directives.onlyIfCached { return try await sendOnlyIfCachedMiss(request, sink: sink) }
                let kind: CacheStatus.Forward = Double(lifetime.seconds) > age ? .request : .stale
                let plan = FetchPlan(
                    forward: kind,
                    revalidating: request.method == "GET" && Validation.canValidate(record.response) ? record : nil,
                    stale: record, detail: .mustValidate(reason), collapsed: collapsed)
                return try await fetchCoalesced(request, sink: sink, plan: plan)
            }
        case .noEntry:
            forward = .uriMiss
        case .noMatchingVariant:
            forward = .varyMiss
        }
        if directives.onlyIfCached { return try await sendOnlyIfCachedMiss(request, sink: sink) }
        let plan = FetchPlan(forward: forward, revalidating: nil, stale: nil, detail: nil, collapsed: collapsed)
        return try await fetchCoalesced(request, sink: sink, plan: plan)
    }

    /// How a stored response may serve a request (`Reuse.decide`), for the pipeline and the
    /// hit path alike. A soft-purged object is revalidated before it is used again (no refresh
    /// behind the client); stale-if-error and the client's max-stale still apply.
    func reuseDecision(
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
    func storedPart(of record: ObjectRecord, covers request: ClientRequest) -> ClosedRange<Int64>? {
        guard request.method == "GET",
            let part = record.response.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
            let complete = part.completeLength, Int64(record.bodyLength) == part.length,
            let spec = request.headers["Range"].flatMap({ ByteRangeSpec($0) }),
            case .single(let lower, let upper) = spec.resolve(length: complete), lower >= part.first,
            upper <= part.last,
            ifRangeAllows(request.headers, stored: record.response)
        else { return nil }
        return lower...upper
    }

    /// For a plain GET of a URL whose stored part is a prefix of the representation: the same
    /// request asking for the rest (`Range: bytes=N-`), guarded by If-Range with the part's
    /// strong validator so a changed representation comes back whole. A part without a strong
    /// validator still asks only for the rest; a 206 answer then cannot be combined with it
    /// (RFC 9111 §3.4) and the whole response is fetched instead.
    func completionRequest(for request: ClientRequest, part record: ObjectRecord) -> ClientRequest? {
        guard request.method == "GET", !request.headers.contains("Range"),
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
    func lifetime(of record: ObjectRecord, cacheControl: CacheControl? = nil) -> FreshnessLifetime {
        let lifetime = FreshnessLifetime.of(
            record.response, cacheControl: cacheControl ?? governingCacheControl(record.response),
            configuration: configuration.freshness)
        guard let purgedAt = record.softPurgedAt else { return lifetime }
        return Reuse.softPurged(lifetime, stored: record.response, purgedAt: purgedAt)
    }

    /// The directives that govern this cache for a stored or received response: a targeted
    /// field (RFC 9213) when present and valid, else Cache-Control.
    func governingCacheControl(_ response: StoredResponse) -> CacheControl {
        TargetedCacheControl.governing(response.headers, targets: configuration.targetedFields)
    }

    /// Starts one background refresh of a stale object (RFC 5861 §3), unless one is already
    /// running for its URL. The refresh is an ordinary fetch whose response goes nowhere but
    /// the store.
    func refreshInBackground(_ request: ClientRequest, stale: ObjectRecord) {
        let key = request.key.description
        guard case .leader = coalescer.role(for: key, now: clock.now()) else { return }
        var refresh = request
        refresh.method = "GET"
        refresh.body = nil
        refresh.headers.remove("Range")
        refresh.headers.remove("If-Range")
        let plan = FetchPlan(
            forward: .stale, revalidating: Validation.canValidate(stale.response) ? stale : nil, stale: stale,
            detail: "background refresh", collapsed: false)
        let request = refresh
        runInBackground {
            do {
                _ = try await self.fetch(request, sink: DiscardingSink(), plan: plan, coalescingKey: key)
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
    func drainBackground() async {
        while let task = background.withLockedValue({ $0.values.first }) {
            await task.value
        }
        await backgroundCoding.shutdown()
    }

    /// Fetches through the coalescer: the first request for a URL fetches; the others wait and
    /// look again. HEAD requests are not coalesced (a HEAD miss is forwarded as HEAD).
    private func fetchCoalesced(
        _ request: ClientRequest, sink: some ResponseSink, plan: FetchPlan
    ) async throws -> RequestOutcome {
        if request.method == "HEAD" {
            let status = CacheStatus(forward: plan.forward, detail: plan.detail)
            return try await passThrough(request, sink: sink, status: status, invalidate: false)
        }
        if plan.collapsed {
            return try await fetch(request, sink: sink, plan: plan, coalescingKey: nil)
        }
        if configuration.cache.rangeFetchMaxSize == 0, request.headers.contains("Range") {
            // range_fetch_max_size = 0: every range goes upstream as sent; its 206 is kept as a part.
            var ranged = plan
            ranged.forwardRange = true
            return try await fetch(request, sink: sink, plan: ranged, coalescingKey: nil)
        }
        let key = request.key.description
        switch coalescer.role(for: key, now: clock.now()) {
        case .leader:
            if plan.forward == .uriMiss || plan.forward == .varyMiss, storedSinceLookup(request) {
                // The previous leader committed between this request's lookup and its turn
                // (its client had the response before the commit landed): use what it stored
                // instead of asking the origin a second time.
                coalescer.finish(key, outcome: .stored, uncacheable: false, now: clock.now())
                let directives = RequestDirectives(request.headers, honour: configuration.cache.honourRequestDirectives)
                return try await lookupAndServe(request, directives: directives, sink: sink, collapsed: true)
            }
            return try await fetch(request, sink: sink, plan: plan, coalescingKey: key)
        case .bypass:
            return try await fetch(request, sink: sink, plan: plan, coalescingKey: nil)
        case .follower:
            telemetry.recordCoalescedWait()
            switch await coalescer.wait(for: key) {
            case .stored:
                let directives = RequestDirectives(request.headers, honour: configuration.cache.honourRequestDirectives)
                return try await lookupAndServe(request, directives: directives, sink: sink, collapsed: true)
            case .notStored:
                var plan = plan
                plan.collapsed = true
                return try await fetch(request, sink: sink, plan: plan, coalescingKey: nil)
            case .failed(let error):
                var plan = plan
                plan.collapsed = true
                return try await answerFailure(error, request: request, sink: sink, plan: plan)
            }
        }
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
    private func sendOnlyIfCachedMiss(_ request: ClientRequest, sink: some ResponseSink) async throws -> RequestOutcome
    {
        try await sendError(
            status: 504, message: "only-if-cached: no stored response", sink: sink,
            cacheStatus: CacheStatus(forward: .miss, detail: "only-if-cached"), proxyError: nil)
    }
}

/// How a fetch came about, for its Cache-Status and for what to do with a 304 or an error.
struct FetchPlan: Sendable {
    var forward: CacheStatus.Forward
    /// The stored response being validated, when the fetch is a validation.
    var revalidating: ObjectRecord?
    /// The stored (stale or no longer usable) response this fetch replaces, if any: what
    /// stale-if-error falls back to, and why an unreachable origin is a 504.
    var stale: ObjectRecord?
    var detail: CacheStatus.Detail?
    /// Send the client's Range (and its conditions) upstream and keep a 206 as a stored part.
    var forwardRange = false
    /// The stored prefix part this fetch completes: the client asked for the whole response.
    var completing: ObjectRecord?
    var collapsed: Bool
}
