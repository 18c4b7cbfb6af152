import CacheStore
import Foundation
import HTTPCaching
import Metrics
import NIOConcurrencyHelpers
import Prometheus
import Synchronization

/// What happened to a request, as counted in /stats and /metrics (`result` dimension).
package enum CacheResult: String, CaseIterable, Sendable {
    /// Answered from storage, fresh.
    case hit
    /// Answered from storage while stale (stale-while-revalidate, stale-if-error, max-stale).
    case stale
    /// Nothing usable stored: fetched.
    case miss
    /// A stored response was validated and the origin answered 304.
    case revalidated
    /// A stored response was stale (or the request asked to bypass it) and was replaced.
    case refreshed
    /// Only part of the representation was stored, not the part asked for.
    case partial
    /// Not served from storage by design: other methods, no-store requests, bypasses.
    case pass

    package init(_ status: CacheStatus) {
        if status.hit {
            self = status.detail?.servedStale == true ? .stale : .hit
            return
        }
        // A stale copy served because the origin failed (RFC 5861 §4) went forward first.
        if status.detail == .staleIfError {
            self = .stale
            return
        }
        switch status.forward {
        case .uriMiss?, .varyMiss?, .miss?: self = .miss
        case .request? where status.detail == .requestNoStore: self = .pass
        case .stale?, .request?: self = status.forwardStatus == 304 ? .revalidated : .refreshed
        case .partial?: self = .partial
        case .bypass?, .method?, nil: self = .pass
        }
    }
}

