import HTTPCaching

/// What a purge removes (or, soft, marks stale): every variant and every coded
/// representation of the objects it matches.
public struct Purge: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        /// One URL (a primary cache key).
        case url(String)
        /// Every URL that starts with this string.
        case prefix(String)
        /// Every object carrying any of these tags (Surrogate-Key / Cache-Tag).
        case tags([String])
    }

    public var target: Target
    /// Mark the objects stale (they are revalidated before reuse) instead of removing them.
    public var soft: Bool
    /// When the purge was asked for (soft-purged objects count as stale from then).
    public var time: Double
    /// Its sequence number in the fleet's purge journal (docs/fleet.md), recorded in the same
    /// write transaction as the last one this store applied; nil for a purge not from it.
    public var journalSequence: Int64?

    public init(_ target: Target, soft: Bool = false, time: Double) {
        self.target = target
        self.soft = soft
        self.time = time
    }

    /// Does the purge cover this object?
    func matches(_ record: ObjectRecord) -> Bool {
        switch target {
        case .url(let url): record.primaryKey == url
        case .prefix(let prefix): record.primaryKey.hasPrefix(prefix)
        case .tags(let tags): !Set(tags).isDisjoint(with: record.tags)
        }
    }
}

/// The recent purges, so that an object whose fetch began before a purge and commits after
/// it does not bring back what the purge removed. Touched by the writer thread only, except
/// `epoch`, which writers read when they start (under the store writer's lock).
struct PurgeLog {
    /// How many purges are remembered; a write that began before the oldest of them is
    /// dropped rather than risk resurrecting a purged object.
    static let capacity = 4096

    private(set) var epoch: UInt64 = 0
    private var recent: [(epoch: UInt64, purge: Purge)] = []

    mutating func record(_ purge: Purge) {
        epoch += 1
        recent.append((epoch, purge))
        if recent.count > PurgeLog.capacity { recent.removeFirst(recent.count - PurgeLog.capacity) }
    }

    enum Verdict: Equatable {
        case keep
        /// A soft purge since the write began: commit, marked stale from then.
        case markStale(at: Double)
        /// A hard purge since the write began (or too many purges to tell).
        case drop
    }

    /// What becomes of an object whose write began at `startEpoch`.
    func verdict(for record: ObjectRecord, startEpoch: UInt64) -> Verdict {
        guard epoch > startEpoch else { return .keep }
        if let oldest = recent.first?.epoch, oldest > startEpoch + 1 { return .drop }
        var verdict = Verdict.keep
        for (purgeEpoch, purge) in recent where purgeEpoch > startEpoch && purge.matches(record) {
            if !purge.soft { return .drop }
            verdict = .markStale(at: purge.time)
        }
        return verdict
    }
}
