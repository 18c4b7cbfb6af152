import Foundation

/// The time source of the caching rules. The server takes one so tests can move time forward
/// (to make objects stale) without sleeping.
public protocol CacheClock: Sendable {
    /// Seconds since the Unix epoch.
    func now() -> Double
}

public struct SystemClock: CacheClock {
    public init() {}
    public func now() -> Double { Date().timeIntervalSince1970 }
}
