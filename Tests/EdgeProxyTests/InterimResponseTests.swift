import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import EdgeProxy

/// RFC 9110 §15.2 and RFC 8297: interim responses from the origin reach the client before the
/// final response, and are never stored or replayed.
@Suite("EdgeProxy: interim responses (103 Early Hints)")
struct InterimResponseTests {
    static let hints: [(String, String)] = [("Link", "</style.css>; rel=preload; as=style"), ("X-Hint", "early")]

    /// Opens a connection, reads what arrives into `received` in the background, and runs
    /// `body` with a way to send.
    static func withRawClient(
        port: Int,
        _ body: (_ send: (String) async throws -> Void, _ received: NIOLockedValueBox<String>) async throws -> Void
    ) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let received = NIOLockedValueBox("")
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await buffer in inbound { received.withLockedValue { $0 += String(buffer: buffer) } }
                }
                try await body({ try await outbound.write(ByteBuffer(string: $0)) }, received)
                group.cancelAll()
            }
        }
    }

    @Test(
        "103 Early Hints reaches the client on a miss while the origin still works on the answer; never stored or replayed"
    )
    func earlyHintsOnAMiss() async throws {
        let finalHead = Gate()
        try await withOutpost(origin: { _ in
            var response = OriginResponse(headers: [("Cache-Control", "max-age=60")], body: "final")
            response.interim = [(103, Self.hints)]
            response.headGate = finalHead
            return response
        }) { origin, outpost, client in
            var all = ""
            try await Self.withRawClient(port: outpost.port) { send, received in
                try await send("GET /hinted HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\n\r\n")
                // The hint arrives while the origin holds its final head back.
                #expect(try await eventually { received.withLockedValue { $0.contains("\r\n\r\n") } })
                let early = received.withLockedValue { $0 }
                #expect(early.hasPrefix("HTTP/1.1 103 Early Hints\r\n"), "\(early)")
                #expect(early.contains("Link: </style.css>; rel=preload; as=style\r\n"))
                #expect(!early.contains("HTTP/1.1 200"))
                finalHead.open()
                #expect(try await eventually { received.withLockedValue { $0.hasSuffix("final") } })
                all = received.withLockedValue { $0 }
            }
            let final = String(all[(all.range(of: "HTTP/1.1 200")?.lowerBound ?? all.endIndex)...])
            #expect(final.hasPrefix("HTTP/1.1 200"), "\(all)")
            #expect(!final.contains("X-Hint") && !final.contains("Link:"), "the final response has only its own fields")
            // Stored without the hint's fields; a hit replays no 103.
            let hit = try await client.get(outpost.base + "/hinted")
            #expect(hit.isHit && hit.text == "final")
            #expect(hit.headers["Link"] == nil && hit.headers["X-Hint"] == nil)
            let again = try await rawExchange(
                port: outpost.port,
                "GET /hinted HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\nConnection: close\r\n\r\n")
            #expect(again.hasPrefix("HTTP/1.1 200") && !again.contains("103"), "\(again)")
            #expect(origin.count("/hinted") == 1)
        }
    }

    @Test("a passed request gets the 103 too; an HTTP/1.0 client never gets one (RFC 9110 §15.2)")
    func passedAndHTTP10() async throws {
        try await withOutpost(origin: { request in
            var response = OriginResponse(status: request.method == "GET" ? 200 : 207, headers: [], body: "done")
            response.interim = [(102, [("Connection", "X-Private"), ("X-Private", "1")]), (103, Self.hints)]
            return response
        }) { _, outpost, _ in
            let host = "Host: 127.0.0.1:\(outpost.port)\r\n"
            let passed = try await rawExchange(
                port: outpost.port, "PROPFIND /dav HTTP/1.1\r\n\(host)Connection: close\r\n\r\n")
            // In order, each as the origin sent it, without hop-by-hop fields (RFC 9110 §7.6.1).
            #expect(passed.hasPrefix("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n"), "\(passed)")
            #expect(!passed.contains("X-Private"))
            #expect(passed.contains("HTTP/1.1 207"))
            let old = try await rawExchange(port: outpost.port, "GET /old HTTP/1.0\r\n\(host)\r\n")
            #expect(old.hasPrefix("HTTP/1.0 200") && !old.contains("103"), "\(old)")
        }
    }

    @Test("Expect: 100-continue: Outpost answers 100 before it reads the body, once, and forwards the body")
    func expectContinue() async throws {
        try await withOutpost(origin: { request in
            OriginResponse(status: 201, headers: [], body: "got \(String(buffer: request.body))")
        }) { origin, outpost, _ in
            var all = ""
            try await Self.withRawClient(port: outpost.port) { send, received in
                try await send(
                    "POST /form HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\nContent-Length: 4\r\n"
                        + "Expect: 100-continue\r\nConnection: close\r\n\r\n")
                #expect(try await eventually { received.withLockedValue { $0.contains("\r\n\r\n") } })
                #expect(received.withLockedValue { $0 } == "HTTP/1.1 100 Continue\r\n\r\n")
                try await send("data")
                #expect(try await eventually { received.withLockedValue { $0.hasSuffix("got data") } })
                all = received.withLockedValue { $0 }
            }
            #expect(all.components(separatedBy: "HTTP/1.1 100").count == 2, "\(all)")
            #expect(all.contains("HTTP/1.1 201"))
            #expect(origin.requests(to: "/form").map { String(buffer: $0.body) } == ["data"])
        }
    }

    @Test("a request with a body gets the origin's 103 too, and its chunked body reaches the origin whole")
    func bodyRequest() async throws {
        try await withOutpost(
            origin: { request in
                var response = OriginResponse(status: 201, headers: [], body: "got \(request.body.readableBytes)")
                response.interim = [(103, Self.hints)]
                return response
            }, configure: { $0.upstream.responseTimeout = 30 }
        ) { origin, outpost, _ in
            let pieces = (0..<40).map { String(repeating: Character(UnicodeScalar(65 + $0 % 26)!), count: 4096) }
            var request = "POST /chunked HTTP/1.1\r\nHost: 127.0.0.1:\(outpost.port)\r\n"
            request += "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            for piece in pieces { request += String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n" }
            request += "0\r\n\r\n"
            let answer = try await rawExchange(port: outpost.port, request)
            #expect(answer.hasPrefix("HTTP/1.1 103 Early Hints\r\n"), "\(answer.prefix(200))")
            #expect(
                answer.contains("HTTP/1.1 201") && answer.hasSuffix("got \(pieces.count * 4096)"),
                "\(answer.prefix(200))")
            let seen = origin.requests(to: "/chunked")
            #expect(seen.count == 1 && seen.first.map { String(buffer: $0.body) } == pieces.joined(), "body differs")
            // This hop's own framing: chunked, as the client sent it (no length was declared).
            #expect(
                seen.first?.headers["Transfer-Encoding"] == "chunked" && seen.first?.headers["Content-Length"] == nil)
        }
    }
}
