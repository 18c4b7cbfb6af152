import CacheStore
import HTTPCaching

extension CachePipeline {
    /// RFC 9111 §4.3.3 / §4.3.4: a 304 freshens the stored response it refers to (and every
    /// other stored variant it selects); the client gets the updated stored response.
    func applyNotModified(
        _ stale: ObjectRecord, headers notModified: HeaderFields, request: ClientRequest, sink: any ResponseSink,
        plan: FetchPlan, requestTime: Double, responseTime: Double, purgeEpoch: UInt64,
        finish: FetchCompletion, fromOwner: Bool = false
    ) async throws -> RequestOutcome {
        var refreshed = stale
        refreshed.softPurgedAt = nil
        refreshed.response = Validation.updated(
            stale.response, withNotModified: notModified, requestTime: requestTime, responseTime: responseTime)
        // A copy the key's owner refreshed is a local copy, whatever this node kept it as
        // before (it may have owned the key then): capped from now (docs/fleet.md).
        if fromOwner { capLocalCopy(&refreshed.response) }
        let variants = (try? store.variants(request.key.description)) ?? []
        var updates = [(stale.id, refreshed.response)]
        for variant in variants
        where variant.id != stale.id && Validation.notModifiedSelects(variant.response, notModifiedHeaders: notModified)
        {
            var response = Validation.updated(
                variant.response, withNotModified: notModified, requestTime: requestTime, responseTime: responseTime)
            if fromOwner { capLocalCopy(&response) }
            updates.append((variant.id, response))
        }
        // The headers are rewritten (never the body) while the client is answered from the
        // updated record: the answer does not wait for the commit. Requests waiting on this
        // validation look again only once it has committed.
        let store = self.store
        let url = request.key.description
        async let committed: Void = {
            for (id, response) in updates {
                do {
                    try await store.update(objectID: id, response: response, purgeEpoch: purgeEpoch)
                } catch {
                    self.logStoreWriteFailure("store update failed", url: url, error: error)
                }
            }
        }()
        let lifetime = FreshnessLifetime.of(
            refreshed.response, cacheControl: governingCacheControl(refreshed.response),
            configuration: configuration.freshness)
        let now = clock.now()
        let status = CacheStatus(
            forward: plan.forward, forwardStatus: 304, collapsed: plan.collapsed,
            ttl: lifetime.remaining(atAge: Age.current(of: refreshed.response, now: now)), detail: plan.detail)
        let outcome: RequestOutcome
        do {
            outcome = try await serveStored(
                refreshed, body: nil, request: request, sink: sink, cacheStatus: status, now: now)
        } catch {
            await committed
            finish(.stored, false)
            throw error
        }
        await committed
        finish(.stored, false)
        return outcome
    }

    /// RFC 9111 §4.3.5: a 200 to a HEAD request freshens the stored GET responses it selects
    /// (same validators, same length), like a 304 would.
    func freshenFromHead(
        _ request: ClientRequest, headers: HeaderFields, requestTime: Double, responseTime: Double,
        purgeEpoch: UInt64
    ) async {
        guard let variants = try? store.variants(request.key.description), !variants.isEmpty else { return }
        let length = headers["Content-Length"]
        for variant in variants
        where Validation.notModifiedSelects(variant.response, notModifiedHeaders: headers)
            && (headers["ETag"] != nil || headers["Last-Modified"] != nil)
            && (length == nil || length == String(variant.bodyLength))
        {
            let updated = Validation.updated(
                variant.response, withNotModified: headers, requestTime: requestTime, responseTime: responseTime)
            _ = try? await store.update(objectID: variant.id, response: updated, purgeEpoch: purgeEpoch)
        }
    }
}
