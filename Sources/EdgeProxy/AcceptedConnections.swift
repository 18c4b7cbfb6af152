import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Connections accepted by a listener and not yet taken by its accept loop.
///
/// NIO traps when the writer of a connection wrapped with
/// `NIOAsyncChannel(wrappingChannelSynchronously:)` is deinitialised unfinished, and a
/// connection accepted while the listener shuts down can be dropped between the listener
/// and its accept loop (apple/swift-nio#3481): then the process died. Each connection is held
/// here from its initializer until the accept loop hands it on; when the loops have ended,
/// whatever is left is finished and closed, and connections initialised later are closed at
/// once.
final class AcceptedConnections: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private let state = NIOLockedValueBox<(held: [ObjectIdentifier: Connection], closed: Bool)>(([:], false))

    /// Called by the listener's child initializer with the new connection.
    func adopt(_ connection: Connection) -> Connection {
        let closed = state.withLockedValue { state -> Bool in
            if !state.closed { state.held[ObjectIdentifier(connection.channel)] = connection }
            return state.closed
        }
        if closed { Self.discard(connection) }
        return connection
    }

    /// Called by the accept loop before it serves the connection (which then finishes it).
    func take(_ connection: Connection) {
        _ = state.withLockedValue { $0.held.removeValue(forKey: ObjectIdentifier(connection.channel)) }
    }

    /// After the accept loops ended: finishes and closes what no loop took.
    func closeAll() {
        let left = state.withLockedValue { state -> [Connection] in
            state.closed = true
            defer { state.held = [:] }
            return Array(state.held.values)
        }
        left.forEach(Self.discard)
    }

    private static func discard(_ connection: Connection) {
        connection.outbound.finish()
        connection.channel.close(promise: nil)
    }
}
