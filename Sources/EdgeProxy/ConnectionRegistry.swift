import NIOConcurrencyHelpers
import NIOCore

/// The open client connections, so that a graceful shutdown can close the idle ones at once
/// and let the busy ones finish their response first.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        var channel: any Channel
        var busy: Bool
    }

    private struct State {
        var next = 0
        var entries: [Int: Entry] = [:]
        var draining = false
    }

    private let state = NIOLockedValueBox(State())

    func register(_ channel: any Channel) -> Int {
        state.withLockedValue { state in
            state.next += 1
            state.entries[state.next] = Entry(channel: channel, busy: false)
            return state.next
        }
    }

    func unregister(_ id: Int) {
        state.withLockedValue { _ = $0.entries.removeValue(forKey: id) }
    }

    func setBusy(_ id: Int, _ busy: Bool) {
        state.withLockedValue { $0.entries[id]?.busy = busy }
    }

    var isDraining: Bool { state.withLockedValue { $0.draining } }

    var count: Int { state.withLockedValue { $0.entries.count } }

    /// Stops keep-alive: idle connections close now, busy ones after their response.
    func beginDrain() {
        let idle = state.withLockedValue { state -> [any Channel] in
            state.draining = true
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
