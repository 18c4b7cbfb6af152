import CacheStore
import ContentCoding
import EdgeTelemetry
import HTTPCaching
import NIOCore
import OutpostConfig

/// How a fetch ended: it answered the client, or its response asks for another fetch, which
/// the transaction plans (``RequestTransaction``, step `fetch`).
package enum FetchResult {
    case answered(RequestOutcome)
    case needsAnother(FetchRetry)
}

/// Why a fetch's response did not answer the client and another fetch must.
package enum FetchRetry: Equatable, Sendable {
    /// A Range of an object larger than `cache.range_fetch_max_size` (``FetchResponsePlan``).
    case rangeOfLargeObject
    /// The 206 completing a stored prefix part cannot be combined with it (RFC 9111 §3.4).
    case partNotCombinable
}

extension CachePipeline {
    /// Fetches from the origin for the cache: a miss, or a validation of `plan.revalidating`.
    /// The response streams to the client while it is written to the store; the object becomes
    /// visible when its last chunk has committed. Calls the coalescer's `finish` exactly once
    /// when `coalescingKey` is set.
    func fetch(
        _ request: ClientRequest, sink: any ResponseSink, plan: FetchPlan, coalescingKey: String?
    ) async throws -> FetchResult {
        let finish = FetchCompletion(coalescer: coalescer, key: coalescingKey, clock: clock)
        do {
            let result = try await fetchOnce(request, sink: sink, plan: plan, finish: finish)
            finish.ifNotHandedOff(.notStored, false)
            return result
        } catch {
            finish.ifNotHandedOff(.notStored, false)
            throw error
        }
    }

