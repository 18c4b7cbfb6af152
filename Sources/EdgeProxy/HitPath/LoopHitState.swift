import CacheStore
import CacheTransaction
import EdgeTelemetry
import HTTPCaching
import Logging
import NIOCore
import OutpostConfig

/// Everything one event loop keeps for the hits it answers (docs/performance.md): its store
/// read session, its counters, its batch of LRU touches, the objects it has prepared and its
/// copy of the pipeline in force. Only that loop's thread uses it, so none of it is locked.
final class LoopHitState {
    let eventLoop: any EventLoop
    let session: StoreReadSession
    let counters: LoopCounters
    let pipeline: LoopPipeline
    let registry: ConnectionRegistry
    let accessLog: AccessLog
    let logger: Logger
    private let store: CacheStore
    private let maxPrepared: Int

    let allocator = ByteBufferAllocator()

    /// Prepared objects by id, and routes by Host, valid for `preparedFor` (a reload drops them).
    private var prepared: [UInt64: PreparedObject] = [:]
    private var routes: [String: Route] = [:]
    private struct Route {
        var key: CacheKey
        /// `scheme://authority`: a hit's key string is this and its path and query.
        var prefix: String
        var origin: OriginURL?
    }
    /// Held (not just its identity), so a later pipeline cannot reuse its address.
    private var preparedFor: CachePipeline?
    private var settings = HitSettings(OutpostConfiguration())
    static let maxRoutes = 1024

    /// Hits not yet handed to the store's LRU (count and latest time per object), handed over
    /// every `lruInterval` seconds (Varnish's `lru_interval` default), or sooner when
    /// `lruBatch` objects are waiting. The writer's work is per object handed over, so an
    /// object hit many times in an interval costs one LRU move; counts stay exact.
    private var touches: [UInt64: (count: Int, last: Double)] = [:]
    private var lastHandOver = 0.0
    private var handOverScheduled = false
    static let lruInterval = 2.0
    static let lruBatch = 65536

    init(
        eventLoop: any EventLoop, store: CacheStore, hotRecords: Int, hotBodyBytes: Int, counters: LoopCounters,
        pipeline: LoopPipeline,
        registry: ConnectionRegistry, accessLog: AccessLog, logger: Logger
    ) throws {
        self.eventLoop = eventLoop
        self.store = store
        session = try store.makeReadSession(hotRecords: hotRecords, hotBodyBytes: hotBodyBytes)
        maxPrepared = max(1, hotRecords)
        self.counters = counters
        self.pipeline = pipeline
        self.registry = registry
        self.accessLog = accessLog
        self.logger = logger
    }

    /// The prepared form of a looked-up record under the pipeline in force.
    func prepared(_ record: ObjectRecord, revision: UInt64, pipeline: CachePipeline) -> PreparedObject {
        follow(pipeline)
        if let object = prepared[record.id], object.revision == revision { return object }
        let object = PreparedObject(record: record, revision: revision, pipeline: pipeline)
        if prepared.count >= maxPrepared { prepared.removeAll(keepingCapacity: true) }
        prepared[record.id] = object
        return object
    }

    /// The cache key, its string form and the origin of an origin-form request target with
    /// this Host: the same as `CacheKey(scheme:authority:pathAndQuery:)`, its `description` and
    /// `Upstream.origin(for:)` give, with the authority's normalisation, the routing and the
    /// key's `scheme://authority` prefix done once per Host value.
    // Inlined into the hit (HitHandler.answer): since the pipeline is another module the
    // optimiser left it out of line, ~200 instructions a hit (tools/bench-instructions).
    @inline(__always)
    func route(
        host: String, pathAndQuery: String, pipeline: CachePipeline
    ) -> (key: CacheKey, url: String, origin: OriginURL?) {
        follow(pipeline)
        let known: Route
        if let route = routes[host] {
            known = route
        } else {
            let key = CacheKey(scheme: "http", authority: host, pathAndQuery: "/")
            known = Route(
                key: key, prefix: key.scheme + "://" + key.authority,
                origin: pipeline.configuration.upstream.origin(for: key))
            if routes.count >= LoopHitState.maxRoutes { routes.removeAll(keepingCapacity: true) }
            routes[host] = known
        }
        let key = known.key.replacingPathAndQuery(pathAndQuery)
        return (key, known.prefix + key.pathAndQuery, known.origin)
    }

    /// The settings a hit reads, of the pipeline in force.
    func settings(_ pipeline: CachePipeline) -> HitSettings {
        follow(pipeline)
        return settings
    }

    /// Drops what was derived under another pipeline (a reload may change any of it).
    private func follow(_ pipeline: CachePipeline) {
        guard preparedFor !== pipeline else { return }
        prepared.removeAll()
        routes.removeAll()
        settings = HitSettings(pipeline.configuration)
        preparedFor = pipeline
    }

    /// Notes a hit for the LRU order and the object's hit counter.
    func touch(_ id: UInt64, at time: Double) {
        // One hash of the id: the entry is changed in place.
        Self.bump(&touches[id, default: (0, 0)], at: time)
        if touches.count >= LoopHitState.lruBatch || time - lastHandOver >= LoopHitState.lruInterval {
            handOver(at: time)
        } else if !handOverScheduled {
            // A quiet loop still hands its last touches over within the interval.
            handOverScheduled = true
            let state = NIOLoopBound(self, eventLoop: eventLoop)
            eventLoop.scheduleTask(in: .milliseconds(Int64(LoopHitState.lruInterval * 1000))) {
                state.value.handOverScheduled = false
                state.value.handOver(at: state.value.lastHandOver + LoopHitState.lruInterval)
            }
        }
    }

    private static func bump(_ entry: inout (count: Int, last: Double), at time: Double) {
        entry.count += 1
        entry.last = max(entry.last, time)
    }

    private func handOver(at time: Double) {
        lastHandOver = time
        guard !touches.isEmpty else { return }
        store.recordHits(touches)
        touches.removeAll(keepingCapacity: true)
    }
}

/// The configuration values a hit reads, copied once per pipeline: `pipeline.configuration`
/// read from this module is a copy of the whole configuration, every string and array in it
/// retained and released, on each hit (tools/bench-instructions).
struct HitSettings {
    var limits: RequestValidation.Limits
    var honourRequestDirectives: Bool
    var debugKey: Bool
    var exposeSurrogateKeys: Bool
    var maxRanges: Int

    init(_ configuration: OutpostConfiguration) {
        limits = RequestValidation.Limits(configuration.server)
        honourRequestDirectives = configuration.cache.honourRequestDirectives
        debugKey = configuration.cache.debugKey
        exposeSurrogateKeys = configuration.cache.exposeSurrogateKeys
        maxRanges = configuration.server.maxRanges
    }
}
