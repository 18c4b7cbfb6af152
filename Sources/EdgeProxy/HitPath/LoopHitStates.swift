import NIOCore
import NIOPosix

/// The hit-path state of every event loop in the group, made once at start-up. The table never
/// changes afterwards, and each state is used only on its own loop (``HitHandler`` runs there).
final class LoopHitStates: @unchecked Sendable {
    private let states: [ObjectIdentifier: LoopHitState]

    init(group: MultiThreadedEventLoopGroup, _ make: (any EventLoop) throws -> LoopHitState) throws {
        var states: [ObjectIdentifier: LoopHitState] = [:]
        for loop in group.makeIterator() { states[ObjectIdentifier(loop)] = try make(loop) }
        self.states = states
    }

    /// The state of `loop`; nil for a loop of another group (its connections take the async path).
    func state(for loop: any EventLoop) -> LoopHitState? {
        states[ObjectIdentifier(loop)]
    }
}