    /// The steps of one fetch: ask the origin; answer from stale or a 304 where they apply;
    /// plan the response (``FetchResponsePlan``); open the store write and combine parts;
    /// answer the client's head (``ClientAnswer``); stream the body (``FetchDelivery``); commit.
    private func fetchOnce(
        _ request: ClientRequest, sink: any ResponseSink, plan: FetchPlan, finish: FetchCompletion
    ) async throws -> FetchResult {
        let primaryKey = request.key.description
        let requestTime = clock.now()
        // Purges from here on apply to what this fetch stores (see CacheStore.purgeEpoch).
        let purgeEpoch = store.purgeEpoch
        let response: UpstreamResponse
        var parentFailure: ProxyError?
        // The peer that owns the key, when another does and gave the response (docs/fleet.md).
        var owner: OriginURL?
        do {
            // Without peers no call at all: a miss pays nothing for them.
            if peers != nil, let answer = try await askOwner(request, plan: plan, sink: sink) {
                response = answer.response
                owner = answer.owner
            } else {
                let parent = configuration.upstream.parent(for: request.key)
                response = try await askParentOrOrigin(
                    request, parent: parent, headers: fetchHeaders(for: request, plan: plan, towards: parent),
                    sink: sink, parentFailure: &parentFailure)
            }
        } catch let error as ProxyError {
            // The requests waiting on this fetch share its failure (Coalescer).
            finish(.failed(error), false)
            return .answered(
                try await answerFailure(error, request: request, sink: noting(parentFailure, on: sink), plan: plan))
        }
        // The parent could not be reached and the origin answered: every answer says so.
        let sink = noting(parentFailure, on: sink)
        let responseTime = clock.now()
        let status = response.status
        let upstreamFields = response.headers

        // RFC 5861 §4: a server error may be answered with the stale copy instead.
        if let stale = plan.stale, [500, 502, 503, 504].contains(status), staleIfErrorAllows(stale, request: request) {
            for try await _ in response.body {}
            return .answered(
                try await serveStale(stale, request: request, sink: sink, plan: plan, upstreamStatus: status))
        }
        if status == 304, let stale = plan.revalidating {
            for try await _ in response.body {}
            return .answered(
                try await applyNotModified(
                    stale, headers: upstreamFields, request: request, sink: sink, plan: plan,
                    requestTime: requestTime, responseTime: responseTime, purgeEpoch: purgeEpoch, finish: finish,
                    fromOwner: owner != nil))
        }

        // The decision sees Set-Cookie (the policy may refuse the response for it); what is
        // written has it only under `set_cookie = "store"`.
        var storedHeaders = HopByHop.stripped(upstreamFields)
        if !storedHeaders.contains("Date") { storedHeaders.add("Date", HTTPDate.format(Int64(responseTime))) }
        var stored = StoredResponse(
            status: status, headers: storedHeaders, requestTime: requestTime, responseTime: responseTime)
        let keepsCopy = owner == nil || localCopy(of: &stored)
        let responseCacheControl = governingCacheControl(stored)
        let lifetime = FreshnessLifetime.of(
            stored, cacheControl: responseCacheControl, configuration: configuration.freshness)
        var rules = Storability.decide(
            requestMethod: "GET", requestHeaders: request.headers, requestCacheControl: CacheControl(request.headers),
            response: stored, responseCacheControl: responseCacheControl, lifetime: lifetime,
            policy: configuration.storagePolicy)
        if !keepsCopy, rules.mayStore { rules = .doNotStore(reason: "a peer owns it") }
        if stored.headers.contains("Set-Cookie") {
            let setCookie = configuration.cache.setCookie
            let action: Telemetry.SetCookieAction =
                rules == .doNotStore(reason: "set-cookie")
                ? .passed : !rules.mayStore ? .notStorable : setCookie == .store ? .stored : .stripped
            telemetry.recordSetCookie(action)
            stored.headers = HopByHop.storableHeaders(stored.headers, setCookie: setCookie)
        }
        let declaredLength = upstreamFields["Content-Length"].flatMap { Int($0.trimmingOWS()) }
        let responsePlan = FetchResponsePlan.decide(
            storage: rules, declaredLength: declaredLength,
            rangeRequested: !plan.forwardsRange
                && ClientAnswer.rangeSpec(method: request.method, requestHeaders: request.headers, of: stored) != nil,
            maxObjectSize: store.configuration.maxObjectSize, rangeFetchMaxSize: configuration.cache.rangeFetchMaxSize)
        guard case .proceed(let storage, let rangeLength) = responsePlan else {
            finish(.notStored, false)
            return .needsAnother(.rangeOfLargeObject)
        }

        let coding: FetchCoding
        do {
            coding = try FetchCoding(
                status: status, headers: storedHeaders, requestHeaders: request.headers,
                compression: configuration.compression, clientGetsBodyAsReceived: rangeLength != nil)
        } catch {
            throw ConnectionAbort(reason: "cannot start a content coder: \(error)")
        }
        var writer = storage.mayStore ? makeWriter(for: stored, request: request, purgeEpoch: purgeEpoch) : nil
        // RFC 9111 §3.4: a new part is combined with a stored part it touches.
        var committed = stored
        var combined = false
        var suffix: StoredSpan?
        if status == 206, let current = writer,
            let combination = PartCombination.find(
                stored, declaredLength: declaredLength, secondaryKey: current.secondaryKey,
                variants: (try? store.variants(primaryKey)) ?? [])
        {
            do {
                if let prefix = combination.prefix { try await copyStoredSpan(prefix, into: current) }
                suffix = combination.suffix
                committed = combination.response
                combined = true
            } catch {
                current.abandon()
                writer = nil
            }
        }
        // Completing a stored prefix: the client asked for the whole response and gets it as a
        // 200 (stored bytes, then the new ones), or from a plain fetch when they cannot be joined.
        var completedPrefix: StoredSpan?
        if let prefixPart = plan.completing, status == 206 {
            guard writer != nil, committed.status == 200,
                let part = prefixPart.response.headers["Content-Range"].flatMap(ContentRange.init(parsing:))
            else {
                writer?.abandon()
                for try await _ in response.body {}
                return .needsAnother(.partNotCombinable)
            }
            completedPrefix = StoredSpan(part: prefixPart, lower: 0, upper: part.length - 1)
        }

        var cacheStatus = CacheStatus(
            forward: plan.forward, forwardStatus: status, stored: writer != nil, collapsed: plan.collapsed,
            ttl: writer != nil ? lifetime.remaining(atAge: Age.current(of: stored, now: responseTime)) : nil,
            detail: plan.detail ?? storage.refusal.map(CacheStatus.Detail.other))
        if configuration.cache.debugKey { cacheStatus.key = primaryKey }
        if parentFailure != nil, cacheStatus.detail == nil { cacheStatus.detail = "parent unreachable" }
        var clientHeaders = coding.clientHeaders(
            ResponseHeaders.forwarded(completedPrefix != nil ? committed.headers : upstreamFields, date: responseTime))
        ResponseHeaders.stamp(&clientHeaders, via: via, cacheStatus: cacheStatus)

        // The client's own conditions and Range, answered from the full response just fetched
        // (for the representation it gets: its entity tag is the one compared). Sent upstream
        // as they came, the origin has answered them.
        let acceptable: Bool
        if case .notAcceptable = coding.client { acceptable = false } else { acceptable = true }
        let answer: ClientAnswer =
            plan.forwardsRange
            ? (acceptable ? .whole : .notAcceptable)
            : ClientAnswer.decide(
                method: request.method, requestHeaders: request.headers,
                selected: StoredResponse(
                    status: status, headers: clientHeaders, requestTime: requestTime, responseTime: responseTime),
                acceptable: acceptable, rangeLength: rangeLength, maxRanges: 1)
        let sentStatus: Int
        var window: ClosedRange<Int64>?
        if let generated = try await sendWithoutBody(
            answer, representation: clientHeaders, age: nil, length: rangeLength ?? 0, cacheStatus: cacheStatus,
            sink: sink)
        {
            sentStatus = generated.status
        } else if case .range(let lower, let upper) = answer {
            window = lower...upper
            sentStatus = 206
            var partial = clientHeaders
            partial.replace(
                "Content-Range",
                with: ContentRange(first: lower, last: upper, completeLength: rangeLength ?? 0).headerValue)
            partial.replace("Content-Length", with: String(upper - lower + 1))
            partial.replace("Accept-Ranges", with: "bytes")
            try await sink.sendHead(status: 206, headers: partial)
        } else if let completedPrefix {
            // The whole representation: the stored part's bytes first, then the rest.
            sentStatus = 200
            try await sink.sendHead(status: 200, headers: clientHeaders)
            try await forEachStoredChunk(
                StoredBytes(primaryOf: completedPrefix.part), lower: completedPrefix.lower,
                upper: completedPrefix.upper
            ) { try await sink.sendBody($0) }
        } else {
            // The whole (maxRanges 1: several ranges are answered with the whole, RFC 9110 §14.2).
            sentStatus = status
            try await sink.sendHead(status: status, headers: clientHeaders)
        }
        let clientGetsBody = answer.sendsBody

        var delivery = FetchDelivery(
            sink: sink, window: window, writer: writer,
            live: publishBody(
                writer, response: committed, status: status, declaredLength: declaredLength,
                storedAt: responseTime, purgeEpoch: purgeEpoch, finish: finish),
            clientAlive: clientGetsBody)
        var received = 0
        do {
            for try await chunk in response.body {
                received += chunk.readableBytes
                guard await delivery.deliver(chunk, output: try coding.process(chunk)) else { break }
            }
            _ = await delivery.deliver(ByteBuffer(), output: try coding.finish())
        } catch {
            delivery.abandonStore()
            logger.warning("upstream body failed", metadata: ["url": "\(primaryKey)", "error": "\(error)"])
            throw ConnectionAbort(reason: "upstream body for \(primaryKey) failed: \(error)")
        }
        if delivery.storeFailed { cacheStatus.stored = false }
        let complete = declaredLength.map { $0 == received } ?? true
        delivery.endLive(complete: complete)
        if delivery.writer != nil, status == 206, !combined {
            // A part is stored as the bytes that came (a short one at the positions they were
            // sent for), never as more than arrived.
            if let asked = committed.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
                let part = asked.received(Int64(received))
            {
                committed.headers.replace("Content-Range", with: part.headerValue)
                committed.headers.replace("Content-Length", with: String(part.length))
            } else {
                delivery.abandonStore()
            }
        }
        if let current = delivery.writer {
            if complete {
                // A body that arrived whole is committed whether or not the client stayed.
                await commit(
                    current, response: committed, suffix: suffix, request: request, storedAt: responseTime,
                    codeAfterwards: coding.codingDemanded, delivery: &delivery, finish: finish)
            } else {
                current.abandon()
            }
        } else if !storage.mayStore {
            finish(.notStored, true)
        }
        if !complete {
            throw ConnectionAbort(
                reason: "upstream body for \(primaryKey) ended after \(received) of \(declaredLength ?? 0) bytes")
        }
        if delivery.clientAlive {
            await delivery.finishClient()
        } else if clientGetsBody && !delivery.clientFinished {
            throw ConnectionAbort(reason: "client went away")
        }
        return .answered(RequestOutcome(status: sentStatus, bytes: delivery.sent, cacheStatus: cacheStatus))
    }

