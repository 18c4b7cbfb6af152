import CacheTransaction
import HTTPCaching
import Logging
import NIOCore
import NIOHTTP1
import OutpostConfig

/// One request the hit path passed on (``PassHandler``), answered through the pipeline in a
/// task that ends with it. A failure ends this request's connection only.
struct RequestTask {
    /// The pipeline in force; each request takes the current one, so a reloaded
    /// configuration applies from the next request on, also on open connections.
    let pipelines: PipelineHolder
    let registry: ConnectionRegistry
    let accessLog: AccessLog
    let logger: Logger

    typealias Parts = PassHandler.Parts.AsyncIterator
    typealias Outbound = PassHandler.Writer

    /// Answers the request; its connection closes afterwards when the answer says so, or
    /// when a graceful shutdown has begun.
    func run(_ request: PassedRequest) async {
        let peer = request.channel.remoteAddress?.ipAddress
        var parts = request.parts.makeAsyncIterator()
        var keepGoing = false
        do {
            keepGoing = try await serve(
                request.head, parts: &parts, outbound: request.writer, interim: { request.interim($0) }, peer: peer)
        } catch {
            logger.debug("connection ended", metadata: ["peer": "\(peer ?? "-")", "error": "\(error)"])
        }
        request.ended(close: !keepGoing || registry.isDraining)
    }

    /// Answers one request; false when the connection must close afterwards.
    private func serve(
        _ head: HTTPRequestHead, parts: inout Parts, outbound: Outbound,
        interim: @escaping @Sendable (HTTPResponseHead) -> Void, peer: String?
    ) async throws -> Bool {
        let started = ContinuousClock.now
        // Only the access log reads it.
        let timing = accessLog.enabled ? UpstreamTiming() : nil
        let pipeline = pipelines.current
        let configuration = pipeline.configuration
        let strip = !configuration.cache.exposeSurrogateKeys
        let headers = HeaderFields(nio: head.headers)
        // RFC 9110 §7.8: Outpost ignores Upgrade (it speaks HTTP/1.1 here), but NIO's decoder
        // stops reading after an upgrade request, so the connection closes after the answer
        // instead of waiting for a next request it would never parse.
        let keepAlive = head.isKeepAlive && !registry.isDraining && !headers.contains("Upgrade")
        let sink = ChannelResponseSink(
            writer: outbound, version: head.version, keepAlive: keepAlive, stripSurrogateKeys: strip,
            interim: interim)
        let method = head.method.wireName
        let limits = RequestValidation.Limits(configuration.server)

        func log(_ outcome: RequestOutcome, url: String) {
            let seconds =
                Double((ContinuousClock.now - started).components.attoseconds) / 1e18
                + Double((ContinuousClock.now - started).components.seconds)
            accessLog.record(
                method: method, url: url, status: outcome.status, bytes: outcome.bytes, seconds: seconds,
                cacheStatus: outcome.cacheStatus, peer: peer, upstreamSeconds: timing?.seconds)
            pipeline.telemetry.record(status: outcome.status, bytes: outcome.bytes, cacheStatus: outcome.cacheStatus)
        }

        if let rejection = RequestValidation.check(
            method: method, uri: head.uri, versionMajor: head.version.major, versionMinor: head.version.minor,
            headers: headers, limits: limits)
        {
            logger.notice(
                "rejected request",
                metadata: ["status": "\(rejection.status)", "reason": "\(rejection.reason)", "peer": "\(peer ?? "-")"])
            let closing = ChannelResponseSink(
                writer: outbound, version: head.version, keepAlive: false, stripSurrogateKeys: strip)
            let outcome = try await pipeline.sendError(
                status: rejection.status, message: rejection.reason, sink: closing,
                cacheStatus: CacheStatus(forward: .bypass, detail: "rejected"), proxyError: nil)
            log(outcome, url: head.uri)
            return false
        }
        // RFC 8586: a request this node forwarded itself, or that left the fleet and came back,
        // is refused instead of going round again (docs/fleet.md).
        if pipeline.cdnLoop.detects(in: headers) {
            logger.notice("request loop refused", metadata: ["url": "\(head.uri)", "peer": "\(peer ?? "-")"])
            let closing = ChannelResponseSink(
                writer: outbound, version: head.version, keepAlive: false, stripSurrogateKeys: strip)
            let outcome = try await pipeline.sendError(
                status: 508, message: "loop detected: this request has already passed through this node (CDN-Loop)",
                sink: closing, cacheStatus: CacheStatus(forward: .bypass, detail: "loop"), proxyError: nil)
            log(outcome, url: head.uri)
            return false
        }
        // RFC 9110 §9.3.7: `OPTIONS *` asks about this server, not a resource: answered here,
        // never forwarded. Peers check each other's health with it (docs/fleet.md); a node
        // that is shutting down says 503 so that they stop sending it keys.
        if method == "OPTIONS" && head.uri == "*" {
            try await drainBody(&parts)
            var fields = HeaderFields()
            fields.add("Allow", "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE")
            fields.add("Content-Length", "0")
            fields.add("Cache-Control", "no-store")
            try await sink.sendResponse(status: registry.isDraining ? 503 : 200, headers: fields, body: nil)
            return keepAlive
        }
        // HTTP/1.0 clients may omit Host; they get the default origin's site.
        let host = headers["Host"] ?? (head.version.minor == 0 ? configuration.upstream.defaultOrigin?.authority : nil)
        guard let target = RequestTarget(uri: head.uri, host: host) else {
            let closing = ChannelResponseSink(
                writer: outbound, version: head.version, keepAlive: false, stripSurrogateKeys: strip)
            let outcome = try await pipeline.sendError(
                status: 400, message: "invalid request target", sink: closing,
                cacheStatus: CacheStatus(forward: .bypass, detail: "rejected"), proxyError: nil)
            log(outcome, url: head.uri)
            return false
        }
        let key = CacheKey(scheme: "http", authority: target.authority, pathAndQuery: target.pathAndQuery)
        guard let origin = configuration.upstream.origin(for: key) else {
            let error = ProxyError.destinationNotFound("no origin configured for \(key.authority)")
            let outcome = try await pipeline.sendError(
                status: 502, message: error.details, sink: sink,
                cacheStatus: CacheStatus(forward: .bypass, detail: .other(error.type)),
                proxyError: error)
            log(outcome, url: key.description)
            try await drainBody(&parts)
            return keepAlive
        }
        let request = ClientRequest(
            method: RequestMethod(token: method), target: head.uri, pathAndQuery: target.pathAndQuery, headers: headers,
            key: key,
            origin: origin,
            clientAddress: peer, body: nil)
        let outcome: RequestOutcome
        do {
            outcome = try await UpstreamTiming.$current.withValue(timing) {
                try await answer(request, pipeline: pipeline, head: head, parts: &parts, outbound: outbound, sink: sink)
            }
        } catch {
            // The response was cut short (client gone, origin failed mid-body): still one line.
            accessLog.record(
                method: method, url: key.description, status: 0, bytes: 0, seconds: 0, cacheStatus: nil,
                note: "aborted: \(error)", peer: peer, upstreamSeconds: timing?.seconds)
            throw error
        }
        log(outcome, url: key.description)
        return keepAlive && !outcome.mustClose && !sink.mustClose.withLockedValue { $0 }
    }

