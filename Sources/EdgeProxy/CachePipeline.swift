import CacheStore
import HTTPCaching
import Logging
import NIOCore

/// The path of one request through the cache (docs/architecture.md): key → store lookup →
/// reuse decision → serve, validate or fetch (coalesced) → store while streaming.
///
/// Decision logic lives in HTTPCaching; this type only sequences it and does the I/O.
final class CachePipeline: Sendable {
    let configuration: OutpostConfiguration
    let store: CacheStore
    let upstream: UpstreamPool
    let coalescer: Coalescer
    let clock: any CacheClock
    let logger: Logger

    init(
        configuration: OutpostConfiguration, store: CacheStore, upstream: UpstreamPool, clock: any CacheClock,
        logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.upstream = upstream
        self.coalescer = Coalescer(uncacheableTTL: configuration.cache.uncacheableTTL)
        self.clock = clock
        self.logger = logger
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
                request, sink: sink, status: CacheStatus(forward: .request, detail: "no-store"), invalidate: false)
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
            let cacheControl = record.response.cacheControl
            let lifetime = FreshnessLifetime.of(
                record.response, cacheControl: cacheControl, configuration: configuration.freshness)
            let now = clock.now()
            let decision = Reuse.decide(
                stored: record.response, responseCacheControl: cacheControl, lifetime: lifetime, request: directives,
                now: now)
            switch decision {
            case .fresh, .staleAllowed:
                let age = Age.current(of: record.response, now: now)
                var status = CacheStatus.hit(ttl: Int64((Double(lifetime.seconds) - age).rounded(.down)))
                if case .staleAllowed(let reason) = decision { status.detail = reason }
                if collapsed { status.collapsed = true }
                return try await serveStored(
                    record, body: body, request: request, sink: sink, cacheStatus: status, now: now)
            case .mustValidate(let reason):
                if directives.onlyIfCached { return try await sendOnlyIfCachedMiss(request, sink: sink) }
                let isFresh = Double(lifetime.seconds) > Age.current(of: record.response, now: now)
                let kind: CacheStatus.Forward = isFresh ? .request : .stale
                if request.method == "GET", Validation.canValidate(record.response) {
                    return try await fetchCoalesced(
                        request, sink: sink, forward: kind, revalidating: record, detail: reason, collapsed: collapsed)
                }
                return try await fetchCoalesced(
                    request, sink: sink, forward: kind, revalidating: nil, detail: reason, collapsed: collapsed)
            }
        case .noEntry:
            forward = .uriMiss
        case .noMatchingVariant:
            forward = .varyMiss
        }
        if directives.onlyIfCached { return try await sendOnlyIfCachedMiss(request, sink: sink) }
        return try await fetchCoalesced(
            request, sink: sink, forward: forward, revalidating: nil, detail: nil, collapsed: collapsed)
    }

    /// Fetches through the coalescer: the first request for a URL fetches; the others wait and
    /// look again. HEAD and Range requests are not coalesced (their responses are not the
    /// stored representation).
    private func fetchCoalesced(
        _ request: ClientRequest, sink: some ResponseSink, forward: CacheStatus.Forward, revalidating: ObjectRecord?,
        detail: String?, collapsed: Bool
    ) async throws -> RequestOutcome {
        let plan = FetchPlan(forward: forward, revalidating: revalidating, detail: detail, collapsed: collapsed)
        if request.method == "HEAD" {
            return try await passThrough(
                request, sink: sink, status: CacheStatus(forward: forward, detail: detail), invalidate: false)
        }
        if request.headers.contains("Range") || collapsed {
            return try await fetch(request, sink: sink, plan: plan, coalescingKey: nil)
        }
        let key = request.key.description
        switch coalescer.role(for: key, now: clock.now()) {
        case .leader:
            return try await fetch(request, sink: sink, plan: plan, coalescingKey: key)
        case .bypass:
            return try await fetch(request, sink: sink, plan: plan, coalescingKey: nil)
        case .follower:
            switch await coalescer.wait(for: key) {
            case .stored:
                let directives = RequestDirectives(request.headers, honour: configuration.cache.honourRequestDirectives)
                return try await lookupAndServe(request, directives: directives, sink: sink, collapsed: true)
            case .notStored:
                var plan = plan
                plan.collapsed = true
                return try await fetch(request, sink: sink, plan: plan, coalescingKey: nil)
            }
        }
    }

    /// RFC 9111 §5.2.1.7: only-if-cached with nothing usable stored.
    private func sendOnlyIfCachedMiss(_ request: ClientRequest, sink: some ResponseSink) async throws -> RequestOutcome
    {
        try await sendError(
            status: 504, message: "only-if-cached: no stored response", sink: sink,
            cacheStatus: CacheStatus(forward: .miss, detail: "only-if-cached"), proxyError: nil)
    }
}

/// How a fetch came about, for its Cache-Status and for what to do with a 304.
struct FetchPlan: Sendable {
    var forward: CacheStatus.Forward
    /// The stored response being validated, when the fetch is a validation.
    var revalidating: ObjectRecord?
    var detail: String?
    var collapsed: Bool
}