    /// The sink of a fetch whose parent could not be reached (`upstream.parent_fallback`):
    /// its answers carry Proxy-Status naming the parent's failure (RFC 9209).
    private func noting(_ parentFailure: ProxyError?, on sink: any ResponseSink) -> any ResponseSink {
        guard let parentFailure else { return sink }
        return ParentFallbackSink(inner: sink, note: parentFailure.headerValue(proxyName: via))
    }

    /// The request head of a fetch: what the client sent, minus what the cache answers itself.
    func fetchHeaders(for request: ClientRequest, plan: FetchPlan, towards parent: OriginURL?) -> HeaderFields {
        var headers = upstreamHeaders(for: request, towards: parent)
        // The cache wants the full response to store; it answers the client's own
        // conditions (RFC 9111 §4.3.2) and Range (RFC 9110 §14) itself from it.
        if !plan.forwardsRange {
            for name in ResponseHeaders.clientConditionals { headers.remove(name) }
            headers.remove("Range")
        }
        if let stale = plan.revalidating {
            for (name, value) in Validation.conditionalHeaders(for: stale.response) { headers.add(name, value) }
        }
        if configuration.compression.enabled {
            // Ask for the body as it is: Outpost codes it once itself (br and gzip beside it), so
            // the response no longer depends on the client's Accept-Encoding.
            headers.replace("Accept-Encoding", with: "identity")
        } else {
            // The key holds Accept-Encoding normalised to one coding (RFC 9111 §4.1); ask the
            // origin for exactly that so the stored variant suits every client with that key.
            headers.replace("Accept-Encoding", with: AcceptEncoding(request.headers).preferredStorageCoding.rawValue)
        }
        return headers
    }

