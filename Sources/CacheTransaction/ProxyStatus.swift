import HTTPCaching

/// Proxy-Status (RFC 9209): why this intermediary produced an error response.
public struct ProxyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// RFC 9209 §2.3 error type.
    public let type: String
    /// The status we answer with.
    public let status: Int
    /// Free-text detail for the log and the `details` parameter.
    public let details: String

    public static func connectionRefused(_ details: String) -> ProxyError {
        .init(type: "connection_refused", status: 502, details: details)
    }
    public static func connectionTimeout(_ details: String) -> ProxyError {
        .init(type: "connection_timeout", status: 504, details: details)
    }
    public static func connectionTerminated(_ details: String) -> ProxyError {
        .init(type: "connection_terminated", status: 502, details: details)
    }
    public static func responseTimeout(_ details: String) -> ProxyError {
        .init(type: "http_response_timeout", status: 504, details: details)
    }
    public static func protocolError(_ details: String) -> ProxyError {
        .init(type: "http_protocol_error", status: 502, details: details)
    }
    public static func dnsError(_ details: String) -> ProxyError {
        .init(type: "dns_error", status: 502, details: details)
    }
    public static func destinationNotFound(_ details: String) -> ProxyError {
        .init(type: "destination_not_found", status: 502, details: details)
    }
    public static func internalError(_ details: String) -> ProxyError {
        .init(type: "proxy_internal_error", status: 500, details: details)
    }
    /// RFC 9209 §2.3.12: every connection to the origin this cache may open is busy and the
    /// queue of requests waiting for one is full, or a request waited its whole deadline.
    public static func connectionLimitReached(_ details: String) -> ProxyError {
        .init(type: "connection_limit_reached", status: 503, details: details)
    }
    /// RFC 9209 §2.3.14: the origin's certificate could not be verified.
    public static func tlsCertificateError(_ details: String) -> ProxyError {
        .init(type: "tls_certificate_error", status: 502, details: details)
    }
    /// RFC 9209 §2.3.13: TLS with the origin failed otherwise.
    public static func tlsProtocolError(_ details: String) -> ProxyError {
        .init(type: "tls_protocol_error", status: 502, details: details)
    }
    public static func incomplete(_ details: String) -> ProxyError {
        .init(type: "http_response_incomplete", status: 502, details: details)
    }

    /// The field value, e.g. `outpost; error=connection_refused; details="…"`.
    public func headerValue(proxyName: String) -> String {
        "\(proxyName); error=\(type); details=\(StructuredField.string(details))"
    }

    public var description: String { "\(type) (\(status)): \(details)" }
}
