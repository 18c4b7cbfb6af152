import HTTPCaching
import OutpostConfig

extension CachePipeline {
    /// Forwards a request the cache does not answer (other methods, no-store requests, HEAD
    /// misses) and relays the response; unsafe methods invalidate afterwards (RFC 9111 §4.4).
    func passThrough(
        _ request: ClientRequest, sink: any ResponseSink, status cacheStatus: CacheStatus, invalidate: Bool
    ) async throws -> RequestOutcome {
        let requestTime = clock.now()
        let purgeEpoch = store.purgeEpoch
        let response: UpstreamResponse
        do {
            response = try await askOrigin(
                request, method: request.method.token, headers: upstreamHeaders(for: request, towards: nil),
                body: request.body,
                sink: sink)
        } catch let error as ProxyError {
            var failed = cacheStatus
            failed.detail = .other(error.type)
            return try await sendError(
                status: error.status, message: error.details, sink: sink, cacheStatus: failed, proxyError: error)
        }
        let responseTime = clock.now()
        let status = response.status
        let upstreamFields = response.headers
        if request.method == .head && status == 200 {
            await freshenFromHead(
                request, headers: upstreamFields, requestTime: requestTime, responseTime: responseTime,
                purgeEpoch: purgeEpoch)
        }
        if invalidate {
            let keys = Invalidation.keys(
                method: request.method.token, target: request.key, status: status, responseHeaders: upstreamFields)
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
        var headers = ResponseHeaders.forwarded(upstreamFields, date: responseTime)
        ResponseHeaders.stamp(&headers, via: via, cacheStatus: cacheStatus)
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

    /// Sends a request to its origin, interim responses forwarded to the client at once. An
    /// origin that cannot be reached, or answers badly, is logged and thrown as the
    /// ``ProxyError`` to answer with (RFC 9209).
    func askOrigin(
        _ request: ClientRequest, method: String, headers: HeaderFields, body: RequestBody?, sink: any ResponseSink
    ) async throws -> UpstreamResponse {
        do {
            return try await send(request, to: request.origin, method: method, headers: headers, body: body, sink: sink)
        } catch let error as ProxyError {
            logger.warning("upstream failed", metadata: ["url": "\(request.key)", "error": "\(error)"])
            throw error
        }
    }

    /// Sends the request to `destination` (its origin or a parent), interim responses
    /// forwarded to the client at once.
    func send(
        _ request: ClientRequest, to destination: OriginURL, method: String, headers: HeaderFields,
        body: RequestBody?, sink: any ResponseSink
    ) async throws -> UpstreamResponse {
        let timing = UpstreamTiming.current
        let started = ContinuousClock.now
        defer { timing?.add(ContinuousClock.now - started) }
        return try await upstream.execute(
            UpstreamRequest(
                origin: destination, method: method, pathAndQuery: request.pathAndQuery, headers: headers, body: body,
                interim: { sink.sendInterim(status: $0, headers: $1) }),
            logger: logger)
    }

    /// A fetch's GET, its `headers` made by ``upstreamHeaders(for:towards:)`` for `parent`: to
    /// the parent when the request's host has one (docs/fleet.md); to the origin when it has
    /// none, or when it cannot be reached and `upstream.parent_fallback` allows
    /// (`parentFailure` then says why).
    func askParentOrOrigin(
        _ request: ClientRequest, parent: OriginURL?, headers: HeaderFields, sink: any ResponseSink,
        parentFailure: inout ProxyError?
    ) async throws -> UpstreamResponse {
        guard let parent else {
            return try await askOrigin(request, method: "GET", headers: headers, body: nil, sink: sink)
        }
        do {
            return try await send(request, to: parent, method: "GET", headers: headers, body: nil, sink: sink)
        } catch let error as ProxyError {
            guard configuration.upstream.parentFallback, Self.parentUnreachable(error) else {
                logger.warning(
                    "parent failed", metadata: ["url": "\(request.key)", "parent": "\(parent)", "error": "\(error)"])
                throw error
            }
            logger.warning(
                "parent unreachable: asking the origin",
                metadata: ["url": "\(request.key)", "parent": "\(parent)", "error": "\(error)"])
            // The origin's Host instead of the client's (server.preserve_host).
            var toOrigin = headers
            toOrigin.replace("Host", with: originHost(for: request))
            parentFailure = error
            return try await askOrigin(request, method: "GET", headers: toOrigin, body: nil, sink: sink)
        }
    }

    /// A parent that could not be reached at all (as opposed to one that answered, even with
    /// an error): the request never got to it, so asking the origin instead is safe.
    static func parentUnreachable(_ error: ProxyError) -> Bool {
        [
            ProxyError.connectionRefused("").type, ProxyError.connectionTimeout("").type,
            ProxyError.dnsError("").type, ProxyError.destinationNotFound("").type,
        ].contains(error.type)
    }

    /// The request head for the origin, or for `parent`: a parent gets the client's Host (it
    /// keys and routes the request as this node did, whatever `server.preserve_host` says).
    func upstreamHeaders(for request: ClientRequest, towards parent: OriginURL?) -> HeaderFields {
        ResponseHeaders.upstreamRequest(
            request.headers, clientAddress: request.clientAddress,
            host: parent != nil ? request.key.authority : originHost(for: request), via: via,
            cdnLoop: cdnLoop.member)
    }

    /// The Host an origin gets (`server.preserve_host`).
    private func originHost(for request: ClientRequest) -> String {
        configuration.server.preserveHost ? request.key.authority : request.origin.authority
    }
}