    /// Publishes the body of a whole 200 this fetch stores for the requests coalesced on it,
    /// so they are answered from it as it streams in (``LiveBody``) rather than after the
    /// commit. Only with a declared length: what followers are sent must be the length their
    /// head announced, and a body that ends short is cut for them as for this client. Only for
    /// a body larger than one store chunk: a smaller one commits in one write right after its
    /// last byte, so its followers wait for that, and a miss without followers (most of them)
    /// does not pay for publishing (about 10 000 instructions, tools/bench-instructions).
    private func publishBody(
        _ writer: ObjectWriter?, response: StoredResponse, status: Int, declaredLength: Int?, storedAt: Double,
        purgeEpoch: UInt64, finish: FetchCompletion
    ) -> LiveBody? {
        guard finish.leads, let writer, status == 200, let declaredLength,
            declaredLength > store.configuration.chunkSize
        else { return nil }
        let body = LiveBody(
            record: writer.provisionalRecord(response: response, storedAt: storedAt, bodyLength: declaredLength),
            variant: writer.variant, purgeEpoch: purgeEpoch)
        writer.onChunkWritten = { index, committed in
            // A chunk lost to a failed write: the object will not commit, and its followers
            // cannot read it from the store; they are cut rather than held in memory.
            if committed { body.chunkDurable(index) } else { body.fail() }
        }
        finish.publish(body)
        return body
    }

