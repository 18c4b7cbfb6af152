import AsyncHTTPClient
import CacheStore
import EdgeProxy
import Foundation
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import OutpostTestSupport

@testable import CacheTransaction
@testable import OutpostConfig

/// A clock the test moves forward instead of sleeping: real time plus an offset.
final class TestClock: CacheClock {
    private let offset = NIOLockedValueBox<Double>(0)
    func now() -> Double { Date().timeIntervalSince1970 + offset.withLockedValue { $0 } }
    func advance(by seconds: Double) { offset.withLockedValue { $0 += seconds } }
}

/// A real Outpost on loopback ports chosen by the kernel, with its own store directory.
struct TestOutpost {
    let server: OutpostServer
    let task: Task<Void, Never>
    let clock: TestClock
    let storePath: String

    var port: Int { server.trafficAddress.port! }
    var adminPort: Int { server.adminAddress.port! }
    var base: String { "http://127.0.0.1:\(port)" }

    static var quietLogger: Logger {
        var logger = Logger(label: "outpost-test")
        logger.logLevel = .critical
        return logger
    }

    static func start(
        origin: String, storePath: String? = nil, clock: TestClock = TestClock(),
        configure: (inout OutpostConfiguration) -> Void = { _ in }
    ) async throws -> TestOutpost {
        var configuration = OutpostConfiguration()
        configuration.server.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        configuration.admin.listen = SocketAddressSpec(host: "127.0.0.1", port: 0)
        configuration.upstream.defaultOrigin = OriginURL(parsing: origin)
        configuration.upstream.responseTimeout = 5
        configuration.store.path = storePath ?? NSTemporaryDirectory() + "outpost-edge-test-" + UUID().uuidString
        configuration.store.syncCommits = false
        configuration.store.maxStoreSize = 256 << 20
        configuration.log.access = false
        configure(&configuration)
        let server = try await OutpostServer(configuration: configuration, clock: clock, logger: quietLogger)
        let task = Task { await server.run() }
        return TestOutpost(server: server, task: task, clock: clock, storePath: configuration.store.path)
    }

    /// Graceful shutdown; returns when the store is closed.
    func stop() async {
        server.shutdown()
        await task.value
    }

    func removeStore() { try? FileManager.default.removeItem(atPath: storePath) }

    /// Waits until the store holds a response with `status` for `path` (Host 127.0.0.1:port),
    /// without sending a request: a fetch's commit may land after its client got the end of
    /// the response, and a request sent to find out could itself go to the origin.
    func stored(
        _ path: String, status: Int = 200, requestHeaders: [(String, String)] = [],
        where matches: @escaping (ObjectRecord) -> Bool = { _ in true }
    ) async throws -> Bool {
        try await eventually {
            guard
                case .found(let record, _) = try server.store.lookup(
                    base + path, requestHeaders: HeaderFields(requestHeaders))
            else { return false }
            return record.response.status == status && matches(record)
        }
    }
}

/// A response as a test client saw it.
struct TestResponse {
    var status: Int
    var headers: HeaderFields
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }
    var cacheStatus: String { headers["Cache-Status"] ?? "" }
    var isHit: Bool { cacheStatus.contains("; hit") }
}

/// An HTTP client that, like a browser behind a proxy, never follows redirects or decodes.
final class TestClient: Sendable {
    let client: HTTPClient

    init() {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, decompression: .disabled)
        configuration.httpVersion = .http1Only
        // Enough connections for the concurrency tests (AHC's default is 8 per host).
        configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }

    func request(
        _ url: String, method: HTTPMethod = .GET, headers: [(String, String)] = [], body: String? = nil
    ) async throws -> TestResponse {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers = HTTPHeaders(headers)
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 64 << 20)
        return TestResponse(
            status: Int(response.status.code),
            headers: HeaderFields(fields: response.headers.map { .init(name: $0.name, value: $0.value) }),
            body: Array(buffer: body))
    }

    func get(_ url: String, _ headers: [(String, String)] = []) async throws -> TestResponse {
        try await request(url, headers: headers)
    }

    func shutdown() async { try? await client.shutdown() }
}

/// Sends raw bytes on a new connection and returns everything the server answers until it
/// closes the connection or `deadline` passes.
func rawExchange(port: Int, _ request: String, deadline: Duration = .seconds(10)) async throws -> String {
    try await rawExchange(port: port, [request], deadline: deadline)
}

/// Sends each request on one new connection once the answer to the previous one has fully
/// arrived (each answer must carry Content-Length), so that each starts a read of its own on
/// the server; returns everything received until the server closes or `deadline` passes.
func rawExchange(port: Int, _ requests: [String], deadline: Duration = .seconds(10)) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await withThrowingTaskGroup(of: String?.self) { group in
        let received = NIOLockedValueBox<[UInt8]>([])
        group.addTask {
            try await channel.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                do {
                    for (index, request) in requests.enumerated() {
                        // The server may already have closed (that is what the timeout tests
                        // wait for): a failed write just means there is nothing more to send,
                        // and what it sent before closing is still read.
                        if !request.isEmpty { try? await outbound.write(ByteBuffer(string: request)) }
                        if index == requests.count - 1 { break }
                        while completeResponses(received.withLockedValue { $0 }) <= index {
                            guard let buffer = try await iterator.next() else { break }
                            received.withLockedValue { $0 += buffer.readableBytesView }
                        }
                    }
                    while let buffer = try await iterator.next() {
                        received.withLockedValue { $0 += buffer.readableBytesView }
                    }
                } catch {}
                return String(decoding: received.withLockedValue { $0 }, as: UTF8.self)
            }
        }
        group.addTask {
            try await Task.sleep(for: deadline)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        if first == nil { try? await channel.channel.close() }
        return first
            ?? "(no close before the deadline; received: \(String(decoding: received.withLockedValue { $0 }, as: UTF8.self)))"
    }
}

/// How many complete responses with Content-Length (or none, for 1xx/204/304) `bytes` holds.
private func completeResponses(_ bytes: [UInt8]) -> Int {
    var count = 0
    var start = 0
    let end = Array("\r\n\r\n".utf8)
    while let headEnd = bytes[start...].firstRange(of: end)?.upperBound {
        let head = String(decoding: bytes[start..<headEnd], as: UTF8.self).lowercased()
        let length =
            head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        guard bytes.count >= headEnd + length else { break }
        start = headEnd + length
        count += 1
    }
    return count
}

/// Deterministic test bytes.
func testBytes(_ count: Int, seed: Int = 7) -> [UInt8] {
    pseudoRandomBytes(count, seed: UInt64(truncatingIfNeeded: seed))
}

/// Waits for a condition, polling, until a deadline; fails the caller if it never holds.
func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
