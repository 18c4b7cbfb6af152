import NIOCore

/// What the start of a request line says about its method, before NIO's parser sees it.
///
/// NIO's HTTP/1 parser (llhttp) knows a fixed list of methods and fails on any other, while
/// RFC 9110 §9.1 lets a method be any token, and a reverse proxy forwards the methods it does
/// not know (§9.1: "An origin server that receives a request method that is unrecognized
/// ... SHOULD respond with 501": the origin decides, not the proxy). `ExtensionMethodDecoder`
/// uses this to swap an unknown token for one llhttp accepts and put it back after parsing.
/// Pure: bytes in, decision out.
enum MethodToken: Equatable {
    /// The bytes so far are leading empty lines and the start of a token: wait for more.
    case needMore
    /// A method llhttp parses itself, or no token at all (llhttp refuses it as before).
    case leave
    /// An extension method: the token at `offset` (after leading empty lines), `length` bytes
    /// long, followed by a space.
    case extensionMethod(offset: Int, length: Int)

    /// Longest method token Outpost forwards. A request line that starts with a longer token is
    /// left to llhttp, which refuses it (400). It also bounds what is held back while waiting
    /// for the token to end: this many bytes plus `maxLeadingEmptyLines` line ends.
    static let maxLength = 64
    /// Empty lines tolerated before a request line (RFC 9112 §2.2: a server SHOULD ignore at
    /// least one); more are left to llhttp.
    static let maxLeadingEmptyLines = 4

    /// The stand-in llhttp parses in place of an extension method. Any method in llhttp's list
    /// with no special framing would do (not CONNECT, whose target and body differ).
    static let standInName = "UNBIND"
    static let standIn: [UInt8] = Array(standInName.utf8)

    /// The methods llhttp accepts in an HTTP/1.x request (its HTTP_METHOD_MAP); RTSP's methods
    /// are refused by llhttp for HTTP and so count as extension methods here.
    static let parsedByLLHTTP: Set<[UInt8]> = Set(
        [
            "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL",
            "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT",
            "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH",
            "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE", "QUERY",
        ].map { Array($0.utf8) })

    private static func isGET<Bytes: Collection>(_ bytes: Bytes, _ start: Bytes.Index) -> Bool
    where Bytes.Element == UInt8 {
        bytes[start...].starts(with: [UInt8(ascii: "G"), UInt8(ascii: "E"), UInt8(ascii: "T")])
    }

    private static func isHEAD<Bytes: Collection>(_ bytes: Bytes, _ start: Bytes.Index) -> Bool
    where Bytes.Element == UInt8 {
        bytes[start...].starts(with: [UInt8(ascii: "H"), UInt8(ascii: "E"), UInt8(ascii: "A"), UInt8(ascii: "D")])
    }

    /// The bytes start with "GET " or "HEAD ", the hot path's requests: settled from two loads.
    static func startsWithGETOrHEAD(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { startsWithGETOrHEAD($0) }
    }

    static func startsWithGETOrHEAD(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 5 else { return false }
        let word = bytes.loadUnaligned(as: UInt32.self).bigEndian
        return word == 0x4745_5420 || (word == 0x4845_4144 && bytes[4] == 0x20)  // "GET ", "HEAD "
    }

    /// RFC 9110 §5.6.2: tchar.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Reads the start of a request line: optional empty lines (CRLF or bare LF, as llhttp
    /// skips them), a token, one space.
    static func classify<Bytes: Collection>(_ bytes: Bytes) -> MethodToken where Bytes.Element == UInt8 {
        var index = bytes.startIndex
        var offset = 0
        var emptyLines = 0
        // Leading empty lines.
        while index != bytes.endIndex, bytes[index] == UInt8(ascii: "\r") || bytes[index] == UInt8(ascii: "\n") {
            if bytes[index] == UInt8(ascii: "\n") {
                emptyLines += 1
                if emptyLines > maxLeadingEmptyLines { return .leave }
            }
            index = bytes.index(after: index)
            offset += 1
            if offset > 2 * maxLeadingEmptyLines + 1 { return .leave }
        }
        let start = offset
        let tokenStart = index
        var length = 0
        while index != bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: " ") {
                guard length > 0 else { return .leave }
                // GET and HEAD, the hot path's requests, without building an array.
                if length == 3, bytes[tokenStart] == UInt8(ascii: "G") { if isGET(bytes, tokenStart) { return .leave } }
                if length == 4, bytes[tokenStart] == UInt8(ascii: "H") {
                    if isHEAD(bytes, tokenStart) { return .leave }
                }
                let token = Array(bytes[tokenStart..<index])
                return parsedByLLHTTP.contains(token) ? .leave : .extensionMethod(offset: start, length: length)
            }
            guard isTokenCharacter(byte), length < maxLength else { return .leave }
            length += 1
            index = bytes.index(after: index)
        }
        return .needMore
    }
}
