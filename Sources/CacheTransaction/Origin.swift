import HTTPCaching
import Logging
import NIOCore
import OutpostConfig

/// The cache's way to the origins: what the pipeline needs of an HTTP client, in Outpost's own
/// types (issue 12). `UpstreamPool` is the production implementation (Outpost's HTTP/1.1
/// client over TCP or TLS); tests use an in-process fake, so the pipeline can be driven
/// without sockets.
package protocol Origin: Sendable {
    /// Sends the request and returns once the response head arrived; the body streams from
    /// the returned response. Failures are the ``ProxyError`` to answer with (RFC 9209).
    func execute(_ request: UpstreamRequest, logger: Logger) async throws -> UpstreamResponse
}

/// A request Outpost sends to an origin.
package struct UpstreamRequest {
    package var origin: OriginURL
    package var method: String
    package var pathAndQuery: String
    package var headers: HeaderFields
    package var body: RequestBody?
    /// Told of each interim (1xx) response the origin sends before the final one: status and
    /// fields (RFC 9110 §15.2: a proxy forwards them).
    package var interim: (@Sendable (Int, HeaderFields) -> Void)? = nil

    package init(
        origin: OriginURL, method: String, pathAndQuery: String, headers: HeaderFields, body: RequestBody?,
        interim: (@Sendable (Int, HeaderFields) -> Void)? = nil
    ) {
        self.origin = origin
        self.method = method
        self.pathAndQuery = pathAndQuery
        self.headers = headers
        self.body = body
        self.interim = interim
    }
}

/// An origin's answer: the final status, its fields, and the body as it streams in.
package struct UpstreamResponse: Sendable {
    package var status: Int
    package var headers: HeaderFields
    package var body: UpstreamBody

    package init(status: Int, headers: HeaderFields, body: UpstreamBody) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// The body of an origin response, read with back-pressure (``OriginBody``). One concrete
/// type, not an enum of sources: an enum over generic sequences cost a miss about 20 000
/// instructions (runtime metadata lookups, multi-payload enum copies; callgrind). An
/// in-process origin hands its bytes over with ``OriginBody/complete(_:)``.
package typealias UpstreamBody = OriginBody

/// The body of an origin response, read with back-pressure: the connection reads on only
/// while the consumer keeps up (at most a few buffers are held).
package typealias OriginBody = NIOThrowingAsyncSequenceProducer<
    ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, OriginBodyDemand
>

/// Where an origin body's bytes come from: the connection (``OriginConnection`` in the front
/// end), asked on its own event loop to read on, or told its reader is gone.
package protocol OriginBodySource: AnyObject, Sendable {
    func resumeReading(exchange: UInt64)
    func consumerGone(exchange: UInt64)
}

/// Passes an origin body's demand to its source, on the source's event loop.
package struct OriginBodyDemand: NIOAsyncSequenceProducerDelegate {
    /// The source and loop the body comes from; nil for a body that is all there already
    /// (``OriginBody/complete(_:)``), which has no one to ask for more.
    let source: (any OriginBodySource)?
    let loop: (any EventLoop)?
    let exchange: UInt64

    package init(source: (any OriginBodySource)?, loop: (any EventLoop)?, exchange: UInt64) {
        self.source = source
        self.loop = loop
        self.exchange = exchange
    }

    package func produceMore() {
        guard let source, let loop else { return }
        let exchange = self.exchange
        loop.execute { source.resumeReading(exchange: exchange) }
    }

    package func didTerminate() {
        guard let source, let loop else { return }
        let exchange = self.exchange
        loop.execute { source.consumerGone(exchange: exchange) }
    }
}

extension OriginBody {
    /// A body whose bytes are all here: an in-process origin's (tests), or a synthesised one.
    static func complete(_ buffers: [ByteBuffer]) -> OriginBody {
        let producer = OriginBody.makeSequence(
            elementType: ByteBuffer.self,
            backPressureStrategy: .init(lowWatermark: 2, highWatermark: Swift.max(8, buffers.count + 1)),
            finishOnDeinit: true,
            delegate: OriginBodyDemand(source: nil, loop: nil, exchange: 0))
        _ = producer.source.yield(contentsOf: buffers)
        producer.source.finish()
        return producer.sequence
    }
}
