import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The open client connections, so that a graceful shutdown can close the idle ones at once
/// and let the busy ones finish their response first.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        var channel: any Channel
        var busy: Bool
    }

    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var draining = false
        /// Waiting for the last connection to go (``waitUntilEmpty()``).
        var emptyWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())
    /// `state.draining`, readable without the lock (every request asks).
    private let drainingFlag = Atomic<Bool>(false)

    /// Registers a connection for as long as its channel is open, from accept to close. Its id
    /// is the channel's identity (`ObjectIdentifier(channel)`), so the connection loops and the
    /// hit path (``HitHandler``) mark the same connection busy.
    func registerUntilClosed(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLockedValue { $0.entries[id] = Entry(channel: channel, busy: false) }
        channel.closeFuture.whenComplete { _ in self.unregister(id) }
    }

    private func unregister(_ id: ObjectIdentifier) {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.entries.removeValue(forKey: id)
            guard state.entries.isEmpty else { return [] }
            defer { state.emptyWaiters = [] }
            return state.emptyWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once no connection is registered (at shutdown, after the listeners closed).
    func waitUntilEmpty() async {
        await withCheckedContinuation { continuation in
            let empty = state.withLockedValue { state -> Bool in
                if state.entries.isEmpty { return true }
                state.emptyWaiters.append(continuation)
                return false
            }
            if empty { continuation.resume() }
        }
    }

    func setBusy(_ id: ObjectIdentifier, _ busy: Bool) {
        state.withLockedValue { $0.entries[id]?.busy = busy }
    }

    var isDraining: Bool { drainingFlag.load(ordering: .relaxed) }

    var count: Int { state.withLockedValue { $0.entries.count } }

    /// Stops keep-alive: idle connections close now, busy ones after their response.
    func beginDrain() {
        let idle = state.withLockedValue { state -> [any Channel] in
            state.draining = true
            drainingFlag.store(true, ordering: .relaxed)
            return state.entries.values.filter { !$0.busy }.map(\.channel)
        }
        for channel in idle { channel.close(promise: nil) }
    }

    /// Closes everything (the grace period is over).
    func closeAll() {
        let all = state.withLockedValue { $0.entries.values.map(\.channel) }
        for channel in all { channel.close(promise: nil) }
    }
}