/// The node's counters: kept since start for `GET /stats`, and reported through
/// swift-metrics to a Prometheus registry for `GET /metrics` (names prefixed `outpost_`).
public final class Telemetry: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let startedAt = Date()

    private struct Counts {
        var byResult: [CacheResult: Int] = [:]
        var byStatus: [Int: Int] = [:]
        var bytesSent = 0
        var purges = 0
        var purgedObjects = 0
        var coalescedWaits = 0
        var upstreamErrors = 0
        /// Requests answered on their event loop by the hit path.
        var hitPath = 0
        var codings = CodingCounts()
        var evictionsReported: UInt64?
        /// Damaged store values found by reads (``recordStoreCorruption()``).
        var storeCorruptions = 0
        /// Origin responses carrying Set-Cookie, by what `cache.set_cookie` made of them.
        var setCookie: [SetCookieAction: Int] = [:]
    }

    /// What became of an origin response that carried Set-Cookie.
    package enum SetCookieAction: String, CaseIterable {
        /// Not stored because of the cookie (`set_cookie = "pass"`).
        case passed
        /// Stored without the field (`strip`).
        case stripped
        /// Stored with the field (`store`).
        case stored
        /// Not stored for another reason (no-store, private, no freshness, ...).
        case notStorable = "not_storable"
    }

    /// What the background coder did since start (see ``BackgroundCoding``).
    public struct CodingCounts: Sendable, Equatable {
        /// Objects whose br and gzip codings were stored.
        public var coded = 0
        /// Demands dropped because `compression.max_pending_codings` were already waiting.
        public var dropped = 0
        /// Objects whose coding failed (logged).
        public var failed = 0
    }

    package enum CodingOutcome: String, CaseIterable {
        case coded, dropped, failed
    }

    private let counts = NIOLockedValueBox(Counts())
    /// Each event loop's own counters for the requests it answers on the hit path, and what of
    /// them has been folded into `counts` and the metrics so far.
    private let loops = NIOLockedValueBox<[(counters: LoopCounters, folded: LoopCounters.Snapshot)]>([])
    private let requests: [CacheResult: Metrics.Counter]
    private let statusCounters = NIOLockedValueBox<[Int: Metrics.Counter]>([:])
    private let factory: PrometheusMetricsFactory
    private let bytesSent: Metrics.Counter
    private let upstreamLatency: Metrics.Timer
    private let upstreamErrors: Metrics.Counter
    private let storeBytes: Metrics.Gauge
    private let storeObjects: Metrics.Gauge
    private let storeEntries: Metrics.Gauge
    private let storeMaxBytes: Metrics.Gauge
    private let evictions: Metrics.Counter
    private let storeCorruptions: Metrics.Counter
    private let storeDegraded: Metrics.Gauge
    private let purgedObjects: Metrics.Counter
    private let coalescedWaits: Metrics.Counter
    private let hitPathRequests: Metrics.Counter
    private let codings: [CodingOutcome: Metrics.Counter]
    private let setCookieResponses: [SetCookieAction: Metrics.Counter]
    /// The `[cluster] peers` counters.
    package let peers: PeerTelemetry
    /// The purge journal's gauges.
    package let journal: JournalTelemetry

    /// Reports into `registry` (each server its own, so tests and several servers in one
    /// process never share counters; swift-metrics' global bootstrap is not used).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["outpost_upstream_latency_seconds"] = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30),
        ]
        self.factory = factory
        peers = PeerTelemetry(factory: factory)
        journal = JournalTelemetry(factory: factory)
        var requests: [CacheResult: Metrics.Counter] = [:]
        for result in CacheResult.allCases {
            requests[result] = Metrics.Counter(
                label: "outpost_requests_total", dimensions: [("result", result.rawValue)], factory: factory)
        }
        self.requests = requests
        bytesSent = Metrics.Counter(label: "outpost_bytes_sent_total", factory: factory)
        upstreamLatency = Metrics.Timer(label: "outpost_upstream_latency_seconds", factory: factory)
        upstreamErrors = Metrics.Counter(label: "outpost_upstream_errors_total", factory: factory)
        storeBytes = Metrics.Gauge(label: "outpost_store_bytes", factory: factory)
        storeObjects = Metrics.Gauge(label: "outpost_store_objects", factory: factory)
        storeEntries = Metrics.Gauge(label: "outpost_store_entries", factory: factory)
        storeMaxBytes = Metrics.Gauge(label: "outpost_store_max_bytes", factory: factory)
        evictions = Metrics.Counter(label: "outpost_evictions_total", factory: factory)
        storeCorruptions = Metrics.Counter(label: "outpost_store_corruptions_total", factory: factory)
        storeDegraded = Metrics.Gauge(label: "outpost_store_degraded", factory: factory)
        purgedObjects = Metrics.Counter(label: "outpost_purged_objects_total", factory: factory)
        coalescedWaits = Metrics.Counter(label: "outpost_coalesced_waits_total", factory: factory)
        hitPathRequests = Metrics.Counter(label: "outpost_hit_path_requests_total", factory: factory)
        var codings: [CodingOutcome: Metrics.Counter] = [:]
        for outcome in CodingOutcome.allCases {
            codings[outcome] = Metrics.Counter(
                label: "outpost_codings_total", dimensions: [("outcome", outcome.rawValue)], factory: factory)
        }
        self.codings = codings
        var setCookieResponses: [SetCookieAction: Metrics.Counter] = [:]
        for action in SetCookieAction.allCases {
            setCookieResponses[action] = Metrics.Counter(
                label: "outpost_set_cookie_responses_total", dimensions: [("action", action.rawValue)],
                factory: factory)
        }
        self.setCookieResponses = setCookieResponses
    }

    /// One object coded in the background, or a demand dropped, or a coding that failed.
    package func recordCoding(_ outcome: CodingOutcome) {
        counts.withLockedValue { counts in
            switch outcome {
            case .coded: counts.codings.coded += 1
            case .dropped: counts.codings.dropped += 1
            case .failed: counts.codings.failed += 1
            }
        }
        codings[outcome]?.increment()
    }

    package var codingCounts: CodingCounts { counts.withLockedValue { $0.codings } }

    /// One answered request.
    package func record(status: Int, bytes: Int, cacheStatus: CacheStatus) {
        let result = CacheResult(cacheStatus)
        counts.withLockedValue { counts in
            counts.byResult[result, default: 0] += 1
            counts.byStatus[status, default: 0] += 1
            counts.bytesSent += bytes
        }
        requests[result]?.increment()
        statusCounter(status).increment()
        if bytes > 0 { bytesSent.increment(by: bytes) }
    }

    private func statusCounter(_ status: Int) -> Metrics.Counter {
        statusCounters.withLockedValue { counters in
            if let counter = counters[status] { return counter }
            let counter = Metrics.Counter(
                label: "outpost_responses_total", dimensions: [("status", String(status))], factory: factory)
            counters[status] = counter
            return counter
        }
    }

    /// Counters for one event loop's hits: written only by that loop (no lock, no shared cache
    /// line), folded into /stats and /metrics when those are read.
    package func makeLoopCounters() -> LoopCounters {
        let counters = LoopCounters()
        loops.withLockedValue { $0.append((counters, LoopCounters.Snapshot())) }
        return counters
    }

    /// Adds what the event loops counted since the last fold to `counts` and the metrics.
    private func foldLoopCounters() {
        loops.withLockedValue { loops in
            for index in loops.indices {
                let now = loops[index].counters.snapshot()
                let delta = now.minus(loops[index].folded)
                loops[index].folded = now
                guard delta.requests > 0 else { continue }
                counts.withLockedValue { counts in
                    for (result, count) in delta.byResult where count > 0 {
                        counts.byResult[result, default: 0] += count
                    }
                    for (status, count) in delta.byStatus where count > 0 {
                        counts.byStatus[status, default: 0] += count
                    }
                    counts.bytesSent += delta.bytesSent
                    counts.hitPath += delta.requests
                }
                hitPathRequests.increment(by: delta.requests)
                for (result, count) in delta.byResult where count > 0 { requests[result]?.increment(by: count) }
                for (status, count) in delta.byStatus where count > 0 { statusCounter(status).increment(by: count) }
                if delta.bytesSent > 0 { bytesSent.increment(by: delta.bytesSent) }
            }
        }
    }

    /// Time from sending a request upstream to its response head (or failure).
    package func recordUpstream(latency: Duration, failed: Bool) {
        upstreamLatency.recordNanoseconds(latency.nanoseconds)
        if failed {
            upstreamErrors.increment()
            counts.withLockedValue { $0.upstreamErrors += 1 }
        }
    }

    /// A request that waited for another request's fetch of the same URL.
    package func recordCoalescedWait() {
        coalescedWaits.increment()
        counts.withLockedValue { $0.coalescedWaits += 1 }
    }

    /// A purge, with the number of objects it covered.
    package func recordPurge(_ purge: Purge, objects: Int) {
        let kind: String
        switch purge.target {
        case .url: kind = "url"
        case .prefix: kind = "prefix"
        case .tags: kind = "tag"
        }
        Metrics.Counter(
            label: "outpost_purges_total", dimensions: [("kind", kind), ("mode", purge.soft ? "soft" : "hard")],
            factory: factory
        ).increment()
        if objects > 0 { purgedObjects.increment(by: objects) }
        counts.withLockedValue { counts in
            counts.purges += 1
            counts.purgedObjects += objects
        }
    }

    /// An origin response carried Set-Cookie; `action` is what `cache.set_cookie` made of it.
    package func recordSetCookie(_ action: SetCookieAction) {
        setCookieResponses[action]?.increment()
        counts.withLockedValue { $0.setCookie[action, default: 0] += 1 }
    }

    /// A read found a damaged store value (a checksum mismatch or an undecodable record); it
    /// was not served and what held it is being removed.
    package func recordStoreCorruption() {
        storeCorruptions.increment()
        counts.withLockedValue { $0.storeCorruptions += 1 }
    }

    /// Brings the store gauges (and the eviction counter, kept by the store) up to date; called
    /// before the registry is read.
    package func updateStore(usage: StoreUsage, entries: Int, maxBytes: Int, degraded: Bool = false) {
        foldLoopCounters()
        storeDegraded.record(degraded ? 1 : 0)
        storeBytes.record(Int(clamping: usage.bytes))
        storeObjects.record(Int(clamping: usage.objects))
        storeEntries.record(entries)
        storeMaxBytes.record(maxBytes)
        let delta = counts.withLockedValue { counts -> UInt64 in
            // The first report counts evictions since this process started at zero.
            guard let reported = counts.evictionsReported else {
                counts.evictionsReported = usage.evictions
                return 0
            }
            counts.evictionsReported = max(reported, usage.evictions)
            return usage.evictions > reported ? usage.evictions - reported : 0
        }
        if delta > 0 { evictions.increment(by: Int(clamping: delta)) }
    }

    /// The counters for `GET /stats`.
    package func statistics(usage: StoreUsage, entries: Int, maxBytes: Int, degraded: Bool = false) -> [String: Any] {
        foldLoopCounters()
        let counts = counts.withLockedValue { $0 }
        let total = counts.byResult.values.reduce(0, +)
        let hits = (counts.byResult[.hit] ?? 0) + (counts.byResult[.stale] ?? 0)
        var byResult: [String: Int] = [:]
        for result in CacheResult.allCases { byResult[result.rawValue] = counts.byResult[result] ?? 0 }
        return [
            "entries": entries,
            "objects": Int(clamping: usage.objects),
            "bytes": Int(clamping: usage.bytes),
            "max_bytes": maxBytes,
            "requests": total,
            "hits": hits,
            "misses": counts.byResult[.miss] ?? 0,
            "hit_ratio": total == 0 ? 0.0 : Double(hits) / Double(total),
            "by_result": byResult,
            "by_status": Dictionary(uniqueKeysWithValues: counts.byStatus.map { (String($0.key), $0.value) }),
            "bytes_sent": counts.bytesSent,
            "evictions": Int(clamping: usage.evictions),
            "store_corruptions": counts.storeCorruptions,
            "set_cookie_responses": Dictionary(
                uniqueKeysWithValues: SetCookieAction.allCases.map { ($0.rawValue, counts.setCookie[$0] ?? 0) }),
            "store_writes": degraded ? "degraded" : "ok",
            "purges": counts.purges,
            "purged_objects": counts.purgedObjects,
            "coalesced_waits": counts.coalescedWaits,
            "upstream_errors": counts.upstreamErrors,
            "hit_path": counts.hitPath,
            "codings": [
                "coded": counts.codings.coded, "dropped": counts.codings.dropped, "failed": counts.codings.failed,
            ],
            "uptime_seconds": Int(Date().timeIntervalSince(startedAt)),
            "peers": peers.statistics(),
        ]
    }
}

