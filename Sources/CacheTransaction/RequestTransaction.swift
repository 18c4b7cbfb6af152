import CacheStore
import HTTPCaching
import NIOCore

/// The caching rules a transaction decides by: pure functions of the configuration and the
/// stored response, no I/O (``CachePipeline`` provides them; the hit path uses the same ones).
package protocol TransactionRules {
    var honoursRequestDirectives: Bool { get }
    /// `cache.range_fetch_max_size`: 0 sends every Range upstream as it came.
    var rangeFetchMaxSize: Int { get }
    func governingCacheControl(_ response: StoredResponse) -> CacheControl
    func lifetime(of record: ObjectRecord, cacheControl: CacheControl?) -> FreshnessLifetime
    func reuseDecision(
        _ record: ObjectRecord, cacheControl: CacheControl, lifetime: FreshnessLifetime, age: Double,
        directives: RequestDirectives
    ) -> ReuseDecision
    func storedPart(of record: ObjectRecord, covers request: ClientRequest) -> ClosedRange<Int64>?
    func completionRequest(for request: ClientRequest, part record: ObjectRecord) -> ClientRequest?
}

/// One request's way through the cache, read the way Varnish's `cache_req_fsm.c` is read: the
/// transaction's state, the step it is at, and what moves it on (issue 12).
///
/// Pure: `next(_:)` takes what the I/O layer found (an ``Event``) and returns the next
/// ``Action`` for it to perform; ``CachePipeline/handle(_:sink:)`` is that I/O layer. No step
/// calls another: waiting for a coalescing leader and looking again afterwards are steps.
///
/// ```
/// receive ─┬─ not GET/HEAD ─────────────────────────────► pass (fwd=method, invalidates)
///          ├─ request no-store ─────────────────────────► pass (fwd=request)
///          └─► lookup ─┬─ store error ──────────────────► pass (fwd=bypass)
///                      ├─ stored part, other bytes ─────► fetch the rest | coalesce (fwd=partial)
///                      ├─ fresh / stale allowed ────────► serve (hit)
///                      ├─ stale-while-revalidate ───────► serve, refresh behind
///                      ├─ must validate ────────────────► coalesce (fwd=stale | request)
///                      └─ nothing / no variant ─────────► coalesce (fwd=uri-miss | vary-miss)
///                          (only-if-cached instead of going forward ⇒ 504)
/// coalesce ─┬─ HEAD ────────────────────────────────────► pass
///           ├─ collapsed already, or Range with range_fetch_max_size = 0 ──► fetch alone
///           └─► ask the coalescer ─┬─ leader ─► stored meanwhile? ─┬─ yes ─► release ─► lookup
///                                  │                               └─ no ──► fetch (leads)
///                                  ├─ bypass (hit-for-miss) ─────────────────► fetch alone
///                                  └─ follower ─► wait ─┬─ stored ──► lookup (collapsed)
///                                                       ├─ not stored ─► fetch alone (collapsed)
///                                                       ├─ failed ─► answer the failure
///                                                       └─ streaming ─┬─ fresh, same variant ─► serve live
///                                                                     └─ else ─► wait for its end
/// serve live ─┬─ answered ──────────────────────────────► done
///             └─ needs the commit (coding, several ranges, purged) ─► wait for its end
/// fetch ─┬─ answered ───────────────────────────────────► done
///        ├─ range of an object over range_fetch_max_size ► fetch the range alone
///        └─ completion that cannot be joined to its part ► fetch the whole (fwd=partial)
/// ```
package struct RequestTransaction {
    enum Step: Equatable {
        case receive
        case lookup
        case askCoalescer
        case checkStoredSinceLookup
        case releaseLead
        case waitForLeader
        /// Answering from a leader's body as it streams in; the request may need the commit.
        case followLeader
        /// A fetch is under way; its response may ask for another (``FetchRetry``).
        case fetch
        /// An action that answers the client was handed out: nothing follows.
        case done
    }

    /// What the I/O layer found, in answer to the last action.
    enum Event {
        case received
        case lookedUp(CacheStore.Lookup, now: Double)
        case lookupFailed
        case role(Coalescer.Role)
        case storedSinceLookup(Bool)
        case leadReleased
        case leaderFinished(Coalescer.Outcome)
        /// The leader is storing a body that streams in (``Coalescer/Outcome/streaming(_:)``).
        case leaderStreaming(LiveBody, now: Double)
        /// The leader's streaming body cannot answer this request (it needs the commit).
        case liveBodyUnusable
        /// The fetch's response did not answer the client: another fetch must.
        case fetchNeedsAnother(FetchRetry)
    }

    /// What the I/O layer is to do next. `pass`, `serve`, `answerFailure` and
    /// `onlyIfCachedMiss` answer the client and end the transaction; `fetch` ends it when it
    /// answers, or reports `fetchNeedsAnother`.
    enum Action {
        case lookUp
        case askCoalescer(key: String)
        case checkStoredSinceLookup
        /// Tell the coalescer this leader stored nothing itself (another commit landed).
        case releaseLead(key: String)
        case waitForLeader(key: String)
        /// Wait until the leader's fetch has ended (its commit landed, or not).
        case waitForLeaderEnd(LiveBody)
        /// Forward it, never stored or served from storage.
        case pass(CacheStatus, invalidate: Bool)
        /// Answer from the stored response (`now` is the time its age was taken at);
        /// `refreshBehind`: refresh it in the background too (RFC 5861 §3).
        case serve(ObjectRecord, body: ByteBuffer?, CacheStatus, now: Double, refreshBehind: Bool)
        /// Answer from a leader's body as it streams in, as `serve` would once it is stored;
        /// reports `liveBodyUnusable` when the request needs the stored object.
        case serveLive(LiveBody, CacheStatus, now: Double)
        /// Go to the origin. `coalescingKey` when this request leads others waiting for it.
        case fetch(ClientRequest, FetchPlan, coalescingKey: String?)
        /// The leader this request waited for failed: answer with its error (or stale).
        case answerFailure(ProxyError, FetchPlan)
        /// RFC 9111 §5.2.1.7: only-if-cached with nothing usable stored → 504.
        case onlyIfCachedMiss
    }

    let request: ClientRequest
    let directives: RequestDirectives
    private(set) var step = Step.receive
    /// Whether this request's answer came from another request's fetch (Cache-Status
    /// `collapsed`): set once it waited for a leader or found a leader's commit.
    private(set) var collapsed = false
    /// The fetch being planned while the coalescer is asked.
    private(set) var plan: FetchPlan?
    /// The request sent by the fetch under way (it may differ from the client's, see
    /// ``TransactionRules/completionRequest(for:part:)``).
    private(set) var fetched: ClientRequest?
    /// The leader's body this request is answered from as it streams in.
    private(set) var following: LiveBody?

    init(request: ClientRequest, rules: some TransactionRules) {
        self.request = request
        directives = RequestDirectives(request.headers, honour: rules.honoursRequestDirectives)
    }

    var key: String { request.key.description }

    /// The next action, given what the last one found.
    mutating func next(_ event: Event, rules: some TransactionRules) -> Action {
        switch (step, event) {
        case (.receive, .received):
            guard request.isGetOrHead else {
                // Other methods are never answered from storage (RFC 9111 §3); unsafe ones
                // invalidate what is stored for the target (§4.4).
                return finish(.pass(CacheStatus(forward: .method), invalidate: true))
            }
            if directives.noStore {
                // §5.2.1.5: neither store the response nor answer from storage.
                return finish(.pass(CacheStatus(forward: .request, detail: .requestNoStore), invalidate: false))
            }
            step = .lookup
            return .lookUp
        case (.lookup, .lookupFailed):
            // A store that cannot be read is bypassed, never fatal for the request.
            return finish(.pass(CacheStatus(forward: .bypass, detail: "store error"), invalidate: false))
        case (.lookup, .lookedUp(let lookup, let now)):
            return decide(lookup, now: now, rules: rules)
        case (.askCoalescer, .role(let role)):
            guard let plan else { return failedStep() }
            switch role {
            case .leader:
                if plan.forward == .uriMiss || plan.forward == .varyMiss {
                    // A previous leader may have committed between this request's lookup and
                    // its turn (its client had the response before the commit landed).
                    step = .checkStoredSinceLookup
                    return .checkStoredSinceLookup
                }
                return fetch(request, plan, coalescingKey: key)
            case .bypass:
                return fetch(request, plan, coalescingKey: nil)
            case .follower:
                step = .waitForLeader
                return .waitForLeader(key: key)
            }
        case (.checkStoredSinceLookup, .storedSinceLookup(let stored)):
            guard let plan else { return failedStep() }
            guard stored else { return fetch(request, plan, coalescingKey: key) }
            // Use what it stored instead of asking the origin a second time.
            step = .releaseLead
            return .releaseLead(key: key)
        case (.releaseLead, .leadReleased):
            collapsed = true
            step = .lookup
            return .lookUp
        case (.fetch, .fetchNeedsAnother(let retry)):
            guard let plan, let fetched else { return failedStep() }
            switch (retry, plan.scope) {
            case (.rangeOfLargeObject, .whole):
                // cache.range_fetch_max_size: a larger object is not fetched whole for one
                // range; the range goes upstream alone and its 206 is kept as a part.
                var ranged = plan
                ranged.scope = .rangeAlone
                ranged.detail = "range of a large object"
                return fetch(fetched, ranged, coalescingKey: nil)
            case (.partNotCombinable, .completing):
                // RFC 9111 §3.4: a part that cannot be joined to the stored prefix; the whole
                // response is fetched instead.
                var plain = fetched
                plain.headers.remove("Range")
                plain.headers.remove("If-Range")
                let whole = FetchPlan(
                    forward: .partial, revalidating: nil, stale: nil, detail: plan.detail, collapsed: plan.collapsed)
                return fetch(plain, whole, coalescingKey: nil)
            default:
                return failedStep()
            }
        case (.waitForLeader, .leaderFinished(let outcome)):
            guard var plan else { return failedStep() }
            collapsed = true
            switch outcome {
            case .stored:
                step = .lookup
                return .lookUp
            case .notStored:
                plan.collapsed = true
                return fetch(request, plan, coalescingKey: nil)
            case .failed(let error):
                plan.collapsed = true
                return finish(.answerFailure(error, plan))
            case .streaming:
                return failedStep()
            }
        case (.waitForLeader, .leaderStreaming(let live, let now)):
            // Another variant (Vary) than the one being stored: as a lookup after the commit
            // would find, this request is not answered by it.
            guard live.variant.matches(request.headers) else { return .waitForLeaderEnd(live) }
            collapsed = true
            var (decision, status, _) = reuse(live.record, now: now, rules: rules)
            switch decision {
            case .fresh:
                break
            case .staleAllowed(let reason):
                status.detail = .staleAllowed(reason)
            case .staleWhileRevalidate, .mustValidate:
                // Used only after validation, or with a refresh behind: what happens to the
                // stored object once it has committed.
                return .waitForLeaderEnd(live)
            }
            step = .followLeader
            following = live
            return .serveLive(live, status, now: now)
        case (.followLeader, .liveBodyUnusable):
            guard let following else { return failedStep() }
            step = .waitForLeader
            return .waitForLeaderEnd(following)
        default:
            return failedStep()
        }
    }

    /// What a lookup's result means for this request (RFC 9111 §4).
    private mutating func decide(_ lookup: CacheStore.Lookup, now: Double, rules: some TransactionRules) -> Action {
        let forward: CacheStatus.Forward
        switch lookup {
        case .found(let record, let body):
            // RFC 9111 §3.4: a stored part answers only ranges it holds; otherwise go forward.
            if record.response.status == 206 && rules.storedPart(of: record, covers: request) == nil {
                if directives.onlyIfCached { return finish(.onlyIfCachedMiss) }
                var plan = FetchPlan(
                    forward: .partial, revalidating: nil, stale: nil, detail: nil, collapsed: collapsed)
                if let completion = rules.completionRequest(for: request, part: record) {
                    // Ask only for the bytes after the stored part and combine.
                    plan.scope = .completing(record)
                    return fetch(completion, plan, coalescingKey: nil)
                }
                return coalesce(plan, rules: rules)
            }
            var (decision, status, stale) = reuse(record, now: now, rules: rules)
            switch decision {
            case .fresh:
                return finish(.serve(record, body: body, status, now: now, refreshBehind: false))
            case .staleAllowed(let reason):
                status.detail = .staleAllowed(reason)
                return finish(.serve(record, body: body, status, now: now, refreshBehind: false))
            case .staleWhileRevalidate:
                // RFC 5861 §3: answer from the stale copy at once; refresh it behind the client.
                status.detail = .staleWhileRevalidate
                return finish(.serve(record, body: body, status, now: now, refreshBehind: true))
            case .mustValidate(let reason):
                if directives.onlyIfCached { return finish(.onlyIfCachedMiss) }
                let kind: CacheStatus.Forward = stale ? .stale : .request
                let plan = FetchPlan(
                    forward: kind,
                    revalidating: request.method == .get && Validation.canValidate(record.response) ? record : nil,
                    stale: record, detail: .mustValidate(reason), collapsed: collapsed)
                return coalesce(plan, rules: rules)
            }
        case .noEntry:
            forward = .uriMiss
        case .noMatchingVariant:
            forward = .varyMiss
        }
        if directives.onlyIfCached { return finish(.onlyIfCachedMiss) }
        return coalesce(
            FetchPlan(forward: forward, revalidating: nil, stale: nil, detail: nil, collapsed: collapsed), rules: rules)
    }

    /// How a stored response may serve this request (RFC 9111 §4.2), the Cache-Status of a
    /// hit from it, and whether it is stale (past its freshness lifetime).
    private func reuse(
        _ record: ObjectRecord, now: Double, rules: some TransactionRules
    ) -> (ReuseDecision, CacheStatus, stale: Bool) {
        let cacheControl = rules.governingCacheControl(record.response)
        let lifetime = rules.lifetime(of: record, cacheControl: cacheControl)
        let age = Age.current(of: record.response, now: now)
        let decision = rules.reuseDecision(
            record, cacheControl: cacheControl, lifetime: lifetime, age: age, directives: directives)
        var status = CacheStatus.hit(ttl: lifetime.remaining(atAge: age))
        status.collapsed = collapsed
        return (decision, status, Double(lifetime.seconds) <= age)
    }

    /// Fetches through the coalescer: the first request for a URL fetches; the others wait and
    /// look again. HEAD requests are not coalesced (a HEAD miss is forwarded as HEAD).
    private mutating func coalesce(_ plan: FetchPlan, rules: some TransactionRules) -> Action {
        if request.method == .head {
            return finish(.pass(CacheStatus(forward: plan.forward, detail: plan.detail), invalidate: false))
        }
        if plan.collapsed { return fetch(request, plan, coalescingKey: nil) }
        if rules.rangeFetchMaxSize == 0, request.headers.contains("Range") {
            // range_fetch_max_size = 0: every range goes upstream as sent; its 206 is kept as a part.
            var ranged = plan
            ranged.scope = .rangeAlone
            return fetch(request, ranged, coalescingKey: nil)
        }
        self.plan = plan
        step = .askCoalescer
        return .askCoalescer(key: key)
    }

    /// Starts a fetch: the transaction waits at step `fetch` for whether it answered.
    private mutating func fetch(_ outgoing: ClientRequest, _ plan: FetchPlan, coalescingKey: String?) -> Action {
        self.plan = plan
        fetched = outgoing
        step = .fetch
        return .fetch(outgoing, plan, coalescingKey: coalescingKey)
    }

    private mutating func finish(_ action: Action) -> Action {
        step = .done
        return action
    }

    /// An event the step does not expect: a bug in the I/O layer. The request is passed
    /// through rather than answered from a state that cannot be trusted.
    private mutating func failedStep() -> Action {
        finish(.pass(CacheStatus(forward: .bypass, detail: "transaction error"), invalidate: false))
    }
}
