import HTTPCaching
import NIOHPACK

/// The checks RFC 9113 §8.2 and §8.3 ask of a request's header block (and §8.1 of a trailer
/// block), done by ``HTTP2ConnectionHandler`` instead of by NIO's HTTP/2 handler, whose header-block validation is
/// turned off: NIO validates every block it sends as well as every one it receives, and
/// checking Outpost's own responses — fields parsed from HTTP/1.1 or written by Outpost —
/// cost more than a fifth of an HTTP/2 hit (tools/bench-instructions --h2). The rules are
/// NIO's: field names non-empty, lower-case token characters; pseudo-header fields first,
/// known, not repeated, with non-empty values free of spaces and controls; `:method`, `:scheme`
/// and `:path` present (CONNECT: `:method` and `:authority` only); no connection-specific
/// field; TE only "trailers"; values free of NUL, CR and LF.
enum HTTP2RequestBlock {
    /// A well-formed request block, read in the same pass that checked it.
    struct Request {
        var method = ""
        var path: String?
        var authority: String?
        /// The regular fields, in order; first a Host from `:authority` when the block has no
        /// Host field, as NIO's HTTP/2-to-HTTP/1 codec makes it (RFC 9113 §8.3.1).
        var fields: [HeaderFields.Field] = []
        var hasHost = false
        var hasContentLength = false
    }

    enum Reading {
        case request(Request)
        case trailers
        /// Why the block is malformed.
        case malformed(String)
    }

    /// Why a request (or, with `trailers`, a trailer) block is malformed; nil when it is not.
    static func problem(_ block: HPACKHeaders, trailers: Bool) -> String? {
        if case .malformed(let problem) = read(block, trailers: trailers) { return problem }
        return nil
    }

    /// Checks a request (or, with `trailers`, a trailer) block and reads a request's parts.
    static func read(_ block: HPACKHeaders, trailers: Bool) -> Reading {
        var seen: UInt8 = 0
        var regular = false
        var request = Request()
        if !trailers { request.fields.reserveCapacity(block.count) }
        for (name, value, _) in block {
            let bytes = name.utf8
            if bytes.first == UInt8(ascii: ":") {
                if regular { return .malformed("pseudo-header field \(name) after a regular field") }
                if trailers { return .malformed("pseudo-header field \(name) in trailers") }
                let bit: UInt8
                // By length first: a string switch compares the name with every case in turn.
                switch bytes.count {
                case 7 where name == ":method":
                    bit = 1
                    request.method = value
                case 7 where name == ":scheme": bit = 2
                case 5 where name == ":path":
                    bit = 4
                    request.path = value
                case 10 where name == ":authority":
                    bit = 8
                    request.authority = value
                default: return .malformed("unknown pseudo-header field \(name)")
                }
                if seen & bit != 0 { return .malformed("repeated pseudo-header field \(name)") }
                seen |= bit
                if value.utf8.isEmpty || value.containsUTF8Byte(where: { $0 <= 0x20 || $0 == 0x7F }) {
                    return .malformed("bad value for \(name)")
                }
                continue
            }
            regular = true
            if bytes.isEmpty || name.containsUTF8Byte(where: { !isLowerCaseTokenByte($0) }) {
                return .malformed("bad field name")
            }
            // Compared only at the lengths of the names below, each with its own length's.
            switch bytes.count {
            case 2 where name == "te" && value != "trailers": return .malformed("TE other than trailers")
            case 4 where name == "host": request.hasHost = true
            case 14 where name == "content-length": request.hasContentLength = true
            case 7 where name == "upgrade", 10 where name == "connection" || name == "keep-alive",
                16 where name == "proxy-connection", 17 where name == "transfer-encoding":
                return .malformed("connection-specific field \(name)")
            default: break
            }
            if RequestValidation.hasControlCharacter(value) {
                return .malformed("bad value for \(name)")
            }
            if !trailers { request.fields.append(HeaderFields.Field(name: name, value: value)) }
        }
        if trailers { return .trailers }
        let connect = request.method == "CONNECT"
        let required: UInt8 = connect ? 1 | 8 : 1 | 2 | 4
        let allowed: UInt8 = connect ? 1 | 8 : 1 | 2 | 4 | 8
        if seen & required != required || seen & ~allowed != 0 {
            return .malformed("missing or extra pseudo-header fields")
        }
        if !request.hasHost, let authority = request.authority {
            request.fields.insert(HeaderFields.Field(name: "host", value: authority), at: 0)
        }
        return .request(request)
    }

    /// A token character (RFC 9110 §5.6.2) that is not an upper-case letter.
    @inline(__always)
    static func isLowerCaseTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x21, 0x23...0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x30...0x39, 0x5E...0x7A, 0x7C, 0x7E: true
        default: false
        }
    }
}
