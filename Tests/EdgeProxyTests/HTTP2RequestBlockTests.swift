import NIOHPACK
import Testing

@testable import EdgeProxy

@Suite("EdgeProxy: HTTP/2 request header blocks (RFC 9113 §8.2, §8.3)")
struct HTTP2RequestBlockTests {
    static let get = [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/")]

    @Test(
        "well-formed blocks pass",
        arguments: [
            (get, false),
            (get + [("accept-encoding", "br, gzip"), ("te", "trailers"), ("cookie", "a=1")], false),
            ([(":method", "GET"), (":scheme", "https"), (":path", "/x?y")], false),  // no :authority
            ([(":method", "CONNECT"), (":authority", "a.test:443")], false),
            ([("x-checksum", "abc")], true),  // trailers
            ([], true),
        ])
    func wellFormed(block: [(String, String)], trailers: Bool) {
        #expect(HTTP2RequestBlock.problem(HPACKHeaders(block), trailers: trailers) == nil)
    }

    @Test(
        "malformed blocks are named",
        arguments: [
            (get + [("Accept", "*/*")], false, "bad field name"),
            (get + [("", "x")], false, "bad field name"),
            (get + [("a\u{7F}", "x")], false, "bad field name"),
            (get + [("connection", "close")], false, "connection-specific field connection"),
            (get + [("keep-alive", "5")], false, "connection-specific field keep-alive"),
            (get + [("transfer-encoding", "chunked")], false, "connection-specific field transfer-encoding"),
            (get + [("upgrade", "h2c")], false, "connection-specific field upgrade"),
            (get + [("proxy-connection", "close")], false, "connection-specific field proxy-connection"),
            (get + [("te", "gzip")], false, "TE other than trailers"),
            (get + [("x", "a\u{0}b")], false, "bad value for x"),
            (get + [("x", "a\rb")], false, "bad value for x"),
            ([("accept", "*/*")] + get, false, "pseudo-header field :method after a regular field"),
            (get + [(":path", "/again")], false, "repeated pseudo-header field :path"),
            (get + [(":protocol", "websocket")], false, "unknown pseudo-header field :protocol"),
            (get + [(":status", "200")], false, "unknown pseudo-header field :status"),
            (Array(get.prefix(3)), false, "missing or extra pseudo-header fields"),
            ([(":scheme", "https"), (":path", "/")], false, "missing or extra pseudo-header fields"),
            (
                [(":method", "CONNECT"), (":authority", "a"), (":path", "/")], false,
                "missing or extra pseudo-header fields"
            ),
            (Array(get.prefix(3)) + [(":path", "")], false, "bad value for :path"),
            (Array(get.prefix(3)) + [(":path", "/a b")], false, "bad value for :path"),
            ([(":path", "/")], true, "pseudo-header field :path in trailers"),
        ])
    func malformed(block: [(String, String)], trailers: Bool, problem: String) {
        #expect(HTTP2RequestBlock.problem(HPACKHeaders(block), trailers: trailers) == problem)
    }
}
