import Foundation
import HTTPCaching
import NIOCore
import NIOPosix
import Testing

/// Absurd values from origins get the behaviour the rules name; nothing crashes or mixes up
/// objects (RFC 9111 §1.2.2, §4.2.1, §4.1, §5.1, §5.3).
@Suite("EdgeProxy: bad input from origins")
struct BadInputTests {
    @Test(
        "absurd freshness fields",
        arguments: [
            ("huge max-age saturates and stays fresh", [("Cache-Control", "max-age=99999999999999999999")], true),
            ("Expires: 0 is already expired", [("Expires", "0")], false),
            ("Age: -1 is ignored", [("Cache-Control", "max-age=60"), ("Age", "-1")], true),
            ("a huge Age makes it stale", [("Cache-Control", "max-age=60"), ("Age", "99999999999")], false),
            ("Vary: * never matches", [("Cache-Control", "max-age=60"), ("Vary", "*")], false),
            ("conflicting max-age is stale", [("Cache-Control", "max-age=10, max-age=3600")], false),
            ("quoted max-age is read as its number", [("Cache-Control", "max-age=\"3600\"")], true),
            ("max-age with spaces around = is invalid", [("Cache-Control", "max-age = 3600")], false),
            ("max-age with a unit is invalid", [("Cache-Control", "max-age=3600s")], false),
            ("negative max-age is invalid", [("Cache-Control", "max-age=-5")], false),
            ("unknown directives are ignored", [("Cache-Control", "foo=\"max-age=1\", max-age=60, bar")], true),
        ])
    func absurdValues(name: String, headers: [(String, String)], secondIsHit: Bool) async throws {
        try await withOutpost(origin: staticOrigin(headers)) { origin, outpost, client in
            let first = try await client.get(outpost.base + "/x")
            #expect(first.status == 200, "\(name)")
            let second = try await client.get(outpost.base + "/x")
            #expect(second.status == 200, "\(name)")
            #expect(second.isHit == secondIsHit, "\(name): \(second.cacheStatus)")
            #expect(second.text == "body of /x")
        }
    }

    @Test("a malformed request gets 400 with the Cache-Status member named outpost, whatever via_pseudonym says")
    func malformedRequest() async throws {
        try await withOutpost(
            origin: staticOrigin([("Cache-Control", "max-age=60")]), configure: { $0.server.viaPseudonym = "edge-7" }
        ) { origin, outpost, client in
            let answer = try await rawExchange(port: outpost.port, "GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer.prefix(200))")
            #expect(answer.contains("Cache-Status: outpost; fwd=bypass; detail=\"malformed request\"\r\n"), "\(answer)")
            // The pseudonym names this cache in Via on what it forwards.
            let miss = try await client.get(outpost.base + "/v")
            #expect(miss.headers["Via"]?.contains("edge-7") == true && miss.cacheStatus.hasPrefix("outpost;"))
            #expect(origin.requests.count == 1)
        }
    }

    @Test("an origin that answers with garbage → 502 with Proxy-Status, and the server keeps serving")
    func garbageOrigin() async throws {
        let garbage = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.pipeline.addHandler(GarbageResponder())
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = garbage.localAddress!.port!
        let outpost = try await TestOutpost.start(origin: "http://127.0.0.1:\(port)")
        let client = TestClient()
        for _ in 0..<3 {
            let response = try await client.get(outpost.base + "/junk")
            #expect(response.status == 502)
            #expect(response.headers["Proxy-Status"]?.contains("outpost; error=") == true)
        }
        await client.shutdown()
        await outpost.stop()
        outpost.removeStore()
        try await garbage.close()
    }
}

/// Answers anything with bytes that are not HTTP.
private final class GarbageResponder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HELLO THERE\r\n\r\nthis is not http\r\n")))
            .whenComplete { _ in context.close(promise: nil) }
    }
}
