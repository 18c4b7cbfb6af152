import CacheStore
import HTTPCaching

extension CachePipeline {
    /// RFC 5861 §4 (and request max-stale): may this stale copy stand in for a failed fetch?
    /// The answer to a request whose fetch failed with `error`: its stale copy where
    /// stale-if-error allows; a 504 when a stored response could not be validated (RFC 9111
    /// §4.2.4, §5.2.2.2); else the error's own status. For the fetching request and for the
    /// requests that waited on it alike.
    func answerFailure(
        _ error: ProxyError, request: ClientRequest, sink: any ResponseSink, plan: FetchPlan
    ) async throws -> RequestOutcome {
        if let stale = plan.stale {
            if staleIfErrorAllows(stale, request: request) {
                return try await serveStale(stale, request: request, sink: sink, plan: plan, upstreamStatus: nil)
            }
            let unvalidated = ProxyError(type: error.type, status: 504, details: error.details)
            let status = CacheStatus(forward: plan.forward, collapsed: plan.collapsed, detail: .other(error.type))
            return try await sendError(
                status: 504, message: error.details, sink: sink, cacheStatus: status, proxyError: unvalidated)
        }
        let status = CacheStatus(forward: plan.forward, collapsed: plan.collapsed, detail: .other(error.type))
        return try await sendError(
            status: error.status, message: error.details, sink: sink, cacheStatus: status, proxyError: error)
    }

    func staleIfErrorAllows(_ stale: ObjectRecord, request: ClientRequest) -> Bool {
        let cacheControl = governingCacheControl(stale.response)
        return Reuse.staleIfErrorAllows(
            stored: stale.response, responseCacheControl: cacheControl,
            lifetime: lifetime(of: stale, cacheControl: cacheControl),
            request: RequestDirectives(request.headers, honour: configuration.cache.honourRequestDirectives),
            operatorWindow: configuration.cache.staleIfError, now: clock.now())
    }

    /// Answers with the stale copy because the origin failed (`detail="stale-if-error"`).
    func serveStale(
        _ stale: ObjectRecord, request: ClientRequest, sink: any ResponseSink, plan: FetchPlan, upstreamStatus: Int?
    ) async throws -> RequestOutcome {
        let now = clock.now()
        let lifetime = lifetime(of: stale)
        let status = CacheStatus(
            forward: .stale, forwardStatus: upstreamStatus, collapsed: plan.collapsed,
            ttl: lifetime.remaining(atAge: Age.current(of: stale.response, now: now)),
            detail: .staleIfError)
        return try await serveStored(stale, body: nil, request: request, sink: sink, cacheStatus: status, now: now)
    }
}
