import HTTPCaching
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

@testable import CacheTransaction
@testable import EdgeProxy

/// A request as the test origin saw it.
struct OriginRequest: Sendable {
    var method: String
    var uri: String
    var headers: HeaderFields
    var body: ByteBuffer
    var path: String { String(uri.split(separator: "?", maxSplits: 1).first ?? "") }
}

/// What the test origin answers.
struct OriginResponse: Sendable {
    enum Action: Sendable {
        case respond
        /// Close the connection without answering.
        case hangUp
        /// Send the head and the first body chunk, then close (an incomplete body).
        case truncate
    }

    var status: Int = 200
    var headers: [(String, String)] = []
    /// The body, sent in these pieces.
    var chunks: [ByteBuffer] = []
    /// Sets Content-Length (otherwise the body is chunked).
    var contentLength = true
    var action: Action = .respond
    /// Wait before sending the head.
    var delay: Duration?
    /// Wait for this gate after the first body chunk.
    var gate: Gate?
    /// Wait for this gate before sending the head.
    var headGate: Gate?
    /// Interim (1xx) responses sent, in order, before `headGate` is waited on.
    var interim: [(status: Int, headers: [(String, String)])] = []
    /// Add a Date field when the script has none (origins normally do).
    var addDate = true

    init(
        status: Int = 200, headers: [(String, String)] = [], body: String = "", contentLength: Bool = true,
        action: Action = .respond, delay: Duration? = nil
    ) {
        self.status = status
        self.headers = headers
        self.chunks = body.isEmpty ? [] : [ByteBuffer(string: body)]
        self.contentLength = contentLength
        self.action = action
        self.delay = delay
    }

    init(status: Int = 200, headers: [(String, String)] = [], bytes: [UInt8], pieces: Int = 1) {
        self.status = status
        self.headers = headers
        let size = max(1, (bytes.count + pieces - 1) / pieces)
        self.chunks = stride(from: 0, to: bytes.count, by: size).map {
            ByteBuffer(bytes: bytes[$0..<min(bytes.count, $0 + size)])
        }
    }

    var bodyLength: Int { chunks.reduce(0) { $0 + $1.readableBytes } }
}

/// A one-shot signal tests wait on (with a deadline) instead of sleeping.
final class Gate: Sendable {
    private let state = NIOLockedValueBox<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLockedValue { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// A real HTTP/1.1 origin on a loopback port chosen by the kernel, answering with a script.
final class TestOrigin: Sendable {
    typealias Handler = @Sendable (OriginRequest) async -> OriginResponse
    private typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    let port: Int
    private let listener: NIOAsyncChannel<Connection, Never>
    private let recorded = NIOLockedValueBox<[OriginRequest]>([])
    private let task: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private let accepted = NIOLockedValueBox(0)

    /// Connections accepted so far.
    var connectionCount: Int { accepted.withLockedValue { $0 } }

    /// Closes every open connection but keeps listening: kept-alive connections to this
    /// origin go stale, as when an origin closes idle connections.
    func dropConnections() async {
        for channel in connections.withLockedValue({ Array($0.values) }) { try? await channel.close() }
    }

    var requests: [OriginRequest] { recorded.withLockedValue { $0 } }
    func requests(to path: String) -> [OriginRequest] { requests.filter { $0.path == path } }
    func count(_ path: String) -> Int { requests(to: path).count }

    private let scheme: String

    private init(listener: NIOAsyncChannel<Connection, Never>, scheme: String) {
        self.listener = listener
        self.port = listener.channel.localAddress!.port!
        self.scheme = scheme
    }

    var url: String { "\(scheme)://127.0.0.1:\(port)" }

    /// Starts the origin; with `tls`, it speaks HTTP/1.1 over TLS (an `https` origin).
    static func start(tls: NIOSSLContext? = nil, _ handler: @escaping Handler) async throws -> TestOrigin {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                // NIO's server pipeline, with the decoder Outpost uses so that any method token
                // reaches the script (ExtensionMethodDecoder).
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    let boundaries = RequestBoundaries()
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(
                            ExtensionMethodDecoder(
                                HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes), boundaries: boundaries)),
                        AnswersAtOnce(boundaries: boundaries), HTTPResponseEncoder(), HTTPServerPipelineHandler(),
                        HTTPServerProtocolErrorHandler(),
                    ])
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        let origin = TestOrigin(listener: listener, scheme: tls == nil ? "http" : "https")
        let task = Task<Void, Never> {
            _ = try? await listener.executeThenClose { inbound in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in inbound {
                            group.addTask { await origin.serve(connection, handler) }
                        }
                    } catch {}
                }
            }
        }
        origin.task.withLockedValue { $0 = task }
        return origin
    }

    /// Closes the listener and every open connection: the origin is really down afterwards.
    func stop() async {
        try? await listener.channel.close()
        for channel in connections.withLockedValue({ Array($0.values) }) { try? await channel.close() }
        await task.withLockedValue { $0 }?.value
    }

    private func serve(_ connection: Connection, _ handler: Handler) async {
        let id = ObjectIdentifier(connection.channel)
        accepted.withLockedValue { $0 += 1 }
        connections.withLockedValue { $0[id] = connection.channel }
        defer { connections.withLockedValue { _ = $0.removeValue(forKey: id) } }
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let h):
                    head = h
                    body.clear()
                case .body(var buffer):
                    body.writeBuffer(&buffer)
                case .end:
                    guard let head else { continue }
                    let request = OriginRequest(
                        method: head.method.rawValue, uri: head.uri,
                        headers: HeaderFields(fields: head.headers.map { .init(name: $0.name, value: $0.value) }),
                        body: body)
                    recorded.withLockedValue { $0.append(request) }
                    let response = await handler(request)
                    if let delay = response.delay { try await Task.sleep(for: delay) }
                    for interim in response.interim {
                        try await outbound.write(
                            .head(
                                HTTPResponseHead(
                                    version: .http1_1, status: .init(statusCode: interim.status),
                                    headers: HTTPHeaders(interim.headers))))
                    }
                    if let headGate = response.headGate { await headGate.wait() }
                    if case .hangUp = response.action { return }
                    var headers = HTTPHeaders(response.headers)
                    if response.addDate && !headers.contains(name: "Date") {
                        headers.add(name: "Date", value: HTTPDate.format(Int64(SystemClock().now())))
                    }
                    if response.contentLength || response.action == .truncate {
                        headers.replaceOrAdd(name: "Content-Length", value: String(response.bodyLength))
                    }
                    try await outbound.write(
                        .head(
                            HTTPResponseHead(
                                version: .http1_1, status: .init(statusCode: response.status), headers: headers)))
                    if head.method == .HEAD || response.status == 304 || response.status == 204 {
                        try await outbound.write(.end(nil))
                        continue
                    }
                    for (index, chunk) in response.chunks.enumerated() {
                        try await outbound.write(.body(.byteBuffer(chunk)))
                        if index == 0 {
                            if response.action == .truncate { return }
                            if let gate = response.gate { await gate.wait() }
                        }
                    }
                    try await outbound.write(.end(nil))
                }
            }
        }
    }
}
