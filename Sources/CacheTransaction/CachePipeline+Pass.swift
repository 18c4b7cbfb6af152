import HTTPCaching

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
                request, method: request.method.token, headers: upstreamHeaders(for: request), body: request.body,
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
            return try await upstream.execute(
                UpstreamRequest(
                    origin: request.origin, method: method, pathAndQuery: request.pathAndQuery, headers: headers,
                    body: body, interim: { sink.sendInterim(status: $0, headers: $1) }),
                logger: logger)
        } catch let error as ProxyError {
            logger.warning("upstream failed", metadata: ["url": "\(request.key)", "error": "\(error)"])
            throw error
        }
    }

    func upstreamHeaders(for request: ClientRequest) -> HeaderFields {
        let host = configuration.server.preserveHost ? request.key.authority : request.origin.authority
        return ResponseHeaders.upstreamRequest(
            request.headers, clientAddress: request.clientAddress, host: host, via: via)
    }
}
