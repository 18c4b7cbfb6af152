import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// The open client connections, so that a graceful shutdown can close the idle ones at once
/// and let the busy ones finish their response first.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        var channel: any Channel
        var activity: ConnectionActivity
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

    /// Registers a connection for as long as its channel is open, from accept to close; its
    /// handlers mark it busy through the ``ConnectionActivity`` returned (also found by
    /// ``activity(of:)`` while they are set up).
    @discardableResult
    func registerUntilClosed(_ channel: any Channel) -> ConnectionActivity {
        let id = ObjectIdentifier(channel)
        let activity = ConnectionActivity()
        state.withLockedValue { $0.entries[id] = Entry(channel: channel, activity: activity) }
        channel.closeFuture.whenComplete { _ in self.unregister(id) }
        return activity
    }

    /// The activity of a registered connection (once per connection, as its handlers are
    /// added); nil for a channel that is not one (an HTTP/2 stream).
    func activity(of channel: any Channel) -> ConnectionActivity? {
        state.withLockedValue { $0.entries[ObjectIdentifier(channel)]?.activity }
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

    var isDraining: Bool { drainingFlag.load(ordering: .relaxed) }

    var count: Int { state.withLockedValue { $0.entries.count } }

    /// Stops keep-alive: idle connections close now, busy ones after their response.
    func beginDrain() {
        let idle = state.withLockedValue { state -> [any Channel] in
            state.draining = true
            drainingFlag.store(true, ordering: .relaxed)
            return state.entries.values.filter { !$0.activity.isBusy }.map(\.channel)
        }
        for channel in idle { channel.close(promise: nil) }
    }

    /// Closes everything (the grace period is over).
    func closeAll() {
        let all = state.withLockedValue { $0.entries.values.map(\.channel) }
        for channel in all { channel.close(promise: nil) }
    }
}

/// Whether a connection is in the middle of a response (a graceful shutdown closes the idle
/// ones at once). Set by the connection's handlers on its event loop on every request: an
/// atomic flag of its own, where the registry's lock and table are taken once per
/// connection, not twice per request (docs/architecture.md, "hot path").
final class ConnectionActivity: Sendable {
    private let busy = Atomic<Bool>(false)

    var isBusy: Bool { busy.load(ordering: .acquiring) }

    func setBusy(_ value: Bool) { busy.store(value, ordering: .releasing) }
}
