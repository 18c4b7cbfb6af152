import CacheTransaction
import EdgeTelemetry
import HTTPCaching
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import OutpostConfig

/// The way to the origins: Outpost's own HTTP/1.1 client (``OriginClient``), over TCP or
/// TLS, with the configured timeouts and connection limits, timed for /metrics.
final class UpstreamPool: Origin {
    private let telemetry: Telemetry?
    private let originClient: OriginClient

    /// Throws when `upstream.tls_ca_file` cannot be read as PEM certificates.
    init(
        configuration: OutpostConfiguration.Upstream, eventLoopGroup: any EventLoopGroup, telemetry: Telemetry? = nil
    )
        throws
    {
        self.telemetry = telemetry
        let responseTimeout = TimeAmount.milliseconds(Int64(configuration.responseTimeout * 1000))
        let loops = Array(eventLoopGroup.makeIterator()).count
        originClient = OriginClient(
            group: eventLoopGroup,
            settings: OriginClient.Settings(
                connectTimeout: .milliseconds(Int64(configuration.connectTimeout * 1000)),
                readTimeout: .milliseconds(Int64(configuration.readTimeout * 1000)),
                responseTimeout: responseTimeout,
                connectionsPerLoop: max(1, (configuration.maxConnectionsPerOrigin + loops - 1) / max(1, loops)),
                queuedPerLoop: (configuration.maxQueuedRequests + loops - 1) / max(1, loops),
                tls: UpstreamPool.needsTLS(configuration)
                    ? try UpstreamPool.tlsContext(caFile: configuration.tlsCAFile) : nil))
    }

    /// Whether any configured origin or parent is `https` (or a CA file is named, to be
    /// checked at start): loading the system's trust roots costs tens of millions of
    /// instructions at start-up (callgrind), not spent when nothing upstream needs them.
    static func needsTLS(_ configuration: OutpostConfiguration.Upstream) -> Bool {
        configuration.tlsCAFile != nil || configuration.defaultOrigin?.scheme == "https"
            || configuration.parent?.scheme == "https"
            || configuration.hosts.values.contains { $0.scheme == "https" }
            || configuration.hostParents.values.contains { $0.scheme == "https" }
    }

    /// The client side of TLS to `https` origins: TLS 1.2 or later, HTTP/1.1 by ALPN, the
    /// system's trust roots plus `upstream.tls_ca_file`, certificates and names always verified.
    static func tlsContext(caFile: String?) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["http/1.1"]
        if let caFile {
            do {
                let roots = try NIOSSLCertificate.fromPEMFile(caFile)
                guard !roots.isEmpty else {
                    throw ConfigurationError("upstream.tls_ca_file: no certificate in \(caFile)")
                }
                tls.additionalTrustRoots = [.certificates(roots)]
            } catch let error as ConfigurationError {
                throw error
            } catch {
                throw ConfigurationError("upstream.tls_ca_file: cannot read PEM certificates from \(caFile): \(error)")
            }
        }
        return try NIOSSLContext(configuration: tls)
    }

    /// Sends the request and returns once the response head arrived; the body streams from
    /// the returned response. Failures come back as the ``ProxyError`` to answer with.
    func execute(_ request: UpstreamRequest, logger: Logger) async throws -> UpstreamResponse {
        let started = ContinuousClock.now
        do {
            let response = try await originClient.execute(request)
            telemetry?.recordUpstream(latency: ContinuousClock.now - started, failed: false)
            return response
        } catch {
            telemetry?.recordUpstream(latency: ContinuousClock.now - started, failed: true)
            throw UpstreamPool.classify(error, origin: request.origin)
        }
    }

    func shutdown() async {
        await originClient.shutdown()
    }

    /// Maps a client error to the RFC 9209 error and status the client gets.
    static func classify(_ error: any Error, origin: OriginURL) -> ProxyError {
        if let proxyError = error as? ProxyError { return proxyError }
        if error is OriginConnection.ClosedBeforeResponse {
            return .connectionTerminated("\(origin) closed the connection")
        }
        let text = String(describing: error)
        // RFC 9209 §2.3.13-14: the origin's certificate or name failed verification, or TLS
        // itself failed.
        if let tlsError = error as? NIOSSLError {
            if case .handshakeFailed(let inner) = tlsError, "\(inner)".localizedCaseInsensitiveContains("CERTIFICATE") {
                return .tlsCertificateError("\(origin): certificate not accepted: \(text)")
            }
            return .tlsProtocolError("TLS with \(origin) failed: \(text)")
        }
        if error is NIOSSLExtraError {
            return .tlsCertificateError("\(origin): certificate not accepted: \(text)")
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
