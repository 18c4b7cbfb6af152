import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import EdgeProxy

/// Stands for the handlers above the protocol-error handler (the request task's writes enter
/// through it).
private final class Above: ChannelOutboundHandler {
    typealias OutboundIn = HTTPServerResponsePart
}

@Suite("EdgeProxy: answering what the parser rejects")
struct ProtocolErrorHandlerTests {
    static func statusLines(_ channel: EmbeddedChannel) throws -> [HTTPResponseStatus] {
        var heads: [HTTPResponseStatus] = []
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            if case .head(let head) = part { heads.append(head.status) }
        }
        return heads
    }

    @Test("a parser error after a head was passed on gets one 400; a response begun above for that head is dropped")
    func oneResponsePerRequest() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ProtocolErrorHandler(logger: .init(label: "test")), Above())
        let above = try channel.pipeline.syncOperations.context(handlerType: Above.self)
        // llhttp passes the head of `Transfer-Encoding: gzip` on, then fails the request.
        try channel.writeInbound(
            HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/x")))
        _ = try channel.readInbound(as: HTTPServerRequestPart.self)
        channel.pipeline.fireErrorCaught(HTTPParserError.unknown)
        // The request task answers the head it had been given, after the 400 went out.
        let late = channel.eventLoop.makePromise(of: Void.self)
        above.writeAndFlush(
            NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .badGateway))),
            promise: late)
        #expect(throws: ChannelError.self) { try late.futureResult.wait() }
        #expect(try Self.statusLines(channel) == [.badRequest])
    }

    @Test("a parser error after the request was answered gets no second response")
    func answeredFirst() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ProtocolErrorHandler(logger: .init(label: "test")), Above())
        try channel.writeInbound(
            HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/x")))
        _ = try channel.readInbound(as: HTTPServerRequestPart.self)
        try channel.writeOutbound(
            HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .payloadTooLarge)))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        channel.pipeline.fireErrorCaught(HTTPParserError.invalidChunkSize)
        #expect(try Self.statusLines(channel) == [.payloadTooLarge])
    }
}
