import NIOCore
import NIOEmbedded
import Testing

@testable import EdgeProxy

@Suite("EdgeProxy: TLS record coalescer")
struct TLSRecordCoalescerTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(TLSRecordCoalescer())
        return channel
    }

    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out.append(String(buffer: buffer)) }
        return out
    }

    @Test("the small writes of one flush go out as one buffer, in order, their promises kept")
    func joinsSmallWrites() throws {
        let channel = try Self.channel()
        let first = channel.eventLoop.makePromise(of: Void.self)
        let second = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ByteBuffer(string: "HEADERS "), promise: first)
        channel.write(ByteBuffer(string: "DATA-HEADER "), promise: nil)
        channel.write(ByteBuffer(string: "payload"), promise: second)
        #expect(try Self.written(channel).isEmpty, "nothing before the flush")
        channel.flush()
        #expect(try Self.written(channel) == ["HEADERS DATA-HEADER payload"])
        var done = 0
        first.futureResult.whenSuccess { done += 1 }
        second.futureResult.whenSuccess { done += 1 }
        channel.embeddedEventLoop.run()
        #expect(done == 2)
        #expect(try channel.finish().isClean)
    }

    @Test("a large write goes out as it is, after what was gathered before it; a record's worth is the most joined")
    func largeWritesPassThrough() throws {
        let channel = try Self.channel()
        let large = String(repeating: "x", count: TLSRecordCoalescer.recordSize)
        channel.write(ByteBuffer(string: "a"), promise: nil)
        channel.write(ByteBuffer(string: large), promise: nil)
        channel.write(ByteBuffer(string: "b"), promise: nil)
        channel.flush()
        #expect(try Self.written(channel) == ["a", large, "b"])
        let half = String(repeating: "y", count: TLSRecordCoalescer.recordSize / 2)
        for _ in 0..<3 { channel.write(ByteBuffer(string: half), promise: nil) }
        channel.flush()
        #expect(try Self.written(channel) == [half + half, half])
        _ = try channel.finish()
    }

    @Test("writes not flushed before a close fail")
    func closeFailsUnflushed() throws {
        let channel = try Self.channel()
        let write = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ByteBuffer(string: "lost"), promise: write)
        var failed = false
        write.futureResult.whenFailure { _ in failed = true }
        _ = try? channel.close().wait()
        channel.embeddedEventLoop.run()
        #expect(failed)
        #expect(try Self.written(channel).isEmpty)
    }
}
