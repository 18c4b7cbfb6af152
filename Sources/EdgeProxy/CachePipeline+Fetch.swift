import CacheStore
import ContentCoding
import HTTPCaching
import NIOConcurrencyHelpers
import NIOCore

extension CachePipeline {
    /// Fetches from the origin for the cache: a miss, or a validation of `plan.revalidating`.
    /// The response streams to the client while it is written to the store; the object becomes
    /// visible when its last chunk has committed. Calls the coalescer's `finish` exactly once
    /// when `coalescingKey` is set.
    func fetch(
        _ request: ClientRequest, sink: some ResponseSink, plan: FetchPlan, coalescingKey: String?
    ) async throws -> RequestOutcome {
        let finish = FetchCompletion(coalescer: coalescer, key: coalescingKey, clock: clock)
        do {
            let outcome = try await fetchBody(request, sink: sink, plan: plan, finish: finish)
            finish.ifNotHandedOff(.notStored, false)
            return outcome
        } catch {
            finish.ifNotHandedOff(.notStored, false)
            throw error
        }
    }

    private func fetchBody(
        _ request: ClientRequest, sink: some ResponseSink, plan: FetchPlan,
        finish: FetchCompletion
    ) async throws -> RequestOutcome {
        let primaryKey = request.key.description
        var headers = upstreamHeaders(for: request)
        // The cache wants the full response to store; it answers the client's own
        // conditions (RFC 9111 §4.3.2) and Range (RFC 9110 §14) itself from it.
        if !plan.forwardRange {
            for name in ResponseHeaders.clientConditionals { headers.remove(name) }
            headers.remove("Range")
        }
        let rangeSpec =
            request.method == "GET" && !plan.forwardRange ? request.headers["Range"].flatMap { ByteRangeSpec($0) } : nil
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

        let requestTime = clock.now()
        // Purges from here on apply to what this fetch stores (see CacheStore.purgeEpoch).
        let purgeEpoch = store.purgeEpoch
        let response: UpstreamResponse
        do {
            response = try await upstream.execute(
                UpstreamRequest(
                    origin: request.origin, method: "GET", pathAndQuery: request.pathAndQuery, headers: headers,
                    body: nil, interim: { sink.sendInterim(status: $0, headers: $1) }),
                logger: logger)
        } catch let error as ProxyError {
            logger.warning("upstream failed", metadata: ["url": "\(primaryKey)", "error": "\(error)"])
            // The requests waiting on this fetch share its failure (Coalescer).
            finish(.failed(error), false)
            return try await answerFailure(error, request: request, sink: sink, plan: plan)
        }
        let responseTime = clock.now()
        let status = response.status
        let upstreamFields = response.headers

        // RFC 5861 §4: a server error may be answered with the stale copy instead.
        if let stale = plan.stale, [500, 502, 503, 504].contains(status), staleIfErrorAllows(stale, request: request) {
            for try await _ in response.body {}
            return try await serveStale(stale, request: request, sink: sink, plan: plan, upstreamStatus: status)
        }
        if status == 304, let stale = plan.revalidating {
            for try await _ in response.body {}
            return try await applyNotModified(
                stale, headers: upstreamFields, request: request, sink: sink, plan: plan,
                requestTime: requestTime, responseTime: responseTime, purgeEpoch: purgeEpoch, finish: finish)
        }

        let setCookie = configuration.cache.setCookie
        // The decision sees Set-Cookie (the policy may refuse the response for it); what is
        // written has it only under `set_cookie = "store"`.
        var storedHeaders = HopByHop.stripped(upstreamFields)
        if !storedHeaders.contains("Date") { storedHeaders.add("Date", HTTPDate.format(Int64(responseTime))) }
        var stored = StoredResponse(
            status: status, headers: storedHeaders, requestTime: requestTime, responseTime: responseTime)
        let responseCacheControl = governingCacheControl(stored)
        let lifetime = FreshnessLifetime.of(
            stored, cacheControl: responseCacheControl, configuration: configuration.freshness)
        var decision = Storability.decide(
            requestMethod: "GET", requestHeaders: request.headers, requestCacheControl: CacheControl(request.headers),
            response: stored, responseCacheControl: responseCacheControl, lifetime: lifetime,
            policy: configuration.storagePolicy)
        if stored.headers.contains("Set-Cookie") {
            let action: Telemetry.SetCookieAction =
                decision == .doNotStore(reason: "set-cookie")
                ? .passed : !decision.mayStore ? .notStorable : setCookie == .store ? .stored : .stripped
            telemetry.recordSetCookie(action)
            stored.headers = HopByHop.storableHeaders(stored.headers, setCookie: setCookie)
        }
        let declaredLength = upstreamFields["Content-Length"].flatMap { Int($0.trimmingOWS()) }
        if decision.mayStore, let declaredLength, declaredLength > store.configuration.maxObjectSize {
            decision = .doNotStore(reason: "larger than max_object_size")
        }
        // A Range on a miss: answered from this full fetch for objects up to
        // cache.range_fetch_max_size; a larger object is not fetched whole for one range.
        var range: ByteRangeSpec.Resolution?
        if let rangeSpec, status == 200, ifRangeAllows(request.headers, stored: stored) {
            if let declaredLength, declaredLength > configuration.cache.rangeFetchMaxSize {
                finish(.notStored, false)
                var ranged = plan
                ranged.forwardRange = true
                ranged.detail = "range of a large object"
                return try await fetch(request, sink: sink, plan: ranged, coalescingKey: nil)
            }
            if let declaredLength { range = rangeSpec.resolve(length: Int64(declaredLength)) }
        }
        let coding: FetchCoding
        do {
            coding = try FetchCoding(
                status: status, headers: storedHeaders, requestHeaders: request.headers,
                compression: configuration.compression, clientGetsBodyAsReceived: range != nil)
        } catch {
            throw ConnectionAbort(reason: "cannot start a content coder: \(error)")
        }
        var writer: ObjectWriter?
        if decision.mayStore {
            var vary = stored.vary
            // Upstream was asked for identity, so Accept-Encoding does not select this response.
            if configuration.compression.enabled { vary.fieldNames.removeAll { $0 == "accept-encoding" } }
            do {
                let newWriter = try store.makeObjectWriter(
                    primaryKey: primaryKey, secondaryKey: vary.secondaryKey(for: request.headers),
                    varyNames: vary.fieldNames, purgeEpoch: purgeEpoch)
                writer = newWriter
            } catch {
                logStoreWriteFailure("cannot start a store write", url: primaryKey, error: error)
            }
        }
        // RFC 9111 §3.4: a new part and a stored part of the same representation (same strong
        // validator, same complete length) that touch are combined into one — into the complete
        // response when together they cover it.
        var committed = stored
        var combined = false
        var suffix: (part: ObjectRecord, lower: Int64, upper: Int64)?
        if status == 206, let current = writer,
            let combination = partCombination(
                stored, declaredLength: declaredLength, primaryKey: primaryKey, secondaryKey: current.secondaryKey)
        {
            do {
                if let prefix = combination.prefix {
                    try await copyStoredPart(prefix.part, lower: prefix.lower, upper: prefix.upper, into: current)
                }
                suffix = combination.suffix
                committed = combination.response
                combined = true
            } catch {
                current.abandon()
                writer = nil
            }
        }
        // Completing a stored prefix: the client asked for the whole response and gets it as a
        // 200 (stored bytes, then the new ones) — or, when the parts cannot be joined, from a
        // plain fetch.
        var completedPrefix: (part: ObjectRecord, lower: Int64, upper: Int64)?
        if let prefixPart = plan.completing, status == 206 {
            guard writer != nil, committed.status == 200,
                let part = prefixPart.response.headers["Content-Range"]
                    .flatMap(ContentRange.init(parsing:))
            else {
                writer?.abandon()
                for try await _ in response.body {}
                var plain = request
                plain.headers.remove("Range")
                plain.headers.remove("If-Range")
                let fallback = FetchPlan(
                    forward: .partial, revalidating: nil, stale: nil, detail: plan.detail, collapsed: plan.collapsed)
                return try await fetch(plain, sink: sink, plan: fallback, coalescingKey: nil)
            }
            completedPrefix = (prefixPart, 0, part.length - 1)
        }
        var reason: String?
        if case .doNotStore(let why) = decision { reason = why }

        var cacheStatus = CacheStatus(
            forward: plan.forward, forwardStatus: status, stored: writer != nil, collapsed: plan.collapsed,
            ttl: writer != nil ? lifetime.remaining(atAge: Age.current(of: stored, now: responseTime)) : nil,
            detail: plan.detail ?? reason.map(CacheStatus.Detail.other))
        if configuration.cache.debugKey { cacheStatus.key = primaryKey }
        var clientHeaders = coding.clientHeaders(
            ResponseHeaders.forwarded(
                completedPrefix != nil ? committed.headers : upstreamFields, date: responseTime, via: via))
        clientHeaders.add("Cache-Status", cacheStatus.headerValue)

        // The client's own conditions, answered from the full response just fetched (for the
        // representation it gets: its entity tag is the one compared).
        let representation = StoredResponse(
            status: status, headers: clientHeaders, requestTime: requestTime, responseTime: responseTime)
        var condition: ConditionalOutcome =
            status == 200 && request.headers["Range"] == nil
            ? Conditional.evaluate(method: request.method, requestHeaders: request.headers, stored: representation)
            : .proceed
        if case .notAcceptable = coding.client { condition = .preconditionFailed }
        var clientAlive = true
        var sentStatus = status
        // The bytes of the body as received that the client gets (all of them unless a range).
        var window: ClosedRange<Int64>? = nil
        switch condition {
        case .proceed:
            switch range {
            case .single(let lower, let upper)?:
                window = lower...upper
                sentStatus = 206
                var partial = clientHeaders
                partial.replace(
                    "Content-Range",
                    with: ContentRange(first: lower, last: upper, completeLength: Int64(declaredLength ?? 0))
                        .headerValue)
                partial.replace("Content-Length", with: String(upper - lower + 1))
                partial.replace("Accept-Ranges", with: "bytes")
                try await sink.sendHead(status: 206, headers: partial)
            case .unsatisfiable?:
                _ = try await sendRangeNotSatisfiable(
                    length: Int64(declaredLength ?? 0), sink: sink, cacheStatus: cacheStatus)
                clientAlive = false
                sentStatus = 416
            case .whole?, nil:
                if let completedPrefix {
                    // The whole representation: the stored part's bytes first, then the rest.
                    sentStatus = 200
                    try await sink.sendHead(status: 200, headers: clientHeaders)
                    let bytes = StoredBytes(
                        owner: completedPrefix.part.id, length: Int64(completedPrefix.part.bodyLength),
                        chunkSize: Int64(completedPrefix.part.chunkSize), inline: nil)
                    try await forEachStoredChunk(bytes, lower: completedPrefix.lower, upper: completedPrefix.upper) {
                        try await sink.sendBody($0)
                    }
                } else {
                    try await sink.sendHead(status: status, headers: clientHeaders)
                }
            }
        case .notModified:
            var notModified = Conditional.notModifiedHeaders(from: clientHeaders)
            notModified.add("Via", "1.1 \(via)")
            notModified.add("Cache-Status", cacheStatus.headerValue)
            try await sink.sendResponse(status: 304, headers: notModified, body: nil)
            clientAlive = false
            sentStatus = 304
        case .preconditionFailed:
            if case .notAcceptable = coding.client {
                _ = try await sendError(
                    status: 406, message: "no acceptable content coding", sink: sink, cacheStatus: cacheStatus,
                    proxyError: nil)
                sentStatus = 406
            } else {
                _ = try await sendError(
                    status: 412, message: "precondition failed", sink: sink, cacheStatus: cacheStatus, proxyError: nil)
                sentStatus = 412
            }
            clientAlive = false
        }

        var received = 0
        var sent = 0
        var rangeAnswered = false
        /// Sends to the client while it is there; stores while storing. False when neither is left.
        var position: Int64 = 0
        func deliver(_ piece: ByteBuffer, output: FetchCoding.Output) async -> Bool {
            var output = output
            if let window, let forClient = output.client {
                // Only the requested range goes to the client, as soon as its bytes are here.
                let start = max(window.lowerBound, position)
                let end = min(window.upperBound, position + Int64(forClient.readableBytes) - 1)
                output.client =
                    end >= start
                    ? forClient.getSlice(
                        at: forClient.readerIndex + Int(start - position), length: Int(end - start + 1))
                    : nil
                position += Int64(forClient.readableBytes)
            }
            if clientAlive, let forClient = output.client, forClient.readableBytes > 0 {
                do {
                    try await sink.sendBody(forClient)
                    sent += forClient.readableBytes
                } catch {
                    // The client left; keep filling the store for the others if we can.
                    clientAlive = false
                }
            }
            if clientAlive, let window, position > window.upperBound {
                // The range is complete: the client has its answer while the store fills.
                await sink.finish()
                clientAlive = false
                rangeAnswered = true
            }
            if let current = writer {
                do {
                    if piece.readableBytes > 0 { try await current.append(piece) }
                } catch {
                    current.abandon()
                    writer = nil
                    cacheStatus.stored = false
                }
            }
            return clientAlive || writer != nil
        }
        do {
            for try await chunk in response.body {
                received += chunk.readableBytes
                guard await deliver(chunk, output: try coding.process(chunk)) else { break }
            }
            _ = await deliver(ByteBuffer(), output: try coding.finish())
        } catch {
            writer?.abandon()
            logger.warning("upstream body failed", metadata: ["url": "\(primaryKey)", "error": "\(error)"])
            throw ConnectionAbort(reason: "upstream body for \(primaryKey) failed: \(error)")
        }
        let complete = declaredLength.map { $0 == received } ?? true
        if let current = writer, status == 206, !combined {
            // A part is stored as the bytes that came (a short one at the positions they were
            // sent for), never as more than arrived.
            if let sent = committed.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
                let part = sent.received(Int64(received))
            {
                committed.headers.replace("Content-Range", with: part.headerValue)
                committed.headers.replace("Content-Length", with: String(part.length))
            } else {
                current.abandon()
                writer = nil
            }
        }
        var clientEnded = false
        if let current = writer, complete, suffix == nil {
            // A body that arrived whole is committed whether or not the client stayed; the
            // client gets the end of its response first, and the connection its next request,
            // while the commit goes on behind it. Requests waiting on this fetch look again once
            // it has committed.
            if clientAlive {
                await sink.finish()
                clientEnded = true
            }
            finish.handOff()
            let commit = UncheckedTransfer(current)
            let (response, headers, coalescer, logger) = (committed, request.headers, self.coalescer, self.logger)
            let codeAfterwards = coding.codingDemanded
            let (backgroundCoding, compression) = (self.backgroundCoding, configuration.compression)
            runInBackground {
                do {
                    let record = try await commit.value.commit(
                        response: response, requestHeaders: headers, storedAt: responseTime)
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
        } else if let current = writer {
            // A body that arrived whole is committed whether or not the client stayed.
            if complete {
                do {
                    if let suffix {
                        try await copyStoredPart(suffix.part, lower: suffix.lower, upper: suffix.upper, into: current)
                    }
                    let record = try await current.commit(
                        response: committed, requestHeaders: request.headers, storedAt: responseTime)
                    finish(.stored, false)
                    coalescer.markCacheable(primaryKey)
                    if coding.codingDemanded {
                        backgroundCoding.request(record.id, compression: configuration.compression)
                    }
                } catch StoreError.purgedWhileWriting {
                    // A purge covering this URL landed during the fetch: what came may predate it.
                    logger.info("not stored: purged while it was being fetched", metadata: ["url": "\(primaryKey)"])
                } catch {
                    current.abandon()
                    logStoreWriteFailure("store commit failed", url: primaryKey, error: error)
                }
            } else {
                current.abandon()
            }
        } else if !decision.mayStore {
            finish(.notStored, true)
        }
        if !complete {
            throw ConnectionAbort(
                reason: "upstream body for \(primaryKey) ended after \(received) of \(declaredLength ?? 0) bytes")
        }
        if clientEnded {
        } else if clientAlive {
            await sink.finish()
        } else if condition == .proceed && sentStatus != 416 && !rangeAnswered {
            throw ConnectionAbort(reason: "client went away")
        }
        return RequestOutcome(status: sentStatus, bytes: sent, cacheStatus: cacheStatus)
    }

    /// RFC 9111 §4.3.3 / §4.3.4: a 304 freshens the stored response it refers to (and every
    /// other stored variant it selects); the client gets the updated stored response.
    private func applyNotModified(
        _ stale: ObjectRecord, headers notModified: HeaderFields, request: ClientRequest, sink: some ResponseSink,
        plan: FetchPlan, requestTime: Double, responseTime: Double, purgeEpoch: UInt64,
        finish: FetchCompletion
    ) async throws -> RequestOutcome {
        var refreshed = stale
        refreshed.softPurgedAt = nil
        refreshed.response = Validation.updated(
            stale.response, withNotModified: notModified, requestTime: requestTime, responseTime: responseTime)
        let variants = (try? store.variants(request.key.description)) ?? []
        var updates = [(stale.id, refreshed.response)]
        for variant in variants
        where variant.id != stale.id && Validation.notModifiedSelects(variant.response, notModifiedHeaders: notModified)
        {
            updates.append(
                (
                    variant.id,
                    Validation.updated(
                        variant.response, withNotModified: notModified, requestTime: requestTime,
                        responseTime: responseTime)
                ))
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

    /// How a newly fetched part combines with a stored one: the stored bytes to write before
    /// and after the new ones (offsets within the stored part) and the combined response.
    private func partCombination(
        _ part: StoredResponse, declaredLength: Int?, primaryKey: String, secondaryKey: String
    ) -> (
        prefix: (part: ObjectRecord, lower: Int64, upper: Int64)?,
        suffix: (part: ObjectRecord, lower: Int64, upper: Int64)?,
        response: StoredResponse
    )? {
        guard let new = part.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
            let complete = new.completeLength, declaredLength.map(Int64.init) == new.length,
            StrongValidator(of: part) != nil,
            let variants = try? store.variants(primaryKey)
        else { return nil }
        for old in variants where old.response.status == 206 && old.secondaryKey == secondaryKey {
            guard StrongValidator.same(old.response, part),
                let stored = old.response.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
                stored.completeLength == complete, Int64(old.bodyLength) == stored.length,
                stored.first <= new.last + 1, new.first <= stored.last + 1
            else { continue }
            let prefix = stored.first < new.first ? (old, Int64(0), new.first - 1 - stored.first) : nil
            let suffix = stored.last > new.last ? (old, new.last + 1 - stored.first, stored.length - 1) : nil
            let combined = ContentRange(
                first: min(stored.first, new.first), last: max(stored.last, new.last), completeLength: complete)
            var response = part
            if combined.first == 0 && combined.last == complete - 1 {
                response.status = 200
                response.headers.remove("Content-Range")
            } else {
                response.headers.replace("Content-Range", with: combined.headerValue)
            }
            response.headers.replace("Content-Length", with: String(combined.length))
            return (prefix, suffix, response)
        }
        return nil
    }

    /// Appends bytes `lower...upper` of a stored part to a new object.
    private func copyStoredPart(
        _ part: ObjectRecord, lower: Int64, upper: Int64, into writer: ObjectWriter
    ) async throws {
        let bytes = StoredBytes(
            owner: part.id, length: Int64(part.bodyLength), chunkSize: Int64(part.chunkSize), inline: nil)
        try await forEachStoredChunk(bytes, lower: lower, upper: upper) { try await writer.append($0) }
    }

    /// RFC 5861 §4 (and request max-stale): may this stale copy stand in for a failed fetch?
    /// The answer to a request whose fetch failed with `error`: its stale copy where
    /// stale-if-error allows; a 504 when a stored response could not be validated (RFC 9111
    /// §4.2.4, §5.2.2.2); else the error's own status. For the fetching request and for the
    /// requests that waited on it alike.
    func answerFailure(
        _ error: ProxyError, request: ClientRequest, sink: some ResponseSink, plan: FetchPlan
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

    private func staleIfErrorAllows(_ stale: ObjectRecord, request: ClientRequest) -> Bool {
        let cacheControl = governingCacheControl(stale.response)
        return Reuse.staleIfErrorAllows(
            stored: stale.response, responseCacheControl: cacheControl,
            lifetime: lifetime(of: stale, cacheControl: cacheControl),
            request: RequestDirectives(request.headers, honour: configuration.cache.honourRequestDirectives),
            operatorWindow: configuration.cache.staleIfError, now: clock.now())
    }

    /// Answers with the stale copy because the origin failed (`detail="stale-if-error"`).
    private func serveStale(
        _ stale: ObjectRecord, request: ClientRequest, sink: some ResponseSink, plan: FetchPlan, upstreamStatus: Int?
    ) async throws -> RequestOutcome {
        let now = clock.now()
        let lifetime = lifetime(of: stale)
        let status = CacheStatus(
            forward: .stale, forwardStatus: upstreamStatus, collapsed: plan.collapsed,
            ttl: lifetime.remaining(atAge: Age.current(of: stale.response, now: now)),
            detail: .staleIfError)
        return try await serveStored(stale, body: nil, request: request, sink: sink, cacheStatus: status, now: now)
    }

    /// RFC 9111 §4.3.5: a 200 to a HEAD request freshens the stored GET responses it selects
    /// (same validators, same length), like a 304 would.
    private func freshenFromHead(
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

    /// Forwards a request the cache does not answer (other methods, no-store requests, HEAD
    /// misses) and relays the response; unsafe methods invalidate afterwards (RFC 9111 §4.4).
    func passThrough(
        _ request: ClientRequest, sink: some ResponseSink, status cacheStatus: CacheStatus, invalidate: Bool
    ) async throws -> RequestOutcome {
        let requestTime = clock.now()
        let purgeEpoch = store.purgeEpoch
        let response: UpstreamResponse
        do {
            response = try await upstream.execute(
                UpstreamRequest(
                    origin: request.origin, method: request.method, pathAndQuery: request.pathAndQuery,
                    headers: upstreamHeaders(for: request), body: request.body,
                    interim: { sink.sendInterim(status: $0, headers: $1) }),
                logger: logger)
        } catch let error as ProxyError {
            logger.warning("upstream failed", metadata: ["url": "\(request.key)", "error": "\(error)"])
            var failed = cacheStatus
            failed.detail = .other(error.type)
            return try await sendError(
                status: error.status, message: error.details, sink: sink, cacheStatus: failed, proxyError: error)
        }
        let responseTime = clock.now()
        let status = response.status
        let upstreamFields = response.headers
        if request.method == "HEAD" && status == 200 {
            await freshenFromHead(
                request, headers: upstreamFields, requestTime: requestTime, responseTime: responseTime,
                purgeEpoch: purgeEpoch)
        }
        if invalidate {
            let keys = Invalidation.keys(
                method: request.method, target: request.key, status: status, responseHeaders: upstreamFields)
            if !keys.isEmpty {
                do {
                    try await store.invalidate(keys.map(\.description))
                } catch {
                    logger.error("invalidation failed", metadata: ["url": "\(request.key)", "error": "\(error)"])
                }
            }
        }
        var cacheStatus = cacheStatus
        cacheStatus.forwardStatus = status
        var headers = ResponseHeaders.forwarded(upstreamFields, date: responseTime, via: via)
        headers.add("Cache-Status", cacheStatus.headerValue)
        try await sink.sendHead(status: status, headers: headers)
        var sent = 0
        do {
            for try await chunk in response.body {
                try await sink.sendBody(chunk)
                sent += chunk.readableBytes
            }
        } catch {
            throw ConnectionAbort(reason: "relaying \(request.method) \(request.key) failed: \(error)")
        }
        await sink.finish()
        return RequestOutcome(status: status, bytes: sent, cacheStatus: cacheStatus)
    }

    private func upstreamHeaders(for request: ClientRequest) -> HeaderFields {
        let host = configuration.server.preserveHost ? request.key.authority : request.origin.authority
        return ResponseHeaders.upstreamRequest(
            request.headers, clientAddress: request.clientAddress, host: host, via: via)
    }
}

/// Tells the coalescer, exactly once, how a fetch for a coalesced key ended. It may be handed
/// off to work that outlives the request (a commit behind the client): the request's own
/// fallback (`.notStored` when it returns) is then skipped, and the handed-off work reports.
final class FetchCompletion: Sendable {
    private let coalescer: Coalescer
    private let key: String?
    private let clock: any CacheClock
    private let state = NIOLockedValueBox<(finished: Bool, handedOff: Bool)>((false, false))

    init(coalescer: Coalescer, key: String?, clock: any CacheClock) {
        self.coalescer = coalescer
        self.key = key
        self.clock = clock
    }

    func callAsFunction(_ outcome: Coalescer.Outcome, _ uncacheable: Bool) {
        guard let key else { return }
        let first = state.withLockedValue { state in
            defer { state.finished = true }
            return !state.finished
        }
        if first { coalescer.finish(key, outcome: outcome, uncacheable: uncacheable, now: clock.now()) }
    }

    /// Work that outlives the request will report the outcome.
    func handOff() { state.withLockedValue { $0.handedOff = true } }

    /// The request's own report, unless the outcome was handed off.
    func ifNotHandedOff(_ outcome: Coalescer.Outcome, _ uncacheable: Bool) {
        guard !state.withLockedValue({ $0.handedOff }) else { return }
        self(outcome, uncacheable)
    }
}

/// Moves a value that is not Sendable to a task when the sender no longer uses it (the object
/// writer of a fetch whose commit goes on behind the client).
struct UncheckedTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
