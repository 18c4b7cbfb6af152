import NIOCore
import NIOHTTP1
import Synchronization

/// Client connections whose async loop (`ClientConnection`) starts only when the hit path
/// passes on their first request (docs/architecture.md, "Connections").
///
/// A connection the hit path answers by itself needs no task, no `NIOAsyncChannel` and no
/// async iterator: about 5 KB of the 11.5 KB an idle keep-alive connection used to cost. The
/// hit handler wraps the channel on its event loop when a request first needs the pipeline
/// and hands it here; the server's loop over ``connections`` runs it in a child task, so a
/// graceful shutdown still waits for it.
final class ConnectionStarts: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    let connections: AsyncStream<Connection>
    private let continuation: AsyncStream<Connection>.Continuation
    private let startedCount = Atomic<Int>(0)

    /// Async loops started since the server began (for tests and diagnostics).
    var started: Int { startedCount.load(ordering: .relaxed) }

    init() {
        (connections, continuation) = AsyncStream.makeStream(of: Connection.self)
    }

    /// Wraps `channel` (on its event loop, before the request that needs it is passed on) and
    /// hands it to the server to run. False when the server has stopped taking connections:
    /// the channel is then closed.
    func start(_ channel: any Channel) -> Bool {
        channel.eventLoop.assertInEventLoop()
        let connection: Connection
        do {
            connection = try Connection(wrappingChannelSynchronously: channel)
        } catch {
            channel.close(promise: nil)
            return false
        }
        if case .enqueued = continuation.yield(connection) {
            startedCount.add(1, ordering: .relaxed)
            return true
        }
        // NIO traps when an unfinished writer is deinitialised (see AcceptedConnections).
        connection.outbound.finish()
        channel.close(promise: nil)
        return false
    }

    /// No more connections start; the ones handed over already are still run.
    func finish() { continuation.finish() }
}
