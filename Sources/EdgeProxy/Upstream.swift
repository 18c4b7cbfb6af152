import AsyncHTTPClient
import HTTPCaching
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A request Outpost sends to an origin.
struct UpstreamRequest {
    var origin: OriginURL
    var method: String
    var pathAndQuery: String
    var headers: HeaderFields
    var body: HTTPClientRequest.Body?
    /// Told of each interim (1xx) response the origin sends before the final one: status and
    /// fields (RFC 9110 §15.2: a proxy forwards them). Only Outpost's own client sees them;
    /// async-http-client drops them.
    var interim: (@Sendable (Int, HeaderFields) -> Void)? = nil
}

/// The origins' HTTP clients: one pooled AsyncHTTPClient per origin, configured as a proxy
/// needs it (redirects passed through, never followed; bodies never decompressed; a refused
/// connection fails at once rather than being retried until the deadline).
final class UpstreamPool: Sendable {
    private let clients: [String: HTTPClient]
    private let fallback: HTTPClient
    private let responseTimeout: TimeAmount
    private let telemetry: Telemetry?
    /// Requests without a body to `http` origins (see ``OriginClient``).
    private let originClient: OriginClient

    init(configuration: OutpostConfiguration.Upstream, eventLoopGroup: any EventLoopGroup, telemetry: Telemetry? = nil)
    {
        self.telemetry = telemetry
        var clientConfiguration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(
                connect: .milliseconds(Int64(configuration.connectTimeout * 1000)),
                read: .milliseconds(Int64(configuration.readTimeout * 1000))),
            connectionPool: .init(
                idleTimeout: .seconds(50),
                concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnectionsPerOrigin),
            decompression: .disabled)
        clientConfiguration.httpVersion = .http1Only
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        // Outpost bootstraps no tracer: left at its default (the global no-op tracer), the
        // client would still open a span and format its attributes (URL, method, status) for
        // every origin request, about 39 000 instructions per miss (callgrind).
        clientConfiguration.tracing.tracer = nil
        var clients: [String: HTTPClient] = [:]
        let origins = [configuration.defaultOrigin].compactMap { $0 } + configuration.hosts.values
        for origin in origins where clients[origin.description] == nil {
            clients[origin.description] = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: clientConfiguration)
        }
        self.clients = clients
        self.fallback = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: clientConfiguration)
        self.responseTimeout = .milliseconds(Int64(configuration.responseTimeout * 1000))
        let loops = Array(eventLoopGroup.makeIterator()).count
        originClient = OriginClient(
            group: eventLoopGroup,
            settings: OriginClient.Settings(
                connectTimeout: .milliseconds(Int64(configuration.connectTimeout * 1000)),
                readTimeout: .milliseconds(Int64(configuration.readTimeout * 1000)),
                responseTimeout: responseTimeout,
                connectionsPerLoop: max(1, (configuration.maxConnectionsPerOrigin + loops - 1) / max(1, loops)),
                queuedPerLoop: (configuration.maxQueuedRequests + loops - 1) / max(1, loops)))
    }

    /// Sends the request and returns once the response head arrived; the body streams from
    /// the returned response. Failures come back as the ``ProxyError`` to answer with.
    func execute(_ request: UpstreamRequest, logger: Logger) async throws -> UpstreamResponse {
        let started = ContinuousClock.now
        do {
            let response = try await send(request, logger: logger)
            telemetry?.recordUpstream(latency: ContinuousClock.now - started, failed: false)
            return response
        } catch {
            telemetry?.recordUpstream(latency: ContinuousClock.now - started, failed: true)
            throw UpstreamPool.classify(error, origin: request.origin)
        }
    }

    /// Outpost's own client for requests without a body to `http` origins; async-http-client
    /// for the rest (request bodies, `https`).
    private func send(_ request: UpstreamRequest, logger: Logger) async throws -> UpstreamResponse {
        if request.body == nil && request.origin.scheme == "http" { return try await originClient.execute(request) }
        let client = clients[request.origin.description] ?? fallback
        var outgoing = HTTPClientRequest(url: request.origin.description + request.pathAndQuery)
        outgoing.method = HTTPMethod(rawValue: request.method)
        var headers = HTTPHeaders()
        for field in request.headers { headers.add(name: field.name, value: field.value) }
        outgoing.headers = headers
        outgoing.body = request.body
        let response = try await client.execute(outgoing, timeout: responseTimeout, logger: logger)
        return UpstreamResponse(
            status: response.status, headers: response.headers, body: UpstreamBody(source: .client(response.body)))
    }

    func shutdown() async {
        await originClient.shutdown()
        for client in clients.values { try? await client.shutdown() }
        try? await fallback.shutdown()
    }

    /// Maps a client error to the RFC 9209 error and status the client gets.
    static func classify(_ error: any Error, origin: OriginURL) -> ProxyError {
        if let proxyError = error as? ProxyError { return proxyError }
        if error is OriginConnection.ClosedBeforeResponse {
            return .connectionTerminated("\(origin) closed the connection")
        }
        let text = String(describing: error)
        if let clientError = error as? HTTPClientError {
            switch clientError {
            case .connectTimeout: return .connectionTimeout("connecting to \(origin) timed out")
            case .deadlineExceeded, .readTimeout: return .responseTimeout("\(origin) did not answer in time")
            case .remoteConnectionClosed: return .connectionTerminated("\(origin) closed the connection")
            case .getConnectionFromPoolTimeout:
                return .connectionLimitReached("no free connection to \(origin) in time")
            default: break
            }
        }
        if error is HTTPParserError { return .protocolError("invalid response from \(origin): \(text)") }
        if let ioError = error as? IOError {
            switch ioError.errnoCode {
            case ECONNREFUSED: return .connectionRefused("\(origin) refused the connection")
            case ECONNRESET, EPIPE: return .connectionTerminated("\(origin) reset the connection")
            case ETIMEDOUT: return .connectionTimeout("connecting to \(origin) timed out")
            default: break
            }
        }
        if let connectionError = error as? NIOConnectionError {
            if connectionError.dnsAAAAError != nil || connectionError.dnsAError != nil,
                connectionError.connectionErrors.isEmpty
            {
                return .dnsError("cannot resolve \(origin.host)")
            }
            for attempt in connectionError.connectionErrors {
                if let ioError = attempt.error as? IOError, ioError.errnoCode == ECONNREFUSED {
                    return .connectionRefused("\(origin) refused the connection")
                }
            }
            return .connectionRefused("cannot connect to \(origin): \(text)")
        }
        if error is ChannelError {
            if case ChannelError.connectTimeout = error {
                return .connectionTimeout("connecting to \(origin) timed out")
            }
            return .connectionTerminated("connection to \(origin) failed: \(text)")
        }
        if text.localizedCaseInsensitiveContains("refused") {
            return .connectionRefused("\(origin) refused the connection")
        }
        return .protocolError("request to \(origin) failed: \(text)")
    }
}
