import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import EdgeProxy

/// ResponseEncoder frames responses as RFC 9112 §6 says, matched to requests in order, and
/// writes the hit path's serialised heads as they are. Exact bytes, no sockets.
@Suite("Response encoder")
struct ResponseEncoderTests {
    /// Feeds request heads in, writes response parts out, and returns the bytes written.
    static func exchange(
        methods: [HTTPMethod], _ parts: [HTTPServerResponsePart]
    ) throws -> String {
        let channel = EmbeddedChannel(handler: ResponseEncoder())
        for method in methods {
            try channel.writeInbound(
                HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: "/")))
        }
        for part in parts { try channel.writeOutbound(part) }
        var out = ""
        while let buffer = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let bytes) = buffer else { continue }
            out += String(buffer: bytes)
        }
        _ = try channel.finish()
        return out
    }

    static func head(_ status: HTTPResponseStatus, _ headers: [(String, String)]) -> HTTPServerResponsePart {
        .head(HTTPResponseHead(version: .http1_1, status: status, headers: HTTPHeaders(headers)))
    }

    @Test("Content-Length responses pass their body as it is")
    func contentLength() throws {
        let out = try Self.exchange(
            methods: [.GET],
            [Self.head(.ok, [("Content-Length", "2")]), .body(.byteBuffer(ByteBuffer(string: "hi"))), .end(nil)])
        #expect(out == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    }

    @Test("without a length, HTTP/1.1 bodies are chunked")
    func chunked() throws {
        let out = try Self.exchange(
            methods: [.GET],
            [
                Self.head(.ok, [("Transfer-Encoding", "gzip")]), .body(.byteBuffer(ByteBuffer(string: "hello"))),
                .body(.byteBuffer(ByteBuffer())), .end(nil),
            ])
        #expect(out == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    }

    @Test("HEAD, 204 and 304 responses carry no body and no framing fields")
    func bodyless() throws {
        let head = try Self.exchange(methods: [.HEAD], [Self.head(.ok, [("Content-Length", "9")]), .end(nil)])
        #expect(head == "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
        let notModified = try Self.exchange(
            methods: [.GET], [Self.head(.notModified, [("Content-Length", "9"), ("ETag", "\"a\"")]), .end(nil)])
        #expect(notModified == "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n")
        let noContent = try Self.exchange(methods: [.GET], [Self.head(.noContent, []), .end(nil)])
        #expect(noContent == "HTTP/1.1 204 No Content\r\n\r\n")
    }

    @Test("pipelined requests: each response is framed for its own request's method")
    func pipelinedMethods() throws {
        let out = try Self.exchange(
            methods: [.HEAD, .GET],
            [
                Self.head(.ok, [("Content-Length", "3")]), .end(nil),
                Self.head(.ok, [("Content-Length", "3")]), .body(.byteBuffer(ByteBuffer(string: "abc"))), .end(nil),
            ])
        #expect(out == "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    }

    @Test("a prepared response is written as its bytes and keeps the requests in step")
    func prepared() throws {
        let out = try Self.exchange(
            methods: [.GET, .HEAD],
            [
                .head(PreparedResponse.head),
                .body(.byteBuffer(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"))), .end(nil),
                Self.head(.ok, [("Content-Length", "1")]), .end(nil),
            ])
        #expect(out == "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")
    }

    @Test("a head with a field that could split the message is refused")
    func invalidHead() throws {
        let channel = EmbeddedChannel(handler: ResponseEncoder())
        try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        #expect(throws: (any Error).self) {
            try channel.writeOutbound(Self.head(.ok, [("X-Bad", "a\r\nSet-Cookie: b")]))
        }
        #expect(try channel.readOutbound(as: IOData.self) == nil)
    }
}