    /// Opens the store write for a fetched response; nil (logged) when the store refuses it.
    private func makeWriter(for stored: StoredResponse, request: ClientRequest, purgeEpoch: UInt64) -> ObjectWriter? {
        var vary = stored.vary
        // Upstream was asked for identity, so Accept-Encoding does not select this response.
        if configuration.compression.enabled { vary.fieldNames.removeAll { $0 == "accept-encoding" } }
        do {
            return try store.makeObjectWriter(
                primaryKey: request.key.description, secondaryKey: vary.secondaryKey(for: request.headers),
                varyNames: vary.fieldNames, purgeEpoch: purgeEpoch)
        } catch {
            logStoreWriteFailure("cannot start a store write", url: request.key.description, error: error)
            return nil
        }
    }

    /// Commits a body that arrived whole. Without stored bytes to append, the client gets the
    /// end of its response first, and the connection its next request, while the commit goes
    /// on behind it; requests waiting on this fetch look again once it has committed.
    private func commit(
        _ writer: ObjectWriter, response: StoredResponse, suffix: StoredSpan?, request: ClientRequest,
        storedAt: Double, codeAfterwards: Bool, delivery: inout FetchDelivery,
        finish: FetchCompletion
    ) async {
        let primaryKey = request.key.description
        let (headers, coalescer, logger) = (request.headers, self.coalescer, self.logger)
        let (backgroundCoding, compression) = (self.backgroundCoding, configuration.compression)
        guard let suffix else {
            await delivery.finishClient()
            finish.handOff()
            let commit = UncheckedTransfer(writer)
            runInBackground {
                do {
                    let record = try await commit.value.commit(
                        response: response, requestHeaders: headers, storedAt: storedAt)
                    finish(.stored, false)
                    coalescer.markCacheable(primaryKey)
                    // The client asked for a coding: the object gets its br and gzip now, off
                    // this request's path.
                    if codeAfterwards { backgroundCoding.request(record.id, compression: compression) }
                } catch StoreError.purgedWhileWriting {
                    logger.info("not stored: purged while it was being fetched", metadata: ["url": "\(primaryKey)"])
                    finish(.notStored, false)
                } catch {
                    commit.value.abandon()
                    self.logStoreWriteFailure("store commit failed", url: primaryKey, error: error)
                    finish(.notStored, false)
                }
            }
            return
        }
        do {
            try await copyStoredSpan(suffix, into: writer)
            let record = try await writer.commit(response: response, requestHeaders: headers, storedAt: storedAt)
            finish(.stored, false)
            coalescer.markCacheable(primaryKey)
            if codeAfterwards { backgroundCoding.request(record.id, compression: compression) }
        } catch StoreError.purgedWhileWriting {
            // A purge covering this URL landed during the fetch: what came may predate it.
            logger.info("not stored: purged while it was being fetched", metadata: ["url": "\(primaryKey)"])
        } catch {
            writer.abandon()
            logStoreWriteFailure("store commit failed", url: primaryKey, error: error)
        }
    }

    /// Appends a span of a stored part to a new object.
    private func copyStoredSpan(_ span: StoredSpan, into writer: ObjectWriter) async throws {
        try await forEachStoredChunk(StoredBytes(primaryOf: span.part), lower: span.lower, upper: span.upper) {
            try await writer.append($0)
        }
    }
}
