import HTTPCaching

/// Checks on a decoded request head that the HTTP parser does not make for us (RFC 9112 §3,
/// §6.3; RFC 9110 §7.2), kept as pure functions so they are tested without sockets.
public enum RequestValidation {
    public struct Rejection: Sendable, Equatable {
        public let status: Int
        public let reason: String
    }

    public struct Limits: Sendable {
        public var maxURILength: Int
        public var maxHeaderBytes: Int
        public var maxHeaders: Int
        public var maxRequestBodySize: Int

        public init(maxURILength: Int, maxHeaderBytes: Int, maxHeaders: Int, maxRequestBodySize: Int) {
            self.maxURILength = maxURILength
            self.maxHeaderBytes = maxHeaderBytes
            self.maxHeaders = maxHeaders
            self.maxRequestBodySize = maxRequestBodySize
        }
    }

    /// Validates one request head; nil when it may proceed. `fieldsChecked`: the field names
    /// and values have been checked already (an HTTP/2 header block, ``HTTP2RequestBlock``).
    public static func check(
        method: String, uri: String, versionMajor: Int, versionMinor: Int, headers: HeaderFields, limits: Limits,
        fieldsChecked: Bool = false
    ) -> Rejection? {
        if uri.utf8.count > limits.maxURILength {
            return Rejection(status: 414, reason: "request target longer than \(limits.maxURILength) bytes")
        }
        if headers.count > limits.maxHeaders {
            return Rejection(status: 431, reason: "more than \(limits.maxHeaders) header fields")
        }
        // One pass gathers what the checks below need: they run on every request, hits
        // included, and most requests have no framing field and one Host.
        var headerBytes = 0
        var badField: Rejection?
        var framing = false
        var hostCount = 0
        var host: String?
        for field in headers {
            let name = field.name.utf8
            headerBytes += name.count + field.value.utf8.count + 4
            if !fieldsChecked, badField == nil {
                if hasControlCharacter(field.value) {
                    badField = Rejection(status: 400, reason: "control character in field \(field.name)")
                } else if !isToken(field.name) {
                    badField = Rejection(status: 400, reason: "invalid field name")
                }
            }
            switch name.count {
            case 4 where field.name.equalsIgnoringASCIICase("Host"):
                hostCount += 1
                if host == nil { host = field.value }
            case 14 where field.name.equalsIgnoringASCIICase("Content-Length"): framing = true
            case 17 where field.name.equalsIgnoringASCIICase("Transfer-Encoding"): framing = true
            default: break
            }
        }
        if headerBytes > limits.maxHeaderBytes {
            return Rejection(status: 431, reason: "header section larger than \(limits.maxHeaderBytes) bytes")
        }
        if let badField { return badField }
        if framing,
            let rejection = framingProblem(
                headers, versionMajor: versionMajor, versionMinor: versionMinor, limits: limits)
        {
            return rejection
        }
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1.
        if versionMajor == 1 && versionMinor >= 1 && hostCount != 1 {
            return Rejection(status: 400, reason: hostCount == 0 ? "missing Host" : "several Host fields")
        }
        if hostCount > 1 { return Rejection(status: 400, reason: "several Host fields") }
        if let host, host.containsUTF8Byte(where: { $0 == 0x20 || $0 == 0x2F || $0 == 0x40 }) {
            return Rejection(status: 400, reason: "invalid Host")
        }
        // RFC 9110 §9.3.6 / §9.3.8: a reverse proxy opens no tunnels, and TRACE would reflect
        // the client's credentials (cross-site tracing): both are refused as not implemented
        // (§15.6.2) rather than passed to an origin that may honour them.
        if method == "CONNECT" || method == "TRACE" {
            return Rejection(status: 501, reason: "\(method) is not supported by this reverse proxy")
        }
        if !(isOriginForm(uri) || uri.hasPrefix("http://") || uri.hasPrefix("https://")
            || (uri == "*" && method == "OPTIONS"))
        {
            return Rejection(status: 400, reason: "invalid request target")
        }
        return nil
    }

    /// Transfer-Encoding and Content-Length (RFC 9112 §6.1, §6.3); nil when they are sound.
    private static func framingProblem(
        _ headers: HeaderFields, versionMajor: Int, versionMinor: Int, limits: Limits
    ) -> Rejection? {
        // RFC 9112 §6.3: Transfer-Encoding with Content-Length is a smuggling vector.
        let transferEncodings = headers.listMembers("Transfer-Encoding")
        let contentLengths = headers.values("Content-Length")
        if !transferEncodings.isEmpty {
            if !contentLengths.isEmpty {
                return Rejection(status: 400, reason: "both Transfer-Encoding and Content-Length")
            }
            // Only chunked, once and last, is understood (RFC 9112 §6.1).
            guard transferEncodings.count == 1, transferEncodings[0].equalsIgnoringASCIICase("chunked") else {
                return Rejection(status: 400, reason: "unsupported transfer coding")
            }
            if versionMajor == 1 && versionMinor == 0 {
                return Rejection(status: 400, reason: "Transfer-Encoding in HTTP/1.0")
            }
        }
        if !contentLengths.isEmpty {
            // Several lines (or a list) must all carry the same valid value (RFC 9112 §6.3).
            let members = contentLengths.flatMap { HeaderFields.splitList($0) }
            guard let first = members.first, members.allSatisfy({ $0 == first }),
                let length = Int(first), length >= 0, first.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
            else { return Rejection(status: 400, reason: "invalid or conflicting Content-Length") }
            if length > limits.maxRequestBodySize {
                return Rejection(status: 413, reason: "request body larger than \(limits.maxRequestBodySize) bytes")
            }
        }
        return nil
    }

    /// Whether a request target is in origin-form (RFC 9112 §3.2.1), by its first byte: the
    /// target is bytes, and `hasPrefix` compares characters at ten times the cost, three
    /// times a request.
    static func isOriginForm(_ uri: String) -> Bool { uri.utf8.first == UInt8(ascii: "/") }

    /// Bare CR, LF or NUL in a field value (RFC 9110 §5.5): they would let a downstream parser
    /// split the message. Requests with one are refused, responses with one not sent.
    static func hasControlCharacter(_ value: String) -> Bool {
        value.containsUTF8Byte(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 })
    }

    /// Whether a field name is a token (RFC 9110 §5.1): non-empty, tchar only.
    static func isToken(_ name: String) -> Bool {
        !name.isEmpty && !name.containsUTF8Byte(where: { !isTokenByte($0) })
    }

    /// tchar (RFC 9110 §5.6.2).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }
}