    /// Runs the pipeline, streaming the request body to it when there is one.
    private func answer(
        _ request: ClientRequest, pipeline: CachePipeline, head: HTTPRequestHead,
        parts: inout Parts, outbound: Outbound, sink: ChannelResponseSink
    ) async throws -> RequestOutcome {
        var request = request
        let headers = request.headers
        let declaredLength = headers["Content-Length"].flatMap { Int($0.trimmingOWS()) }
        let chunked = headers.contains("Transfer-Encoding")
        let outcome: RequestOutcome
        if chunked || (declaredLength ?? 0) > 0 {
            if headers.listMembers("Expect").contains(where: { $0.equalsIgnoringASCIICase("100-continue") }) {
                try await outbound.yield(.head(HTTPResponseHead(version: head.version, status: .continue)))
            }
            let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
            request.body = RequestBody(parts: stream, length: chunked ? nil : declaredLength)
            let finalRequest = request
            let limit = pipeline.configuration.server.maxRequestBodySize
            outcome = try await withThrowingTaskGroup(of: RequestOutcome.self) { group in
                group.addTask { try await pipeline.handle(finalRequest, sink: sink) }
                var total = 0
                do {
                    pump: while let part = try await parts.next() {
                        switch part {
                        case .body(let buffer):
                            total += buffer.readableBytes
                            if total > limit {
                                continuation.finish(
                                    throwing: ConnectionAbort(reason: "request body over max_request_body_size"))
                                break pump
                            }
                            continuation.yield(buffer)
                        case .end:
                            continuation.finish()
                            break pump
                        case .head:
                            continuation.finish(throwing: ConnectionAbort(reason: "request head inside a body"))
                            break pump
                        }
                    }
                } catch {
                    continuation.finish(throwing: error)
                }
                let result = try await group.next()!
                return total > limit
                    ? RequestOutcome(
                        status: result.status, bytes: result.bytes, cacheStatus: result.cacheStatus, mustClose: true)
                    : result
            }
        } else {
            try await drainBody(&parts)
            outcome = try await pipeline.handle(request, sink: sink)
        }
        return outcome
    }

    /// Reads the rest of a request without a body (its `.end`).
    private func drainBody(
        _ parts: inout Parts
    ) async throws {
        while let part = try await parts.next() {
            if case .end = part { return }
        }
    }
}

extension HTTPMethod {
    /// The method as it was on the wire. NIO names M-SEARCH `MSEARCH` (its enum case), which
    /// forwarded as such is another method the origin does not know.
    var wireName: String { self == .MSEARCH ? "M-SEARCH" : rawValue }
}

extension OutpostConfiguration.Upstream {
    /// The origin for a request: by Host (with or without port), else the default origin.
    func origin(for key: CacheKey) -> OriginURL? {
        hosts[key.authority] ?? hosts[key.host] ?? defaultOrigin
    }
}

extension RequestValidation.Limits {
    init(_ server: OutpostConfiguration.Server) {
        self.init(
            maxURILength: server.maxURILength, maxHeaderBytes: server.maxHeaderBytes, maxHeaders: server.maxHeaders,
            maxRequestBodySize: server.maxRequestBodySize)
    }
}

/// The authority and path of a request target (RFC 9112 §3.2): origin-form with Host, or
/// absolute-form, whose authority wins over Host.
struct RequestTarget: Equatable {
    var authority: String
    var pathAndQuery: String

    init?(uri: String, host: String?) {
        if RequestValidation.isOriginForm(uri) {
            guard let host, !host.isEmpty else { return nil }
            authority = host
            pathAndQuery = uri
        } else if let key = CacheKey(absoluteURI: uri) {
            authority = key.authority
            pathAndQuery = key.pathAndQuery
        } else {
            return nil
        }
    }
}