/// One event loop's counts of the requests it answered without leaving the loop. Only that
/// loop adds (relaxed atomics on memory no other core writes); readers take snapshots.
package final class LoopCounters: Sendable {
    /// The statuses the hit path answers with; anything else goes through ``Telemetry/record``.
    static let statuses = [200, 206, 304]

    /// One counter (a class, so that an array can hold the non-copyable atomic).
    private final class Tally: Sendable {
        let value = Atomic<Int>(0)
        func add(_ amount: Int) { value.add(amount, ordering: .relaxed) }
        func load() -> Int { value.load(ordering: .relaxed) }
    }

    private let byResult = CacheResult.allCases.map { _ in Tally() }
    private let byStatus = LoopCounters.statuses.map { _ in Tally() }
    private let bytes = Tally()

    /// Counts one answered request; false when its status is not one counted here.
    package func record(status: Int, bytes sent: Int, result: CacheResult) -> Bool {
        guard let statusIndex = LoopCounters.statuses.firstIndex(of: status),
            let resultIndex = CacheResult.allCases.firstIndex(of: result)
        else { return false }
        byResult[resultIndex].add(1)
        byStatus[statusIndex].add(1)
        if sent > 0 { bytes.add(sent) }
        return true
    }

    struct Snapshot {
        var byResult: [CacheResult: Int] = [:]
        var byStatus: [Int: Int] = [:]
        var bytesSent = 0
        var requests: Int { byResult.values.reduce(0, +) }

        func minus(_ earlier: Snapshot) -> Snapshot {
            var delta = Snapshot(bytesSent: bytesSent - earlier.bytesSent)
            for (result, count) in byResult { delta.byResult[result] = count - (earlier.byResult[result] ?? 0) }
            for (status, count) in byStatus { delta.byStatus[status] = count - (earlier.byStatus[status] ?? 0) }
            return delta
        }
    }

    func snapshot() -> Snapshot {
        var snapshot = Snapshot(bytesSent: bytes.load())
        for (index, result) in CacheResult.allCases.enumerated() { snapshot.byResult[result] = byResult[index].load() }
        for (index, status) in LoopCounters.statuses.enumerated() { snapshot.byStatus[status] = byStatus[index].load() }
        return snapshot
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
