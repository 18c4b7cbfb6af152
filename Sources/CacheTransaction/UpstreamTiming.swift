import Synchronization

/// The time one client request spent waiting for upstream response heads (origin, parent or
/// peer), for its access-log line. The front end makes one per request and binds it to
/// ``current`` around the transaction; ``CachePipeline`` adds each upstream call to it.
package final class UpstreamTiming: Sendable {
    private let nanoseconds = Atomic<Int64>(0)
    private let calls = Atomic<Int>(0)

    package init() {}

    @TaskLocal package static var current: UpstreamTiming?

    func add(_ elapsed: Duration) {
        let parts = elapsed.components
        nanoseconds.add(parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000, ordering: .relaxed)
        calls.add(1, ordering: .relaxed)
    }

    /// Seconds waited in all, or nil when the request made no upstream call (a hit, a
    /// follower of another request's fetch).
    package var seconds: Double? {
        calls.load(ordering: .relaxed) == 0 ? nil : Double(nanoseconds.load(ordering: .relaxed)) / 1e9
    }
}
